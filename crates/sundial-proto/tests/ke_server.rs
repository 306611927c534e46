//! The NTS-KE server state machine against RFC 8915 section 4.1.

use proptest::prelude::*;
use sundial_proto::nts::aead::AeadAlgorithm::{self, *};
use sundial_proto::nts::ke_client::{KeClient, KeClientError, KeClientProgress};
use sundial_proto::nts::ke_record::{
    Decoded, EncodeError, ErrorCode, NextProtocol, Record, RecordBody, RecordError, WarningCode,
    decode,
};
use sundial_proto::nts::ke_server::{
    COOKIE_COUNT, DEFAULT_MAX_REQUEST_LEN, KeServer, KeServerError, KeServerProgress,
    MIN_MAX_REQUEST_LEN, Negotiated, Refusal, SealingError, build_response, build_response_sealing,
    error_response, refusal_response,
};

fn msg(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        r.encode(&mut out).unwrap();
    }
    out
}
fn np(ids: &[u16]) -> Record {
    Record::critical(RecordBody::NextProtocol(
        ids.iter().copied().map(NextProtocol::from_u16).collect(),
    ))
}
fn aead(ids: &[AeadAlgorithm]) -> Record {
    Record::critical(RecordBody::AeadAlgorithm(ids.to_vec()))
}
fn eom() -> Record {
    Record::critical(RecordBody::EndOfMessage)
}
fn unknown(critical: bool, record_type: u16) -> Record {
    Record::new(
        critical,
        RecordBody::Unknown {
            record_type,
            body: vec![9],
        },
    )
}
fn server() -> KeServer {
    KeServer::new(&[AesSivCmac256, Aes128GcmSiv])
}
fn negotiated(algorithm: AeadAlgorithm) -> Negotiated {
    Negotiated {
        protocol: NextProtocol::NtpV4,
        algorithm,
        requested_server: None,
        requested_port: None,
        compliant_gcm_siv: false,
    }
}
fn agreed(algorithm: AeadAlgorithm) -> KeServerProgress {
    KeServerProgress::Request(negotiated(algorithm))
}
/// Decodes a whole message into its records.
fn records_of(mut wire: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let Ok(Decoded::Complete { record, consumed }) = decode(wire) else {
            panic!("bad message {wire:?}");
        };
        out.push(record);
        wire = &wire[consumed..];
    }
    out
}

#[test]
fn negotiation_outcomes() {
    let cases: Vec<(&str, Vec<Record>, KeServerProgress)> = vec![
        (
            "client order wins among supported",
            vec![
                np(&[0]),
                aead(&[AesSivCmac512, Aes128GcmSiv, AesSivCmac256]),
                Record::new(false, RecordBody::CompliantGcmSivExport),
                eom(),
            ],
            KeServerProgress::Request(Negotiated {
                compliant_gcm_siv: true,
                ..negotiated(Aes128GcmSiv)
            }),
        ),
        (
            "unknown ids in the client list are skipped",
            vec![np(&[0]), aead(&[Unknown(200), AesSivCmac256]), eom()],
            agreed(AesSivCmac256),
        ),
        (
            "ntpv4 found among other protocols",
            vec![np(&[5, 0]), aead(&[AesSivCmac256]), eom()],
            agreed(AesSivCmac256),
        ),
        (
            "aead before next protocol",
            vec![aead(&[AesSivCmac256]), np(&[0]), eom()],
            agreed(AesSivCmac256),
        ),
        (
            "no protocol in common",
            vec![np(&[5]), aead(&[AesSivCmac256]), eom()],
            KeServerProgress::Refused(Refusal::NoCommonProtocol),
        ),
        (
            "empty protocol list",
            vec![np(&[]), eom()],
            KeServerProgress::Refused(Refusal::NoCommonProtocol),
        ),
        (
            "no aead in common",
            vec![np(&[0]), aead(&[AesSivCmac512, Unknown(3)]), eom()],
            KeServerProgress::Refused(Refusal::NoCommonAead),
        ),
        (
            "unknown non-critical record ignored",
            vec![unknown(false, 999), np(&[0]), aead(&[AesSivCmac256]), eom()],
            agreed(AesSivCmac256),
        ),
        (
            "client's server and port preference passed on",
            vec![
                np(&[0]),
                aead(&[AesSivCmac256]),
                Record::critical(RecordBody::Server("192.0.2.1".into())),
                Record::new(false, RecordBody::Port(4123)),
                eom(),
            ],
            KeServerProgress::Request(Negotiated {
                protocol: NextProtocol::NtpV4,
                algorithm: AesSivCmac256,
                requested_server: Some("192.0.2.1".into()),
                requested_port: Some(4123),
                compliant_gcm_siv: false,
            }),
        ),
    ];
    for (name, records, outcome) in cases {
        let mut s = server();
        assert_eq!(s.receive(&msg(&records)), Ok(outcome), "{name}");
        assert_eq!(s.finish(), Ok(()), "{name}");
    }
}

#[test]
fn server_list_is_an_allow_list() {
    let mut s = KeServer::new(&[Aes128GcmSiv, Unknown(15)]);
    let request = msg(&[np(&[0]), aead(&[AesSivCmac256]), eom()]);
    assert_eq!(
        s.receive(&request),
        Ok(KeServerProgress::Refused(Refusal::NoCommonAead))
    );
    let mut s = KeServer::new(&[]);
    assert_eq!(
        s.receive(&request),
        Ok(KeServerProgress::Refused(Refusal::NoCommonAead))
    );
}

#[test]
fn bad_requests_and_their_error_codes() {
    use KeServerError as E;
    let ok = || vec![np(&[0]), aead(&[AesSivCmac256])];
    let cases: Vec<(&str, Vec<Record>, KeServerError, ErrorCode)> = vec![
        (
            "unknown critical record",
            vec![unknown(true, 999), np(&[0]), aead(&[AesSivCmac256]), eom()],
            E::UnrecognizedCriticalRecord(999),
            ErrorCode::UnrecognizedCriticalRecord,
        ),
        (
            "duplicate next protocol",
            vec![np(&[0]), np(&[0]), aead(&[AesSivCmac256]), eom()],
            E::DuplicateRecord(1),
            ErrorCode::BadRequest,
        ),
        (
            "duplicate aead",
            vec![
                np(&[0]),
                aead(&[AesSivCmac256]),
                aead(&[AesSivCmac256]),
                eom(),
            ],
            E::DuplicateRecord(4),
            ErrorCode::BadRequest,
        ),
        (
            "missing next protocol",
            vec![aead(&[AesSivCmac256]), eom()],
            E::MissingNextProtocol,
            ErrorCode::BadRequest,
        ),
        (
            "missing aead with ntpv4",
            vec![np(&[0]), eom()],
            E::MissingAead,
            ErrorCode::BadRequest,
        ),
        (
            "empty aead list",
            vec![np(&[0]), aead(&[]), eom()],
            E::EmptyAeadList,
            ErrorCode::BadRequest,
        ),
        (
            "error record from a client",
            [
                ok(),
                vec![
                    Record::critical(RecordBody::Error(ErrorCode::BadRequest)),
                    eom(),
                ],
            ]
            .concat(),
            E::ForbiddenRecord(2),
            ErrorCode::BadRequest,
        ),
        (
            "warning record from a client",
            [
                ok(),
                vec![
                    Record::critical(RecordBody::Warning(WarningCode::Unknown(1))),
                    eom(),
                ],
            ]
            .concat(),
            E::ForbiddenRecord(3),
            ErrorCode::BadRequest,
        ),
        (
            "cookie from a client",
            [
                ok(),
                vec![Record::new(false, RecordBody::NewCookie(vec![1])), eom()],
            ]
            .concat(),
            E::ForbiddenRecord(5),
            ErrorCode::BadRequest,
        ),
        (
            "duplicate server",
            [
                ok(),
                vec![
                    Record::critical(RecordBody::Server("a".into())),
                    Record::critical(RecordBody::Server("a".into())),
                    eom(),
                ],
            ]
            .concat(),
            E::DuplicateRecord(6),
            ErrorCode::BadRequest,
        ),
        (
            "duplicate port",
            [
                ok(),
                vec![
                    Record::critical(RecordBody::Port(1)),
                    Record::critical(RecordBody::Port(2)),
                    eom(),
                ],
            ]
            .concat(),
            E::DuplicateRecord(7),
            ErrorCode::BadRequest,
        ),
        (
            "record after end of message",
            [ok(), vec![eom(), np(&[0])]].concat(),
            E::RecordAfterEndOfMessage,
            ErrorCode::BadRequest,
        ),
    ];
    for (name, records, error, code) in cases {
        let mut s = server();
        assert_eq!(s.receive(&msg(&records)), Err(error.clone()), "{name}");
        assert_eq!(error.error_code(), code, "{name}");
        // The failure sticks.
        assert_eq!(s.receive(&[]), Err(error.clone()), "{name}");
        assert_eq!(s.finish(), Err(error), "{name}");
    }
}

#[test]
fn malformed_record_is_a_bad_request() {
    let mut s = server();
    let err = s.receive(&[0x80, 1, 0, 1, 0]).unwrap_err();
    assert_eq!(
        err,
        KeServerError::Malformed(RecordError::OddLength {
            record_type: 1,
            len: 1
        })
    );
    assert_eq!(err.error_code(), ErrorCode::BadRequest);
}

#[test]
fn stream_end_before_end_of_message_is_a_bad_request() {
    let mut s = server();
    assert_eq!(
        s.receive(&msg(&[np(&[0]), aead(&[AesSivCmac256])])),
        Ok(KeServerProgress::NeedMore)
    );
    let err = s.finish().unwrap_err();
    assert_eq!(err, KeServerError::MissingEndOfMessage);
    assert_eq!(err.error_code(), ErrorCode::BadRequest);
}

#[test]
fn bytes_after_the_outcome_are_errors() {
    let request = msg(&[np(&[0]), aead(&[AesSivCmac256]), eom()]);
    let mut s = server();
    let _ = s.receive(&request).unwrap();
    assert_eq!(
        s.receive(&[0x80]),
        Err(KeServerError::RecordAfterEndOfMessage)
    );
    let mut s = server();
    let _ = s.receive(&request).unwrap();
    let err = s.receive(&[]).unwrap_err();
    assert_eq!(err, KeServerError::AlreadyFinished);
    assert_eq!(err.error_code(), ErrorCode::InternalServerError);
}

#[test]
fn request_split_byte_by_byte() {
    let request = KeClient::new(&[Aes128GcmSiv, AesSivCmac256]).request();
    let (last, head) = request.split_last().unwrap();
    let mut s = server();
    for b in head {
        assert_eq!(s.receive(&[*b]), Ok(KeServerProgress::NeedMore));
    }
    // Our client offers GCM-SIV with record 1024.
    assert_eq!(
        s.receive(&[*last]),
        Ok(KeServerProgress::Request(Negotiated {
            compliant_gcm_siv: true,
            ..negotiated(Aes128GcmSiv)
        }))
    );
}

/// A valid request padded with an ignored record to exactly `len` bytes.
fn padded_request(len: usize) -> Vec<u8> {
    let base = msg(&[np(&[0]), aead(&[AesSivCmac256]), eom()]).len();
    let pad = Record::new(
        false,
        RecordBody::Unknown {
            record_type: 0x2000,
            body: vec![0; len - base - 4],
        },
    );
    let wire = msg(&[pad, np(&[0]), aead(&[AesSivCmac256]), eom()]);
    assert_eq!(wire.len(), len);
    wire
}

#[test]
fn request_size_cap() {
    const { assert!(DEFAULT_MAX_REQUEST_LEN >= 1024) };
    let mut s = server();
    assert_eq!(
        s.receive(&padded_request(DEFAULT_MAX_REQUEST_LEN)),
        Ok(agreed(AesSivCmac256))
    );

    let mut s = server();
    let wire = padded_request(DEFAULT_MAX_REQUEST_LEN + 1);
    let err = s.receive(&wire).unwrap_err();
    assert_eq!(
        err,
        KeServerError::RequestTooLarge {
            limit: DEFAULT_MAX_REQUEST_LEN
        }
    );
    assert_eq!(err.error_code(), ErrorCode::BadRequest);

    // A larger cap admits it; a smaller one is raised to the minimum.
    let mut s = KeServer::with_max_request_len(&[AesSivCmac256], 4096);
    assert_eq!(s.receive(&padded_request(4096)), Ok(agreed(AesSivCmac256)));
    let mut s = KeServer::with_max_request_len(&[AesSivCmac256], 10);
    assert_eq!(
        s.receive(&padded_request(MIN_MAX_REQUEST_LEN)),
        Ok(agreed(AesSivCmac256))
    );
}

#[test]
fn response_layout() {
    let negotiated = Negotiated {
        protocol: NextProtocol::NtpV4,
        algorithm: AesSivCmac256,
        requested_server: None,
        requested_port: None,
        compliant_gcm_siv: false,
    };
    let cookies: Vec<Vec<u8>> = (0..COOKIE_COUNT as u8).map(|i| vec![i; 90]).collect();
    let wire = build_response(&negotiated, &cookies, Some("ntp.example"), Some(123)).unwrap();
    let mut expected = vec![np(&[0]), aead(&[AesSivCmac256])];
    expected.extend(
        cookies
            .iter()
            .map(|c| Record::new(false, RecordBody::NewCookie(c.clone()))),
    );
    expected.push(Record::critical(RecordBody::Server("ntp.example".into())));
    expected.push(Record::critical(RecordBody::Port(123)));
    expected.push(eom());
    assert_eq!(records_of(&wire), expected);

    let wire = build_response(&negotiated, &cookies[..1], None, None).unwrap();
    assert_eq!(
        records_of(&wire),
        vec![
            np(&[0]),
            aead(&[AesSivCmac256]),
            Record::new(false, RecordBody::NewCookie(cookies[0].clone())),
            eom()
        ]
    );

    assert_eq!(
        build_response(&negotiated, &[vec![]], None, None),
        Err(EncodeError::EmptyCookie)
    );
    assert_eq!(
        build_response(&negotiated, &cookies, Some("bad name"), None),
        Err(EncodeError::InvalidServerName)
    );
}

#[test]
fn sealing_in_place_gives_the_same_bytes_as_building_from_cookies() {
    for compliant_gcm_siv in [false, true] {
        let negotiated = Negotiated {
            compliant_gcm_siv,
            ..negotiated(Aes128GcmSiv)
        };
        let cookies: Vec<Vec<u8>> = (0..COOKIE_COUNT as u8).map(|i| vec![i + 1; 72]).collect();
        for (server, port) in [(None, None), (Some("ntp.example"), Some(4123))] {
            let mut next = cookies.iter();
            let sealed =
                build_response_sealing(&negotiated, 72, COOKIE_COUNT, server, port, |out| {
                    let cookie = next.next().ok_or("out of cookies")?;
                    out[..cookie.len()].copy_from_slice(cookie);
                    Ok::<_, &str>(cookie.len())
                })
                .unwrap();
            assert_eq!(
                sealed,
                build_response(&negotiated, &cookies, server, port).unwrap()
            );
        }
    }
}

#[test]
fn sealing_in_place_shrinks_short_cookies_and_refuses_overruns_and_failures() {
    let negotiated = negotiated(AesSivCmac256);
    let short = build_response_sealing(&negotiated, 104, 2, None, None, |out| {
        out[..100].fill(7);
        Ok::<_, ()>(100)
    })
    .unwrap();
    let cookies = vec![vec![7u8; 100]; 2];
    assert_eq!(
        short,
        build_response(&negotiated, &cookies, None, None).unwrap()
    );

    let overrun = build_response_sealing(&negotiated, 104, 1, None, None, |_| Ok::<_, ()>(105));
    assert_eq!(overrun, Err(SealingError::Overrun(104)));
    let empty = build_response_sealing(&negotiated, 104, 1, None, None, |_| Ok::<_, ()>(0));
    assert_eq!(empty, Err(SealingError::Encode(EncodeError::EmptyCookie)));
    let failed = build_response_sealing(&negotiated, 104, 1, None, None, |_| Err("no key"));
    assert_eq!(failed, Err(SealingError::Seal("no key")));
}

#[test]
fn refusal_and_error_layouts() {
    assert_eq!(
        refusal_response(Refusal::NoCommonProtocol),
        vec![0x80, 1, 0, 0, 0x80, 0, 0, 0]
    );
    assert_eq!(
        refusal_response(Refusal::NoCommonAead),
        vec![0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 0, 0x80, 0, 0, 0]
    );
    assert_eq!(
        error_response(ErrorCode::UnrecognizedCriticalRecord),
        vec![0x80, 2, 0, 2, 0, 0, 0x80, 0, 0, 0]
    );
    assert_eq!(
        error_response(ErrorCode::BadRequest),
        vec![0x80, 2, 0, 2, 0, 1, 0x80, 0, 0, 0]
    );
}

#[test]
fn client_understands_each_server_answer() {
    let answer = |wire: Vec<u8>| KeClient::new(&[AesSivCmac256]).receive(&wire);
    assert_eq!(
        answer(refusal_response(Refusal::NoCommonProtocol)),
        Err(KeClientError::ProtocolRefused)
    );
    assert_eq!(
        answer(refusal_response(Refusal::NoCommonAead)),
        Err(KeClientError::NoCommonAead)
    );
    assert_eq!(
        answer(error_response(ErrorCode::InternalServerError)),
        Err(KeClientError::ServerError(ErrorCode::InternalServerError))
    );
}

#[test]
fn client_and_server_state_machines_agree() {
    let client = KeClient::new(&[AesSivCmac512, AesSivCmac256]);
    let mut s = server();
    let KeServerProgress::Request(negotiated) = s.receive(&client.request()).unwrap() else {
        panic!("request refused");
    };
    assert_eq!(negotiated.algorithm, AesSivCmac256);
    let cookies = vec![vec![7u8; 100]; COOKIE_COUNT];
    let response = build_response(&negotiated, &cookies, None, Some(123)).unwrap();
    let mut client = client;
    let Ok(KeClientProgress::Done(r)) = client.receive(&response) else {
        panic!("response rejected");
    };
    assert_eq!(r.algorithm, AesSivCmac256);
    assert_eq!(r.cookies, cookies);
    assert_eq!(r.port, Some(123));
}

proptest! {
    #[test]
    fn arbitrary_reads_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..1200),
        cuts in prop::collection::vec(0usize..1200, 0..6),
    ) {
        let mut s = server();
        let mut rest: &[u8] = &bytes;
        for cut in cuts {
            let (head, tail) = rest.split_at(cut.min(rest.len()));
            rest = tail;
            if let Err(e) = s.receive(head) {
                let _ = error_response(e.error_code());
                return Ok(());
            }
        }
        let _ = s.receive(rest);
        let _ = s.finish();
    }
}

fn compliant_record() -> Record {
    Record::new(false, RecordBody::CompliantGcmSivExport)
}

fn negotiate(records: &[Record]) -> Negotiated {
    match KeServer::new(&AeadAlgorithm::SUPPORTED).receive(&msg(records)) {
        Ok(KeServerProgress::Request(n)) => n,
        other => panic!("{other:?}"),
    }
}

#[test]
fn record_1024_selects_compliant_gcm_siv_keys_and_is_echoed() {
    use sundial_proto::nts::key_export::KeyContext;
    let n = negotiate(&[
        np(&[0]),
        aead(&[Aes128GcmSiv, AesSivCmac256]),
        compliant_record(),
        eom(),
    ]);
    assert_eq!(n.algorithm, Aes128GcmSiv);
    assert!(n.compliant_gcm_siv && n.echoes_compliant_gcm_siv());
    assert_eq!(n.key_context(), KeyContext::Compliant);
    let wire = build_response(&n, &[vec![1; 72]], None, None).unwrap();
    assert_eq!(
        records_of(&wire),
        vec![
            np(&[0]),
            aead(&[Aes128GcmSiv]),
            compliant_record(),
            Record::new(false, RecordBody::NewCookie(vec![1; 72])),
            eom(),
        ]
    );
    // Another algorithm chosen: nothing to echo (chrony does the same).
    let n = negotiate(&[np(&[0]), aead(&[AesSivCmac512]), compliant_record(), eom()]);
    assert!(!n.echoes_compliant_gcm_siv());
    assert_eq!(n.key_context(), KeyContext::Compliant);
    let wire = build_response(&n, &[vec![1; 72]], None, None).unwrap();
    assert!(!records_of(&wire).contains(&compliant_record()));
}

#[test]
fn gcm_siv_without_record_1024_is_passed_over_when_the_client_offers_more() {
    use sundial_proto::nts::key_export::KeyContext;
    // chrony 4.4 to 4.6.0 offer [30, 15]: 15 is unambiguous.
    let n = negotiate(&[np(&[0]), aead(&[Aes128GcmSiv, AesSivCmac256]), eom()]);
    assert_eq!(n.algorithm, AesSivCmac256);
    assert_eq!(n.key_context(), KeyContext::Compliant);
    // Offering GCM-SIV alone: chrony's legacy keys, as chrony 4.6.1+ does.
    let n = negotiate(&[np(&[0]), aead(&[Unknown(99), Aes128GcmSiv]), eom()]);
    assert_eq!(n.algorithm, Aes128GcmSiv);
    assert!(!n.echoes_compliant_gcm_siv());
    assert_eq!(n.key_context(), KeyContext::LegacyGcmSiv);
    // A server that allows only GCM-SIV still serves such a client.
    let mut s = KeServer::new(&[Aes128GcmSiv]);
    let Ok(KeServerProgress::Request(n)) = s.receive(&msg(&[
        np(&[0]),
        aead(&[AesSivCmac256, Aes128GcmSiv]),
        eom(),
    ])) else {
        panic!("refused");
    };
    assert_eq!(n.algorithm, Aes128GcmSiv);
    assert_eq!(n.key_context(), KeyContext::LegacyGcmSiv);
}

#[test]
fn record_1024_twice_or_with_a_body_is_a_bad_request() {
    let mut s = server();
    let twice = msg(&[
        np(&[0]),
        aead(&[Aes128GcmSiv]),
        compliant_record(),
        compliant_record(),
        eom(),
    ]);
    let e = s.receive(&twice).unwrap_err();
    assert_eq!(e, KeServerError::DuplicateRecord(1024));
    assert_eq!(e.error_code(), ErrorCode::BadRequest);
    let mut body = msg(&[np(&[0]), aead(&[Aes128GcmSiv])]);
    body.extend_from_slice(&[0x04, 0x00, 0, 1, 0]);
    let e = server().receive(&body).unwrap_err();
    assert!(matches!(e, KeServerError::Malformed(_)), "{e:?}");
    assert_eq!(e.error_code(), ErrorCode::BadRequest);
}
