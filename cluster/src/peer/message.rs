//! What peers say to each other, inside frames.
//!
//! ```text
//! forward   = 1 | id:u64 | request bytes   (one memcache text or meta request, exactly as a client sent it)
//! forward-binary = 7 | id:u64 | frame bytes (one binary-protocol request frame)
//! reply     = 2 | id:u64 | reply bytes     (what the node answered, possibly nothing: a quiet
//!                                          binary command or `noreply`)
//! replicate = 3 | id:u64 | count:u32 | count * (key len:u32 | key | record len:u32 | record)
//! transfer  = 4 | id:u64 | (as replicate)  (records of a range transfer)
//! digest    = 5 | id:u64 | placement:u64 | count:u32 | count * digest:u64
//! repair    = 6 | id:u64 | (as replicate)  (records an anti-entropy round found missing)
//! ```
//!
//! A `digest` carries the sender's digests of the keys it and the receiver
//! both replicate (see [`crate::antientropy`]); the reply lists the buckets
//! that differ.
//!
//! A `replicate` carries stored records (the storage layer's encoding, with
//! its crc32 over the key) for the receiver to apply if newer; its reply is
//! empty once all are applied durably, or an error text.
//!
//! A forwarded request is executed where it arrives and never forwarded
//! again: that is the mark that keeps a disagreement about the ring from
//! looping.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

const FORWARD: u8 = 1;
const REPLY: u8 = 2;
const REPLICATE: u8 = 3;
const TRANSFER: u8 = 4;
const DIGEST: u8 = 5;
const REPAIR: u8 = 6;
const FORWARD_BINARY: u8 = 7;

/// Which memcache protocol a forwarded request speaks (and its reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// The text protocol, meta commands included.
    Text,
    /// The binary protocol.
    Binary,
}

/// Why a batch of records is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchKind {
    /// Changes from the change stream (replication, hints).
    Stream,
    /// A range transfer (counted apart by the receiver: it is how a
    /// joining node sees its progress).
    Transfer,
    /// Records an anti-entropy round found the receiver may lack (it
    /// counts the ones it keeps as repaired).
    Repair,
}

impl BatchKind {
    fn wire(self) -> u8 {
        match self {
            BatchKind::Stream => REPLICATE,
            BatchKind::Transfer => TRANSFER,
            BatchKind::Repair => REPAIR,
        }
    }
}

/// A stored record shipped to a replica: its key and encoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedRecord {
    /// The key.
    pub key: Bytes,
    /// The encoded record (item or tombstone).
    pub record: Bytes,
}

/// A message between peers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerMessage {
    /// Run one memcache request on the receiving node.
    Forward {
        /// Matches the reply to the request.
        id: u64,
        /// The request's protocol.
        dialect: Dialect,
        /// The request's bytes.
        request: Bytes,
    },
    /// The reply to a forwarded request or a replication batch.
    Reply {
        /// The request's id.
        id: u64,
        /// The reply's bytes.
        reply: Bytes,
    },
    /// Records for the receiver to apply if newer.
    Replicate {
        /// Matches the reply to the batch.
        id: u64,
        /// The records.
        records: Vec<ShippedRecord>,
        /// Why they are sent.
        kind: BatchKind,
    },
    /// The sender's digests of what it and the receiver both hold, for an
    /// anti-entropy round.
    Digest {
        /// Matches the reply.
        id: u64,
        /// The placement the digests are for (both sides must agree).
        placement: u64,
        /// One digest per bucket.
        buckets: Vec<u64>,
    },
}

/// A payload that is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Too short for its type.
    #[error("peer message of {0} bytes is truncated")]
    Truncated(usize),
    /// A type this build does not know.
    #[error("unknown peer message type {0}")]
    UnknownType(u8),
}

impl PeerMessage {
    /// The payload of this message.
    pub fn encode(&self) -> Bytes {
        let (kind, id, body) = match self {
            PeerMessage::Forward {
                id,
                dialect,
                request,
            } => {
                let kind = match dialect {
                    Dialect::Text => FORWARD,
                    Dialect::Binary => FORWARD_BINARY,
                };
                (kind, *id, request)
            }
            PeerMessage::Reply { id, reply } => (REPLY, *id, reply),
            PeerMessage::Digest {
                id,
                placement,
                buckets,
            } => {
                let mut out = BytesMut::with_capacity(21 + 8 * buckets.len());
                out.put_u8(DIGEST);
                out.put_u64_le(*id);
                out.put_u64_le(*placement);
                out.put_u32_le(buckets.len() as u32);
                for digest in buckets {
                    out.put_u64_le(*digest);
                }
                return out.freeze();
            }
            PeerMessage::Replicate { id, records, kind } => {
                let size: usize = records
                    .iter()
                    .map(|r| 8 + r.key.len() + r.record.len())
                    .sum();
                let mut out = BytesMut::with_capacity(13 + size);
                out.put_u8(kind.wire());
                out.put_u64_le(*id);
                out.put_u32_le(records.len() as u32);
                for record in records {
                    out.put_u32_le(record.key.len() as u32);
                    out.put_slice(&record.key);
                    out.put_u32_le(record.record.len() as u32);
                    out.put_slice(&record.record);
                }
                return out.freeze();
            }
        };
        let mut out = BytesMut::with_capacity(9 + body.len());
        out.put_u8(kind);
        out.put_u64_le(id);
        out.put_slice(body);
        out.freeze()
    }

    /// Reads a payload.
    pub fn decode(payload: Bytes) -> Result<PeerMessage, MessageError> {
        if payload.len() < 9 {
            return Err(MessageError::Truncated(payload.len()));
        }
        let id = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
        let body = payload.slice(9..);
        match payload[0] {
            kind @ (FORWARD | FORWARD_BINARY) => Ok(PeerMessage::Forward {
                id,
                dialect: if kind == FORWARD {
                    Dialect::Text
                } else {
                    Dialect::Binary
                },
                request: body,
            }),
            REPLY => Ok(PeerMessage::Reply { id, reply: body }),
            kind @ (REPLICATE | TRANSFER | REPAIR) => decode_records(&body)
                .map(|records| PeerMessage::Replicate {
                    id,
                    records,
                    kind: match kind {
                        REPLICATE => BatchKind::Stream,
                        TRANSFER => BatchKind::Transfer,
                        _ => BatchKind::Repair,
                    },
                })
                .ok_or(MessageError::Truncated(payload.len())),
            DIGEST => decode_digests(&body)
                .map(|(placement, buckets)| PeerMessage::Digest {
                    id,
                    placement,
                    buckets,
                })
                .ok_or(MessageError::Truncated(payload.len())),
            other => Err(MessageError::UnknownType(other)),
        }
    }
}

/// Reads a digest body; `None` if the count does not match the length.
fn decode_digests(body: &Bytes) -> Option<(u64, Vec<u64>)> {
    let placement = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let count = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?) as usize;
    let rest = body.get(12..)?;
    if rest.len() != count.checked_mul(8)? {
        return None;
    }
    let buckets = rest
        .chunks_exact(8)
        .map(|digest| u64::from_le_bytes(digest.try_into().expect("8 bytes")))
        .collect();
    Some((placement, buckets))
}

/// Reads a replicate body; `None` if the counts and lengths do not add up.
fn decode_records(body: &Bytes) -> Option<Vec<ShippedRecord>> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let count = u32_at(0)?;
    // Each record takes at least 8 bytes: a lying count cannot make us
    // allocate more than the payload justifies.
    if count > body.len() / 8 {
        return None;
    }
    let mut records = Vec::with_capacity(count);
    let mut at = 4;
    for _ in 0..count {
        let key_len = u32_at(at)?;
        let key_end = (at + 4).checked_add(key_len)?;
        if key_end > body.len() {
            return None;
        }
        let key = body.slice(at + 4..key_end);
        let record_len = u32_at(key_end)?;
        let record_end = (key_end + 4).checked_add(record_len)?;
        if record_end > body.len() {
            return None;
        }
        let record = body.slice(key_end + 4..record_end);
        records.push(ShippedRecord { key, record });
        at = record_end;
    }
    (at == body.len()).then_some(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_an_error() {
        let replicate = PeerMessage::Replicate {
            id: 3,
            kind: BatchKind::Stream,
            records: vec![
                ShippedRecord {
                    key: Bytes::from_static(b"k1"),
                    record: Bytes::from_static(b"record one"),
                },
                ShippedRecord {
                    key: Bytes::from_static(b""),
                    record: Bytes::new(),
                },
            ],
        };
        let encoded = replicate.encode();
        assert_eq!(PeerMessage::decode(encoded.clone()), Ok(replicate));
        // Every truncation and a lying count are errors, never a panic.
        for len in 0..encoded.len() {
            assert!(PeerMessage::decode(encoded.slice(..len)).is_err(), "{len}");
        }
        let mut lying = encoded.to_vec();
        lying[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(PeerMessage::decode(Bytes::from(lying)).is_err());
        for message in [
            PeerMessage::Replicate {
                id: 4,
                records: Vec::new(),
                kind: BatchKind::Transfer,
            },
            PeerMessage::Replicate {
                id: 5,
                records: Vec::new(),
                kind: BatchKind::Repair,
            },
            PeerMessage::Digest {
                id: 6,
                placement: 77,
                buckets: vec![1, u64::MAX, 0],
            },
            PeerMessage::Forward {
                id: 7,
                dialect: Dialect::Text,
                request: Bytes::from_static(b"get k\r\n"),
            },
            PeerMessage::Forward {
                id: 8,
                dialect: Dialect::Binary,
                request: Bytes::from_static(&[0x80, 0x0a, 0, 0, 0, 0, 0, 0]),
            },
            PeerMessage::Reply {
                id: u64::MAX,
                reply: Bytes::new(),
            },
        ] {
            assert_eq!(PeerMessage::decode(message.encode()), Ok(message));
        }
        assert_eq!(
            PeerMessage::decode(Bytes::from_static(b"\x01abc")),
            Err(MessageError::Truncated(4))
        );
        assert_eq!(
            PeerMessage::decode(Bytes::from_static(b"\x09\0\0\0\0\0\0\0\0")),
            Err(MessageError::UnknownType(9))
        );
    }
}
