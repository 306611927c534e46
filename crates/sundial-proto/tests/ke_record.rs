//! NTS-KE record encoding and decoding (RFC 8915 section 4).

use proptest::prelude::*;
use sundial_proto::nts::aead::AeadAlgorithm;
use sundial_proto::nts::ke_record::{
    Decoded, EncodeError, ErrorCode, NextProtocol, Record, RecordBody, RecordError, WarningCode,
    decode,
};
use sundial_proto::reader::Writer;

fn encoded(record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    record.encode(&mut out).unwrap();
    out
}

#[test]
fn known_records_have_their_wire_form() {
    let cases: Vec<(Record, Vec<u8>)> = vec![
        (
            Record::critical(RecordBody::EndOfMessage),
            vec![0x80, 0, 0, 0],
        ),
        (
            Record::critical(RecordBody::NextProtocol(vec![NextProtocol::NtpV4])),
            vec![0x80, 1, 0, 2, 0, 0],
        ),
        (
            Record::critical(RecordBody::NextProtocol(vec![])),
            vec![0x80, 1, 0, 0],
        ),
        (
            Record::critical(RecordBody::Error(ErrorCode::BadRequest)),
            vec![0x80, 2, 0, 2, 0, 1],
        ),
        (
            Record::critical(RecordBody::Warning(WarningCode::Unknown(7))),
            vec![0x80, 3, 0, 2, 0, 7],
        ),
        (
            Record::critical(RecordBody::AeadAlgorithm(vec![
                AeadAlgorithm::AesSivCmac256,
                AeadAlgorithm::Aes128GcmSiv,
            ])),
            vec![0x80, 4, 0, 4, 0, 15, 0, 30],
        ),
        (
            Record::new(false, RecordBody::NewCookie(vec![0xaa, 0xbb, 0xcc])),
            vec![0, 5, 0, 3, 0xaa, 0xbb, 0xcc],
        ),
        (
            Record::critical(RecordBody::Server("ntp.example".into())),
            [&[0x80, 6, 0, 11][..], b"ntp.example"].concat(),
        ),
        (
            Record::critical(RecordBody::Port(123)),
            vec![0x80, 7, 0, 2, 0, 123],
        ),
        (
            Record::new(
                false,
                RecordBody::Unknown {
                    record_type: 0x4000,
                    body: vec![1, 2],
                },
            ),
            vec![0x40, 0, 0, 2, 1, 2],
        ),
        (
            Record::critical(RecordBody::Unknown {
                record_type: 1025,
                body: vec![],
            }),
            vec![0x84, 1, 0, 0],
        ),
        // chrony's "compliant AES-128-GCM-SIV exporter context".
        (
            Record::new(false, RecordBody::CompliantGcmSivExport),
            vec![0x04, 0, 0, 0],
        ),
    ];
    for (record, wire) in cases {
        assert_eq!(encoded(&record), wire, "{record:?}");
        assert_eq!(record.encoded_len(), Ok(wire.len()));
        assert_eq!(
            decode(&wire),
            Ok(Decoded::Complete {
                record: record.clone(),
                consumed: wire.len()
            }),
            "{record:?}"
        );
        // Every strict prefix is a partial read, never an error.
        for cut in 0..wire.len() {
            assert_eq!(
                decode(&wire[..cut]),
                Ok(Decoded::Incomplete),
                "{record:?} cut {cut}"
            );
        }
        // Bytes after the record belong to the next one.
        let mut longer = wire.clone();
        longer.extend_from_slice(&[0x80, 0]);
        assert!(matches!(
            decode(&longer),
            Ok(Decoded::Complete { consumed, .. }) if consumed == wire.len()
        ));
    }
}

#[test]
fn non_critical_known_records_keep_their_bit() {
    let decoded = decode(&[0, 0, 0, 0]).unwrap();
    assert_eq!(
        decoded,
        Decoded::Complete {
            record: Record::new(false, RecordBody::EndOfMessage),
            consumed: 4
        }
    );
}

#[test]
fn malformed_bodies_are_typed_errors() {
    let cases: Vec<(Vec<u8>, RecordError)> = vec![
        (
            vec![0x04, 0, 0, 2, 0, 0],
            RecordError::WrongLength {
                record_type: 1024,
                expected: 0,
                got: 2,
            },
        ),
        (
            vec![0x80, 0, 0, 1, 0],
            RecordError::WrongLength {
                record_type: 0,
                expected: 0,
                got: 1,
            },
        ),
        (
            vec![0x80, 1, 0, 3, 0, 0, 0],
            RecordError::OddLength {
                record_type: 1,
                len: 3,
            },
        ),
        (
            vec![0x80, 2, 0, 1, 0],
            RecordError::WrongLength {
                record_type: 2,
                expected: 2,
                got: 1,
            },
        ),
        (
            vec![0x80, 2, 0, 4, 0, 0, 0, 0],
            RecordError::WrongLength {
                record_type: 2,
                expected: 2,
                got: 4,
            },
        ),
        (
            vec![0x80, 3, 0, 0],
            RecordError::WrongLength {
                record_type: 3,
                expected: 2,
                got: 0,
            },
        ),
        (
            vec![0x80, 4, 0, 1, 15],
            RecordError::OddLength {
                record_type: 4,
                len: 1,
            },
        ),
        (vec![0, 5, 0, 0], RecordError::EmptyBody { record_type: 5 }),
        (
            vec![0x80, 6, 0, 0],
            RecordError::EmptyBody { record_type: 6 },
        ),
        (
            vec![0x80, 6, 0, 2, b'a', 0xc3],
            RecordError::InvalidServerName,
        ),
        (vec![0x80, 6, 0, 2, b'a', 0], RecordError::InvalidServerName),
        (
            vec![0x80, 6, 0, 3, b'a', b' ', b'b'],
            RecordError::InvalidServerName,
        ),
        (
            vec![0x80, 7, 0, 3, 0, 123, 0],
            RecordError::WrongLength {
                record_type: 7,
                expected: 2,
                got: 3,
            },
        ),
    ];
    for (wire, error) in cases {
        assert_eq!(decode(&wire), Err(error), "{wire:?}");
    }
}

#[test]
fn unencodable_records_are_typed_errors_and_leave_the_buffer_alone() {
    let cases = vec![
        (
            RecordBody::NewCookie(vec![0; 65536]),
            EncodeError::BodyTooLong(65536),
        ),
        (RecordBody::NewCookie(vec![]), EncodeError::EmptyCookie),
        (
            RecordBody::Server("é".into()),
            EncodeError::InvalidServerName,
        ),
        (
            RecordBody::Server(String::new()),
            EncodeError::InvalidServerName,
        ),
        (
            RecordBody::Unknown {
                record_type: 5,
                body: vec![1],
            },
            EncodeError::InvalidRecordType(5),
        ),
        (
            RecordBody::Unknown {
                record_type: 0x8001,
                body: vec![],
            },
            EncodeError::InvalidRecordType(0x8001),
        ),
        // Known now: it must be sent as itself.
        (
            RecordBody::Unknown {
                record_type: 1024,
                body: vec![],
            },
            EncodeError::InvalidRecordType(1024),
        ),
        (
            RecordBody::AeadAlgorithm(vec![AeadAlgorithm::AesSivCmac256; 40000]),
            EncodeError::BodyTooLong(80000),
        ),
    ];
    for (body, error) in cases {
        let mut out = vec![9];
        assert_eq!(Record::critical(body).encode(&mut out), Err(error));
        assert_eq!(out, vec![9]);
    }
}

#[test]
fn encode_into_a_small_writer_fails_cleanly() {
    let mut buf = [0u8; 5];
    let mut w = Writer::new(&mut buf);
    let record = Record::critical(RecordBody::Port(4460));
    assert!(matches!(
        record.encode_to(&mut w),
        Err(EncodeError::BufferTooSmall(_))
    ));
    let mut buf = [0u8; 6];
    let mut w = Writer::new(&mut buf);
    record.encode_to(&mut w).unwrap();
    assert_eq!(w.written(), &[0x80, 7, 0x00, 0x02, 0x11, 0x6c]);
}

#[test]
fn wire_enums_keep_unknown_values() {
    assert_eq!(NextProtocol::from_u16(0), NextProtocol::NtpV4);
    assert_eq!(NextProtocol::from_u16(0x8000).to_u16(), 0x8000);
    for code in 0..5u16 {
        assert_eq!(ErrorCode::from_u16(code).to_u16(), code);
    }
    assert_eq!(
        ErrorCode::from_u16(0),
        ErrorCode::UnrecognizedCriticalRecord
    );
    assert_eq!(ErrorCode::from_u16(1), ErrorCode::BadRequest);
    assert_eq!(ErrorCode::from_u16(2), ErrorCode::InternalServerError);
    assert_eq!(ErrorCode::from_u16(3), ErrorCode::Unknown(3));
    assert_eq!(WarningCode::from_u16(4).to_u16(), 4);
}

fn u16_id() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..40, any::<u16>()]
}

fn arb_body() -> impl Strategy<Value = RecordBody> {
    prop_oneof![
        Just(RecordBody::EndOfMessage),
        prop::collection::vec(u16_id().prop_map(NextProtocol::from_u16), 0..8)
            .prop_map(RecordBody::NextProtocol),
        u16_id().prop_map(|c| RecordBody::Error(ErrorCode::from_u16(c))),
        u16_id().prop_map(|c| RecordBody::Warning(WarningCode::from_u16(c))),
        prop::collection::vec(u16_id().prop_map(AeadAlgorithm::from_u16), 0..8)
            .prop_map(RecordBody::AeadAlgorithm),
        prop::collection::vec(any::<u8>(), 1..200).prop_map(RecordBody::NewCookie),
        "[!-~]{1,64}".prop_map(RecordBody::Server),
        any::<u16>().prop_map(RecordBody::Port),
        Just(RecordBody::CompliantGcmSivExport),
        (8u16..=0x7fff, prop::collection::vec(any::<u8>(), 0..64))
            .prop_filter("1024 is known", |(record_type, _)| *record_type != 1024)
            .prop_map(|(record_type, body)| RecordBody::Unknown { record_type, body }),
    ]
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Decoded::Complete { record, consumed }) = decode(&bytes) {
            prop_assert!(consumed <= bytes.len());
            // Whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(encoded(&record), &bytes[..consumed]);
        }
    }

    #[test]
    fn encode_then_decode_is_identity(critical in any::<bool>(), body in arb_body()) {
        let record = Record::new(critical, body);
        let wire = encoded(&record);
        prop_assert_eq!(
            decode(&wire),
            Ok(Decoded::Complete { record, consumed: wire.len() })
        );
    }
}

#[test]
fn record_reader_yields_whole_records_from_any_reads() {
    use sundial_proto::nts::ke_record::{MessageTooLarge, RecordReader};
    let records = vec![
        Record::critical(RecordBody::NextProtocol(vec![NextProtocol::NtpV4])),
        Record::new(false, RecordBody::NewCookie(vec![5; 40])),
        Record::critical(RecordBody::EndOfMessage),
    ];
    let wire: Vec<u8> = records.iter().flat_map(encoded).collect();
    for piece in 1..=wire.len() {
        let mut reader = RecordReader::new(wire.len());
        let mut got = Vec::new();
        for chunk in wire.chunks(piece) {
            reader.push(chunk).unwrap();
            while let Some(record) = reader.next_record().unwrap() {
                got.push(record);
            }
        }
        assert_eq!(got, records, "piece {piece}");
        assert!(!reader.has_unread());
    }
    // The limit counts every byte pushed, not just the unread ones.
    let mut reader = RecordReader::new(wire.len());
    reader.push(&wire).unwrap();
    while reader.next_record().unwrap().is_some() {}
    assert_eq!(
        reader.push(&[0]),
        Err(MessageTooLarge { limit: wire.len() })
    );
    let mut reader = RecordReader::new(3);
    reader.push(&[0x80, 0]).unwrap();
    assert!(reader.has_unread());
    assert_eq!(reader.next_record(), Ok(None));
}
