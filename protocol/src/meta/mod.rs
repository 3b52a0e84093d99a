//! The meta protocol of memcached 1.6 (`mg`, `ms`, `md`, `ma`, `mn`, `me`):
//! request types, their parsing and encoding, the meta replies, and the pure
//! helpers a server needs to answer them (base64 keys, return flags).
//!
//! Parsing follows memcached 1.6.18's `proto_text.c` (as shipped by Debian)
//! token by token, including which error string each malformed line gets:
//!
//! - a meta command is any two-byte command starting with `m`; an unknown
//!   second byte, or `mg`/`ms`/`md`/`ma` with no key, is `ERROR`;
//! - every flag is one token whose first byte is the flag; a flag may appear
//!   once (`CLIENT_ERROR duplicate flag`), unknown flags are `CLIENT_ERROR
//!   invalid flag`, and all commands share one flag parser, so a flag that
//!   means nothing to a command (`mg k F5`) is still accepted and validated;
//! - meta errors are always answered, even with `q`: every rejection here is
//!   [`Frame::Rejected`] with `noreply: false`;
//! - `md` and `ma` answer every flag error with `CLIENT_ERROR invalid or
//!   duplicate flag`;
//! - a rejected `ms` still has its data block coming: it becomes
//!   [`Frame::Swallow`], which discards `<datalen> + 2` bytes as they arrive.
//! - three flags of the current `doc/protocol.txt` that 1.6.18 lacks (it
//!   calls them invalid) are parsed as the current memcached parses them:
//!   `E<cas>` (an explicit new cas unique, all commands), `x` (`md`: empty
//!   the value, keep the item) and `N<exptime>` on `ms` (append/prepend
//!   vivify); see `docs/meta-protocol.md`, "Flags newer than 1.6.18".
//!
//! Where memcached reports an error only after it has executed part of a
//! command (an over-long opaque on `mg`/`ma` is noticed while the reply is
//! built), this parser rejects the line up front and nothing is executed.
//! `docs/meta-protocol.md` lists every flag and every difference.
//!
//! # Layout
//! - [`request`]: one type per command, [`MetaRequest`] over them, their
//!   encoding.
//! - `parse`: the parser (reached through [`crate::parse_request`]).
//! - [`reply`]: meta replies, return flags, the debug line.
//! - `base64`: binary keys.

mod base64;
mod parse;
pub mod reply;
pub mod request;

pub use base64::{base64_encoded, decode_base64, encode_base64};
pub(crate) use parse::parse_meta;
pub use reply::*;
pub use request::*;

#[cfg(test)]
mod tests;
