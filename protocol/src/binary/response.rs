//! Binary responses: [`BinaryResponse`], the constructors that give
//! memcached 1.6.18's exact bytes for each answer (for the server), and the
//! incremental decoder [`parse_binary_response`] (for clients and tests).
//!
//! What memcached sends, by command (the opcode and opaque are always the
//! request's, the data type 0):
//!
//! | answer | status | extras | key | value | cas |
//! | --- | --- | --- | --- | --- | --- |
//! | get/gat hit | 0 | flags (4) | key for `getk*`/`gatk*` | the value | item's |
//! | get/gat miss | 1 | – | – | `Not found` | 0 |
//! | getk/gatk miss | 1 | – | the key | – | 0 |
//! | touch hit | 0 | flags (4) | – | – | item's |
//! | store, append/prepend | 0 | – | – | – | new item's |
//! | delete, flush, quit, noop | 0 | – | – | – | 0 |
//! | incr/decr | 0 | – | – | new value (8, big-endian) | item's |
//! | version | 0 | – | – | e.g. `1.6.18` | 0 |
//! | stat (each) | 0 | – | the name | the value | 0 |
//! | stat (end) | 0 | – | – | – | 0 |
//! | any error | see [`Status`] | – | – | [`Status::message`] | 0 |
//!
//! Quiet opcodes suppress some of these ([`Opcode::suppresses`]).

use bytes::{BufMut, Bytes};

use super::header::{Header, Opcode, Status, HEADER_LEN, RESPONSE_MAGIC};
use crate::parse::Decoded;

/// One response packet, field by field. Any response a server sends can be
/// represented (the opcode is a raw byte, the status any code); the data
/// type is not kept and encodes as 0, as memcached always sends it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinaryResponse {
    /// The request's opcode byte.
    pub opcode: u8,
    /// The status.
    pub status: Status,
    /// The request's opaque.
    pub opaque: u32,
    /// The item's cas, or 0.
    pub cas: u64,
    /// The extras (the 4 flag bytes of a get or touch hit).
    pub extras: Bytes,
    /// The key (getk/gatk, stat names).
    pub key: Bytes,
    /// The value (data, an error message, a version, a counter).
    pub value: Bytes,
}

/// Why a response cannot be decoded. The stream cannot be resynchronised
/// after either: the client should close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryResponseError {
    /// The first byte is not [`RESPONSE_MAGIC`].
    #[error("bad response magic 0x{0:02x}")]
    BadMagic(u8),
    /// The header's key and extras are longer than its body.
    #[error("response body of {body_len} bytes is shorter than its key ({key_len}) and extras ({extras_len})")]
    BodyTooShort {
        /// The key length.
        key_len: u16,
        /// The extras length.
        extras_len: u8,
        /// The body length.
        body_len: u32,
    },
}

impl BinaryResponse {
    /// A success with no body (stores, delete, flush, quit, noop), with the
    /// given cas (the stored item's for stores, else 0).
    pub fn ok(opcode: u8, opaque: u32, cas: u64) -> BinaryResponse {
        BinaryResponse {
            opcode,
            opaque,
            cas,
            ..BinaryResponse::default()
        }
    }

    /// An error with memcached's default message for `status` as the body
    /// (an empty body for a status that has none).
    pub fn error(opcode: u8, opaque: u32, status: Status) -> BinaryResponse {
        let message = status.message().unwrap_or("");
        BinaryResponse::error_with_message(
            opcode,
            opaque,
            status,
            Bytes::from_static(message.as_bytes()),
        )
    }

    /// An error with a specific message, e.g. memcached's
    /// `Out of memory allocating item` ([`Status::OUT_OF_MEMORY`]).
    pub fn error_with_message(
        opcode: u8,
        opaque: u32,
        status: Status,
        message: Bytes,
    ) -> BinaryResponse {
        BinaryResponse {
            opcode,
            status,
            opaque,
            value: message,
            ..BinaryResponse::default()
        }
    }

    /// A get or gat hit: flags as extras, the key for `getk*`/`gatk*`
    /// (`opcode` decides), the value and the item's cas. See
    /// [`encode_hit_header`] to write one without copying the value.
    pub fn hit(
        opcode: Opcode,
        opaque: u32,
        cas: u64,
        flags: u32,
        key: &Bytes,
        value: Bytes,
    ) -> BinaryResponse {
        BinaryResponse {
            opcode: opcode.code(),
            opaque,
            cas,
            extras: Bytes::copy_from_slice(&flags.to_be_bytes()),
            key: if returns_key(opcode) {
                key.clone()
            } else {
                Bytes::new()
            },
            value,
            ..BinaryResponse::default()
        }
    }

    /// A get or gat miss: for `getk`/`gatk` (and their quiet variants) a
    /// [`Status::KEY_NOT_FOUND`] response carrying the key and nothing
    /// else, for the others "Not found". (The quiet variants send nothing
    /// on a miss: see [`Opcode::suppresses`].) Also right for `touch`.
    pub fn miss(opcode: Opcode, opaque: u32, key: &Bytes) -> BinaryResponse {
        if returns_key(opcode) {
            BinaryResponse {
                opcode: opcode.code(),
                status: Status::KEY_NOT_FOUND,
                opaque,
                key: key.clone(),
                ..BinaryResponse::default()
            }
        } else {
            BinaryResponse::error(opcode.code(), opaque, Status::KEY_NOT_FOUND)
        }
    }

    /// A touch hit: the flags as extras and the cas, no value.
    pub fn touched(opaque: u32, cas: u64, flags: u32) -> BinaryResponse {
        BinaryResponse {
            opcode: Opcode::Touch.code(),
            opaque,
            cas,
            extras: Bytes::copy_from_slice(&flags.to_be_bytes()),
            ..BinaryResponse::default()
        }
    }

    /// An incr/decr result: the new value as 8 big-endian bytes of value
    /// (not extras), and the item's cas.
    pub fn counter(opcode: Opcode, opaque: u32, cas: u64, value: u64) -> BinaryResponse {
        BinaryResponse {
            opcode: opcode.code(),
            opaque,
            cas,
            value: Bytes::copy_from_slice(&value.to_be_bytes()),
            ..BinaryResponse::default()
        }
    }

    /// The `version` answer: the version text as the value.
    pub fn version(opaque: u32, version: Bytes) -> BinaryResponse {
        BinaryResponse {
            opcode: Opcode::Version.code(),
            opaque,
            value: version,
            ..BinaryResponse::default()
        }
    }

    /// One statistic of a `stat` answer: the name as the key, the value as
    /// the value.
    pub fn stat(opaque: u32, name: Bytes, value: Bytes) -> BinaryResponse {
        BinaryResponse {
            opcode: Opcode::Stat.code(),
            opaque,
            key: name,
            value,
            ..BinaryResponse::default()
        }
    }

    /// The empty response that ends a `stat` answer.
    pub fn stat_end(opaque: u32) -> BinaryResponse {
        BinaryResponse::ok(Opcode::Stat.code(), opaque, 0)
    }

    /// Whether this is the end of a `stat` answer (or a `stat` error).
    pub fn ends_stat(&self) -> bool {
        self.opcode == Opcode::Stat.code()
            && (self.key.is_empty() || self.status != Status::NO_ERROR)
    }

    /// The new value of a successful incr/decr response.
    pub fn counter_value(&self) -> Option<u64> {
        let bytes: [u8; 8] = self.value[..].try_into().ok()?;
        Some(u64::from_be_bytes(bytes))
    }

    /// The flags of a get/gat/touch hit (its 4 extra bytes).
    pub fn flags(&self) -> Option<u32> {
        let bytes: [u8; 4] = self.extras[..].try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }

    /// The header this response encodes with.
    pub fn header(&self) -> Header {
        Header {
            magic: RESPONSE_MAGIC,
            opcode: self.opcode,
            key_len: u16::try_from(self.key.len()).expect("a binary key is at most 65535 bytes"),
            extras_len: u8::try_from(self.extras.len())
                .expect("binary extras are at most 255 bytes"),
            data_type: 0,
            vbucket_or_status: self.status.0,
            body_len: u32::try_from(self.extras.len() + self.key.len() + self.value.len())
                .expect("a binary body is less than 4 GiB"),
            opaque: self.opaque,
            cas: self.cas,
        }
    }

    /// Writes the response in wire format.
    ///
    /// # Panics
    ///
    /// If the key, extras or body are too long for their header fields
    /// (65,535, 255 and 4 GiB − 1 bytes).
    pub fn encode(&self, out: &mut impl BufMut) {
        self.header().encode(out);
        out.put_slice(&self.extras);
        out.put_slice(&self.key);
        out.put_slice(&self.value);
    }
}

fn returns_key(opcode: Opcode) -> bool {
    matches!(
        opcode,
        Opcode::GetK | Opcode::GetKQ | Opcode::GatK | Opcode::GatKQ
    )
}

/// Writes the header, extras and key of a get or gat hit; the caller then
/// writes the `value_len` bytes of the value (so the server need not copy
/// stored values). Same bytes as [`BinaryResponse::hit`].
pub fn encode_hit_header(
    out: &mut impl BufMut,
    opcode: Opcode,
    opaque: u32,
    cas: u64,
    flags: u32,
    key: &[u8],
    value_len: usize,
) {
    let key: &[u8] = if returns_key(opcode) { key } else { &[] };
    let key_len = u16::try_from(key.len()).expect("a binary key is at most 65535 bytes");
    Header {
        magic: RESPONSE_MAGIC,
        opcode: opcode.code(),
        key_len,
        extras_len: 4,
        data_type: 0,
        vbucket_or_status: Status::NO_ERROR.0,
        body_len: u32::try_from(4 + key.len() + value_len)
            .expect("a binary body is less than 4 GiB"),
        opaque,
        cas,
    }
    .encode(out);
    out.put_u32(flags);
    out.put_slice(key);
}

/// Decodes one response from the start of `input` (client side).
///
/// `Ok(Incomplete)` until the header and the whole body are buffered.
pub fn parse_binary_response(input: &[u8]) -> Result<Decoded<BinaryResponse>, BinaryResponseError> {
    let Some(header) = Header::decode(input) else {
        return Ok(Decoded::Incomplete);
    };
    if header.magic != RESPONSE_MAGIC {
        return Err(BinaryResponseError::BadMagic(header.magic));
    }
    let extras_len = usize::from(header.extras_len);
    let key_len = usize::from(header.key_len);
    let Some(value_len) = (header.body_len as usize).checked_sub(extras_len + key_len) else {
        return Err(BinaryResponseError::BodyTooShort {
            key_len: header.key_len,
            extras_len: header.extras_len,
            body_len: header.body_len,
        });
    };
    let total = HEADER_LEN + extras_len + key_len + value_len;
    let Some(frame) = input.get(..total) else {
        return Ok(Decoded::Incomplete);
    };
    let body = &frame[HEADER_LEN..];
    Ok(Decoded::Complete(
        BinaryResponse {
            opcode: header.opcode,
            status: Status(header.vbucket_or_status),
            opaque: header.opaque,
            cas: header.cas,
            extras: Bytes::copy_from_slice(&body[..extras_len]),
            key: Bytes::copy_from_slice(&body[extras_len..extras_len + key_len]),
            value: Bytes::copy_from_slice(&body[extras_len + key_len..]),
        },
        total,
    ))
}
