//! Anti-entropy: replicas compare digests of what they hold in common and
//! repair the differences, so that a write replication missed, a record
//! damaged on disk or a tombstone one replica lost does not stay a
//! difference.
//!
//! **Digests.** For every peer, this node keeps [`BUCKETS`] digests of the
//! keys it and that peer both replicate on the routing ring: the XOR of a
//! hash of (key, version) over every record (items and tombstones), the key
//! choosing the bucket. They are kept incrementally from the change stream
//! (cursor `digests`): each change takes the version it replaced out and
//! puts the new one in. At start, and whenever the placement changes (which
//! changes which keys two nodes share), they are rebuilt by one scan of the
//! store while changes keep flowing (but not while a join or leave is under
//! way: rounds wait for its end, which changes the placement again); a change the scan may or may not have
//! seen is reconciled by following the versions it chains from (see
//! [`ScanState`]). A record whose checksum fails is left out, so a damaged
//! replica's digest differs from its peers'.
//!
//! **Rounds.** Every `--repair-interval`, for every live peer on the routing
//! ring, while no join or leave is under way: this node sends its digests of
//! what it shares with the peer; the peer compares them with its own and
//! answers the buckets that differ; this node then sends the peer every
//! record it holds in those buckets that the peer replicates, paced at
//! `--repair-rate` bytes per second, and the peer keeps what is newer. The
//! peer does the same towards this node in its own rounds, so a difference
//! is repaired in both directions. Tombstones are records like any other:
//! a delete one replica missed is repaired too (within `--tombstone-grace`,
//! after which both purge them).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use mcstore_storage::engine::Change;
use mcstore_storage::record::RecordHeader;
use mcstore_storage::wal::LogEntry;
use mcstore_storage::{Store, Version};

use crate::membership::MemberState;
use crate::peer::message::{BatchKind, ShippedRecord};
use crate::peer::PeerPool;
use crate::replication::{batch_size, batches_of, placement, Pacer};
use crate::topology::{Snapshot, Topology};

/// Digests per peer. A difference in one bucket means its keys are sent.
pub const BUCKETS: usize = 1024;

/// The change-stream cursor the digests follow.
const CURSOR: &str = "digests";

/// Records read per scan step when the digests are rebuilt.
const SCAN_CHUNK: usize = 256;

/// How anti-entropy behaves.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// Time between two rounds with one peer; zero: no anti-entropy (no
    /// rounds, no digests kept).
    pub interval: Duration,
    /// Bytes per second sent to one peer at most by a round; 0: no limit.
    pub rate: u64,
    /// How long a digest exchange or a batch may wait for its answer.
    pub timeout: Duration,
}

/// What rounds with one peer found (`stats cluster`).
#[derive(Debug, Default)]
pub struct RepairProgress {
    /// Unix seconds when the last round with the peer ended; 0: never.
    pub last_repair: AtomicU64,
    /// Buckets that differed in that round.
    pub differing: AtomicU64,
    /// Records sent to the peer by rounds.
    pub sent: AtomicU64,
    /// Rounds that ended.
    pub rounds: AtomicU64,
}

/// One peer's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// The peer.
    pub peer: String,
    /// Unix seconds of its last round, 0 if none.
    pub last_repair: u64,
    /// Buckets that differed then.
    pub differing: u64,
    /// Records sent to it by rounds.
    pub sent: u64,
    /// Rounds with it that ended.
    pub rounds: u64,
}

/// The digests of one placement.
#[derive(Default)]
struct Digests {
    /// The placement they are for (0: none yet).
    placement: u64,
    /// The rebuild scan has finished: the digests can be compared.
    complete: bool,
    /// Per peer, one digest per bucket.
    peers: HashMap<String, Vec<u64>>,
}

fn key_hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The bucket a key's hash falls in.
fn bucket_of(hash: u64) -> usize {
    (hash >> (64 - BUCKETS.trailing_zeros())) as usize
}

fn entry_hash(hash: u64, version: Version) -> u64 {
    mix(hash ^ mix(version.timestamp.0) ^ version.node.0.rotate_left(29))
}

impl Digests {
    /// Whether these are the complete digests of `placement`.
    fn built_for(&self, placement: u64) -> bool {
        self.complete && self.placement == placement
    }

    fn reset(&mut self, placement: u64) {
        self.placement = placement;
        self.complete = false;
        self.peers.clear();
    }

    /// Puts (key, version) in, or takes it out: XOR is its own inverse.
    fn toggle(&mut self, snapshot: &Snapshot, key: &[u8], version: Version) {
        let replicas = snapshot.replicas(key);
        if !replicas.iter().any(|m| m.is_self) {
            return;
        }
        let hash = key_hash(key);
        let bucket = bucket_of(hash);
        let digest = entry_hash(hash, version);
        for member in replicas.iter().filter(|m| !m.is_self) {
            match self.peers.get_mut(&member.advertise) {
                Some(buckets) => buckets[bucket] ^= digest,
                None => {
                    let mut buckets = vec![0; BUCKETS];
                    buckets[bucket] = digest;
                    self.peers.insert(member.advertise.clone(), buckets);
                }
            }
        }
    }
}

/// One chunk the rebuild scan read: its key range, the sequences around the
/// read, and what it saw.
struct Window {
    /// The last key of the chunk; `None`: the end of the key space.
    upper: Option<Bytes>,
    /// Every change up to this sequence was in the engine when the chunk
    /// was read (the scan saw it).
    applied_before: u64,
    /// No change after this sequence was in the engine then.
    published_after: u64,
    /// The version the scan saw for each key in the range (absent: none),
    /// moved forward as the changes of the uncertain sequences are taken.
    versions: HashMap<Bytes, Option<Version>>,
}

/// Where a rebuild scan stands.
///
/// A change the digests consume is one of: for a key the scan has not read
/// yet, ignored (the scan reads the key later, change included, since only
/// changes the engine holds are consumed); for a key it read, counted if it
/// came after the read (`seq > published_after`), ignored if before
/// (`seq <= applied_before`), and in between counted only if it replaced
/// the version the scan saw (then that key's version moves on).
#[derive(Default)]
struct ScanState {
    /// The last key read; `None` before the first chunk.
    after: Option<Bytes>,
    done: bool,
    windows: VecDeque<Window>,
}

impl ScanState {
    fn has_read(&self, key: &[u8]) -> bool {
        self.done || self.after.as_deref().is_some_and(|after| key <= after)
    }

    fn window_of(&mut self, key: &[u8]) -> Option<&mut Window> {
        self.windows
            .iter_mut()
            .find(|w| w.upper.as_deref().is_none_or(|upper| key <= upper))
    }

    /// Forgets the windows every consumed change is past.
    fn expire(&mut self, consumed: u64) {
        while self
            .windows
            .front()
            .is_some_and(|w| w.published_after < consumed)
        {
            self.windows.pop_front();
        }
    }
}

/// The node's anti-entropy: digests and rounds.
pub struct AntiEntropy {
    store: Arc<Store>,
    topology: Arc<Topology>,
    peers: Arc<PeerPool>,
    config: RepairConfig,
    digests: Mutex<Digests>,
    progress: Mutex<HashMap<String, Arc<RepairProgress>>>,
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AntiEntropy {
    /// Starts keeping digests and running rounds, unless the interval is
    /// zero: then nothing runs, and the digests' cursor, if an earlier run
    /// left one, is removed so that it holds no log back.
    pub fn start(
        store: Arc<Store>,
        topology: Arc<Topology>,
        peers: Arc<PeerPool>,
        config: RepairConfig,
    ) -> Arc<AntiEntropy> {
        let anti_entropy = Arc::new(AntiEntropy {
            store,
            topology,
            peers,
            config,
            digests: Mutex::new(Digests::default()),
            progress: Mutex::new(HashMap::new()),
        });
        if anti_entropy.config.interval.is_zero() {
            anti_entropy.store.remove_cursor(CURSOR);
        } else {
            tokio::spawn(anti_entropy.clone().maintain());
            tokio::spawn(anti_entropy.clone().rounds());
        }
        anti_entropy
    }

    /// Whether the digests of the current placement are complete.
    pub fn ready(&self) -> bool {
        let digests = self.digests.lock().expect("digests lock");
        digests.built_for(placement(&self.topology.snapshot()))
    }

    /// Every peer's figures, by address.
    pub fn report(&self) -> Vec<RepairReport> {
        let progress = self.progress.lock().expect("progress lock");
        let mut reports: Vec<RepairReport> = progress
            .iter()
            .map(|(peer, p)| RepairReport {
                peer: peer.clone(),
                last_repair: p.last_repair.load(Ordering::Relaxed),
                differing: p.differing.load(Ordering::Relaxed),
                sent: p.sent.load(Ordering::Relaxed),
                rounds: p.rounds.load(Ordering::Relaxed),
            })
            .collect();
        reports.sort_by(|a, b| a.peer.cmp(&b.peer));
        reports
    }

    /// Keeps the digests, rebuilding them whenever the placement changes;
    /// runs for the life of the node.
    async fn maintain(self: Arc<AntiEntropy>) {
        loop {
            if let Err(reason) = self.maintain_placement().await {
                tracing::warn!(%reason, "anti-entropy digests: starting over");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Rebuilds the digests of the current placement and keeps them until
    /// it changes (`Ok`) or the stream fails (`Err`).
    async fn maintain_placement(&self) -> Result<(), String> {
        let mut changes = self.topology.watch();
        let snapshot = self.topology.snapshot();
        let wanted = placement(&snapshot);
        self.digests.lock().expect("digests lock").reset(wanted);
        if snapshot.changing() {
            // No rounds while a join or leave is under way, and the
            // placement changes again when it ends: no digests until then
            // (a rebuild reads the whole store), and no cursor holding the
            // log back.
            self.store.remove_cursor(CURSOR);
            while placement(&self.topology.snapshot()) == wanted {
                if changes.changed().await.is_err() {
                    return Err("the topology is gone".into());
                }
            }
            return Ok(());
        }
        self.store
            .register_cursor(CURSOR)
            .map_err(|e| e.to_string())?;
        self.store
            .reset_cursor(CURSOR, self.store.applied_seq())
            .map_err(|e| e.to_string())?;
        let mut reader = self
            .store
            .follow_cursor(CURSOR)
            .map_err(|e| e.to_string())?;
        let mut scan = ScanState::default();
        let mut pending: Option<LogEntry> = None;
        let started = std::time::Instant::now();
        loop {
            if placement(&self.topology.snapshot()) != wanted {
                return Ok(());
            }
            // The changes the engine holds (a change is logged just before
            // the engine applies it).
            let mut consumed = 0;
            while consumed < 4096 {
                let entry = match pending.take() {
                    Some(entry) => entry,
                    None => match reader.try_next().map_err(|e| e.to_string())? {
                        Some(entry) => entry,
                        None => break,
                    },
                };
                if entry.seq > self.store.applied_seq() {
                    pending = Some(entry);
                    break;
                }
                let seq = entry.seq;
                self.consume(&snapshot, &mut scan, entry);
                scan.expire(seq);
                consumed += 1;
            }
            if consumed > 0 {
                let _ = self.store.advance_cursor(CURSOR, reader.position());
            }
            if !scan.done {
                self.scan_chunk(&snapshot, &mut scan)?;
                if scan.done {
                    self.digests.lock().expect("digests lock").complete = true;
                    tracing::info!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "anti-entropy digests built"
                    );
                }
                tokio::task::yield_now().await;
                continue;
            }
            if consumed == 0 {
                if pending.is_some() {
                    // Logged, not applied yet: a moment.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else if let Ok(entry) =
                    tokio::time::timeout(Duration::from_secs(1), reader.next()).await
                {
                    // Caught up: the next change (a placement change is
                    // noticed within a second).
                    pending = Some(entry.map_err(|e| e.to_string())?);
                }
            }
        }
    }

    fn consume(&self, snapshot: &Snapshot, scan: &mut ScanState, entry: LogEntry) {
        let (key, new) = match &entry.change {
            Change::Put { key, record } => (
                key,
                RecordHeader::decode(record)
                    .ok()
                    .map(|header| header.version),
            ),
            Change::Remove { key } => (key, None),
            Change::Flush(_) => return,
        };
        if !scan.has_read(key) {
            return;
        }
        if let Some(window) = scan.window_of(key) {
            if entry.seq <= window.applied_before {
                return;
            }
            if entry.seq <= window.published_after {
                let seen = window.versions.entry(key.clone()).or_insert(None);
                if *seen != entry.previous {
                    // Before the version the scan saw.
                    return;
                }
                *seen = new;
            }
        }
        let mut digests = self.digests.lock().expect("digests lock");
        if let Some(previous) = entry.previous {
            digests.toggle(snapshot, key, previous);
        }
        if let Some(new) = new {
            digests.toggle(snapshot, key, new);
        }
    }

    fn scan_chunk(&self, snapshot: &Snapshot, scan: &mut ScanState) -> Result<(), String> {
        let applied_before = self.store.applied_seq();
        let chunk = self
            .store
            .scan(scan.after.as_deref(), SCAN_CHUNK)
            .map_err(|e| e.to_string())?;
        let published_after = self.store.published_seq();
        let full = chunk.len() == SCAN_CHUNK;
        let mut versions = HashMap::with_capacity(chunk.len());
        {
            let mut digests = self.digests.lock().expect("digests lock");
            for (key, record) in &chunk {
                digests.toggle(snapshot, key, record.version);
                versions.insert(key.clone(), Some(record.version));
            }
        }
        let last = chunk.last().map(|(key, _)| key.clone());
        scan.windows.push_back(Window {
            upper: if full { last.clone() } else { None },
            applied_before,
            published_after,
            versions,
        });
        if full {
            scan.after = last;
        } else {
            scan.done = true;
        }
        Ok(())
    }

    /// Compares a peer's digests with this node's: the reply to a digest
    /// message. `0` then the differing buckets (u16 each), or `1` then why
    /// they cannot be compared.
    pub fn compare(&self, peer: &str, placement_of_peer: u64, theirs: &[u64]) -> Bytes {
        let digests = self.digests.lock().expect("digests lock");
        let not_comparable = |why: &str| {
            let mut out = BytesMut::new();
            out.put_u8(1);
            out.put_slice(why.as_bytes());
            out.freeze()
        };
        if theirs.len() != BUCKETS {
            return not_comparable("a different bucket count");
        }
        if !digests.built_for(placement(&self.topology.snapshot())) {
            return not_comparable("digests not built yet");
        }
        if digests.placement != placement_of_peer {
            return not_comparable("another placement");
        }
        let zeros = vec![0; BUCKETS];
        let mine = digests.peers.get(peer).unwrap_or(&zeros);
        let mut out = BytesMut::new();
        out.put_u8(0);
        for (bucket, (a, b)) in mine.iter().zip(theirs).enumerate() {
            if a != b {
                out.put_u16_le(bucket as u16);
            }
        }
        out.freeze()
    }

    /// Runs rounds with every live peer, one interval apart.
    async fn rounds(self: Arc<AntiEntropy>) {
        loop {
            // Spread the rounds of the nodes (±10%).
            let jitter = 0.9 + 0.2 * (unix_secs() % 97) as f64 / 97.0;
            tokio::time::sleep(self.config.interval.mul_f64(jitter)).await;
            let snapshot = self.topology.snapshot();
            if snapshot.changing() {
                continue;
            }
            let wanted = placement(&snapshot);
            let peers: Vec<(String, Vec<u64>)> = {
                let digests = self.digests.lock().expect("digests lock");
                if !digests.built_for(wanted) {
                    continue;
                }
                snapshot
                    .ring_members()
                    .iter()
                    .filter(|m| !m.is_self && m.state == MemberState::Alive)
                    .map(|m| {
                        let buckets = digests
                            .peers
                            .get(&m.advertise)
                            .cloned()
                            .unwrap_or_else(|| vec![0; BUCKETS]);
                        (m.advertise.clone(), buckets)
                    })
                    .collect()
            };
            for (peer, buckets) in peers {
                match self.round(&snapshot, wanted, &peer, buckets).await {
                    Ok(0) => tracing::debug!(%peer, "anti-entropy: in agreement"),
                    Ok(sent) => tracing::info!(%peer, sent, "anti-entropy: repaired differences"),
                    Err(reason) => tracing::debug!(%peer, %reason, "anti-entropy round skipped"),
                }
            }
        }
    }

    /// One round with `peer`: the records sent.
    async fn round(
        &self,
        snapshot: &Snapshot,
        wanted: u64,
        peer: &str,
        buckets: Vec<u64>,
    ) -> Result<u64, String> {
        let reply = self
            .peers
            .digest(peer, wanted, buckets, self.config.timeout)
            .reply()
            .await
            .map_err(|e| e.to_string())?;
        let differing: HashSet<usize> = match reply.split_first() {
            Some((0, list)) => list
                .chunks_exact(2)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Some((_, why)) => return Err(String::from_utf8_lossy(why).into_owned()),
            None => return Err("an empty answer".into()),
        };
        let progress = self
            .progress
            .lock()
            .expect("progress lock")
            .entry(peer.to_string())
            .or_default()
            .clone();
        progress
            .differing
            .store(differing.len() as u64, Ordering::Relaxed);
        let sent = if differing.is_empty() {
            0
        } else {
            self.push(snapshot, peer, &differing, &progress).await?
        };
        progress.last_repair.store(unix_secs(), Ordering::Relaxed);
        progress.rounds.fetch_add(1, Ordering::Relaxed);
        Ok(sent)
    }

    /// Sends `peer` every record of the `differing` buckets it replicates.
    async fn push(
        &self,
        snapshot: &Snapshot,
        peer: &str,
        differing: &HashSet<usize>,
        progress: &RepairProgress,
    ) -> Result<u64, String> {
        let mut pacer = Pacer::new(self.config.rate);
        let batch_bytes = pacer.batch_bytes(1 << 20);
        let mut after: Option<Bytes> = None;
        let mut sent = 0u64;
        loop {
            let chunk = self
                .store
                .scan(after.as_deref(), 512)
                .map_err(|e| e.to_string())?;
            let Some((last, _)) = chunk.last() else {
                return Ok(sent);
            };
            let last = last.clone();
            let full = chunk.len() == 512;
            let records = chunk
                .into_iter()
                .filter(|(key, _)| differing.contains(&bucket_of(key_hash(key))))
                .filter(|(key, _)| {
                    let replicas = snapshot.replicas(key);
                    replicas.iter().any(|m| m.is_self)
                        && replicas.iter().any(|m| m.advertise == peer)
                })
                .map(|(key, record)| ShippedRecord {
                    record: Bytes::from(record.encode(&key)),
                    key,
                });
            for batch in batches_of(records, batch_bytes) {
                let count = batch.len() as u64;
                let bytes = batch_size(&batch) as u64;
                self.peers
                    .deliver_records(peer, batch, BatchKind::Repair, self.config.timeout)
                    .await?;
                sent += count;
                progress.sent.fetch_add(count, Ordering::Relaxed);
                pacer.pace(bytes).await;
            }
            if !full {
                return Ok(sent);
            }
            after = Some(last);
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcstore_storage::{NodeId, Timestamp};

    fn version(t: u64) -> Version {
        Version {
            timestamp: Timestamp(t),
            node: NodeId(7),
        }
    }

    #[test]
    fn buckets_cover_the_range_and_hashes_tell_versions_apart() {
        let mut seen = HashSet::new();
        for i in 0..20_000 {
            let bucket = bucket_of(key_hash(format!("key-{i}").as_bytes()));
            assert!(bucket < BUCKETS);
            seen.insert(bucket);
        }
        assert_eq!(seen.len(), BUCKETS, "every bucket gets keys");
        let hash = key_hash(b"k");
        assert_ne!(entry_hash(hash, version(1)), entry_hash(hash, version(2)));
        assert_ne!(
            entry_hash(key_hash(b"a"), version(1)),
            entry_hash(key_hash(b"b"), version(1))
        );
    }

    #[test]
    fn the_scan_state_sorts_changes_before_during_and_after_a_read() {
        let mut scan = ScanState::default();
        assert!(!scan.has_read(b"a"));
        scan.after = Some(Bytes::from_static(b"m"));
        scan.windows.push_back(Window {
            upper: Some(Bytes::from_static(b"m")),
            applied_before: 10,
            published_after: 12,
            versions: HashMap::new(),
        });
        assert!(scan.has_read(b"a") && scan.has_read(b"m") && !scan.has_read(b"n"));
        assert!(scan.window_of(b"c").is_some());
        scan.expire(12);
        assert_eq!(scan.windows.len(), 1);
        scan.expire(13);
        assert!(scan.windows.is_empty());
    }
}
