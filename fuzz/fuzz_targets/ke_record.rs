//! NTS-KE record decoding. A complete record re-encodes to exactly the bytes
//! it was decoded from and decodes back to itself; `RecordReader` fed the
//! same bytes in chunks of fuzzer-chosen sizes yields the same records as
//! decoding the whole buffer in one go.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::chunks;
use sundial_proto::nts::ke_record::{Decoded, HEADER_LEN, RecordReader, decode};

fuzz_target!(|data: &[u8]| {
    let parts = chunks(data);
    let whole: Vec<u8> = parts.concat();

    // One record from the front.
    if let Ok(Decoded::Complete { record, consumed }) = decode(&whole) {
        assert!(consumed >= HEADER_LEN && consumed <= whole.len());
        let mut out = Vec::new();
        record.encode(&mut out).expect("a decoded record encodes");
        assert_eq!(out, &whole[..consumed]);
        assert_eq!(record.encoded_len(), Ok(consumed));
        assert_eq!(
            decode(&out),
            Ok(Decoded::Complete {
                record: record.clone(),
                consumed
            })
        );
        // Any strict prefix is incomplete.
        let cut = usize::from(whole[0]) % consumed;
        assert_eq!(decode(&whole[..cut]), Ok(Decoded::Incomplete));
    }

    // Every record, decoded in one go...
    let mut expected = Vec::new();
    let mut at = 0;
    let expected_end = loop {
        match decode(&whole[at..]) {
            Ok(Decoded::Complete { record, consumed }) => {
                expected.push(record);
                at += consumed;
            }
            Ok(Decoded::Incomplete) => break Ok(()),
            Err(e) => break Err(e),
        }
    };

    // ...and through the streaming reader, chunk by chunk.
    let mut reader = RecordReader::new(usize::MAX);
    let mut got = Vec::new();
    let mut got_end = Ok(());
    'outer: for part in &parts {
        reader.push(part).expect("no limit");
        loop {
            match reader.next_record() {
                Ok(Some(record)) => got.push(record),
                Ok(None) => break,
                Err(e) => {
                    got_end = Err(e);
                    break 'outer;
                }
            }
        }
    }
    assert_eq!(got, expected);
    assert_eq!(got_end, expected_end);
    if got_end.is_ok() {
        assert_eq!(reader.has_unread(), at < whole.len());
    }

    // A limit is enforced over the reader's whole life.
    let limit = whole.len() / 2;
    let mut capped = RecordReader::new(limit);
    let mut pushed = 0usize;
    for part in &parts {
        let ok = capped.push(part).is_ok();
        pushed += part.len();
        assert_eq!(ok, pushed <= limit);
        if !ok {
            break;
        }
    }
});
