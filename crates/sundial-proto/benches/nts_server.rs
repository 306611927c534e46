//! The server's work per request: `server::handle` on a valid NTS request
//! (cookie open, authenticator check, response sealed with 1 or 8 fresh
//! cookies) for each AEAD, plain NTP for comparison, and cookie seal and
//! open on their own.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sundial_proto::ntp::packet::{NtpHeader, ReferenceId};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::client::{new_uid, write_request};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::reader::Writer;
use sundial_proto::server::{
    Admission, ResponseKind, ServerAction, ServerPolicy, ServerState, handle,
};

const NOW: u64 = 1_800_000_000;
const RECV: NtpTimestamp = NtpTimestamp::from_bits(0x1111_0000_0000_0000);
const XMIT: NtpTimestamp = NtpTimestamp::from_bits(0x1111_0000_0001_0000);

fn name(alg: AeadAlgorithm) -> &'static str {
    match alg {
        AeadAlgorithm::AesSivCmac256 => "AES-SIV-CMAC-256",
        AeadAlgorithm::AesSivCmac384 => "AES-SIV-CMAC-384",
        AeadAlgorithm::AesSivCmac512 => "AES-SIV-CMAC-512",
        AeadAlgorithm::Aes128GcmSiv => "AES-128-GCM-SIV",
        AeadAlgorithm::Unknown(_) => "unknown",
    }
}

struct Fixture {
    keyset: KeySet,
    rng: ChaCha20Rng,
}

impl Fixture {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let keyset = KeySet::generate(KeySetConfig::default(), NOW, &mut rng);
        Self { keyset, rng }
    }

    fn keys(&mut self, alg: AeadAlgorithm) -> NtsKeys {
        NtsKeys {
            c2s: AeadKey::generate(alg, &mut self.rng).expect("supported"),
            s2c: AeadKey::generate(alg, &mut self.rng).expect("supported"),
        }
    }

    fn request(&mut self, alg: AeadAlgorithm, placeholders: usize) -> Vec<u8> {
        let keys = self.keys(alg);
        let mut cookie = [0u8; 256];
        let n = self
            .keyset
            .seal_cookie(&keys, &mut self.rng, &mut cookie)
            .expect("fits");
        let uid = new_uid(&mut self.rng);
        let mut buf = vec![0u8; 2048];
        let mut w = Writer::new(&mut buf);
        let h = NtpHeader::client_request(4, NtpTimestamp::from_bits(42));
        let cookie = cookie.get(..n).expect("sealed length");
        write_request(&mut w, &h, &uid, cookie, placeholders, &keys, &mut self.rng).expect("fits");
        let len = w.len();
        buf.truncate(len);
        buf
    }
}

fn serve(keyset: &KeySet, request: &[u8], rng: &mut ChaCha20Rng, out: &mut [u8]) -> ServerAction {
    let state = ServerState::local(1, ReferenceId(*b"LOCL"), RECV);
    handle(
        &state,
        &ServerPolicy::default(),
        Some(keyset),
        Admission::Allow,
        request,
        RECV,
        || XMIT,
        rng,
        out,
    )
}

fn server_handle(c: &mut Criterion) {
    let mut fx = Fixture::new();
    let mut out = [0u8; 2048];

    let plain = NtpHeader::client_request(6, NtpTimestamp::from_bits(1)).to_bytes();
    let action = serve(&fx.keyset, &plain, &mut fx.rng, &mut out);
    assert!(matches!(
        action,
        ServerAction::Respond {
            kind: ResponseKind::Plain,
            ..
        }
    ));
    c.bench_function("handle/plain", |b| {
        b.iter(|| serve(&fx.keyset, black_box(&plain), &mut fx.rng, &mut out))
    });

    for alg in AeadAlgorithm::SUPPORTED {
        for placeholders in [0, 7] {
            let request = fx.request(alg, placeholders);
            let action = serve(&fx.keyset, &request, &mut fx.rng, &mut out);
            assert!(
                matches!(
                    action,
                    ServerAction::Respond {
                        kind: ResponseKind::Nts,
                        ..
                    }
                ),
                "{alg:?}: {action:?}"
            );
            let id = format!("handle/nts/{}/{}_cookies", name(alg), placeholders + 1);
            c.bench_function(&id, |b| {
                b.iter(|| serve(&fx.keyset, black_box(&request), &mut fx.rng, &mut out))
            });
        }
    }
}

fn cookies(c: &mut Criterion) {
    let mut fx = Fixture::new();
    for alg in AeadAlgorithm::SUPPORTED {
        let keys = fx.keys(alg);
        let mut buf = [0u8; 256];
        c.bench_function(&format!("cookie/seal/{}", name(alg)), |b| {
            b.iter(|| {
                fx.keyset
                    .seal_cookie(black_box(&keys), &mut fx.rng, &mut buf)
            })
        });
        let n = fx
            .keyset
            .seal_cookie(&keys, &mut fx.rng, &mut buf)
            .expect("fits");
        let cookie = buf.get(..n).expect("sealed length").to_vec();
        assert!(fx.keyset.open_cookie(&cookie).is_ok());
        c.bench_function(&format!("cookie/open/{}", name(alg)), |b| {
            b.iter(|| fx.keyset.open_cookie(black_box(&cookie)))
        });
    }
}

fn config() -> Criterion {
    // Short runs: the benchmark machine is shared.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = server_handle, cookies
}
criterion_main!(benches);
