//! The command line. Every flag can also be set from an environment variable
//! (`MCSTORE_` and the flag's name in capitals).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mcstore_protocol::Limits;

use crate::store::StoreConfig;
use crate::writer::SyncMode;

/// mcstore: a persistent key-value store that speaks the memcache protocol.
#[derive(Debug, Clone, Parser)]
#[command(name = "mcstore", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on (TCP; loopback unless you say otherwise).
    #[arg(long, env = "MCSTORE_LISTEN", default_value = "127.0.0.1:11211")]
    pub listen: SocketAddr,

    /// Directory holding the data (created if missing; one node per directory).
    #[arg(long, env = "MCSTORE_DATA_DIR", default_value = "./mcstore-data")]
    pub data_dir: PathBuf,

    /// When writes become durable: `always` answers only after fdatasync,
    /// `periodic` answers at once and syncs every --sync-interval-ms,
    /// `none` leaves it to the engine's checkpoints.
    #[arg(long, env = "MCSTORE_SYNC", value_enum, default_value = "always")]
    pub sync: SyncMode,

    /// fdatasync interval for --sync periodic, in milliseconds.
    #[arg(long, env = "MCSTORE_SYNC_INTERVAL_MS", default_value_t = 100)]
    pub sync_interval_ms: u64,

    /// Largest item, counted as memcached counts it (value + key + ~60 bytes);
    /// accepts k and m suffixes like memcached's -I.
    #[arg(long, env = "MCSTORE_MAX_ITEM_SIZE", default_value = "1m", value_parser = parse_size)]
    pub max_item_size: usize,

    /// Most simultaneous client connections; beyond it a new connection is
    /// told `ERROR Too many open connections` and closed.
    #[arg(long, env = "MCSTORE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Worker threads serving connections (default: one per core).
    #[arg(long, env = "MCSTORE_THREADS")]
    pub threads: Option<usize>,

    /// Longest `get` line accepted, in bytes; longer ones close the connection.
    #[arg(long, env = "MCSTORE_MAX_GET_LINE", default_value = "1m", value_parser = parse_size)]
    pub max_get_line: usize,

    /// Most write operations in one group commit.
    #[arg(long, env = "MCSTORE_MAX_BATCH", default_value_t = 1024)]
    pub max_batch: usize,

    /// Write operations queued at most; connections wait beyond it.
    #[arg(long, env = "MCSTORE_MAX_PENDING_WRITES", default_value_t = 16384)]
    pub max_pending_writes: usize,

    /// sled's page cache, in bytes (k, m, g suffixes).
    #[arg(long, env = "MCSTORE_CACHE_SIZE", default_value = "256m", value_parser = parse_size)]
    pub cache_size: usize,

    /// Write-ahead log segment size (k, m, g suffixes).
    #[arg(long, env = "MCSTORE_WAL_SEGMENT_SIZE", default_value = "64m", value_parser = parse_size)]
    pub wal_segment_size: usize,

    /// How often the engine is made durable and covered log segments dropped,
    /// in milliseconds.
    #[arg(long, env = "MCSTORE_CHECKPOINT_INTERVAL_MS", default_value_t = 5000)]
    pub checkpoint_interval_ms: u64,

    /// Keys per second the background reclaimer examines for expired and
    /// flushed items (0: never reclaim).
    #[arg(long, env = "MCSTORE_RECLAIM_RATE", default_value_t = 50_000)]
    pub reclaim_rate: u64,
}

/// Parses `1048576`, `512k`, `1m`, `2g`.
fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, multiplier) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1usize << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{text}` is not a size (examples: 1048576, 512k, 1m)"))
}

impl Config {
    /// The store part of the configuration.
    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            sync: self.sync,
            sync_interval: Duration::from_millis(self.sync_interval_ms.max(1)),
            max_batch: self.max_batch.max(1),
            max_item_size: self.max_item_size,
            cache_bytes: self.cache_size as u64,
            wal_segment_bytes: self.wal_segment_size as u64,
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms.max(10)),
            reclaim_keys_per_sec: self.reclaim_rate,
            max_pending_writes: self.max_pending_writes.max(1),
            ..StoreConfig::new(&self.data_dir)
        }
    }

    /// The parser's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_item_size: self.max_item_size,
            max_get_line: self.max_get_line,
            ..Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn defaults_are_loopback_and_durable() {
        let config = Config::parse_from(["mcstore"]);
        assert_eq!(config.listen.to_string(), "127.0.0.1:11211");
        assert_eq!(config.sync, SyncMode::Always);
        assert_eq!(config.max_connections, 4096);
        assert_eq!(config.max_item_size, 1 << 20);
    }
}
