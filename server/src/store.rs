//! The store: one node's data, opened from a data directory.
//!
//! [`Store::open`] locks the directory, opens the engine, replays the
//! write-ahead log past the engine's checkpoint and starts three threads:
//! the writer (group commit), the checkpointer (makes the engine durable and
//! drops log segments it no longer needs) and the reclaimer (removes expired
//! and flushed items in the background). Reads go straight to the engine;
//! writes go through [`Store::enqueue`] to the writer.
//!
//! Data directory layout: `LOCK` (held with `flock` while the node runs),
//! `sled/` (the engine), `wal/` (the log).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Clock;
use crate::datadir::DataDirLock;
use crate::engine::{Change, Checkpoint, Engine, EngineError, SledEngine};
use crate::handoff::{completion, Abandoned, Completion, Queue};
use crate::record::{CorruptRecord, Record, RecordHeader};
use crate::stats::Shared;
use crate::wal::{Segments, Wal, WalError};
use crate::writer::{Submission, SyncMode, WriteOp, WriteOutcome, Writer, WriterConfig};

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Durability mode.
    pub sync: SyncMode,
    /// fdatasync interval for `SyncMode::Periodic`.
    pub sync_interval: Duration,
    /// Most operations per group commit.
    pub max_batch: usize,
    /// Item size limit, counted as memcached counts it.
    pub max_item_size: usize,
    /// sled's page cache.
    pub cache_bytes: u64,
    /// Size at which a log segment is closed and a new one started.
    pub wal_segment_bytes: u64,
    /// How often the engine is made durable and old log segments dropped.
    pub checkpoint_interval: Duration,
    /// Keys per second the reclaimer examines (0 turns it off).
    pub reclaim_keys_per_sec: u64,
    /// Write operations queued or in flight at most; more wait.
    pub max_pending_writes: usize,
}

impl StoreConfig {
    /// Defaults for a data directory (those of the command line).
    pub fn new(data_dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.into(),
            sync: SyncMode::Always,
            sync_interval: Duration::from_millis(100),
            max_batch: 1024,
            max_item_size: 1024 * 1024,
            cache_bytes: 256 * 1024 * 1024,
            wal_segment_bytes: 64 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(5),
            reclaim_keys_per_sec: 50_000,
            max_pending_writes: 16 * 1024,
        }
    }
}

/// Why a store could not be opened or closed cleanly.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another mcstore (its LOCK file is held)")]
    Locked(PathBuf),
    /// An I/O error on the data directory.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// Why a read failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The stored record failed its checksum (it is counted and logged).
    #[error("stored item is corrupt ({0})")]
    Corrupt(#[from] CorruptRecord),
    /// The engine failed.
    #[error("engine read failed ({0})")]
    Engine(#[from] EngineError),
}

/// What a read found under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A live item.
    Hit(Record),
    /// Nothing stored.
    Miss,
    /// An item that has expired (invisible; reclaimed later).
    Expired,
    /// An item hidden by `flush_all` (invisible; reclaimed later).
    Flushed,
}

/// A write handed to the writer; await [`PendingWrite::outcome`].
pub struct PendingWrite {
    completion: Completion<WriteOutcome>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl PendingWrite {
    /// The writer's answer.
    pub async fn outcome(self) -> WriteOutcome {
        match self.completion.await {
            Ok(outcome) => outcome,
            Err(Abandoned) => WriteOutcome::Failed("the node is shutting down".into()),
        }
    }
}

/// An open store.
pub struct Store<E: Engine = SledEngine> {
    engine: Arc<E>,
    queue: Arc<Queue<Submission>>,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    segments: Segments,
    write_permits: Arc<Semaphore>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    stop_background: Arc<StopSignal>,
    _lock: DataDirLock,
}

impl Store<SledEngine> {
    /// Opens the store in `config.data_dir` with sled as the engine.
    pub fn open(
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Store<SledEngine>, StoreError> {
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let engine = SledEngine::open(&config.data_dir.join("sled"), config.cache_bytes)?;
        Store::with_engine(config, clock, engine, lock)
    }
}

impl<E: Engine> Store<E> {
    fn with_engine(
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        engine: E,
        lock: DataDirLock,
    ) -> Result<Store<E>, StoreError> {
        let engine = Arc::new(engine);
        let shared = Arc::new(Shared::default());
        let (wal, checkpoint) = recover(&*engine, &config)?;
        shared.publish(&checkpoint);
        let segments = wal.segments();
        let queue = Arc::new(Queue::default());
        let writer = Writer::new(
            engine.clone(),
            wal,
            shared.clone(),
            clock.clone(),
            WriterConfig {
                sync: config.sync,
                sync_interval: config.sync_interval,
                max_batch: config.max_batch,
                max_item_size: config.max_item_size,
            },
            checkpoint,
        );
        let writer_thread = {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("mcstore-writer".into())
                .spawn(move || writer.run(&queue))
                .map_err(|source| StoreError::DataDir {
                    path: config.data_dir.clone(),
                    source,
                })?
        };
        let store = Store {
            engine,
            queue,
            shared,
            clock,
            write_permits: Arc::new(Semaphore::new(config.max_pending_writes)),
            segments,
            threads: Mutex::new(Vec::new()),
            writer_thread: Mutex::new(Some(writer_thread)),
            stop_background: Arc::new(StopSignal::default()),
            config,
            _lock: lock,
        };
        store.start_background();
        Ok(store)
    }

    fn start_background(&self) {
        let stopped = self.stop_background.clone();
        let mut threads = self.threads.lock().expect("threads lock");
        {
            let engine = self.engine.clone();
            let segments = self.segments.clone();
            let shared = self.shared.clone();
            let interval = self.config.checkpoint_interval;
            let stopped = stopped.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("mcstore-checkpoint".into())
                    .spawn(move || loop {
                        if stopped.wait(interval) {
                            return;
                        }
                        checkpoint(&*engine, &segments, &shared);
                    })
                    .expect("spawn checkpoint thread"),
            );
        }
        if self.config.reclaim_keys_per_sec > 0 {
            let reclaimer = Reclaimer {
                engine: self.engine.clone(),
                queue: self.queue.clone(),
                shared: self.shared.clone(),
                clock: self.clock.clone(),
                keys_per_sec: self.config.reclaim_keys_per_sec,
            };
            threads.push(
                std::thread::Builder::new()
                    .name("mcstore-reclaim".into())
                    .spawn(move || reclaimer.run(&stopped))
                    .expect("spawn reclaim thread"),
            );
        }
    }

    /// Reads a key.
    pub fn get(&self, key: &[u8]) -> Result<Lookup, ReadError> {
        let Some(bytes) = self.engine.get(key)? else {
            return Ok(Lookup::Miss);
        };
        let record = Record::decode(key, bytes.as_ref()).inspect_err(|err| {
            self.shared.note_corrupt_record(key, err);
        })?;
        let now = self.clock.now_secs();
        if self.shared.flush_markers().hides(record.version, now) {
            return Ok(Lookup::Flushed);
        }
        if record.expiry.is_expired(now) {
            return Ok(Lookup::Expired);
        }
        Ok(Lookup::Hit(record))
    }

    /// Hands a write to the writer, waiting for room if too many are in
    /// flight. Await the result's [`PendingWrite::outcome`].
    pub async fn enqueue(&self, op: WriteOp) -> PendingWrite {
        let permit = self.write_permits.clone().acquire_owned().await.ok();
        let (completer, completion) = completion();
        // A refused push drops the completer: the outcome reports shutdown.
        let _ = self.queue.push(Submission { op, completer });
        PendingWrite {
            completion,
            _permit: permit,
        }
    }

    /// The store's unix time in seconds.
    pub fn now_secs(&self) -> u64 {
        self.clock.now_secs()
    }

    /// Counters and figures.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Bytes used on disk by the engine and the log.
    pub fn disk_bytes(&self) -> (u64, u64) {
        (self.engine.disk_bytes(), self.segments.disk_bytes())
    }

    /// Stops taking writes, lets the writer finish and sync everything
    /// queued, makes the engine durable and drops the log it covers.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.stop_threads();
        if let Some(checkpoint) = self.engine.make_durable()? {
            self.segments
                .remove_through(checkpoint.applied_seq)
                .map_err(|source| StoreError::DataDir {
                    path: self.config.data_dir.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

impl<E: Engine> Store<E> {
    /// Stops the writer (after it answers everything queued) and the
    /// background threads, without making the engine durable.
    fn stop_threads(&self) {
        self.queue.close();
        if let Some(writer) = self.writer_thread.lock().expect("writer lock").take() {
            let _ = writer.join();
        }
        self.stop_background.stop();
        for thread in self.threads.lock().expect("threads lock").drain(..) {
            let _ = thread.join();
        }
    }
}

impl<E: Engine> Drop for Store<E> {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Tells the background threads to stop, waking them from their sleep.
#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        *self.stopped.lock().expect("stop lock") = true;
        self.wake.notify_all();
    }

    /// Sleeps for `interval`; true if the store is stopping.
    fn wait(&self, interval: Duration) -> bool {
        let stopped = self.stopped.lock().expect("stop lock");
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, interval, |stopped| !*stopped)
            .expect("stop lock");
        *stopped
    }
}

/// Makes the engine durable and drops the log segments it now covers.
fn checkpoint<E: Engine>(engine: &E, segments: &Segments, shared: &Shared) {
    match engine.make_durable() {
        Ok(Some(checkpoint)) => {
            shared.store.checkpoints.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = segments.remove_through(checkpoint.applied_seq) {
                tracing::warn!(cause = %err, "could not remove old log segments");
            }
        }
        Ok(None) => {}
        Err(err) => tracing::error!(cause = %err, "checkpoint failed"),
    }
}

/// Replays the log into the engine and returns the log, ready to append,
/// with the checkpoint the engine now holds.
fn recover<E: Engine>(engine: &E, config: &StoreConfig) -> Result<(Wal, Checkpoint), StoreError> {
    let mut checkpoint = engine.checkpoint()?.unwrap_or_default();
    let started = std::time::Instant::now();
    let mut pending: Vec<Change> = Vec::new();
    let mut replayed = 0u64;
    let mut failure: Option<EngineError> = None;
    let wal = Wal::open(
        &config.data_dir.join("wal"),
        checkpoint.applied_seq,
        config.wal_segment_bytes,
        |entry| {
            if failure.is_some() {
                return;
            }
            checkpoint.applied_seq = entry.seq;
            checkpoint.items = checkpoint
                .items
                .saturating_add_signed(entry.accounting.items);
            checkpoint.bytes = checkpoint
                .bytes
                .saturating_add_signed(entry.accounting.bytes);
            match &entry.change {
                Change::Put { record, .. } => {
                    if let Ok(header) = RecordHeader::decode(record) {
                        checkpoint.cas_high = checkpoint.cas_high.max(header.cas);
                        checkpoint.version_high = checkpoint.version_high.max(header.version);
                    }
                }
                Change::Flush(markers) => {
                    checkpoint.flush = *markers;
                    checkpoint.version_high = checkpoint.version_high.max(markers.flushed_through);
                }
                Change::Delete { .. } => {}
            }
            pending.push(entry.change);
            replayed += 1;
            if pending.len() >= 4096 {
                if let Err(err) = engine.apply(&pending, &checkpoint) {
                    failure = Some(err);
                }
                pending.clear();
            }
        },
    )?;
    if let Some(err) = failure {
        return Err(err.into());
    }
    if !pending.is_empty() || replayed > 0 {
        engine.apply(&pending, &checkpoint)?;
        engine.make_durable()?;
        wal.segments()
            .remove_through(checkpoint.applied_seq)
            .map_err(|source| StoreError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        tracing::info!(
            replayed,
            took_ms = started.elapsed().as_millis() as u64,
            "replayed the write-ahead log"
        );
    }
    Ok((wal, checkpoint))
}

/// Finds expired and flushed items and asks the writer to remove them.
///
/// It walks the whole key space in chunks at `keys_per_sec`, and rests
/// between passes unless something may have died: the last pass saw items
/// with an expiry, an item with an expiry was written since, or the flush
/// markers changed. A node without expiring items costs it nothing.
struct Reclaimer<E: Engine> {
    engine: Arc<E>,
    queue: Arc<Queue<Submission>>,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    keys_per_sec: u64,
}

/// What one pass over the key space saw.
#[derive(Default)]
struct Pass {
    /// Live items with an expiry: they will die, so keep walking.
    expiring: u64,
}

impl<E: Engine> Reclaimer<E> {
    const CHUNK: usize = 1000;
    /// How often a resting reclaimer checks whether there is work.
    const REST: Duration = Duration::from_secs(1);

    fn run(self, stopped: &StopSignal) {
        let pause = Duration::from_secs_f64(Self::CHUNK as f64 / self.keys_per_sec as f64);
        let signals = || {
            (
                self.shared.store.expiring_writes.load(Ordering::Relaxed),
                self.shared.flush_markers(),
            )
        };
        // What the last pass started from; after a start nothing is known.
        let mut baseline = signals();
        let mut needed = true;
        loop {
            if needed {
                baseline = signals();
                let Some(pass) = self.pass(stopped, pause) else {
                    return;
                };
                needed = pass.expiring > 0;
            }
            // At most one pass a second, and none while nothing can die.
            if stopped.wait(Self::REST) {
                return;
            }
            needed = needed || signals() != baseline;
        }
    }

    /// One walk over every key; `None` if the store is stopping.
    fn pass(&self, stopped: &StopSignal, pause: Duration) -> Option<Pass> {
        let mut pass = Pass::default();
        let mut cursor: Option<Bytes> = None;
        loop {
            let chunk = match self.engine.scan(cursor.as_deref(), Self::CHUNK) {
                Ok(chunk) => chunk,
                Err(err) => {
                    tracing::error!(cause = %err, "reclaimer scan failed");
                    return Some(pass);
                }
            };
            let now = self.clock.now_secs();
            let flush = self.shared.flush_markers();
            for (key, bytes) in &chunk {
                let Ok(header) = RecordHeader::decode(bytes.as_ref()) else {
                    continue;
                };
                if header.expiry.is_expired(now) || flush.hides(header.version, now) {
                    let (completer, _ignored) = completion();
                    let op = WriteOp::Reclaim {
                        key: key.clone(),
                        version: header.version,
                    };
                    if self.queue.push(Submission { op, completer }).is_err() {
                        return None;
                    }
                    self.shared.store.reclaimed.fetch_add(1, Ordering::Relaxed);
                } else if header.expiry != mcstore_protocol::exptime::Expiry::Never {
                    pass.expiring += 1;
                }
            }
            if chunk.len() < Self::CHUNK {
                return Some(pass);
            }
            cursor = chunk.last().map(|(key, _)| key.clone());
            if stopped.wait(pause) {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod meta_tests;

#[cfg(test)]
mod meta_newer_tests;
