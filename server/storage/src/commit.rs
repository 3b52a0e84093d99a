//! The commit pipeline: group commit on one thread.
//!
//! One thread owns the write-ahead log. It takes everything queued (up to
//! `max_batch` operations), evaluates each in queue order over a
//! [`Txn`] (the engine plus this batch's earlier changes; the semantics are
//! in [`crate::ops`]), appends the resulting changes to the log, makes them
//! durable with one `fdatasync` (`--sync always`), publishes them to the
//! change stream, applies them to the engine (only now can readers see
//! them) and answers every operation of the batch. Because conditional
//! commands are evaluated here, in queue order, each key is linearizable:
//! of racing clients, exactly one wins a token.
//!
//! A failed `fdatasync` or engine write is never acknowledged: the batch is
//! answered with the error and the pipeline refuses all later writes until
//! the node is restarted (after a failed fsync the page cache state is
//! unknown; replaying the log on start is the only safe recovery).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::config::{ItemRules, SyncMode};
use crate::engine::{Checkpoint, Engine};
use crate::error::WriteError;
use crate::flush::FlushState;
use crate::handoff::{Completer, Queue, Taken};
use crate::ops::{self, Operation, Outcome};
use crate::stats::StorageStats;
use crate::txn::{cas_sequence, cas_unique, Batch, Counters, Txn, MAX_CAS_SEQUENCE};
use crate::version::{HybridClock, NodeId};
use crate::wal::Wal;

/// What the pipeline answers an operation: its outcome and, if it changed
/// anything, the change-stream sequence of its last change (what a caller
/// waits for to know a replica has the write).
pub type Answer = (Outcome, Option<u64>);

/// An operation with its reply channel.
pub struct Submission {
    /// The operation.
    pub op: Operation,
    /// Where the answer goes.
    pub completer: Completer<Answer>,
}

/// What the pipeline needs to know about the node's configuration.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    /// When to fdatasync.
    pub sync: SyncMode,
    /// For `SyncMode::Periodic`.
    pub sync_interval: Duration,
    /// Most operations in one group commit.
    pub max_batch: usize,
    /// Item size and counter rules.
    pub rules: ItemRules,
    /// How far ahead a remote timestamp may be.
    pub max_clock_skew: Duration,
}

/// The pipeline thread's state.
pub struct CommitPipeline {
    engine: Arc<dyn Engine>,
    wal: Wal,
    stats: Arc<StorageStats>,
    flush: Arc<FlushState>,
    wall: Arc<dyn Clock>,
    config: PipelineConfig,
    checkpoint: Checkpoint,
    counters: Counters,
    batch: Batch,
    failure: Option<WriteError>,
    last_sync: Instant,
}

impl CommitPipeline {
    /// A pipeline continuing from `checkpoint` (as recovered) with `wal`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Arc<dyn Engine>,
        wal: Wal,
        stats: Arc<StorageStats>,
        flush: Arc<FlushState>,
        wall: Arc<dyn Clock>,
        node: NodeId,
        config: PipelineConfig,
        checkpoint: Checkpoint,
    ) -> CommitPipeline {
        // Uniques never repeat: continue past the highest one ever logged,
        // and past the wall clock (in 16 µs steps, which leaves room for the
        // node's slot bits), so that even writes lost to power loss in the
        // weaker sync modes cannot be reissued.
        let next_cas = (cas_sequence(checkpoint.cas_high) + 1)
            .max(wall.now_nanos() / 16_000)
            .min(MAX_CAS_SEQUENCE);
        let clock = HybridClock::new(wall.clone(), checkpoint.clock_high, config.max_clock_skew);
        CommitPipeline {
            engine,
            wal,
            stats,
            flush,
            wall,
            config,
            checkpoint,
            counters: Counters {
                next_cas,
                clock,
                node,
                flush: checkpoint.flush,
            },
            batch: Batch::default(),
            failure: None,
            last_sync: Instant::now(),
        }
    }

    /// Serves the queue until it is closed and drained, then makes the log
    /// durable.
    pub fn run(mut self, queue: &Queue<Submission>) {
        let mut submissions = Vec::with_capacity(self.config.max_batch);
        let idle = match self.config.sync {
            SyncMode::Periodic => Some(self.config.sync_interval),
            _ => Some(Duration::from_secs(1)),
        };
        loop {
            match queue.take_batch(self.config.max_batch, &mut submissions, idle) {
                Taken::Items => self.commit(&mut submissions),
                Taken::Idle => {}
                Taken::Closed => break,
            }
            self.maybe_periodic_sync();
        }
        if let Err(err) = self.wal.sync() {
            tracing::error!(cause = %err, "final write-ahead log sync failed");
        }
    }

    fn maybe_periodic_sync(&mut self) {
        if self.config.sync != SyncMode::Periodic
            || !self.wal.has_unsynced()
            || self.last_sync.elapsed() < self.config.sync_interval
        {
            return;
        }
        // A failure is remembered and refuses later writes.
        let _ = self.sync_log();
    }

    fn sync_log(&mut self) -> Result<(), WriteError> {
        let started = Instant::now();
        let result = self.wal.sync();
        self.last_sync = Instant::now();
        self.stats.record_fsync(started.elapsed());
        result.map_err(|err| {
            tracing::error!(cause = %err, "fdatasync of the write-ahead log failed; refusing writes until restart");
            let failure = WriteError::LogSync(Arc::new(err));
            self.failure = Some(failure.clone());
            failure
        })
    }

    /// Evaluates, logs, syncs, applies and answers one batch.
    fn commit(&mut self, submissions: &mut Vec<Submission>) {
        if let Some(failure) = &self.failure {
            let refusal = WriteError::Refusing(Box::new(failure.clone()));
            for submission in submissions.drain(..) {
                submission
                    .completer
                    .complete((Outcome::Failed(refusal.clone()), None));
            }
            return;
        }
        self.batch.clear();
        let now = self.wall.now_secs();
        let mut outcomes = Vec::with_capacity(submissions.len());
        // How many changes the batch held after each operation.
        let mut changes_after = Vec::with_capacity(submissions.len());
        for submission in submissions.iter() {
            let mut txn = Txn {
                engine: &*self.engine,
                stats: &self.stats,
                counters: &mut self.counters,
                batch: &mut self.batch,
                rules: &self.config.rules,
                now,
            };
            let outcome = ops::evaluate(&submission.op, &mut txn).unwrap_or_else(Outcome::Failed);
            outcomes.push(outcome);
            changes_after.push(self.batch.changes.len());
        }
        let mut first_seq = 0;
        if !self.batch.is_empty() {
            match self.persist() {
                Ok(last_seq) => first_seq = last_seq + 1 - self.batch.changes.len() as u64,
                Err(failure) => {
                    self.failure = Some(failure.clone());
                    for submission in submissions.drain(..) {
                        submission
                            .completer
                            .complete((Outcome::Failed(failure.clone()), None));
                    }
                    return;
                }
            }
        }
        self.stats.record_batch(submissions.len());
        let mut changes_before = 0;
        let answers = outcomes.into_iter().zip(changes_after);
        for (submission, (outcome, changes)) in submissions.drain(..).zip(answers) {
            let seq = (changes > changes_before).then(|| first_seq + changes as u64 - 1);
            changes_before = changes;
            submission.completer.complete((outcome, seq));
        }
    }

    /// Logs, syncs, publishes and applies the batch; returns its last
    /// sequence.
    fn persist(&mut self) -> Result<u64, WriteError> {
        let batch = &self.batch;
        let entries = batch
            .changes
            .iter()
            .zip(batch.accounting.iter().copied())
            .zip(batch.provenances.iter().copied())
            .map(|((change, accounting), provenance)| (change, accounting, provenance));
        let last_seq = self
            .wal
            .append(entries)
            .map_err(|err| WriteError::LogAppend(Arc::new(err)))?;
        if self.config.sync == SyncMode::Always {
            self.sync_log()?;
        }
        self.wal.publish(last_seq);
        let mut checkpoint = self.checkpoint;
        for accounting in &self.batch.accounting {
            checkpoint.items = checkpoint.items.saturating_add_signed(accounting.items);
            checkpoint.bytes = checkpoint.bytes.saturating_add_signed(accounting.bytes);
            checkpoint.tombstones = checkpoint
                .tombstones
                .saturating_add_signed(accounting.tombstones);
        }
        checkpoint.applied_seq = last_seq;
        checkpoint.cas_high = checkpoint
            .cas_high
            .max(cas_unique(self.counters.next_cas - 1, self.counters.node));
        checkpoint.clock_high = self.counters.clock.last();
        if let Some(flush) = self.batch.flush {
            checkpoint.flush = flush;
            self.counters.flush = flush;
        }
        self.engine
            .apply(&self.batch.changes, &checkpoint)
            .map_err(|err| WriteError::EngineWrite(Arc::new(err)))?;
        self.checkpoint = checkpoint;
        self.stats.publish(&checkpoint);
        self.stats
            .expiring_writes
            .fetch_add(self.batch.expiring_writes, Ordering::Relaxed);
        self.flush.set(checkpoint.flush);
        Ok(last_seq)
    }
}
