//! Network Time Security (RFC 8915): key establishment and protected NTP.

pub mod aead;
pub mod client;
pub mod cookie;
pub mod cookie_jar;
pub mod ke_client;
pub mod ke_record;
pub mod ke_server;
pub mod key_export;
pub mod keyset;
pub mod protect;
pub mod server;
