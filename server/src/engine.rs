//! The storage engine behind a small trait, and its sled implementation.
//!
//! The engine holds the items (key -> encoded [`crate::record::Record`]) and
//! a checkpoint saying which write-ahead log sequence its contents reflect.
//! It is not trusted for durability: [`Engine::make_durable`] is the only
//! promise, and the node keeps its own log for everything after it. Keeping
//! the trait small (get, apply, scan, make durable) lets another embedded
//! engine be measured beside sled later.

use std::fs;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use thiserror::Error;

use crate::flush::FlushMarkers;

/// One change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Store an encoded record under a key.
    Put {
        /// The key.
        key: Bytes,
        /// The encoded record.
        record: Bytes,
    },
    /// Remove a key.
    Delete {
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
    /// Records stored.
    pub items: u64,
    /// Accounted bytes stored.
    pub bytes: u64,
    /// The highest cas unique handed out.
    pub cas_high: u64,
    /// The highest version timestamp handed out (versions never go back,
    /// even if the clock does across a restart).
    pub version_high: u64,
    /// The flush markers in force.
    pub flush: FlushMarkers,
}

impl Checkpoint {
    fn encode(&self) -> [u8; 56] {
        let mut out = [0; 56];
        out[0..8].copy_from_slice(&self.applied_seq.to_le_bytes());
        out[8..16].copy_from_slice(&self.items.to_le_bytes());
        out[16..24].copy_from_slice(&self.bytes.to_le_bytes());
        out[24..32].copy_from_slice(&self.cas_high.to_le_bytes());
        out[32..48].copy_from_slice(&self.flush.encode());
        out[48..56].copy_from_slice(&self.version_high.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        Some(Checkpoint {
            applied_seq: u64_at(0)?,
            items: u64_at(8)?,
            bytes: u64_at(16)?,
            cas_high: u64_at(24)?,
            flush: FlushMarkers::decode(bytes.get(32..48)?)?,
            version_high: u64_at(48)?,
        })
    }
}

/// Errors of an engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// An I/O error outside sled (syncing its files).
    #[error("engine I/O: {0}")]
    Io(#[from] io::Error),
    /// The checkpoint record is unreadable.
    #[error("the engine's checkpoint record is corrupt")]
    CorruptCheckpoint,
}

/// An embedded ordered key-value engine.
pub trait Engine: Send + Sync + 'static {
    /// A stored value, borrowed cheaply.
    type Value: AsRef<[u8]> + Send;

    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>, EngineError>;

    /// Applies changes in order, then records `checkpoint` (after them).
    fn apply(&self, changes: &[Change], checkpoint: &Checkpoint) -> Result<(), EngineError>;

    /// Up to `limit` entries with keys after `after` (from the start when
    /// `None`), in key order.
    fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Self::Value)>, EngineError>;

    /// The last checkpoint applied, if any.
    fn checkpoint(&self) -> Result<Option<Checkpoint>, EngineError>;

    /// Makes everything applied so far durable (with a real fsync) and
    /// returns the checkpoint that is now durable.
    fn make_durable(&self) -> Result<Option<Checkpoint>, EngineError>;

    /// Bytes the engine uses on disk.
    fn disk_bytes(&self) -> u64;
}

/// sled 0.34.7 as the engine. Items live in the tree `items`, the checkpoint
/// in the tree `meta`.
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(err))
                    if err.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
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

/// fsyncs every file and directory below `dir` (sled's `flush` only calls
/// `sync_file_range`, and never syncs its blob files).
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

fn dir_size(dir: &Path) -> u64 {
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

impl Engine for SledEngine {
    type Value = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, EngineError> {
        Ok(self.items.get(key)?)
    }

    fn apply(&self, changes: &[Change], checkpoint: &Checkpoint) -> Result<(), EngineError> {
        for change in changes {
            match change {
                Change::Put { key, record } => {
                    self.items.insert(key.as_ref(), record.as_ref())?;
                }
                Change::Delete { key } => {
                    self.items.remove(key.as_ref())?;
                }
                Change::Flush(_) => {}
            }
        }
        self.meta.insert(CHECKPOINT_KEY, &checkpoint.encode()[..])?;
        Ok(())
    }

    fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, sled::IVec)>, EngineError> {
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
            out.push((Bytes::copy_from_slice(&key), value));
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
