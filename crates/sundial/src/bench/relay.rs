//! `sundial bench relay`: a UDP relay that delays every datagram, for the
//! accuracy bench on kernels without netem.
//!
//! Clients send to `--listen`; each client address gets its own socket
//! towards `--upstream` (so the upstream's answers can be routed back to
//! the client that asked), and every datagram, each way, is held for a
//! delay drawn from the path model before it is sent on:
//!
//! - "out" is client -> upstream (`--out-delay-ms`), "in" is upstream ->
//!   client (`--in-delay-ms`), each a normal distribution with standard
//!   deviation `--jitter-ms`, drawn per packet and per direction, and
//!   truncated at 0;
//! - `--loss` drops each datagram with that probability, each direction
//!   independently (an exchange is lost with about twice that);
//! - `--spike-prob` adds `--spike-ms` to a datagram's delay, again per
//!   datagram and direction.
//!
//! One seeded random stream (`--seed`) draws everything, in the order the
//! datagrams arrive. Packets may overtake one another, as on a real path.
//!
//! Timing: tokio's timers resolve milliseconds, far too coarse for a path
//! whose jitter is 1 ms. One thread reads all sockets (poll) and stamps
//! each datagram's arrival with the monotonic clock; a sender thread
//! sleeps until [`SPIN`] before the earliest release and spins to the
//! exact instant. The summary line reports that sender's lateness
//! (release to `send`), the relay's own timing error, so a reader can see
//! it is small next to the delays it draws.
//!
//! The pure part ([`Scheduler`], [`Lateness`], [`Table`]) takes `now` as an
//! argument and is unit-tested; [`run`] is the shell. It stops by itself
//! after `--duration` seconds.

use std::cmp::{Ordering, Reverse};
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use sundial_sync::sim::Noise;

/// The sender sleeps until this long before a release, then spins: the
/// kernel's wake-up latency (timer slack is 50 µs) stays inside it.
const SPIN: Duration = Duration::from_micros(200);
/// Client addresses with a socket of their own at most; the one used
/// longest ago goes first.
const MAX_CLIENTS: usize = 1024;
/// A client socket unused this long is closed. Clients that use a fresh
/// source port per request (chronyd does) would otherwise fill the table;
/// an answer later than this after the last datagram is lost.
const IDLE: Duration = Duration::from_secs(30);
/// Datagrams held at once at most; more are dropped (and counted).
const MAX_QUEUED: usize = 65_536;
/// Longest datagram relayed (NTS requests are a few hundred bytes).
const MAX_DATAGRAM: usize = 2048;
/// Longest run: the accuracy bench's scenarios last minutes, not days.
const MAX_SECONDS: f64 = 6.0 * 3600.0;
/// Datagrams read per socket per wake-up, so one busy socket cannot
/// starve the others.
const READS_PER_WAKE: usize = 64;

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client -> upstream.
    Out,
    /// Upstream -> client.
    In,
}

/// One direction's delay: a normal distribution, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathDelay {
    pub mean: f64,
    pub sd: f64,
}

/// What the relay does to datagrams, both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayModel {
    pub out: PathDelay,
    pub back: PathDelay,
    /// Probability that a datagram is dropped, per datagram and direction.
    pub loss: f64,
    /// Probability that a datagram gets `spike` more delay.
    pub spike_prob: f64,
    /// Extra delay of a spike, seconds.
    pub spike: f64,
}

impl DelayModel {
    /// The reason the model makes no sense, if any.
    pub fn check(&self) -> Result<(), String> {
        let finite = [
            self.out.mean,
            self.out.sd,
            self.back.mean,
            self.back.sd,
            self.spike,
        ];
        if finite
            .iter()
            .any(|v| !v.is_finite() || *v < 0.0 || *v > 60.0)
        {
            return Err("delays, jitter and spikes must be between 0 and 60 000 ms".to_owned());
        }
        if !(0.0..=1.0).contains(&self.loss) || !(0.0..=1.0).contains(&self.spike_prob) {
            return Err("--loss and --spike-prob are probabilities, 0 to 1".to_owned());
        }
        Ok(())
    }
}

/// A datagram's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Drop,
    Release { at: Instant, spiked: bool },
}

/// Draws each datagram's fate from the model with one seeded stream.
#[derive(Debug)]
pub struct Scheduler {
    model: DelayModel,
    noise: Noise,
}

impl Scheduler {
    pub fn new(model: DelayModel, seed: u64) -> Self {
        Self {
            model,
            noise: Noise::new(seed),
        }
    }

    /// The fate of a datagram that arrived at `now` going `direction`.
    /// Every call draws the same three numbers, dropped or not, so a
    /// seed's sequence depends only on the order datagrams arrive in.
    pub fn decide(&mut self, direction: Direction, now: Instant) -> Fate {
        let path = match direction {
            Direction::Out => self.model.out,
            Direction::In => self.model.back,
        };
        // The simulator's generator: the relay draws what it models.
        let lost = self.noise.chance(self.model.loss);
        let spiked = self.noise.chance(self.model.spike_prob);
        let z = self.noise.normal();
        if lost {
            return Fate::Drop;
        }
        let mut delay = (path.mean + path.sd * z).max(0.0);
        if spiked {
            delay += self.model.spike;
        }
        Fate::Release {
            at: now + Duration::from_secs_f64(delay),
            spiked,
        }
    }
}

/// How late the sender was, release instant to `send`: a histogram in
/// microseconds, bounded whatever the run's length.
#[derive(Debug, Clone)]
pub struct Lateness {
    /// `buckets[i]`: releases late by i µs (the last bucket: or more).
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
}

impl Default for Lateness {
    fn default() -> Self {
        Self::new()
    }
}

impl Lateness {
    /// Lateness is resolved to the microsecond up to 10 ms.
    const RESOLVED_US: usize = 10_000;

    pub fn new() -> Self {
        Self {
            buckets: vec![0; Self::RESOLVED_US + 1],
            count: 0,
            max_us: 0,
        }
    }

    pub fn record(&mut self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let index = usize::try_from(us)
            .unwrap_or(usize::MAX)
            .min(Self::RESOLVED_US);
        if let Some(bucket) = self.buckets.get_mut(index) {
            *bucket += 1;
        }
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The `q` quantile in µs (10 000 means "10 ms or more"); none
    /// before the first record.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest value with at
        // least q of the records at or below it.
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (us, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(us as u64);
            }
        }
        Some(self.max_us)
    }
}

/// The clients the relay has a socket for, keyed by address, each with
/// the instant it was last used. Bounded: the least recently used goes
/// when it is full, and any unused for `idle` goes on [`Table::expire`].
#[derive(Debug)]
pub struct Table<T> {
    capacity: usize,
    idle: Duration,
    entries: HashMap<SocketAddr, (T, Instant)>,
}

impl<T> Table<T> {
    pub fn new(capacity: usize, idle: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            idle,
            entries: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry for `addr`, made with `make` when there is none (after
    /// evicting the least recently used one if the table is full); either
    /// way marked used at `now`.
    pub fn get_or_insert<E>(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<&T, E> {
        if !self.entries.contains_key(&addr) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        match self.entries.entry(addr) {
            Entry::Occupied(o) => {
                let entry = o.into_mut();
                entry.1 = now;
                Ok(&entry.0)
            }
            Entry::Vacant(v) => Ok(&v.insert((make()?, now)).0),
        }
    }

    /// Marks `addr` used at `now`, if it is in the table.
    pub fn touch(&mut self, addr: SocketAddr, now: Instant) {
        if let Some((_, used)) = self.entries.get_mut(&addr) {
            *used = now;
        }
    }

    /// Drops the entries unused for longer than `idle`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        let idle = self.idle;
        self.entries
            .retain(|_, (_, used)| now.saturating_duration_since(*used) <= idle);
        before - self.entries.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &T)> {
        self.entries.iter().map(|(a, (t, _))| (a, t))
    }
}

/// The relay's settings, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub seconds: f64,
    pub model: DelayModel,
    pub seed: u64,
}

/// A datagram waiting for its release.
#[derive(Debug)]
struct Pending {
    at: Instant,
    /// Arrival order: equal instants leave in the order they came.
    seq: u64,
    direction: Direction,
    bytes: Vec<u8>,
    socket: Arc<UdpSocket>,
    /// None: `socket` is connected to the upstream.
    to: Option<SocketAddr>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Pending>>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the sender did.
#[derive(Debug, Default)]
struct SenderReport {
    sent_out: u64,
    sent_in: u64,
    send_failed: u64,
    lateness: Lateness,
}

/// What the receiver did.
#[derive(Debug, Default)]
struct ReceiverReport {
    received_out: u64,
    received_in: u64,
    dropped_out: u64,
    dropped_in: u64,
    spikes: u64,
    overflow: u64,
    clients: u64,
}

pub fn run(config: &RelayConfig) -> Result<(), String> {
    config.model.check()?;
    let seconds = config.seconds.clamp(0.1, MAX_SECONDS);
    let listen = UdpSocket::bind(config.listen)
        .map_err(|e| format!("relay: bind {}: {e}", config.listen))?;
    listen
        .set_nonblocking(true)
        .map_err(|e| format!("relay: {e}"))?;
    let listen = Arc::new(listen);
    let m = config.model;
    println!(
        "# sundial bench relay {} -> {} for {seconds:.0} s: out {:.3}±{:.3} ms, in {:.3}±{:.3} ms, loss {}, spikes {} of +{:.1} ms, seed {}",
        config.listen,
        config.upstream,
        m.out.mean * 1e3,
        m.out.sd * 1e3,
        m.back.mean * 1e3,
        m.back.sd * 1e3,
        m.loss,
        m.spike_prob,
        m.spike * 1e3,
        config.seed
    );
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let shared = Arc::new(Shared::default());
    let sender = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("relay-send".to_owned())
            .spawn(move || send_loop(&shared))
            .map_err(|e| format!("relay: sender thread: {e}"))?
    };
    let received = receive_loop(config, &listen, &shared, end);
    shared.lock().closed = true;
    shared.changed.notify_all();
    let sent = sender
        .join()
        .map_err(|_| "relay: the sender thread panicked".to_owned())?;
    let received = received?;
    let q = |q: f64| {
        sent.lateness
            .quantile_us(q)
            .map_or_else(|| "-".to_owned(), |v| v.to_string())
    };
    println!(
        "RESULT_RELAY out_received={} in_received={} out_relayed={} in_relayed={} out_dropped={} in_dropped={} spikes={} overflow={} send_failed={} clients={} late_median_us={} late_p99_us={} late_max_us={}",
        received.received_out,
        received.received_in,
        sent.sent_out,
        sent.sent_in,
        received.dropped_out,
        received.dropped_in,
        received.spikes,
        received.overflow,
        sent.send_failed,
        received.clients,
        q(0.5),
        q(0.99),
        if sent.lateness.count() == 0 {
            "-".to_owned()
        } else {
            sent.lateness.max_us().to_string()
        },
    );
    Ok(())
}

/// Reads the listening socket and every client's upstream socket until
/// `end`, and queues what it reads with the fate the scheduler drew.
fn receive_loop(
    config: &RelayConfig,
    listen: &Arc<UdpSocket>,
    shared: &Shared,
    end: Instant,
) -> Result<ReceiverReport, String> {
    let mut report = ReceiverReport::default();
    let mut scheduler = Scheduler::new(config.model, config.seed);
    let mut table: Table<Arc<UdpSocket>> = Table::new(MAX_CLIENTS, IDLE);
    let unspecified: SocketAddr = if config.upstream.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let upstream = config.upstream;
    let open = || -> io::Result<Arc<UdpSocket>> {
        let socket = UdpSocket::bind(unspecified)?;
        socket.connect(upstream)?;
        socket.set_nonblocking(true)?;
        Ok(Arc::new(socket))
    };
    let mut seq = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // Everything read in one wake-up: (from, direction, bytes, arrival).
    let mut batch: Vec<(SocketAddr, Direction, Vec<u8>, Instant)> = Vec::new();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        table.expire(now);
        let clients: Vec<(SocketAddr, Arc<UdpSocket>)> =
            table.iter().map(|(a, s)| (*a, Arc::clone(s))).collect();
        let ready: Vec<bool> = {
            let mut fds = Vec::with_capacity(clients.len() + 1);
            fds.push(PollFd::new(listen.as_fd(), PollFlags::POLLIN));
            fds.extend(
                clients
                    .iter()
                    .map(|(_, s)| PollFd::new(s.as_fd(), PollFlags::POLLIN)),
            );
            let wait = end
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            let wait_ms = u16::try_from(wait.as_millis()).unwrap_or(100).max(1);
            match poll(&mut fds, PollTimeout::from(wait_ms)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("relay: poll: {e}")),
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        batch.clear();
        if ready.first().copied().unwrap_or(false) {
            for _ in 0..READS_PER_WAKE {
                match listen.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let bytes = buf.get(..n).unwrap_or_default().to_vec();
                        batch.push((from, Direction::Out, bytes, Instant::now()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // An ICMP error for an earlier answer, a signal: go on.
                    Err(_) => break,
                }
            }
        }
        for ((client, socket), is_ready) in clients.iter().zip(ready.iter().skip(1)) {
            if !is_ready {
                continue;
            }
            for _ in 0..READS_PER_WAKE {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let bytes = buf.get(..n).unwrap_or_default().to_vec();
                        batch.push((*client, Direction::In, bytes, Instant::now()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ECONNREFUSED: the upstream is not there (yet).
                    Err(_) => break,
                }
            }
        }
        for (client, direction, bytes, arrived) in batch.drain(..) {
            match direction {
                Direction::Out => report.received_out += 1,
                Direction::In => report.received_in += 1,
            }
            let (at, spiked) = match scheduler.decide(direction, arrived) {
                Fate::Drop => {
                    match direction {
                        Direction::Out => report.dropped_out += 1,
                        Direction::In => report.dropped_in += 1,
                    }
                    continue;
                }
                Fate::Release { at, spiked } => (at, spiked),
            };
            report.spikes += u64::from(spiked);
            let (socket, to) = match direction {
                Direction::Out => {
                    let known = table.len();
                    let socket = match table.get_or_insert(client, arrived, open) {
                        Ok(s) => Arc::clone(s),
                        Err(e) => return Err(format!("relay: socket to {upstream}: {e}")),
                    };
                    if table.len() > known {
                        report.clients += 1;
                    }
                    (socket, None)
                }
                Direction::In => {
                    table.touch(client, arrived);
                    (Arc::clone(listen), Some(client))
                }
            };
            seq += 1;
            let mut queue = shared.lock();
            if queue.heap.len() >= MAX_QUEUED {
                report.overflow += 1;
                continue;
            }
            let earliest = queue.heap.peek().is_none_or(|Reverse(p)| at < p.at);
            queue.heap.push(Reverse(Pending {
                at,
                seq,
                direction,
                bytes,
                socket,
                to,
            }));
            drop(queue);
            if earliest {
                shared.changed.notify_one();
            }
        }
    }
    Ok(report)
}

/// Sends each queued datagram at its release instant: sleeps until
/// [`SPIN`] before it, then spins. Ends when the queue is closed; what is
/// still queued then is not sent.
fn send_loop(shared: &Shared) -> SenderReport {
    let mut report = SenderReport::default();
    let mut queue = shared.lock();
    loop {
        if queue.closed {
            break;
        }
        let now = Instant::now();
        let next = queue.heap.peek().map(|Reverse(p)| p.at);
        match next {
            None => {
                queue = wait(shared, queue, Duration::from_millis(100));
            }
            Some(at) if at > now + SPIN => {
                queue = wait(shared, queue, at - now - SPIN);
            }
            Some(_) => {
                let Some(Reverse(pending)) = queue.heap.pop() else {
                    continue;
                };
                drop(queue);
                spin_until(pending.at);
                let late = Instant::now().saturating_duration_since(pending.at);
                let result = match pending.to {
                    Some(to) => pending.socket.send_to(&pending.bytes, to),
                    None => pending.socket.send(&pending.bytes),
                };
                report.lateness.record(late);
                match (result, pending.direction) {
                    (Ok(_), Direction::Out) => report.sent_out += 1,
                    (Ok(_), Direction::In) => report.sent_in += 1,
                    (Err(_), _) => report.send_failed += 1,
                }
                queue = shared.lock();
            }
        }
    }
    report
}

fn wait<'a>(
    shared: &'a Shared,
    queue: MutexGuard<'a, Queue>,
    timeout: Duration,
) -> MutexGuard<'a, Queue> {
    shared
        .changed
        .wait_timeout(queue, timeout)
        .map_or_else(|e| e.into_inner().0, |(q, _)| q)
}

/// Returns at `at` or just after: yields while more than a few
/// microseconds are left (two cores are shared with the daemons under
/// test), then spins.
fn spin_until(at: Instant) {
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        if at - now > Duration::from_micros(20) {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(out_ms: f64, in_ms: f64, sd_ms: f64) -> DelayModel {
        DelayModel {
            out: PathDelay {
                mean: out_ms / 1e3,
                sd: sd_ms / 1e3,
            },
            back: PathDelay {
                mean: in_ms / 1e3,
                sd: sd_ms / 1e3,
            },
            loss: 0.0,
            spike_prob: 0.0,
            spike: 0.05,
        }
    }

    /// Delays (ms) of `n` releases going `direction`, drops left out.
    fn delays(s: &mut Scheduler, direction: Direction, n: usize) -> Vec<f64> {
        let now = Instant::now();
        (0..n)
            .filter_map(|_| match s.decide(direction, now) {
                Fate::Release { at, .. } => Some((at - now).as_secs_f64() * 1e3),
                Fate::Drop => None,
            })
            .collect()
    }

    fn mean_sd(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn each_direction_has_its_own_mean_and_jitter() {
        let mut s = Scheduler::new(model(6.0, 4.0, 1.0), 7);
        let (out_mean, out_sd) = mean_sd(&delays(&mut s, Direction::Out, 20_000));
        let (in_mean, in_sd) = mean_sd(&delays(&mut s, Direction::In, 20_000));
        assert!((out_mean - 6.0).abs() < 0.05, "{out_mean}");
        assert!((in_mean - 4.0).abs() < 0.05, "{in_mean}");
        assert!((out_sd - 1.0).abs() < 0.05, "{out_sd}");
        assert!((in_sd - 1.0).abs() < 0.05, "{in_sd}");
    }

    #[test]
    fn a_seed_gives_one_sequence() {
        let a = delays(
            &mut Scheduler::new(model(5.0, 5.0, 1.0), 3),
            Direction::Out,
            50,
        );
        let b = delays(
            &mut Scheduler::new(model(5.0, 5.0, 1.0), 3),
            Direction::Out,
            50,
        );
        let c = delays(
            &mut Scheduler::new(model(5.0, 5.0, 1.0), 4),
            Direction::Out,
            50,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn delays_are_truncated_at_zero() {
        let mut s = Scheduler::new(model(0.5, 0.5, 5.0), 1);
        let d = delays(&mut s, Direction::In, 5_000);
        assert!(d.iter().all(|v| *v >= 0.0));
        // About half the draws are below zero and become exactly zero.
        let zeros = d.iter().filter(|v| **v == 0.0).count();
        assert!((2_000..3_000).contains(&zeros), "{zeros}");
    }

    #[test]
    fn loss_and_spikes_happen_at_their_rates() {
        let mut m = model(5.0, 5.0, 0.0);
        m.loss = 0.01;
        m.spike_prob = 0.02;
        let mut s = Scheduler::new(m, 11);
        let now = Instant::now();
        let (mut dropped, mut spiked, n) = (0, 0, 100_000);
        for _ in 0..n {
            match s.decide(Direction::Out, now) {
                Fate::Drop => dropped += 1,
                Fate::Release { at, spiked: true } => {
                    spiked += 1;
                    assert_eq!(at - now, Duration::from_millis(55));
                }
                Fate::Release { at, spiked: false } => {
                    assert_eq!(at - now, Duration::from_millis(5));
                }
            }
        }
        assert!((800..1_200).contains(&dropped), "{dropped}");
        assert!((1_700..2_300).contains(&spiked), "{spiked}");
    }

    #[test]
    fn a_model_out_of_range_is_refused() {
        let mut m = model(5.0, 5.0, 1.0);
        assert!(m.check().is_ok());
        m.loss = 1.5;
        assert!(m.check().is_err());
        let mut m = model(-1.0, 5.0, 1.0);
        assert!(m.check().is_err());
        m.out.mean = f64::NAN;
        assert!(m.check().is_err());
    }

    #[test]
    fn lateness_quantiles() {
        let mut l = Lateness::new();
        assert_eq!(l.quantile_us(0.5), None);
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        l.record(Duration::from_secs(1));
        assert_eq!(l.count(), 101);
        assert_eq!(l.quantile_us(0.5), Some(51));
        assert_eq!(l.quantile_us(0.99), Some(100));
        assert_eq!(l.quantile_us(1.0), Some(10_000));
        assert_eq!(l.max_us(), 1_000_000);
    }

    #[test]
    fn the_table_evicts_the_least_recently_used_and_the_idle() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let mut table: Table<u16> = Table::new(2, Duration::from_secs(30));
        let make = |v: u16| move || Ok::<u16, ()>(v);
        assert_eq!(table.get_or_insert(addr(1), at(0), make(1)), Ok(&1));
        assert_eq!(table.get_or_insert(addr(2), at(1), make(2)), Ok(&2));
        // Known: no new value, only marked used.
        assert_eq!(table.get_or_insert(addr(1), at(2), make(9)), Ok(&1));
        // Full: 2 was used longest ago.
        assert_eq!(table.get_or_insert(addr(3), at(3), make(3)), Ok(&3));
        let mut keys: Vec<u16> = table.iter().map(|(a, _)| a.port()).collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 3]);
        table.touch(addr(3), at(20));
        assert_eq!(table.expire(at(40)), 1);
        assert_eq!(table.iter().map(|(a, _)| a.port()).collect::<Vec<_>>(), [3]);
        assert_eq!(table.get_or_insert(addr(4), at(41), || Err(())), Err(()));
        assert_eq!(table.len(), 1);
    }
}
