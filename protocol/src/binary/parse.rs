//! The incremental binary request parser.
//!
//! [`parse_binary_request`] looks at the bytes buffered so far and returns
//! a [`BinaryFrame`] with the number of bytes it used, or
//! [`Decoded::Incomplete`] when it needs more. It follows memcached 1.6.18's
//! `try_read_command_binary` and `dispatch_bin_command` check by check:
//!
//! 1. Nothing happens before the 24-byte header is buffered. A header whose
//!    magic is not `0x80` closes the connection without a response (and
//!    memcached drops the responses it has not sent yet).
//! 2. memcached then buffers the header, the extras and the key in its
//!    16 KiB read buffer ([`READ_BUFFER_SIZE`]), never the value. A frame
//!    whose header, extras and key do not fit closes the connection,
//!    without a response, once the buffer is full.
//! 3. With the key buffered: a body shorter than key + extras is answered
//!    "Unknown command" and the connection closed; a key longer than 250
//!    bytes, "Invalid arguments" and closed.
//! 4. An opcode memcached does not serve (including `verbosity`, 0x1b) is
//!    answered "Unknown command" and then `body_len` bytes are discarded,
//!    counted from the end of the key: memcached has already consumed the
//!    extras and the key, so it discards that many bytes more than the rest
//!    of the frame (a quirk kept here; see [`BinaryFrame::UnknownCommand`]).
//! 5. Each known opcode checks its key, extras and body lengths (for
//!    example `get` needs no extras, a key, and a body of exactly the key);
//!    a mismatch is answered "Invalid arguments" and the connection closed.
//! 6. `stat` and the touch family (`touch`, `gat*`) do not check the body
//!    length beyond the key and extras: memcached consumes header, extras
//!    and key only, and parses any further body bytes as the next request.
//!    This parser does the same.
//! 7. Commands with a value (stores, `append`/`prepend`, SASL auth/step)
//!    check the item size from the header, before the value is buffered:
//!    too large, and the frame is [`BinaryFrame::TooLarge`], the value to be
//!    discarded as it arrives. Otherwise the frame is complete only once the
//!    whole value is buffered.
//!
//! The data type and vbucket fields are ignored, as memcached ignores them.

use bytes::Bytes;

use super::header::{Header, Opcode, Opcode as Op, Status, HEADER_LEN, REQUEST_MAGIC};
use super::request::{
    Arithmetic, BinaryRequest, Command, Concat, Delete, Flush, Get, Quit, SaslAuth, Stat, Store,
    StoreMode, Touch,
};
use super::response::BinaryResponse;
use super::sasl::MAX_SASL_MECHANISM_LEN;
use crate::parse::{item_size, Decoded};
use crate::{Limits, MAX_KEY_LENGTH};

/// memcached's `READ_BUFFER_SIZE`: its read buffer for binary connections,
/// which must hold a request's header, extras and key at once.
pub const READ_BUFFER_SIZE: usize = 16 * 1024;

/// What the connection should do with the next bytes of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryFrame {
    /// A well-formed request.
    Request(BinaryRequest),
    /// A malformed request: send [`BinaryFrame::response`] (whatever the
    /// opcode, quiet or not), then close the connection.
    ProtocolError {
        /// The opcode byte as sent (echoed in the response).
        opcode: u8,
        /// The opaque (echoed).
        opaque: u32,
        /// [`Status::UNKNOWN_COMMAND`] for a body shorter than key and
        /// extras, [`Status::INVALID_ARGUMENTS`] otherwise.
        status: Status,
    },
    /// An opcode memcached does not serve: send [`BinaryFrame::response`]
    /// ("Unknown command") and discard the next `discard` bytes of input as
    /// they arrive; the connection stays open. memcached sends the response
    /// only once all of them have arrived.
    UnknownCommand {
        /// The opcode byte as sent.
        opcode: u8,
        /// The opaque.
        opaque: u32,
        /// Bytes to discard after the key: the header's body length (so
        /// extras + key bytes more than the frame's value, memcached's
        /// quirk), or 0 if it is 2^31 or more (negative as memcached's `int`).
        discard: u64,
    },
    /// A command with a value too large for [`Limits::max_item_size`].
    /// See [`TooLarge`].
    TooLarge(TooLarge),
    /// Close the connection without a response.
    Close(BinaryCloseReason),
}

/// A store, `append`/`prepend`, or SASL auth/step whose item would be
/// larger than [`Limits::max_item_size`] (as [`item_size`] counts it).
///
/// memcached answers [`TooLarge::response`] after discarding the next
/// `discard` bytes of input (the value) as they arrive, and the connection
/// stays open. For `set`/`setq` it first removes the key's current item
/// ([`TooLarge::unlinks`]): a failed set leaves no stale value behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// The opcode as sent.
    pub opcode: Opcode,
    /// The opaque.
    pub opaque: u32,
    /// The key (for SASL, the mechanism).
    pub key: Bytes,
    /// Bytes to discard: the value's length, or 0 when the header's body
    /// length makes it 2^31 or more (memcached's `int` goes negative and it
    /// discards nothing, parsing what follows as requests).
    pub discard: u64,
}

impl TooLarge {
    /// Whether the key's current item must be removed (`set`, `setq`).
    pub fn unlinks(&self) -> bool {
        matches!(self.opcode, Opcode::Set | Opcode::SetQ)
    }

    /// memcached's response: "Too large." ([`Status::VALUE_TOO_LARGE`]) for
    /// stores, also the quiet ones. For SASL auth/step it depends on the
    /// server: without SASL, "Unknown command"; with SASL, "Invalid
    /// arguments" for a mechanism longer than [`MAX_SASL_MECHANISM_LEN`],
    /// "Out of memory" otherwise.
    pub fn response(&self, sasl_enabled: bool) -> BinaryResponse {
        let status = match self.opcode {
            Opcode::SaslAuth | Opcode::SaslStep => {
                if !sasl_enabled {
                    Status::UNKNOWN_COMMAND
                } else if self.key.len() > MAX_SASL_MECHANISM_LEN {
                    Status::INVALID_ARGUMENTS
                } else {
                    Status::OUT_OF_MEMORY
                }
            }
            _ => Status::VALUE_TOO_LARGE,
        };
        BinaryResponse::error(self.opcode.code(), self.opaque, status)
    }
}

/// Why the parser asks to close the connection without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryCloseReason {
    /// A header whose first byte is not [`REQUEST_MAGIC`]. memcached closes
    /// at once, dropping the responses it has not sent yet.
    BadMagic,
    /// Header, extras and key longer than [`READ_BUFFER_SIZE`], and that
    /// much is buffered. memcached has sent every earlier response (it
    /// flushes them whenever it waits for input) and closes.
    ReadBufferFull,
}

impl BinaryFrame {
    /// The response for [`BinaryFrame::ProtocolError`] and
    /// [`BinaryFrame::UnknownCommand`], with memcached's bytes; `None` for
    /// the other frames (a request's response depends on the store;
    /// [`TooLarge::response`] on the server's SASL setting).
    pub fn response(&self) -> Option<BinaryResponse> {
        match *self {
            BinaryFrame::ProtocolError {
                opcode,
                opaque,
                status,
            } => Some(BinaryResponse::error(opcode, opaque, status)),
            BinaryFrame::UnknownCommand { opcode, opaque, .. } => Some(BinaryResponse::error(
                opcode,
                opaque,
                Status::UNKNOWN_COMMAND,
            )),
            _ => None,
        }
    }
}

/// A body length as memcached's `int`: lengths of 2^31 and more are
/// negative there, and a negative discard discards nothing.
fn as_memcached_int(len: u32) -> u64 {
    if len <= i32::MAX as u32 {
        u64::from(len)
    } else {
        0
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(word)
}

/// Parses the next request of a binary connection from `input`.
///
/// `Complete(frame, used)`: `used` bytes belong to the frame (for a
/// [`BinaryFrame::Close`], 0). For [`BinaryFrame::TooLarge`] and
/// [`BinaryFrame::UnknownCommand`], `used` covers header, extras and key,
/// and the frame's `discard` bytes after them are still to be dropped.
pub fn parse_binary_request(input: &[u8], limits: &Limits) -> Decoded<BinaryFrame> {
    let Some(header) = Header::decode(input) else {
        return Decoded::Incomplete;
    };
    if header.magic != REQUEST_MAGIC {
        return Decoded::Complete(BinaryFrame::Close(BinaryCloseReason::BadMagic), 0);
    }
    let fixed = header.fixed_len();
    if fixed > READ_BUFFER_SIZE {
        return if input.len() >= READ_BUFFER_SIZE {
            Decoded::Complete(BinaryFrame::Close(BinaryCloseReason::ReadBufferFull), 0)
        } else {
            Decoded::Incomplete
        };
    }
    if input.len() < fixed {
        return Decoded::Incomplete;
    }
    let parts = Parts {
        header,
        extras: &input[HEADER_LEN..HEADER_LEN + usize::from(header.extras_len)],
        key: &input[HEADER_LEN + usize::from(header.extras_len)..fixed],
        value: &input[fixed..],
        fixed,
    };
    parts.dispatch(limits)
}

/// A request whose header, extras and key are buffered.
struct Parts<'a> {
    header: Header,
    extras: &'a [u8],
    key: &'a [u8],
    /// Whatever is buffered after the key.
    value: &'a [u8],
    fixed: usize,
}

impl Parts<'_> {
    fn dispatch(&self, limits: &Limits) -> Decoded<BinaryFrame> {
        let header = &self.header;
        let key_len = u32::from(header.key_len);
        let extras_len = u32::from(header.extras_len);
        let body_len = header.body_len;
        if key_len + extras_len > body_len {
            return self.protocol_error(Status::UNKNOWN_COMMAND);
        }
        if self.key.len() > MAX_KEY_LENGTH {
            return self.protocol_error(Status::INVALID_ARGUMENTS);
        }
        let Some(opcode) = Opcode::from_u8(header.opcode) else {
            return self.unknown_command();
        };
        let value_len = body_len - key_len - extras_len;
        let no_body = body_len == 0;
        let key = || Bytes::copy_from_slice(self.key);
        let quiet = opcode.is_quiet();
        let command = match opcode {
            Op::Verbosity => return self.unknown_command(),
            Op::Version if no_body => Command::Version,
            Op::Noop if no_body => Command::Noop,
            Op::Quit | Op::QuitQ if no_body => Command::Quit(Quit { quiet }),
            Op::SaslListMechs if no_body => Command::SaslListMechs,
            Op::Flush | Op::FlushQ
                if key_len == 0 && body_len == extras_len && matches!(extras_len, 0 | 4) =>
            {
                Command::Flush(Flush {
                    delay: (extras_len == 4).then(|| be_u32(self.extras)),
                    quiet,
                })
            }
            Op::Get | Op::GetQ | Op::GetK | Op::GetKQ
                if extras_len == 0 && key_len > 0 && value_len == 0 =>
            {
                Command::Get(Get {
                    key: key(),
                    with_key: matches!(opcode, Op::GetK | Op::GetKQ),
                    quiet,
                    touch: None,
                })
            }
            Op::Gat | Op::GatQ | Op::GatK | Op::GatKQ if extras_len == 4 && key_len > 0 => {
                Command::Get(Get {
                    key: key(),
                    with_key: matches!(opcode, Op::GatK | Op::GatKQ),
                    quiet,
                    touch: Some(be_u32(self.extras)),
                })
            }
            Op::Touch if extras_len == 4 && key_len > 0 => Command::Touch(Touch {
                key: key(),
                exptime: be_u32(self.extras),
            }),
            Op::Delete | Op::DeleteQ if extras_len == 0 && key_len > 0 && value_len == 0 => {
                Command::Delete(Delete {
                    key: key(),
                    cas: header.cas,
                    quiet,
                })
            }
            Op::Increment | Op::IncrementQ | Op::Decrement | Op::DecrementQ
                if extras_len == 20 && key_len > 0 && value_len == 0 =>
            {
                Command::Arithmetic(Arithmetic {
                    key: key(),
                    increment: matches!(opcode, Op::Increment | Op::IncrementQ),
                    delta: be_u64(&self.extras[0..8]),
                    initial: be_u64(&self.extras[8..16]),
                    exptime: be_u32(&self.extras[16..20]),
                    cas: header.cas,
                    quiet,
                })
            }
            Op::Stat if extras_len == 0 => Command::Stat(Stat { key: key() }),
            Op::Set | Op::SetQ | Op::Add | Op::AddQ | Op::Replace | Op::ReplaceQ
                if extras_len == 8 && key_len > 0 =>
            {
                let flags = be_u32(&self.extras[0..4]);
                let exptime = be_u32(&self.extras[4..8]);
                let mode = match opcode {
                    Op::Set | Op::SetQ => StoreMode::Set,
                    Op::Add | Op::AddQ => StoreMode::Add,
                    _ => StoreMode::Replace,
                };
                return self.with_value(opcode, value_len, flags, limits, |value| {
                    Command::Store(Store {
                        mode,
                        key: key(),
                        flags,
                        exptime,
                        value,
                        cas: header.cas,
                        quiet,
                    })
                });
            }
            Op::Append | Op::AppendQ | Op::Prepend | Op::PrependQ
                if extras_len == 0 && key_len > 0 =>
            {
                return self.with_value(opcode, value_len, 0, limits, |value| {
                    Command::Concat(Concat {
                        prepend: matches!(opcode, Op::Prepend | Op::PrependQ),
                        key: key(),
                        value,
                        cas: header.cas,
                        quiet,
                    })
                });
            }
            Op::SaslAuth | Op::SaslStep if extras_len == 0 && key_len > 0 => {
                return self.with_value(opcode, value_len, 0, limits, |data| {
                    Command::SaslAuth(SaslAuth {
                        mechanism: key(),
                        data,
                        step: opcode == Op::SaslStep,
                    })
                });
            }
            _ => return self.protocol_error(Status::INVALID_ARGUMENTS),
        };
        self.complete(command, self.fixed)
    }

    fn complete(&self, command: Command, used: usize) -> Decoded<BinaryFrame> {
        Decoded::Complete(
            BinaryFrame::Request(BinaryRequest {
                opaque: self.header.opaque,
                command,
            }),
            used,
        )
    }

    fn protocol_error(&self, status: Status) -> Decoded<BinaryFrame> {
        Decoded::Complete(
            BinaryFrame::ProtocolError {
                opcode: self.header.opcode,
                opaque: self.header.opaque,
                status,
            },
            self.fixed,
        )
    }

    fn unknown_command(&self) -> Decoded<BinaryFrame> {
        Decoded::Complete(
            BinaryFrame::UnknownCommand {
                opcode: self.header.opcode,
                opaque: self.header.opaque,
                discard: as_memcached_int(self.header.body_len),
            },
            self.fixed,
        )
    }

    /// A command whose value follows the key: too large (decided from the
    /// header), waiting for the value, or complete.
    fn with_value(
        &self,
        opcode: Opcode,
        value_len: u32,
        flags: u32,
        limits: &Limits,
        build: impl FnOnce(Bytes) -> Command,
    ) -> Decoded<BinaryFrame> {
        let fits_int = value_len <= i32::MAX as u32;
        let len = value_len as usize;
        if !fits_int || item_size(self.key.len(), flags, len) > limits.max_item_size as u64 {
            return Decoded::Complete(
                BinaryFrame::TooLarge(TooLarge {
                    opcode,
                    opaque: self.header.opaque,
                    key: Bytes::copy_from_slice(self.key),
                    discard: as_memcached_int(value_len),
                }),
                self.fixed,
            );
        }
        let Some(value) = self.value.get(..len) else {
            return Decoded::Incomplete;
        };
        self.complete(build(Bytes::copy_from_slice(value)), self.fixed + len)
    }
}
