//! NTP header parse and serialize, and extension field iteration over the
//! requests an NTS client sends.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sundial_proto::ntp::extension::{ExtensionFields, Placement};
use sundial_proto::ntp::packet::{HEADER_LEN, NtpHeader};
use sundial_proto::ntp::timestamp::NtpTimestamp;
use sundial_proto::nts::aead::{AeadAlgorithm, AeadKey, NtsKeys};
use sundial_proto::nts::client::{new_uid, write_request};
use sundial_proto::nts::keyset::{KeySet, KeySetConfig};
use sundial_proto::reader::Writer;

/// An NTS request (AES-SIV-CMAC-256, one cookie) with `placeholders`.
fn nts_request(placeholders: usize) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let keyset = KeySet::generate(KeySetConfig::default(), 1_800_000_000, &mut rng);
    let alg = AeadAlgorithm::AesSivCmac256;
    let keys = NtsKeys {
        c2s: AeadKey::generate(alg, &mut rng).expect("supported"),
        s2c: AeadKey::generate(alg, &mut rng).expect("supported"),
    };
    let mut cookie = [0u8; 256];
    let n = keyset
        .seal_cookie(&keys, &mut rng, &mut cookie)
        .expect("fits");
    let uid = new_uid(&mut rng);
    let mut buf = vec![0u8; 2048];
    let mut w = Writer::new(&mut buf);
    let h = NtpHeader::client_request(4, NtpTimestamp::from_bits(42));
    let cookie = cookie.get(..n).expect("sealed length");
    write_request(&mut w, &h, &uid, cookie, placeholders, &keys, &mut rng).expect("fits");
    let len = w.len();
    buf.truncate(len);
    buf
}

fn header(c: &mut Criterion) {
    let request = NtpHeader::client_request(6, NtpTimestamp::from_bits(0xdead_beef_0000_0001));
    let bytes = request.to_bytes();
    c.bench_function("header/parse", |b| {
        b.iter(|| NtpHeader::parse(black_box(&bytes)).map(|(h, _)| h))
    });
    c.bench_function("header/serialize", |b| {
        let mut out = [0u8; HEADER_LEN];
        b.iter(|| {
            let mut w = Writer::new(&mut out);
            black_box(&request).serialize(&mut w).map(|()| w.len())
        })
    });
}

fn extensions(c: &mut Criterion) {
    for placeholders in [0, 7] {
        let request = nts_request(placeholders);
        let area = request.get(HEADER_LEN..).expect("header");
        c.bench_function(
            &format!("extension_fields/nts_request_{placeholders}_placeholders"),
            |b| {
                b.iter(|| {
                    ExtensionFields::new(black_box(area), Placement::Outer)
                        .map(|f| f.map_or(0, |f| f.wire_len()))
                        .sum::<usize>()
                })
            },
        );
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
    targets = header, extensions
}
criterion_main!(benches);
