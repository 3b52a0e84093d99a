//! `mcstore_scan`: mcstore's admin command that lists the items a node
//! stores, a bounded page at a time (memcached has no such command and
//! answers it `ERROR`). Backups (`mcstore-cli dump`) and tools read a whole
//! node by following the cursor.
//!
//! ```text
//! mcstore_scan <limit> [<after>]\r\n
//! ITEM <key> <flags> <exptime> <cas> <bytes>\r\n<data>\r\n     (zero or more)
//! NEXT <cursor>\r\n      more keys follow: ask again with <after> = <cursor>
//! END\r\n                the scan is complete
//! ```
//!
//! - Keys (`<key>`, `<after>`, `<cursor>`) are always in base64, so any key
//!   stored with the meta protocol's `b` flag, spaces and control bytes
//!   included, survives the trip. `<after>` absent: from the first key.
//! - `<exptime>` is the absolute unix second the item expires at, `0` for
//!   never (unlike a storage command's exptime, it is never relative).
//! - `<limit>` is `1..=`[`MAX_SCAN_LIMIT`] stored records examined; the node
//!   also ends a page once it holds [`SCAN_PAGE_BYTES`] of values (after at
//!   least one item). A page examines tombstones, expired and flushed items
//!   too but does not list them, so a page may hold fewer items than
//!   `<limit>`, even none, and still end in `NEXT`.
//! - Errors: `CLIENT_ERROR bad command line format` (a limit out of range,
//!   a cursor that is not base64, a wrong token count), `SERVER_ERROR ...`
//!   (a read failed).
//!
//! The request is never forwarded: in a cluster a node lists what it
//! stores itself (its replicas of other nodes' keys included).

use bytes::{BufMut, Bytes};

use crate::meta::{decode_base64, encode_base64};
use crate::number;
use crate::parse::{find_line, Decoded};
use crate::reply::Reply;
use crate::request::put_fmt;

/// The command name on the wire.
pub const SCAN_COMMAND: &str = "mcstore_scan";

/// The most stored records one `mcstore_scan` examines.
pub const MAX_SCAN_LIMIT: u32 = 1000;

/// A page ends once its values add up to this many bytes (after at least
/// one item), so one call's reply stays bounded whatever the items' sizes.
pub const SCAN_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// `mcstore_scan <limit> [<after>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Stored records to examine, `1..=`[`MAX_SCAN_LIMIT`].
    pub limit: u32,
    /// List the keys after this one (decoded; sent in base64); `None`:
    /// from the first key.
    pub after: Option<Bytes>,
}

impl Scan {
    /// Writes the request in wire format.
    pub fn encode(&self, out: &mut impl BufMut) {
        put_fmt(out, format_args!("{SCAN_COMMAND} {}", self.limit));
        if let Some(after) = &self.after {
            out.put_u8(b' ');
            encode_base64(after, out);
        }
        out.put_slice(b"\r\n");
    }

    /// Parses the tokens after the command name (server side); `None` for a
    /// malformed line.
    pub(crate) fn parse(args: &[&[u8]]) -> Option<Scan> {
        let (limit, after) = match args {
            [limit] => (limit, None),
            [limit, after] => (limit, Some(Bytes::from(decode_base64(after)?))),
            _ => return None,
        };
        let limit = number::parse_u32(limit).filter(|l| (1..=MAX_SCAN_LIMIT).contains(l))?;
        Some(Scan { limit, after })
    }
}

/// One listed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanItem {
    /// The key (decoded).
    pub key: Bytes,
    /// The client flags.
    pub flags: u32,
    /// The absolute unix second the item expires at; `0`: never.
    pub exptime: u64,
    /// The cas unique.
    pub cas: u64,
    /// The data.
    pub value: Bytes,
}

/// One line (with its data, for an item) of an `mcstore_scan` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanReply {
    /// `ITEM ...` and its data.
    Item(ScanItem),
    /// `NEXT <cursor>`: the page is over and more keys follow.
    Next(Bytes),
    /// `END`: the scan is complete.
    End,
    /// Any other reply (an error).
    Other(Reply),
}

/// Writes an `ITEM` line, its data and the data's `\r\n`.
pub fn encode_scan_item(
    out: &mut impl BufMut,
    key: &[u8],
    flags: u32,
    exptime: u64,
    cas: u64,
    value: &[u8],
) {
    out.put_slice(b"ITEM ");
    encode_base64(key, out);
    put_fmt(
        out,
        format_args!(" {flags} {exptime} {cas} {}\r\n", value.len()),
    );
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Writes the last line of a page: `NEXT <cursor>` or `END`.
pub fn encode_scan_end(out: &mut impl BufMut, next: Option<&[u8]>) {
    match next {
        Some(cursor) => {
            out.put_slice(b"NEXT ");
            encode_base64(cursor, out);
            out.put_slice(b"\r\n");
        }
        None => out.put_slice(b"END\r\n"),
    }
}

/// Decodes one line of an `mcstore_scan` reply (client side);
/// [`Decoded::Incomplete`] until an item's data is buffered.
pub fn parse_scan_reply(input: &[u8]) -> Decoded<ScanReply> {
    let Some((line, line_len)) = find_line(input) else {
        return Decoded::Incomplete;
    };
    let malformed = |what: &str| {
        ScanReply::Other(Reply::ServerError(
            format!("malformed {what} line: {}", String::from_utf8_lossy(line)).into(),
        ))
    };
    if line == b"END" {
        return Decoded::Complete(ScanReply::End, line_len);
    }
    if let Some(cursor) = line.strip_prefix(b"NEXT ") {
        let reply = match decode_base64(cursor) {
            Some(cursor) => ScanReply::Next(Bytes::from(cursor)),
            None => malformed("NEXT"),
        };
        return Decoded::Complete(reply, line_len);
    }
    let Some(header) = line.strip_prefix(b"ITEM ") else {
        return match crate::reply::parse_reply(input) {
            Decoded::Complete(reply, used) => Decoded::Complete(ScanReply::Other(reply), used),
            Decoded::Incomplete => Decoded::Incomplete,
        };
    };
    let fields: Vec<&[u8]> = header.split(|&b| b == b' ').collect();
    let parsed = match fields.as_slice() {
        [key, flags, exptime, cas, len] => (|| {
            Some((
                Bytes::from(decode_base64(key)?),
                number::parse_u32(flags)?,
                number::parse_u64(exptime)?,
                number::parse_u64(cas)?,
                usize::try_from(number::parse_u64(len)?).ok()?,
            ))
        })(),
        _ => None,
    };
    let Some((key, flags, exptime, cas, len)) = parsed else {
        return Decoded::Complete(malformed("ITEM"), line_len);
    };
    let Some(total) = line_len.checked_add(len).and_then(|n| n.checked_add(2)) else {
        return Decoded::Complete(malformed("ITEM"), line_len);
    };
    if input.len() < total {
        return Decoded::Incomplete;
    }
    if &input[line_len + len..total] != b"\r\n" {
        return Decoded::Complete(
            ScanReply::Other(Reply::server_error(
                "ITEM data block not terminated by \\r\\n",
            )),
            total,
        );
    }
    let item = ScanItem {
        key,
        flags,
        exptime,
        cas,
        value: Bytes::copy_from_slice(&input[line_len..line_len + len]),
    };
    Decoded::Complete(ScanReply::Item(item), total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_request, Frame, Limits, Request};

    #[test]
    fn requests_round_trip_with_binary_keys() {
        for after in [None, Some(Bytes::from_static(b"a key\r\n\x00\xff"))] {
            let scan = Scan { limit: 17, after };
            let mut wire = Vec::new();
            scan.encode(&mut wire);
            let Decoded::Complete(Frame::Request(Request::Scan(parsed)), used) =
                parse_request(&wire, &Limits::default())
            else {
                panic!("{wire:?} does not parse");
            };
            assert_eq!(used, wire.len());
            assert_eq!(parsed, scan);
        }
    }

    #[test]
    fn bad_limits_and_cursors_are_client_errors() {
        for line in [
            "mcstore_scan 0\r\n",
            "mcstore_scan 1001\r\n",
            "mcstore_scan x\r\n",
            "mcstore_scan 10 not*base64\r\n",
            "mcstore_scan 10 YQ== extra\r\n",
            "mcstore_scan\r\n",
        ] {
            let parsed = parse_request(line.as_bytes(), &Limits::default());
            assert!(
                matches!(
                    parsed,
                    Decoded::Complete(
                        Frame::Rejected {
                            reply: Reply::ClientError(_),
                            ..
                        },
                        _
                    ) | Decoded::Complete(
                        Frame::Rejected {
                            reply: Reply::Error,
                            ..
                        },
                        _
                    )
                ),
                "{line:?}: {parsed:?}"
            );
        }
    }

    #[test]
    fn replies_decode_at_every_cut() {
        let mut wire = Vec::new();
        encode_scan_item(&mut wire, b"k \x01", 7, 1_900_000_000, 42, b"va\r\nlue");
        encode_scan_end(&mut wire, Some(b"k \x01"));
        encode_scan_end(&mut wire, None);
        let item = ScanItem {
            key: Bytes::from_static(b"k \x01"),
            flags: 7,
            exptime: 1_900_000_000,
            cas: 42,
            value: Bytes::from_static(b"va\r\nlue"),
        };
        let expected = [
            ScanReply::Item(item),
            ScanReply::Next(Bytes::from_static(b"k \x01")),
            ScanReply::End,
        ];
        let mut at = 0;
        for want in expected {
            let Decoded::Complete(reply, used) = parse_scan_reply(&wire[at..]) else {
                panic!("incomplete");
            };
            assert_eq!(reply, want);
            for cut in at..at + used {
                assert_eq!(
                    parse_scan_reply(&wire[at..cut]),
                    Decoded::Incomplete,
                    "cut at {cut}"
                );
            }
            at += used;
        }
        assert_eq!(at, wire.len());
        assert!(matches!(
            parse_scan_reply(b"CLIENT_ERROR bad command line format\r\n"),
            Decoded::Complete(ScanReply::Other(Reply::ClientError(_)), _)
        ));
    }
}
