//! Node-to-node connections: the handshake, framing, messages and the
//! connection pool a node uses to forward requests to its peers.
//!
//! Peers talk on each other's client port: a connection that starts with
//! [`handshake::PEER_MAGIC`] (first byte 0xF0, which no memcache client
//! sends) is a peer's. After the handshake (which proves the cluster secret
//! when one is set), both sides exchange length-prefixed, crc32-checked
//! [`frame`]s holding [`message::PeerMessage`]s, bounded in size before
//! anything is buffered. A peer that fails the handshake or sends garbage is
//! disconnected and counted by the accepting node.
//!
//! - [`handshake`]: both sides of the handshake.
//! - [`frame`]: frame encoding and reading.
//! - [`message`]: forwarded requests and their replies.
//! - [`pool`]: pooled, pipelined connections to peers.

pub mod frame;
pub mod handshake;
pub mod message;
pub mod pool;

pub use handshake::{HandshakeError, PEER_FIRST_BYTE, PEER_MAGIC};
pub use message::{Dialect, PeerMessage};
pub use pool::{ForwardCall, PeerError, PeerPool, PoolConfig};
