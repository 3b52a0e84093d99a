//! Asynchronous replication: every write reaches the key's whole replica
//! set.
//!
//! A node ships what its own clients wrote. For every other member on the
//! ring it runs one shipper, which follows the node's change stream from a
//! durable cursor (`replica:<peer>`), picks the changes of keys the peer
//! replicates that this node made for a client (not the ones it applied
//! from others, nor housekeeping), and sends them in pipelined batches on
//! the peer's replication connection. The peer applies each record only if
//! newer (the storage layer's apply operation), durably, and acknowledges
//! the batch; the shipper then moves its cursor. So:
//!
//! - after a restart of either side shipping resumes where the last
//!   acknowledged position says (records sent again are applied as stale);
//! - a peer that is down keeps its cursor: the log is retained for it (up to
//!   `--wal-retention`), and the changes it missed are its hints, delivered
//!   when it returns; after `--hint-window` without the peer the cursor is
//!   dropped, and so is the log kept for it;
//! - a peer with no cursor (new, or whose cursor fell behind retention, or
//!   was dropped) first gets a range transfer: every record this node holds
//!   for a key the peer replicates, tombstones included, streamed with
//!   progress in the log; the stream then continues from where it was when
//!   the transfer began;
//! - one slow or dead peer only holds back its own shipper.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcstore_storage::engine::Change;
use mcstore_storage::wal::stream::StreamError;
use mcstore_storage::wal::Origin;
use mcstore_storage::{Operation, Store};
use tokio::sync::watch;

use crate::membership::MemberState;
use crate::peer::message::{BatchKind, ShippedRecord};
use crate::peer::{ForwardCall, PeerPool};
use crate::topology::{Snapshot, Topology, STATUS_JOINING};
use crate::transfers::{TransferProgress, Transfers};

/// How replication behaves.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// How long a peer may be away before its hints are given up (it then
    /// gets a range transfer when it returns).
    pub hint_window: Duration,
    /// Records per batch at most.
    pub batch_records: usize,
    /// Bytes per batch at most (keys and records).
    pub batch_bytes: usize,
    /// Batches in flight per peer at most.
    pub window: usize,
    /// How long a batch may wait for its acknowledgement.
    pub ack_timeout: Duration,
    /// Range transfer bytes per second to one peer at most; 0: no limit.
    pub transfer_rate: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            hint_window: Duration::from_secs(3 * 3600),
            batch_records: 512,
            batch_bytes: 1 << 20,
            window: 4,
            ack_timeout: Duration::from_secs(10),
            transfer_rate: 0,
        }
    }
}

/// What a shipper reports about its peer (`stats cluster`).
#[derive(Debug, Default)]
pub struct PeerProgress {
    /// The last change-stream sequence the peer acknowledged (or that held
    /// nothing for it).
    pub acked: AtomicU64,
    /// Records the peer acknowledged.
    pub shipped: AtomicU64,
    /// Records sent by range transfers.
    pub transferred: AtomicU64,
    /// Bytes (keys and records) sent by range transfers.
    pub transferred_bytes: AtomicU64,
    /// Range transfers begun.
    pub transfers: AtomicU64,
    /// Unix ms when the oldest change the peer has not acknowledged was
    /// read, 0 when it has everything read so far.
    pub oldest_unacked_ms: AtomicU64,
    /// The placement (see [`placement`]) the peer's last finished transfer
    /// covered: it has every key it replicates under it. 0: none.
    pub covered: AtomicU64,
    /// A transfer to the peer is under way.
    pub transferring: AtomicBool,
    /// The snapshot `covered` was taken from, while this process runs (for
    /// transfers of only what a ring change gave the peer).
    covered_snapshot: Mutex<Option<Arc<Snapshot>>>,
}

/// One peer's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// The peer.
    pub peer: String,
    /// Its state as this node sees it.
    pub state: MemberState,
    /// Log entries it has not acknowledged.
    pub pending: u64,
    /// The last change-stream sequence it acknowledged.
    pub acked: u64,
    /// Pending entries while it is not alive: hints held for it.
    pub hints: u64,
    /// How long the oldest unacknowledged change has waited, ms.
    pub lag_ms: u64,
    /// Records it acknowledged.
    pub shipped: u64,
    /// Records sent to it by range transfers.
    pub transferred: u64,
    /// Bytes sent to it by range transfers.
    pub transferred_bytes: u64,
    /// Its range transfer for the current placement: `done`, `running` or
    /// `pending`.
    pub transfer: &'static str,
}

/// A fingerprint of where keys live: the routing ring and the future ring.
/// A peer that has every key it replicates under a placement needs nothing
/// more until the placement changes.
pub fn placement(snapshot: &Snapshot) -> u64 {
    let fingerprint =
        snapshot.routing().fingerprint() ^ snapshot.future().fingerprint().rotate_left(17);
    fingerprint.max(1)
}

/// The node's replication: one shipper per peer.
pub struct Replicator {
    store: Arc<Store>,
    topology: Arc<Topology>,
    peers: Arc<PeerPool>,
    config: ReplicationConfig,
    progress: Mutex<HashMap<String, Arc<PeerProgress>>>,
    acked: watch::Sender<u64>,
    transfers: Transfers,
}

fn cursor_name(peer: &str) -> String {
    format!("replica:{peer}")
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Replicator {
    /// Starts replication for this node: a shipper for every other member
    /// on the ring, now and as members join.
    pub fn start(
        store: Arc<Store>,
        topology: Arc<Topology>,
        peers: Arc<PeerPool>,
        config: ReplicationConfig,
    ) -> std::io::Result<Arc<Replicator>> {
        let transfers = Transfers::load(&store.config().data_dir.join("wal"))?;
        let replicator = Arc::new(Replicator {
            store,
            topology,
            peers,
            config,
            progress: Mutex::new(HashMap::new()),
            acked: watch::channel(0).0,
            transfers,
        });
        tokio::spawn(replicator.clone().supervise());
        tokio::spawn(replicator.clone().hand_over());
        Ok(replicator)
    }

    /// Starts a shipper for each peer that appears on the ring.
    async fn supervise(self: Arc<Replicator>) {
        let mut changes = self.topology.watch();
        loop {
            let snapshot = changes.borrow_and_update().clone();
            let members = snapshot
                .routing()
                .members
                .iter()
                .chain(snapshot.future().members.iter());
            for member in members {
                if member.is_self {
                    continue;
                }
                let mut progress = self.progress.lock().expect("progress lock");
                if progress.contains_key(&member.advertise) {
                    continue;
                }
                let peer_progress = Arc::new(PeerProgress::default());
                if let Some(covered) = self.transfers.done_placement(&member.advertise) {
                    peer_progress.covered.store(covered, Ordering::Relaxed);
                }
                progress.insert(member.advertise.clone(), peer_progress.clone());
                tokio::spawn(self.clone().ship(member.advertise.clone(), peer_progress));
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Every peer's figures.
    pub fn report(&self) -> Vec<PeerReport> {
        let snapshot = self.topology.snapshot();
        let current = placement(&snapshot);
        let published = self.store.published_seq();
        let now = unix_ms();
        let progress = self.progress.lock().expect("progress lock");
        let mut reports: Vec<PeerReport> = progress
            .iter()
            .map(|(peer, progress)| {
                let state = snapshot.state_of(peer).unwrap_or(MemberState::Dead);
                let acked = progress.acked.load(Ordering::Relaxed);
                let pending = published.saturating_sub(acked);
                let oldest = progress.oldest_unacked_ms.load(Ordering::Relaxed);
                PeerReport {
                    peer: peer.clone(),
                    state,
                    pending,
                    acked,
                    hints: if state == MemberState::Alive {
                        0
                    } else {
                        pending
                    },
                    lag_ms: if oldest == 0 {
                        0
                    } else {
                        now.saturating_sub(oldest)
                    },
                    shipped: progress.shipped.load(Ordering::Relaxed),
                    transferred: progress.transferred.load(Ordering::Relaxed),
                    transferred_bytes: progress.transferred_bytes.load(Ordering::Relaxed),
                    transfer: if progress.covered.load(Ordering::Relaxed) == current {
                        "done"
                    } else if progress.transferring.load(Ordering::Relaxed) {
                        "running"
                    } else {
                        "pending"
                    },
                }
            })
            .collect();
        reports.sort_by(|a, b| a.peer.cmp(&b.peer));
        reports
    }

    /// Whether this node has handed everything over for the current
    /// placement: every other member of the future ring has had its range
    /// transfer and has acknowledged every change this node logged (what a
    /// leaving node waits for before it announces `left`). `Err` names a
    /// member still waiting.
    pub fn handed_over(&self) -> Result<(), String> {
        let snapshot = self.topology.snapshot();
        let wanted = placement(&snapshot);
        let published = self.store.published_seq();
        let progress = self.progress.lock().expect("progress lock");
        for member in snapshot.future().members.iter().filter(|m| !m.is_self) {
            let Some(peer) = progress.get(&member.advertise) else {
                return Err(format!("{}: no shipper yet", member.advertise));
            };
            if peer.covered.load(Ordering::Relaxed) != wanted {
                return Err(format!(
                    "{}: range transfer not done ({})",
                    member.advertise, member.state
                ));
            }
            let acked = peer.acked.load(Ordering::Relaxed);
            if acked < published {
                return Err(format!(
                    "{}: {} changes not acknowledged",
                    member.advertise,
                    published - acked
                ));
            }
        }
        Ok(())
    }

    /// Waits until one other replica of `key` has acknowledged the change
    /// at `seq` (the `--replica-ack one` promise), at most `timeout`.
    /// Returns false on timeout, or when the key has no other replica.
    pub async fn wait_for_replica(&self, key: &[u8], seq: u64, timeout: Duration) -> bool {
        let snapshot = self.topology.snapshot();
        let replicas: Vec<Arc<PeerProgress>> = {
            let progress = self.progress.lock().expect("progress lock");
            snapshot
                .replicas(key)
                .into_iter()
                .filter(|m| !m.is_self)
                .filter_map(|m| progress.get(&m.advertise).cloned())
                .collect()
        };
        if replicas.is_empty() {
            return false;
        }
        let mut acks = self.acked.subscribe();
        let done = || {
            replicas
                .iter()
                .any(|p| p.acked.load(Ordering::Relaxed) >= seq)
        };
        tokio::time::timeout(timeout, async {
            while !done() {
                if acks.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await
        .unwrap_or(false)
    }

    /// The shipper of one peer; runs until the peer leaves.
    async fn ship(self: Arc<Replicator>, peer: String, progress: Arc<PeerProgress>) {
        let cursor = cursor_name(&peer);
        let mut backoff = Duration::from_millis(100);
        let mut away_since: Option<Instant> = None;
        loop {
            let state = self.topology.snapshot().state_of(&peer);
            match state {
                Some(MemberState::Left) | None => {
                    // Off the ring: nothing to ship; its keys are others'.
                    self.store.remove_cursor(&cursor);
                    self.transfers.forget(&peer);
                    self.progress.lock().expect("progress lock").remove(&peer);
                    tracing::info!(%peer, "stopped replicating to a member that left");
                    return;
                }
                Some(MemberState::Dead) => {
                    let since = *away_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.config.hint_window
                        && self.store.cursors().iter().any(|(name, _)| name == &cursor)
                    {
                        tracing::warn!(%peer, "a peer was away longer than the hint window: its hints are dropped, it will get a range transfer when it returns");
                        self.store.remove_cursor(&cursor);
                    }
                    self.wait_for_change().await;
                    continue;
                }
                Some(MemberState::Alive | MemberState::Suspect) => away_since = None,
            }
            let result = self.ship_to(&peer, &cursor, &progress).await;
            match result {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(reason) => {
                    tracing::debug!(%peer, %reason, "replication paused");
                    progress.oldest_unacked_ms.store(0, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn wait_for_change(&self) {
        let mut changes = self.topology.watch();
        let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
    }

    /// Ships to one peer until something fails or the peer's state changes
    /// away from alive.
    async fn ship_to(
        &self,
        peer: &str,
        cursor: &str,
        progress: &PeerProgress,
    ) -> Result<(), String> {
        let snapshot = self.topology.snapshot();
        let wanted = placement(&snapshot);
        let known = self
            .store
            .cursors()
            .into_iter()
            .find(|(name, _)| name == cursor)
            .map(|(_, state)| state);
        let resume = match self.transfers.get(peer, wanted) {
            Some(TransferProgress::After(key)) => Some(key),
            _ => None,
        };
        let stream_lost = known.is_none_or(|state| state.fell_behind);
        if stream_lost && resume.is_none() {
            // The stream continues from here once the transfer is done.
            let start = self.store.published_seq();
            if known.is_none() {
                self.store
                    .register_cursor(cursor)
                    .map_err(|e| e.to_string())?;
            }
            self.store
                .reset_cursor(cursor, start)
                .map_err(|e| e.to_string())?;
            progress.covered.store(0, Ordering::Relaxed);
            *progress.covered_snapshot.lock().expect("covered lock") = None;
        }
        if progress.covered.load(Ordering::Relaxed) != wanted {
            // What the peer may lack: everything it replicates now, or only
            // what the last ring change gave it when the placement it had
            // is known. A joining peer gets everything: it may be a member
            // that comes back with its data lost (a wiped data directory).
            let joining = snapshot
                .view()
                .get(peer)
                .is_some_and(|m| m.status == STATUS_JOINING);
            let before = progress
                .covered_snapshot
                .lock()
                .expect("covered lock")
                .clone()
                .filter(|_| !stream_lost && resume.is_none() && !joining);
            progress.transferring.store(true, Ordering::Relaxed);
            let result = self
                .transfer(peer, progress, &snapshot, before.as_deref(), wanted, resume)
                .await;
            progress.transferring.store(false, Ordering::Relaxed);
            result?;
            progress.covered.store(wanted, Ordering::Relaxed);
            *progress.covered_snapshot.lock().expect("covered lock") = Some(snapshot.clone());
            let _ = self.transfers.set(peer, wanted, TransferProgress::Done);
        }
        let mut reader = match self.store.follow_cursor(cursor) {
            Ok(reader) => reader,
            Err(StreamError::CursorFellBehind(_)) => {
                tracing::warn!(%peer, "a peer's replication cursor fell behind log retention: it gets a range transfer");
                return Ok(());
            }
            Err(err) => return Err(err.to_string()),
        };
        progress.acked.store(reader.position(), Ordering::Relaxed);
        let mut in_flight: std::collections::VecDeque<(u64, usize, ForwardCall)> =
            std::collections::VecDeque::new();
        let mut seen = snapshot.clone();
        loop {
            // A placement change needs a transfer first, and a peer that is
            // no longer alive is the caller's to decide: stop filling the
            // window, and return once the batches in flight are answered.
            let now = self.topology.snapshot();
            if !Arc::ptr_eq(&now, &seen) {
                seen = now;
            }
            let go_on = placement(&seen) == wanted
                && matches!(
                    seen.state_of(peer),
                    Some(MemberState::Alive | MemberState::Suspect)
                );
            // Fill the window, then wait for the oldest batch's ack.
            while go_on && in_flight.len() < self.config.window {
                let batch = match self
                    .next_batch(peer, &mut reader, in_flight.is_empty())
                    .await
                {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(StreamError::FellBehind { .. }) => {
                        return Err("the change stream fell behind".into())
                    }
                    Err(err) => return Err(err.to_string()),
                };
                let (last_seq, records) = batch;
                if records.is_empty() {
                    if in_flight.is_empty() {
                        self.acknowledge(cursor, progress, last_seq, 0);
                    } else {
                        // Nothing to send, but the position must wait for
                        // the batches before it.
                        in_flight.push_back((last_seq, 0, ForwardCall::ready()));
                    }
                    continue;
                }
                if progress.oldest_unacked_ms.load(Ordering::Relaxed) == 0 {
                    progress
                        .oldest_unacked_ms
                        .store(unix_ms(), Ordering::Relaxed);
                }
                let count = records.len();
                let call = self.peers.replicate(peer, records, self.config.ack_timeout);
                in_flight.push_back((last_seq, count, call));
            }
            let Some((last_seq, count, call)) = in_flight.pop_front() else {
                if !go_on {
                    return Ok(());
                }
                continue;
            };
            let reply = call.reply().await.map_err(|e| e.to_string())?;
            if !reply.is_empty() {
                return Err(format!(
                    "the peer could not apply a batch: {}",
                    String::from_utf8_lossy(&reply)
                ));
            }
            self.acknowledge(cursor, progress, last_seq, count);
            if in_flight.is_empty() {
                progress.oldest_unacked_ms.store(0, Ordering::Relaxed);
            }
        }
    }

    fn acknowledge(&self, cursor: &str, progress: &PeerProgress, seq: u64, count: usize) {
        let _ = self.store.advance_cursor(cursor, seq);
        progress.acked.fetch_max(seq, Ordering::Relaxed);
        progress.shipped.fetch_add(count as u64, Ordering::Relaxed);
        self.acked.send_replace(seq);
    }

    /// The next batch for `peer`: the last sequence read and the records
    /// among them the peer replicates. Waits for a change only if `wait`
    /// (nothing in flight), and then at most a second, so that a state
    /// change of the peer is noticed; `None` when nothing is ready.
    async fn next_batch(
        &self,
        peer: &str,
        reader: &mut mcstore_storage::wal::stream::ChangeReader,
        wait: bool,
    ) -> Result<Option<(u64, Vec<ShippedRecord>)>, StreamError> {
        let first = match reader.try_next()? {
            Some(entry) => entry,
            None if wait => {
                match tokio::time::timeout(Duration::from_secs(1), reader.next()).await {
                    Ok(entry) => entry?,
                    Err(_) => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        let snapshot = self.topology.snapshot();
        let mut records = Vec::new();
        let mut bytes = 0;
        let mut last_seq = first.seq;
        let mut entry = Some(first);
        while let Some(current) = entry.take() {
            last_seq = current.seq;
            if let Some(record) = shipped(&snapshot, peer, current.change, current.origin) {
                bytes += record.key.len() + record.record.len();
                records.push(record);
            }
            if records.len() >= self.config.batch_records || bytes >= self.config.batch_bytes {
                break;
            }
            entry = reader.try_next()?;
        }
        Ok(Some((last_seq, records)))
    }

    /// A range transfer: every record this node holds for a key `peer`
    /// replicates under `snapshot` (and, when `before` is given, did not
    /// under it), in batches, each acknowledged before the next is sent,
    /// its progress kept durably (`resume`: go on after that key).
    async fn transfer(
        &self,
        peer: &str,
        progress: &PeerProgress,
        snapshot: &Snapshot,
        before: Option<&Snapshot>,
        wanted: u64,
        resume: Option<Bytes>,
    ) -> Result<(), String> {
        progress.transfers.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut last_log = Instant::now();
        let mut after: Option<Bytes> = resume;
        let mut pacer = Pacer::new(self.config.transfer_rate);
        let batch_bytes = pacer.batch_bytes(self.config.batch_bytes);
        let mut sent = 0u64;
        let mut scanned = 0u64;
        if after.is_some() {
            tracing::info!(%peer, "range transfer resumed where it was interrupted");
        }
        loop {
            let chunk = self
                .store
                .scan(after.as_deref(), self.config.batch_records)
                .map_err(|e| e.to_string())?;
            let Some((last_key, _)) = chunk.last() else {
                break;
            };
            let last_key = last_key.clone();
            let full = chunk.len() == self.config.batch_records;
            scanned += chunk.len() as u64;
            let records = chunk
                .into_iter()
                .filter(|(key, _)| {
                    let hash = crate::ring::key_hash(key);
                    snapshot.is_replica_at(hash, peer)
                        && before.is_none_or(|b| !b.is_replica_at(hash, peer))
                })
                .map(|(key, record)| ShippedRecord {
                    record: Bytes::from(record.encode(&key)),
                    key,
                });
            for batch in batches_of(records, batch_bytes) {
                let count = batch.len() as u64;
                let bytes = batch_size(&batch) as u64;
                let last = batch.last().map(|r| r.key.clone());
                self.peers
                    .deliver_records(peer, batch, BatchKind::Transfer, self.config.ack_timeout)
                    .await?;
                sent += count;
                progress.transferred.fetch_add(count, Ordering::Relaxed);
                progress
                    .transferred_bytes
                    .fetch_add(bytes, Ordering::Relaxed);
                if let Some(last) = last {
                    let _ = self
                        .transfers
                        .set(peer, wanted, TransferProgress::After(last));
                }
                pacer.pace(bytes).await;
            }
            let _ = self
                .transfers
                .set(peer, wanted, TransferProgress::After(last_key.clone()));
            after = Some(last_key);
            if last_log.elapsed() > Duration::from_secs(5) {
                last_log = Instant::now();
                let seconds = started.elapsed().as_secs_f64().max(0.001);
                tracing::info!(
                    %peer,
                    scanned,
                    sent,
                    keys_per_sec = (sent as f64 / seconds) as u64,
                    mb_per_sec = format!("{:.2}", pacer.sent_bytes as f64 / seconds / 1e6),
                    "range transfer in progress"
                );
            }
            if !full {
                break;
            }
        }
        if sent > 0 {
            tracing::info!(%peer, scanned, sent, bytes = pacer.sent_bytes, took_ms = started.elapsed().as_millis() as u64, "range transfer done");
        }
        Ok(())
    }

    /// After a ring change settles, drops the records this node no longer
    /// replicates, once every peer that gained them has them (its transfer
    /// for the placement is done). Runs once per placement.
    async fn hand_over(self: Arc<Replicator>) {
        let mut changes = self.topology.watch();
        let mut swept: Option<u64> = None;
        let mut last_seen: Option<u64> = None;
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
            let snapshot = self.topology.snapshot();
            let wanted = placement(&snapshot);
            // A placement seen again after another one (a join that ended
            // where it started, a wiped member back) needs a new sweep.
            if last_seen != Some(wanted) {
                last_seen = Some(wanted);
                swept = None;
            }
            if swept == Some(wanted) || snapshot.changing() {
                continue;
            }
            let Some(me) = snapshot
                .routing()
                .members
                .iter()
                .find(|m| m.is_self)
                .map(|m| m.advertise.clone())
            else {
                continue;
            };
            let all_covered = {
                let progress = self.progress.lock().expect("progress lock");
                snapshot
                    .routing()
                    .members
                    .iter()
                    .filter(|m| !m.is_self)
                    .all(|m| {
                        progress
                            .get(&m.advertise)
                            .is_some_and(|p| p.covered.load(Ordering::Relaxed) == wanted)
                    })
            };
            if !all_covered {
                continue;
            }
            let dropped = match self.drop_unreplicated(&snapshot, &me).await {
                Ok(dropped) => dropped,
                Err(err) => {
                    tracing::warn!(cause = %err, "handing over records failed");
                    continue;
                }
            };
            if dropped > 0 {
                tracing::info!(dropped, "dropped records this node no longer replicates");
            }
            swept = Some(wanted);
        }
    }

    async fn drop_unreplicated(&self, snapshot: &Snapshot, me: &str) -> Result<u64, String> {
        let mut after: Option<Bytes> = None;
        let mut dropped = 0u64;
        loop {
            let chunk = self
                .store
                .scan(after.as_deref(), self.config.batch_records)
                .map_err(|e| e.to_string())?;
            let Some((last_key, _)) = chunk.last() else {
                return Ok(dropped);
            };
            let next = last_key.clone();
            let full = chunk.len() == self.config.batch_records;
            let mut pending = Vec::new();
            for (key, record) in chunk {
                if snapshot.is_replica(&key, me) {
                    continue;
                }
                pending.push(
                    self.store
                        .enqueue(Operation::Discard {
                            key,
                            version: record.version,
                        })
                        .await,
                );
            }
            dropped += pending.len() as u64;
            for write in pending {
                write.outcome().await;
            }
            if !full {
                return Ok(dropped);
            }
            after = Some(next);
        }
    }
}

/// Keeps a sender of records at or below a rate (bytes per second since it
/// started; 0: no limit).
pub(crate) struct Pacer {
    rate: u64,
    started: Instant,
    /// Bytes accounted so far.
    pub(crate) sent_bytes: u64,
}

impl Pacer {
    pub(crate) fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            started: Instant::now(),
            sent_bytes: 0,
        }
    }

    /// The batch size to use: `largest`, or less under a rate, so that a
    /// batch takes about a quarter of a second (and an interrupted peer is
    /// noticed soon).
    pub(crate) fn batch_bytes(&self, largest: usize) -> usize {
        if self.rate == 0 {
            largest
        } else {
            usize::try_from(self.rate / 4)
                .unwrap_or(largest)
                .clamp(4096, largest.max(4096))
        }
    }

    /// Accounts `bytes` sent and sleeps until the rate allows more.
    pub(crate) async fn pace(&mut self, bytes: u64) {
        self.sent_bytes += bytes;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.sent_bytes as f64 / self.rate as f64);
        if let Some(early) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(early).await;
        }
    }
}

/// The bytes of a batch on the wire (keys and records).
pub fn batch_size(batch: &[ShippedRecord]) -> usize {
    batch.iter().map(|r| r.key.len() + r.record.len()).sum()
}

/// Splits records into batches of about `max_bytes` (at least one record
/// each).
pub(crate) fn batches_of(
    records: impl Iterator<Item = ShippedRecord>,
    max_bytes: usize,
) -> Vec<Vec<ShippedRecord>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for record in records {
        bytes += record.key.len() + record.record.len();
        current.push(record);
        if bytes >= max_bytes {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// The record a change ships to `peer`, if it is a client's write of a key
/// the peer replicates.
fn shipped(
    snapshot: &Snapshot,
    peer: &str,
    change: Change,
    origin: Origin,
) -> Option<ShippedRecord> {
    match (change, origin) {
        (Change::Put { key, record }, Origin::Client) if snapshot.is_replica(&key, peer) => {
            Some(ShippedRecord { key, record })
        }
        _ => None,
    }
}
