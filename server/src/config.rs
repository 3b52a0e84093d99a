//! The command line. Every flag can also be set from an environment variable
//! (`MCSTORE_` and the flag's name in capitals).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;
use mcstore_protocol::Limits;
use mcstore_storage::{EngineKind, ItemRules, StoreConfig, SyncMode};

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
    #[arg(
        long,
        env = "MCSTORE_SYNC",
        default_value = "always",
        value_parser = PossibleValuesParser::new(SyncMode::ALL.map(SyncMode::name))
            .map(|name| name.parse::<SyncMode>().expect("a listed sync mode")),
    )]
    pub sync: SyncMode,

    /// The storage engine: `sled` (the default) or `fjall` (an LSM tree). A
    /// data directory keeps the engine it was made with.
    #[arg(
        long,
        env = "MCSTORE_ENGINE",
        default_value = "sled",
        value_parser = PossibleValuesParser::new(EngineKind::ALL.map(EngineKind::name))
            .map(|name| name.parse::<EngineKind>().expect("a listed engine")),
    )]
    pub engine: EngineKind,

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

    /// The engine's cache (sled's page cache, fjall's block cache), in
    /// bytes (k, m, g suffixes).
    #[arg(long, env = "MCSTORE_CACHE_SIZE", default_value = "256m", value_parser = parse_size)]
    pub cache_size: usize,

    /// Write-ahead log segment size (k, m, g suffixes).
    #[arg(long, env = "MCSTORE_WAL_SEGMENT_SIZE", default_value = "64m", value_parser = parse_size)]
    pub wal_segment_size: usize,

    /// How often the engine is made durable and covered log segments dropped,
    /// in milliseconds.
    #[arg(long, env = "MCSTORE_CHECKPOINT_INTERVAL_MS", default_value_t = 5000)]
    pub checkpoint_interval_ms: u64,

    /// Bytes applied to the engine after which it shortens its own
    /// recovery (k, m, g suffixes): sled reopens itself to write its
    /// snapshot (reads and writes wait about as long as a restart would),
    /// fjall flushes its memtables. Bounds the restart time after a crash.
    #[arg(long, env = "MCSTORE_ENGINE_REPLAY_LIMIT", default_value = "256m", value_parser = parse_size)]
    pub engine_replay_limit: usize,

    /// Keys per second the background reclaimer examines for expired and
    /// flushed items and old tombstones (0: never reclaim).
    #[arg(long, env = "MCSTORE_RECLAIM_RATE", default_value_t = 50_000)]
    pub reclaim_rate: u64,

    /// How long a deleted key's tombstone is kept (so that a late write
    /// from a replica cannot bring it back) before it is purged: a number
    /// with a unit, ms, s, m, h or d.
    #[arg(long, env = "MCSTORE_TOMBSTONE_GRACE", default_value = "24h", value_parser = parse_duration)]
    pub tombstone_grace: Duration,

    /// Write-ahead log kept for change-stream consumers (replicas) that lag
    /// behind, at most (k, m, g suffixes); beyond it a lagging consumer is
    /// told it needs a full resync.
    #[arg(long, env = "MCSTORE_WAL_RETENTION", default_value = "1g", value_parser = parse_size)]
    pub wal_retention: usize,

    /// How far ahead of this node's clock a version from another node may
    /// be and still be applied (ms, s suffixes); later ones are refused and
    /// counted.
    #[arg(long, env = "MCSTORE_MAX_CLOCK_SKEW", default_value = "500ms", value_parser = parse_duration)]
    pub max_clock_skew: Duration,

    /// Nodes of the cluster to join, `host:port,...`: the addresses clients
    /// use. The list may name this node, nodes not started yet and dead
    /// ones. Without it the node is a cluster of one.
    #[arg(long, env = "MCSTORE_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,

    /// This node's name on the ring: host:port exactly as clients are
    /// configured with it (default: the listen address; required when
    /// listening on 0.0.0.0).
    #[arg(long, env = "MCSTORE_ADVERTISE")]
    pub advertise: Option<String>,

    /// Copies of each key: its owner and the next nodes clockwise on the
    /// ring.
    #[arg(long, env = "MCSTORE_REPLICATION_FACTOR", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub replication_factor: u32,

    /// This node's ketama weight: its share of the key space.
    #[arg(long, env = "MCSTORE_WEIGHT", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub weight: u32,

    /// Answer reads of keys this node holds a replica of locally, without
    /// asking the owner (eventually consistent).
    #[arg(long, env = "MCSTORE_REPLICA_READS")]
    pub replica_reads: bool,

    /// How long a request forwarded to a peer may wait for its reply (ms, s
    /// suffixes) before the next replica is tried or SERVER_ERROR answered.
    #[arg(long, env = "MCSTORE_PEER_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub peer_timeout: Duration,

    /// A file holding the cluster secret: peers prove they know it (an HMAC
    /// over nonces) and gossip is authenticated with it. Required when a
    /// node with --seeds listens beyond loopback.
    #[arg(long, env = "MCSTORE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// How often this node probes another member (gossip failure detection).
    #[arg(long, env = "MCSTORE_PROBE_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub probe_interval: Duration,

    /// How long a member that missed a probe is suspect before it is
    /// declared dead; with the default probe interval a killed node is seen
    /// dead in about 3 s.
    #[arg(long, env = "MCSTORE_SUSPECT_TIMEOUT", default_value = "1500ms", value_parser = parse_duration)]
    pub suspect_timeout: Duration,

    /// When a write is answered: `none` after the local commit (replicas
    /// get it asynchronously), `one` after one other replica also has it
    /// durably (needs --replication-factor 2 or more).
    #[arg(long, env = "MCSTORE_REPLICA_ACK", default_value = "none",
          value_parser = PossibleValuesParser::new(["none", "one"]))]
    pub replica_ack: String,

    /// With --replica-ack one, how long a write waits for a replica before
    /// it is answered with SERVER_ERROR (its local commit stands).
    #[arg(long, env = "MCSTORE_REPLICA_ACK_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub replica_ack_timeout: Duration,

    /// How long the writes a down replica missed are kept for it (hints);
    /// a replica away longer gets a full range transfer when it returns.
    #[arg(long, env = "MCSTORE_HINT_WINDOW", default_value = "3h", value_parser = parse_duration)]
    pub hint_window: Duration,

    /// The most a node sends per second in range transfers (a join, a
    /// leave, a removed member's ranges, a returning replica), in bytes per
    /// peer (k, m, g suffixes); 0: no limit. Keeps a join from crowding out
    /// the foreground load.
    #[arg(long, env = "MCSTORE_TRANSFER_RATE", default_value = "32m", value_parser = parse_size)]
    pub transfer_rate: usize,

    /// Require authentication: a file of `user:password` lines (memcached's
    /// `-Y` format). Binary clients authenticate with SASL PLAIN, text
    /// clients with memcached's ascii authentication (a first `set` whose
    /// data is `user password`). Without it, no authentication.
    #[arg(long, env = "MCSTORE_SASL_PASSWORD_FILE")]
    pub sasl_password_file: Option<PathBuf>,
}

/// Parses `500ms`, `30s`, `5m`, `3h`, `1d` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}` is not a duration (examples: 500ms, 30s, 3h, 1d)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is not a duration (examples: 500ms, 30s, 3h, 1d)"))
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
        let rules = ItemRules {
            max_item_size: self.max_item_size as u64,
            item_size: mcstore_protocol::item_size,
            parse_number: mcstore_protocol::number::parse_u64,
        };
        StoreConfig {
            engine: self.engine,
            sync: self.sync,
            sync_interval: Duration::from_millis(self.sync_interval_ms.max(1)),
            max_batch: self.max_batch.max(1),
            cache_bytes: self.cache_size as u64,
            wal_segment_bytes: self.wal_segment_size as u64,
            wal_retention_bytes: self.wal_retention as u64,
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms.max(10)),
            engine_replay_bytes: self.engine_replay_limit as u64,
            reclaim_keys_per_sec: self.reclaim_rate,
            tombstone_grace: self.tombstone_grace,
            max_clock_skew: self.max_clock_skew,
            max_pending_writes: self.max_pending_writes.max(1),
            ..StoreConfig::new(&self.data_dir, rules)
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
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 weeks").is_err());
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
