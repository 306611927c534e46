//! The serving side: NTP over UDP and NTS-KE over TLS.

pub mod cert_watch;
pub mod ntp;
pub mod nts_ke;
pub mod rate;
