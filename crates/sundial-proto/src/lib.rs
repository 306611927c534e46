//! The NTP and NTS protocol, sans-IO.
//!
//! Bytes go in, bytes come out; the current time and a random generator are
//! arguments. Nothing here opens a socket, reads a file, spawns a task, reads
//! the system clock or the operating system's random generator. See
//! `DESIGN.md` at the repository root for the map of the whole project.
#![forbid(unsafe_code)]
// Parsers face hostile input: no unchecked indexing, no panics on input.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod interleave;
pub mod ntp;
pub mod nts;
pub mod reader;
pub mod refclock;
pub mod server;
pub mod source;
