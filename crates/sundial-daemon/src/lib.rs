//! The tokio shell: sockets, TLS, files and the system clock around the sans-IO core.

pub mod acme;
pub mod build_info;
pub mod clock;
pub mod config;
pub mod discipline;
pub mod file_stamp;
pub mod keystore;
pub mod metrics;
pub mod oneshot;
pub mod run;
pub mod sandbox;
pub mod server;
pub mod small_server;
pub mod source;
pub mod status;
pub mod tls;
mod unix_path;
