//! A whole run: build the workload, open the connections, prefill, drive
//! every connection until the end, print progress, gather the results.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mcstore_cluster::{Ring, RingError, ServerSpec};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::{Args, ServerAddr};
use crate::driver::{self, Connection, DriverConfig, DriverError, RunClock, RunControl};
use crate::stats::Measurements;
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

/// Carries out the run `args` describes. Progress goes to stderr unless
/// `args.quiet`.
pub async fn run(args: &Args) -> Result<RunSummary, RunError> {
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

    let mut streams = open_connections(&args.servers, &assignment).await?;
    let prefill = if args.prefill {
        Some(prefill_all(args, &workload, &assignment, &mut streams).await?)
    } else {
        None
    };

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let clock = RunClock {
        start,
        measure_from,
        end: measure_from + args.duration,
    };
    let per_connection_rate = args.rate.map(|rate| rate / f64::from(args.connections));
    let config = Arc::new(DriverConfig {
        pipeline: args.pipeline as usize,
        timeout: args.timeout,
        verify: args.verify,
        send_interval: per_connection_rate.map(|rate| Duration::from_secs_f64(1.0 / rate)),
        clock,
    });
    let mut live = vec![0usize; args.servers.len()];
    for &server in &assignment {
        live[server] += 1;
    }
    let control = Arc::new(RunControl::new(&live));

    let mut tasks = JoinSet::new();
    for (id, (stream, &server)) in streams.into_iter().zip(&assignment).enumerate() {
        let connection = Connection {
            id,
            server,
            addr: args.servers[server].clone(),
            stream,
        };
        let (workload, config, control) = (workload.clone(), config.clone(), control.clone());
        tasks.spawn(async move { driver::drive(connection, &workload, &config, &control).await });
    }
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
            Ok(result) => {
                measurements.add(&result.measurements);
                if first_error.is_none() {
                    first_error = result.first_error;
                }
                if result.failure.is_some() {
                    dead_connections += 1;
                }
            }
            Err(error) => task_failure = Some(error.to_string()),
        }
    }
    let _ = stop_progress.send(());
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    if let Some(error) = task_failure {
        return Err(RunError::Task(error));
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
    Ok(RunSummary {
        measurements,
        duration: args.duration,
        connections: assignment.len(),
        dead_connections,
        first_error,
        prefill,
    })
}

async fn open_connections(
    servers: &[ServerAddr],
    assignment: &[usize],
) -> Result<Vec<TcpStream>, RunError> {
    let mut tasks = JoinSet::new();
    for (id, &server) in assignment.iter().enumerate() {
        let addr = servers[server].clone();
        tasks.spawn(async move { (id, driver::connect(&addr).await) });
    }
    let mut streams: Vec<Option<TcpStream>> = (0..assignment.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (id, result) = joined.map_err(|e| RunError::Task(e.to_string()))?;
        streams[id] = Some(result.map_err(RunError::Connect)?);
    }
    Ok(streams.into_iter().flatten().collect())
}

async fn prefill_all(
    args: &Args,
    workload: &Arc<Workload>,
    assignment: &[usize],
    streams: &mut Vec<TcpStream>,
) -> Result<PrefillSummary, RunError> {
    let started = Instant::now();
    let total: u64 = (0..args.servers.len())
        .filter(|s| assignment.contains(s))
        .map(|s| workload.keys_owned_by(s))
        .sum();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for (id, mut stream) in std::mem::take(streams).into_iter().enumerate() {
        let server = assignment[id];
        let part = assignment[..id].iter().filter(|&&s| s == server).count();
        let parts = assignment.iter().filter(|&&s| s == server).count();
        let (workload, done) = (workload.clone(), done.clone());
        let timeout = args.timeout;
        let addr = args.servers[server].to_string();
        tasks.spawn(async move {
            let keys = workload.prefill_share(server, part, parts);
            let result =
                driver::prefill(&mut stream, &workload, keys, PREFILL_BATCH, timeout, &done).await;
            (id, addr, stream, result)
        });
    }
    let (stop_bar, bar_stopped) = oneshot::channel();
    let bar = (!args.quiet).then(|| tokio::spawn(progress_bar(done.clone(), total, bar_stopped)));
    let mut summary = PrefillSummary::default();
    let mut returned: Vec<Option<TcpStream>> = (0..assignment.len()).map(|_| None).collect();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let (id, addr, stream, result) = joined.map_err(|e| RunError::Task(e.to_string()))?;
        match result {
            Ok(result) => {
                summary.stored += result.stored;
                summary.errors += result.errors;
                if summary.first_error.is_none() {
                    summary.first_error = result.first_error;
                }
            }
            Err(source) => {
                failure.get_or_insert(RunError::Prefill { addr, source });
            }
        }
        returned[id] = Some(stream);
    }
    let _ = stop_bar.send(());
    if let Some(bar) = bar {
        let _ = bar.await;
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    *streams = returned.into_iter().flatten().collect();
    summary.elapsed = started.elapsed();
    Ok(summary)
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
