//! sled 0.34.7 as the engine. Items live in the tree `items`, the checkpoint
//! in the tree `meta`.
//!
//! sled's `flush` calls `sync_file_range`, not `fsync`, and never syncs its
//! blob files, so [`Engine::make_durable`] fsyncs every file below the
//! engine's directory itself.
//!
//! sled 0.34.7 writes the snapshot of its page table only when it opens (its
//! `snapshot_after_ops` setting is ignored), and opening replays its whole
//! log since the last snapshot: after a bulk load of 10 million items that
//! is 7 GB and 15 s. [`Engine::shorten_recovery`] therefore closes and
//! reopens the `Db` (behind a lock that reads and writes take shared), so
//! that the replay happens then, bounded by what was applied since the last
//! open, and the next open is short.

use std::fs;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Change, Checkpoint, Engine, EngineError};

/// sled as the engine.
pub struct SledEngine {
    /// `None` once a reopen failed.
    open: RwLock<Option<Trees>>,
    path: PathBuf,
    cache_bytes: u64,
    /// Bytes applied since the `Db` was opened.
    backlog: AtomicU64,
}

/// An open sled `Db` and its two trees.
struct Trees {
    db: sled::Db,
    items: sled::Tree,
    meta: sled::Tree,
}

const CHECKPOINT_KEY: &[u8] = b"checkpoint";

impl Trees {
    fn open(path: &Path, cache_bytes: u64) -> Result<Trees, EngineError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(1000));
        // The data directory's LOCK already keeps other processes out, so a
        // held sled lock can only be this process's previous instance: sled's
        // I/O threads may hold its file briefly after the `Db` is dropped
        // (sled's own tests block on this lock for that reason). Wait a
        // bounded time for them.
        let deadline = Instant::now() + Duration::from_secs(5);
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(err))
                    if err.to_string().contains("could not acquire lock")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let items = db.open_tree("items")?;
        let meta = db.open_tree("meta")?;
        Ok(Trees { db, items, meta })
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, EngineError> {
        match self.meta.get(CHECKPOINT_KEY)? {
            None => Ok(None),
            Some(bytes) => Checkpoint::decode(&bytes)
                .map(Some)
                .ok_or(EngineError::CorruptCheckpoint),
        }
    }
}

impl SledEngine {
    /// Opens (or creates) the engine in `path` with a page cache of
    /// `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledEngine, EngineError> {
        Ok(SledEngine {
            open: RwLock::new(Some(Trees::open(path, cache_bytes)?)),
            path: path.to_path_buf(),
            cache_bytes,
            backlog: AtomicU64::new(0),
        })
    }

    /// The open trees, shared.
    fn trees(&self) -> Result<TreesGuard<'_>, EngineError> {
        let guard = self.open.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(EngineError::Closed);
        }
        Ok(TreesGuard(guard))
    }
}

/// A shared hold on the open trees.
struct TreesGuard<'a>(RwLockReadGuard<'a, Option<Trees>>);

impl std::ops::Deref for TreesGuard<'_> {
    type Target = Trees;

    fn deref(&self) -> &Trees {
        self.0.as_ref().expect("checked open")
    }
}

/// fsyncs every file and directory below `dir`.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let path = entry.path();
        let result = if file_type.is_dir() {
            sync_tree(&path)
        } else {
            fs::File::open(&path).and_then(|f| f.sync_all())
        };
        match result {
            // sled removes blob and snapshot files as it goes.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    fs::File::open(dir)?.sync_all()
}

/// Bytes of every file below `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A sled value as `Bytes`, without copying it (the `Bytes` owns the
/// reference-counted `IVec`).
fn to_bytes(value: sled::IVec) -> Bytes {
    Bytes::from_owner(value)
}

impl Engine for SledEngine {
    fn name(&self) -> &'static str {
        "sled-0.34.7"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
        Ok(self.trees()?.items.get(key)?.map(to_bytes))
    }

    fn apply(&self, changes: &[Change], checkpoint: &Checkpoint) -> Result<(), EngineError> {
        let trees = self.trees()?;
        let mut applied = 0;
        for change in changes {
            match change {
                Change::Put { key, record } => {
                    trees.items.insert(key.as_ref(), record.as_ref())?;
                    applied += key.len() + record.len();
                }
                Change::Remove { key } => {
                    trees.items.remove(key.as_ref())?;
                    applied += key.len();
                }
                Change::Flush(_) => {}
            }
        }
        trees.meta.insert(CHECKPOINT_KEY, checkpoint.encode())?;
        self.backlog.fetch_add(applied as u64, Ordering::Relaxed);
        Ok(())
    }

    fn scan(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, EngineError> {
        let lower = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let trees = self.trees()?;
        let mut out = Vec::new();
        for entry in trees
            .items
            .range::<&[u8], _>((lower, Bound::Unbounded))
            .take(limit)
        {
            let (key, value) = entry?;
            out.push((Bytes::copy_from_slice(&key), to_bytes(value)));
        }
        Ok(out)
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, EngineError> {
        self.trees()?.checkpoint()
    }

    fn make_durable(&self) -> Result<Option<Checkpoint>, EngineError> {
        let trees = self.trees()?;
        let checkpoint = trees.checkpoint()?;
        trees.db.flush()?;
        sync_tree(&self.path)?;
        Ok(checkpoint)
    }

    fn disk_bytes(&self) -> u64 {
        dir_size(&self.path)
    }

    fn recovery_backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    fn shorten_recovery(&self) -> Result<(), EngineError> {
        let mut open = self.open.write().unwrap_or_else(PoisonError::into_inner);
        // Closed from here on unless the reopen succeeds.
        let trees = open.take().ok_or(EngineError::Closed)?;
        let before = trees.checkpoint()?;
        trees.db.flush()?;
        drop(trees);
        let trees = Trees::open(&self.path, self.cache_bytes)?;
        let after = trees.checkpoint()?;
        if after != before {
            let seq = |checkpoint: Option<Checkpoint>| checkpoint.map_or(0, |c| c.applied_seq);
            return Err(EngineError::LostOnReopen {
                before: seq(before),
                after: seq(after),
            });
        }
        *open = Some(trees);
        self.backlog.store(0, Ordering::Relaxed);
        Ok(())
    }
}
