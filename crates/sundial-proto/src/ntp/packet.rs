//! The 48-byte NTPv4 header (RFC 5905 section 7.3) as a typed value.

use super::timestamp::{NtpShort, NtpTimestamp};
use crate::reader::{BufferTooSmall, Reader, Writer};

/// Length of the fixed NTP header.
pub const HEADER_LEN: usize = 48;

/// The two leap bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeapIndicator {
    NoWarning,
    /// The last minute of the day has 61 seconds.
    InsertSecond,
    /// The last minute of the day has 59 seconds.
    DeleteSecond,
    /// Clock unsynchronized (also the "alarm" state of a kiss-o'-death).
    Unsynchronized,
}

impl LeapIndicator {
    const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => Self::NoWarning,
            1 => Self::InsertSecond,
            2 => Self::DeleteSecond,
            _ => Self::Unsynchronized,
        }
    }

    const fn to_bits(self) -> u8 {
        match self {
            Self::NoWarning => 0,
            Self::InsertSecond => 1,
            Self::DeleteSecond => 2,
            Self::Unsynchronized => 3,
        }
    }
}

/// The association mode (three bits, all values defined).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Reserved,
    SymmetricActive,
    SymmetricPassive,
    Client,
    Server,
    Broadcast,
    /// NTP control messages (mode 6).
    Control,
    /// Reserved for private use (mode 7, ntpdc).
    Private,
}

impl Mode {
    const fn from_bits(bits: u8) -> Self {
        match bits & 0b111 {
            0 => Self::Reserved,
            1 => Self::SymmetricActive,
            2 => Self::SymmetricPassive,
            3 => Self::Client,
            4 => Self::Server,
            5 => Self::Broadcast,
            6 => Self::Control,
            _ => Self::Private,
        }
    }

    const fn to_bits(self) -> u8 {
        match self {
            Self::Reserved => 0,
            Self::SymmetricActive => 1,
            Self::SymmetricPassive => 2,
            Self::Client => 3,
            Self::Server => 4,
            Self::Broadcast => 5,
            Self::Control => 6,
            Self::Private => 7,
        }
    }
}

/// The reference identifier: an IPv4 address, a hash of an IPv6 address, a
/// four-letter reference clock code, or at stratum 0 a kiss code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReferenceId(pub [u8; 4]);

impl ReferenceId {
    pub const RATE: Self = Self(*b"RATE");
    pub const DENY: Self = Self(*b"DENY");
    pub const RSTR: Self = Self(*b"RSTR");
    pub const NTSN: Self = Self(*b"NTSN");
    /// What a local-clock (undisciplined) server announces.
    pub const LOCL: Self = Self(*b"LOCL");

    pub const fn from_u32(v: u32) -> Self {
        Self(v.to_be_bytes())
    }

    pub const fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }
}

/// A kiss-o'-death code (RFC 5905 section 7.4) carried by a stratum-0 reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KissCode {
    /// Rate exceeded: the client must reduce its poll rate.
    Rate,
    /// Access denied: stop sending.
    Deny,
    /// Access restricted: stop sending.
    Rstr,
    /// NTS negative acknowledgement (RFC 8915 section 5.7): the cookie
    /// could not be opened; the client needs new cookies.
    Ntsn,
    /// Any other four-octet code.
    Other([u8; 4]),
}

impl KissCode {
    pub const fn from_reference_id(id: ReferenceId) -> Self {
        match &id.0 {
            b"RATE" => Self::Rate,
            b"DENY" => Self::Deny,
            b"RSTR" => Self::Rstr,
            b"NTSN" => Self::Ntsn,
            _ => Self::Other(id.0),
        }
    }

    pub const fn reference_id(self) -> ReferenceId {
        match self {
            Self::Rate => ReferenceId::RATE,
            Self::Deny => ReferenceId::DENY,
            Self::Rstr => ReferenceId::RSTR,
            Self::Ntsn => ReferenceId::NTSN,
            Self::Other(code) => ReferenceId(code),
        }
    }
}

/// Why a packet could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("packet shorter than the 48-byte NTP header ({0} bytes)")]
    TooShort(usize),
    #[error("unsupported NTP version {0}")]
    Version(u8),
}

/// The fixed NTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NtpHeader {
    pub leap: LeapIndicator,
    /// 1 to 4 when parsed.
    pub version: u8,
    pub mode: Mode,
    pub stratum: u8,
    /// log2 seconds.
    pub poll: i8,
    /// log2 seconds.
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: ReferenceId,
    pub reference_timestamp: NtpTimestamp,
    pub origin_timestamp: NtpTimestamp,
    pub receive_timestamp: NtpTimestamp,
    pub transmit_timestamp: NtpTimestamp,
}

impl Default for NtpHeader {
    fn default() -> Self {
        Self {
            leap: LeapIndicator::NoWarning,
            version: 4,
            mode: Mode::Client,
            stratum: 0,
            poll: 0,
            precision: 0,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: ReferenceId::default(),
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: NtpTimestamp::ZERO,
            receive_timestamp: NtpTimestamp::ZERO,
            transmit_timestamp: NtpTimestamp::ZERO,
        }
    }
}

impl NtpHeader {
    /// A client request (mode 3, NTPv4) as RFC 5905 wants it: only the
    /// transmit timestamp set. Clients should send a random transmit
    /// timestamp (RFC 9109-style data minimisation) and match it against
    /// the reply's origin timestamp.
    pub fn client_request(poll: i8, transmit_timestamp: NtpTimestamp) -> Self {
        Self {
            poll,
            transmit_timestamp,
            ..Self::default()
        }
    }

    /// Parses the header and returns it with the bytes that follow it (the
    /// extension field area and/or MAC).
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), ParseError> {
        let mut r = Reader::new(buf);
        let first = r.u8().ok_or(ParseError::TooShort(buf.len()))?;
        let version = (first >> 3) & 0b111;
        if !(1..=4).contains(&version) {
            return Err(ParseError::Version(version));
        }
        let fixed: [u8; HEADER_LEN - 1] = r.take_array().ok_or(ParseError::TooShort(buf.len()))?;
        let mut f = Reader::new(&fixed);
        // The header reader cannot run short: it reads exactly its 47 bytes.
        let header = (|| {
            Some(Self {
                leap: LeapIndicator::from_bits(first >> 6),
                version,
                mode: Mode::from_bits(first),
                stratum: f.u8()?,
                poll: f.u8()? as i8,
                precision: f.u8()? as i8,
                root_delay: NtpShort::from_bits(f.u32()?),
                root_dispersion: NtpShort::from_bits(f.u32()?),
                reference_id: ReferenceId(f.take_array()?),
                reference_timestamp: NtpTimestamp::from_bits(f.u64()?),
                origin_timestamp: NtpTimestamp::from_bits(f.u64()?),
                receive_timestamp: NtpTimestamp::from_bits(f.u64()?),
                transmit_timestamp: NtpTimestamp::from_bits(f.u64()?),
            })
        })()
        .ok_or(ParseError::TooShort(buf.len()))?;
        Ok((header, r.rest()))
    }

    /// Writes the 48 header bytes.
    pub fn serialize(&self, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
        w.put_u8((self.leap.to_bits() << 6) | ((self.version & 0b111) << 3) | self.mode.to_bits())?;
        w.put_u8(self.stratum)?;
        w.put_u8(self.poll as u8)?;
        w.put_u8(self.precision as u8)?;
        w.put_u32(self.root_delay.to_bits())?;
        w.put_u32(self.root_dispersion.to_bits())?;
        w.put(&self.reference_id.0)?;
        w.put_u64(self.reference_timestamp.to_bits())?;
        w.put_u64(self.origin_timestamp.to_bits())?;
        w.put_u64(self.receive_timestamp.to_bits())?;
        w.put_u64(self.transmit_timestamp.to_bits())
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        // Exactly 48 bytes into a 48-byte buffer: cannot fail.
        let _ = self.serialize(&mut Writer::new(&mut out));
        out
    }

    /// The kiss code of a kiss-o'-death reply (stratum 0 from a server).
    pub fn kiss_code(&self) -> Option<KissCode> {
        (self.stratum == 0 && matches!(self.mode, Mode::Server))
            .then(|| KissCode::from_reference_id(self.reference_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_header() -> impl Strategy<Value = NtpHeader> {
        (
            (
                0u8..4,
                1u8..=4,
                0u8..8,
                any::<u8>(),
                any::<i8>(),
                any::<i8>(),
            ),
            (any::<u32>(), any::<u32>(), any::<[u8; 4]>()),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(|(a, b, c)| NtpHeader {
                leap: LeapIndicator::from_bits(a.0),
                version: a.1,
                mode: Mode::from_bits(a.2),
                stratum: a.3,
                poll: a.4,
                precision: a.5,
                root_delay: NtpShort::from_bits(b.0),
                root_dispersion: NtpShort::from_bits(b.1),
                reference_id: ReferenceId(b.2),
                reference_timestamp: NtpTimestamp::from_bits(c.0),
                origin_timestamp: NtpTimestamp::from_bits(c.1),
                receive_timestamp: NtpTimestamp::from_bits(c.2),
                transmit_timestamp: NtpTimestamp::from_bits(c.3),
            })
    }

    proptest! {
        #[test]
        fn serialize_then_parse_is_identity(h in arb_header(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = h.to_bytes().to_vec();
            bytes.extend_from_slice(&tail);
            let (parsed, rest) = NtpHeader::parse(&bytes).unwrap();
            prop_assert_eq!(parsed, h);
            prop_assert_eq!(rest, &tail[..]);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok((h, _)) = NtpHeader::parse(&bytes) {
                prop_assert_eq!(&h.to_bytes()[..], &bytes[..HEADER_LEN]);
            }
        }
    }

    #[test]
    fn rejects_short_and_bad_versions() {
        assert_eq!(NtpHeader::parse(&[0x23; 47]), Err(ParseError::TooShort(47)));
        assert_eq!(NtpHeader::parse(&[]), Err(ParseError::TooShort(0)));
        for v in [0u8, 5, 6, 7] {
            let mut b = [0u8; 48];
            b[0] = (v << 3) | 3;
            assert_eq!(NtpHeader::parse(&b), Err(ParseError::Version(v)));
        }
        for v in 1u8..=4 {
            let mut b = [0u8; 48];
            b[0] = (v << 3) | 3;
            assert_eq!(NtpHeader::parse(&b).unwrap().0.version, v);
        }
    }

    #[test]
    fn field_layout_matches_rfc5905() {
        let h = NtpHeader {
            leap: LeapIndicator::Unsynchronized,
            version: 4,
            mode: Mode::Server,
            stratum: 2,
            poll: 6,
            precision: -20,
            root_delay: NtpShort::from_bits(0x0102_0304),
            root_dispersion: NtpShort::from_bits(0x0506_0708),
            reference_id: ReferenceId(*b"GPS\0"),
            reference_timestamp: NtpTimestamp::from_bits(0x1111_1111_1111_1111),
            origin_timestamp: NtpTimestamp::from_bits(0x2222_2222_2222_2222),
            receive_timestamp: NtpTimestamp::from_bits(0x3333_3333_3333_3333),
            transmit_timestamp: NtpTimestamp::from_bits(0x4444_4444_4444_4444),
        };
        let b = h.to_bytes();
        assert_eq!(b[0], 0b11_100_100);
        assert_eq!(&b[1..4], &[2, 6, 0xec]);
        assert_eq!(&b[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[12..16], b"GPS\0");
        assert_eq!(&b[16..24], &[0x11; 8]);
        assert_eq!(&b[40..48], &[0x44; 8]);
    }

    #[test]
    fn kiss_codes() {
        let mut h = NtpHeader {
            mode: Mode::Server,
            stratum: 0,
            reference_id: ReferenceId::NTSN,
            ..NtpHeader::default()
        };
        assert_eq!(h.kiss_code(), Some(KissCode::Ntsn));
        for code in [
            KissCode::Rate,
            KissCode::Deny,
            KissCode::Rstr,
            KissCode::Other(*b"XYZW"),
        ] {
            h.reference_id = code.reference_id();
            assert_eq!(h.kiss_code(), Some(code));
        }
        h.stratum = 1;
        assert_eq!(h.kiss_code(), None);
    }
}
