//! What peers say to each other, inside frames.
//!
//! ```text
//! forward = 1 | id:u64 | request bytes   (one memcache request, exactly as a client sent it)
//! reply   = 2 | id:u64 | reply bytes     (what the node answered, possibly nothing)
//! ```
//!
//! A forwarded request is executed where it arrives and never forwarded
//! again: that is the mark that keeps a disagreement about the ring from
//! looping.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

const FORWARD: u8 = 1;
const REPLY: u8 = 2;

/// A message between peers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerMessage {
    /// Run one memcache request on the receiving node.
    Forward {
        /// Matches the reply to the request.
        id: u64,
        /// The request's bytes.
        request: Bytes,
    },
    /// The reply to a forwarded request.
    Reply {
        /// The request's id.
        id: u64,
        /// The reply's bytes.
        reply: Bytes,
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
            PeerMessage::Forward { id, request } => (FORWARD, *id, request),
            PeerMessage::Reply { id, reply } => (REPLY, *id, reply),
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
            FORWARD => Ok(PeerMessage::Forward { id, request: body }),
            REPLY => Ok(PeerMessage::Reply { id, reply: body }),
            other => Err(MessageError::UnknownType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_an_error() {
        for message in [
            PeerMessage::Forward {
                id: 7,
                request: Bytes::from_static(b"get k\r\n"),
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
