//! Reference clock input, as a local process or a device could send it.
//! Mode 0: `refclock::sock::parse` on arbitrary bytes: no panic; a sample
//! is one of the two struct sizes, with a sane timestamp and offset, and
//! writing its fields back in the same layout gives the input again (the
//! padding aside); a refusal for length is exactly a wrong size. Mode 1:
//! a `PulseTracker` with a chosen period fed a stream of chosen edges:
//! every offset lies within half a period, a repeated sequence number
//! yields nothing, and `missed` counts the gap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_fuzz::Input;
use sundial_proto::ntp::packet::LeapIndicator;
use sundial_proto::refclock::UnixTime;
use sundial_proto::refclock::pps::{PpsEdge, PulseTracker};
use sundial_proto::refclock::sock::{self, MAX_OFFSET, SAMPLE_LEN, SAMPLE_LEN_32, SockError};

fn sock_sample(data: &[u8]) {
    match sock::parse(data) {
        Ok(s) => {
            assert!(data.len() == SAMPLE_LEN || data.len() == SAMPLE_LEN_32);
            assert!(s.offset.is_finite() && s.offset.abs() <= MAX_OFFSET);
            assert!(s.taken.nanos < 1_000_000_000 && s.taken.nanos % 1000 == 0);
            let leap: i32 = match s.leap {
                LeapIndicator::NoWarning => 0,
                LeapIndicator::InsertSecond => 1,
                LeapIndicator::DeleteSecond => 2,
                LeapIndicator::Unsynchronized => 3,
            };
            let micros = i64::from(s.taken.nanos / 1000);
            let mut again = Vec::new();
            if data.len() == SAMPLE_LEN {
                again.extend_from_slice(&s.taken.secs.to_ne_bytes());
                again.extend_from_slice(&micros.to_ne_bytes());
            } else {
                let secs = i32::try_from(s.taken.secs).expect("a 32-bit time_t");
                again.extend_from_slice(&secs.to_ne_bytes());
                again.extend_from_slice(&(micros as i32).to_ne_bytes());
            }
            again.extend_from_slice(&s.offset.to_ne_bytes());
            again.extend_from_slice(&0i32.to_ne_bytes());
            again.extend_from_slice(&leap.to_ne_bytes());
            let pad = data.len() - 8;
            again.extend_from_slice(&data[pad..pad + 4]);
            again.extend_from_slice(&sock::SOCK_MAGIC.to_ne_bytes());
            assert_eq!(again, data);
        }
        Err(e) => {
            let wrong_size = data.len() != SAMPLE_LEN && data.len() != SAMPLE_LEN_32;
            assert_eq!(matches!(e, SockError::Length(_)), wrong_size, "{e}");
            let _ = e.rejection().name();
        }
    }
}

fn pulses(input: &mut Input<'_>) {
    // Periods from 1 µs (clamped up to 1 ms) to about 65 s.
    let period = f64::from(input.u16()) * 1e-3 + 1e-6;
    let mut tracker = PulseTracker::new(period);
    let half = tracker.period() / 2.0 + 1e-9;
    let mut last: Option<u32> = None;
    while !input.is_empty() {
        let sequence = u32::from(input.u16()) << 16 | u32::from(input.u16());
        let secs = input.u64() as i64;
        let nanos = (u32::from(input.u16()) << 16 | u32::from(input.u16())) % 1_000_000_000;
        let edge = PpsEdge {
            sequence,
            time: UnixTime { secs, nanos },
        };
        match tracker.edge(edge) {
            None => assert!(sequence == 0 || last == Some(sequence)),
            Some(pulse) => {
                assert_ne!(sequence, 0);
                assert_ne!(last, Some(sequence));
                assert!(pulse.offset.abs() <= half, "{pulse:?} for {period}");
                if let Some(last) = last {
                    let gap = sequence.wrapping_sub(last);
                    if gap <= u32::MAX / 2 {
                        assert_eq!(pulse.missed, gap - 1);
                    } else {
                        assert_eq!(pulse.missed, 0);
                    }
                }
                last = Some(sequence);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        sock_sample(rest);
    } else {
        pulses(&mut Input::new(rest));
    }
});
