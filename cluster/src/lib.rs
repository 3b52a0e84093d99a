//! `mcstore-cluster`: where keys live in a cluster of memcache servers.
//!
//! - [`ring`]: a ketama consistent-hash ring (MD5, weighted) whose key to
//!   server mapping is identical to libmemcached's `KETAMA_WEIGHTED` mode and
//!   to twemproxy's `distribution: ketama` with `hash: md5`.
//! - [`membership`]: which nodes are in the cluster and whether they answer
//!   (SWIM gossip over UDP with foca), each member's metadata, and the ring
//!   of the members that have not left.
//! - [`topology`]: the ring as a node routes with it: each key's replica
//!   set, and where a request for it goes.
//! - [`replication`]: shipping every client write to the key's other
//!   replicas from the change stream, hinted handoff, range transfers.
//! - [`transfers`]: durable progress of range transfers.
//! - [`peer`]: node-to-node connections (handshake with the cluster secret,
//!   checksummed frames, forwarded requests, a pipelined connection pool).
//!
//! # Layout
//! `ring.rs` is pure computation; `membership/` keeps its pure parts
//! (identity, codec, wire framing, view) apart from the one tokio task that
//! does the I/O (`membership/driver.rs`).
#![deny(missing_docs)]

pub mod membership;
pub mod peer;
pub mod replication;
pub mod ring;
pub mod topology;
pub mod transfers;

pub use membership::{
    ring_from_view, Member, MemberState, Membership, MembershipConfig, MembershipView, Timings,
};
pub use ring::{Ring, RingError, ServerSpec};
