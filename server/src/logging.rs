//! Logging: every message the node writes goes through `tracing` to stderr,
//! in one of two formats, including the `listening on` event that tells
//! scripts and tests the node is ready.
//!
//! The default filter shows mcstore's own crates at the chosen level and
//! everything else (sled, tokio) at `warn`, so `-vv` is mcstore's debug
//! output rather than sled's internals. `RUST_LOG`, when set, replaces the
//! filter entirely (`RUST_LOG=debug` still shows sled's debug output).
//!
//! Readiness: once the client port is bound, the node logs `listening on`
//! with an `addr` field; in text `... INFO mcstore: listening on
//! addr=127.0.0.1:11211`, in JSON `{..."fields":{"message":"listening on",
//! "addr":"127.0.0.1:11211"}...}`. [`listening_addr`] reads either.

use std::io::IsTerminal;
use std::net::SocketAddr;

use tracing_subscriber::EnvFilter;

/// The crates whose events the default filter shows at the chosen level.
pub const OWN_CRATES: &[&str] = &[
    "mcstore",
    "mcstore_server",
    "mcstore_storage",
    "mcstore_protocol",
    "mcstore_cluster",
];

/// The message of the readiness event.
pub const LISTENING: &str = "listening on";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `timestamp LEVEL target: message field=value ...`, for people.
    Text,
    /// One JSON object a line (`timestamp`, `level`, `fields`, `target`,
    /// `span`), for log shippers.
    Json,
}

/// The level of mcstore's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum LogLevel {
    /// Failures only.
    Error,
    /// Failures and warnings.
    Warn,
    /// Start, stop and other rare events (the default).
    Info,
    /// Connections and unusual requests.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The name `tracing` filters use.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// The default filter: `warn` for dependencies, `level` for mcstore's crates.
pub fn default_filter(level: LogLevel) -> String {
    let mut filter = String::from("warn");
    for krate in OWN_CRATES {
        filter.push_str(&format!(",{krate}={}", level.name()));
    }
    filter
}

/// Installs the global subscriber: stderr, `format`, and `RUST_LOG` or the
/// default filter for `level`.
pub fn init(format: LogFormat, level: LogLevel) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text).unwrap_or_else(|err| {
            eprintln!("mcstore: ignoring RUST_LOG={text:?} ({err}); using the default filter");
            EnvFilter::new(default_filter(level))
        }),
        _ => EnvFilter::new(default_filter(level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// An error and its causes on one line, leaving out a cause whose text the
/// message already contains (typed errors often quote their source).
pub fn describe_error(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// The address of a readiness line in either format (`listening on
/// addr=HOST:PORT`, or JSON with `"message":"listening on"` and `"addr"`).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    if let Some(rest) = line.split(" listening on addr=").nth(1) {
        return rest.split_whitespace().next()?.parse().ok();
    }
    if line.contains("\"message\":\"listening on\"") {
        let rest = line.split("\"addr\":\"").nth(1)?;
        return rest.split('"').next()?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_quietens_dependencies() {
        let filter = default_filter(LogLevel::Debug);
        assert!(filter.starts_with("warn,"));
        assert!(filter.contains("mcstore_storage=debug"));
        assert!(EnvFilter::try_new(&filter).is_ok());
    }

    #[test]
    fn readiness_is_read_from_both_formats() {
        let text = "2026-01-01T00:00:00.000001Z  INFO mcstore: listening on addr=127.0.0.1:4242";
        assert_eq!(
            listening_addr(text),
            Some("127.0.0.1:4242".parse().unwrap())
        );
        let json = r#"{"timestamp":"t","level":"INFO","fields":{"message":"listening on","addr":"[::1]:5"},"target":"mcstore"}"#;
        assert_eq!(listening_addr(json), Some("[::1]:5".parse().unwrap()));
        assert_eq!(listening_addr("INFO mcstore: store open took_ms=3"), None);
    }
}
