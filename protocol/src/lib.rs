//! `mcstore-protocol`: the memcache text, meta and binary protocols as
//! memcached 1.6 speaks them, as pure functions over bytes. No I/O, no tokio, no storage:
//! the server and the clients both build on these types.
//!
//! # Layout
//! - [`parse`]: the incremental request parser ([`parse_request`]) and the
//!   [`Frame`] it yields.
//! - [`request`]: one type per command, [`Request`] over them, and their
//!   encoding (for clients).
//! - [`reply`]: [`Reply`], its encoder (for the server) and the incremental
//!   reply decoder [`parse_reply`] (for clients).
//! - [`meta`]: the meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`): their
//!   request types, meta replies and the helpers a server needs for them.
//! - [`binary`]: the binary protocol: headers, opcodes and status codes, one
//!   type per command, the incremental request parser
//!   ([`parse_binary_request`]), response encoding and the incremental
//!   response decoder ([`parse_binary_response`]).
//! - [`admin`]: `mcstore_cluster`, mcstore's cluster administration
//!   commands (leave, remove a dead member).
//! - [`scan`]: `mcstore_scan`, mcstore's bounded key listing (an admin
//!   command memcached does not have).
//! - [`number`]: numbers parsed with memcached's `strtoul` semantics.
//! - [`exptime`]: how an exptime on the wire becomes an absolute expiry.
#![deny(missing_docs)]

pub mod admin;
pub mod binary;
pub mod exptime;
pub mod meta;
pub mod number;
pub mod parse;
pub mod reply;
pub mod request;
pub mod scan;

pub use admin::ClusterCommand;
pub use binary::{
    parse_binary_request, parse_binary_response, BinaryFrame, BinaryRequest, BinaryResponse,
};
pub use meta::{
    ExptimeChange, MetaArithmetic, MetaArithmeticMode, MetaDebug, MetaDebugInfo, MetaDelete,
    MetaFlag, MetaGet, MetaReply, MetaRequest, MetaSet, MetaSetMode, MetaStatus, ReturnFlag,
    TtlOrder,
};
pub use parse::{item_size, parse_request, CloseReason, Decoded, Frame};
pub use reply::{encode_value_header, parse_reply, Reply, Value};
pub use request::{
    Arithmetic, Delete, FlushAll, Get, Request, Stats, Store, StoreMode, Touch, Verbosity,
};
pub use scan::{parse_scan_reply, Scan, ScanItem, ScanReply};

/// The longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const MAX_KEY_LENGTH: usize = 250;

/// Limits the parser enforces before it buffers anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest item, counted as memcached counts it (see [`item_size`]);
    /// memcached's `-I`, default 1 MiB.
    pub max_item_size: usize,
    /// Bytes a command line may reach without a newline before the
    /// connection is closed, unless it is a `get`/`gets` (memcached: 2048).
    pub max_line: usize,
    /// The longest `get`/`gets` line accepted; memcached has no bound, we
    /// close the connection past this one.
    pub max_get_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_item_size: 1024 * 1024,
            max_line: 2048,
            max_get_line: 1024 * 1024,
        }
    }
}
