//! `mcstore-cluster`: where keys live in a cluster of memcache servers.
//!
//! - [`ring`]: a ketama consistent-hash ring (MD5, weighted) whose key to
//!   server mapping is identical to libmemcached's `KETAMA_WEIGHTED` mode and
//!   to twemproxy's `distribution: ketama` with `hash: md5`.
#![deny(missing_docs)]

pub mod ring;

pub use ring::{Ring, RingError, ServerSpec};
