//! Counters shared by connections, the writer and `stats`.
//!
//! Command counters are plain atomics bumped by whoever sees the event; the
//! item counts and flush markers are published by the writer after each
//! commit; the storage figures (`stats store`) are kept by the writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::access::AccessTable;
use crate::engine::Checkpoint;
use crate::flush::FlushMarkers;
use crate::record::CorruptRecord;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// memcached's resettable command counters.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Name and value of every counter, in memcached's order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }

            /// Zeroes every counter (`stats reset`).
            pub fn reset(&self) {
                $(self.$name.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

counters! {
    /// Get requests (per key).
    cmd_get,
    /// Storage commands.
    cmd_set,
    /// flush_all commands.
    cmd_flush,
    /// touch commands and gat keys.
    cmd_touch,
    /// Keys found by get.
    get_hits,
    /// Keys not found by get.
    get_misses,
    /// Keys found expired by get.
    get_expired,
    /// Keys found flushed by get.
    get_flushed,
    /// delete of an absent key.
    delete_misses,
    /// delete of a present key.
    delete_hits,
    /// incr of an absent key.
    incr_misses,
    /// incr of a present key.
    incr_hits,
    /// decr of an absent key.
    decr_misses,
    /// decr of a present key.
    decr_hits,
    /// cas of an absent key.
    cas_misses,
    /// cas that stored.
    cas_hits,
    /// cas with a stale unique.
    cas_badval,
    /// touch of a present key.
    touch_hits,
    /// touch of an absent key.
    touch_misses,
    /// Storage commands refused as too large.
    store_too_large,
    /// Bytes read from clients.
    bytes_read,
    /// Bytes written to clients.
    bytes_written,
    /// Items stored since start (or reset).
    total_items,
    /// Connections accepted since start (or reset).
    total_connections,
    /// Connections refused at the connection limit.
    rejected_connections,
}

/// Figures about the storage engine and group commit (`stats store`).
#[derive(Debug)]
pub struct StoreStats {
    /// Group commits with at least one operation.
    pub batches: AtomicU64,
    /// Operations in them.
    pub batched_ops: AtomicU64,
    /// The largest batch.
    pub max_batch: AtomicU64,
    /// `fdatasync` calls of the log.
    pub fsyncs: AtomicU64,
    fsync_latency_us: Mutex<Histogram<u64>>,
    /// Checkpoints made durable.
    pub checkpoints: AtomicU64,
    /// Dead items removed by the reclaimer.
    pub reclaimed: AtomicU64,
    /// Items written with an expiry (tells the reclaimer there may be work).
    pub expiring_writes: AtomicU64,
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            batches: AtomicU64::new(0),
            batched_ops: AtomicU64::new(0),
            max_batch: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            fsync_latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            ),
            checkpoints: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            expiring_writes: AtomicU64::new(0),
        }
    }
}

impl StoreStats {
    /// Counts one group commit of `ops` operations.
    pub fn record_batch(&self, ops: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_ops.fetch_add(ops as u64, Ordering::Relaxed);
        self.max_batch.fetch_max(ops as u64, Ordering::Relaxed);
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
}

/// Everything connections, the writer and the background threads share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Command counters.
    pub counters: Counters,
    /// Storage figures.
    pub store: StoreStats,
    /// Records stored (published by the writer).
    pub items: AtomicU64,
    /// Accounted bytes stored (published by the writer).
    pub bytes: AtomicU64,
    /// Open client connections.
    pub curr_connections: AtomicU64,
    /// Records that failed their checksum.
    pub corrupt_records: AtomicU64,
    /// Fetched / last-access information (in memory only).
    pub access: AccessTable,
    flush: RwLock<FlushMarkers>,
}

impl Shared {
    /// State as of a recovered or committed checkpoint.
    pub fn publish(&self, checkpoint: &Checkpoint) {
        self.items.store(checkpoint.items, Ordering::Relaxed);
        self.bytes.store(checkpoint.bytes, Ordering::Relaxed);
        let mut flush = self.flush.write().expect("flush markers lock");
        if *flush != checkpoint.flush {
            *flush = checkpoint.flush;
        }
    }

    /// The flush markers readers must honour.
    pub fn flush_markers(&self) -> FlushMarkers {
        *self.flush.read().expect("flush markers lock")
    }

    /// Counts and logs a record that failed its checksum.
    pub fn note_corrupt_record(&self, key: &[u8], err: &CorruptRecord) {
        self.corrupt_records.fetch_add(1, Ordering::Relaxed);
        tracing::error!(key_len = key.len(), cause = %err, "corrupt record");
    }
}
