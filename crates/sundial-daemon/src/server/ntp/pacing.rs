//! When a serving thread reads its socket again.
//!
//! At light load each request wakes the thread on its own, and the
//! wake-up (an interrupt on an idle core, two context switches) costs
//! several times the work of answering: 15-20 µs against 5 µs per NTS
//! answer at 10 000 requests/s on the machine of docs/performance.md. So
//! while the thread is mostly idle and requests come often enough that a
//! short wait gathers more of them, it waits `hold` before its next read
//! and answers what arrived in one batch, as a NIC's interrupt coalescing
//! does. Under heavier load requests pile up while a batch is being
//! answered, batches form by themselves and waiting would only add
//! latency, so the thread reads again at once.
//!
//! Waiting changes no timestamp a client uses: the receive timestamp is
//! the kernel's, taken on arrival, and the transmit timestamp is read just
//! before the answer is sealed, so the wait is inside T3 - T2, which NTP
//! takes out of the round-trip delay and the offset. What it costs is
//! answer latency, at most `hold` plus the timer's slack, at light load.

use std::time::{Duration, Instant};

/// How long the load is measured before each decision is revised.
const WINDOW: Duration = Duration::from_millis(20);

/// Above this share of time spent answering, batches form without
/// waiting: the thread reads as soon as it is done.
const MAX_BUSY_SHARE: f64 = 0.25;

/// The load of the last full window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Load {
    /// Requests per second.
    rate: f64,
    /// Share of the window spent handling batches.
    busy: f64,
}

/// One serving thread's pacing state.
#[derive(Debug)]
pub struct Pacer {
    hold: Duration,
    window_start: Instant,
    received: u64,
    busy: Duration,
    last: Option<Load>,
}

impl Pacer {
    /// `hold` zero never waits.
    pub fn new(hold: Duration, now: Instant) -> Self {
        Self {
            hold,
            window_start: now,
            received: 0,
            busy: Duration::ZERO,
            last: None,
        }
    }

    /// Records a batch of `n` requests that took `busy` to answer, ending
    /// at `now`; says how long to wait before the next read. A full batch
    /// means more are queued: never wait then.
    pub fn after_batch(
        &mut self,
        n: usize,
        full: bool,
        busy: Duration,
        now: Instant,
    ) -> Option<Duration> {
        self.received += n as u64;
        self.busy += busy;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            let secs = elapsed.as_secs_f64();
            self.last = Some(Load {
                rate: self.received as f64 / secs,
                busy: self.busy.as_secs_f64() / secs,
            });
            self.window_start = now;
            self.received = 0;
            self.busy = Duration::ZERO;
        }
        if self.hold.is_zero() || full {
            return None;
        }
        let load = self.last?;
        // Wait only if the wait is expected to bring at least one more
        // request, and only while the thread is mostly idle.
        let gathers_more = load.rate * self.hold.as_secs_f64() >= 1.0;
        (gathers_more && load.busy < MAX_BUSY_SHARE).then_some(self.hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_micros(500);

    /// Feeds `seconds` of batches of `per_batch` requests arriving at
    /// `rate`, each taking `cost` per request; returns the last decision.
    fn run(
        pacer: &mut Pacer,
        start: Instant,
        rate: f64,
        per_batch: usize,
        cost: Duration,
    ) -> Option<Duration> {
        let gap = Duration::from_secs_f64(per_batch as f64 / rate);
        let mut now = start;
        let mut decision = None;
        for _ in 0..(0.1 * rate / per_batch as f64) as usize {
            now += gap;
            decision = pacer.after_batch(per_batch, false, cost * per_batch as u32, now);
        }
        decision
    }

    #[test]
    fn light_steady_load_waits_to_gather_requests() {
        let start = Instant::now();
        let mut pacer = Pacer::new(HOLD, start);
        // 10 000/s, 5 µs each: 5 % busy, 5 requests per hold.
        let decision = run(&mut pacer, start, 10_000.0, 1, Duration::from_micros(5));
        assert_eq!(decision, Some(HOLD));
    }

    #[test]
    fn no_wait_before_the_load_is_known_nor_for_a_full_batch() {
        let start = Instant::now();
        let mut pacer = Pacer::new(HOLD, start);
        let soon = start + Duration::from_millis(1);
        assert_eq!(pacer.after_batch(1, false, Duration::ZERO, soon), None);
        run(&mut pacer, start, 10_000.0, 1, Duration::from_micros(5));
        let later = start + Duration::from_secs(1);
        assert_eq!(pacer.after_batch(32, true, Duration::ZERO, later), None);
    }

    #[test]
    fn sparse_requests_are_answered_at_once() {
        let start = Instant::now();
        let mut pacer = Pacer::new(HOLD, start);
        // 1000/s: a 500 µs wait would gather half a request.
        let decision = run(&mut pacer, start, 1000.0, 1, Duration::from_micros(5));
        assert_eq!(decision, None);
    }

    #[test]
    fn a_busy_thread_reads_again_at_once() {
        let start = Instant::now();
        let mut pacer = Pacer::new(HOLD, start);
        // 100 000/s at 5 µs each: half the time answering.
        let decision = run(&mut pacer, start, 100_000.0, 4, Duration::from_micros(5));
        assert_eq!(decision, None);
    }

    #[test]
    fn a_zero_hold_never_waits() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Duration::ZERO, start);
        let decision = run(&mut pacer, start, 10_000.0, 1, Duration::from_micros(5));
        assert_eq!(decision, None);
    }
}
