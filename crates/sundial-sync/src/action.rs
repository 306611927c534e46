//! What the synchronizer asks the daemon to do to the clock.

/// One change to the system clock. The daemon applies them in order.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClockAction {
    /// Jump the clock by `offset` seconds (positive: forward).
    Step { offset: f64 },
    /// Let the kernel slew `offset` seconds away (it slews at up to
    /// 500 ppm). A new slew replaces whatever is left of the previous one,
    /// as single-shot `adjtime` does; the amount accounts for that.
    Slew { offset: f64 },
    /// Set the absolute frequency correction, in ppm (within ±500).
    SetFrequency { ppm: f64 },
    /// The clock is `offset` seconds off, beyond a panic threshold: the
    /// daemon must stop and say so, and never step. Once this is returned
    /// the synchronizer returns no further actions.
    Panic { offset: f64, reason: PanicReason },
}

/// Which threshold a refused step exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicReason {
    /// The first step after start-up exceeded `startup_step_panic_threshold`.
    StartupStep,
    /// A later step exceeded `single_step_panic_threshold`.
    SingleStep,
    /// The sum of the magnitudes of the steps since start-up would exceed
    /// `accumulated_step_panic_threshold`.
    AccumulatedSteps,
}

impl std::fmt::Display for PanicReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::StartupStep => "the start-up step exceeds startup-step-panic-threshold",
            Self::SingleStep => "the step exceeds single-step-panic-threshold",
            Self::AccumulatedSteps => "the steps add up beyond accumulated-step-panic-threshold",
        })
    }
}
