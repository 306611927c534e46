//! `KeServer::receive` on an arbitrary request, in up to four chunks, then
//! `finish` (the client's EOF). The outcome must not depend on the split.
//! Whatever the server decides is answered as the daemon would, and a
//! `KeClient` that offered the negotiated algorithm must accept the answer
//! (or see the refusal or error code it carries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::{Input, chunks};
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::ke_client::{KeClient, KeClientError, KeClientProgress};
use sundial_proto::nts::ke_server::{
    KeServer, KeServerError, KeServerProgress, MIN_MAX_REQUEST_LEN, Refusal, build_response,
    error_response, refusal_response,
};

fn supported(mask: u8) -> Vec<AeadAlgorithm> {
    let mut algs: Vec<AeadAlgorithm> = AeadAlgorithm::SUPPORTED
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, &a)| a)
        .collect();
    if mask & 0x10 != 0 {
        algs.push(AeadAlgorithm::Unknown(0x4321));
    }
    algs
}

fn run(server: &mut KeServer, parts: &[&[u8]]) -> (Result<KeServerProgress, KeServerError>, usize) {
    for (i, part) in parts.iter().enumerate() {
        match server.receive(part) {
            Ok(KeServerProgress::NeedMore) => {}
            other => return (other, i),
        }
    }
    (
        server.finish().map(|()| KeServerProgress::NeedMore),
        parts.len(),
    )
}

fn client_reads(
    response: &[u8],
    offered: &[AeadAlgorithm],
) -> Result<KeClientProgress, KeClientError> {
    let mut client = KeClient::new(offered);
    let progress = client.receive(response);
    if matches!(progress, Ok(KeClientProgress::Done(_))) {
        assert_eq!(client.finish(), Ok(()));
    }
    progress
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mask = input.u8();
    let max_len = usize::from(input.u16());
    let parts = chunks(input.rest());
    let whole: Vec<u8> = parts.concat();
    let supported = supported(mask);

    let mut server = KeServer::with_max_request_len(&supported, max_len);
    let (split, at) = run(&mut server, &parts);
    let trailing: Vec<u8> = parts[(at + 1).min(parts.len())..].concat();
    let (one, _) = run(
        &mut KeServer::with_max_request_len(&supported, max_len),
        &[&whole],
    );
    let limit = max_len.max(MIN_MAX_REQUEST_LEN);
    match &split {
        // In one read, the size cap trips before any record is looked at.
        _ if whole.len() > limit => {
            assert_eq!(one, Err(KeServerError::RequestTooLarge { limit }));
        }
        Ok(KeServerProgress::Request(_) | KeServerProgress::Refused(_)) if !trailing.is_empty() => {
            assert_eq!(one, Err(KeServerError::RecordAfterEndOfMessage));
        }
        // An error at End of Message (a missing record, say) with more bytes
        // in a later read: read in one go, the trailing bytes are reported
        // first. Both are errors; which one depends on the read boundaries.
        Err(_) if !trailing.is_empty() && one == Err(KeServerError::RecordAfterEndOfMessage) => {}
        _ => assert_eq!(split, one),
    }

    match &split {
        Ok(KeServerProgress::NeedMore) => unreachable!("finish ends every exchange"),
        Ok(KeServerProgress::Request(negotiated)) => {
            assert!(supported.contains(&negotiated.algorithm));
            assert_eq!(server.finish(), Ok(()));
            assert!(server.receive(&[]).is_err());
            let cookies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 100]).collect();
            let response = build_response(
                negotiated,
                &cookies,
                negotiated.requested_server.as_deref(),
                negotiated.requested_port,
            )
            .expect("a negotiated request can be answered");
            match client_reads(&response, &[negotiated.algorithm]) {
                Ok(KeClientProgress::Done(resp)) => {
                    assert_eq!(resp.algorithm, negotiated.algorithm);
                    assert_eq!(resp.cookies, cookies);
                    assert_eq!(resp.server, negotiated.requested_server);
                    assert_eq!(resp.port, negotiated.requested_port);
                }
                other => panic!("client rejects the server's answer: {other:?}"),
            }
        }
        Ok(KeServerProgress::Refused(refusal)) => {
            let response = refusal_response(*refusal);
            let expected = match refusal {
                Refusal::NoCommonProtocol => KeClientError::ProtocolRefused,
                Refusal::NoCommonAead => KeClientError::NoCommonAead,
            };
            assert_eq!(
                client_reads(&response, &AeadAlgorithm::SUPPORTED),
                Err(expected)
            );
        }
        Err(e) => {
            let code = e.error_code();
            assert_eq!(
                client_reads(&error_response(code), &AeadAlgorithm::SUPPORTED),
                Err(KeClientError::ServerError(code))
            );
            assert_eq!(server.finish().as_ref(), Err(e));
        }
    }
});
