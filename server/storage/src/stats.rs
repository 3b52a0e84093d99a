//! What the storage layer counts: group commit, fsyncs, checkpoints,
//! housekeeping, applied records, and the item counts the commit pipeline
//! publishes after each batch (`stats`, `stats store`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::engine::Checkpoint;
use crate::record::CorruptRecord;
use crate::version::ClockSkew;

/// The storage layer's figures.
#[derive(Debug)]
pub struct StorageStats {
    /// Group commits with at least one operation.
    pub batches: AtomicU64,
    /// Operations in them.
    pub batched_ops: AtomicU64,
    /// The largest batch.
    pub max_batch: AtomicU64,
    batch_ops: Mutex<Histogram<u64>>,
    /// `fdatasync` calls of the log.
    pub fsyncs: AtomicU64,
    fsync_latency_us: Mutex<Histogram<u64>>,
    /// Checkpoints made durable.
    pub checkpoints: AtomicU64,
    /// Times the engine shortened its own recovery (sled reopened itself).
    pub recoveries_shortened: AtomicU64,
    /// Dead items removed by the reclaimer.
    pub reclaimed: AtomicU64,
    /// Tombstones purged after their grace period.
    pub purged: AtomicU64,
    /// Items written with an expiry (tells the reclaimer there may be work).
    pub expiring_writes: AtomicU64,
    /// Records that failed their checksum.
    pub corrupt_records: AtomicU64,
    /// Records from other nodes kept.
    pub applied: AtomicU64,
    /// Records from other nodes not newer than what was stored.
    pub applied_stale: AtomicU64,
    /// Records from other nodes refused: their clock was too far ahead.
    pub clock_skew_refused: AtomicU64,
    /// Item records stored (published after each commit).
    pub items: AtomicU64,
    /// Accounted bytes of item records (published after each commit).
    pub bytes: AtomicU64,
    /// Tombstones stored (published after each commit).
    pub tombstones: AtomicU64,
    /// The last change-stream sequence the engine holds (published after
    /// each commit; the stream's published sequence may be ahead of it).
    pub applied_seq: AtomicU64,
}

impl Default for StorageStats {
    fn default() -> Self {
        StorageStats {
            batches: AtomicU64::new(0),
            batched_ops: AtomicU64::new(0),
            max_batch: AtomicU64::new(0),
            batch_ops: Mutex::new(
                Histogram::new_with_bounds(1, 1 << 24, 3).expect("valid histogram bounds"),
            ),
            fsyncs: AtomicU64::new(0),
            fsync_latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            ),
            checkpoints: AtomicU64::new(0),
            recoveries_shortened: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            purged: AtomicU64::new(0),
            expiring_writes: AtomicU64::new(0),
            corrupt_records: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            applied_seq: AtomicU64::new(0),
            applied_stale: AtomicU64::new(0),
            clock_skew_refused: AtomicU64::new(0),
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            tombstones: AtomicU64::new(0),
        }
    }
}

impl StorageStats {
    /// Counts one group commit of `ops` operations.
    pub fn record_batch(&self, ops: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_ops.fetch_add(ops as u64, Ordering::Relaxed);
        self.max_batch.fetch_max(ops as u64, Ordering::Relaxed);
        if let Ok(mut histogram) = self.batch_ops.lock() {
            let _ = histogram.record((ops as u64).clamp(1, 1 << 24));
        }
    }

    /// Counts one fdatasync that took `took`.
    pub fn record_fsync(&self, took: Duration) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let micros = (took.as_micros() as u64).clamp(1, 60_000_000);
        if let Ok(mut histogram) = self.fsync_latency_us.lock() {
            let _ = histogram.record(micros);
        }
    }

    /// fsync latency percentiles in microseconds: p50, p90, p99, p999, max.
    pub fn fsync_percentiles(&self) -> [(&'static str, u64); 5] {
        let histogram = self.fsync_latency_us.lock().expect("histogram lock");
        [
            ("fsync_p50_us", histogram.value_at_quantile(0.5)),
            ("fsync_p90_us", histogram.value_at_quantile(0.9)),
            ("fsync_p99_us", histogram.value_at_quantile(0.99)),
            ("fsync_p999_us", histogram.value_at_quantile(0.999)),
            ("fsync_max_us", histogram.max()),
        ]
    }

    /// fsync latencies as cumulative counts at each bound (microseconds),
    /// for a Prometheus histogram.
    pub fn fsync_buckets(&self, bounds_us: &[u64]) -> HistogramSnapshot {
        let histogram = self.fsync_latency_us.lock().expect("histogram lock");
        HistogramSnapshot::of(&histogram, bounds_us)
    }

    /// Operations per group commit as cumulative counts at each bound.
    pub fn batch_buckets(&self, bounds: &[u64]) -> HistogramSnapshot {
        let histogram = self.batch_ops.lock().expect("histogram lock");
        HistogramSnapshot::of(&histogram, bounds)
    }

    /// Counts and logs a record that failed its checksum.
    pub fn note_corrupt_record(&self, key: &[u8], err: &CorruptRecord) {
        self.corrupt_records.fetch_add(1, Ordering::Relaxed);
        tracing::error!(key_len = key.len(), cause = %err, "corrupt record");
    }

    /// Counts and logs a remote record refused for its clock.
    pub fn note_clock_skew(&self, skew: &ClockSkew) {
        self.clock_skew_refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(cause = %skew, "refused a record from a node whose clock is too far ahead");
    }

    /// The counts as of a recovered or committed checkpoint.
    pub fn publish(&self, checkpoint: &Checkpoint) {
        self.items.store(checkpoint.items, Ordering::Relaxed);
        self.bytes.store(checkpoint.bytes, Ordering::Relaxed);
        self.tombstones
            .store(checkpoint.tombstones, Ordering::Relaxed);
        self.applied_seq
            .store(checkpoint.applied_seq, Ordering::Release);
    }
}

/// A histogram read out for an exposition format: how many values were at
/// most each bound, how many in all, and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(bound, values <= bound)`, bounds ascending.
    pub buckets: Vec<(u64, u64)>,
    /// Values recorded.
    pub count: u64,
    /// Their sum (each value as its bucket's representative value, within
    /// the histogram's 3 significant digits).
    pub sum: u64,
}

impl HistogramSnapshot {
    fn of(histogram: &Histogram<u64>, bounds: &[u64]) -> HistogramSnapshot {
        let buckets = bounds
            .iter()
            .map(|&bound| {
                let below = if bound == 0 {
                    0
                } else {
                    histogram.count_between(0, bound)
                };
                (bound, below)
            })
            .collect();
        let sum = histogram
            .iter_recorded()
            .map(|v| histogram.median_equivalent(v.value_iterated_to()) * v.count_at_value())
            .sum();
        HistogramSnapshot {
            buckets,
            count: histogram.len(),
            sum,
        }
    }
}
