//! The background threads: the checkpointer and the reclaimer.
//!
//! - The checkpointer makes the engine durable (with real fsyncs) every
//!   checkpoint interval, drops the log segments nothing needs any more
//!   (see [`crate::wal::cursors::retain`]) and writes the cursors durably;
//!   when more than `engine_replay_bytes` were applied since the engine last
//!   shortened its own recovery, it has it do so.
//! - The reclaimer walks the key space at a bounded rate and asks the
//!   commit pipeline to reclaim expired and flushed items and to purge
//!   tombstones past their grace period. It rests while nothing can have
//!   died: no item with an expiry was seen or written, no tombstone was
//!   added, the flush markers did not change and no tombstone is due.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::clock::Clock;
use crate::commit::Submission;
use crate::engine::Engine;
use crate::expiry::Expiry;
use crate::flush::FlushState;
use crate::handoff::{completion, Queue};
use crate::ops::Operation;
use crate::record::RecordHeader;
use crate::stats::StorageStats;
use crate::wal::cursors::{retain, Cursors};
use crate::wal::Segments;

/// Tells the background threads to stop, waking them from their sleep.
#[derive(Default)]
pub struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    /// Asks every waiting thread to stop.
    pub fn stop(&self) {
        *self.stopped.lock().expect("stop lock") = true;
        self.wake.notify_all();
    }

    /// Sleeps for `interval`; true if the store is stopping.
    pub fn wait(&self, interval: Duration) -> bool {
        let stopped = self.stopped.lock().expect("stop lock");
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, interval, |stopped| !*stopped)
            .expect("stop lock");
        *stopped
    }
}

/// The checkpointer's view of the store.
pub struct Checkpointer {
    /// The engine.
    pub engine: Arc<dyn Engine>,
    /// The log's segments.
    pub segments: Segments,
    /// The change-stream cursors.
    pub cursors: Arc<Cursors>,
    /// Counters.
    pub stats: Arc<StorageStats>,
    /// Log kept for lagging cursors at most.
    pub retention_bytes: u64,
    /// Backlog at which the engine shortens its recovery (0: never here).
    pub engine_replay_bytes: u64,
}

impl Checkpointer {
    /// Makes the engine durable, drops the log nothing needs, and persists
    /// the cursors.
    pub fn checkpoint(&self) {
        match self.engine.make_durable() {
            Ok(Some(checkpoint)) => {
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                if let Err(err) = retain(
                    &self.segments,
                    &self.cursors,
                    checkpoint.applied_seq,
                    self.retention_bytes,
                ) {
                    tracing::warn!(cause = %err, "could not remove old log segments");
                }
            }
            Ok(None) => {}
            Err(err) => tracing::error!(cause = %err, "checkpoint failed"),
        }
        if let Err(err) = self.cursors.persist() {
            tracing::warn!(cause = %err, "could not write the change-stream cursors");
        }
        if self.engine_replay_bytes > 0
            && self.engine.recovery_backlog() >= self.engine_replay_bytes
        {
            self.shorten_recovery();
        }
    }

    /// Has the engine shorten its own recovery, and says how long it took.
    pub fn shorten_recovery(&self) {
        let backlog = self.engine.recovery_backlog();
        let started = Instant::now();
        match self.engine.shorten_recovery() {
            Ok(()) => {
                self.stats
                    .recoveries_shortened
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    engine = self.engine.name(),
                    backlog_mib = backlog >> 20,
                    took_ms = started.elapsed().as_millis() as u64,
                    "shortened the engine's recovery"
                );
            }
            Err(err) => tracing::error!(cause = %err, "shortening the engine's recovery failed"),
        }
    }

    /// Checkpoints every `interval` until stopped.
    pub fn run(self, interval: Duration, stopped: &StopSignal) {
        while !stopped.wait(interval) {
            self.checkpoint();
        }
    }
}

/// Finds dead items and old tombstones and asks the commit pipeline to
/// remove them.
pub struct Reclaimer {
    /// The engine.
    pub engine: Arc<dyn Engine>,
    /// The commit pipeline's queue.
    pub queue: Arc<Queue<Submission>>,
    /// Counters.
    pub stats: Arc<StorageStats>,
    /// The flush markers.
    pub flush: Arc<FlushState>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Keys examined per second.
    pub keys_per_sec: u64,
    /// How long tombstones are kept.
    pub tombstone_grace: Duration,
}

/// What one pass over the key space saw.
#[derive(Default)]
struct Pass {
    /// Live items with an expiry: they will die, so keep walking.
    expiring: u64,
    /// When the oldest tombstone kept becomes due for purging (unix ms).
    next_purge_ms: Option<u64>,
}

impl Reclaimer {
    const CHUNK: usize = 1000;
    /// How often a resting reclaimer checks whether there is work.
    const REST: Duration = Duration::from_secs(1);

    /// Walks the key space whenever something may have died, until stopped.
    pub fn run(self, stopped: &StopSignal) {
        let pause = Duration::from_secs_f64(Self::CHUNK as f64 / self.keys_per_sec as f64);
        let signals = || {
            (
                self.stats.expiring_writes.load(Ordering::Relaxed),
                self.stats.tombstones.load(Ordering::Relaxed),
                self.flush.get(),
            )
        };
        // What the last pass started from; after a start nothing is known.
        let mut baseline = signals();
        let mut needed = true;
        let mut next_purge_ms: Option<u64> = None;
        loop {
            if needed {
                baseline = signals();
                let Some(pass) = self.pass(stopped, pause) else {
                    return;
                };
                needed = pass.expiring > 0;
                next_purge_ms = pass.next_purge_ms;
            }
            // At most one pass a second, and none while nothing can die.
            if stopped.wait(Self::REST) {
                return;
            }
            let purge_due = next_purge_ms.is_some_and(|due| due <= self.clock.now_millis());
            // New tombstones may carry old versions (an expired item's, a
            // replica's): learn their due times with a pass.
            let now = signals();
            needed = needed
                || purge_due
                || now.0 != baseline.0
                || now.1 > baseline.1
                || now.2 != baseline.2;
        }
    }

    fn submit(&self, op: Operation) -> bool {
        let (completer, _ignored) = completion();
        self.queue.push(Submission { op, completer }).is_ok()
    }

    /// One walk over every key; `None` if the store is stopping.
    fn pass(&self, stopped: &StopSignal, pause: Duration) -> Option<Pass> {
        let mut pass = Pass::default();
        let mut cursor: Option<Bytes> = None;
        let grace_ms = self.tombstone_grace.as_millis() as u64;
        loop {
            let chunk = match self.engine.scan(cursor.as_deref(), Self::CHUNK) {
                Ok(chunk) => chunk,
                Err(err) => {
                    tracing::error!(cause = %err, "reclaimer scan failed");
                    return Some(pass);
                }
            };
            let now = self.clock.now_secs();
            let now_ms = self.clock.now_millis();
            let flush = self.flush.get();
            for (key, bytes) in &chunk {
                let Ok(header) = RecordHeader::decode(bytes) else {
                    continue;
                };
                if header.is_tombstone() {
                    let due = header.version.timestamp.millis().saturating_add(grace_ms);
                    if due <= now_ms {
                        let op = Operation::Purge {
                            key: key.clone(),
                            version: header.version,
                        };
                        if !self.submit(op) {
                            return None;
                        }
                        self.stats.purged.fetch_add(1, Ordering::Relaxed);
                    } else {
                        pass.next_purge_ms = Some(pass.next_purge_ms.map_or(due, |d| d.min(due)));
                    }
                } else if header.expiry.is_expired(now) || flush.hides(header.version, now) {
                    let op = Operation::Reclaim {
                        key: key.clone(),
                        version: header.version,
                    };
                    if !self.submit(op) {
                        return None;
                    }
                    self.stats.reclaimed.fetch_add(1, Ordering::Relaxed);
                } else if header.expiry != Expiry::Never {
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
