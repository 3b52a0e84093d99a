//! The command line: flags (clap derive), the small value types they parse
//! into (`set|get|mixed:R`, `uniform|zipf:S`, `B` or `min-max`, durations)
//! and the cross-flag checks clap cannot express.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use thiserror::Error;

/// The largest value memcached stores by default (`-I 1m`).
pub const MAX_VALUE_SIZE: usize = 1024 * 1024;

/// A bad flag value or a bad combination of flags.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ArgsError {
    /// `--workload` is not `set`, `get` or `mixed:R`.
    #[error("workload must be `set`, `get` or `mixed:R` with 0 <= R <= 1 (got `{0}`)")]
    Workload(String),
    /// `--distribution` is not `uniform` or `zipf:S`.
    #[error("distribution must be `uniform` or `zipf:S` with S > 0 (got `{0}`)")]
    Distribution(String),
    /// `--value-size` is not `B` or `min-max`.
    #[error(
        "value size must be `B` or `min-max` with 1 <= min <= max <= {MAX_VALUE_SIZE} (got `{0}`)"
    )]
    ValueSize(String),
    /// A server is not `host:port`.
    #[error("server must be `host:port` (got `{0}`)")]
    Server(String),
    /// A duration is not a number of seconds (optionally with `ms`, `s`, `m`).
    #[error("duration must look like `10`, `2.5s`, `500ms` or `1m` (got `{0}`)")]
    Duration(String),
    /// Keys of this size cannot name every key of the key space.
    #[error(
        "--key-size {key_size} is too small for {keys} keys (need at least {needed}) or above 250"
    )]
    KeySize {
        /// The requested key size.
        key_size: usize,
        /// The key space.
        keys: u64,
        /// The smallest size that works.
        needed: usize,
    },
    /// A flag the client mode (`--seeds`, `--via-client`) does not support.
    #[error("{0} is not supported with --seeds or --via-client (closed loop only)")]
    ClientMode(&'static str),
    /// `--rate` is not a positive number.
    #[error("--rate must be a positive number of operations per second (got {0})")]
    Rate(f64),
}

/// Which operations to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WorkloadKind {
    /// Only `set`.
    Set,
    /// Only `get`.
    Get,
    /// Gets with this probability (0..=1), sets otherwise.
    Mixed(f64),
}

impl WorkloadKind {
    /// The probability that an operation is a get.
    pub fn get_fraction(self) -> f64 {
        match self {
            WorkloadKind::Set => 0.0,
            WorkloadKind::Get => 1.0,
            WorkloadKind::Mixed(fraction) => fraction,
        }
    }
}

impl FromStr for WorkloadKind {
    type Err = ArgsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ArgsError::Workload(text.to_owned());
        match text {
            "set" => Ok(WorkloadKind::Set),
            "get" => Ok(WorkloadKind::Get),
            _ => {
                let fraction: f64 = text
                    .strip_prefix("mixed:")
                    .ok_or_else(error)?
                    .parse()
                    .map_err(|_| error())?;
                if (0.0..=1.0).contains(&fraction) {
                    Ok(WorkloadKind::Mixed(fraction))
                } else {
                    Err(error())
                }
            }
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadKind::Set => f.write_str("set"),
            WorkloadKind::Get => f.write_str("get"),
            WorkloadKind::Mixed(fraction) => write!(f, "mixed:{fraction}"),
        }
    }
}

/// How keys are picked from the key space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Key of rank `r` (1-based) with probability proportional to `1 / r^s`.
    Zipf(f64),
}

impl FromStr for KeyDistribution {
    type Err = ArgsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ArgsError::Distribution(text.to_owned());
        if text == "uniform" {
            return Ok(KeyDistribution::Uniform);
        }
        let exponent: f64 = text
            .strip_prefix("zipf:")
            .ok_or_else(error)?
            .parse()
            .map_err(|_| error())?;
        if exponent > 0.0 && exponent.is_finite() {
            Ok(KeyDistribution::Zipf(exponent))
        } else {
            Err(error())
        }
    }
}

impl fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDistribution::Uniform => f.write_str("uniform"),
            KeyDistribution::Zipf(exponent) => write!(f, "zipf:{exponent}"),
        }
    }
}

/// Value sizes: one size, or an inclusive range each key picks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    /// The smallest value.
    pub min: usize,
    /// The largest value.
    pub max: usize,
}

impl FromStr for ValueSize {
    type Err = ArgsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ArgsError::ValueSize(text.to_owned());
        let parse = |part: &str| part.trim().parse::<usize>().map_err(|_| error());
        let (min, max) = match text.split_once('-') {
            Some((min, max)) => (parse(min)?, parse(max)?),
            None => {
                let size = parse(text)?;
                (size, size)
            }
        };
        if min == 0 || min > max || max > MAX_VALUE_SIZE {
            return Err(error());
        }
        Ok(ValueSize { min, max })
    }
}

/// A server address as given: host (name or IP) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl FromStr for ServerAddr {
    type Err = ArgsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ArgsError::Server(text.to_owned());
        let (host, port) = text.rsplit_once(':').ok_or_else(error)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| error())?;
        if host.is_empty() || port == 0 {
            return Err(error());
        }
        Ok(ServerAddr {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `10`, `2.5`, `2.5s`, `500ms` or `1m` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, ArgsError> {
    let error = || ArgsError::Duration(text.to_owned());
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().map_err(|_| error())?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| error())
}

/// The command line of `mcstore-bench`.
#[derive(Debug, Clone, Parser)]
#[command(name = "mcstore-bench", version, about)]
pub struct Args {
    /// Servers, `host:port,...`; keys are spread over them with the ketama ring.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "seeds",
        conflicts_with = "seeds"
    )]
    pub servers: Vec<ServerAddr>,
    /// An mcstore cluster's seeds, `host:port,...`: requests go through
    /// `mcstore-client` (topology from `stats cluster`, each key to its
    /// owner), as an application sees the cluster; throughput is also
    /// reported per node.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<ServerAddr>,
    /// With `--servers`: drive them through `mcstore-client`'s static
    /// ketama mode (the `--seeds` code path without a topology) instead of
    /// the raw pipelined connections.
    #[arg(long)]
    pub via_client: bool,
    /// Connections in total, spread round-robin over the servers.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,
    /// Worker threads, each a single-threaded tokio runtime pinned to a CPU
    /// and driving its share of the connections (default: the number of CPUs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Do not pin the worker threads to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// `set`, `get` or `mixed:R` (R = fraction of gets).
    #[arg(long, default_value = "set")]
    pub workload: WorkloadKind,
    /// Size of the key space.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=u32::MAX as u64))]
    pub keys: u64,
    /// Key length in bytes.
    #[arg(long, default_value_t = 64)]
    pub key_size: usize,
    /// Value length in bytes, `B` or an inclusive range `min-max`.
    #[arg(long, default_value = "100")]
    pub value_size: ValueSize,
    /// `uniform` or `zipf:S`.
    #[arg(long, default_value = "uniform")]
    pub distribution: KeyDistribution,
    /// Write the whole key space before the run so that gets hit.
    #[arg(long)]
    pub prefill: bool,
    /// Measured run time (`10`, `2.5s`, `500ms`, `1m`).
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub duration: Duration,
    /// Run time before the measurement starts (not counted).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: total operations per second on a fixed schedule; latency
    /// counts from each request's intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Check every value read back against the key's deterministic value.
    #[arg(long)]
    pub verify: bool,
    /// Print the result as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// A request without a reply after this long is an error and its
    /// connection is re-established.
    #[arg(long, default_value = "5", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Seed for key choice and value contents.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Digits needed to write `keys - 1` in decimal.
fn digits(keys: u64) -> usize {
    keys.saturating_sub(1).max(1).ilog10() as usize + 1
}

impl Args {
    /// The checks that involve several flags.
    pub fn validate(&self) -> Result<(), ArgsError> {
        let needed = digits(self.keys) + 1;
        if self.key_size < needed || self.key_size > mcstore_protocol::MAX_KEY_LENGTH {
            return Err(ArgsError::KeySize {
                key_size: self.key_size,
                keys: self.keys,
                needed,
            });
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return Err(ArgsError::Rate(rate));
            }
            if self.uses_client() {
                return Err(ArgsError::ClientMode("--rate"));
            }
        }
        Ok(())
    }

    /// Whether requests go through `mcstore-client` (`--seeds`, or
    /// `--servers` with `--via-client`).
    pub fn uses_client(&self) -> bool {
        !self.seeds.is_empty() || self.via_client
    }

    /// Parses and validates a command line (`argv[0]` first).
    pub fn parse_and_validate<I, T>(argv: I) -> Result<Args, ParseArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Args::try_parse_from(argv).map_err(ParseArgsError::Clap)?;
        args.validate().map_err(ParseArgsError::Invalid)?;
        Ok(args)
    }
}

/// Why a command line was rejected.
#[derive(Debug, Error)]
pub enum ParseArgsError {
    /// Rejected by clap (unknown flag, bad value, `--help`).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// Rejected by [`Args::validate`].
    #[error(transparent)]
    Invalid(#[from] ArgsError),
}

#[cfg(test)]
mod tests {
    //! Parsing of every flag kind, good and bad.

    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, ParseArgsError> {
        let mut argv = vec!["mcstore-bench", "--servers", "127.0.0.1:11211"];
        argv.extend_from_slice(extra);
        Args::parse_and_validate(argv)
    }

    #[test]
    fn defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.connections, 32);
        assert_eq!(args.pipeline, 1);
        assert_eq!(args.keys, 100_000);
        assert_eq!(args.key_size, 64);
        assert_eq!(args.value_size, ValueSize { min: 100, max: 100 });
        assert_eq!(args.workload, WorkloadKind::Set);
        assert_eq!(args.distribution, KeyDistribution::Uniform);
        assert_eq!(args.rate, None);
        assert!(!args.prefill && !args.verify && !args.json && !args.no_pin);
    }

    #[test]
    fn servers_list() {
        let args =
            Args::parse_and_validate(["x", "--servers", "a:1,10.0.0.2:11212,[::1]:5"]).unwrap();
        assert_eq!(
            args.servers,
            vec![
                ServerAddr {
                    host: "a".into(),
                    port: 1
                },
                ServerAddr {
                    host: "10.0.0.2".into(),
                    port: 11212
                },
                ServerAddr {
                    host: "::1".into(),
                    port: 5
                },
            ]
        );
        assert_eq!(args.servers[2].to_string(), "[::1]:5");
        assert!(Args::parse_and_validate(["x", "--servers", "nohost"]).is_err());
        assert!(Args::parse_and_validate(["x", "--servers", "h:notaport"]).is_err());
        assert!(Args::parse_and_validate(["x"]).is_err());
    }

    #[test]
    fn value_sizes() {
        assert_eq!(
            "7".parse::<ValueSize>().unwrap(),
            ValueSize { min: 7, max: 7 }
        );
        assert_eq!(
            "10-2000".parse::<ValueSize>().unwrap(),
            ValueSize { min: 10, max: 2000 }
        );
        for bad in ["0", "20-10", "a-b", "", "5-", "-5", "1-2000000"] {
            assert!(bad.parse::<ValueSize>().is_err(), "{bad} accepted");
        }
        let args = parse(&["--value-size", "32-64"]).unwrap();
        assert_eq!(args.value_size, ValueSize { min: 32, max: 64 });
    }

    #[test]
    fn workloads() {
        assert_eq!(
            parse(&["--workload", "get"]).unwrap().workload,
            WorkloadKind::Get
        );
        let mixed = parse(&["--workload", "mixed:0.9"]).unwrap().workload;
        assert_eq!(mixed, WorkloadKind::Mixed(0.9));
        assert_eq!(mixed.get_fraction(), 0.9);
        for bad in ["mixed:1.5", "mixed:", "mixed:x", "mixed", "delete"] {
            assert!(parse(&["--workload", bad]).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn distributions() {
        assert_eq!(
            parse(&["--distribution", "zipf:0.99"])
                .unwrap()
                .distribution,
            KeyDistribution::Zipf(0.99)
        );
        for bad in ["zipf:0", "zipf:-1", "zipf:", "gauss", "zipf:nan"] {
            assert!(parse(&["--distribution", bad]).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("4").unwrap(), Duration::from_secs(4));
        assert_eq!(parse_duration("4s").unwrap(), Duration::from_secs(4));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "x", "-1", "5h"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn key_size_must_fit_the_key_space() {
        // Keys 0..=999 need 3 digits after the `k`.
        assert!(parse(&["--keys", "1000", "--key-size", "3"]).is_err());
        assert!(parse(&["--keys", "1000", "--key-size", "4"]).is_ok());
        assert!(parse(&["--keys", "1001", "--key-size", "4"]).is_err());
        assert!(parse(&["--key-size", "251"]).is_err());
        let error = parse(&["--keys", "100000", "--key-size", "3"]).unwrap_err();
        assert!(error.to_string().contains("too small"), "{error}");
    }

    #[test]
    fn numbers_and_rate() {
        assert!(parse(&["--connections", "0"]).is_err());
        assert!(parse(&["--pipeline", "0"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--rate", "-5"]).is_err());
        let args = parse(&["--rate", "1000", "--threads", "2", "--pipeline", "8"]).unwrap();
        assert_eq!(args.rate, Some(1000.0));
        assert_eq!(args.threads, Some(2));
        assert_eq!(args.pipeline, 8);
    }
}
