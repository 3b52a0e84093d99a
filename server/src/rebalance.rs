//! Growing and shrinking a live cluster: joining, leaving and removing a
//! dead member.
//!
//! **Join.** A node that has never been a ready member of its ring (no
//! `JOINED` marker in its data directory naming its advertised address: a
//! new node, a node whose data directory was wiped, a node that left)
//! starts as `joining`. Its peers keep it off the routing ring (requests for
//! its future keys still go to their current replicas, also when they arrive
//! here) and put it on the future ring, so they ship it every change to a
//! key it will replicate and stream it those keys by range transfer. The
//! node asks every live ready member for its progress (`stats cluster`,
//! `peer:<this node>:transfer` and `:acked`) and turns `ready` once each has
//! sent its whole range and every change it logged before saying so; then
//! it writes the marker. A node that finds no ready member bootstraps a new
//! cluster: at once when its only seed is itself, after seeing other members
//! (all joining) for a settle time, or after hearing from nobody for three
//! times that.
//!
//! **Leave.** `mcstore_cluster leave` (or `mcstore-cli leave`): the node
//! announces `leaving`; its peers take it off the future ring, so every key
//! it holds gets a range transfer to the member that takes its place. Once
//! every member of the future ring has its ranges and has acknowledged every
//! change this node logged, the node removes its marker, announces `left`
//! (its peers take it off the routing ring), ships the writes that arrived
//! meanwhile, and exits.
//!
//! **Remove.** `mcstore_cluster remove <addr>` for a member that is dead for
//! good: it is announced `left` on its behalf; its ranges get range
//! transfers from the surviving replicas to the members that take them.
//!
//! SIGTERM also announces `left` (and removes the marker), so a stopped node
//! comes back `joining` and catches up by range transfer before it serves;
//! a node killed with -9 keeps its marker, comes back `ready`, and gets what
//! it missed as hints.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcstore_cluster::peer::Dialect;
use mcstore_cluster::topology::{STATUS_JOINING, STATUS_LEAVING, STATUS_READY};
use mcstore_cluster::MemberState;
use mcstore_protocol::{ClusterCommand, Reply};
use mcstore_storage::datadir::{remove_file_durably, write_file_durably};

use crate::cluster::ClusterNode;

/// The marker of a data directory whose node became a ready member of its
/// ring under the address it holds, and has not left since.
const JOINED_MARKER: &str = "JOINED";

/// How often a joining node asks its peers for their progress.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often progress is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// How long a leaving node waits, after announcing `left`, for the writes
/// that reached it meanwhile to be shipped.
const LEAVE_DRAIN: Duration = Duration::from_secs(10);

/// Whether this data directory's node was a ready member advertised as
/// `advertise` when it last stopped (and so starts `ready`).
pub fn has_joined(data_dir: &Path, advertise: &str) -> bool {
    std::fs::read_to_string(data_dir.join(JOINED_MARKER))
        .is_ok_and(|text| text.trim_end() == advertise)
}

/// The status word a node starts with.
pub fn initial_status(data_dir: &Path, advertise: &str) -> &'static str {
    if has_joined(data_dir, advertise) {
        STATUS_READY
    } else {
        STATUS_JOINING
    }
}

fn mark_joined(data_dir: &Path, advertise: &str) -> io::Result<()> {
    write_file_durably(data_dir, JOINED_MARKER, format!("{advertise}\n").as_bytes())
}

fn unmark_joined(data_dir: &Path) -> io::Result<()> {
    remove_file_durably(data_dir, JOINED_MARKER)
}

/// When a joining node that finds no ready member starts a new cluster.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// Every seed names this node: there is nobody to wait for.
    pub alone: bool,
    /// How long other members (all joining) must have been seen.
    pub settle: Duration,
}

/// Joins the cluster (spawn it for a node that starts `joining`): waits
/// until every live ready member has handed this node its ranges, then
/// turns `ready`.
pub async fn join(cluster: Arc<ClusterNode>, bootstrap: Bootstrap) {
    let started = Instant::now();
    let mut seen_others_since: Option<Instant> = None;
    let mut last_log = Instant::now();
    // Per member: its change sequence when it first reported the transfer
    // done (everything it logged before must be acknowledged too).
    let mut done_at: HashMap<String, u64> = HashMap::new();
    tracing::info!(advertise = %cluster.advertise, "joining: waiting for this node's ranges");
    loop {
        let snapshot = cluster.topology.snapshot();
        let ready: Vec<(String, MemberState)> = snapshot
            .ring_members()
            .iter()
            .filter(|m| !m.is_self)
            .map(|m| (m.advertise.clone(), m.state))
            .collect();
        if ready.is_empty() {
            let others = snapshot.view().members().iter().any(|m| {
                !m.is_self && matches!(m.state, MemberState::Alive | MemberState::Suspect)
            });
            if others {
                seen_others_since.get_or_insert_with(Instant::now);
            }
            let settled =
                seen_others_since.is_some_and(|since| since.elapsed() >= bootstrap.settle);
            if bootstrap.alone || settled || started.elapsed() >= bootstrap.settle * 3 {
                if !others {
                    tracing::warn!("no member answered: this node starts a new cluster");
                }
                return become_ready(&cluster, "no ready member: a new cluster").await;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        }
        let mut waiting_for = Vec::new();
        let mut live = 0;
        for (member, state) in &ready {
            if !matches!(state, MemberState::Alive | MemberState::Suspect) {
                // A dead member's keys come from their other replicas.
                continue;
            }
            live += 1;
            match progress_of(&cluster, member).await {
                Ok(progress) if progress.transfer_done => {
                    let since = *done_at.entry(member.clone()).or_insert(progress.change_seq);
                    if progress.acked < since {
                        waiting_for.push(format!("{member} (catching up)"));
                    }
                }
                Ok(progress) => {
                    done_at.remove(member);
                    waiting_for.push(format!("{member} ({})", progress.transfer));
                }
                Err(reason) => waiting_for.push(format!("{member} ({reason})")),
            }
        }
        if live > 0 && waiting_for.is_empty() {
            return become_ready(&cluster, "every ready member handed its ranges over").await;
        }
        if last_log.elapsed() >= LOG_INTERVAL {
            last_log = Instant::now();
            let keys = cluster
                .counters
                .transfer_keys_received
                .load(Ordering::Relaxed);
            let bytes = cluster
                .counters
                .transfer_bytes_received
                .load(Ordering::Relaxed);
            let seconds = started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                keys,
                bytes,
                keys_per_sec = (keys as f64 / seconds) as u64,
                mb_per_sec = format!("{:.1}", bytes as f64 / seconds / 1e6),
                waiting_for = %if live == 0 { "a live ready member".to_string() } else { waiting_for.join(", ") },
                "joining: receiving ranges"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn become_ready(cluster: &ClusterNode, why: &str) {
    if let Err(err) = mark_joined(&cluster.data_dir, &cluster.advertise) {
        // Without the marker the node would rejoin after a restart, which
        // is safe; serving now is too.
        tracing::warn!(cause = %err, "could not write the JOINED marker");
    }
    match cluster.membership.set_status(STATUS_READY).await {
        Ok(()) => tracing::info!(
            keys = cluster
                .counters
                .transfer_keys_received
                .load(Ordering::Relaxed),
            bytes = cluster
                .counters
                .transfer_bytes_received
                .load(Ordering::Relaxed),
            "joined: ready ({why})"
        ),
        Err(err) => tracing::warn!(cause = %err, "could not announce ready"),
    }
}

/// What a member says about its shipping to this node.
struct Progress {
    transfer: String,
    transfer_done: bool,
    acked: u64,
    change_seq: u64,
}

async fn progress_of(cluster: &ClusterNode, member: &str) -> Result<Progress, String> {
    let reply = cluster
        .peers
        .forward(
            member,
            0,
            Dialect::Text,
            Bytes::from_static(b"stats cluster\r\n"),
        )
        .reply()
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&reply);
    let stat = |name: &str| {
        text.lines()
            .filter_map(|line| line.strip_prefix("STAT "))
            .filter_map(|line| line.split_once(' '))
            .find(|(stat, _)| *stat == name)
            .map(|(_, value)| value.to_string())
    };
    let me = &cluster.advertise;
    let Some(transfer) = stat(&format!("peer:{me}:transfer")) else {
        return Err("has not seen this node yet".into());
    };
    let number = |name: &str| stat(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(Progress {
        transfer_done: transfer == "done",
        transfer,
        acked: number(&format!("peer:{me}:acked")),
        change_seq: number("change_seq"),
    })
}

/// Announces `left` for a node that stops (SIGTERM): the marker goes first,
/// so that the node rejoins (and catches up) when it comes back.
pub async fn announce_left(cluster: &ClusterNode) {
    if let Err(err) = unmark_joined(&cluster.data_dir) {
        tracing::warn!(cause = %err, "could not remove the JOINED marker");
    }
    match cluster.membership.leave().await {
        Ok(outcome) => tracing::info!(
            confirmed = outcome.confirmed.len(),
            unconfirmed = outcome.unconfirmed.len(),
            "announced leaving the cluster"
        ),
        Err(err) => tracing::warn!(cause = %err, "could not announce leaving"),
    }
}

/// Leaves the cluster with the data handed over first, then asks the node
/// to exit.
async fn leave(cluster: Arc<ClusterNode>) {
    tracing::info!("leaving: handing this node's ranges over");
    if let Err(err) = cluster.membership.set_status(STATUS_LEAVING).await {
        tracing::warn!(cause = %err, "could not announce leaving");
        cluster.leaving.store(false, Ordering::Relaxed);
        return;
    }
    // The peers must see the new status before the hand-over can be judged:
    // until then this node's view of the future ring is its own.
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let snapshot = cluster.topology.snapshot();
        let live_peers: Vec<String> = snapshot
            .view()
            .members()
            .iter()
            .filter(|m| !m.is_self && matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .map(|m| m.advertise.clone())
            .collect();
        let mut peers_know = true;
        for peer in &live_peers {
            peers_know &= peer_sees_leaving(&cluster, peer).await;
        }
        let handed = cluster.replicator.handed_over();
        if peers_know && handed.is_ok() {
            break;
        }
        if last_log.elapsed() >= LOG_INTERVAL {
            last_log = Instant::now();
            tracing::info!(
                waiting_for = %handed.err().unwrap_or_else(|| "the peers to see this node leaving".into()),
                elapsed_s = started.elapsed().as_secs(),
                "leaving: handing over"
            );
        }
    }
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        "leaving: every range handed over"
    );
    announce_left(&cluster).await;
    // Writes that reached this node before its peers stopped routing here
    // are shipped before it exits.
    let drain_started = Instant::now();
    while cluster.replicator.handed_over().is_err() && drain_started.elapsed() < LEAVE_DRAIN {
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    if let Err(waiting) = cluster.replicator.handed_over() {
        tracing::warn!(%waiting, "leaving: exiting with changes not acknowledged");
    }
    cluster.request_exit();
}

/// Whether `peer` sees this node as leaving (so that it ships its own
/// writes to the members that take this node's place); a peer that cannot
/// be asked learns it from gossip.
async fn peer_sees_leaving(cluster: &ClusterNode, peer: &str) -> bool {
    let Ok(reply) = cluster
        .peers
        .forward(
            peer,
            0,
            Dialect::Text,
            Bytes::from_static(b"stats cluster\r\n"),
        )
        .reply()
        .await
    else {
        return true;
    };
    let line = format!("STAT node:{} {STATUS_LEAVING}\r\n", cluster.advertise);
    String::from_utf8_lossy(&reply).contains(&line)
}

/// Runs one `mcstore_cluster` command on this node.
pub async fn admin(cluster: Option<&Arc<ClusterNode>>, command: ClusterCommand) -> Reply {
    let Some(cluster) = cluster else {
        return Reply::server_error("this node is not in a cluster (started without --seeds)");
    };
    match command {
        ClusterCommand::Leave => {
            if cluster.leaving.swap(true, Ordering::Relaxed) {
                return Reply::server_error("this node is already leaving");
            }
            tokio::spawn(leave(cluster.clone()));
            Reply::Ok
        }
        ClusterCommand::Remove(member) => match cluster.membership.remove(&member).await {
            Ok(()) => {
                tracing::info!(%member, "removed a dead member");
                Reply::Ok
            }
            Err(err @ mcstore_cluster::membership::MembershipError::CannotRemove { .. }) => {
                Reply::ClientError(err.to_string().into())
            }
            Err(err) => Reply::ServerError(err.to_string().into()),
        },
    }
}
