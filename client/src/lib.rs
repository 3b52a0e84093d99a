//! `mcstore-client`: a cluster-aware client for mcstore (and a plain ketama
//! client for any memcached), on tokio.
//!
//! - **Topology.** [`Client::connect_seeds`] reads `stats cluster` from a
//!   seed and builds the very ring the nodes build (the shared
//!   [`mcstore_cluster::ring`], over the members that have not left, sorted
//!   by advertised address, with their weights), so every request goes
//!   straight to its key's owner and no node forwards it. The topology is
//!   read again periodically and right after a node fails to answer.
//!   [`Client::connect_servers`] places keys over a static list exactly as
//!   libmemcached's `KETAMA_WEIGHTED` does.
//! - **Failover.** A request goes to the key's first live replica (owner
//!   first); when it gets no answer, to the next (the node that takes a
//!   write for a dead owner keeps it as a hint). A write that is not
//!   idempotent (`incr`, `decr`, `append`, `prepend`, `cas`) moves on only
//!   if it was never sent. [`ReadFrom::AnyReplica`] spreads reads.
//! - **Connections.** A small pool per server of pipelined connections:
//!   concurrent requests share them, many in flight at once; every request
//!   has a timeout ([`Config::timeout`]).
//! - **Protocol.** Requests are the protocol crate's types
//!   ([`mcstore_protocol::Request`], the meta types), replies are decoded by
//!   its decoders: there is no second parser. Values are [`bytes::Bytes`].
//!
//! ```no_run
//! use mcstore_client::{Client, Config, ReadFrom};
//! use std::time::Duration;
//!
//! # async fn demo() -> mcstore_client::Result<()> {
//! let config = Config::default()
//!     .timeout(Duration::from_millis(500))
//!     .read_from(ReadFrom::Owner);
//! let client = Client::connect_seeds_with(["127.0.0.1:21211"], config).await?;
//! client.set("user:1", "ada", 0, 3600).await?;
//! let hits = client.get_many(["user:1", "user:2"]).await?;
//! assert_eq!(hits.len(), 1);
//! let owner = client.topology().owner(b"user:1").addr.clone();
//! println!("user:1 lives on {owner}");
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`client`]: [`Client`], its [`Config`], the commands and routing.
//! - [`topology`]: servers, states and the ring, from `stats cluster` or a
//!   static list.
//! - [`meta`]: meta command builders, [`meta::MetaItem`], stale-while-revalidate.
//! - [`dump`]: the backup file format of `mcstore-cli dump` and `restore`.
//! - [`error`]: [`Error`] and [`Result`].
//! - `conn`, `pool`: pipelined connections and the per-server pools.
#![deny(missing_docs)]

pub mod client;
mod conn;
pub mod dump;
pub mod error;
pub mod meta;
mod pool;
pub mod topology;

pub use client::{is_text_key, Client, Config, Item, ReadFrom, ScanPage};
pub use error::{Error, Result};
pub use mcstore_cluster::MemberState;
pub use mcstore_protocol::scan::ScanItem;
pub use topology::{Node, ServerConfig, Topology};
