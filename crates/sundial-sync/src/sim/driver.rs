//! Plays the whole loop in simulated time: each source is polled at the
//! interval the synchronizer asks for, its reply arrives after the path's
//! delays, each reference clock sends on its own schedule, the
//! synchronizer's actions steer the clock.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::consts::log2_seconds;
use crate::{ClockAction, Measurement, SourceId, SyncSettings, Synchronizer};

use super::clock::{SimClock, SimClockConfig};
use super::network::{SimSourceConfig, draw_path};
use super::noise::Noise;
use super::refclock::{SimRefclockConfig, SimRefclockKind};

/// Time a server takes between receiving a request and answering it.
const SERVER_PROCESSING: f64 = 20e-6;

/// The clock as it was at one instant of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    /// True time since the start, seconds.
    pub time: f64,
    /// True time minus our clock.
    pub offset: f64,
    /// True time minus our clock once the pending slew is done: the error
    /// of an observe-only daemon's virtual clock, which counts every
    /// correction issued in full.
    pub issued_offset: f64,
    /// The synchronizer's own estimate of `issued_offset`, and one
    /// standard error of it (see `SyncStatus`).
    pub estimated_offset: f64,
    pub uncertainty: f64,
    /// Frequency correction in force minus the one that would be ideal.
    pub frequency_error_ppm: f64,
    pub poll: i8,
    pub synchronized: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Poll(usize),
    Reply {
        source: usize,
        t1: f64,
        t2: f64,
        t3: f64,
    },
    /// Reference clock `n` sends; its `k`-th sample or edge, due at true
    /// time `k × interval`.
    Refclock(usize, u64),
    Trace,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    time: f64,
    seq: u64,
    kind: Kind,
}

// Ordered so that the `BinaryHeap` (a max-heap) pops the earliest event,
// and among equal times the one scheduled first.
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .total_cmp(&self.time)
            .then(other.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Event {}

/// One simulated machine with its sources.
#[derive(Debug)]
pub struct Simulation {
    clock: SimClock,
    sources: Vec<SimSourceConfig>,
    refclocks: Vec<SimRefclockConfig>,
    sync: Synchronizer,
    noise: Noise,
    queue: BinaryHeap<Event>,
    seq: u64,
    trace_interval: f64,
    trace: Vec<TracePoint>,
    actions: Vec<(f64, ClockAction)>,
    halted: bool,
}

impl Simulation {
    /// Source `i` of `sources` is `SourceId(i)`. A trace point is taken
    /// every 10 simulated seconds.
    pub fn new(
        settings: SyncSettings,
        clock: SimClockConfig,
        sources: Vec<SimSourceConfig>,
        seed: u64,
    ) -> Self {
        let mut sync = Synchronizer::new(settings);
        let mut noise = Noise::new(seed);
        let mut queue = BinaryHeap::new();
        let mut seq = 0;
        for i in 0..sources.len() {
            sync.add_source(Self::source_id(i));
            // A daemon starts its sources within the first second or so.
            queue.push(Event {
                time: noise.uniform(),
                seq,
                kind: Kind::Poll(i),
            });
            seq += 1;
        }
        queue.push(Event {
            time: 0.0,
            seq,
            kind: Kind::Trace,
        });
        Self {
            clock: SimClock::new(clock, seed ^ 0x5eed_c10c),
            sources,
            refclocks: Vec::new(),
            sync,
            noise,
            queue,
            seq: seq + 1,
            trace_interval: 10.0,
            trace: Vec::new(),
            actions: Vec::new(),
            halted: false,
        }
    }

    /// Takes trace points every `seconds` instead of every 10 s (from the
    /// next one on).
    pub fn set_trace_interval(&mut self, seconds: f64) {
        if seconds.is_finite() && seconds > 0.0 {
            self.trace_interval = seconds;
        }
    }

    pub fn source_id(index: usize) -> SourceId {
        SourceId(index as u64)
    }

    /// Adds a reference clock; it sends from its next sample time on, and
    /// its id follows the network sources' (and the earlier refclocks').
    pub fn add_refclock(&mut self, config: SimRefclockConfig) -> SourceId {
        let index = self.refclocks.len();
        let id = self.refclock_id(index);
        self.sync.add_source_with(id, config.source_kind());
        self.sync.set_source_refid(id, config.reference_id());
        self.refclocks.push(config);
        if config.interval.is_finite() && config.interval > 0.0 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let next = (self.clock.true_time() / config.interval).floor() as u64 + 1;
            self.schedule(next as f64 * config.interval, Kind::Refclock(index, next));
        }
        id
    }

    /// The id of reference clock `index` (in the order they were added).
    pub fn refclock_id(&self, index: usize) -> SourceId {
        Self::source_id(self.sources.len() + index)
    }

    /// Changes a reference clock mid-run (a wrong second, lost edges).
    pub fn refclock_mut(&mut self, index: usize) -> Option<&mut SimRefclockConfig> {
        self.refclocks.get_mut(index)
    }

    /// Changes a source mid-run (make it a falseticker, announce a leap).
    pub fn source_mut(&mut self, index: usize) -> Option<&mut SimSourceConfig> {
        self.sources.get_mut(index)
    }

    pub fn synchronizer(&self) -> &Synchronizer {
        &self.sync
    }

    pub fn synchronizer_mut(&mut self) -> &mut Synchronizer {
        &mut self.sync
    }

    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// The clock, to change its rate mid-run.
    pub fn clock_mut(&mut self) -> &mut SimClock {
        &mut self.clock
    }

    pub fn trace(&self) -> &[TracePoint] {
        &self.trace
    }

    /// Every action the synchronizer returned, with the true time.
    pub fn actions(&self) -> &[(f64, ClockAction)] {
        &self.actions
    }

    /// Whether the synchronizer panicked (the daemon would have stopped).
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// Runs for `seconds` more of simulated time.
    pub fn run_for(&mut self, seconds: f64) {
        self.run_until(self.clock.true_time() + seconds);
    }

    /// Runs until true time `end`.
    pub fn run_until(&mut self, end: f64) {
        while let Some(event) = self.queue.peek().copied() {
            if event.time > end {
                break;
            }
            self.queue.pop();
            self.clock.advance_to(event.time);
            match event.kind {
                Kind::Poll(source) => self.poll(source),
                Kind::Reply { source, t1, t2, t3 } => self.reply(source, t1, t2, t3),
                Kind::Refclock(index, k) => self.refclock(index, k),
                Kind::Trace => self.record(),
            }
        }
        self.clock.advance_to(end);
    }

    fn schedule(&mut self, time: f64, kind: Kind) {
        self.queue.push(Event {
            time,
            seq: self.seq,
            kind,
        });
        self.seq += 1;
    }

    fn poll(&mut self, index: usize) {
        if self.halted {
            return;
        }
        let Some(source) = self.sources.get(index).copied() else {
            return;
        };
        let id = Self::source_id(index);
        let now = self.clock.true_time();
        // Polls are spread by ±5% so that sources do not stay in lockstep.
        let interval =
            log2_seconds(self.sync.poll_interval(id)) * (0.95 + 0.1 * self.noise.uniform());
        self.schedule(now + interval, Kind::Poll(index));
        let t1 = self.clock.reading();
        match draw_path(&source, &mut self.noise) {
            None => self.sync.unreachable(id, self.clock.monotonic()),
            Some((outbound, inbound)) => {
                let t2 = now + outbound + source.error;
                let t3 = t2 + SERVER_PROCESSING;
                let arrival = now + outbound + SERVER_PROCESSING + inbound;
                self.schedule(
                    arrival,
                    Kind::Reply {
                        source: index,
                        t1,
                        t2,
                        t3,
                    },
                );
            }
        }
    }

    fn reply(&mut self, index: usize, t1: f64, t2: f64, t3: f64) {
        if self.halted {
            return;
        }
        let Some(source) = self.sources.get(index).copied() else {
            return;
        };
        let t4 = self.clock.reading();
        // RFC 5905 section 8.
        let measurement = Measurement {
            time: self.clock.monotonic(),
            offset: ((t2 - t1) + (t3 - t4)) / 2.0,
            delay: (t4 - t1) - (t3 - t2),
            stratum: source.stratum,
            leap: source.leap,
            root_delay: source.root_delay,
            root_dispersion: source.root_dispersion,
            reference_id: *b"SIM\0",
            precision: source.precision,
        };
        self.feed(Self::source_id(index), measurement);
    }

    /// Reference clock `index` sends its `k`-th sample or edge now.
    fn refclock(&mut self, index: usize, k: u64) {
        if self.halted {
            return;
        }
        let Some(config) = self.refclocks.get(index).copied() else {
            return;
        };
        self.schedule(
            (k + 1) as f64 * config.interval,
            Kind::Refclock(index, k + 1),
        );
        if self.noise.chance(config.loss) {
            return;
        }
        // The reference marks this instant of its own time; our clock reads
        // `reading` then, give or take the timing noise.
        let marked = self.clock.true_time() + config.error;
        let reading = self.clock.reading() + config.jitter * self.noise.normal();
        let offset = match config.kind {
            SimRefclockKind::Sock => marked - reading,
            // Where in the period our clock was at the edge; which period
            // the synchronizer has to find out.
            SimRefclockKind::Pulse => {
                let p = config.interval;
                let late = (reading - marked).rem_euclid(p);
                if 2.0 * late <= p { -late } else { p - late }
            }
        };
        let measurement = Measurement {
            time: self.clock.monotonic(),
            offset,
            delay: 0.0,
            stratum: 0,
            leap: config.leap,
            root_delay: 0.0,
            root_dispersion: 0.0,
            reference_id: config.reference_id(),
            precision: -20,
        };
        let id = self.refclock_id(index);
        self.feed(id, measurement);
    }

    /// Hands one measurement to the synchronizer and applies its actions.
    fn feed(&mut self, id: SourceId, measurement: Measurement) {
        let actions = self.sync.measurement(id, measurement);
        let now = self.clock.true_time();
        for action in actions {
            if matches!(action, ClockAction::Panic { .. }) {
                self.halted = true;
            }
            self.clock.apply(&action);
            self.actions.push((now, action));
        }
    }

    fn record(&mut self) {
        let status = self.sync.status();
        self.trace.push(TracePoint {
            time: self.clock.true_time(),
            offset: self.clock.offset(),
            issued_offset: self.clock.offset() - self.clock.pending_slew(),
            estimated_offset: status.estimated_offset,
            uncertainty: status.uncertainty,
            frequency_error_ppm: self.clock.correction_ppm() - self.clock.ideal_correction_ppm(),
            poll: self.sync.poll_interval(Self::source_id(0)),
            synchronized: status.synchronized,
        });
        let next = self.clock.true_time() + self.trace_interval;
        self.schedule(next, Kind::Trace);
    }
}
