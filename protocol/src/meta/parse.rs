//! Parsing meta command lines as memcached 1.6.18's `proto_text.c` does,
//! token by token, with its error strings (see the module documentation of
//! [`crate::meta`]).

use bytes::Bytes;

use super::*;
use crate::parse::{data_block, item_size, reject, Decoded, Dispatched, Frame, Tokens, ERROR};
use crate::reply::Reply;
use crate::request::Request;
use crate::{number, Limits, MAX_KEY_LENGTH};

const BAD_FORMAT: &str = "bad command line format";
const BAD_TOKEN: &str = "bad token in command line format";
const INVALID_OR_DUPLICATE: &str = "invalid or duplicate flag";
const OPAQUE_TOO_LONG: &str = "opaque token too long";

/// What `_meta_flag_preparse` learns from the flag tokens.
#[derive(Default)]
struct Flags<'a> {
    key: Option<Vec<u8>>,
    base64: bool,
    returns: Vec<ReturnFlag>,
    /// The whole `O` token, `O` included.
    opaque: Option<&'a [u8]>,
    value: bool,
    quiet: bool,
    no_bump: bool,
    invalidate: bool,
    ttl: Option<i32>,
    vivify: Option<i32>,
    recache: Option<i32>,
    client_flags: u32,
    cas: Option<u64>,
    new_cas: Option<u64>,
    remove_value: bool,
    mode: Option<u8>,
    initial: u64,
    delta: Option<u64>,
    /// Positions of `T`, `N` and `t` among the flags.
    touch_at: Option<usize>,
    vivify_at: Option<usize>,
    ttl_at: Option<usize>,
    recache_at: Option<usize>,
}

impl Flags<'_> {
    fn key(&self, raw: &[u8]) -> Bytes {
        match &self.key {
            Some(decoded) => Bytes::copy_from_slice(decoded),
            None => Bytes::copy_from_slice(raw),
        }
    }

    fn ttl_order(&self) -> TtlOrder {
        TtlOrder::from_positions(self.touch_at, self.vivify_at, self.ttl_at, self.recache_at)
    }

    fn opaque_too_long(&self) -> bool {
        self.opaque
            .is_some_and(|token| token.len() > MAX_OPAQUE_TOKEN)
    }

    fn opaque(&self) -> Option<Bytes> {
        self.opaque.map(|token| Bytes::copy_from_slice(&token[1..]))
    }

    /// The return flags, keeping only those the command echoes.
    fn returns(&self, echoed: &[ReturnFlag]) -> Vec<ReturnFlag> {
        self.returns
            .iter()
            .copied()
            .filter(|flag| echoed.contains(flag))
            .collect()
    }
}

/// memcached's `_meta_flag_preparse`. Like memcached it goes on after a bad
/// numeric token (a later bad token may replace the message) but stops at a
/// duplicate or unknown flag. Errors are messages for `CLIENT_ERROR`.
fn preparse<'a>(key: &[u8], flags: &[&'a [u8]]) -> Result<Flags<'a>, &'static str> {
    let mut parsed = Flags::default();
    let mut seen = [false; 127];
    let mut error: Option<&'static str> = None;
    let mut has_error = false;
    let mut fail = |message: Option<&'static str>| {
        has_error = true;
        if let Some(message) = message {
            error = Some(message);
        }
    };
    for (position, &token) in flags.iter().enumerate() {
        let flag = token[0];
        if flag >= 127 || seen[flag as usize] {
            return Err("duplicate flag");
        }
        seen[flag as usize] = true;
        let argument = &token[1..];
        match flag {
            b'T' => parsed.touch_at = Some(position),
            b'N' => parsed.vivify_at = Some(position),
            b't' => parsed.ttl_at = Some(position),
            b'R' => parsed.recache_at = Some(position),
            _ => {}
        }
        if let Some(returned) = ReturnFlag::from_byte(flag) {
            parsed.returns.push(returned);
            if returned == ReturnFlag::Opaque {
                parsed.opaque = Some(token);
            }
            continue;
        }
        let exptime = |fail: &mut dyn FnMut(Option<&'static str>)| {
            let value = number::parse_i32(argument);
            if value.is_none() {
                fail(Some(BAD_TOKEN));
            }
            value
        };
        match flag {
            b'b' => {
                parsed.base64 = true;
                match decode_base64(key) {
                    Some(decoded) => parsed.key = Some(decoded),
                    None => {
                        parsed.key = Some(Vec::new());
                        fail(Some("error decoding key"));
                    }
                }
            }
            b'N' => parsed.vivify = exptime(&mut fail),
            b'T' => parsed.ttl = exptime(&mut fail),
            b'R' => parsed.recache = exptime(&mut fail),
            b'P' | b'L' => {}
            b'v' => parsed.value = true,
            b'u' => parsed.no_bump = true,
            b'q' => parsed.quiet = true,
            b'F' => match number::parse_u32(argument) {
                Some(value) => parsed.client_flags = value,
                None => fail(None),
            },
            b'C' => match number::parse_u64(argument) {
                Some(value) => parsed.cas = Some(value),
                None => fail(Some(BAD_TOKEN)),
            },
            b'M' => {
                if token.len() == 2 {
                    parsed.mode = Some(token[1]);
                } else {
                    fail(Some("incorrect length for M token"));
                }
            }
            b'J' => match number::parse_u64(argument) {
                Some(value) => parsed.initial = value,
                None => fail(Some("invalid numeric initial value")),
            },
            b'D' => match number::parse_u64(argument) {
                Some(value) => parsed.delta = Some(value),
                None => fail(Some("invalid numeric delta value")),
            },
            b'I' => parsed.invalidate = true,
            // Newer than 1.6.18 (current doc/protocol.txt).
            b'E' => match number::parse_u64(argument) {
                Some(value) => parsed.new_cas = Some(value),
                None => fail(Some(BAD_TOKEN)),
            },
            b'x' => parsed.remove_value = true,
            _ => return Err("invalid flag"),
        }
    }
    if has_error {
        Err(error.unwrap_or(BAD_FORMAT))
    } else {
        Ok(parsed)
    }
}

fn meta_error(message: &'static str) -> Dispatched {
    // memcached's out_errstring: meta errors ignore `q`.
    reject(message, false).into()
}

/// Parses a meta command (a two-byte command starting with `m`). `input`
/// starts with the command line, which is `line_len` bytes long.
pub(crate) fn parse_meta(
    tokens: &Tokens<'_>,
    input: &[u8],
    line_len: usize,
    limits: &Limits,
) -> Dispatched {
    let ntokens = tokens.ntokens();
    let command = tokens.get(0)[1];
    match command {
        b'n' => return Frame::Request(Request::Meta(MetaRequest::Noop)).into(),
        b'e' => return parse_debug(tokens),
        b'g' | b's' | b'd' | b'a' => {}
        _ => return ERROR.into(),
    }
    if ntokens < 3 {
        return ERROR.into();
    }
    let key = tokens.get(1);
    if key.len() > MAX_KEY_LENGTH {
        return meta_error(BAD_FORMAT);
    }
    if command == b's' {
        return parse_set(tokens, key, input, line_len, limits);
    }
    if ntokens > MAX_META_TOKENS {
        return meta_error(if command == b'g' {
            "options flags are too long"
        } else {
            "options flags too long"
        });
    }
    let flags = match preparse(key, &tokens.as_slice()[2..]) {
        Ok(flags) => flags,
        Err(message) if command == b'g' => return meta_error(message),
        Err(_) => return meta_error(INVALID_OR_DUPLICATE),
    };
    let request = match command {
        b'g' => {
            if flags.opaque_too_long() {
                return meta_error(OPAQUE_TOO_LONG);
            }
            MetaRequest::Get(MetaGet {
                key: flags.key(key),
                base64_key: flags.base64,
                returns: flags.returns.clone(),
                opaque: flags.opaque(),
                value: flags.value,
                quiet: flags.quiet,
                no_bump: flags.no_bump,
                touch: flags.ttl,
                vivify: flags.vivify,
                recache: flags.recache,
                new_cas: flags.new_cas,
                ttl_order: flags.ttl_order(),
            })
        }
        b'd' => {
            if flags.opaque_too_long() {
                return meta_error(OPAQUE_TOO_LONG);
            }
            MetaRequest::Delete(MetaDelete {
                key: flags.key(key),
                base64_key: flags.base64,
                returns: flags.returns(&[ReturnFlag::Key, ReturnFlag::Opaque]),
                opaque: flags.opaque(),
                compare_cas: flags.cas,
                invalidate: flags.invalidate,
                ttl: flags.ttl,
                remove_value: flags.remove_value,
                flags: flags.client_flags,
                new_cas: flags.new_cas,
                quiet: flags.quiet,
            })
        }
        _ => {
            let mode = match flags.mode {
                None | Some(b'I' | b'+') => MetaArithmeticMode::Increment,
                Some(b'D' | b'-') => MetaArithmeticMode::Decrement,
                Some(_) => return meta_error("invalid mode for ma M token"),
            };
            if flags.opaque_too_long() {
                return meta_error(OPAQUE_TOO_LONG);
            }
            MetaRequest::Arithmetic(MetaArithmetic {
                key: flags.key(key),
                base64_key: flags.base64,
                returns: flags.returns(&[
                    ReturnFlag::Cas,
                    ReturnFlag::Ttl,
                    ReturnFlag::Key,
                    ReturnFlag::Opaque,
                ]),
                opaque: flags.opaque(),
                mode,
                delta: flags.delta.unwrap_or(1),
                initial: flags.initial,
                vivify: flags.vivify,
                ttl: flags.ttl,
                // ma ignores R, so its position must not shape the order.
                ttl_order: TtlOrder {
                    touch_before_recache: false,
                    ..flags.ttl_order()
                },
                compare_cas: flags.cas,
                new_cas: flags.new_cas,
                value: flags.value,
                quiet: flags.quiet,
            })
        }
    };
    Frame::Request(Request::Meta(request)).into()
}

/// `ms`: the checks of `process_mset_command`, in its order. Errors found
/// after the data length is known swallow the data block.
fn parse_set(
    tokens: &Tokens<'_>,
    key: &[u8],
    input: &[u8],
    line_len: usize,
    limits: &Limits,
) -> Dispatched {
    let ntokens = tokens.ntokens();
    if ntokens == 3 {
        return meta_error(BAD_FORMAT);
    }
    if ntokens > MAX_META_TOKENS {
        return meta_error("options flags too long");
    }
    let value_len = match number::parse_i32(tokens.get(2)) {
        Some(len) if (0..=i32::MAX - 2).contains(&len) => len as usize,
        _ => return meta_error(BAD_FORMAT),
    };
    let discard = value_len as u64 + 2;
    let swallow = |reply: Reply, unlink: Option<Bytes>| {
        Dispatched::Frame(Frame::Swallow {
            reply,
            discard,
            unlink,
        })
    };
    let flags = match preparse(key, &tokens.as_slice()[3..]) {
        Ok(flags) => flags,
        Err(message) => return swallow(Reply::client_error(message), None),
    };
    let mode = match flags.mode {
        None => MetaSetMode::Set,
        Some(byte) => match MetaSetMode::from_byte(byte) {
            Some(mode) => mode,
            None => return swallow(Reply::client_error("invalid mode for ms M token"), None),
        },
    };
    if flags.opaque_too_long() {
        return swallow(Reply::client_error(OPAQUE_TOO_LONG), None);
    }
    let key = flags.key(key);
    if item_size(key.len(), flags.client_flags, value_len) > limits.max_item_size as u64 {
        return swallow(Reply::server_error("object too large for cache"), Some(key));
    }
    match data_block(&input[line_len..], value_len) {
        Decoded::Incomplete => Dispatched::NeedData,
        Decoded::Complete(None, used) => {
            Dispatched::WithData(reject("bad data chunk", false), used)
        }
        Decoded::Complete(Some(value), used) => Dispatched::WithData(
            Frame::Request(Request::Meta(MetaRequest::Set(MetaSet {
                key,
                base64_key: flags.base64,
                returns: flags.returns(&[
                    ReturnFlag::Cas,
                    ReturnFlag::Key,
                    ReturnFlag::Opaque,
                    ReturnFlag::Size,
                ]),
                opaque: flags.opaque(),
                mode,
                flags: flags.client_flags,
                ttl: flags.ttl,
                compare_cas: flags.cas,
                invalidate: flags.invalidate,
                new_cas: flags.new_cas,
                vivify: flags.vivify,
                quiet: flags.quiet,
                value: Bytes::copy_from_slice(value),
            }))),
            used,
        ),
    }
}

/// `me`: `process_meta_command`, which has its own checks and no flags.
fn parse_debug(tokens: &Tokens<'_>) -> Dispatched {
    let ntokens = tokens.ntokens();
    let key = tokens.get(1);
    if ntokens < 3 || key.len() > MAX_KEY_LENGTH {
        return meta_error(BAD_FORMAT);
    }
    let base64_key = ntokens >= 4 && tokens.get(2) == b"b";
    let key = if base64_key {
        match decode_base64(key) {
            Some(decoded) => Bytes::from(decoded),
            None => return meta_error(BAD_FORMAT),
        }
    } else {
        Bytes::copy_from_slice(key)
    };
    Frame::Request(Request::Meta(MetaRequest::Debug(MetaDebug {
        key,
        base64_key,
    })))
    .into()
}
