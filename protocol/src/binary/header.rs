//! The 24-byte packet header, the opcodes memcached 1.6.18 knows and the
//! status codes it answers with.
//!
//! Every multi-byte field is big-endian on the wire. The layout (offsets in
//! bytes):
//!
//! | offset | request | response |
//! | --- | --- | --- |
//! | 0 | magic `0x80` | magic `0x81` |
//! | 1 | opcode | opcode (echoed) |
//! | 2–3 | key length | key length |
//! | 4 | extras length | extras length |
//! | 5 | data type (ignored by memcached) | data type (always 0) |
//! | 6–7 | vbucket id (ignored) | status |
//! | 8–11 | total body length (extras + key + value) | total body length |
//! | 12–15 | opaque | opaque (echoed) |
//! | 16–23 | cas | cas |

use bytes::BufMut;

/// Length of a request or response header.
pub const HEADER_LEN: usize = 24;

/// The first byte of every request. memcached picks a connection's protocol
/// from its first byte: this one makes it a binary connection for good.
pub const REQUEST_MAGIC: u8 = 0x80;

/// The first byte of every response.
pub const RESPONSE_MAGIC: u8 = 0x81;

/// A request or response header, decoded field by field (no validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// [`REQUEST_MAGIC`] or [`RESPONSE_MAGIC`] (anything else is malformed).
    pub magic: u8,
    /// The opcode byte (see [`Opcode`]).
    pub opcode: u8,
    /// Length of the key, which follows the extras.
    pub key_len: u16,
    /// Length of the extras, which follow the header.
    pub extras_len: u8,
    /// The data type; memcached ignores it in requests and sends 0.
    pub data_type: u8,
    /// The vbucket id of a request (ignored by memcached) or the status of a
    /// response (see [`Status`]).
    pub vbucket_or_status: u16,
    /// Extras, key and value together.
    pub body_len: u32,
    /// Chosen by the client, echoed in every response to the request.
    pub opaque: u32,
    /// The cas unique: a condition in a request (0 = none), the item's cas
    /// in a response.
    pub cas: u64,
}

impl Header {
    /// Decodes the first [`HEADER_LEN`] bytes of `input`; `None` if there
    /// are fewer.
    pub fn decode(input: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER_LEN] = input.get(..HEADER_LEN)?.try_into().ok()?;
        let u16_at = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut cas = [0; 8];
        cas.copy_from_slice(&bytes[16..24]);
        Some(Header {
            magic: bytes[0],
            opcode: bytes[1],
            key_len: u16_at(2),
            extras_len: bytes[4],
            data_type: bytes[5],
            vbucket_or_status: u16_at(6),
            body_len: u32_at(8),
            opaque: u32_at(12),
            cas: u64::from_be_bytes(cas),
        })
    }

    /// Writes the header in wire format.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(self.magic);
        out.put_u8(self.opcode);
        out.put_u16(self.key_len);
        out.put_u8(self.extras_len);
        out.put_u8(self.data_type);
        out.put_u16(self.vbucket_or_status);
        out.put_u32(self.body_len);
        out.put_u32(self.opaque);
        out.put_u64(self.cas);
    }

    /// Header, extras and key: what memcached reads before it looks at a
    /// request (the value, if any, is read afterwards).
    pub fn fixed_len(&self) -> usize {
        HEADER_LEN + usize::from(self.extras_len) + usize::from(self.key_len)
    }
}

/// Declares [`Opcode`] and its byte mapping from one list.
macro_rules! opcodes {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// An opcode of the binary protocol that memcached 1.6.18 knows.
        ///
        /// The `Q` ("quiet") variants send no response on success (and the
        /// quiet gets none on a miss); errors are always answered (see
        /// [`Opcode::suppresses`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[repr(u8)]
        pub enum Opcode {
            $($(#[$doc])* $name = $code,)*
        }

        impl Opcode {
            /// Every opcode, in code order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$name,)*];

            /// The opcode for a byte, if memcached 1.6.18 knows it.
            pub fn from_u8(code: u8) -> Option<Opcode> {
                match code {
                    $($code => Some(Opcode::$name),)*
                    _ => None,
                }
            }
        }
    };
}

opcodes! {
    /// `get`: the value and flags; a miss answers "Not found".
    Get = 0x00,
    /// `set` (a non-zero cas makes it a cas command).
    Set = 0x01,
    /// `add`.
    Add = 0x02,
    /// `replace`.
    Replace = 0x03,
    /// `delete` (a non-zero cas must match).
    Delete = 0x04,
    /// `incr`, with an initial value and an expiration for a missing key.
    Increment = 0x05,
    /// `decr`, like [`Opcode::Increment`].
    Decrement = 0x06,
    /// Answer, then close the connection.
    Quit = 0x07,
    /// `flush_all`, with an optional 4-byte delay extra.
    Flush = 0x08,
    /// Quiet [`Opcode::Get`]: a miss sends nothing.
    GetQ = 0x09,
    /// Answer at once; used to end a pipeline of quiet commands.
    Noop = 0x0a,
    /// The server version as the value.
    Version = 0x0b,
    /// [`Opcode::Get`] that also returns the key (on a miss too).
    GetK = 0x0c,
    /// Quiet [`Opcode::GetK`].
    GetKQ = 0x0d,
    /// `append`.
    Append = 0x0e,
    /// `prepend`.
    Prepend = 0x0f,
    /// `stats`, or one group of it (the key).
    Stat = 0x10,
    /// Quiet [`Opcode::Set`].
    SetQ = 0x11,
    /// Quiet [`Opcode::Add`].
    AddQ = 0x12,
    /// Quiet [`Opcode::Replace`].
    ReplaceQ = 0x13,
    /// Quiet [`Opcode::Delete`].
    DeleteQ = 0x14,
    /// Quiet [`Opcode::Increment`].
    IncrementQ = 0x15,
    /// Quiet [`Opcode::Decrement`].
    DecrementQ = 0x16,
    /// Quiet [`Opcode::Quit`]: close without answering.
    QuitQ = 0x17,
    /// Quiet [`Opcode::Flush`].
    FlushQ = 0x18,
    /// Quiet [`Opcode::Append`].
    AppendQ = 0x19,
    /// Quiet [`Opcode::Prepend`].
    PrependQ = 0x1a,
    /// `verbosity`: defined by the protocol and by clients, but memcached
    /// 1.6.18 does not serve it (it answers "Unknown command"), so the
    /// request parser treats it as unknown.
    Verbosity = 0x1b,
    /// `touch`: a new expiration; the response carries the flags.
    Touch = 0x1c,
    /// Get and touch.
    Gat = 0x1d,
    /// Quiet [`Opcode::Gat`].
    GatQ = 0x1e,
    /// SASL: list the mechanisms.
    SaslListMechs = 0x20,
    /// SASL: start an authentication (key: the mechanism, value: the data).
    SaslAuth = 0x21,
    /// SASL: continue an authentication.
    SaslStep = 0x22,
    /// [`Opcode::Gat`] that also returns the key.
    GatK = 0x23,
    /// Quiet [`Opcode::GatK`].
    GatKQ = 0x24,
}

impl Opcode {
    /// The byte on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether this is a quiet variant.
    pub fn is_quiet(self) -> bool {
        use Opcode::*;
        matches!(
            self,
            GetQ | GetKQ
                | SetQ
                | AddQ
                | ReplaceQ
                | DeleteQ
                | IncrementQ
                | DecrementQ
                | QuitQ
                | FlushQ
                | AppendQ
                | PrependQ
                | GatQ
                | GatKQ
        )
    }

    /// Whether memcached sends no response with this status for this
    /// opcode: the quiet gets (`GetQ`, `GetKQ`, `GatQ`, `GatKQ`) suppress
    /// only a miss ([`Status::KEY_NOT_FOUND`]), every other quiet opcode
    /// only success ([`Status::NO_ERROR`]). Errors are always sent.
    pub fn suppresses(self, status: Status) -> bool {
        use Opcode::*;
        match self {
            GetQ | GetKQ | GatQ | GatKQ => status == Status::KEY_NOT_FOUND,
            op if op.is_quiet() => status == Status::NO_ERROR,
            _ => false,
        }
    }
}

/// A response status. A newtype rather than an enum so that a client can
/// carry any code a server sends; the constants are the codes memcached
/// 1.6.18 uses (`protocol_binary.h`). The default is [`Status::NO_ERROR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(pub u16);

impl Status {
    /// Success.
    pub const NO_ERROR: Status = Status(0x0000);
    /// The key does not exist (or holds no live item).
    pub const KEY_NOT_FOUND: Status = Status(0x0001);
    /// The key exists: a failed `add`, or a cas mismatch.
    pub const KEY_EXISTS: Status = Status(0x0002);
    /// The item would be larger than the item size limit.
    pub const VALUE_TOO_LARGE: Status = Status(0x0003);
    /// A malformed request (memcached then closes the connection).
    pub const INVALID_ARGUMENTS: Status = Status(0x0004);
    /// `append`/`prepend` to a missing key (and other stores that fail).
    pub const ITEM_NOT_STORED: Status = Status(0x0005);
    /// incr/decr on a value that is not a number.
    pub const NON_NUMERIC: Status = Status(0x0006);
    /// Authentication failed, or a command before authentication.
    pub const AUTH_ERROR: Status = Status(0x0020);
    /// The SASL exchange goes on: send a [`Opcode::SaslStep`].
    pub const AUTH_CONTINUE: Status = Status(0x0021);
    /// An opcode the server does not serve, or a body too short for its
    /// key and extras.
    pub const UNKNOWN_COMMAND: Status = Status(0x0081);
    /// The server could not allocate memory for the request.
    pub const OUT_OF_MEMORY: Status = Status(0x0082);

    /// The text memcached puts in the body of an error response with this
    /// status when it has no more specific message (`write_bin_error`).
    /// `None` for success and [`Status::AUTH_CONTINUE`], whose bodies are
    /// data, and for codes memcached does not send.
    pub fn message(self) -> Option<&'static str> {
        Some(match self {
            Status::KEY_NOT_FOUND => "Not found",
            Status::KEY_EXISTS => "Data exists for key.",
            Status::VALUE_TOO_LARGE => "Too large.",
            Status::INVALID_ARGUMENTS => "Invalid arguments",
            Status::ITEM_NOT_STORED => "Not stored.",
            Status::NON_NUMERIC => "Non-numeric server-side value for incr or decr",
            Status::AUTH_ERROR => "Auth failure.",
            Status::UNKNOWN_COMMAND => "Unknown command",
            Status::OUT_OF_MEMORY => "Out of memory",
            _ => return None,
        })
    }
}
