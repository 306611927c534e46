//! The extension field area (RFC 7822 / RFC 8915) in both placements, and
//! the NTS Authenticator body. Invariants: fields tile the area in order and
//! within bounds, their lengths obey the placement's rules, each field
//! re-encodes to the very bytes it was parsed from, and once a field is
//! malformed the iterator stops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_proto::ntp::extension::{
    Authenticator, ExtensionFields, FIELD_HEADER_LEN, FieldType, MIN_OUTER_FIELD_LEN, Placement,
    pad4, write_field,
};
use sundial_proto::reader::Writer;

fn check_authenticator(body: &[u8]) {
    if let Ok(auth) = Authenticator::parse(body) {
        let used = 4 + pad4(auth.nonce.len()) + pad4(auth.ciphertext.len());
        assert_eq!(used + auth.additional_padding, body.len());
        assert_eq!(auth.nonce, &body[4..4 + auth.nonce.len()]);
        for n_max in [0, 1, 12, 16, usize::MAX] {
            let _ = auth.meets_nonce_minimum(n_max);
        }
        // More padding never hurts.
        if auth.meets_nonce_minimum(12) {
            assert!(auth.meets_nonce_minimum(0));
        }
    }
}

fn check(area: &[u8], placement: Placement) {
    let min = match placement {
        Placement::Outer => MIN_OUTER_FIELD_LEN,
        Placement::Encrypted => FIELD_HEADER_LEN,
    };
    let mut fields = ExtensionFields::new(area, placement);
    let mut expected_offset = 0;
    let mut failed = false;
    let mut scratch = vec![0u8; area.len() + 16];
    for field in fields.by_ref() {
        assert!(!failed, "a field after an error");
        match field {
            Ok(f) => {
                assert_eq!(f.offset, expected_offset);
                let len = f.wire_len();
                assert!(len >= min && len % 4 == 0);
                assert!(f.offset + len <= area.len());
                let raw = &area[f.offset..f.offset + len];
                assert_eq!(u16::from_be_bytes([raw[0], raw[1]]), f.field_type.to_u16());
                assert_eq!(&raw[FIELD_HEADER_LEN..], f.body);
                assert_eq!(FieldType::from_u16(f.field_type.to_u16()), f.field_type);
                let mut w = Writer::new(&mut scratch);
                write_field(&mut w, f.field_type, f.body, placement).expect("fits");
                assert_eq!(w.written(), raw);
                if f.field_type == FieldType::NtsAuthenticator {
                    check_authenticator(f.body);
                }
                expected_offset += len;
            }
            Err(_) => failed = true,
        }
    }
    if failed {
        assert!(fields.unparsed_len() > 0);
        assert!(fields.next().is_none());
    } else {
        assert_eq!(expected_offset, area.len());
        assert_eq!(fields.unparsed_len(), 0);
        assert!(fields.remaining().is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, Placement::Outer);
    check(data, Placement::Encrypted);
    check_authenticator(data);
});
