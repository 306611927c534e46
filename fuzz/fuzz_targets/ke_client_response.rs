//! `KeClient::receive` on an arbitrary response, fed in up to four chunks at
//! fuzzer-chosen points and then closed with `finish`. The outcome must not
//! depend on how the bytes were split, a successful response must be
//! consistent with what was offered, and a failed or finished exchange
//! stays that way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::{Input, chunks};
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::ke_client::{
    KeClient, KeClientError, KeClientProgress, KeResponse, MAX_RESPONSE_LEN,
};
use sundial_proto::nts::ke_record::NextProtocol;

fn preference(mask: u8) -> Vec<AeadAlgorithm> {
    let mut algs: Vec<AeadAlgorithm> = AeadAlgorithm::SUPPORTED
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, &a)| a)
        .collect();
    if mask & 0x10 != 0 {
        algs.reverse();
    }
    if mask & 0x20 != 0 {
        algs.push(AeadAlgorithm::Unknown(0x1234));
    }
    algs
}

/// Feeds `parts` and reports the first outcome that is not `NeedMore`, or
/// what `finish` says if none.
fn run(
    client: &mut KeClient,
    parts: &[&[u8]],
) -> (Result<Option<KeResponse>, KeClientError>, usize) {
    for (i, part) in parts.iter().enumerate() {
        match client.receive(part) {
            Ok(KeClientProgress::NeedMore) => {}
            Ok(KeClientProgress::Done(resp)) => return (Ok(Some(resp)), i),
            Err(e) => return (Err(e), i),
        }
    }
    (client.finish().map(|()| None), parts.len())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mask = input.u8();
    let parts = chunks(input.rest());
    let whole: Vec<u8> = parts.concat();
    let offered = preference(mask);

    let mut split_client = KeClient::new(&offered);
    let _ = split_client.request();
    let (split, at) = run(&mut split_client, &parts);
    // Bytes after the outcome: more records are an error; so is anything
    // fed to a failed exchange.
    let trailing: Vec<u8> = parts[(at + 1).min(parts.len())..].concat();

    let mut whole_client = KeClient::new(&offered);
    let (one, _) = run(&mut whole_client, &[&whole]);

    match (&split, &one) {
        // In one read, the size cap trips before any record is looked at.
        _ if whole.len() > MAX_RESPONSE_LEN => {
            assert_eq!(
                one,
                Err(KeClientError::ResponseTooLarge {
                    limit: MAX_RESPONSE_LEN
                })
            );
        }
        (Ok(Some(a)), _) if !trailing.is_empty() => {
            // The whole buffer has records after End of Message.
            assert_eq!(one, Err(KeClientError::RecordAfterEndOfMessage), "{a:?}");
        }
        // An error at End of Message (a missing record, say) with more bytes
        // in a later read: read in one go, the trailing bytes are reported
        // first. Both are errors; which one depends on the read boundaries.
        (Err(_), Err(KeClientError::RecordAfterEndOfMessage)) if !trailing.is_empty() => {}
        _ => assert_eq!(split, one),
    }

    if let Ok(Some(resp)) = &split {
        assert_eq!(resp.protocol, NextProtocol::NtpV4);
        assert!(split_client.offered().contains(&resp.algorithm));
        assert!(!resp.cookies.is_empty());
        assert!(resp.cookies.iter().all(|c| !c.is_empty()));
        assert_eq!(split_client.finish(), Ok(()));
        assert!(split_client.receive(&[0]).is_err());
        assert!(split_client.receive(&[]).is_err());
    }
    if let Err(e) = &split {
        assert_eq!(split_client.receive(&[0, 0, 0, 0]).as_ref(), Err(e));
        assert_eq!(split_client.finish().as_ref(), Err(e));
    }
});
