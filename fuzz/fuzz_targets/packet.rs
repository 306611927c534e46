//! `NtpHeader::parse` on arbitrary bytes: no panic; a parsed header
//! serializes back to exactly the first 48 bytes, and serializing into a
//! buffer that is too short fails cleanly. The timestamp conversions the
//! daemon applies to parsed headers run on the parsed values too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_proto::ntp::packet::{HEADER_LEN, NtpHeader, ParseError};
use sundial_proto::ntp::timestamp::{NtpDuration, NtpTimestamp};
use sundial_proto::reader::Writer;

fuzz_target!(|data: &[u8]| {
    match NtpHeader::parse(data) {
        Ok((header, rest)) => {
            assert!(data.len() >= HEADER_LEN);
            assert_eq!(rest, &data[HEADER_LEN..]);
            assert!((1..=4).contains(&header.version));
            assert_eq!(&header.to_bytes()[..], &data[..HEADER_LEN]);

            let mut buf = [0u8; HEADER_LEN + 8];
            let mut w = Writer::new(&mut buf);
            header.serialize(&mut w).expect("fits");
            assert_eq!(w.len(), HEADER_LEN);
            assert_eq!(w.written(), &data[..HEADER_LEN]);
            let short = usize::from(data[1]) % HEADER_LEN;
            let mut buf = [0u8; HEADER_LEN];
            assert!(
                header
                    .serialize(&mut Writer::new(&mut buf[..short]))
                    .is_err()
            );

            let _ = header.kiss_code();
            // What a client does with the four timestamps and the root values.
            let t = [
                header.reference_timestamp,
                header.origin_timestamp,
                header.receive_timestamp,
                header.transmit_timestamp,
            ];
            let offset = ((t[2] - t[1]) + (t[3] - t[0])).as_seconds() / 2.0;
            let delay = (t[3] - t[1]) - (t[3] - t[2]);
            let _ = NtpDuration::from_seconds(offset).abs().to_short();
            let _ = delay.as_nanos();
            let _ = NtpDuration::from_nanos(delay.as_nanos());
            let _ = -delay;
            let _ = header.root_delay.to_duration() + header.root_dispersion.to_duration();
            let _ = header.root_delay.as_seconds();
            let near = i64::from_be_bytes(t[0].to_bits().to_be_bytes());
            for ts in t {
                let (secs, nanos) = ts.to_unix(near);
                assert!(nanos < 1_000_000_000);
                let _ = NtpTimestamp::from_unix(secs, nanos);
                let _ = ts + delay;
                let _ = ts - delay;
            }
        }
        Err(ParseError::TooShort(n)) => {
            assert_eq!(n, data.len());
            assert!(n < HEADER_LEN);
        }
        Err(ParseError::Version(v)) => assert!(!(1..=4).contains(&v)),
        Err(_) => {}
    }
});
