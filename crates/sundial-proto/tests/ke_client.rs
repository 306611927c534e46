//! The NTS-KE client state machine against RFC 8915 section 4.1.

use proptest::prelude::*;
use sundial_proto::nts::aead::AeadAlgorithm::{self, *};
use sundial_proto::nts::ke_client::{
    KeClient, KeClientError, KeClientProgress, KeResponse, MAX_RESPONSE_LEN,
};
use sundial_proto::nts::ke_record::{
    ErrorCode, NextProtocol, Record, RecordBody, RecordError, WarningCode,
};
use sundial_proto::nts::key_export::KeyContext;

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
fn cookie(byte: u8) -> Record {
    Record::new(false, RecordBody::NewCookie(vec![byte; 100]))
}
fn eom() -> Record {
    Record::critical(RecordBody::EndOfMessage)
}
fn unknown(critical: bool, record_type: u16) -> Record {
    Record::new(
        critical,
        RecordBody::Unknown {
            record_type,
            body: vec![1, 2, 3],
        },
    )
}
fn client() -> KeClient {
    KeClient::new(&[AesSivCmac256, Aes128GcmSiv])
}
fn good() -> Vec<Record> {
    vec![np(&[0]), aead(&[Aes128GcmSiv]), cookie(1), cookie(2), eom()]
}

#[test]
fn request_is_next_protocol_aead_end_all_critical() {
    assert_eq!(
        KeClient::new(&[AesSivCmac256, AesSivCmac512]).request(),
        vec![
            0x80, 1, 0, 2, 0, 0, // Next Protocol [NTPv4]
            0x80, 4, 0, 4, 0, 15, 0, 17, // AEAD [15, 17]
            0x80, 0, 0, 0, // End of Message
        ]
    );
}

#[test]
fn offering_gcm_siv_adds_chronys_non_critical_record_1024() {
    let c = client();
    assert!(c.sends_compliant_gcm_siv_record());
    assert_eq!(
        c.request(),
        vec![
            0x80, 1, 0, 2, 0, 0, // Next Protocol [NTPv4]
            0x80, 4, 0, 4, 0, 15, 0, 30, // AEAD [15, 30]
            0x04, 0, 0, 0, // 1024, not critical, empty
            0x80, 0, 0, 0, // End of Message
        ]
    );
    // An older client's request, for tests of servers.
    let old = client().without_compliant_gcm_siv_record();
    assert!(!old.sends_compliant_gcm_siv_record());
    assert_eq!(
        old.request(),
        vec![
            0x80, 1, 0, 2, 0, 0, // Next Protocol [NTPv4]
            0x80, 4, 0, 4, 0, 15, 0, 30, // AEAD [15, 30]
            0x80, 0, 0, 0, // End of Message
        ]
    );
}

#[test]
fn key_context_follows_the_servers_record_1024() {
    let compliant = Record::new(false, RecordBody::CompliantGcmSivExport);
    let done = |records: Vec<Record>| match client().receive(&msg(&records)) {
        Ok(KeClientProgress::Done(r)) => (r.algorithm, r.key_context, r.fallback_key_context),
        other => panic!("{other:?}"),
    };
    // GCM-SIV and the record: compliant keys, nothing to fall back to.
    let mut with = good();
    with.insert(2, compliant.clone());
    assert_eq!(done(with), (Aes128GcmSiv, KeyContext::Compliant, None));
    // GCM-SIV without it: an older chrony (legacy), or a compliant server
    // unaware of the record (the fallback after an NTS NAK).
    assert_eq!(
        done(good()),
        (
            Aes128GcmSiv,
            KeyContext::LegacyGcmSiv,
            Some(KeyContext::Compliant)
        )
    );
    // Another algorithm: the record changes nothing.
    let mut other = good();
    other[1] = aead(&[AesSivCmac256]);
    assert_eq!(
        done(other.clone()),
        (AesSivCmac256, KeyContext::Compliant, None)
    );
    other.insert(2, compliant.clone());
    assert_eq!(done(other), (AesSivCmac256, KeyContext::Compliant, None));
    // Twice is a malformed answer, as for every other singleton record.
    let mut twice = good();
    twice.insert(2, compliant.clone());
    twice.insert(2, compliant);
    assert_eq!(
        client().receive(&msg(&twice)),
        Err(KeClientError::DuplicateRecord(1024))
    );
    // A body is refused (chrony refuses it too).
    let mut body = msg(&good()[..2]);
    body.extend_from_slice(&[0x04, 0, 0, 1, 7]);
    assert!(matches!(
        client().receive(&body),
        Err(KeClientError::Malformed(_))
    ));
}

#[test]
fn offered_list_drops_unusable_and_repeats_and_never_is_empty() {
    let c = KeClient::new(&[Unknown(99), AesSivCmac512, AesSivCmac512, AesSivCmac256]);
    assert_eq!(c.offered(), &[AesSivCmac512, AesSivCmac256]);
    assert_eq!(KeClient::new(&[]).offered(), &AeadAlgorithm::SUPPORTED);
    assert_eq!(
        KeClient::new(&[Unknown(1)]).offered(),
        &AeadAlgorithm::SUPPORTED
    );
}

#[test]
fn valid_response_in_one_read() {
    let mut c = client();
    let mut records = good();
    records.insert(
        1,
        Record::critical(RecordBody::Server("ntp.example.".into())),
    );
    records.insert(2, Record::critical(RecordBody::Port(1234)));
    assert_eq!(
        c.receive(&msg(&records)),
        Ok(KeClientProgress::Done(KeResponse {
            protocol: NextProtocol::NtpV4,
            algorithm: Aes128GcmSiv,
            cookies: vec![vec![1; 100], vec![2; 100]],
            server: Some("ntp.example.".into()),
            port: Some(1234),
            warnings: vec![],
            // GCM-SIV without record 1024 in the answer: chrony's legacy
            // keys first, compliant ones after an NTS NAK.
            key_context: KeyContext::LegacyGcmSiv,
            fallback_key_context: Some(KeyContext::Compliant),
        }))
    );
    assert_eq!(c.finish(), Ok(()));
}

#[test]
fn response_split_byte_by_byte() {
    let mut c = client();
    let wire = msg(&good());
    let (last, head) = wire.split_last().unwrap();
    for b in head {
        assert_eq!(c.receive(&[*b]), Ok(KeClientProgress::NeedMore));
    }
    // An empty read changes nothing.
    assert_eq!(c.receive(&[]), Ok(KeClientProgress::NeedMore));
    assert!(matches!(
        c.receive(&[*last]),
        Ok(KeClientProgress::Done(r)) if r.cookies.len() == 2 && r.server.is_none() && r.port.is_none()
    ));
}

#[test]
fn rules_of_rfc_8915_4_1() {
    use KeClientError as E;
    let cases: Vec<(&str, Vec<Record>, KeClientError)> = vec![
        (
            "no next protocol",
            vec![aead(&[AesSivCmac256]), cookie(1), eom()],
            E::MissingNextProtocol,
        ),
        (
            "empty next protocol: refused",
            vec![np(&[]), eom()],
            E::ProtocolRefused,
        ),
        (
            "two protocol ids",
            vec![np(&[0, 0]), aead(&[AesSivCmac256]), cookie(1), eom()],
            E::UnexpectedProtocols(vec![NextProtocol::NtpV4, NextProtocol::NtpV4]),
        ),
        (
            "protocol not offered",
            vec![np(&[7]), aead(&[AesSivCmac256]), cookie(1), eom()],
            E::UnexpectedProtocols(vec![NextProtocol::Unknown(7)]),
        ),
        (
            "two next protocol records",
            vec![np(&[0]), np(&[0]), aead(&[AesSivCmac256]), cookie(1), eom()],
            E::DuplicateRecord(1),
        ),
        (
            "no aead record",
            vec![np(&[0]), cookie(1), eom()],
            E::MissingAead,
        ),
        (
            "empty aead: none in common",
            vec![np(&[0]), aead(&[]), eom()],
            E::NoCommonAead,
        ),
        (
            "aead not offered",
            vec![np(&[0]), aead(&[AesSivCmac512]), cookie(1), eom()],
            E::AeadNotOffered(AesSivCmac512),
        ),
        (
            "two algorithms",
            vec![
                np(&[0]),
                aead(&[AesSivCmac256, Aes128GcmSiv]),
                cookie(1),
                eom(),
            ],
            E::MultipleAead(vec![AesSivCmac256, Aes128GcmSiv]),
        ),
        (
            "two aead records",
            vec![
                np(&[0]),
                aead(&[AesSivCmac256]),
                aead(&[AesSivCmac256]),
                cookie(1),
                eom(),
            ],
            E::DuplicateRecord(4),
        ),
        (
            "no cookie",
            vec![np(&[0]), aead(&[AesSivCmac256]), eom()],
            E::NoCookies,
        ),
        (
            "error record",
            vec![
                Record::critical(RecordBody::Error(ErrorCode::BadRequest)),
                eom(),
            ],
            E::ServerError(ErrorCode::BadRequest),
        ),
        (
            "error record with unknown code",
            vec![
                np(&[0]),
                Record::critical(RecordBody::Error(ErrorCode::Unknown(77))),
                eom(),
            ],
            E::ServerError(ErrorCode::Unknown(77)),
        ),
        (
            "unrecognized warning",
            vec![
                Record::critical(RecordBody::Warning(WarningCode::Unknown(3))),
                np(&[0]),
                aead(&[AesSivCmac256]),
                cookie(1),
                eom(),
            ],
            E::UnrecognizedWarning(WarningCode::Unknown(3)),
        ),
        (
            "unknown critical record",
            vec![
                np(&[0]),
                unknown(true, 300),
                aead(&[AesSivCmac256]),
                cookie(1),
                eom(),
            ],
            E::UnrecognizedCriticalRecord(300),
        ),
        (
            "two server records",
            vec![
                Record::critical(RecordBody::Server("a".into())),
                Record::critical(RecordBody::Server("b".into())),
            ],
            E::DuplicateRecord(6),
        ),
        (
            "two port records",
            vec![
                Record::critical(RecordBody::Port(1)),
                Record::critical(RecordBody::Port(1)),
            ],
            E::DuplicateRecord(7),
        ),
        (
            "record after end of message",
            [good(), vec![cookie(3)]].concat(),
            E::RecordAfterEndOfMessage,
        ),
    ];
    for (name, records, error) in cases {
        let mut c = client();
        assert_eq!(c.receive(&msg(&records)), Err(error.clone()), "{name}");
        // The failure sticks.
        assert_eq!(c.receive(&[]), Err(error.clone()), "{name}");
        assert_eq!(c.finish(), Err(error), "{name}");
    }
}

#[test]
fn unknown_non_critical_records_are_ignored() {
    let mut c = client();
    let records = [vec![unknown(false, 300)], good(), vec![]].concat();
    let mut records = records;
    records.insert(3, unknown(false, 0x7fff));
    assert!(matches!(
        c.receive(&msg(&records)),
        Ok(KeClientProgress::Done(_))
    ));
}

#[test]
fn malformed_record_is_an_error() {
    let mut c = client();
    assert_eq!(
        c.receive(&[0x80, 4, 0, 1, 15]),
        Err(KeClientError::Malformed(RecordError::OddLength {
            record_type: 4,
            len: 1
        }))
    );
}

#[test]
fn partial_trailing_bytes_after_end_of_message_are_an_error() {
    let mut c = client();
    let mut wire = msg(&good());
    wire.push(0x80);
    assert_eq!(
        c.receive(&wire),
        Err(KeClientError::RecordAfterEndOfMessage)
    );
}

#[test]
fn bytes_after_done_are_an_error() {
    let mut c = client();
    assert!(matches!(
        c.receive(&msg(&good())),
        Ok(KeClientProgress::Done(_))
    ));
    assert_eq!(c.receive(&[]), Err(KeClientError::AlreadyFinished));
    let mut c = client();
    let _ = c.receive(&msg(&good()));
    assert_eq!(c.receive(&[0]), Err(KeClientError::RecordAfterEndOfMessage));
}

#[test]
fn stream_end_before_end_of_message() {
    let mut c = client();
    let wire = msg(&good());
    assert_eq!(
        c.receive(&wire[..wire.len() - 4]),
        Ok(KeClientProgress::NeedMore)
    );
    assert_eq!(c.finish(), Err(KeClientError::MissingEndOfMessage));
}

/// A valid response padded with an ignored record to exactly `len` bytes.
fn padded_response(len: usize) -> Vec<u8> {
    let base = msg(&good()).len();
    let pad = len - base - 4;
    let mut records = good();
    records.insert(
        0,
        Record::new(
            false,
            RecordBody::Unknown {
                record_type: 0x1000,
                body: vec![0; pad],
            },
        ),
    );
    let wire = msg(&records);
    assert_eq!(wire.len(), len);
    wire
}

#[test]
fn response_size_is_capped_at_64_kib() {
    let mut c = client();
    let wire = padded_response(MAX_RESPONSE_LEN);
    for chunk in wire.chunks(1000) {
        let _ = c.receive(chunk).unwrap();
    }
    c.finish().unwrap();

    let mut c = client();
    let wire = padded_response(MAX_RESPONSE_LEN + 1);
    let (head, tail) = wire.split_at(MAX_RESPONSE_LEN);
    assert_eq!(c.receive(head), Ok(KeClientProgress::NeedMore));
    assert_eq!(
        c.receive(tail),
        Err(KeClientError::ResponseTooLarge {
            limit: MAX_RESPONSE_LEN
        })
    );
}

proptest! {
    #[test]
    fn arbitrary_reads_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        cuts in prop::collection::vec(0usize..400, 0..6),
    ) {
        let mut c = client();
        let mut rest: &[u8] = &bytes;
        for cut in cuts {
            let (head, tail) = rest.split_at(cut.min(rest.len()));
            rest = tail;
            if c.receive(head).is_err() {
                return Ok(());
            }
        }
        let _ = c.receive(rest);
        let _ = c.finish();
    }

    #[test]
    fn valid_response_in_any_split(cut_a in 0usize..300, cut_b in 0usize..300) {
        let wire = msg(&good());
        let a = cut_a.min(wire.len());
        let b = cut_b.min(wire.len()).max(a);
        let mut c = client();
        let mut done = None;
        for part in [&wire[..a], &wire[a..b], &wire[b..]] {
            if done.is_some() {
                prop_assert!(part.is_empty());
                continue;
            }
            match c.receive(part).unwrap() {
                KeClientProgress::NeedMore => {}
                KeClientProgress::Done(r) => done = Some(r),
            }
        }
        prop_assert_eq!(done.map(|r| r.algorithm), Some(Aes128GcmSiv));
    }
}
