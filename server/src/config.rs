//! The command line. Every flag can also be set from an environment variable
//! (`MCSTORE_` and the flag's name in capitals) and from a config file
//! (`--config`, see [`crate::config_file`]); the command line wins over the
//! environment, which wins over the file.
//!
//! memcached's short flags for the common settings work too (`-p -l -c -t
//! -I -U 0 -v`), so a unit file or script written for memcached starts
//! mcstore. Every value is checked here: a bad one is a usage error (exit
//! 2) naming the flag, never a panic later.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Parser};
use mcstore_protocol::Limits;
use mcstore_storage::{EngineKind, ItemRules, StoreConfig, SyncMode};

use crate::listen::ListenSpec;
use crate::logging::{LogFormat, LogLevel};

/// The largest `--max-item-size`: memcached's cap for `-I` (it also caps
/// it at half its memory limit; mcstore keeps items on disk and has none).
pub const MAX_ITEM_SIZE_CAP: usize = 1 << 30;
/// The smallest `--max-item-size`, memcached's floor for `-I`.
pub const MIN_ITEM_SIZE: usize = 1024;

/// mcstore: a persistent key-value store that speaks the memcache protocol.
#[derive(Debug, Clone, Parser)]
#[command(name = "mcstore", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on (TCP; loopback unless you say otherwise):
    /// `HOST:PORT`, `[IPV6]:PORT`, a bare `PORT`, or a bare `HOST` on port
    /// 11211. Hostnames are resolved at start. memcached's `-l`.
    #[arg(short = 'l', long, env = "MCSTORE_LISTEN", default_value = "127.0.0.1:11211",
          value_parser = ListenSpec::parse)]
    pub listen: ListenSpec,

    /// Port to listen on, replacing the port of --listen (memcached's `-p`).
    #[arg(short = 'p', long, env = "MCSTORE_PORT")]
    pub port: Option<u16>,

    /// UDP port: only 0 (off) is accepted, since mcstore has no UDP; for
    /// memcached command lines that say `-U 0`.
    #[arg(short = 'U', long, env = "MCSTORE_UDP_PORT", value_parser = parse_udp_port)]
    pub udp_port: Option<u16>,

    /// Directory holding the data (created if missing; one node per directory).
    #[arg(long, env = "MCSTORE_DATA_DIR", default_value = "./mcstore-data",
          value_parser = parse_data_dir)]
    pub data_dir: PathBuf,

    /// A TOML file of settings, keys named like the long flags
    /// (`max-item-size = "2m"`); flags and `MCSTORE_*` variables override it.
    #[arg(long, env = "MCSTORE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr: `text` for people, `json` (one object a line)
    /// for log shippers.
    #[arg(long, env = "MCSTORE_LOG_FORMAT", default_value = "text", value_enum)]
    pub log_format: LogFormat,

    /// Level of mcstore's own events (dependencies log at `warn`);
    /// `RUST_LOG`, when set, replaces this filter entirely.
    #[arg(long, env = "MCSTORE_LOG_LEVEL", default_value = "info", value_enum)]
    pub log_level: LogLevel,

    /// More logging, as memcached's `-v`: `-v` info, `-vv` debug, `-vvv`
    /// trace (overrides --log-level).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,

    /// Serve Prometheus metrics over HTTP on this address (`GET /metrics`);
    /// off unless given.
    #[arg(long, env = "MCSTORE_METRICS_LISTEN", value_parser = ListenSpec::parse)]
    pub metrics_listen: Option<ListenSpec>,

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

    /// fdatasync interval for --sync periodic, in milliseconds (1 to 3600000).
    #[arg(long, env = "MCSTORE_SYNC_INTERVAL_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub sync_interval_ms: u64,

    /// Largest item, counted as memcached counts it (value + key + ~60 bytes);
    /// accepts k, m and g suffixes like memcached's `-I`, from 1k to 1g
    /// (memcached's bounds for `-I`).
    #[arg(short = 'I', long, env = "MCSTORE_MAX_ITEM_SIZE", default_value = "1m",
          value_parser = parse_item_size)]
    pub max_item_size: usize,

    /// Most simultaneous client connections (memcached's `-c`); beyond it a
    /// new connection is told `ERROR Too many open connections` and closed.
    #[arg(short = 'c', long, env = "MCSTORE_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = positive_usize(1_000_000))]
    pub max_connections: usize,

    /// Worker threads serving connections (memcached's `-t`; default: one
    /// per core; 1 to 1024).
    #[arg(short = 't', long, env = "MCSTORE_THREADS", value_parser = positive_usize(1024))]
    pub threads: Option<usize>,

    /// Longest `get` line accepted, in bytes (at least 2k); longer ones
    /// close the connection.
    #[arg(long, env = "MCSTORE_MAX_GET_LINE", default_value = "1m",
          value_parser = sized(2048, 1 << 30))]
    pub max_get_line: usize,

    /// Most write operations in one group commit (1 to 1000000).
    #[arg(long, env = "MCSTORE_MAX_BATCH", default_value_t = 1024,
          value_parser = positive_usize(1_000_000))]
    pub max_batch: usize,

    /// Write operations queued at most; connections wait beyond it (1 to
    /// 10000000).
    #[arg(long, env = "MCSTORE_MAX_PENDING_WRITES", default_value_t = 16384,
          value_parser = positive_usize(10_000_000))]
    pub max_pending_writes: usize,

    /// Memory for caching, in bytes (k, m, g suffixes): one eighth holds hot
    /// records in front of the engine, the rest is the engine's own cache
    /// (sled's page cache, fjall's block cache).
    #[arg(long, env = "MCSTORE_CACHE_SIZE", default_value = "256m", value_parser = parse_size)]
    pub cache_size: usize,

    /// Write-ahead log segment size (k, m, g suffixes; 4k to 4g).
    #[arg(long, env = "MCSTORE_WAL_SEGMENT_SIZE", default_value = "64m",
          value_parser = sized(4 << 10, 4 << 30))]
    pub wal_segment_size: usize,

    /// How often the engine is made durable and covered log segments dropped,
    /// in milliseconds (10 to 86400000).
    #[arg(long, env = "MCSTORE_CHECKPOINT_INTERVAL_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
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
    #[arg(long, env = "MCSTORE_TRANSFER_RATE", default_value = "32m", value_parser = parse_rate)]
    pub transfer_rate: usize,

    /// How often this node compares digests of what it shares with each
    /// peer and sends it what differs (anti-entropy); 0: no anti-entropy
    /// (no digests are kept either).
    #[arg(long, env = "MCSTORE_REPAIR_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub repair_interval: Duration,

    /// The most an anti-entropy round sends per second to one peer, in
    /// bytes (k, m, g suffixes); 0: no limit.
    #[arg(long, env = "MCSTORE_REPAIR_RATE", default_value = "4m", value_parser = parse_rate)]
    pub repair_rate: usize,

    /// Require authentication: a file of `user:password` lines (memcached's
    /// `-Y` format). Binary clients authenticate with SASL PLAIN, text
    /// clients with memcached's ascii authentication (a first `set` whose
    /// data is `user password`). Without it, no authentication.
    #[arg(long, env = "MCSTORE_SASL_PASSWORD_FILE")]
    pub sasl_password_file: Option<PathBuf>,

    /// Print the man page (roff) generated from these flags, and exit.
    #[arg(long, hide = true)]
    pub generate_man: bool,
}

/// `-U`: mcstore has no UDP, so only 0 ("off") is accepted.
fn parse_udp_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) => Ok(0),
        _ => Err(format!(
            "`{text}`: mcstore has no UDP; only 0 (off) is accepted"
        )),
    }
}

fn parse_data_dir(text: &str) -> Result<PathBuf, String> {
    if text.trim().is_empty() {
        return Err("the data directory must not be empty".to_owned());
    }
    Ok(PathBuf::from(text))
}

/// A whole number from 1 to `max`.
fn positive_usize(max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| match text.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` is not a whole number from 1 to {max}")),
    }
}

/// A size (see [`parse_size`]) from `min` to `max` bytes.
fn sized(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| {
        let size = parse_size(text)?;
        if (min..=max).contains(&size) {
            Ok(size)
        } else {
            Err(format!(
                "`{text}` is out of range: from {} to {}",
                show_size(min),
                show_size(max)
            ))
        }
    }
}

/// `--max-item-size`: memcached's bounds for `-I`, 1 KiB to 1 GiB.
fn parse_item_size(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    if size < MIN_ITEM_SIZE {
        return Err(format!(
            "`{text}` is below 1k, the smallest item size memcached allows"
        ));
    }
    if size > MAX_ITEM_SIZE_CAP {
        return Err(format!(
            "`{text}` is over 1g, the largest item size memcached allows"
        ));
    }
    Ok(size)
}

fn show_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}g", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}m", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}k", b >> 10),
        b => b.to_string(),
    }
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
    parse_rate(text)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{text}` is not a size (examples: 1048576, 512k, 1m)"))
}

/// A byte rate as `parse_size` reads a size, where `0` (no limit) is valid.
fn parse_rate(text: &str) -> Result<usize, String> {
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
        .ok_or_else(|| format!("`{text}` is not a byte rate (examples: 0, 1048576, 512k, 32m)"))
}

impl Config {
    /// Where to listen: `--listen` with `--port` applied.
    pub fn listen_spec(&self) -> ListenSpec {
        self.listen.with_port(self.port)
    }

    /// The level of mcstore's own events: `-v` counts win over `--log-level`.
    pub fn log_level(&self) -> LogLevel {
        match self.verbose {
            0 => self.log_level,
            1 => LogLevel::Info,
            2 => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

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
            sync_interval: Duration::from_millis(self.sync_interval_ms),
            max_batch: self.max_batch,
            cache_bytes: self.cache_size as u64,
            wal_segment_bytes: self.wal_segment_size as u64,
            wal_retention_bytes: self.wal_retention as u64,
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms),
            engine_replay_bytes: self.engine_replay_limit as u64,
            reclaim_keys_per_sec: self.reclaim_rate,
            tombstone_grace: self.tombstone_grace,
            max_clock_skew: self.max_clock_skew,
            max_pending_writes: self.max_pending_writes,
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
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("32m"), Ok(32 << 20));
        assert!(parse_rate("-1").is_err());
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
        assert_eq!(config.listen_spec().to_string(), "127.0.0.1:11211");
        assert_eq!(config.sync, SyncMode::Always);
        assert_eq!(config.max_connections, 4096);
        assert_eq!(config.max_item_size, 1 << 20);
    }

    #[test]
    fn memcached_short_flags_set_the_common_settings() {
        let config = Config::parse_from([
            "mcstore", "-p", "11311", "-l", "0.0.0.0", "-c", "100", "-t", "3", "-I", "2m", "-U",
            "0", "-vv",
        ]);
        assert_eq!(config.listen_spec().to_string(), "0.0.0.0:11311");
        assert_eq!(config.max_connections, 100);
        assert_eq!(config.threads, Some(3));
        assert_eq!(config.max_item_size, 2 << 20);
        assert_eq!(config.udp_port, Some(0));
        assert_eq!(config.log_level(), LogLevel::Debug);
        let config = Config::parse_from(["mcstore", "--listen", "11311"]);
        assert_eq!(config.listen_spec().to_string(), "127.0.0.1:11311");
    }

    #[test]
    fn invalid_values_are_usage_errors() {
        for args in [
            &["--threads", "0"][..],
            &["-t", "-1"],
            &["--threads", "5000"],
            &["--max-connections", "0"],
            &["-U", "11211"],
            &["--max-item-size", "2g"],
            &["-I", "512"],
            &["--max-batch", "0"],
            &["--max-pending-writes", "0"],
            &["--sync-interval-ms", "0"],
            &["--checkpoint-interval-ms", "1"],
            &["--wal-segment-size", "1k"],
            &["--max-get-line", "10"],
            &["--listen", "host:port"],
            &["--port", "70000"],
            &["--data-dir", ""],
            &["--sync", "sometimes"],
            &["--log-format", "xml"],
            &["--metrics-listen", "nowhere:x"],
        ] {
            let argv = std::iter::once("mcstore").chain(args.iter().copied());
            let err = Config::try_parse_from(argv).expect_err(&format!("{args:?} was accepted"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }
}
