//! A run through `mcstore-client` (`--seeds`, or `--servers` with
//! `--via-client`): what an application sees. Closed loop only: every one
//! of `connections x pipeline` tasks sends its next request when the last
//! one was answered; the client routes each key to its owner, over its own
//! pipelined per-node pools (`connections / nodes` connections per node).
//!
//! Keys are drawn from the whole key space (the client, not the benchmark,
//! decides where each goes), and the requests each node received in the
//! measured window are counted from the client's per-node counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mcstore_client::{Client, Config};
use mcstore_cluster::Ring;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::Args;
use crate::run::{PrefillSummary, RunError, RunSummary};
use crate::stats::{ErrorKind, Measurements, Outcome, Recorder};
use crate::workload::{KeySpace, OpKind, ValueSource, Workload};

/// Requests one node received per second of the measured window.
pub type PerNode = BTreeMap<String, f64>;

fn error_kind(err: &mcstore_client::Error) -> ErrorKind {
    use mcstore_client::Error;
    match err {
        Error::Timeout { .. } => ErrorKind::Timeout,
        Error::Server(_) => ErrorKind::Server,
        Error::Client(_) => ErrorKind::Client,
        Error::Io { .. } | Error::NoNodeAvailable(_) => ErrorKind::Connection,
        _ => ErrorKind::Protocol,
    }
}

async fn connect(args: &Args) -> Result<Client, RunError> {
    let nodes = args.seeds.len().max(args.servers.len()).max(1);
    let config = Config::default()
        .timeout(args.timeout)
        .connections_per_node((args.connections as usize).div_ceil(nodes));
    let names = |list: &[crate::args::ServerAddr]| -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    };
    let client = if args.seeds.is_empty() {
        Client::connect_servers_with(names(&args.servers), config)
    } else {
        Client::connect_seeds_with(names(&args.seeds), config).await
    };
    client.map_err(|err| RunError::ServerGone(format!("cannot connect: {err}")))
}

/// Carries out the run `args` describes through the client; the summary
/// and each node's requests per second.
pub async fn run(args: &Args) -> Result<(RunSummary, PerNode), RunError> {
    let client = connect(args).await?;
    if !args.quiet {
        let topology = client.topology();
        eprintln!(
            "client: {} node(s) on the ring, replication factor {}",
            topology.ring_nodes().count(),
            topology.replication_factor()
        );
    }
    // One "server" to the workload: every task draws from every key.
    let ring = Ring::unweighted([("client", 1)])?;
    let workload = Arc::new(Workload::new(
        KeySpace::new(args.keys as u32, args.key_size),
        ValueSource::new(args.value_size, args.seed),
        args.workload,
        args.distribution,
        &ring,
    )?);
    let tasks_wanted = (args.connections as usize) * (args.pipeline as usize);

    let prefill = if args.prefill {
        Some(prefill_all(&client, &workload, tasks_wanted.min(256)).await)
    } else {
        None
    };

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let errors_seen = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for id in 0..tasks_wanted {
        let (client, workload) = (client.clone(), workload.clone());
        let verify = args.verify;
        let seed = args.seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let errors_seen = errors_seen.clone();
        tasks.spawn(async move {
            let mut generator = workload.generator(0, seed);
            let mut recorder = Recorder::default();
            let mut first_error = None;
            while Instant::now() < end {
                let op = generator.next_op();
                let key = workload.keys.key(op.key);
                let sent = Instant::now();
                let outcome = match op.kind {
                    OpKind::Set => client
                        .set(&key, workload.values.value(op.key), 0, 0)
                        .await
                        .map(|()| Outcome::Stored),
                    OpKind::Get => client.get(&key).await.map(|item| match item {
                        Some(item) => {
                            if verify && !workload.values.matches(op.key, &item.value) {
                                recorder.verify_error();
                            }
                            Outcome::Hit
                        }
                        None => Outcome::Miss,
                    }),
                };
                let done = Instant::now();
                let outcome = outcome.unwrap_or_else(|err| {
                    errors_seen.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert_with(|| err.to_string());
                    Outcome::Failed(error_kind(&err))
                });
                recorder.record(
                    op.kind == OpKind::Get,
                    outcome,
                    done - sent,
                    done >= measure_from && done < end,
                );
            }
            (recorder.total, first_error)
        });
    }
    // The per-node counters at the start and the end of the window.
    tokio::time::sleep_until(measure_from).await;
    let at_start = client.requests_per_node();
    tokio::time::sleep_until(end).await;
    let at_end = client.requests_per_node();

    let mut measurements = Measurements::default();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (part, error) = joined.map_err(|err| RunError::Task(err.to_string()))?;
        measurements.add(&part);
        if first_error.is_none() {
            first_error = error;
        }
    }
    let seconds = args.duration.as_secs_f64().max(1e-9);
    let per_node = at_end
        .iter()
        .map(|(addr, count)| {
            let before = at_start.get(addr).copied().unwrap_or(0);
            (addr.clone(), (count - before) as f64 / seconds)
        })
        .collect();
    Ok((
        RunSummary {
            measurements,
            duration: args.duration,
            connections: tasks_wanted,
            dead_connections: 0,
            first_error,
            prefill,
        },
        per_node,
    ))
}

/// Sets every key once, `concurrency` at a time.
async fn prefill_all(
    client: &Client,
    workload: &Arc<Workload>,
    concurrency: usize,
) -> PrefillSummary {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let count = u64::from(workload.keys.count());
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, workload, next) = (client.clone(), workload.clone(), next.clone());
        tasks.spawn(async move {
            let (mut stored, mut errors, mut first_error) = (0, 0, None);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return (stored, errors, first_error);
                }
                let index = index as u32;
                let key = workload.keys.key(index);
                match client.set(&key, workload.values.value(index), 0, 0).await {
                    Ok(()) => stored += 1,
                    Err(err) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| err.to_string());
                    }
                }
            }
        });
    }
    let mut summary = PrefillSummary::default();
    while let Some(Ok((stored, errors, first_error))) = tasks.join_next().await {
        summary.stored += stored;
        summary.errors += errors;
        if summary.first_error.is_none() {
            summary.first_error = first_error;
        }
    }
    summary.elapsed = started.elapsed();
    summary
}

/// The per-node lines of the human report.
pub fn per_node_text(per_node: &PerNode) -> String {
    let total: f64 = per_node.values().sum();
    let mut out = String::from("per node (requests/s in the measured window):\n");
    for (addr, rate) in per_node {
        let share = if total > 0.0 {
            rate / total * 100.0
        } else {
            0.0
        };
        out.push_str(&format!("  {addr:24} {rate:>12.0}  ({share:.1}%)\n"));
    }
    out
}
