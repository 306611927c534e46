//! What the synchronizer reports: to `sundial status`, to metrics, and to
//! the NTP server for the header fields it announces.

use crate::Leap;
use crate::synchronizer::SourceId;

/// The synchronizer as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncStatus {
    pub synchronized: bool,
    /// Why not synchronized; `None` when synchronized.
    pub reason: Option<NoSyncReason>,
    /// The system peer's stratum + 1 (1 with a reference clock), or
    /// `local_stratum`.
    pub stratum: u8,
    /// The refid set for the system peer with `set_source_refid`
    /// (its IPv4 address or address hash, RFC 5905 section 7.3), or
    /// `INIT` while not synchronized.
    pub reference_id: [u8; 4],
    /// Round-trip delay to the primary reference, seconds.
    pub root_delay: f64,
    /// Error bound to the primary reference, seconds, aged to the latest
    /// time the synchronizer was told.
    pub root_dispersion: f64,
    /// The leap second most selected sources announce; `Unsynchronized`
    /// while not synchronized.
    pub leap: Leap,
    /// The last combined offset (before it was corrected), seconds.
    pub offset: f64,
    /// The clock model's estimate of true time minus our clock once every
    /// correction issued so far has taken effect (the pending slew
    /// included), seconds: what an observe-only daemon's virtual clock is
    /// off by. Near zero right after an update, since each update corrects
    /// what it estimates.
    pub estimated_offset: f64,
    /// The part of the last slew the kernel has not yet applied, seconds
    /// (assuming it slews at 500 ppm). On a steered clock, true time minus
    /// the clock is `estimated_offset + pending_slew`: what is still left
    /// to correct.
    pub pending_slew: f64,
    /// One standard error of `estimated_offset`, seconds: the true error
    /// lies within twice this about 95 % of the time on a path whose delays
    /// are symmetric on average (no client can see a constant asymmetry).
    /// Infinite until the clock has been steered.
    pub uncertainty: f64,
    /// The frequency correction in force, ppm.
    pub frequency_ppm: f64,
    pub sources: Vec<SourceStatus>,
}

/// Why the clock is not being steered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoSyncReason {
    /// Too few sources have usable samples (reachable, synchronized,
    /// root distance within bounds).
    WaitingForSources { usable: usize, required: usize },
    /// Usable sources exist, but too few of them agree.
    TooFewAgreeing { agreeing: usize, required: usize },
    /// A step beyond a panic threshold was refused.
    Panicked,
}

/// One source.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceStatus {
    pub id: SourceId,
    pub state: SourceState,
    /// The filter's chosen offset, in the current correction's terms.
    pub offset: f64,
    pub delay: f64,
    pub jitter: f64,
    /// The reach register: one bit per poll, 1 for an answer.
    pub reach: u8,
    pub poll: i8,
    /// Pulses that no whole time could number, so were not used (pulse
    /// sources only; 0 for the others).
    pub unnumbered_pulses: u64,
}

/// A source's part in the last selection (ntpq's tally codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// No usable sample: unreachable, unsynchronized, or too far off in
    /// root distance.
    Unusable,
    /// Agrees with the majority and is combined (`+`).
    Candidate,
    /// Outside the intersection of the majority (`x`).
    Falseticker,
    /// The system peer (`*`): combined, and gives stratum and refid.
    Selected,
}
