//! The synchronizer: per-source state, and one pass of filter, select,
//! combine and discipline for each measurement.

use std::collections::BTreeMap;

use crate::action::ClockAction;
use crate::combine::{Combined, Survivor, combine};
use crate::consts::{LOCAL_PRECISION, MAX_SANE_SECONDS, MAXDIST, MINDISP, PHI, log2_seconds};
use crate::discipline::{Discipline, Reframe};
use crate::filter::{ClockFilter, DelayProfile, FilterOutput};
use crate::noise::{NoiseModel, Rule};
use crate::poll::PollControl;
use crate::regression::{Origin, Point};
use crate::sample::{self, Rejection, SourceInfo};
use crate::select::{Claim, intersection, is_truechimer};
use crate::settings::SyncSettings;
use crate::status::{NoSyncReason, SourceState, SourceStatus, SyncStatus};
use crate::{Leap, Measurement, MonoSeconds};

/// The daemon's handle for a source; the synchronizer only compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u64);

/// The refid announced while not synchronized (RFC 5905 section 7.4).
const INIT_REFID: [u8; 4] = *b"INIT";

#[derive(Clone, Debug)]
struct Source {
    filter: ClockFilter,
    noise: NoiseModel,
    reach: u8,
    refid: [u8; 4],
    /// From the last accepted packet.
    info: Option<SourceInfo>,
    /// The last packet said the source is unsynchronized.
    unsynchronized: bool,
    state: SourceState,
    output: Option<FilterOutput>,
}

impl Source {
    fn new() -> Self {
        Self {
            filter: ClockFilter::default(),
            noise: NoiseModel::default(),
            reach: 0,
            refid: [0; 4],
            info: None,
            unsynchronized: false,
            state: SourceState::Unusable,
            output: None,
        }
    }
}

/// The clock-discipline algorithm for a set of sources.
#[derive(Clone, Debug)]
pub struct Synchronizer {
    settings: SyncSettings,
    sources: BTreeMap<SourceId, Source>,
    discipline: Discipline,
    poll: PollControl,
    /// The latest time seen, on the monotonic timeline.
    now: f64,
    /// The last combination that steered the clock.
    combined: Option<(Combined, [u8; 4])>,
    reason: Option<NoSyncReason>,
}

impl Synchronizer {
    pub fn new(settings: SyncSettings) -> Self {
        let settings = settings.sanitized();
        let reason = Some(NoSyncReason::WaitingForSources {
            usable: 0,
            required: settings.minimum_agreeing_sources,
        });
        Self {
            poll: PollControl::new(settings.initial_poll),
            settings,
            sources: BTreeMap::new(),
            discipline: Discipline::new(),
            now: f64::NEG_INFINITY,
            combined: None,
            reason,
        }
    }

    /// The settings in force (after out-of-range values were corrected).
    pub fn settings(&self) -> &SyncSettings {
        &self.settings
    }

    /// Starts tracking a source; a known source is left as it is.
    pub fn add_source(&mut self, id: SourceId) {
        self.sources.entry(id).or_insert_with(Source::new);
    }

    /// Forgets a source and its samples.
    pub fn remove_source(&mut self, id: SourceId) {
        self.sources.remove(&id);
    }

    /// The reference id to announce while `id` is the system peer: its IPv4
    /// address, or the first four bytes of the MD5 hash of its IPv6 address
    /// (RFC 5905 section 7.3). The daemon knows addresses; we do not.
    pub fn set_source_refid(&mut self, id: SourceId, refid: [u8; 4]) {
        if let Some(source) = self.sources.get_mut(&id) {
            source.refid = refid;
        }
    }

    /// The frequency correction the clock already has, in ppm (from a
    /// drift file, or as the kernel kept it). Only takes effect before the
    /// first clock action; the default is 0.
    pub fn set_initial_frequency(&mut self, ppm: f64) {
        self.discipline.set_initial_frequency(ppm);
    }

    /// A poll of `id` went unanswered at `now`.
    pub fn unreachable(&mut self, id: SourceId, now: MonoSeconds) {
        let Some(source) = self.sources.get_mut(&id) else {
            return;
        };
        source.reach <<= 1;
        self.advance(now);
        // Refresh what the status says; the clock is only steered on news.
        let _ = self.select();
    }

    /// A completed exchange with `id`: filter, select, combine, discipline.
    /// Measurements from sources not added are ignored.
    #[must_use = "the clock actions must be applied"]
    pub fn measurement(&mut self, id: SourceId, m: Measurement) -> Vec<ClockAction> {
        let frame_offset = self.discipline.to_frame(m.time, m.offset);
        let Some(source) = self.sources.get_mut(&id) else {
            return Vec::new();
        };
        // Any answer counts as reaching the source (RFC 5905 section 13).
        source.reach = (source.reach << 1) | 1;
        let mut fresh = None;
        match sample::accept(&m, frame_offset) {
            Ok((sample, info)) => {
                source.filter.add(sample, self.settings.step_threshold);
                source.info = Some(info);
                source.unsynchronized = false;
                let stats = source.filter.delay_profile().stats(sample.delay);
                if let Some(predicted) = self.discipline.predict(sample.time) {
                    source.noise.record(&stats, sample.offset - predicted);
                }
                let origin = Origin {
                    source: id,
                    delay: sample.delay,
                    dispersion: sample.dispersion,
                };
                fresh = Some((sample.time, sample.offset, origin));
            }
            Err(Rejection::SourceUnsynchronized) => source.unsynchronized = true,
            // A broken sample is dropped; the source's earlier ones stand.
            Err(Rejection::NotFinite | Rejection::AbsurdDelay | Rejection::AbsurdRoot) => {
                return Vec::new();
            }
        }
        self.advance(m.time);

        let Some(combined) = self.select() else {
            return Vec::new();
        };
        let point = Point {
            time: combined.time,
            offset: combined.offset,
            weight: 1.0,
            origin: None,
        };
        // Only a sample of a source the selection trusts feeds the fit.
        let trusted = self
            .sources
            .get(&id)
            .is_some_and(|s| matches!(s.state, SourceState::Candidate | SourceState::Selected));
        // Each source's rule and delays once, not once per stored sample.
        let rules: BTreeMap<SourceId, (Rule, DelayProfile)> = self
            .sources
            .iter()
            .map(|(id, s)| (*id, (s.noise.rule(), s.filter.delay_profile())))
            .collect();
        let weigh = |o: &Origin| {
            rules
                .get(&o.source)
                .map(|(rule, profile)| weight(*rule, *profile, o))
        };
        // The new sample is weighed the same way as the stored ones.
        let fresh = fresh
            .filter(|_| trusted)
            .and_then(|(time, offset, origin)| {
                Some(Point {
                    time,
                    offset,
                    weight: weigh(&origin)?,
                    origin: Some(origin),
                })
            });
        self.discipline.reweigh(&weigh);
        let outcome = self
            .discipline
            .update(&self.settings, point, fresh, self.now);
        if let Some(reframe) = outcome.reframe {
            self.reframe(reframe);
        }
        if let Some(quality) = outcome.quality {
            let sources = self
                .sources
                .values()
                .filter(|s| matches!(s.state, SourceState::Candidate | SourceState::Selected))
                .count();
            self.poll.update(
                quality,
                sources,
                self.settings.poll_min,
                self.settings.poll_max,
            );
        }
        if !outcome.actions.is_empty() {
            let refid = self
                .sources
                .values()
                .nth(combined.peer)
                .map_or([0; 4], |s| s.refid);
            self.combined = Some((combined, refid));
        }
        if self.discipline.is_panicked() {
            self.reason = Some(NoSyncReason::Panicked);
        }
        outcome.actions
    }

    /// The poll interval (log2 s) to use for `id` from now on.
    ///
    /// One system-wide interval, as in RFC 5905: it reflects how well the
    /// clock model predicts the combined offset, which no single source
    /// knows.
    pub fn poll_interval(&self, _id: SourceId) -> i8 {
        self.poll.poll()
    }

    pub fn status(&self) -> SyncStatus {
        let poll = self.poll.poll();
        let sources = self
            .sources
            .iter()
            .map(|(&id, s)| SourceStatus {
                id,
                state: s.state,
                offset: s.output.map_or(0.0, |o| o.offset),
                delay: s.output.map_or(0.0, |o| o.delay),
                jitter: s.output.map_or(0.0, |o| o.jitter),
                reach: s.reach,
                poll,
            })
            .collect();
        let synchronized = self.reason.is_none() && self.discipline.has_started();
        // Before a fit exists the combined sample is all there is: it can
        // be off by its jitter and half the round trip.
        let fallback = self
            .combined
            .map_or(f64::INFINITY, |(c, _)| c.jitter + c.root_delay / 2.0);
        let (estimated_offset, uncertainty) = self.discipline.estimate(self.now, fallback);
        let mut status = SyncStatus {
            synchronized,
            reason: self.reason,
            stratum: self.settings.local_stratum,
            reference_id: INIT_REFID,
            root_delay: 0.0,
            root_dispersion: 0.0,
            leap: Leap::Unsynchronized,
            offset: self.discipline.last_offset(),
            estimated_offset,
            pending_slew: self.discipline.pending_slew(self.now),
            uncertainty,
            frequency_ppm: self.discipline.frequency_ppm(),
            sources,
        };
        if let (true, Some((c, refid))) = (synchronized, self.combined) {
            status.stratum = c.stratum;
            status.reference_id = refid;
            status.root_delay = c.root_delay;
            status.root_dispersion = c.root_dispersion + PHI * (self.now - c.time).max(0.0);
            status.leap = c.leap;
        }
        status
    }

    fn advance(&mut self, now: f64) {
        if now.is_finite() && now.abs() <= MAX_SANE_SECONDS {
            self.now = self.now.max(now);
        }
    }

    fn reframe(&mut self, r: Reframe) {
        for source in self.sources.values_mut() {
            if r.clear {
                source.filter.clear();
            } else {
                source.filter.reframe(r.offset, r.frequency_ppm, r.at);
            }
        }
        if r.clear {
            // The clock jumped: the polling model starts over.
            self.poll.reset(self.settings.initial_poll);
        }
    }

    /// Marks every source's state and combines the truechimers, or records
    /// why not.
    fn select(&mut self) -> Option<Combined> {
        let required = self.settings.minimum_agreeing_sources;
        let now = self.now;
        let mut candidates: Vec<(Claim, Survivor)> = Vec::new();
        for (index, source) in self.sources.values_mut().enumerate() {
            source.state = SourceState::Unusable;
            source.output = source.filter.output(now);
            if source.reach == 0 || source.unsynchronized {
                continue;
            }
            let (Some(out), Some(info)) = (source.output, source.info) else {
                continue;
            };
            // RFC 5905 section 11.2: half the root delay, plus every
            // dispersion and the jitter on the way.
            let jitter = out.jitter.max(log2_seconds(LOCAL_PRECISION));
            let root_distance = (info.root_delay + out.delay).max(MINDISP) / 2.0
                + info.root_dispersion
                + out.dispersion
                + jitter;
            if root_distance.is_nan() || root_distance > MAXDIST {
                continue;
            }
            let claim = Claim {
                offset: out.offset,
                root_distance,
            };
            let survivor = Survivor {
                index,
                time: out.time,
                offset: out.offset,
                delay: out.delay,
                dispersion: out.dispersion,
                jitter,
                root_distance,
                stratum: info.stratum,
                leap: info.leap,
                root_delay: info.root_delay,
                root_dispersion: info.root_dispersion,
            };
            candidates.push((claim, survivor));
        }
        if candidates.len() < required {
            self.reason = Some(NoSyncReason::WaitingForSources {
                usable: candidates.len(),
                required,
            });
            self.mark(&candidates, None);
            return None;
        }
        let claims: Vec<Claim> = candidates.iter().map(|(c, _)| *c).collect();
        let interval = intersection(&claims);
        let survivors: Vec<Survivor> = candidates
            .iter()
            .filter(|(c, _)| interval.is_some_and(|i| is_truechimer(c, i)))
            .map(|(_, s)| *s)
            .collect();
        let combined = if survivors.len() >= required {
            combine(&survivors)
        } else {
            None
        };
        self.mark(&candidates, interval.map(|i| (i, combined.map(|c| c.peer))));
        self.reason = match combined {
            Some(_) if self.discipline.is_panicked() => Some(NoSyncReason::Panicked),
            Some(_) => None,
            None => Some(NoSyncReason::TooFewAgreeing {
                agreeing: survivors.len(),
                required,
            }),
        };
        combined
    }

    /// Records each candidate's state: `selection` is the intersection and
    /// the system peer's index, if one was chosen.
    fn mark(
        &mut self,
        candidates: &[(Claim, Survivor)],
        selection: Option<((f64, f64), Option<usize>)>,
    ) {
        let mut sources: Vec<&mut Source> = self.sources.values_mut().collect();
        for (claim, survivor) in candidates {
            let Some(source) = sources.get_mut(survivor.index) else {
                continue;
            };
            source.state = match selection {
                None => SourceState::Candidate,
                Some((_, Some(peer))) if peer == survivor.index => SourceState::Selected,
                Some((interval, _)) if is_truechimer(claim, interval) => SourceState::Candidate,
                Some(_) => SourceState::Falseticker,
            };
        }
    }
}

/// How much the fit trusts a sample (1 / variance, in 1/s²), as its
/// source's noise model and recent delays see it now.
fn weight(rule: Rule, profile: DelayProfile, origin: &Origin) -> f64 {
    let stats = profile.stats(origin.delay);
    let variance = rule.variance(&stats) + origin.dispersion * origin.dispersion;
    let weight = 1.0 / variance.max(1e-18);
    if weight.is_finite() { weight } else { 1e18 }
}
