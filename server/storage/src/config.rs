//! How a store is opened: the data directory, the engine, durability,
//! batching, retention, and the item rules of the protocol the node serves.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// When writes become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` each batch before answering it: an acknowledged write
    /// survives a crash or power loss, and no reader sees a write before it
    /// is durable.
    Always,
    /// Answer at once; `fdatasync` every sync interval. A crash of the
    /// process loses nothing (the log is written before the answer); power
    /// loss can lose the last interval.
    Periodic,
    /// Never `fdatasync` the log; durability is left to the engine's
    /// checkpoints. A process crash loses nothing; power loss can lose
    /// everything since the last checkpoint.
    None,
}

impl SyncMode {
    /// Every mode, in the order the command line lists them.
    pub const ALL: [SyncMode; 3] = [SyncMode::Always, SyncMode::Periodic, SyncMode::None];

    /// The name used on the command line and in stats.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Periodic => "periodic",
            SyncMode::None => "none",
        }
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SyncMode {
    type Err = String;

    fn from_str(text: &str) -> Result<SyncMode, String> {
        SyncMode::ALL
            .into_iter()
            .find(|mode| mode.name() == text)
            .ok_or_else(|| format!("`{text}` is not a sync mode (always, periodic, none)"))
    }
}

/// Which embedded engine holds the items. A data directory is made with one
/// and remembers it (`<data dir>/ENGINE`); opening it with the other is an
/// error, never an empty store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// sled 0.34.7 (a copy-on-write B+ tree): the default.
    #[default]
    Sled,
    /// fjall 3 (an LSM tree).
    Fjall,
}

impl EngineKind {
    /// Every engine, in the order the command line lists them.
    pub const ALL: [EngineKind; 2] = [EngineKind::Sled, EngineKind::Fjall];

    /// The name used on the command line, in the data directory's `ENGINE`
    /// file and as the engine's subdirectory.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Sled => "sled",
            EngineKind::Fjall => "fjall",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(text: &str) -> Result<EngineKind, String> {
        EngineKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| format!("`{text}` is not an engine (sled, fjall)"))
    }
}

/// How the protocol the node serves counts an item's size and reads a
/// counter out of a stored value. The server passes memcached's rules
/// (`mcstore_protocol::item_size` and `mcstore_protocol::number::parse_u64`),
/// so that the storage layer itself depends on nothing from the wire.
#[derive(Debug, Clone, Copy)]
pub struct ItemRules {
    /// The largest item, as `item_size` counts it.
    pub max_item_size: u64,
    /// An item's size from its key length, client flags and value length.
    pub item_size: fn(usize, u32, usize) -> u64,
    /// A counter's number from the stored text (before any NUL).
    pub parse_number: fn(&[u8]) -> Option<u64>,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The engine (a new data directory is made with it; an existing one
    /// must have been made with it).
    pub engine: EngineKind,
    /// Durability mode.
    pub sync: SyncMode,
    /// fdatasync interval for `SyncMode::Periodic`.
    pub sync_interval: Duration,
    /// Most operations per group commit.
    pub max_batch: usize,
    /// Item size and counter rules.
    pub rules: ItemRules,
    /// The engine's cache (sled's page cache, fjall's block cache).
    pub cache_bytes: u64,
    /// Size at which a log segment is closed and a new one started.
    pub wal_segment_bytes: u64,
    /// Log kept for lagging change-stream cursors at most.
    pub wal_retention_bytes: u64,
    /// How often the engine is made durable and old log segments dropped.
    pub checkpoint_interval: Duration,
    /// Bytes applied to the engine after which the checkpointer has it
    /// shorten its own recovery ([`crate::engine::Engine::shorten_recovery`]:
    /// sled reopens itself, fjall flushes its memtables), which bounds the
    /// engine's part of a restart after a crash; 0: only at shutdown.
    pub engine_replay_bytes: u64,
    /// Keys per second the reclaimer examines (0 turns it off).
    pub reclaim_keys_per_sec: u64,
    /// How long a tombstone is kept before it is purged.
    pub tombstone_grace: Duration,
    /// How far in the future a remote version may be and still be applied.
    pub max_clock_skew: Duration,
    /// Write operations queued or in flight at most; more wait.
    pub max_pending_writes: usize,
}

impl StoreConfig {
    /// Defaults for a data directory (those of the command line) with the
    /// given item rules.
    pub fn new(data_dir: impl Into<PathBuf>, rules: ItemRules) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.into(),
            engine: EngineKind::Sled,
            sync: SyncMode::Always,
            sync_interval: Duration::from_millis(100),
            max_batch: 1024,
            rules,
            cache_bytes: 256 * 1024 * 1024,
            wal_segment_bytes: 64 * 1024 * 1024,
            wal_retention_bytes: 1 << 30,
            checkpoint_interval: Duration::from_secs(5),
            engine_replay_bytes: 256 * 1024 * 1024,
            reclaim_keys_per_sec: 50_000,
            tombstone_grace: Duration::from_secs(24 * 60 * 60),
            max_clock_skew: Duration::from_millis(500),
            max_pending_writes: 16 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_modes_parse_by_name() {
        for mode in SyncMode::ALL {
            assert_eq!(mode.name().parse::<SyncMode>(), Ok(mode));
        }
        assert!("sometimes".parse::<SyncMode>().is_err());
    }

    #[test]
    fn engines_parse_by_name() {
        for kind in EngineKind::ALL {
            assert_eq!(kind.name().parse::<EngineKind>(), Ok(kind));
        }
        assert!("rocksdb".parse::<EngineKind>().is_err());
    }
}
