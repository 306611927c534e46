//! The PPS task against a simulated device: edges with jitter, a repeated
//! reading, edges the kernel counted but we never read, a stale edge, a
//! failing read, and silence.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sundial_proto::refclock::Rejection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::source::{Reach, SourceEvent, SourceId, SourceStats};

/// One scripted reading of the simulated device.
#[derive(Debug)]
enum Reading {
    /// An edge with this sequence number, `nanos` into the second before
    /// the current one, and `seconds_back` more seconds in the past.
    Edge {
        sequence: u32,
        nanos: u32,
        seconds_back: i64,
    },
    Fail,
}

/// Plays its script, then has no more edges.
#[derive(Debug)]
struct SimulatedPps(VecDeque<Reading>);

impl PpsDevice for SimulatedPps {
    fn fetch(&mut self, _timeout: Duration) -> io::Result<Option<PpsEdge>> {
        match self.0.pop_front() {
            None => {
                std::thread::sleep(Duration::from_millis(5));
                Ok(None)
            }
            Some(Reading::Fail) => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            Some(Reading::Edge {
                sequence,
                nanos,
                seconds_back,
            }) => Ok(Some(PpsEdge {
                sequence,
                time: sundial_proto::refclock::UnixTime {
                    secs: system_now().secs - 1 - seconds_back,
                    nanos,
                },
            })),
        }
    }
}

fn edge(sequence: u32, nanos: u32) -> Reading {
    Reading::Edge {
        sequence,
        nanos,
        seconds_back: 0,
    }
}

struct Running {
    events: mpsc::Receiver<SourceEvent>,
    stats: Arc<SourceStats>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(script: Vec<Reading>, period: f64) -> Running {
    let (tx, events) = mpsc::channel(64);
    let stats = Arc::new(SourceStats::default());
    let cancel = CancellationToken::new();
    let ctx = SourceContext {
        id: SourceId(7),
        events: tx,
        origin: Instant::now(),
        cancel: cancel.clone(),
        stats: Arc::clone(&stats),
        reach: Reach::default(),
        interleaved: false,
    };
    let target = Target {
        period,
        reference: Reference {
            reference_id: *b"PPS\0",
            accuracy: 1e-6,
        },
    };
    let device = Box::new(SimulatedPps(script.into()));
    let task = tokio::spawn(run(ctx, device, target));
    Running {
        events,
        stats,
        cancel,
        task,
    }
}

async fn next(events: &mut mpsc::Receiver<SourceEvent>) -> SourceEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the task is running")
}

#[tokio::test]
async fn edges_become_offsets_within_the_second() {
    let script = vec![
        // 1 µs before the second: we are 1 µs slow.
        edge(100, 999_999_000),
        // The same edge read again (a wait that ended without a new one).
        edge(100, 999_999_000),
        // Jitter: 250 ns after the second, then 2.5 µs before it.
        edge(101, 250),
        Reading::Fail,
        edge(102, 999_997_500),
        // Two edges the kernel counted that never reached us.
        edge(105, 1_000),
        // An edge from a minute ago (the signal stopped long since).
        Reading::Edge {
            sequence: 106,
            nanos: 0,
            seconds_back: 60,
        },
        edge(107, 500),
    ];
    let mut running = start(script, 1.0);
    let mut offsets = Vec::new();
    for _ in 0..5 {
        match next(&mut running.events).await {
            SourceEvent::Measurement(id, m) => {
                assert_eq!(id, SourceId(7));
                assert_eq!((m.stratum, m.delay), (0, 0.0));
                assert_eq!(m.reference_id, *b"PPS\0");
                assert_eq!(m.root_dispersion, 1e-6);
                assert_eq!(m.leap, Leap::None);
                // Stamped when the edge came, on the daemon's timeline: a
                // second or two before it was read.
                assert!(m.time.abs() < 3.0, "{m:?}");
                offsets.push(m.offset);
            }
            other => panic!("{other:?}"),
        }
    }
    let want = [1e-6, -250e-9, 2.5e-6, -1e-6, -500e-9];
    for (got, want) in offsets.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{offsets:?}");
    }
    let stats = &running.stats;
    assert_eq!(stats.samples.load(Ordering::Relaxed), 5);
    assert_eq!(
        stats.rejected[Rejection::Stale as usize].load(Ordering::Relaxed),
        1
    );
    running.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("the task ends within its reader's wait")
        .expect("no panic");
}

#[tokio::test]
async fn a_silent_device_becomes_unreachable() {
    // A 20 Hz signal that stops after two edges: 8 periods later the
    // synchronizer hears of it, once.
    let script = vec![edge(1, 0), edge(2, 50_000_000)];
    let mut running = start(script, 0.05);
    assert!(matches!(
        next(&mut running.events).await,
        SourceEvent::Measurement(..)
    ));
    assert!(matches!(
        next(&mut running.events).await,
        SourceEvent::Measurement(..)
    ));
    assert_eq!(
        next(&mut running.events).await,
        SourceEvent::Unreachable(SourceId(7))
    );
    let quiet = tokio::time::timeout(Duration::from_millis(600), running.events.recv()).await;
    assert!(quiet.is_err(), "said twice: {quiet:?}");
    assert!(running.stats.missed_intervals.load(Ordering::Relaxed) >= 8);
    assert_eq!(running.stats.reach.load(Ordering::Relaxed) & 0xff, 0);
    running.cancel.cancel();
    let _ = running.task.await;
}
