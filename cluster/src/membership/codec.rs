//! The binary encoding of foca's headers and membership updates.
//!
//! All integers are big-endian. Every read is bounds-checked: a truncated or
//! corrupt packet is a [`CodecError`], never a panic.
//!
//! ```text
//! identity = addr_len:u8 addr:[u8] generation:u64 version:u32 weight:u32
//!            status_len:u8 status:[u8] flags:u8          (flags bit 0: left)
//! header   = src:identity src_incarnation:u16 dst:identity message
//! message  = tag:u8 fields          (see `encode_message` for the tags)
//! member   = identity incarnation:u16 state:u8   (0 alive, 1 suspect, 2 down)
//! ```

use std::sync::Arc;

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Message, State};
use thiserror::Error;

use super::identity::{valid_status, NodeId, MAX_ADVERTISE_LEN};

/// Why bytes could not be decoded into a header, member or identity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The input ended in the middle of an item.
    #[error("truncated")]
    Truncated,
    /// A text field is not UTF-8, or is empty, or too long.
    #[error("bad text field")]
    BadText,
    /// An unknown message tag.
    #[error("unknown message tag {0}")]
    BadMessage(u8),
    /// An unknown member state.
    #[error("unknown member state {0}")]
    BadState(u8),
    /// Unknown flag bits in an identity.
    #[error("unknown identity flags {0:#x}")]
    BadFlags(u8),
    /// The output buffer has no room for the item.
    #[error("no room in the output buffer")]
    NoRoom,
    /// A field is too long to be encoded.
    #[error("field too long to encode")]
    TooLong,
}

const FLAG_LEFT: u8 = 1;

/// foca's codec for [`NodeId`]s (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WireCodec;

fn need(buf: &impl Buf, n: usize) -> Result<(), CodecError> {
    if buf.remaining() < n {
        Err(CodecError::Truncated)
    } else {
        Ok(())
    }
}

fn get_u8(buf: &mut impl Buf) -> Result<u8, CodecError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

fn get_u16(buf: &mut impl Buf) -> Result<u16, CodecError> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

fn get_u32(buf: &mut impl Buf) -> Result<u32, CodecError> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

fn get_u64(buf: &mut impl Buf) -> Result<u64, CodecError> {
    need(buf, 8)?;
    Ok(buf.get_u64())
}

fn get_text(buf: &mut impl Buf) -> Result<Arc<str>, CodecError> {
    let len = usize::from(get_u8(buf)?);
    need(buf, len)?;
    let mut bytes = vec![0; len];
    buf.copy_to_slice(&mut bytes);
    let text = String::from_utf8(bytes).map_err(|_| CodecError::BadText)?;
    if text.is_empty() {
        return Err(CodecError::BadText);
    }
    Ok(text.into())
}

fn put_text(out: &mut Vec<u8>, text: &str) -> Result<(), CodecError> {
    let len = u8::try_from(text.len()).map_err(|_| CodecError::TooLong)?;
    out.push(len);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Appends the encoding of `id` to `out`.
pub(crate) fn encode_identity(id: &NodeId, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if id.addr.len() > MAX_ADVERTISE_LEN {
        return Err(CodecError::TooLong);
    }
    put_text(out, &id.addr)?;
    out.extend_from_slice(&id.generation.to_be_bytes());
    out.extend_from_slice(&id.version.to_be_bytes());
    out.extend_from_slice(&id.weight.to_be_bytes());
    put_text(out, &id.status)?;
    out.push(if id.left { FLAG_LEFT } else { 0 });
    Ok(())
}

/// Reads one identity.
pub(crate) fn decode_identity(buf: &mut impl Buf) -> Result<NodeId, CodecError> {
    let addr = get_text(buf)?;
    let generation = get_u64(buf)?;
    let version = get_u32(buf)?;
    let weight = get_u32(buf)?;
    let status = get_text(buf)?;
    if !valid_status(&status) {
        return Err(CodecError::BadText);
    }
    let flags = get_u8(buf)?;
    if flags & !FLAG_LEFT != 0 {
        return Err(CodecError::BadFlags(flags));
    }
    Ok(NodeId {
        addr,
        generation,
        version,
        weight,
        status,
        left: flags & FLAG_LEFT != 0,
    })
}

fn encode_message(message: &Message<NodeId>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    match message {
        Message::Ping(n) => out.extend_from_slice(&[0, *n]),
        Message::Ack(n) => out.extend_from_slice(&[1, *n]),
        Message::PingReq {
            target,
            probe_number,
        } => {
            out.extend_from_slice(&[2, *probe_number]);
            encode_identity(target, out)?;
        }
        Message::IndirectPing {
            origin,
            probe_number,
        } => {
            out.extend_from_slice(&[3, *probe_number]);
            encode_identity(origin, out)?;
        }
        Message::IndirectAck {
            target,
            probe_number,
        } => {
            out.extend_from_slice(&[4, *probe_number]);
            encode_identity(target, out)?;
        }
        Message::ForwardedAck {
            origin,
            probe_number,
        } => {
            out.extend_from_slice(&[5, *probe_number]);
            encode_identity(origin, out)?;
        }
        Message::Announce => out.push(6),
        Message::Feed => out.push(7),
        Message::Gossip => out.push(8),
        Message::Broadcast => out.push(9),
        Message::TurnUndead => out.push(10),
    }
    Ok(())
}

fn decode_message(buf: &mut impl Buf) -> Result<Message<NodeId>, CodecError> {
    let tag = get_u8(buf)?;
    Ok(match tag {
        0 => Message::Ping(get_u8(buf)?),
        1 => Message::Ack(get_u8(buf)?),
        2..=5 => {
            let probe_number = get_u8(buf)?;
            let id = decode_identity(buf)?;
            match tag {
                2 => Message::PingReq {
                    target: id,
                    probe_number,
                },
                3 => Message::IndirectPing {
                    origin: id,
                    probe_number,
                },
                4 => Message::IndirectAck {
                    target: id,
                    probe_number,
                },
                _ => Message::ForwardedAck {
                    origin: id,
                    probe_number,
                },
            }
        }
        6 => Message::Announce,
        7 => Message::Feed,
        8 => Message::Gossip,
        9 => Message::Broadcast,
        10 => Message::TurnUndead,
        other => return Err(CodecError::BadMessage(other)),
    })
}

/// Appends the encoding of a membership update to `out`.
pub(crate) fn encode_member(member: &Member<NodeId>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    encode_identity(member.id(), out)?;
    out.extend_from_slice(&member.incarnation().to_be_bytes());
    out.push(match member.state() {
        State::Alive => 0,
        State::Suspect => 1,
        State::Down => 2,
    });
    Ok(())
}

/// Reads one membership update.
pub(crate) fn decode_member(buf: &mut impl Buf) -> Result<Member<NodeId>, CodecError> {
    let id = decode_identity(buf)?;
    let incarnation = get_u16(buf)?;
    let state = match get_u8(buf)? {
        0 => State::Alive,
        1 => State::Suspect,
        2 => State::Down,
        other => return Err(CodecError::BadState(other)),
    };
    Ok(Member::new(id, incarnation, state))
}

/// Reads the header of a foca packet (the start of its body).
pub(crate) fn decode_header(buf: &mut impl Buf) -> Result<Header<NodeId>, CodecError> {
    let src = decode_identity(buf)?;
    let src_incarnation = get_u16(buf)?;
    let dst = decode_identity(buf)?;
    let message = decode_message(buf)?;
    Ok(Header {
        src,
        src_incarnation,
        dst,
        message,
    })
}

/// Writes `bytes` only if they fit whole (foca requires a clean buffer when
/// an item does not fit).
fn put_whole(mut buf: impl BufMut, bytes: &[u8]) -> Result<(), CodecError> {
    if buf.remaining_mut() < bytes.len() {
        return Err(CodecError::NoRoom);
    }
    buf.put_slice(bytes);
    Ok(())
}

impl Codec<NodeId> for WireCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        let mut out = Vec::with_capacity(128);
        encode_identity(&header.src, &mut out)?;
        out.extend_from_slice(&header.src_incarnation.to_be_bytes());
        encode_identity(&header.dst, &mut out)?;
        encode_message(&header.message, &mut out)?;
        put_whole(buf, &out)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        decode_header(&mut buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        let mut out = Vec::with_capacity(64);
        encode_member(member, &mut out)?;
        put_whole(buf, &out)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        decode_member(&mut buf)
    }
}

#[cfg(test)]
mod tests {
    //! Round trips, and every truncation of a valid encoding fails cleanly.

    use super::*;

    fn id(addr: &str, left: bool) -> NodeId {
        NodeId {
            addr: addr.into(),
            generation: 1_700_000_000_123,
            version: 7,
            weight: 3,
            status: "joining".into(),
            left,
        }
    }

    fn all_messages() -> Vec<Message<NodeId>> {
        let t = id("10.0.0.9:11211", false);
        vec![
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: t.clone(),
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: t.clone(),
                probe_number: 4,
            },
            Message::IndirectAck {
                target: t.clone(),
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: t,
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ]
    }

    #[test]
    fn headers_round_trip_and_truncations_fail() {
        for message in all_messages() {
            let header = Header {
                src: id("127.0.0.1:11212", false),
                src_incarnation: 513,
                dst: id("cache-2.example:11211", true),
                message,
            };
            let mut out = Vec::new();
            WireCodec.encode_header(&header, &mut out).unwrap();
            assert_eq!(WireCodec.decode_header(&out[..]).unwrap(), header);
            for cut in 0..out.len() {
                assert!(WireCodec.decode_header(&out[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn members_round_trip_in_every_state() {
        for state in [State::Alive, State::Suspect, State::Down] {
            let member = Member::new(id("h:1", false), 9, state);
            let mut out = Vec::new();
            WireCodec.encode_member(&member, &mut out).unwrap();
            assert_eq!(WireCodec.decode_member(&out[..]).unwrap(), member);
            for cut in 0..out.len() {
                assert!(WireCodec.decode_member(&out[..cut]).is_err());
            }
        }
    }

    #[test]
    fn encoding_into_a_full_buffer_leaves_it_untouched() {
        let member = Member::alive(id("h:1", false));
        let mut storage = [0u8; 8];
        let mut window = &mut storage[..];
        assert_eq!(
            WireCodec.encode_member(&member, &mut window),
            Err(CodecError::NoRoom)
        );
        assert_eq!(storage, [0u8; 8]);
    }

    #[test]
    fn mutated_packets_never_panic() {
        let header = Header {
            src: id("127.0.0.1:11212", false),
            src_incarnation: 1,
            dst: id("127.0.0.1:11213", false),
            message: Message::PingReq {
                target: id("127.0.0.1:11214", true),
                probe_number: 1,
            },
        };
        let mut valid = Vec::new();
        WireCodec.encode_header(&header, &mut valid).unwrap();
        encode_member(&Member::alive(id("h:1", false)), &mut valid).unwrap();
        let mut seed: u32 = 7;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        for _ in 0..20_000 {
            let mut packet = valid.clone();
            for _ in 0..1 + next() % 4 {
                let at = next() as usize % packet.len();
                packet[at] = next() as u8;
            }
            packet.truncate(next() as usize % (valid.len() + 1));
            let mut rest = &packet[..];
            if decode_header(&mut rest).is_ok() {
                let _ = decode_member(&mut rest);
            }
        }
    }

    #[test]
    fn corrupt_fields_are_errors() {
        let mut out = Vec::new();
        encode_member(&Member::alive(id("h:1", false)), &mut out).unwrap();
        let mut bad_state = out.clone();
        *bad_state.last_mut().unwrap() = 9;
        assert_eq!(
            WireCodec.decode_member(&bad_state[..]),
            Err(CodecError::BadState(9))
        );
        let mut bad_utf8 = out.clone();
        bad_utf8[1] = 0xff;
        assert_eq!(
            WireCodec.decode_member(&bad_utf8[..]),
            Err(CodecError::BadText)
        );
        let mut empty_addr = out;
        empty_addr[0] = 0;
        assert!(WireCodec.decode_member(&empty_addr[..]).is_err());
    }
}
