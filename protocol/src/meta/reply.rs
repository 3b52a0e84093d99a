//! Meta replies: their status codes and flags, the encoder a server uses,
//! the return flags a request asks for, and the decoder for clients.

use bytes::{BufMut, Bytes};

use super::*;
use crate::number;
use crate::parse::Decoded;
use crate::reply::Reply;
use crate::request::put_fmt;

/// The two-letter status of a meta reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaStatus {
    /// `VA <size>`: success with a value (`mg v`, `ma v`); the value follows.
    Value(Bytes),
    /// `HD`: success without a value.
    Done,
    /// `EN`: a miss (`mg`, `me`).
    Miss,
    /// `NF`: not found (`md`, `ma`, `ms` with a cas).
    NotFound,
    /// `NS`: not stored (`ms` modes, `ma` auto-create).
    NotStored,
    /// `EX`: cas mismatch.
    Exists,
    /// `MN`: the answer to `mn`.
    Noop,
}

impl MetaStatus {
    /// The code on the wire (without the size of `VA`).
    pub fn code(&self) -> &'static str {
        match self {
            MetaStatus::Value(_) => "VA",
            MetaStatus::Done => "HD",
            MetaStatus::Miss => "EN",
            MetaStatus::NotFound => "NF",
            MetaStatus::NotStored => "NS",
            MetaStatus::Exists => "EX",
            MetaStatus::Noop => "MN",
        }
    }
}

/// One flag of a meta reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaFlag {
    /// `c<cas>`.
    Cas(u64),
    /// `f<flags>`.
    Flags(u32),
    /// `h0` or `h1`: whether the item had been fetched before.
    Hit(bool),
    /// `k<key>`, or `k<base64 key> b` for a binary key.
    Key {
        /// The key (binary, not encoded).
        key: Bytes,
        /// Send it in base64 followed by the `b` flag.
        base64: bool,
    },
    /// `l<seconds>` since the last access.
    LastAccess(u64),
    /// `O<opaque>`: the request's opaque, echoed.
    Opaque(Bytes),
    /// `s<size>` of the value.
    Size(u64),
    /// `t<seconds>` of TTL left, `-1` for an item that never expires.
    Ttl(i64),
    /// `W`: this client won the right to recache the item.
    Won,
    /// `X`: the item is stale.
    Stale,
    /// `Z`: a win token was already sent for this item.
    TokenSent,
    /// A token this decoder does not know (client side only).
    Other(Bytes),
}

impl MetaFlag {
    fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(b' ');
        match self {
            MetaFlag::Cas(cas) => put_fmt(out, format_args!("c{cas}")),
            MetaFlag::Flags(flags) => put_fmt(out, format_args!("f{flags}")),
            MetaFlag::Hit(hit) => out.put_slice(if *hit { b"h1" } else { b"h0" }),
            MetaFlag::Key { key, base64 } => {
                out.put_u8(b'k');
                put_key(out, key, *base64);
                put_switch(out, b'b', *base64);
            }
            MetaFlag::LastAccess(seconds) => put_fmt(out, format_args!("l{seconds}")),
            MetaFlag::Opaque(opaque) => {
                out.put_u8(b'O');
                out.put_slice(opaque);
            }
            MetaFlag::Size(size) => put_fmt(out, format_args!("s{size}")),
            MetaFlag::Ttl(ttl) => put_fmt(out, format_args!("t{ttl}")),
            MetaFlag::Won => out.put_u8(b'W'),
            MetaFlag::Stale => out.put_u8(b'X'),
            MetaFlag::TokenSent => out.put_u8(b'Z'),
            MetaFlag::Other(token) => out.put_slice(token),
        }
    }
}

/// A meta reply: a status and its flags (and the value, for `VA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaReply {
    /// The status (with the value for `VA`).
    pub status: MetaStatus,
    /// The flags, in order.
    pub flags: Vec<MetaFlag>,
}

impl MetaReply {
    /// A reply without flags (`MN`, a plain `EN`).
    pub fn bare(status: MetaStatus) -> MetaReply {
        MetaReply {
            status,
            flags: Vec::new(),
        }
    }

    /// Writes the reply in wire format.
    pub fn encode(&self, out: &mut impl BufMut) {
        match &self.status {
            MetaStatus::Value(data) => {
                encode_meta_value_header(out, data.len(), &self.flags);
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            status => {
                out.put_slice(status.code().as_bytes());
                for flag in &self.flags {
                    flag.encode(out);
                }
                out.put_slice(b"\r\n");
            }
        }
    }
}

/// Writes `VA <data_len> <flags>\r\n`; the caller writes the data and its
/// `\r\n` (so a server can send a stored value without copying it).
pub fn encode_meta_value_header(out: &mut impl BufMut, data_len: usize, flags: &[MetaFlag]) {
    put_fmt(out, format_args!("VA {data_len}"));
    for flag in flags {
        flag.encode(out);
    }
    out.put_slice(b"\r\n");
}

/// What a meta reply can report about an item; see [`return_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemMeta {
    /// The cas unique (for `ms`: the new one, 0 when nothing was stored).
    pub cas: u64,
    /// The client flags.
    pub flags: u32,
    /// Whether the item had been fetched before this request.
    pub fetched: bool,
    /// Seconds since the last access, before this request.
    pub last_access: u64,
    /// The value's size in bytes.
    pub size: u64,
    /// Seconds of TTL left, `-1` for none (see
    /// the server's expiry type).
    pub ttl: i64,
}

/// The reply flags for a request's `returns`, in order. With `item: None`
/// (a miss, `NF`, `EX`) only `O` and `k` are produced, as memcached does.
/// `key` is the request's (decoded) key; `k` re-encodes it in base64 and adds
/// `b` when `base64_key`. Pass the request's `base64_key`, except for an
/// `mg` hit, where memcached uses the stored item's mark instead (an item
/// stored by `ms` with `b` has a binary key; `mg YWJj b k` on an item stored
/// as `abc` answers `HD kabc`). `mg`'s `Z`, `X`, `W` are not included: the
/// server appends them, in that order.
pub fn return_flags(
    returns: &[ReturnFlag],
    key: &Bytes,
    base64_key: bool,
    opaque: Option<&Bytes>,
    item: Option<&ItemMeta>,
) -> Vec<MetaFlag> {
    returns
        .iter()
        .filter_map(|flag| match (flag, item) {
            (ReturnFlag::Opaque, _) => Some(MetaFlag::Opaque(opaque.cloned().unwrap_or_default())),
            (ReturnFlag::Key, _) => Some(MetaFlag::Key {
                key: key.clone(),
                base64: base64_key,
            }),
            (_, None) => None,
            (ReturnFlag::Cas, Some(item)) => Some(MetaFlag::Cas(item.cas)),
            (ReturnFlag::Flags, Some(item)) => Some(MetaFlag::Flags(item.flags)),
            (ReturnFlag::Hit, Some(item)) => Some(MetaFlag::Hit(item.fetched)),
            (ReturnFlag::LastAccess, Some(item)) => Some(MetaFlag::LastAccess(item.last_access)),
            (ReturnFlag::Size, Some(item)) => Some(MetaFlag::Size(item.size)),
            (ReturnFlag::Ttl, Some(item)) => Some(MetaFlag::Ttl(item.ttl)),
        })
        .collect()
}

/// The `me` answer for a hit:
/// `ME <key> exp=<exp> la=<la> cas=<cas> fetch=<yes|no> cls=<cls> size=<size>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDebugInfo {
    /// The key as printed: a binary key (stored with `b`) is printed in
    /// base64, with no marker (use [`base64_encoded`]).
    pub key: Bytes,
    /// memcached prints `now - exptime`: `-1` for an item that never
    /// expires, otherwise minus the seconds left (`-100` for 100 s left).
    pub exp: i64,
    /// Seconds since the last access.
    pub la: u64,
    /// The cas unique.
    pub cas: u64,
    /// Whether the item has been fetched.
    pub fetch: bool,
    /// The slab class (any small number; we have no slabs).
    pub cls: u32,
    /// The item's total size, as [`crate::item_size`] counts it.
    pub size: u64,
}

impl MetaDebugInfo {
    /// Writes the `ME` line.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(b"ME ");
        out.put_slice(&self.key);
        put_fmt(
            out,
            format_args!(
                " exp={} la={} cas={} fetch={} cls={} size={}\r\n",
                self.exp,
                self.la,
                self.cas,
                if self.fetch { "yes" } else { "no" },
                self.cls,
                self.size
            ),
        );
    }
}

fn parse_meta_flags(tokens: &[&[u8]]) -> Vec<MetaFlag> {
    let mut flags = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        i += 1;
        let rest = &token[1..];
        let other = || MetaFlag::Other(Bytes::copy_from_slice(token));
        let flag = match token[0] {
            b'c' => number::parse_u64(rest).map_or_else(other, MetaFlag::Cas),
            b'f' => number::parse_u64(rest)
                .and_then(|f| u32::try_from(f).ok())
                .map_or_else(other, MetaFlag::Flags),
            b'h' if rest == b"0" || rest == b"1" => MetaFlag::Hit(rest == b"1"),
            b'k' => {
                let binary = (tokens.get(i) == Some(&&b"b"[..]))
                    .then(|| decode_base64(rest))
                    .flatten();
                match binary {
                    Some(key) => {
                        i += 1;
                        MetaFlag::Key {
                            key: Bytes::from(key),
                            base64: true,
                        }
                    }
                    None => MetaFlag::Key {
                        key: Bytes::copy_from_slice(rest),
                        base64: false,
                    },
                }
            }
            b'l' => number::parse_u64(rest).map_or_else(other, MetaFlag::LastAccess),
            b'O' => MetaFlag::Opaque(Bytes::copy_from_slice(rest)),
            b's' => number::parse_u64(rest).map_or_else(other, MetaFlag::Size),
            b't' => number::parse_i64(rest).map_or_else(other, MetaFlag::Ttl),
            b'W' if rest.is_empty() => MetaFlag::Won,
            b'X' if rest.is_empty() => MetaFlag::Stale,
            b'Z' if rest.is_empty() => MetaFlag::TokenSent,
            _ => other(),
        };
        flags.push(flag);
    }
    flags
}

fn parse_debug_info(fields: &[&[u8]]) -> Option<MetaDebugInfo> {
    let (key, fields) = fields.split_first()?;
    let mut info = MetaDebugInfo {
        key: Bytes::copy_from_slice(key),
        exp: 0,
        la: 0,
        cas: 0,
        fetch: false,
        cls: 0,
        size: 0,
    };
    let mut seen = 0u8;
    for field in fields {
        let mut parts = field.splitn(2, |&b| b == b'=');
        let (name, value) = (parts.next()?, parts.next()?);
        let bit = match name {
            b"exp" => {
                info.exp = number::parse_i64(value)?;
                1
            }
            b"la" => {
                info.la = number::parse_u64(value)?;
                2
            }
            b"cas" => {
                info.cas = number::parse_u64(value)?;
                4
            }
            b"fetch" => {
                info.fetch = match value {
                    b"yes" => true,
                    b"no" => false,
                    _ => return None,
                };
                8
            }
            b"cls" => {
                info.cls = u32::try_from(number::parse_u64(value)?).ok()?;
                16
            }
            b"size" => {
                info.size = number::parse_u64(value)?;
                32
            }
            // "Others may be added."
            _ => 0,
        };
        seen |= bit;
    }
    (seen == 63).then_some(info)
}

/// Decodes a meta reply whose first line (without its line ending) is
/// `line`, `line_len` bytes with the ending; `None` if the line is not a
/// meta reply. Client side.
pub(crate) fn parse_meta_reply(
    input: &[u8],
    line: &[u8],
    line_len: usize,
) -> Option<Decoded<Reply>> {
    // Every meta reply starts with a two-letter code and a space or the end.
    if line.len() < 2 || line.get(2).is_some_and(|&b| b != b' ') {
        return None;
    }
    let tokens: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|token| !token.is_empty())
        .collect();
    let (&code, rest) = tokens.split_first()?;
    let status = match code {
        b"HD" => MetaStatus::Done,
        b"EN" => MetaStatus::Miss,
        b"NF" => MetaStatus::NotFound,
        b"NS" => MetaStatus::NotStored,
        b"EX" => MetaStatus::Exists,
        b"MN" => MetaStatus::Noop,
        b"ME" => {
            let reply = match parse_debug_info(rest) {
                Some(info) => Reply::MetaDebug(info),
                None => Reply::ServerError(
                    format!("malformed ME line: {}", String::from_utf8_lossy(line)).into(),
                ),
            };
            return Some(Decoded::Complete(reply, line_len));
        }
        b"VA" => {
            let Some(len) = rest
                .first()
                .and_then(|len| number::parse_u64(len))
                .and_then(|len| usize::try_from(len).ok())
            else {
                let message = format!("malformed VA line: {}", String::from_utf8_lossy(line));
                return Some(Decoded::Complete(
                    Reply::ServerError(message.into()),
                    line_len,
                ));
            };
            let Some(total) = line_len.checked_add(len).and_then(|n| n.checked_add(2)) else {
                return Some(Decoded::Complete(
                    Reply::server_error("VA length out of range"),
                    line_len,
                ));
            };
            if input.len() < total {
                return Some(Decoded::Incomplete);
            }
            if &input[line_len + len..total] != b"\r\n" {
                return Some(Decoded::Complete(
                    Reply::server_error("VA data block not terminated by \\r\\n"),
                    total,
                ));
            }
            let data = Bytes::copy_from_slice(&input[line_len..line_len + len]);
            let reply = MetaReply {
                status: MetaStatus::Value(data),
                flags: parse_meta_flags(&rest[1..]),
            };
            return Some(Decoded::Complete(Reply::Meta(reply), total));
        }
        _ => return None,
    };
    let reply = MetaReply {
        status,
        flags: parse_meta_flags(rest),
    };
    Some(Decoded::Complete(Reply::Meta(reply), line_len))
}
