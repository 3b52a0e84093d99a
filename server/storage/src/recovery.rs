//! Recovery: replaying the write-ahead log into the engine on start.
//!
//! The engine's checkpoint says which log sequence its contents reflect;
//! every entry after it is applied again, in order, and the counts, the
//! highest cas unique, the hybrid clock's high-water mark and the flush
//! markers are rebuilt from the entries themselves. The engine is then made
//! durable and the log segments nothing needs any more are dropped.

use std::time::Instant;

use crate::config::StoreConfig;
use crate::engine::{Change, Checkpoint, Engine, EngineError};
use crate::error::StoreError;
use crate::record::RecordHeader;
use crate::wal::cursors::{retain, Cursors};
use crate::wal::Wal;

/// Entries applied to the engine at a time during replay.
const REPLAY_CHUNK: usize = 4096;

/// Replays the log into the engine and returns the log, ready to append,
/// with the checkpoint the engine now holds.
pub fn recover(
    engine: &dyn Engine,
    config: &StoreConfig,
    cursors: &Cursors,
) -> Result<(Wal, Checkpoint), StoreError> {
    let mut checkpoint = engine.checkpoint()?.unwrap_or_default();
    let started = Instant::now();
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
            checkpoint.tombstones = checkpoint
                .tombstones
                .saturating_add_signed(entry.accounting.tombstones);
            match &entry.change {
                Change::Put { record, .. } => {
                    if let Ok(header) = RecordHeader::decode(record) {
                        checkpoint.cas_high = checkpoint.cas_high.max(header.cas);
                        checkpoint.clock_high = checkpoint.clock_high.max(header.version.timestamp);
                    }
                }
                Change::Flush(markers) => {
                    checkpoint.flush = *markers;
                    checkpoint.clock_high = checkpoint.clock_high.max(markers.flushed_through);
                }
                Change::Remove { .. } => {}
            }
            pending.push(entry.change);
            replayed += 1;
            if pending.len() >= REPLAY_CHUNK {
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
    if replayed > 0 {
        engine.apply(&pending, &checkpoint)?;
        tracing::info!(
            replayed,
            took_ms = started.elapsed().as_millis() as u64,
            "replayed the write-ahead log"
        );
    }
    // Only what a durable engine checkpoint covers may leave the log.
    engine.make_durable()?;
    retain(
        &wal.segments(),
        cursors,
        checkpoint.applied_seq,
        config.wal_retention_bytes,
    )
    .map_err(|source| StoreError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    Ok((wal, checkpoint))
}
