//! `mcstore-server`: one mcstore node.
//!
//! # Layout
//! - [`config`]: the command line (every flag also from `MCSTORE_*`).
//! - [`server`]: accepts connections, enforces the connection limit, shuts
//!   down gracefully; [`connection`]: one client's read/parse/write loop;
//!   [`session`]: executes requests and keeps replies in order.
//! - [`store`]: opens a data directory, recovers, serves reads, hands writes
//!   to the [`writer`] (group commit, read-modify-write) through [`handoff`].
//! - [`wal`]: the write-ahead log (the durable, ordered change stream);
//!   [`engine`]: the storage engine trait and sled; [`record`]: the stored
//!   item format with its crc32; [`flush`]: `flush_all` markers.
//! - [`stats`], [`clock`], [`datadir`]: counters, time, the directory lock;
//!   [`access`]: the in-memory fetched/last-access table of the meta protocol.
#![deny(missing_docs)]

pub mod access;
pub mod clock;
pub mod config;
pub mod connection;
pub mod datadir;
pub mod engine;
pub mod flush;
pub mod handoff;
pub mod record;
pub mod rlimit;
pub mod server;
pub mod session;
pub mod stats;
pub mod store;
pub mod wal;
pub mod writer;
