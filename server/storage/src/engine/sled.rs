//! sled 0.34.7 as the engine. Items live in the tree `items`, the checkpoint
//! in the tree `meta`.
//!
//! sled's `flush` calls `sync_file_range`, not `fsync`, and never syncs its
//! blob files, so [`Engine::make_durable`] fsyncs every file below the
//! engine's directory itself.

use std::fs;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Change, Checkpoint, Engine, EngineError};

/// sled as the engine.
pub struct SledEngine {
    db: sled::Db,
    items: sled::Tree,
    meta: sled::Tree,
    path: PathBuf,
}

const CHECKPOINT_KEY: &[u8] = b"checkpoint";

impl SledEngine {
    /// Opens (or creates) the engine in `path` with a page cache of
    /// `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledEngine, EngineError> {
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
        Ok(SledEngine {
            db,
            items,
            meta,
            path: path.to_path_buf(),
        })
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
        Ok(self.items.get(key)?.map(to_bytes))
    }

    fn apply(&self, changes: &[Change], checkpoint: &Checkpoint) -> Result<(), EngineError> {
        for change in changes {
            match change {
                Change::Put { key, record } => {
                    self.items.insert(key.as_ref(), record.as_ref())?;
                }
                Change::Remove { key } => {
                    self.items.remove(key.as_ref())?;
                }
                Change::Flush(_) => {}
            }
        }
        self.meta.insert(CHECKPOINT_KEY, checkpoint.encode())?;
        Ok(())
    }

    fn scan(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, EngineError> {
        let lower = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for entry in self
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
        match self.meta.get(CHECKPOINT_KEY)? {
            None => Ok(None),
            Some(bytes) => Checkpoint::decode(&bytes)
                .map(Some)
                .ok_or(EngineError::CorruptCheckpoint),
        }
    }

    fn make_durable(&self) -> Result<Option<Checkpoint>, EngineError> {
        let checkpoint = self.checkpoint()?;
        self.db.flush()?;
        sync_tree(&self.path)?;
        Ok(checkpoint)
    }

    fn disk_bytes(&self) -> u64 {
        dir_size(&self.path)
    }
}
