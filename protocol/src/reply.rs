//! Replies of the text and meta protocols: the enum, the encoder the server uses and the
//! incremental decoder clients use.
//!
//! A multi-line answer is a sequence of replies: `get` answers with zero or
//! more [`Reply::Value`] followed by [`Reply::End`]; `stats` with
//! [`Reply::Stat`] lines followed by [`Reply::End`].

use std::borrow::Cow;

use bytes::{BufMut, Bytes};

use crate::meta::{parse_meta_reply, MetaDebugInfo, MetaReply};
use crate::parse::{find_line, Decoded};
use crate::request::put_fmt;

/// One reply line (with its data block, for `VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `STORED`.
    Stored,
    /// `NOT_STORED`: the condition of add/replace/append/prepend failed.
    NotStored,
    /// `EXISTS`: a cas mismatch.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
    Touched,
    /// `OK`.
    Ok,
    /// `END`: the last line of a get or stats answer.
    End,
    /// `RESET`: the answer to `stats reset`.
    Reset,
    /// `VALUE <key> <flags> <bytes> [<cas>]` and the data block.
    Value(Value),
    /// The new value after incr/decr.
    Number(u64),
    /// `VERSION <version>`.
    Version(Bytes),
    /// `STAT <name> <value>`.
    Stat {
        /// The statistic's name.
        name: Bytes,
        /// Its value, as text.
        value: Bytes,
    },
    /// `ERROR`: an unknown command or a wrong number of tokens.
    Error,
    /// `ERROR` followed by more text, kept verbatim with its separator:
    /// `" Too many open connections"`, `": shutdown not enabled"`.
    ErrorMessage(Cow<'static, str>),
    /// `CLIENT_ERROR <message>`: the request was malformed.
    ClientError(Cow<'static, str>),
    /// `SERVER_ERROR <message>`: the server could not carry out a valid request.
    ServerError(Cow<'static, str>),
    /// A meta reply: `VA <size> <flags>*` and the value, `HD`, `EN`, `NF`,
    /// `NS`, `EX` (each with flags) or `MN`.
    Meta(MetaReply),
    /// The `me` answer for a hit: `ME <key> exp=.. la=.. cas=.. fetch=..
    /// cls=.. size=..`.
    MetaDebug(MetaDebugInfo),
}

/// A hit in a get answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The key.
    pub key: Bytes,
    /// The client flags.
    pub flags: u32,
    /// The cas unique, for `gets`/`gats`.
    pub cas: Option<u64>,
    /// The data.
    pub data: Bytes,
}

impl Reply {
    /// A `CLIENT_ERROR` with a fixed message.
    pub const fn client_error(message: &'static str) -> Reply {
        Reply::ClientError(Cow::Borrowed(message))
    }

    /// A `SERVER_ERROR` with a fixed message.
    pub const fn server_error(message: &'static str) -> Reply {
        Reply::ServerError(Cow::Borrowed(message))
    }

    /// Writes the reply in wire format.
    pub fn encode(&self, out: &mut impl BufMut) {
        let line: &[u8] = match self {
            Reply::Stored => b"STORED\r\n",
            Reply::NotStored => b"NOT_STORED\r\n",
            Reply::Exists => b"EXISTS\r\n",
            Reply::NotFound => b"NOT_FOUND\r\n",
            Reply::Deleted => b"DELETED\r\n",
            Reply::Touched => b"TOUCHED\r\n",
            Reply::Ok => b"OK\r\n",
            Reply::End => b"END\r\n",
            Reply::Reset => b"RESET\r\n",
            Reply::Error => b"ERROR\r\n",
            Reply::Value(value) => {
                encode_value_header(out, &value.key, value.flags, value.data.len(), value.cas);
                out.put_slice(&value.data);
                b"\r\n"
            }
            Reply::Number(number) => {
                put_fmt(out, format_args!("{number}"));
                b"\r\n"
            }
            Reply::Version(version) => {
                out.put_slice(b"VERSION ");
                out.put_slice(version);
                b"\r\n"
            }
            Reply::Stat { name, value } => {
                out.put_slice(b"STAT ");
                out.put_slice(name);
                out.put_u8(b' ');
                out.put_slice(value);
                b"\r\n"
            }
            Reply::ErrorMessage(message) => {
                put_fmt(out, format_args!("ERROR{message}"));
                b"\r\n"
            }
            Reply::ClientError(message) => {
                put_fmt(out, format_args!("CLIENT_ERROR {message}"));
                b"\r\n"
            }
            Reply::ServerError(message) => {
                put_fmt(out, format_args!("SERVER_ERROR {message}"));
                b"\r\n"
            }
            Reply::Meta(meta) => {
                meta.encode(out);
                b""
            }
            Reply::MetaDebug(info) => {
                info.encode(out);
                b""
            }
        };
        out.put_slice(line);
    }
}

/// Writes `VALUE <key> <flags> <bytes>[ <cas>]\r\n`; the caller writes the data
/// and its `\r\n` (the server uses this to avoid copying stored values).
pub fn encode_value_header(
    out: &mut impl BufMut,
    key: &[u8],
    flags: u32,
    data_len: usize,
    cas: Option<u64>,
) {
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    match cas {
        Some(cas) => put_fmt(out, format_args!(" {flags} {data_len} {cas}\r\n")),
        None => put_fmt(out, format_args!(" {flags} {data_len}\r\n")),
    }
}

/// Decodes one reply from the start of `input` (client side).
///
/// Returns [`Decoded::Incomplete`] until the whole reply, including a
/// `VALUE` data block, is buffered. A line that is no known reply decodes
/// as [`Reply::ServerError`] carrying the line, so that a client can report
/// it instead of hanging.
pub fn parse_reply(input: &[u8]) -> Decoded<Reply> {
    let Some((line, line_len)) = find_line(input) else {
        return Decoded::Incomplete;
    };
    let text = |rest: &[u8]| Cow::Owned(String::from_utf8_lossy(rest).into_owned());
    if let Some(meta) = parse_meta_reply(input, line, line_len) {
        return meta;
    }
    let reply = match line {
        b"STORED" => Reply::Stored,
        b"NOT_STORED" => Reply::NotStored,
        b"EXISTS" => Reply::Exists,
        b"NOT_FOUND" => Reply::NotFound,
        b"DELETED" => Reply::Deleted,
        b"TOUCHED" => Reply::Touched,
        b"OK" => Reply::Ok,
        b"END" => Reply::End,
        b"RESET" => Reply::Reset,
        b"ERROR" => Reply::Error,
        _ => {
            if let Some(rest) = line.strip_prefix(b"VALUE ") {
                return parse_value(input, rest, line_len);
            } else if let Some(rest) = line.strip_prefix(b"STAT ") {
                let mut parts = rest.splitn(2, |&b| b == b' ');
                let name = Bytes::copy_from_slice(parts.next().unwrap_or_default());
                let value = Bytes::copy_from_slice(parts.next().unwrap_or_default());
                Reply::Stat { name, value }
            } else if let Some(rest) = line.strip_prefix(b"VERSION ") {
                Reply::Version(Bytes::copy_from_slice(rest))
            } else if let Some(rest) = line.strip_prefix(b"ERROR") {
                Reply::ErrorMessage(text(rest))
            } else if let Some(rest) = line.strip_prefix(b"CLIENT_ERROR ") {
                Reply::ClientError(text(rest))
            } else if let Some(rest) = line.strip_prefix(b"SERVER_ERROR ") {
                Reply::ServerError(text(rest))
            } else if !line.is_empty() && line.iter().all(u8::is_ascii_digit) {
                match std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()) {
                    Some(number) => Reply::Number(number),
                    None => Reply::ServerError(text(line)),
                }
            } else {
                Reply::ServerError(Cow::Owned(format!(
                    "unrecognised reply: {}",
                    String::from_utf8_lossy(line)
                )))
            }
        }
    };
    Decoded::Complete(reply, line_len)
}

fn parse_value(input: &[u8], header: &[u8], line_len: usize) -> Decoded<Reply> {
    let fields: Vec<&[u8]> = header.split(|&b| b == b' ').collect();
    let parsed = match fields.as_slice() {
        [key, flags, len] => Some((key, flags, len, None)),
        [key, flags, len, cas] => Some((key, flags, len, Some(cas))),
        _ => None,
    }
    .and_then(|(key, flags, len, cas)| {
        let flags = crate::number::parse_u32(flags)?;
        let len = usize::try_from(crate::number::parse_u64(len)?).ok()?;
        let cas = match cas {
            Some(cas) => Some(crate::number::parse_u64(cas)?),
            None => None,
        };
        Some((Bytes::copy_from_slice(key), flags, len, cas))
    });
    let Some((key, flags, len, cas)) = parsed else {
        return Decoded::Complete(
            Reply::ServerError(Cow::Owned(format!(
                "malformed VALUE line: {}",
                String::from_utf8_lossy(header)
            ))),
            line_len,
        );
    };
    let Some(total) = line_len.checked_add(len).and_then(|n| n.checked_add(2)) else {
        return Decoded::Complete(Reply::server_error("VALUE length out of range"), line_len);
    };
    if input.len() < total {
        return Decoded::Incomplete;
    }
    let data = Bytes::copy_from_slice(&input[line_len..line_len + len]);
    if &input[line_len + len..total] != b"\r\n" {
        return Decoded::Complete(
            Reply::server_error("VALUE data block not terminated by \\r\\n"),
            total,
        );
    }
    Decoded::Complete(
        Reply::Value(Value {
            key,
            flags,
            cas,
            data,
        }),
        total,
    )
}
