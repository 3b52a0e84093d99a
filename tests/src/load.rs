//! A steady client load for cluster tests: writers storing fresh keys and
//! readers fetching keys written before, spread over a list of nodes that
//! can change while the load runs, recording every failed request and every
//! miss. Paced (a few hundred requests per second in all) so that a 2-core
//! machine keeps up with three or four nodes, and bounded: it stops by
//! itself after [`MAX_RUN`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Client;

/// The longest a load runs, whatever the test does.
pub const MAX_RUN: Duration = Duration::from_secs(300);

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a load saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Every write the cluster acknowledged (`STORED`): key and value.
    pub acked: Vec<(String, String)>,
    /// Writes that got anything else, or no reply.
    pub write_failures: Vec<String>,
    /// Keys read.
    pub reads: u64,
    /// Preloaded keys a read did not find.
    pub misses: Vec<String>,
    /// Reads that failed or returned a wrong value.
    pub read_failures: Vec<String>,
}

/// A running load.
pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    acked: Arc<AtomicU64>,
    threads: Vec<JoinHandle<LoadReport>>,
}

impl SteadyLoad {
    /// Starts `writers` writer threads storing keys `<prefix>-w<i>-<n>` and
    /// `readers` reader threads reading `preloaded` keys (expecting their
    /// values), each request to the next of `targets`.
    pub fn start(
        targets: &[SocketAddr],
        preloaded: Vec<(String, String)>,
        writers: usize,
        readers: usize,
        prefix: &str,
    ) -> SteadyLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(targets.to_vec()));
        let acked = Arc::new(AtomicU64::new(0));
        let preloaded = Arc::new(preloaded);
        let mut threads = Vec::new();
        for writer in 0..writers {
            let (stop, targets, acked) = (stop.clone(), targets.clone(), acked.clone());
            let prefix = format!("{prefix}-w{writer}");
            threads.push(thread::spawn(move || {
                write_loop(&prefix, &stop, &targets, &acked)
            }));
        }
        for reader in 0..readers {
            let (stop, targets, preloaded) = (stop.clone(), targets.clone(), preloaded.clone());
            threads.push(thread::spawn(move || {
                read_loop(reader, &stop, &targets, &preloaded)
            }));
        }
        SteadyLoad {
            stop,
            targets,
            acked,
            threads,
        }
    }

    /// Sends requests to `addr` too from now on.
    pub fn add_target(&self, addr: SocketAddr) {
        self.targets.lock().expect("targets").push(addr);
    }

    /// Writes acknowledged so far.
    pub fn acked_so_far(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` further writes are acknowledged (at most a
    /// minute): the load really ran across whatever the test did.
    pub fn wait_for_more_writes(&self, more: u64) {
        let target = self.acked_so_far() + more;
        let started = Instant::now();
        while self.acked_so_far() < target && started.elapsed() < Duration::from_secs(60) {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.acked_so_far() >= target,
            "the load stalled: {} writes acknowledged",
            self.acked_so_far()
        );
    }

    /// Stops every thread and gathers what they saw.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        for thread in self.threads {
            let part = thread.join().expect("a load thread panicked");
            report.acked.extend(part.acked);
            report.write_failures.extend(part.write_failures);
            report.reads += part.reads;
            report.misses.extend(part.misses);
            report.read_failures.extend(part.read_failures);
        }
        report
    }
}

/// One connection per target, reopened after a failure.
struct Connections(HashMap<SocketAddr, Client>);

impl Connections {
    fn get(&mut self, addr: SocketAddr) -> std::io::Result<&mut Client> {
        match self.0.entry(addr) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                Ok(entry.insert(Client::connect(addr, REQUEST_TIMEOUT)?))
            }
        }
    }
}

fn next_target(targets: &Mutex<Vec<SocketAddr>>, turn: usize) -> SocketAddr {
    let targets = targets.lock().expect("targets");
    targets[turn % targets.len()]
}

fn running(stop: &AtomicBool, started: Instant) -> bool {
    !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_RUN
}

fn write_loop(
    prefix: &str,
    stop: &AtomicBool,
    targets: &Mutex<Vec<SocketAddr>>,
    acked: &AtomicU64,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut connections = Connections(HashMap::new());
    let started = Instant::now();
    let mut n = 0usize;
    while running(stop, started) {
        let target = next_target(targets, n);
        let key = format!("{prefix}-{n}");
        let value = format!("value-{n}-{}", "x".repeat(n % 50));
        match connections
            .get(target)
            .and_then(|c| c.set(&key, 0, 0, value.as_bytes()))
        {
            Ok(reply) if reply == "STORED" => {
                report.acked.push((key, value));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(reply) => report
                .write_failures
                .push(format!("set {key} via {target}: {reply}")),
            Err(err) => {
                connections.0.remove(&target);
                report
                    .write_failures
                    .push(format!("set {key} via {target}: {err}"));
            }
        }
        n += 1;
        thread::sleep(Duration::from_millis(3));
    }
    report
}

fn read_loop(
    reader: usize,
    stop: &AtomicBool,
    targets: &Mutex<Vec<SocketAddr>>,
    preloaded: &[(String, String)],
) -> LoadReport {
    let mut report = LoadReport::default();
    if preloaded.is_empty() {
        return report;
    }
    let mut connections = Connections(HashMap::new());
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(reader as u64 + 1);
    let mut turn = reader;
    while running(stop, started) {
        let target = next_target(targets, turn);
        turn += 1;
        let picked: Vec<&(String, String)> = (0..10)
            .map(|_| &preloaded[rng.usize(..preloaded.len())])
            .collect();
        let keys: Vec<&str> = picked.iter().map(|(k, _)| k.as_str()).collect();
        match connections.get(target).and_then(|c| c.get_many(&keys)) {
            Ok(found) => {
                for (key, value) in picked {
                    report.reads += 1;
                    match found.get(key) {
                        None => report.misses.push(format!("{key} via {target}")),
                        Some(got) if got != value.as_bytes() => report
                            .read_failures
                            .push(format!("{key} via {target}: wrong value")),
                        Some(_) => {}
                    }
                }
            }
            Err(err) => {
                connections.0.remove(&target);
                report
                    .read_failures
                    .push(format!("get via {target}: {err}"));
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    report
}
