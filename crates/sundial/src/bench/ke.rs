//! `sundial bench ke`: full NTS-KE handshakes per second. Each exchange is
//! a new TCP connection and a full TLS 1.3 handshake (no resumption), one
//! NTS-KE request and the whole response read and checked (8 cookies).
//! `--connections` clients run closed-loop, each starting its next
//! exchange as soon as the last one ended, for `--duration` seconds.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use super::{nts, proc};

/// What the clients counted.
#[derive(Debug, Default)]
struct Counts {
    done: AtomicU64,
    cookies: AtomicU64,
    failed: AtomicU64,
}

/// The exchanges to run and where.
#[derive(Debug)]
pub struct KeLoad<'a> {
    pub ke: SocketAddr,
    pub ca: &'a Path,
    pub name: &'a str,
    pub connections: usize,
    pub seconds: f64,
    pub server_pid: Option<u32>,
}

pub fn run(load: &KeLoad<'_>) -> Result<(), String> {
    let config = nts::client_config(load.ca)?;
    let server_name = ServerName::try_from(load.name.to_owned())
        .map_err(|e| format!("server name {}: {e}", load.name))?;
    // One exchange first: a setup error is reported as itself, not as a
    // run of failures.
    nts::key_exchange(load.ke, &config, server_name.clone())
        .map_err(|e| format!("key exchange with {}: {e}", load.ke))?;
    println!(
        "# sundial bench ke -> {} with {} connections for {:.0} s: full TLS 1.3 handshakes, no resumption",
        load.ke, load.connections, load.seconds
    );
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = load.server_pid.and_then(proc::cpu_seconds);
    let started = Instant::now();
    let mut clients = Vec::with_capacity(load.connections);
    for _ in 0..load.connections.max(1) {
        let (config, name, counts, stop) = (
            Arc::clone(&config),
            server_name.clone(),
            Arc::clone(&counts),
            Arc::clone(&stop),
        );
        let ke = load.ke;
        clients.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match nts::key_exchange(ke, &config, name.clone()) {
                    Ok(session) => {
                        counts.done.fetch_add(1, Ordering::Relaxed);
                        counts
                            .cookies
                            .fetch_add(session.cookies.len() as u64, Ordering::Relaxed);
                    }
                    Err(_) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        // A refused connection would otherwise spin.
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(
        load.seconds.clamp(0.1, super::MAX_SECONDS),
    ));
    stop.store(true, Ordering::Relaxed);
    let cpu_after = load.server_pid.and_then(proc::cpu_seconds);
    let secs = started.elapsed().as_secs_f64();
    for client in clients {
        let _ = client.join();
    }
    let done = counts.done.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let cookies = counts.cookies.load(Ordering::Relaxed);
    let cpu_us = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if done > 0 => Some((a - b) * 1e6 / done as f64),
        _ => None,
    };
    let memory = load.server_pid.and_then(proc::memory_kib);
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    println!(
        "RESULT mode=ke handshakes={done} failed={failed} handshakes_per_s={:.0} cookies_per_handshake={:.2} cpu_us_per_handshake={} handshakes_per_cpu_second={} rss_kib={}",
        done as f64 / secs,
        cookies as f64 / (done.max(1)) as f64,
        show(cpu_us),
        show(cpu_us.map(|us| 1e6 / us.max(1e-9))),
        memory.map_or_else(|| "-".to_owned(), |m| m.rss.to_string()),
    );
    if done == 0 {
        return Err("no key exchange completed".to_owned());
    }
    Ok(())
}
