//! Parse, serialize, parse again: the NTP header with its extension fields,
//! and a sequence of NTS-KE records, come back identical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::Input;
use sundial_proto::ntp::extension::{ExtensionFields, Placement, write_field};
use sundial_proto::ntp::packet::NtpHeader;
use sundial_proto::nts::ke_record::{Decoded, decode};
use sundial_proto::reader::Writer;

fn packet(data: &[u8]) {
    let Ok((header, area)) = NtpHeader::parse(data) else {
        return;
    };
    let placement = if data[0] & 0x80 != 0 {
        Placement::Outer
    } else {
        Placement::Encrypted
    };
    let fields: Vec<_> = ExtensionFields::new(area, placement)
        .map_while(Result::ok)
        .collect();
    let mut buf = vec![0u8; data.len() + 64];
    let mut w = Writer::new(&mut buf);
    header.serialize(&mut w).expect("fits");
    for f in &fields {
        write_field(&mut w, f.field_type, f.body, placement).expect("fits");
    }
    let encoded = w.written().to_vec();
    assert_eq!(encoded, &data[..encoded.len()]);

    let (header2, area2) = NtpHeader::parse(&encoded).expect("reparses");
    assert_eq!(header2, header);
    let fields2: Vec<_> = ExtensionFields::new(area2, placement)
        .collect::<Result<_, _>>()
        .expect("re-encoded fields parse");
    assert_eq!(fields2, fields);
}

fn records(data: &[u8]) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Complete { record, consumed }) = decode(&data[at..]) {
        records.push(record);
        at += consumed;
    }
    let mut encoded = Vec::new();
    for r in &records {
        r.encode(&mut encoded).expect("a decoded record encodes");
    }
    assert_eq!(encoded, &data[..at]);
    let mut again = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Complete { record, consumed }) = decode(&encoded[at..]) {
        again.push(record);
        at += consumed;
    }
    assert_eq!(at, encoded.len());
    assert_eq!(again, records);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let which = input.u8();
    let rest = input.rest();
    if which & 1 == 0 {
        packet(rest);
    } else {
        records(rest);
    }
});
