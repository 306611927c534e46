//! The synchronizer: per-source state, and one pass of filter, select,
//! combine and discipline for each measurement.

use std::collections::BTreeMap;

use crate::action::ClockAction;
use crate::combine::{Combined, Survivor, combine};
use crate::consts::{LOCAL_PRECISION, MAX_SANE_SECONDS, MAXDIST, MINDISP, PHI, log2_seconds};
use crate::discipline::{Discipline, Reframe};
use crate::filter::{ClockFilter, DelayProfile, FilterOutput};
use crate::kind::SourceKind;
use crate::noise::{NoiseModel, Rule};
use crate::poll::PollControl;
use crate::pulse::WholeTime;
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
    kind: SourceKind,
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
    /// Pulses no whole time could number (pulse sources only).
    unnumbered: u64,
}

impl Source {
    fn new(kind: SourceKind) -> Self {
        Self {
            kind,
            filter: ClockFilter::default(),
            noise: NoiseModel::default(),
            reach: 0,
            refid: [0; 4],
            info: None,
            unsynchronized: false,
            state: SourceState::Unusable,
            output: None,
            unnumbered: 0,
        }
    }

    /// How uncertain its samples are: a reference clock's precision is
    /// configured, a network source's noise is learned.
    fn rule(&self) -> Rule {
        match self.kind.precision() {
            Some(precision) => Rule::Flat(precision * precision),
            None => self.noise.rule(),
        }
    }
}

/// A source with a usable sample, as the selection sees it.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    claim: Claim,
    survivor: Survivor,
    /// A pulse source's period: its offset is numbered, not known.
    period: Option<f64>,
}

/// What the sources that know the whole time agree on.
#[derive(Debug)]
struct Agreement {
    /// The intersection of their claims, if a majority shares one.
    interval: Option<(f64, f64)>,
    truechimers: Vec<Survivor>,
    /// Their combination, when enough of them agree.
    combined: Option<Combined>,
}

impl Agreement {
    fn of(whole: &[Candidate], required: usize) -> Self {
        let claims: Vec<Claim> = whole.iter().map(|c| c.claim).collect();
        let interval = intersection(&claims);
        let truechimers: Vec<Survivor> = whole
            .iter()
            .filter(|c| interval.is_some_and(|i| is_truechimer(&c.claim, i)))
            .map(|c| c.survivor)
            .collect();
        let combined = if truechimers.len() >= required {
            combine(&truechimers)
        } else {
            None
        };
        Self {
            interval,
            truechimers,
            combined,
        }
    }

    /// The whole time pulses are numbered by.
    fn whole_time(&self) -> Option<WholeTime> {
        let combined = self.combined?;
        let peer = self.truechimers.iter().find(|s| s.index == combined.peer)?;
        Some(WholeTime {
            offset: combined.offset,
            distance: peer.root_distance,
        })
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

    /// Starts tracking a network source; a known source is left as it is.
    pub fn add_source(&mut self, id: SourceId) {
        self.add_source_with(id, SourceKind::Network);
    }

    /// Starts tracking a source of `kind` (a reference clock, a pulse); a
    /// known source is left as it is.
    pub fn add_source_with(&mut self, id: SourceId, kind: SourceKind) {
        self.sources
            .entry(id)
            .or_insert_with(|| Source::new(kind.sanitized()));
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

    /// A poll of `id` went unanswered at `now`. A reference clock that
    /// falls silent is unusable at once, until its next sample: no poll of
    /// ours can bring an answer from it.
    pub fn unreachable(&mut self, id: SourceId, now: MonoSeconds) {
        let Some(source) = self.sources.get_mut(&id) else {
            return;
        };
        if source.kind.is_refclock() {
            source.reach = 0;
        } else {
            source.reach <<= 1;
        }
        self.advance(now);
        // Refresh what the status says; the clock is only steered on news.
        let _ = self.select();
    }

    /// A completed exchange with `id`: filter, select, combine, discipline.
    /// Measurements from sources not added are ignored. For a pulse
    /// source, `m.offset` is known modulo its period only: the sources
    /// that know the whole time number it, and while none can, the pulse
    /// is counted and dropped.
    #[must_use = "the clock actions must be applied"]
    pub fn measurement(&mut self, id: SourceId, m: Measurement) -> Vec<ClockAction> {
        let Some(kind) = self.sources.get(&id).map(|s| s.kind) else {
            return Vec::new();
        };
        let mut frame_offset = self.discipline.to_frame(m.time, m.offset);
        if let Some(period) = kind.period() {
            self.advance(m.time);
            let numbered = self
                .whole_time()
                .and_then(|whole| whole.number(frame_offset, period));
            match numbered {
                Some(offset) => frame_offset = offset,
                None => {
                    if let Some(source) = self.sources.get_mut(&id) {
                        source.reach = (source.reach << 1) | 1;
                        source.unnumbered += 1;
                    }
                    let _ = self.select();
                    return Vec::new();
                }
            }
        }
        let Some(source) = self.sources.get_mut(&id) else {
            return Vec::new();
        };
        // Any answer counts as reaching the source (RFC 5905 section 13).
        source.reach = (source.reach << 1) | 1;
        let mut fresh = None;
        match sample::accept(&m, frame_offset, kind) {
            Ok((sample, info)) => {
                source.filter.add(sample, self.settings.step_threshold);
                source.info = Some(info);
                source.unsynchronized = false;
                let stats = source.filter.delay_profile().stats(sample.delay);
                if let Some(predicted) = self.discipline.predict(sample.time)
                    && !kind.is_refclock()
                {
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
            .map(|(id, s)| (*id, (s.rule(), s.filter.delay_profile())))
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
                unnumbered_pulses: s.unnumbered,
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

    /// Every source's filter output as of now, and its state reset to
    /// unusable until the selection says otherwise.
    fn refresh(&mut self) {
        let now = self.now;
        for source in self.sources.values_mut() {
            source.state = SourceState::Unusable;
            source.output = source.filter.output(now);
        }
    }

    /// The sources with a usable sample (after `refresh`).
    fn candidates(&self) -> Vec<Candidate> {
        let mut candidates = Vec::new();
        for (index, source) in self.sources.values().enumerate() {
            if source.reach == 0 || source.unsynchronized {
                continue;
            }
            let (Some(out), Some(info)) = (source.output, source.info) else {
                continue;
            };
            // RFC 5905 section 11.2: half the root delay, plus every
            // dispersion and the jitter on the way. The floor keeps a
            // network source with a tiny round trip from claiming to be
            // exact; a reference clock's dispersion is its precision.
            let jitter = out.jitter.max(log2_seconds(LOCAL_PRECISION));
            let floor = if source.kind.is_refclock() {
                0.0
            } else {
                MINDISP
            };
            let root_distance = (info.root_delay + out.delay).max(floor) / 2.0
                + info.root_dispersion
                + out.dispersion
                + jitter;
            if root_distance.is_nan() || root_distance > MAXDIST {
                continue;
            }
            let period = source.kind.period();
            candidates.push(Candidate {
                claim: Claim {
                    offset: out.offset,
                    root_distance,
                },
                survivor: Survivor {
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
                    pulse: period.is_some(),
                },
                period,
            });
        }
        candidates
    }

    /// What the sources that know the whole time agree on now, to number
    /// a pulse by.
    fn whole_time(&mut self) -> Option<WholeTime> {
        self.refresh();
        let whole: Vec<Candidate> = self
            .candidates()
            .into_iter()
            .filter(|c| c.period.is_none())
            .collect();
        Agreement::of(&whole, self.settings.minimum_agreeing_sources).whole_time()
    }

    /// Marks every source's state and combines the truechimers, or records
    /// why not.
    ///
    /// The sources that know the whole time are selected as RFC 5905 says,
    /// and only they count towards `minimum_agreeing_sources` (as in
    /// ntpd-rs). A pulse source then joins them if its numbered offset
    /// still agrees with their whole time; it is unusable while they have
    /// none, and a falseticker while it disagrees.
    fn select(&mut self) -> Option<Combined> {
        let required = self.settings.minimum_agreeing_sources;
        self.refresh();
        let (whole, pulses): (Vec<Candidate>, Vec<Candidate>) = self
            .candidates()
            .into_iter()
            .partition(|c| c.period.is_none());
        let mut states: Vec<(usize, SourceState)> = Vec::new();
        if whole.len() < required {
            self.reason = Some(NoSyncReason::WaitingForSources {
                usable: whole.len(),
                required,
            });
            states.extend(
                whole
                    .iter()
                    .map(|c| (c.survivor.index, SourceState::Candidate)),
            );
            self.mark(&states);
            return None;
        }
        let agreement = Agreement::of(&whole, required);
        let mut survivors = agreement.truechimers.clone();
        let whole_time = agreement.whole_time();
        for pulse in &pulses {
            let period = pulse.period.unwrap_or(1.0);
            match whole_time {
                Some(whole) if whole.agrees(pulse.survivor.offset, period) => {
                    survivors.push(pulse.survivor);
                }
                Some(_) => states.push((pulse.survivor.index, SourceState::Falseticker)),
                None => {}
            }
        }
        let combined = agreement.combined.and_then(|_| combine(&survivors));
        let peer = combined.map(|c| c.peer);
        for s in &survivors {
            let state = if peer == Some(s.index) {
                SourceState::Selected
            } else {
                SourceState::Candidate
            };
            states.push((s.index, state));
        }
        for c in &whole {
            if agreement.interval.is_none() {
                states.push((c.survivor.index, SourceState::Candidate));
            } else if !survivors.iter().any(|s| s.index == c.survivor.index) {
                states.push((c.survivor.index, SourceState::Falseticker));
            }
        }
        self.mark(&states);
        self.reason = match combined {
            Some(_) if self.discipline.is_panicked() => Some(NoSyncReason::Panicked),
            Some(_) => None,
            None => Some(NoSyncReason::TooFewAgreeing {
                agreeing: agreement.truechimers.len(),
                required,
            }),
        };
        combined
    }

    /// Sets each listed source's state (by its index in the map); the
    /// others stay as `refresh` left them.
    fn mark(&mut self, states: &[(usize, SourceState)]) {
        let mut sources: Vec<&mut Source> = self.sources.values_mut().collect();
        for &(index, state) in states {
            if let Some(source) = sources.get_mut(index) {
                source.state = state;
            }
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
