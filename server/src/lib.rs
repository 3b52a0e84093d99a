//! `mcstore-server`: one mcstore node.
//!
//! # Layout
//! - [`config`]: the command line (every flag also from `MCSTORE_*`);
//!   [`config_file`]: `--config mcstore.toml`; [`listen`]: the addresses
//!   `--listen` accepts, resolving and binding them; [`logging`]: the
//!   subscriber (text or JSON on stderr) and the readiness line;
//!   [`man`]: the man page, generated from the flags.
//! - [`server`]: accepts connections, enforces the connection limit, shuts
//!   down gracefully; [`workers`]: the connection threads, one runtime
//!   each; [`connection`]: one client's read/parse/write loop;
//!   [`session`]: executes requests and keeps replies in order.
//!   [`negotiate`]: a connection's first byte picks the text or the binary
//!   protocol ([`binary_connection`], `session::binary`); [`auth`]: the
//!   password file, SASL and ascii authentication.
//!   The session lowers requests into the storage layer's operations
//!   (`mcstore-storage`, in `server/storage/`) and renders its outcomes.
//! - [`cluster`]: this node's part in a cluster (membership, topology,
//!   peers); [`peer_session`]: requests forwarded here by peers.
//! - [`metrics`]: the Prometheus endpoint (`--metrics-listen`) and its
//!   [`metrics::MetricsSource`] extension point.
//! - [`stats`]: memcached's command counters, and what `stats conns`,
//!   `stats detail` and `watch` need ([`conns`], [`detail`], [`watch`]);
//!   [`access`]: the in-memory
//!   fetched/last-access table of the meta protocol; [`rlimit`]: the
//!   open-file limit.
#![deny(missing_docs)]

pub mod access;
pub mod auth;
pub mod binary_connection;
pub mod cluster;
pub mod cluster_start;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod conns;
pub mod detail;
pub mod listen;
pub mod logging;
pub mod man;
pub mod metrics;
pub mod negotiate;
pub mod peer_session;
pub mod rebalance;
pub mod rlimit;
pub mod server;
pub mod session;
pub mod stats;
pub mod watch;
pub mod workers;
