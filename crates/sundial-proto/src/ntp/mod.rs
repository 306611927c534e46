//! NTPv4 (RFC 5905) and its extension fields (RFC 7822).

pub mod extension;
pub mod packet;
pub mod timestamp;
