//! fjall 3 (an LSM tree) as the engine. Items live in the keyspace `items`,
//! the checkpoint in the keyspace `meta`.
//!
//! Each [`Engine::apply`] is one fjall write batch holding the changes and
//! the checkpoint: fjall writes a batch to its journal between a start and
//! an end marker with a checksum, and on open drops a batch whose end is
//! missing, so after any crash the engine holds exactly the changes its
//! checkpoint describes. A batch gives all its entries one sequence
//! number, so two changes to one key in a batch would be ambiguous: only
//! the last change to each key goes in (what applying them in order
//! leaves).
//!
//! What fjall 3.1's calls do (checked in its source): a batch commit
//! writes to the active journal through an 8 KiB `BufWriter` and, with
//! `manual_journal_persist` (set here: the node's own log is the truth),
//! does not even flush that buffer to the OS. `Database::persist(SyncAll)`
//! flushes the buffer and `fsync`s the active journal file, nothing else.
//! Everything else fjall writes is fsynced by fjall when it is written: a
//! journal is `fsync`ed when it is sealed (memtable rotation) and its
//! directory when a journal is created; a flushed or compacted table file
//! and its directory are `fsync`ed before the table enters a version; the
//! version file is `fsync`ed and the `current` pointer replaced atomically
//! (temporary file, `fsync`, rename, directory `fsync`); a sealed journal
//! is deleted only after every keyspace's tables hold its entries. So
//! [`Engine::make_durable`] is `persist(SyncAll)`: after it, every batch
//! applied before it survives power loss, in the active journal, a sealed
//! one, or a table. A failed `fsync` poisons the database: fjall refuses
//! every later write, and the checkpointer keeps the node's log.
//!
//! On open fjall replays the journals whose entries are not all in tables
//! yet. A journal is deleted only once every keyspace with entries in it
//! has flushed them, and `meta` gets one small entry per batch, so it
//! would rarely fill a memtable: with the journal bound set to fjall's
//! smallest (64 MiB), fjall flushes such a straggler as soon as a sealed
//! journal waits for it. [`Engine::shorten_recovery`] (at shutdown) seals
//! both memtables and waits for their flush, so that the next open replays
//! next to nothing; it uses `Keyspace::rotate_memtable` and
//! `sealed_memtable_count`, public but hidden from fjall's documentation
//! (the version is pinned).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Change, Checkpoint, Engine, EngineError};

/// fjall as the engine.
pub struct FjallEngine {
    db: Database,
    items: Keyspace,
    meta: Keyspace,
    path: PathBuf,
    /// Bytes applied since the memtables were last flushed on request.
    backlog: AtomicU64,
}

const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// Sealed journals kept at most before fjall flushes the keyspaces that
/// hold them back (fjall's smallest bound).
const JOURNALING_BYTES: u64 = 64 * 1024 * 1024;
/// How long [`Engine::shorten_recovery`] waits for the flushes.
const FLUSH_WAIT: Duration = Duration::from_secs(60);

impl FjallEngine {
    /// Opens (or creates) the engine in `path` with a block cache of
    /// `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<FjallEngine, EngineError> {
        let db = Database::builder(path)
            .cache_size(cache_bytes)
            .manual_journal_persist(true)
            .max_journaling_size(JOURNALING_BYTES)
            .open()?;
        let items = db.keyspace("items", || {
            KeyspaceCreateOptions::default().manual_journal_persist(true)
        })?;
        let meta = db.keyspace("meta", || {
            KeyspaceCreateOptions::default().manual_journal_persist(true)
        })?;
        Ok(FjallEngine {
            db,
            items,
            meta,
            path: path.to_path_buf(),
            backlog: AtomicU64::new(0),
        })
    }
}

/// A fjall value as `Bytes`, without copying it.
fn to_bytes(value: fjall::Slice) -> Bytes {
    Bytes::from_owner(value)
}

impl Engine for FjallEngine {
    fn name(&self) -> &'static str {
        "fjall-3.1.13"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
        Ok(self.items.get(key)?.map(to_bytes))
    }

    fn apply(&self, changes: &[Change], checkpoint: &Checkpoint) -> Result<(), EngineError> {
        let mut batch = self.db.batch();
        // The last change to each key: later ones first, earlier ones to a
        // key already seen are skipped.
        let mut seen = std::collections::HashSet::with_capacity(changes.len());
        let mut applied = 0;
        for change in changes.iter().rev() {
            match change {
                Change::Put { key, record } => {
                    if seen.insert(key.as_ref()) {
                        batch.insert(&self.items, key.as_ref(), record.as_ref());
                        applied += key.len() + record.len();
                    }
                }
                Change::Remove { key } => {
                    if seen.insert(key.as_ref()) {
                        batch.remove(&self.items, key.as_ref());
                        applied += key.len();
                    }
                }
                Change::Flush(_) => {}
            }
        }
        batch.insert(&self.meta, CHECKPOINT_KEY, checkpoint.encode());
        batch.commit()?;
        self.backlog.fetch_add(applied as u64, Ordering::Relaxed);
        Ok(())
    }

    fn scan(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, EngineError> {
        use std::ops::Bound;
        let lower = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for guard in self
            .items
            .range::<&[u8], _>((lower, Bound::Unbounded))
            .take(limit)
        {
            let (key, value) = guard.into_inner()?;
            out.push((to_bytes(key), to_bytes(value)));
        }
        Ok(out)
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, EngineError> {
        match self.meta.get(CHECKPOINT_KEY)? {
            None => Ok(None),
            Some(bytes) => Checkpoint::decode(&bytes)
                .map(Some)
                .ok_or(EngineError::CorruptCheckpoint),
        }
    }

    fn make_durable(&self) -> Result<Option<Checkpoint>, EngineError> {
        // Read first: the batch holding this checkpoint is in the journal
        // (or older) by now, so the sync below covers it.
        let checkpoint = self.checkpoint()?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(checkpoint)
    }

    fn disk_bytes(&self) -> u64 {
        self.db
            .disk_space()
            .unwrap_or_else(|_| super::sled::dir_size(&self.path))
    }

    fn recovery_backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    fn shorten_recovery(&self) -> Result<(), EngineError> {
        let backlog = self.backlog.load(Ordering::Relaxed);
        self.items.rotate_memtable()?;
        self.meta.rotate_memtable()?;
        let deadline = Instant::now() + FLUSH_WAIT;
        while self.items.sealed_memtable_count() + self.meta.sealed_memtable_count() > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.backlog.fetch_sub(backlog, Ordering::Relaxed);
        Ok(())
    }
}
