//! `mcstore-storage`: one node's data. The write-ahead log, group commit,
//! the semantics of every write, versioned records with tombstones, and the
//! change stream a replica follows, on an embedded engine (sled by
//! default, or fjall).
//!
//! It depends on nothing from the wire: the server lowers text and meta
//! commands into [`ops::Operation`]s and renders [`ops::Outcome`]s into
//! replies; the protocol's item rules come in through [`ItemRules`].
//!
//! # Layout
//! - [`store`]: opening a data directory ([`Store::open`]), the read path,
//!   [`Store::enqueue`] for writes, the change stream and its cursors.
//! - [`commit`]: the commit pipeline (group commit: log, sync, publish,
//!   apply, answer); [`txn`]: the transaction view each operation is
//!   evaluated over; [`ops`]: the semantics of every operation;
//!   [`handoff`]: the queue and one-shot completions between connections
//!   and the pipeline (loom-checked).
//! - [`record`]: the stored record format (items and tombstones, with
//!   versions and a crc32); [`version`]: hybrid clock timestamps, node ids,
//!   versions; [`expiry`]: absolute expiry; [`flush`]: `flush_all` markers.
//! - [`wal`]: the write-ahead log; [`wal::stream`]: the change-stream
//!   reader; [`wal::cursors`]: durable cursors and log retention.
//! - [`engine`]: the engine trait, sled and fjall, and the record cache in
//!   front of it; [`recovery`]: log replay on start; [`background`]: the
//!   checkpointer and the reclaimer; [`hashed`]: maps by a key's hash.
//! - [`config`], [`error`], [`stats`], [`clock`], [`datadir`]: settings,
//!   typed errors, counters, time, the directory lock and the node id.
#![deny(missing_docs)]

pub mod background;
pub mod clock;
pub mod commit;
pub mod config;
pub mod datadir;
pub mod engine;
pub mod error;
pub mod expiry;
pub mod flush;
pub mod handoff;
pub mod hashed;
pub mod ops;
pub mod record;
pub mod recovery;
pub mod stats;
pub mod store;
pub mod txn;
pub mod version;
pub mod wal;

pub use config::{EngineKind, ItemRules, StoreConfig, SyncMode};
pub use error::{ReadError, StoreError, WriteError};
pub use expiry::Expiry;
pub use ops::{Operation, Outcome};
pub use record::Record;
pub use store::{Lookup, PendingWrite, ScanPage, Store};
pub use version::{NodeId, Timestamp, Version};
