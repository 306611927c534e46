//! `sundial bench`: the project's own NTP/NTS load generator.
//!
//! A rate sweep like ntpperf's: start at `--start-rate`, multiply by
//! `--step` every `--step-seconds`, stop once more than `--max-loss` of the
//! requests go unanswered. Each step reports the offered and answered rates,
//! the loss, how many sampled answers verified (for NTS: authenticated
//! under the session's S2C key and echoing the request's Unique
//! Identifier), and the server's receive->transmit gap. With
//! `--server-pid` it also reads the server's CPU time and memory from
//! /proc, so CPU per response comes from the same run. `--rate` offers one
//! fixed rate instead of a sweep. The `ke` mode measures NTS-KE
//! handshakes per second instead (see `ke.rs`); the `reflect` mode is not
//! a generator but a null NTP server to sweep, the ceiling of the kernel's
//! UDP path (see `reflect.rs`); the `relay` mode is a UDP relay that
//! delays each datagram from a seeded distribution, the path of the
//! accuracy bench (see `relay.rs`); the `xleave` mode measures the
//! server's transmit timestamp against its true send time in basic and
//! interleaved mode (see `xleave.rs`).
//!
//! `--interleaved` makes every request ask for RFC 9769's interleaved
//! mode, so the server captures the kernel's transmit timestamp of every
//! answer; `--interleave-ratio` sweeps basic and interleaved requests in
//! turn (`--rounds` times each) and reports the ratio of their lossless
//! rates, the cost of interleaving on the batched path.
//!
//! It is a measuring tool, not a test: every run is bounded by the number
//! of steps and their length.

mod ke;
mod load;
mod nts;
mod proc;
mod reflect;
mod relay;
mod xleave;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use load::{Generator, NtpWorkload, StepReport, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Plain NTPv4 client requests.
    Ntp,
    /// NTS-protected requests, with cookies from real key exchanges.
    Nts,
    /// Full NTS-KE handshakes (TCP + TLS 1.3 + 8 cookies), closed loop.
    Ke,
    /// Not a load: a null NTP server on --listen (batched socket I/O, no
    /// protocol work) for --duration seconds, the ceiling to sweep.
    Reflect,
    /// Not a load: a UDP relay from --listen to --upstream that delays
    /// every datagram (normal per packet and direction, loss, spikes) for
    /// --duration seconds, the network path of benches/accuracy.sh.
    Relay,
    /// Not a load: pairs of requests (--rate pairs/s, default 10) to
    /// --server for --duration seconds, reporting the spread of the
    /// server's transmit timestamp against its kernel send time, in basic
    /// and interleaved mode.
    Xleave,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to send.
    #[arg(value_enum)]
    mode: Mode,
    /// Where the reflect and relay modes listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The relay mode's path model (boxed: the subcommand enum stays small).
    #[command(flatten)]
    relay: Box<RelayArgs>,
    /// The NTP server (UDP) to load (ntp and nts modes).
    #[arg(long, value_name = "ADDR")]
    server: Option<SocketAddr>,
    /// The NTS-KE server (TCP) to get cookies from (nts mode) or to load
    /// (ke mode).
    #[arg(long, value_name = "ADDR")]
    ke: Option<SocketAddr>,
    /// CA certificate (PEM) that signed the KE server's certificate.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Name the KE server's certificate must carry.
    #[arg(long, default_value = "localhost")]
    name: String,
    /// Key exchanges to run for cookies (8 cookies each).
    #[arg(long, default_value_t = 16)]
    key_exchanges: usize,
    /// First rate of the sweep, requests per second.
    #[arg(long, default_value_t = 1000.0)]
    start_rate: f64,
    /// Factor between successive rates.
    #[arg(long, default_value_t = 1.5)]
    step: f64,
    /// Length of each step.
    #[arg(long, default_value_t = 2.0)]
    step_seconds: f64,
    /// Stop the sweep once a step loses more than this share.
    #[arg(long, default_value_t = 0.5)]
    max_loss: f64,
    /// Upper bound on the number of steps.
    #[arg(long, default_value_t = 40)]
    max_steps: usize,
    /// Source ports (one socket each) the requests are spread over.
    #[arg(long, default_value_t = 64)]
    ports: usize,
    /// Offer this one rate instead of a sweep.
    #[arg(long, value_name = "REQ_PER_SEC")]
    rate: Option<f64>,
    /// Concurrent clients in ke mode.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Length of the fixed-rate run, of the ke run, or of the reflector.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    duration: f64,
    /// The server's process id: report its CPU time per response and its
    /// memory (from /proc) for each step.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Requests ask for RFC 9769 interleaved mode (ntp and nts modes): the
    /// server then captures a kernel transmit timestamp per answer.
    #[arg(long)]
    interleaved: bool,
    /// Sweep basic and interleaved requests in turn and report the ratio
    /// of their lossless rates (ntp and nts modes).
    #[arg(long)]
    interleave_ratio: bool,
    /// Rounds of basic + interleaved sweeps for --interleave-ratio.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

/// The relay mode's arguments.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Where the relay mode forwards to (UDP).
    #[arg(long, value_name = "ADDR")]
    upstream: Option<SocketAddr>,
    /// Mean delay client -> upstream, ms.
    #[arg(long, default_value_t = 5.0, value_name = "MS")]
    out_delay_ms: f64,
    /// Mean delay upstream -> client, ms.
    #[arg(long, default_value_t = 5.0, value_name = "MS")]
    in_delay_ms: f64,
    /// Standard deviation of each delay (normal, drawn per
    /// datagram and direction, truncated at 0), ms.
    #[arg(long, default_value_t = 1.0, value_name = "MS")]
    jitter_ms: f64,
    /// Probability that a datagram is dropped, per datagram and
    /// direction (an exchange is lost with about twice this).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that a datagram gets --spike-ms more delay, per
    /// datagram and direction.
    #[arg(long, default_value_t = 0.0)]
    spike_prob: f64,
    /// Extra delay of a spike, ms.
    #[arg(long, default_value_t = 50.0, value_name = "MS")]
    spike_ms: f64,
    /// Seed of the random stream that draws every delay and drop.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Longest a fixed-rate run or a step may last: every run ends by itself.
const MAX_SECONDS: f64 = 600.0;

pub fn run(args: &BenchArgs) -> Result<(), String> {
    let valid = args.step > 1.0 && args.start_rate >= 1.0 && args.step_seconds > 0.0;
    if !valid {
        return Err("--step must be > 1, --start-rate >= 1, --step-seconds > 0".to_owned());
    }
    match args.mode {
        Mode::Reflect => {
            let listen = args
                .listen
                .ok_or_else(|| "reflect mode needs --listen ADDR".to_owned())?;
            reflect::run(listen, args.duration)
        }
        Mode::Relay => {
            let relay = &args.relay;
            let (Some(listen), Some(upstream)) = (args.listen, relay.upstream) else {
                return Err("relay mode needs --listen ADDR and --upstream ADDR".to_owned());
            };
            let path = |mean_ms: f64| relay::PathDelay {
                mean: mean_ms / 1e3,
                sd: relay.jitter_ms / 1e3,
            };
            relay::run(&relay::RelayConfig {
                listen,
                upstream,
                seconds: args.duration,
                model: relay::DelayModel {
                    out: path(relay.out_delay_ms),
                    back: path(relay.in_delay_ms),
                    loss: relay.loss,
                    spike_prob: relay.spike_prob,
                    spike: relay.spike_ms / 1e3,
                },
                seed: relay.seed,
            })
        }
        Mode::Ke => {
            let (Some(ke), Some(ca)) = (args.ke, args.ca.as_deref()) else {
                return Err("ke mode needs --ke ADDR and --ca FILE".to_owned());
            };
            ke::run(&ke::KeLoad {
                ke,
                ca,
                name: &args.name,
                connections: args.connections,
                seconds: args.duration,
                server_pid: args.server_pid,
            })
        }
        Mode::Xleave => {
            let server = args
                .server
                .ok_or_else(|| "xleave mode needs --server ADDR".to_owned())?;
            xleave::run(server, args.duration, args.rate.unwrap_or(10.0))
        }
        Mode::Ntp => {
            let (server, mut generator) = generator(args)?;
            let mut workload = NtpWorkload::default();
            if args.interleave_ratio {
                return ratio(args, server, &mut generator, &mut workload, |w, on| {
                    w.interleaved = on;
                });
            }
            workload.interleaved = args.interleaved;
            sweep(args, server, &mut generator, &mut workload).map(|_| ())
        }
        Mode::Nts => {
            let (Some(ke), Some(ca)) = (args.ke, args.ca.as_deref()) else {
                return Err("nts mode needs --ke ADDR and --ca FILE".to_owned());
            };
            let (server, mut generator) = generator(args)?;
            let mut workload = nts::gather(ke, ca, &args.name, args.key_exchanges.max(1))?;
            println!(
                "# {} key exchanges with {ke}: {} cookies, reused round robin (the server does not track reuse); a fresh Unique Identifier per request",
                workload.sessions(),
                workload.cookies()
            );
            if args.interleave_ratio {
                return ratio(args, server, &mut generator, &mut workload, |w, on| {
                    w.interleaved = on;
                });
            }
            workload.interleaved = args.interleaved;
            sweep(args, server, &mut generator, &mut workload).map(|_| ())
        }
    }
}

/// Basic and interleaved sweeps in turn; the ratio of their best lossless
/// answered rates, per round and overall.
fn ratio<W: Workload>(
    args: &BenchArgs,
    server: SocketAddr,
    generator: &mut Generator,
    workload: &mut W,
    set: impl Fn(&mut W, bool),
) -> Result<(), String> {
    let mut basic = Vec::new();
    let mut interleaved = Vec::new();
    let (mut basic_cpu, mut interleaved_cpu) = (Vec::new(), Vec::new());
    for round in 0..args.rounds.max(1) {
        for on in [false, true] {
            set(workload, on);
            println!(
                "# round {} of {}: {} requests",
                round + 1,
                args.rounds.max(1),
                if on { "interleaved" } else { "basic" }
            );
            let (rate, cpu) = sweep_cpu(args, server, generator, workload)?;
            if on {
                interleaved.push(rate);
                interleaved_cpu.extend(cpu);
            } else {
                basic.push(rate);
                basic_cpu.extend(cpu);
            }
        }
        if let (Some(b), Some(i)) = (basic.last(), interleaved.last()) {
            println!(
                "ROUND_XLEAVE round={} basic={b:.0} interleaved={i:.0} ratio={:.3}",
                round + 1,
                i / b.max(1.0)
            );
        }
    }
    // With --rate and --server-pid: the server's CPU per answer, which a
    // busy shared machine disturbs less than a saturation rate.
    if !basic_cpu.is_empty() && !interleaved_cpu.is_empty() {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (b, i) = (mean(&basic_cpu), mean(&interleaved_cpu));
        println!(
            "RESULT_XLEAVE_CPU basic_us={b:.2} interleaved_us={i:.2} ratio={:.3} (rate ratio at CPU saturation ~ {:.3})",
            i / b,
            b / i
        );
    }
    let total = |v: &[f64]| v.iter().sum::<f64>();
    let (b, i) = (total(&basic), total(&interleaved));
    println!(
        "RESULT_XLEAVE rounds={} basic={:.0} interleaved={:.0} ratio={:.3} cost={:.1}%",
        basic.len(),
        b / basic.len().max(1) as f64,
        i / interleaved.len().max(1) as f64,
        i / b.max(1.0),
        (1.0 - i / b.max(1.0)) * 100.0
    );
    Ok(())
}

/// The UDP load generator for the ntp and nts modes.
fn generator(args: &BenchArgs) -> Result<(SocketAddr, Generator), String> {
    let server = args
        .server
        .ok_or_else(|| "ntp and nts modes need --server ADDR".to_owned())?;
    Ok((server, Generator::new(server, args.ports)?))
}

fn sweep(
    args: &BenchArgs,
    server: SocketAddr,
    generator: &mut Generator,
    workload: &mut impl Workload,
) -> Result<f64, String> {
    sweep_cpu(args, server, generator, workload).map(|(rate, _)| rate)
}

/// [`sweep`], and the server's CPU per answer of a fixed-rate run.
fn sweep_cpu(
    args: &BenchArgs,
    server: SocketAddr,
    generator: &mut Generator,
    workload: &mut impl Workload,
) -> Result<(f64, Option<f64>), String> {
    let mode = if args.mode == Mode::Nts { "nts" } else { "ntp" };
    println!(
        "# sundial bench {mode} -> {} from {} source ports; every {}th answer verified",
        server, args.ports, 16
    );
    println!(
        "{:>10} {:>10} {:>10} {:>7} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "target/s",
        "offered/s",
        "answered/s",
        "loss%",
        "verified",
        "bad",
        "gap50_us",
        "gap99_us",
        "cpu_us",
        "rss_kib"
    );
    let mut best: Option<StepReport> = None;
    let mut peak: f64 = 0.0;
    let mut fixed_cpu = None;
    if let Some(rate) = args.rate {
        let secs = args.duration.clamp(0.1, MAX_SECONDS);
        let (report, cpu) = measured_step(args, generator, workload, rate, secs)?;
        fixed_cpu = cpu;
        peak = report.answered_rate();
        if report.loss() < 0.01 {
            best = Some(report);
        }
    } else {
        let mut rate = args.start_rate;
        let secs = args.step_seconds.min(MAX_SECONDS);
        for _ in 0..args.max_steps {
            let (report, _) = measured_step(args, generator, workload, rate, secs)?;
            peak = peak.max(report.answered_rate());
            let loss = report.loss();
            let generator_limited = report.offered_rate() < 0.75 * rate;
            if loss < 0.01 && best.as_ref().is_none_or(|b| report.sent > b.sent) {
                best = Some(report);
            }
            if loss > args.max_loss {
                break;
            }
            // Past this the generator, not the server, sets the rate.
            if generator_limited {
                println!("# the generator offered under 75% of the target: stopping");
                break;
            }
            rate *= args.step;
        }
    }
    match &best {
        Some(b) => println!(
            "RESULT mode={mode} max_lossless_offered={:.0} max_lossless_answered={:.0} peak_answered={peak:.0}",
            b.offered_rate(),
            b.answered_rate()
        ),
        None => println!(
            "RESULT mode={mode} max_lossless_offered=0 max_lossless_answered=0 peak_answered={peak:.0}"
        ),
    }
    Ok((best.map_or(0.0, |b| b.answered_rate()), fixed_cpu))
}

fn measured_step(
    args: &BenchArgs,
    generator: &mut Generator,
    workload: &mut impl Workload,
    rate: f64,
    secs: f64,
) -> Result<(StepReport, Option<f64>), String> {
    let before = args.server_pid.and_then(proc::cpu_seconds);
    let mut report = generator.step(workload, rate, secs)?;
    let after = args.server_pid.and_then(proc::cpu_seconds);
    let memory = args.server_pid.and_then(proc::memory_kib);
    let cpu_us = match (before, after) {
        (Some(b), Some(a)) if report.answered > 0 => Some((a - b) * 1e6 / report.answered as f64),
        _ => None,
    };
    let (gap50, gap90, gap99) = (report.gap_us(0.5), report.gap_us(0.9), report.gap_us(0.99));
    let show = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    println!(
        "{:>10.0} {:>10.0} {:>10.0} {:>7.2} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9}",
        report.target_rate,
        report.offered_rate(),
        report.answered_rate(),
        report.loss() * 100.0,
        report.verified,
        report.verify_failed + report.kisses,
        show(gap50, 1),
        show(gap99, 1),
        show(cpu_us, 2),
        memory.map_or_else(|| "-".to_owned(), |m| m.rss.to_string()),
    );
    if args.rate.is_some() {
        println!(
            "RESULT_FIXED rate={:.0} sent={} answered={} loss={:.4} verified={} bad={} gap50_us={} gap90_us={} gap99_us={} cpu_us_per_response={} rss_kib={} hwm_kib={}",
            report.offered_rate(),
            report.sent,
            report.answered,
            report.loss(),
            report.verified,
            report.verify_failed + report.kisses,
            show(gap50, 1),
            show(gap90, 1),
            show(gap99, 1),
            show(cpu_us, 2),
            memory.map_or_else(|| "-".to_owned(), |m| m.rss.to_string()),
            memory.map_or_else(|| "-".to_owned(), |m| m.hwm.to_string()),
        );
    }
    if report.verify_failed > 0 {
        return Err(format!(
            "{} sampled answers failed verification",
            report.verify_failed
        ));
    }
    Ok((report, cpu_us))
}
