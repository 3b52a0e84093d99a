//! The store: one node's data, opened from a data directory.
//!
//! [`Store::open`] locks the directory, checks which engine made it, reads
//! the node id, opens the engine,
//! replays the write-ahead log past the engine's checkpoint and starts three
//! threads: the commit pipeline, the checkpointer and the reclaimer. Reads
//! go to the engine (through its cache of hot records); writes go through [`Store::enqueue`] to the
//! pipeline; the change stream is read with [`Store::follow`] and the named
//! cursors.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::background::{Checkpointer, Reclaimer, StopSignal};
use crate::clock::Clock;
use crate::commit::{Answer, CommitPipeline, PipelineConfig, Submission};
use crate::config::StoreConfig;
use crate::datadir::{self, DataDirLock};
use crate::engine::{self, Engine};
use crate::error::{ReadError, StoreError, WriteError};
use crate::flush::{FlushMarkers, FlushState};
use crate::handoff::{completion, Abandoned, Completion, Queue};
use crate::ops::{Operation, Outcome};
use crate::record::Record;
use crate::recovery::recover;
use crate::stats::StorageStats;
use crate::version::NodeId;
use crate::wal::cursors::{CursorState, Cursors};
use crate::wal::stream::{ChangeReader, StreamError};
use crate::wal::Segments;

/// Below this backlog a shutdown leaves the engine's recovery as it is
/// (replaying that little costs less than shortening it).
const SHUTDOWN_REPLAY_BYTES: u64 = 4 * 1024 * 1024;

/// What a read found under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A live item.
    Hit(Record),
    /// Nothing stored, or a tombstone.
    Miss,
    /// An item that has expired (invisible; reclaimed later).
    Expired,
    /// An item hidden by `flush_all` (invisible; reclaimed later).
    Flushed,
}

/// One page of [`Store::scan_live`].
#[derive(Debug, Default)]
pub struct ScanPage {
    /// The live items, in key order.
    pub items: Vec<(Bytes, Record)>,
    /// The last key examined when more may follow (start the next page
    /// after it); `None` when the scan is complete.
    pub next: Option<Bytes>,
}

/// A write handed to the commit pipeline; await [`PendingWrite::outcome`].
pub struct PendingWrite {
    completion: Completion<Answer>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl PendingWrite {
    /// The pipeline's answer.
    pub async fn outcome(self) -> Outcome {
        self.outcome_and_seq().await.0
    }

    /// The pipeline's answer and the change-stream sequence of the write's
    /// last change, if it changed anything.
    pub async fn outcome_and_seq(self) -> Answer {
        match self.completion.await {
            Ok(answer) => answer,
            Err(Abandoned) => (Outcome::Failed(WriteError::ShuttingDown), None),
        }
    }
}

/// An open store.
pub struct Store {
    engine: Arc<dyn Engine>,
    queue: Arc<Queue<Submission>>,
    stats: Arc<StorageStats>,
    flush: Arc<FlushState>,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    node: NodeId,
    segments: Segments,
    published: watch::Receiver<u64>,
    cursors: Arc<Cursors>,
    write_permits: Arc<Semaphore>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pipeline_thread: Mutex<Option<JoinHandle<()>>>,
    stop_background: Arc<StopSignal>,
    _lock: DataDirLock,
}

impl Store {
    /// Opens the store in `config.data_dir` with `config.engine`, which
    /// must be the engine the directory was made with.
    pub fn open(config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let lock = DataDirLock::acquire(&config.data_dir)?;
        datadir::check_engine(&config.data_dir, config.engine)?;
        let started = std::time::Instant::now();
        let engine = engine::open(config.engine, &config.data_dir, config.cache_bytes)?;
        tracing::info!(
            engine = engine.name(),
            took_ms = started.elapsed().as_millis() as u64,
            "engine open"
        );
        Store::with_engine(config, clock, engine, lock)
    }

    fn with_engine(
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        engine: Arc<dyn Engine>,
        lock: DataDirLock,
    ) -> Result<Store, StoreError> {
        let node = datadir::node_id(&config.data_dir)?;
        let wal_dir = config.data_dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(|source| StoreError::DataDir {
            path: wal_dir.clone(),
            source,
        })?;
        let cursors = Arc::new(
            Cursors::load(&wal_dir).map_err(|source| StoreError::DataDir {
                path: wal_dir.clone(),
                source,
            })?,
        );
        let (wal, checkpoint) = recover(&*engine, &config, &cursors)?;
        let stats = Arc::new(StorageStats::default());
        stats.publish(&checkpoint);
        let flush = Arc::new(FlushState::default());
        flush.set(checkpoint.flush);
        let segments = wal.segments();
        let published = wal.published();
        let queue = Arc::new(Queue::default());
        let pipeline = CommitPipeline::new(
            engine.clone(),
            wal,
            stats.clone(),
            flush.clone(),
            clock.clone(),
            node,
            PipelineConfig {
                sync: config.sync,
                sync_interval: config.sync_interval,
                max_batch: config.max_batch,
                rules: config.rules,
                max_clock_skew: config.max_clock_skew,
            },
            checkpoint,
        );
        let pipeline_thread = {
            let queue = queue.clone();
            spawn("mcstore-commit", move || pipeline.run(&queue))?
        };
        let store = Store {
            engine,
            queue,
            stats,
            flush,
            clock,
            write_permits: Arc::new(Semaphore::new(config.max_pending_writes)),
            node,
            segments,
            published,
            cursors,
            threads: Mutex::new(Vec::new()),
            pipeline_thread: Mutex::new(Some(pipeline_thread)),
            stop_background: Arc::new(StopSignal::default()),
            config,
            _lock: lock,
        };
        store.start_background()?;
        Ok(store)
    }

    fn checkpointer(&self) -> Checkpointer {
        Checkpointer {
            engine: self.engine.clone(),
            segments: self.segments.clone(),
            cursors: self.cursors.clone(),
            stats: self.stats.clone(),
            retention_bytes: self.config.wal_retention_bytes,
            engine_replay_bytes: self.config.engine_replay_bytes,
        }
    }

    fn start_background(&self) -> Result<(), StoreError> {
        let mut threads = self.threads.lock().expect("threads lock");
        let checkpointer = self.checkpointer();
        let interval = self.config.checkpoint_interval;
        let stopped = self.stop_background.clone();
        threads.push(spawn("mcstore-checkpoint", move || {
            checkpointer.run(interval, &stopped)
        })?);
        if self.config.reclaim_keys_per_sec > 0 {
            let reclaimer = Reclaimer {
                engine: self.engine.clone(),
                queue: self.queue.clone(),
                stats: self.stats.clone(),
                flush: self.flush.clone(),
                clock: self.clock.clone(),
                keys_per_sec: self.config.reclaim_keys_per_sec,
                tombstone_grace: self.config.tombstone_grace,
            };
            let stopped = self.stop_background.clone();
            threads.push(spawn("mcstore-reclaim", move || reclaimer.run(&stopped))?);
        }
        Ok(())
    }

    /// Reads a key.
    pub fn get(&self, key: &[u8]) -> Result<Lookup, ReadError> {
        let Some(record) = self.get_record(key)? else {
            return Ok(Lookup::Miss);
        };
        if record.is_tombstone() {
            return Ok(Lookup::Miss);
        }
        let now = self.clock.now_secs();
        if self.flush.get().hides(record.version, now) {
            return Ok(Lookup::Flushed);
        }
        if record.expiry.is_expired(now) {
            return Ok(Lookup::Expired);
        }
        Ok(Lookup::Hit(record))
    }

    /// What a key holds as stored: an item (live or not) or a tombstone.
    pub fn get_record(&self, key: &[u8]) -> Result<Option<Record>, ReadError> {
        let Some(bytes) = self.engine.get(key)? else {
            return Ok(None);
        };
        let record = Record::decode(key, &bytes).inspect_err(|err| {
            self.stats.note_corrupt_record(key, err);
        })?;
        Ok(Some(record))
    }

    /// Up to `limit` stored records (items and tombstones) with keys after
    /// `after`, in key order; unreadable ones are counted and skipped.
    pub fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Record)>, ReadError> {
        let mut out = Vec::new();
        for (key, bytes) in self.engine.scan(after, limit)? {
            match Record::decode(&key, &bytes) {
                Ok(record) => out.push((key, record)),
                Err(err) => self.stats.note_corrupt_record(&key, &err),
            }
        }
        Ok(out)
    }

    /// A page of the live items stored, for listing them: examines up to
    /// `limit` stored records with keys after `after`, in key order, and
    /// keeps the items a `get` would return (no tombstone, expired or
    /// flushed item); stops early once the kept values hold `max_bytes`
    /// (after at least one item). [`ScanPage::next`] is where the next page
    /// starts, `None` when no key is left.
    pub fn scan_live(
        &self,
        after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage, ReadError> {
        let records = self.scan(after, limit)?;
        let examined_all = records.len() < limit;
        let now = self.clock.now_secs();
        let flush = self.flush.get();
        let mut page = ScanPage::default();
        let mut bytes = 0;
        let mut last = None;
        for (key, record) in records {
            last = Some(key.clone());
            if record.is_tombstone()
                || flush.hides(record.version, now)
                || record.expiry.is_expired(now)
            {
                continue;
            }
            bytes += record.value.len();
            page.items.push((key, record));
            if bytes >= max_bytes {
                page.next = last;
                return Ok(page);
            }
        }
        page.next = if examined_all { None } else { last };
        Ok(page)
    }

    /// Hands a write to the commit pipeline, waiting for room if too many
    /// are in flight. Await the result's [`PendingWrite::outcome`].
    pub async fn enqueue(&self, op: Operation) -> PendingWrite {
        let permit = self.write_permits.clone().acquire_owned().await.ok();
        let (completer, completion) = completion();
        // A refused push drops the completer: the outcome reports shutdown.
        let _ = self.queue.push(Submission { op, completer });
        PendingWrite {
            completion,
            _permit: permit,
        }
    }

    /// Hands a write to the commit pipeline and waits for its outcome.
    pub async fn execute(&self, op: Operation) -> Outcome {
        self.enqueue(op).await.outcome().await
    }

    /// The store's unix time in seconds.
    pub fn now_secs(&self) -> u64 {
        self.clock.now_secs()
    }

    /// The store's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The storage layer's figures.
    pub fn stats(&self) -> &Arc<StorageStats> {
        &self.stats
    }

    /// The flush markers in force.
    pub fn flush_markers(&self) -> FlushMarkers {
        self.flush.get()
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The engine's name and version.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// The hit counts of the cache of hot records in front of the engine.
    pub fn record_cache_stats(&self) -> Option<crate::engine::cache::CacheStats> {
        self.engine.cache_stats()
    }

    /// Bytes used on disk by the engine and the log.
    pub fn disk_bytes(&self) -> (u64, u64) {
        (self.engine.disk_bytes(), self.segments.disk_bytes())
    }

    /// The last sequence of the change stream that readers may read.
    pub fn published_seq(&self) -> u64 {
        *self.published.borrow()
    }

    /// The last change-stream sequence the engine holds: every change up to
    /// it is visible to reads and scans (the published sequence may be
    /// ahead, for changes logged but not yet applied).
    pub fn applied_seq(&self) -> u64 {
        self.stats
            .applied_seq
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// A reader of the change stream from after `after_seq`.
    pub fn follow(&self, after_seq: u64) -> ChangeReader {
        ChangeReader::new(self.segments.clone(), self.published.clone(), after_seq)
    }

    /// Registers a named cursor at the current end of the change stream,
    /// unless it exists; returns its state. A new cursor is written durably
    /// before this returns, so the log is kept for it even across a crash.
    pub fn register_cursor(&self, name: &str) -> Result<CursorState, StreamError> {
        let state = self.cursors.register(name, self.published_seq())?;
        self.cursors.persist().map_err(|source| StreamError::Io {
            path: self.config.data_dir.join("wal").join("cursors"),
            source,
        })?;
        Ok(state)
    }

    /// A reader of the change stream from after the named cursor's position.
    pub fn follow_cursor(&self, name: &str) -> Result<ChangeReader, StreamError> {
        let state = self
            .cursors
            .get(name)
            .ok_or_else(|| StreamError::UnknownCursor(name.to_string()))?;
        if state.fell_behind {
            return Err(StreamError::CursorFellBehind(name.to_string()));
        }
        Ok(self.follow(state.position))
    }

    /// Records that the named cursor's consumer has everything through `seq`.
    pub fn advance_cursor(&self, name: &str, seq: u64) -> Result<(), StreamError> {
        self.cursors.advance(name, seq)
    }

    /// Restarts a fallen-behind cursor at `seq` (after a full resync).
    pub fn reset_cursor(&self, name: &str, seq: u64) -> Result<(), StreamError> {
        self.cursors.reset(name, seq)
    }

    /// Forgets a cursor: the log is no longer kept for it.
    pub fn remove_cursor(&self, name: &str) {
        self.cursors.remove(name);
    }

    /// Every cursor and its state.
    pub fn cursors(&self) -> Vec<(String, CursorState)> {
        self.cursors.snapshot()
    }

    /// Makes the engine durable and drops the log it covers now, as the
    /// checkpointer does on its schedule.
    pub fn checkpoint_now(&self) {
        self.checkpointer().checkpoint();
    }

    /// Stops taking writes, lets the pipeline finish and sync everything
    /// queued, makes the engine durable and drops the log it covers, and
    /// has the engine shorten its own recovery so that the next start is
    /// quick.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.stop_threads();
        self.engine.make_durable()?;
        self.checkpoint_now();
        if self.engine.recovery_backlog() >= SHUTDOWN_REPLAY_BYTES {
            self.checkpointer().shorten_recovery();
        }
        Ok(())
    }

    /// Stops the pipeline (after it answers everything queued) and the
    /// background threads, without making the engine durable.
    fn stop_threads(&self) {
        self.queue.close();
        if let Some(pipeline) = self.pipeline_thread.lock().expect("pipeline lock").take() {
            let _ = pipeline.join();
        }
        self.stop_background.stop();
        for thread in self.threads.lock().expect("threads lock").drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn spawn(
    name: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|source| StoreError::Thread {
            thread: name,
            source,
        })
}

#[cfg(test)]
mod tests;
