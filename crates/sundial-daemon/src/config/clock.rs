//! `[clock]`: which clock is read and steered, and how packets are
//! timestamped.

use std::path::PathBuf;

use serde::Deserialize;

/// How receive/transmit timestamps are taken (a hint: the kernel or NIC may
/// not support every mode, and the daemon falls back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampMode {
    /// Read the clock in user space.
    Software,
    /// Kernel timestamps on receive only.
    KernelRecv,
    /// Kernel timestamps on receive and transmit (the Linux default).
    #[default]
    KernelAll,
    /// NIC hardware timestamps.
    Hardware,
}

/// The clock and its timestamping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClockConfig {
    /// A PTP hardware clock device (e.g. `/dev/ptp0`) to discipline instead
    /// of the system clock; unset means CLOCK_REALTIME.
    #[serde(default)]
    pub clock: Option<PathBuf>,
    /// Network interface whose timestamps are used.
    #[serde(default)]
    pub interface: Option<String>,
    /// Timestamping mode (default `kernel-all`).
    #[serde(default)]
    pub timestamp_mode: TimestampMode,
    /// sundial addition: never change the clock, only measure and serve.
    /// `sundial run --observe` sets the same.
    #[serde(default)]
    pub observe_only: bool,
}
