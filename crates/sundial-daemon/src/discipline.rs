//! The discipline loop: source measurements go into the pure synchronizer,
//! its clock actions go to the `Clock` (the kernel's, or the observe-only
//! one), and its view of our time goes to the NTP server, so what we serve
//! is what we measured.
//!
//! A panic (a step larger than a panic threshold) is never applied: the loop
//! ends with an error, the daemon exits with a code of its own, and the unit
//! file does not restart it, because a restart would take that step as the
//! start-up step after all.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use md5::{Digest, Md5};
use sundial_proto::ntp::packet::{LeapIndicator, ReferenceId};
use sundial_proto::ntp::timestamp::{NtpShort, NtpTimestamp};
use sundial_proto::server::ServerState;
use sundial_sync::{
    AppliedCorrections, ClockAction, Leap, PanicReason, StepLimit, SyncSettings, SyncStatus,
    Synchronizer,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, ClockStatus, LeapPending};
use crate::config::{Config, StepThreshold};
use crate::server::ntp::StateFn;
use crate::source::{SourceEvent, SourceHandle, SourceId, SourceStatus, SynchronizedUpdates};

/// Dispersion growth per second since the last update (RFC 5905's PHI).
const PHI: f64 = 15e-6;

/// The clock was asked to step beyond a panic threshold.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to step the clock by {offset:+.3} s ({reason}): check the sources, or raise the threshold in [synchronization] if this is intended"
)]
pub struct Panicked {
    pub offset: f64,
    pub reason: PanicReason,
}

fn limit(t: StepThreshold) -> StepLimit {
    StepLimit {
        forward: t.forward,
        backward: t.backward,
    }
}

/// The synchronizer's settings from `[synchronization]` and
/// `[source-defaults]`.
pub fn settings(config: &Config) -> SyncSettings {
    let sync = &config.synchronization;
    let limits = config.source_defaults.poll_interval_limits;
    let defaults = SyncSettings::default();
    SyncSettings {
        minimum_agreeing_sources: sync.minimum_agreeing_sources,
        single_step_panic_threshold: limit(sync.single_step_panic_threshold),
        startup_step_panic_threshold: limit(sync.startup_step_panic_threshold),
        accumulated_step_panic_threshold: sync.accumulated_step_panic_threshold,
        step_threshold: sync
            .algorithm
            .step_threshold
            .unwrap_or(defaults.step_threshold),
        poll_min: limits.min,
        poll_max: limits.max,
        initial_poll: config.source_defaults.initial_poll_interval,
        local_stratum: sync.local_stratum,
    }
}

/// The reference id we announce for a system peer at `addr` (RFC 5905
/// section 7.3: its IPv4 address, or the first four bytes of the MD5 of its
/// IPv6 address, which is what other servers use for loop detection).
pub fn reference_id(addr: SocketAddr) -> [u8; 4] {
    match addr {
        SocketAddr::V4(v4) => v4.ip().octets(),
        SocketAddr::V6(v6) => {
            let digest = Md5::digest(v6.ip().octets());
            let mut id = [0u8; 4];
            id.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
            id
        }
    }
}

/// What the NTP server says about our time, shared with the discipline.
#[derive(Debug, Clone)]
pub struct SharedState(Arc<RwLock<ServerState>>);

impl SharedState {
    pub fn new(initial: ServerState) -> Self {
        Self(Arc::new(RwLock::new(initial)))
    }

    /// For the NTP listeners: the state, with root dispersion grown by
    /// PHI for the time since the last update.
    pub fn state_fn(&self) -> StateFn {
        let shared = Arc::clone(&self.0);
        Arc::new(move |now: NtpTimestamp| {
            let Ok(state) = shared.read() else {
                return ServerState::UNSYNCHRONIZED;
            };
            let mut state = *state;
            if state.stratum < 16 && !state.reference_timestamp.is_zero() {
                let age = (now - state.reference_timestamp).as_seconds().max(0.0);
                let grown = state.root_dispersion.as_seconds() + PHI * age;
                state.root_dispersion = NtpShort::from_seconds(grown);
            }
            state
        })
    }

    fn set(&self, state: ServerState) {
        if let Ok(mut s) = self.0.write() {
            *s = state;
        }
    }
}

fn leap_indicator(leap: Leap) -> LeapIndicator {
    match leap {
        Leap::None => LeapIndicator::NoWarning,
        Leap::InsertSecond => LeapIndicator::InsertSecond,
        Leap::DeleteSecond => LeapIndicator::DeleteSecond,
        Leap::Unsynchronized => LeapIndicator::Unsynchronized,
    }
}

/// What `sundial status` and the metrics read from the loop: the
/// synchronizer's status after the latest event, and per source what only
/// the loop hears (the server it polls, the stratum it last reported).
#[derive(Debug, Clone)]
pub struct Observed {
    pub sync: SyncStatus,
    pub servers: HashMap<SourceId, SocketAddr>,
    pub strata: HashMap<SourceId, u8>,
    /// With a clock that does not apply changes (observe-only), and only
    /// then: the virtual clock minus the real one, seconds, after the
    /// latest event (every correction issued so far, the pending slew in
    /// full). `None` says the clock is steered for real.
    pub virtual_correction: Option<f64>,
}

/// The discipline loop and what it needs.
pub struct Discipline {
    sync: Synchronizer,
    clock: Arc<dyn Clock>,
    state: SharedState,
    names: HashMap<SourceId, String>,
    polls: HashMap<SourceId, tokio::sync::watch::Sender<i8>>,
    origin: Instant,
    synchronized: bool,
    observed: tokio::sync::watch::Sender<Observed>,
    /// With a clock that does not apply changes (observe-only): what the
    /// actions issued so far would have corrected. Measurements are fed to
    /// the synchronizer net of it, so its model stays true.
    unapplied: Option<AppliedCorrections>,
    /// The real clock's error that the unapplied corrections stand for.
    uncorrected: f64,
    /// Clock updates while synchronized (`certificate-time-check-after`).
    synchronized_updates: SynchronizedUpdates,
}

impl std::fmt::Debug for Discipline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discipline")
            .field("clock", &self.clock)
            .field("sources", &self.names)
            .finish_non_exhaustive()
    }
}

impl Discipline {
    /// `handles` are the running sources; `initial_frequency` is what the
    /// kernel already corrects (ppm), so a restart does not start from zero.
    pub fn new(
        settings: SyncSettings,
        clock: Arc<dyn Clock>,
        state: SharedState,
        handles: &[SourceHandle],
        initial_frequency: f64,
        origin: Instant,
    ) -> Self {
        let mut sync = Synchronizer::new(settings);
        sync.set_initial_frequency(initial_frequency);
        let mut names = HashMap::new();
        let mut polls = HashMap::new();
        for h in handles {
            sync.add_source_with(sync_id(h.id), h.kind);
            if let Some(refid) = h.reference_id {
                sync.set_source_refid(sync_id(h.id), refid);
            }
            names.insert(h.id, h.name.clone());
            polls.insert(h.id, h.poll.clone());
        }
        let unapplied =
            (!clock.applies_changes()).then(|| AppliedCorrections::new(initial_frequency));
        let observed = tokio::sync::watch::Sender::new(Observed {
            sync: sync.status(),
            servers: HashMap::new(),
            strata: HashMap::new(),
            virtual_correction: unapplied.map(|_| 0.0),
        });
        Self {
            sync,
            clock,
            state,
            names,
            polls,
            origin,
            synchronized: false,
            observed,
            unapplied,
            uncorrected: 0.0,
            synchronized_updates: SynchronizedUpdates::new(),
        }
    }

    /// Counts clock updates made while synchronized into `counter`, which
    /// NTS sources read to end the `certificate-time-check-after` window.
    pub fn with_synchronized_updates(mut self, counter: SynchronizedUpdates) -> Self {
        self.synchronized_updates = counter;
        self
    }

    /// The loop's state for observers, updated after every event.
    pub fn observe(&self) -> tokio::sync::watch::Receiver<Observed> {
        self.observed.subscribe()
    }

    /// Runs until cancelled (Ok) or until a panic threshold is hit (Err).
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SourceEvent>,
        cancel: CancellationToken,
    ) -> Result<(), Panicked> {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                event = events.recv() => match event {
                    Some(e) => e,
                    None => return Ok(()),
                },
            };
            self.handle(event)?;
        }
    }

    fn handle(&mut self, event: SourceEvent) -> Result<(), Panicked> {
        match event {
            SourceEvent::Measurement(id, m) => {
                tracing::debug!(source = %self.name(id), offset = m.offset, delay = m.delay, "measurement");
                self.observed.send_modify(|o| {
                    o.strata.insert(id, m.stratum);
                });
                let mut m = m;
                if let Some(unapplied) = &mut self.unapplied {
                    self.uncorrected = unapplied.at(m.time);
                    m.offset -= self.uncorrected;
                }
                let actions = self.sync.measurement(sync_id(id), m);
                for action in actions {
                    if let Some(unapplied) = &mut self.unapplied {
                        unapplied.apply(&action, m.time);
                    }
                    self.apply(action)?;
                }
                self.after_update();
                if self.synchronized {
                    self.synchronized_updates.increment();
                }
            }
            SourceEvent::Unreachable(id) => {
                let now = self.origin.elapsed().as_secs_f64();
                self.sync.unreachable(sync_id(id), now);
                self.after_update();
            }
            SourceEvent::Status(id, status) => match status {
                SourceStatus::Polling { server } => {
                    self.observed.send_modify(|o| {
                        o.servers.insert(id, server);
                    });
                    self.sync
                        .set_source_refid(sync_id(id), reference_id(server));
                }
                SourceStatus::KeyExchanged {
                    ntp_server,
                    algorithm,
                    cookies,
                    ..
                } => {
                    tracing::info!(source = %self.name(id), %ntp_server, ?algorithm, cookies, "NTS key exchange done");
                    self.observed.send_modify(|o| {
                        o.servers.insert(id, ntp_server);
                    });
                    self.sync
                        .set_source_refid(sync_id(id), reference_id(ntp_server));
                }
                other => tracing::debug!(source = %self.name(id), status = ?other, "source status"),
            },
        }
        Ok(())
    }

    fn name(&self, id: SourceId) -> &str {
        self.names.get(&id).map_or("?", String::as_str)
    }

    fn apply(&mut self, action: ClockAction) -> Result<(), Panicked> {
        let result = match action {
            ClockAction::Step { offset } => {
                tracing::info!(offset, "stepping the clock");
                self.clock.step(offset)
            }
            ClockAction::Slew { offset } => {
                tracing::debug!(offset, "slewing the clock");
                self.clock.slew(offset)
            }
            ClockAction::SetFrequency { ppm } => {
                tracing::debug!(ppm, "setting the clock frequency");
                self.clock.set_frequency(ppm)
            }
            ClockAction::Panic { offset, reason } => {
                tracing::error!(offset, %reason, "panic threshold: the clock is left alone");
                return Err(Panicked { offset, reason });
            }
        };
        if let Err(e) = result {
            // Without CAP_SYS_TIME every adjustment fails: a sysadmin fixes that.
            tracing::warn!(error = %e, "cannot adjust the clock (missing CAP_SYS_TIME?)");
        }
        Ok(())
    }

    /// Publishes the new status: poll intervals to sources, our time to the
    /// NTP server, and synchronization to the kernel.
    fn after_update(&mut self) {
        let status = self.sync.status();
        for (id, poll) in &self.polls {
            let want = self.sync.poll_interval(sync_id(*id));
            poll.send_if_modified(|p| std::mem::replace(p, want) != want);
        }
        self.publish(&status);
        let virtual_correction = self.virtual_correction();
        self.observed.send_modify(|o| {
            o.sync = status.clone();
            o.virtual_correction = virtual_correction;
        });
        if status.synchronized != self.synchronized {
            self.synchronized = status.synchronized;
            if status.synchronized {
                tracing::info!(
                    stratum = status.stratum,
                    offset = status.offset,
                    "synchronized"
                );
            } else {
                tracing::warn!(reason = ?status.reason, "lost synchronization");
            }
        }
    }

    /// Observe-only: the virtual clock minus the real one now. Read from a
    /// copy, because `AppliedCorrections::at` must never go back in time:
    /// a measurement queued while this event was handled carries an
    /// earlier timestamp than `now`, and had the shared state advanced to
    /// `now`, that measurement would be netted of the corrections at `now`
    /// instead of at its own time.
    fn virtual_correction(&self) -> Option<f64> {
        let mut copy = self.unapplied?;
        Some(copy.issued(self.origin.elapsed().as_secs_f64()))
    }

    fn publish(&self, status: &SyncStatus) {
        let now = self.clock.now();
        let state = if status.synchronized {
            ServerState {
                leap: leap_indicator(status.leap),
                stratum: status.stratum,
                precision: -20,
                root_delay: NtpShort::from_seconds(status.root_delay),
                // Observe-only: the real clock still has the error the
                // discipline would have corrected; say so to clients.
                root_dispersion: NtpShort::from_seconds(
                    status.root_dispersion + self.uncorrected.abs(),
                ),
                reference_id: ReferenceId(status.reference_id),
                reference_timestamp: now,
            }
        } else {
            ServerState {
                stratum: status.stratum,
                ..ServerState::UNSYNCHRONIZED
            }
        };
        self.state.set(state);
        let kernel = ClockStatus {
            synchronized: status.synchronized,
            max_error: status.root_delay / 2.0 + status.root_dispersion,
            est_error: status.offset.abs(),
            leap: match status.leap {
                Leap::InsertSecond => LeapPending::Insert,
                Leap::DeleteSecond => LeapPending::Delete,
                _ => LeapPending::None,
            },
        };
        if let Err(e) = self.clock.set_status(kernel) {
            tracing::debug!(error = %e, "cannot set the kernel's synchronization status");
        }
    }
}

fn sync_id(id: SourceId) -> sundial_sync::SourceId {
    sundial_sync::SourceId(u64::from(id.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_ids_follow_rfc5905() {
        assert_eq!(
            reference_id("192.0.2.7:123".parse().unwrap()),
            [192, 0, 2, 7]
        );
        let v6 = reference_id("[2001:db8::1]:123".parse().unwrap());
        assert_ne!(v6, [0; 4]);
        assert_eq!(v6, reference_id("[2001:db8::1]:4460".parse().unwrap()));
    }

    fn measurement(time: f64, offset: f64) -> sundial_sync::Measurement {
        sundial_sync::Measurement {
            time,
            offset,
            delay: 0.001,
            stratum: 1,
            leap: Leap::None,
            root_delay: 0.0,
            root_dispersion: 0.0,
            reference_id: *b"GPS\0",
            precision: -20,
        }
    }

    #[test]
    fn observe_only_publishes_the_virtual_correction() {
        let source = SourceHandle {
            id: SourceId(0),
            name: "test".to_owned(),
            mode: crate::config::SourceMode::Server,
            poll: tokio::sync::watch::Sender::new(4),
            limits: crate::config::PollIntervalLimits::default(),
            stats: Arc::default(),
            kind: sundial_sync::SourceKind::Network,
            reference_id: None,
            path: None,
            interleave_requested: false,
        };
        let settings = SyncSettings {
            minimum_agreeing_sources: 1,
            ..SyncSettings::default()
        };
        let mut discipline = Discipline::new(
            settings,
            Arc::new(crate::clock::observe::ObserveClock::new()),
            SharedState::new(ServerState::UNSYNCHRONIZED),
            &[source],
            0.0,
            Instant::now(),
        );
        let observed = discipline.observe();
        assert_eq!(observed.borrow().virtual_correction, Some(0.0));
        // The source is 10 ms ahead of the real clock, which never moves:
        // the discipline corrects its virtual clock instead.
        for i in 0..16 {
            let event = SourceEvent::Measurement(SourceId(0), measurement(f64::from(i), 0.01));
            assert!(discipline.handle(event).is_ok());
        }
        let o = observed.borrow().clone();
        assert!(o.sync.synchronized, "{:?}", o.sync);
        // Every correction issued, the pending slew in full: the 10 ms.
        let correction = o.virtual_correction.unwrap_or_default();
        assert!((correction - 0.01).abs() < 1e-4, "{correction}");
        // ... which leaves the virtual clock (nearly) right, with a bound.
        assert!(o.sync.estimated_offset.abs() < 1e-4, "{:?}", o.sync);
        assert!(o.sync.uncertainty.is_finite(), "{:?}", o.sync);
    }

    fn refclock(id: u32, kind: sundial_sync::SourceKind, refid: &[u8; 4]) -> SourceHandle {
        SourceHandle {
            id: SourceId(id),
            name: format!("refclock {id}"),
            mode: crate::config::SourceMode::Sock,
            poll: tokio::sync::watch::Sender::new(4),
            limits: crate::config::PollIntervalLimits::default(),
            stats: Arc::default(),
            kind,
            reference_id: Some(*refid),
            path: None,
            interleave_requested: false,
        }
    }

    #[test]
    fn a_pps_numbered_by_gpsd_serves_stratum_1_and_alone_serves_nothing() {
        use sundial_sync::{SourceKind, SourceState};
        let sock = refclock(0, SourceKind::Refclock { precision: 0.1 }, b"GPS\0");
        let pps = refclock(
            1,
            SourceKind::Pulse {
                precision: 1e-6,
                period: 1.0,
            },
            b"PPS\0",
        );
        let settings = SyncSettings {
            minimum_agreeing_sources: 1,
            ..SyncSettings::default()
        };
        let shared = SharedState::new(ServerState::UNSYNCHRONIZED);
        let mut discipline = Discipline::new(
            settings,
            Arc::new(crate::clock::observe::ObserveClock::new()),
            shared.clone(),
            &[sock, pps],
            0.0,
            Instant::now(),
        );
        let observed = discipline.observe();
        let refclock_sample = |id, time, offset| {
            let m = sundial_sync::Measurement {
                stratum: 0,
                delay: 0.0,
                ..measurement(time, offset)
            };
            SourceEvent::Measurement(SourceId(id), m)
        };
        // We are 2 µs slow; gpsd's serial time is 100 ms late.
        for i in 0..60 {
            let t = f64::from(i);
            assert!(discipline.handle(refclock_sample(0, t, 2e-6 - 0.1)).is_ok());
            assert!(discipline.handle(refclock_sample(1, t + 0.5, 2e-6)).is_ok());
        }
        let o = observed.borrow().clone();
        assert!(o.sync.synchronized, "{:?}", o.sync);
        assert_eq!((o.sync.stratum, &o.sync.reference_id), (1, b"PPS\0"));
        let states: Vec<SourceState> = o.sync.sources.iter().map(|s| s.state).collect();
        assert_eq!(states, [SourceState::Candidate, SourceState::Selected]);
        let served = (shared.state_fn())(NtpTimestamp::from_parts(100, 0));
        assert_eq!((served.stratum, served.reference_id.0), (1, *b"PPS\0"));
        // The virtual clock follows the PPS, not the late serial time.
        let correction = o.virtual_correction.unwrap_or_default();
        assert!((correction - 2e-6).abs() < 1e-6, "{correction}");

        // gpsd goes quiet: the PPS has no second to count by.
        assert!(
            discipline
                .handle(SourceEvent::Unreachable(SourceId(0)))
                .is_ok()
        );
        for i in 60..70 {
            assert!(
                discipline
                    .handle(refclock_sample(1, f64::from(i), 2e-6))
                    .is_ok()
            );
        }
        let o = observed.borrow().clone();
        assert!(!o.sync.synchronized, "{:?}", o.sync);
        assert_eq!(o.sync.sources[1].state, SourceState::Unusable);
        assert_eq!(o.sync.sources[1].unnumbered_pulses, 10);
    }

    #[test]
    fn dispersion_grows_with_age() {
        let shared = SharedState::new(ServerState {
            stratum: 2,
            reference_timestamp: NtpTimestamp::from_parts(1000, 0),
            ..ServerState::UNSYNCHRONIZED
        });
        let f = shared.state_fn();
        let later = f(NtpTimestamp::from_parts(1000 + 1000, 0));
        assert!((later.root_dispersion.as_seconds() - 0.015).abs() < 1e-3);
    }
}
