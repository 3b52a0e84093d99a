//! The storage engine behind a small trait, and the checkpoint it keeps.
//!
//! The engine holds the items (key -> encoded [`crate::record::Record`]) and
//! a [`Checkpoint`] saying which write-ahead log sequence its contents
//! reflect. It is not trusted for durability: [`Engine::make_durable`] is
//! the only promise, and the node keeps its own log for everything after
//! it. The trait is small (get, apply, scan, make durable) and object-safe,
//! so that engines can be measured side by side.
//!
//! - [`sled`]: sled 0.34.7, the default engine.
//! - [`fjall`]: fjall 3, an LSM tree.
//! - [`cache`]: a cache of hot records in front of either.
//!
//! [`open`] opens the one a data directory was made with.

pub mod cache;
pub mod fjall;
pub mod sled;

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use crate::config::EngineKind;
use crate::flush::FlushMarkers;
use crate::version::Timestamp;

pub use self::fjall::FjallEngine;
pub use self::sled::SledEngine;

/// The share of the cache budget that goes to the cache of hot records
/// ([`cache::CachedEngine`]); the engine's own cache gets the rest.
pub const RECORD_CACHE_SHARE: u64 = 8;

/// Opens (or creates) the engine of `kind` in its subdirectory of
/// `data_dir` (`sled/` or `fjall/`), with `cache_bytes` of memory for
/// caching: one eighth for hot records in front of the engine, the rest for
/// the engine's own cache.
pub fn open(
    kind: EngineKind,
    data_dir: &Path,
    cache_bytes: u64,
) -> Result<Arc<dyn Engine>, EngineError> {
    let path = data_dir.join(kind.name());
    let records = cache_bytes / RECORD_CACHE_SHARE;
    let own = cache_bytes - records;
    let engine: Arc<dyn Engine> = match kind {
        EngineKind::Sled => Arc::new(SledEngine::open(&path, own)?),
        EngineKind::Fjall => Arc::new(FjallEngine::open(&path, own)?),
    };
    Ok(Arc::new(cache::CachedEngine::new(engine, records)))
}

/// One change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Store an encoded record (an item or a tombstone) under a key.
    Put {
        /// The key.
        key: Bytes,
        /// The encoded record.
        record: Bytes,
    },
    /// Remove whatever a key holds, leaving no trace (local housekeeping:
    /// a reclaimed flushed item, a purged tombstone).
    Remove {
        /// The key.
        key: Bytes,
    },
    /// Replace the flush markers.
    Flush(FlushMarkers),
}

/// What the engine's contents reflect, stored atomically with respect to the
/// items it describes (written after them, in the same engine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last write-ahead log sequence applied.
    pub applied_seq: u64,
    /// Item records stored (tombstones excluded).
    pub items: u64,
    /// Accounted bytes of the item records.
    pub bytes: u64,
    /// Tombstones stored.
    pub tombstones: u64,
    /// The highest cas unique handed out or applied.
    pub cas_high: u64,
    /// The highest hybrid clock timestamp handed out or observed (versions
    /// never go back, even if the wall clock does across a restart).
    pub clock_high: Timestamp,
    /// The flush markers in force.
    pub flush: FlushMarkers,
}

/// The checkpoint's format: a marker byte, then the fields.
const CHECKPOINT_FORMAT: u8 = 3;
const CHECKPOINT_LEN: usize = 1 + 8 * 6 + 16;
/// The checkpoint of earlier releases: 56 bytes, no marker, no tombstone
/// count, nanosecond versions.
const LEGACY_CHECKPOINT_LEN: usize = 56;

impl Checkpoint {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_LEN);
        out.push(CHECKPOINT_FORMAT);
        for field in [
            self.applied_seq,
            self.items,
            self.bytes,
            self.tombstones,
            self.cas_high,
            self.clock_high.0,
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(&self.flush.encode());
        out
    }

    /// Reads the stored form (this release's or the earlier one).
    pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        if bytes.len() == LEGACY_CHECKPOINT_LEN {
            let version_high = u64_at(48)?;
            return Some(Checkpoint {
                applied_seq: u64_at(0)?,
                items: u64_at(8)?,
                bytes: u64_at(16)?,
                tombstones: 0,
                cas_high: u64_at(24)?,
                clock_high: Timestamp::from_legacy_nanos(version_high),
                flush: FlushMarkers::decode_legacy(bytes.get(32..48)?)?,
            });
        }
        if bytes.len() != CHECKPOINT_LEN || bytes[0] != CHECKPOINT_FORMAT {
            return None;
        }
        Some(Checkpoint {
            applied_seq: u64_at(1)?,
            items: u64_at(9)?,
            bytes: u64_at(17)?,
            tombstones: u64_at(25)?,
            cas_high: u64_at(33)?,
            clock_high: Timestamp(u64_at(41)?),
            flush: FlushMarkers::decode(bytes.get(49..65)?)?,
        })
    }
}

/// Errors of an engine.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] ::sled::Error),
    /// fjall failed.
    #[error("{0}")]
    Fjall(#[from] ::fjall::Error),
    /// An I/O error outside the engine library (syncing its files).
    #[error("engine I/O: {0}")]
    Io(#[from] io::Error),
    /// The checkpoint record is unreadable.
    #[error("the engine's checkpoint record is corrupt")]
    CorruptCheckpoint,
    /// The engine is closed: reopening it failed.
    #[error("the engine is closed (reopening it failed; restart the node)")]
    Closed,
    /// After a reopen the engine held another checkpoint than before it.
    #[error(
        "the engine lost writes when it was reopened (checkpoint {before} before, {after} after)"
    )]
    LostOnReopen {
        /// The applied sequence before.
        before: u64,
        /// The applied sequence after.
        after: u64,
    },
}

/// An embedded ordered key-value engine.
pub trait Engine: Send + Sync + 'static {
    /// A short name with the engine's version, for `stats store`.
    fn name(&self) -> &'static str;

    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, EngineError>;

    /// Applies changes in order, then records `checkpoint` (after them).
    fn apply(&self, changes: &[Change], checkpoint: &Checkpoint) -> Result<(), EngineError>;

    /// Up to `limit` entries with keys after `after` (from the start when
    /// `None`), in key order.
    fn scan(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, EngineError>;

    /// The last checkpoint applied, if any.
    fn checkpoint(&self) -> Result<Option<Checkpoint>, EngineError>;

    /// Makes everything applied so far durable (with a real fsync) and
    /// returns the checkpoint that is now durable.
    fn make_durable(&self) -> Result<Option<Checkpoint>, EngineError>;

    /// Bytes the engine uses on disk.
    fn disk_bytes(&self) -> u64;

    /// Bytes applied (keys and records) since the engine last shortened its
    /// own recovery: a measure of how much of its own log opening it now
    /// would replay.
    fn recovery_backlog(&self) -> u64;

    /// Makes the engine's own recovery short, so that opening it replays
    /// little of its own log; everything applied stays as it is. sled 0.34.7
    /// writes its snapshot only when it opens, so sled closes and reopens
    /// itself (reads and writes wait meanwhile); fjall flushes its memtables
    /// to tables. Called by the checkpointer when the backlog passes
    /// `--engine-replay-limit`, and at shutdown. A failure leaves the engine
    /// refusing reads and writes until the node restarts.
    fn shorten_recovery(&self) -> Result<(), EngineError>;

    /// The hit counts of a cache in front of the engine, if there is one.
    fn cache_stats(&self) -> Option<cache::CacheStats> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_legacy_ones_decode() {
        let checkpoint = Checkpoint {
            applied_seq: 9,
            items: 3,
            bytes: 300,
            tombstones: 2,
            cas_high: 77,
            clock_high: Timestamp(12345),
            flush: FlushMarkers {
                flushed_through: Timestamp(99),
                deadline: 1_800_000_000,
            },
        };
        assert_eq!(Checkpoint::decode(&checkpoint.encode()), Some(checkpoint));
        let mut legacy = [0u8; LEGACY_CHECKPOINT_LEN];
        legacy[0..8].copy_from_slice(&5u64.to_le_bytes());
        legacy[8..16].copy_from_slice(&2u64.to_le_bytes());
        legacy[24..32].copy_from_slice(&40u64.to_le_bytes());
        legacy[48..56].copy_from_slice(&1_700_000_000_000_000_000u64.to_le_bytes());
        let decoded = Checkpoint::decode(&legacy).unwrap();
        assert_eq!(decoded.applied_seq, 5);
        assert_eq!(decoded.items, 2);
        assert_eq!(decoded.cas_high, 40);
        assert_eq!(decoded.clock_high.millis(), 1_700_000_000_000);
        assert_eq!(Checkpoint::decode(&[1, 2, 3]), None);
    }
}
