//! A whole run: build the workload, open the connections, prefill, drive
//! every connection until the end, print progress, gather the results.
//!
//! The connections run on a [`WorkerPool`]; this module's own tasks (the
//! progress line and bar, gathering results) run on the caller's runtime.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mcstore_cluster::{Ring, RingError, ServerSpec};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::{Args, ServerAddr};
use crate::driver::{
    self, Connection, ConnectionResult, DriverConfig, DriverError, PrefillResult, RunClock,
    RunControl,
};
use crate::stats::Measurements;
use crate::workers::WorkerPool;
use crate::workload::{KeySpace, ValueSource, Workload, WorkloadError};

/// Sets per write while prefilling.
const PREFILL_BATCH: usize = 64;

/// Why a run could not be carried out.
#[derive(Debug, Error)]
pub enum RunError {
    /// The ring could not be built.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The workload could not be built.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// A connection could not be opened at the start.
    #[error("{0}")]
    Connect(DriverError),
    /// A connection failed while prefilling.
    #[error("prefill failed on {addr}: {source}")]
    Prefill {
        /// The server.
        addr: String,
        /// What failed.
        source: DriverError,
    },
    /// Every connection to a server failed during the run.
    #[error("{0}")]
    ServerGone(String),
    /// A connection task panicked.
    #[error("a connection task failed: {0}")]
    Task(String),
}

/// What prefilling did.
#[derive(Debug, Clone, Default)]
pub struct PrefillSummary {
    /// Keys stored.
    pub stored: u64,
    /// Sets that failed.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Counters and latencies of all connections.
    pub measurements: Measurements,
    /// The measured window.
    pub duration: Duration,
    /// Connections used.
    pub connections: usize,
    /// Connections that failed and could not be re-established.
    pub dead_connections: usize,
    /// The first error any connection saw.
    pub first_error: Option<String>,
    /// The prefill, if one was asked for.
    pub prefill: Option<PrefillSummary>,
}

/// Which server each connection goes to: round-robin over the servers that
/// own at least one key.
fn assign_servers(workload: &Workload, servers: usize, connections: usize) -> Vec<usize> {
    let with_keys: Vec<usize> = (0..servers)
        .filter(|&s| workload.keys_owned_by(s) > 0)
        .collect();
    (0..connections)
        .map(|c| with_keys[c % with_keys.len()])
        .collect()
}

/// Carries out the run `args` describes, with the connections spread over
/// the workers of `pool`. Progress goes to stderr unless `args.quiet`.
///
/// Every connection connects (and prefills its share of its server's keys)
/// on its worker; the clock starts once all are ready.
pub async fn run(args: &Args, pool: &WorkerPool) -> Result<RunSummary, RunError> {
    let ring = Ring::new(
        args.servers
            .iter()
            .map(|s| ServerSpec::new(s.host.clone(), s.port, 1))
            .collect(),
    )?;
    let keys = KeySpace::new(args.keys as u32, args.key_size);
    let values = ValueSource::new(args.value_size, args.seed);
    let workload = Arc::new(Workload::new(
        keys,
        values,
        args.workload,
        args.distribution,
        &ring,
    )?);
    let assignment = assign_servers(&workload, args.servers.len(), args.connections as usize);
    for (index, server) in args.servers.iter().enumerate() {
        if !assignment.contains(&index) && !args.quiet {
            eprintln!("warning: server {server} gets no connection (it owns no key, or there are fewer connections than servers)");
        }
    }
    let mut live = vec![0usize; args.servers.len()];
    for &server in &assignment {
        live[server] += 1;
    }
    let control = Arc::new(RunControl::new(&live));

    let prefill_started = Instant::now();
    let prefill_progress = Arc::new(AtomicU64::new(0));
    let (ready_sender, mut ready) = mpsc::unbounded_channel();
    let (start_sender, start) = watch::channel(None);
    let mut tasks = JoinSet::new();
    for (id, &server) in assignment.iter().enumerate() {
        let setup = ConnectionSetup {
            id,
            server,
            addr: args.servers[server].clone(),
            prefill_share: args.prefill.then(|| {
                let part = assignment[..id].iter().filter(|&&s| s == server).count();
                (part, live[server])
            }),
            timeout: args.timeout,
            workload: workload.clone(),
            control: control.clone(),
            prefill_progress: prefill_progress.clone(),
            ready: ready_sender.clone(),
            start: start.clone(),
        };
        tasks.spawn_on(setup.run(), pool.handle(id));
    }
    drop(ready_sender);

    let (stop_bar, bar_stopped) = oneshot::channel();
    let bar = (args.prefill && !args.quiet).then(|| {
        let total = (0..args.servers.len())
            .filter(|s| assignment.contains(s))
            .map(|s| workload.keys_owned_by(s))
            .sum();
        tokio::spawn(progress_bar(prefill_progress.clone(), total, bar_stopped))
    });
    let mut prefill = PrefillSummary::default();
    let mut setup_failure = None;
    for _ in 0..assignment.len() {
        match ready.recv().await {
            Some(Ok(Some(result))) => {
                prefill.stored += result.stored;
                prefill.errors += result.errors;
                if prefill.first_error.is_none() {
                    prefill.first_error = result.first_error;
                }
            }
            Some(Ok(None)) => {}
            Some(Err(error)) => {
                setup_failure = Some(error);
                break;
            }
            None => {
                setup_failure = Some(RunError::Task("a connection task ended early".into()));
                break;
            }
        }
    }
    let _ = stop_bar.send(());
    if let Some(bar) = bar {
        let _ = bar.await;
    }
    if let Some(failure) = setup_failure {
        drop(start_sender);
        tasks.shutdown().await;
        return Err(failure);
    }
    prefill.elapsed = prefill_started.elapsed();

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let clock = RunClock {
        start,
        measure_from,
        end: measure_from + args.duration,
    };
    let per_connection_rate = args.rate.map(|rate| rate / f64::from(args.connections));
    let _ = start_sender.send(Some(Arc::new(DriverConfig {
        pipeline: args.pipeline as usize,
        timeout: args.timeout,
        verify: args.verify,
        send_interval: per_connection_rate.map(|rate| Duration::from_secs_f64(1.0 / rate)),
        clock,
    })));
    let (stop_progress, progress_stopped) = oneshot::channel();
    let progress = (!args.quiet).then(|| {
        tokio::spawn(print_progress(
            control.clone(),
            clock,
            args.rate.is_some(),
            progress_stopped,
        ))
    });

    let mut measurements = Measurements::default();
    let mut first_error = None;
    let mut dead_connections = 0;
    let mut task_failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Some(result)) => {
                measurements.add(&result.measurements);
                if first_error.is_none() {
                    first_error = result.first_error;
                }
                if result.failure.is_some() {
                    dead_connections += 1;
                }
            }
            Ok(None) => task_failure = Some("a connection never started".to_owned()),
            Err(error) => task_failure = Some(error.to_string()),
        }
    }
    let _ = stop_progress.send(());
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    if control.abort.load(Ordering::Acquire) {
        let reason = control
            .abort_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "the run was aborted".to_owned());
        return Err(RunError::ServerGone(reason));
    }
    if let Some(error) = task_failure {
        return Err(RunError::Task(error));
    }
    Ok(RunSummary {
        measurements,
        duration: args.duration,
        connections: assignment.len(),
        dead_connections,
        first_error,
        prefill: args.prefill.then_some(prefill),
    })
}

/// What a connection's task needs, from connecting to the end of the run.
struct ConnectionSetup {
    id: usize,
    server: usize,
    addr: ServerAddr,
    /// `(part, parts)`: prefill this interleaved share of the server's keys.
    prefill_share: Option<(usize, usize)>,
    timeout: Duration,
    workload: Arc<Workload>,
    control: Arc<RunControl>,
    prefill_progress: Arc<AtomicU64>,
    /// Reports that the connection is open (and prefilled), or why not.
    ready: mpsc::UnboundedSender<Result<Option<PrefillResult>, RunError>>,
    /// Becomes `Some` when the run starts; closed if it never does.
    start: watch::Receiver<Option<Arc<DriverConfig>>>,
}

impl ConnectionSetup {
    /// Connects, prefills, waits for the start and drives the connection;
    /// `None` if the run never started for it.
    async fn run(mut self) -> Option<ConnectionResult> {
        let mut stream = match driver::connect(&self.addr).await {
            Ok(stream) => stream,
            Err(error) => {
                let _ = self.ready.send(Err(RunError::Connect(error)));
                return None;
            }
        };
        let mut prefilled = None;
        if let Some((part, parts)) = self.prefill_share {
            let keys = self.workload.prefill_share(self.server, part, parts);
            let result = driver::prefill(
                &mut stream,
                &self.workload,
                keys,
                PREFILL_BATCH,
                self.timeout,
                &self.prefill_progress,
            )
            .await;
            match result {
                Ok(result) => prefilled = Some(result),
                Err(source) => {
                    let addr = self.addr.to_string();
                    let _ = self.ready.send(Err(RunError::Prefill { addr, source }));
                    return None;
                }
            }
        }
        let _ = self.ready.send(Ok(prefilled));
        let config = self.start.wait_for(Option::is_some).await.ok()?.clone()?;
        let connection = Connection {
            id: self.id,
            server: self.server,
            addr: self.addr,
            stream,
        };
        Some(driver::drive(connection, &self.workload, &config, &self.control).await)
    }
}

async fn progress_bar(done: Arc<AtomicU64>, total: u64, mut stop: oneshot::Receiver<()>) {
    const WIDTH: u64 = 40;
    let draw = |finished: bool| {
        let count = done.load(Ordering::Relaxed).min(total);
        let filled = (count * WIDTH).checked_div(total).unwrap_or(WIDTH);
        let percent = (count * 100).checked_div(total).unwrap_or(100);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\rprefill [{}{}] {percent:>3}% {count}/{total}",
            "#".repeat(filled as usize),
            ".".repeat((WIDTH - filled) as usize),
        );
        if finished {
            let _ = writeln!(stderr);
        }
        let _ = stderr.flush();
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => draw(false),
        }
    }
    draw(true);
}

async fn print_progress(
    control: Arc<RunControl>,
    clock: RunClock,
    open_loop: bool,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ticker =
        tokio::time::interval_at(clock.start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last = clock.start;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let part = control.interval.take();
        let seconds = now.duration_since(last).as_secs_f64().max(1e-9);
        last = now;
        let counters = &part.counters;
        let phase = if now < clock.measure_from {
            " warmup"
        } else {
            ""
        };
        let p99 = part.latency.value_at_quantile(0.99) as f64 / 1000.0;
        eprintln!(
            "[{:>4.0}s]{phase} {:>10.0} ops/s  p99 {:>9.1} us{}  hits {}  misses {}  errors {}  verify_errors {}",
            now.duration_since(clock.start).as_secs_f64(),
            counters.ops as f64 / seconds,
            p99,
            if open_loop { " (from intended send time)" } else { "" },
            counters.hits,
            counters.misses,
            counters.errors(),
            counters.verify_errors,
        );
    }
}
