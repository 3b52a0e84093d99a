//! The memcached binary protocol as memcached 1.6.18 speaks it: packet
//! headers, one type per command, the incremental request parser (server
//! side), response encoding with memcached's exact bytes, and the
//! incremental response decoder (client side). No I/O.
//!
//! memcached decides a connection's protocol from its first byte:
//! [`REQUEST_MAGIC`] (`0x80`) makes it a binary connection for its whole
//! life; anything else a text one (so a first byte `0x81` gets the text
//! protocol's `ERROR`). On a binary connection every request is a 24-byte
//! [`Header`] followed by extras, key and value.
//!
//! # Layout
//! - [`header`]: [`Header`], [`Opcode`], [`Status`] and the magic bytes.
//! - [`request`]: [`BinaryRequest`], the [`Command`] enum and one type per
//!   command, their encoding (for clients and tests).
//! - [`parse`]: [`parse_binary_request`] and the [`BinaryFrame`] it yields:
//!   a request, or exactly what memcached does with a malformed one
//!   (answer and close, answer and discard, close silently).
//! - [`response`]: [`BinaryResponse`], its constructors and encoder (for the
//!   server), [`encode_hit_header`], and [`parse_binary_response`] (for
//!   clients).
//! - [`sasl`]: the `PLAIN` mechanism's message.
//!
//! # What a server does with each frame
//!
//! | frame | memcached 1.6.18 |
//! | --- | --- |
//! | [`BinaryFrame::Request`] | executes it and answers (see [`response`]), unless [`Opcode::suppresses`] the status; `noop` flushes, `quit` closes after answering |
//! | [`BinaryFrame::ProtocolError`] | answers [`BinaryFrame::response`], then closes |
//! | [`BinaryFrame::UnknownCommand`] | discards `discard` bytes, then answers [`BinaryFrame::response`] |
//! | [`BinaryFrame::TooLarge`] | unlinks the key for `set`/`setq`, discards `discard` bytes, then answers [`TooLarge::response`] |
//! | [`BinaryFrame::Close`] | closes without answering |
//!
//! Every check is made from the header, the extras and the key, before the
//! value is buffered; the extras and key are bounded by
//! [`READ_BUFFER_SIZE`], the value by [`crate::Limits::max_item_size`].

pub mod header;
pub mod parse;
pub mod request;
pub mod response;
pub mod sasl;

pub use header::{Header, Opcode, Status, HEADER_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};
pub use parse::{parse_binary_request, BinaryCloseReason, BinaryFrame, TooLarge, READ_BUFFER_SIZE};
pub use request::{
    Arithmetic, BinaryRequest, Command, Concat, Delete, Flush, Get, Quit, SaslAuth, Stat,
    StatGroup, Store, StoreMode, Touch,
};
pub use response::{encode_hit_header, parse_binary_response, BinaryResponse, BinaryResponseError};
pub use sasl::{PlainCredentials, MAX_SASL_MECHANISM_LEN, PLAIN};

#[cfg(test)]
mod tests;
