//! The incremental request parser.
//!
//! [`parse_request`] looks at the bytes buffered so far and returns either a
//! [`Frame`] with the number of bytes it used, or [`Decoded::Incomplete`]
//! when it needs more. Framing uses nom's streaming combinators; what each
//! command accepts, and which error a malformed line gets, follows memcached
//! 1.6's `proto_text.c` token by token (including its quirks: only spaces
//! separate tokens, a NUL byte ends the line, a `\r` is stripped only from a
//! line longer than one byte, extra tokens after a storage command are
//! ignored).
//!
//! A two-byte command starting with `m` is a meta command and is parsed by
//! [`crate::meta`].
//!
//! Limits are enforced before buffering: a storage command whose item would
//! exceed the size limit is answered as soon as its command line is
//! complete, and its data is discarded as it arrives rather than buffered.

use bytes::Bytes;
use nom::bytes::streaming::{tag, take, take_until};
use nom::sequence::terminated;
use nom::IResult;

use crate::reply::Reply;
use crate::request::{
    Arithmetic, Delete, FlushAll, Get, Request, Slabs, Stats, Store, StoreMode, Touch, Verbosity,
    Watch,
};
use crate::{meta, number, Limits, MAX_KEY_LENGTH};

/// The outcome of looking at a buffer: a complete item and the number of
/// bytes it used, or a request for more input. Running out of input is not
/// an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A complete item, and how many bytes of the input it used.
    Complete(T, usize),
    /// The input ends before the item does: read more and try again.
    Incomplete,
}

/// What the connection should do with the next bytes of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A well-formed request.
    Request(Request),
    /// A malformed request: answer `reply` (unless `noreply`) and go on.
    Rejected {
        /// The error reply.
        reply: Reply,
        /// The request asked for no reply, which memcached honours even for
        /// most errors.
        noreply: bool,
    },
    /// A storage command whose item is over the size limit. Answer
    /// `SERVER_ERROR object too large for cache` (unless `noreply`), remove
    /// the key's current item if the command is `set` (memcached never
    /// leaves a stale value behind a failed set), and discard the next
    /// `discard` bytes of input, the data block, as they arrive.
    TooLarge {
        /// The storage command.
        mode: StoreMode,
        /// Its key.
        key: Bytes,
        /// Send no reply.
        noreply: bool,
        /// Bytes of input to discard (the data block and its `\r\n`).
        discard: u64,
    },
    /// A rejected `ms` whose data block is still to come. Answer `reply`
    /// (always: meta errors ignore `q`), then discard the next `discard`
    /// bytes of input (the data block and its `\r\n`, whatever they hold)
    /// as they arrive. When `unlink` is set (the item was too large:
    /// `SERVER_ERROR object too large for cache`), first remove that key's
    /// current item, whatever the `ms` mode, as memcached 1.6.18 does.
    Swallow {
        /// The error reply.
        reply: Reply,
        /// Bytes of input to discard after the command line.
        discard: u64,
        /// The (decoded) key whose item must be removed, if any.
        unlink: Option<Bytes>,
    },
    /// A get line with a bad key. memcached then drops every reply of the
    /// connection not yet sent (`conn_release_items`) and sends only this.
    RejectedGet {
        /// The error reply.
        reply: Reply,
    },
    /// Close the connection without replying, dropping replies not yet sent
    /// (memcached's `conn_closing`): a line too long to be a command, an
    /// HTTP request.
    Close(CloseReason),
}

/// Why the parser asks to close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// More than [`Limits::max_line`] bytes without a newline, not a `get`.
    LineTooLong,
    /// A `get` line longer than [`Limits::max_get_line`].
    GetLineTooLong,
    /// Something that looks like HTTP.
    Http,
}

/// The tokens of a command line, as memcached's `tokenize_command` splits
/// it: at most [`MAX_TOKENS`] - 1 tokens, and the unsplit remainder.
pub(crate) struct Tokens<'a> {
    items: [&'a [u8]; MAX_TOKENS - 1],
    len: usize,
    /// What was left unsplit after the last token, if anything.
    rest: Option<&'a [u8]>,
}

/// memcached's `MAX_TOKENS`: its token array holds this many entries,
/// including the terminal one.
const MAX_TOKENS: usize = 24;

impl<'a> Tokens<'a> {
    pub(crate) fn split(line: &'a [u8]) -> Tokens<'a> {
        let mut tokens = Tokens {
            items: [&[]; MAX_TOKENS - 1],
            len: 0,
            rest: None,
        };
        let mut start = 0;
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                if start != i {
                    tokens.items[tokens.len] = &line[start..i];
                    tokens.len += 1;
                    if tokens.len == MAX_TOKENS - 1 {
                        let rest = &line[i + 1..];
                        tokens.rest = (!rest.is_empty()).then_some(rest);
                        return tokens;
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        if start != line.len() {
            tokens.items[tokens.len] = &line[start..];
            tokens.len += 1;
        }
        tokens
    }

    /// memcached's `ntokens`: the tokens plus the terminal entry.
    pub(crate) fn ntokens(&self) -> usize {
        self.len + 1
    }

    pub(crate) fn get(&self, index: usize) -> &'a [u8] {
        if index < self.len {
            self.items[index]
        } else {
            &[]
        }
    }

    pub(crate) fn as_slice(&self) -> &[&'a [u8]] {
        &self.items[..self.len]
    }

    /// The last token; memcached looks for `noreply` there.
    pub(crate) fn last(&self) -> &'a [u8] {
        self.get(self.len.wrapping_sub(1))
    }

    pub(crate) fn rest(&self) -> Option<&'a [u8]> {
        self.rest
    }
}

/// One line ending in `\n`, by nom's streaming combinators.
fn line_with_newline(input: &[u8]) -> IResult<&[u8], &[u8]> {
    terminated(take_until("\n"), tag("\n"))(input)
}

/// Splits off the first line of a reply (client side): the line without its
/// `\r\n` or `\n`, and the bytes used including the line ending.
pub(crate) fn find_line(input: &[u8]) -> Option<(&[u8], usize)> {
    let (rest, line) = line_with_newline(input).ok()?;
    let used = input.len() - rest.len();
    Some((line.strip_suffix(b"\r").unwrap_or(line), used))
}

/// Splits off the first command line the way memcached does: `\r` is removed
/// only from a line longer than one byte, and a NUL byte ends the line.
fn command_line(input: &[u8]) -> Option<(&[u8], usize)> {
    let (rest, mut line) = line_with_newline(input).ok()?;
    let used = input.len() - rest.len();
    if line.len() > 1 && line.ends_with(b"\r") {
        line = &line[..line.len() - 1];
    }
    if let Some(nul) = memchr::memchr(0, line) {
        line = &line[..nul];
    }
    Some((line, used))
}

/// The data block of a storage command: `len` bytes and two more that must
/// be `\r\n`. Returns the data (or `None` for a bad chunk) and the bytes used.
pub(crate) fn data_block(input: &[u8], len: usize) -> Decoded<Option<&[u8]>> {
    let block: IResult<&[u8], &[u8]> = take(len + 2)(input);
    match block {
        Ok((_, block)) => {
            let (data, terminator) = block.split_at(len);
            let data = (terminator == b"\r\n").then_some(data);
            Decoded::Complete(data, len + 2)
        }
        Err(_) => Decoded::Incomplete,
    }
}

/// Parses the next request from `input`.
pub fn parse_request(input: &[u8], limits: &Limits) -> Decoded<Frame> {
    let Some((line, line_len)) = command_line(input) else {
        return no_newline_yet(input, limits);
    };
    let tokens = Tokens::split(line);
    let frame = match dispatch(&tokens, line, input, line_len, limits) {
        Dispatched::Frame(frame) => frame,
        Dispatched::WithData(frame, data_len) => {
            return Decoded::Complete(frame, line_len + data_len)
        }
        Dispatched::NeedData => return Decoded::Incomplete,
    };
    Decoded::Complete(frame, line_len)
}

/// memcached's rule for a buffer without a newline: past
/// [`Limits::max_line`] bytes it must be a (long) `get`/`gets`, otherwise the
/// connection is closed.
fn no_newline_yet(input: &[u8], limits: &Limits) -> Decoded<Frame> {
    if input.len() <= limits.max_line {
        return Decoded::Incomplete;
    }
    let spaces = input.iter().take_while(|&&b| b == b' ').count();
    let start = &input[spaces..];
    let is_get = start.starts_with(b"get ") || start.starts_with(b"gets ");
    if spaces > 100 || !is_get {
        return Decoded::Complete(Frame::Close(CloseReason::LineTooLong), 0);
    }
    if input.len() > limits.max_get_line {
        return Decoded::Complete(Frame::Close(CloseReason::GetLineTooLong), 0);
    }
    Decoded::Incomplete
}

pub(crate) enum Dispatched {
    /// A frame that used just the command line.
    Frame(Frame),
    /// A frame that also used this many bytes of data after the line.
    WithData(Frame, usize),
    /// The command line is complete but its data block is not.
    NeedData,
}

impl From<Frame> for Dispatched {
    fn from(frame: Frame) -> Self {
        Dispatched::Frame(frame)
    }
}

pub(crate) const ERROR: Frame = Frame::Rejected {
    reply: Reply::Error,
    noreply: false,
};

pub(crate) fn reject(message: &'static str, noreply: bool) -> Frame {
    Frame::Rejected {
        reply: Reply::client_error(message),
        noreply,
    }
}

const BAD_FORMAT: &str = "bad command line format";
const BAD_EXPTIME: &str = "invalid exptime argument";

fn dispatch(
    tokens: &Tokens<'_>,
    line: &[u8],
    input: &[u8],
    line_len: usize,
    limits: &Limits,
) -> Dispatched {
    let ntokens = tokens.ntokens();
    let command = tokens.get(0);
    if ntokens < 2 || command.len() < 2 {
        return ERROR.into();
    }
    if command.len() == 2 && command[0] == b'm' {
        return meta::parse_meta(tokens, input, line_len, limits);
    }
    let wants = |allowed: &[usize]| allowed.contains(&ntokens);
    let frame = match command {
        b"get" | b"bget" | b"gets" | b"gat" | b"gats" if ntokens >= 3 => {
            parse_get(tokens, line, command)
        }
        b"set" | b"add" | b"append" | b"replace" | b"prepend" if wants(&[6, 7]) => {
            let mode = match command {
                b"set" => StoreMode::Set,
                b"add" => StoreMode::Add,
                b"append" => StoreMode::Append,
                b"replace" => StoreMode::Replace,
                _ => StoreMode::Prepend,
            };
            return parse_store(tokens, mode, input, line_len, limits);
        }
        b"cas" if wants(&[7, 8]) => {
            return parse_store(tokens, StoreMode::Cas(0), input, line_len, limits)
        }
        b"incr" | b"decr" if wants(&[4, 5]) => parse_arithmetic(tokens, command == b"incr"),
        b"delete" if (3..=5).contains(&ntokens) => parse_delete(tokens),
        b"touch" if wants(&[4, 5]) => parse_touch(tokens),
        b"flush_all" if (2..=4).contains(&ntokens) => parse_flush_all(tokens),
        b"verbosity" if wants(&[3, 4]) => parse_verbosity(tokens),
        b"version" => Frame::Request(Request::Version),
        // memcached refuses it unless started with -A; mcstore never takes it.
        b"shutdown" => Frame::Rejected {
            reply: Reply::ErrorMessage(": shutdown not enabled".into()),
            noreply: false,
        },
        b"quit" => Frame::Request(Request::Quit),
        b"mcstore_cluster" => match crate::admin::ClusterCommand::parse(&tokens.as_slice()[1..]) {
            Some(command) => Frame::Request(Request::Cluster(command)),
            None => reject(BAD_FORMAT, false),
        },
        b"mcstore_scan" => match crate::scan::Scan::parse(&tokens.as_slice()[1..]) {
            Some(scan) => Frame::Request(Request::Scan(scan)),
            None => reject(BAD_FORMAT, false),
        },
        b"stats" => Frame::Request(Request::Stats(match tokens.get(1) {
            _ if ntokens == 2 => Stats::General,
            b"settings" => Stats::Settings,
            b"reset" => Stats::Reset,
            // memcached reads the word after `detail` only with 4+ tokens.
            b"detail" => {
                Stats::Detail((ntokens >= 4).then(|| Bytes::copy_from_slice(tokens.get(2))))
            }
            group => Stats::Group(Bytes::copy_from_slice(group)),
        })),
        b"watch" => Frame::Request(Request::Watch(Watch {
            words: tokens.as_slice()[1..]
                .iter()
                .map(|w| Bytes::copy_from_slice(w))
                .collect(),
            noreply: tokens.last() == b"noreply",
        })),
        b"slabs" => parse_slabs(tokens),
        _ => {
            // memcached only looks for HTTP when the first byte matches none
            // of its command families (a wrong token count is plain ERROR).
            let known_family = matches!(command[0], b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't')
                || matches!(
                    command,
                    b"replace"
                        | b"prepend"
                        | b"bget"
                        | b"flush_all"
                        | b"verbosity"
                        | b"lru"
                        | b"lru_crawler"
                        | b"watch"
                );
            if !known_family && tokens.last().starts_with(b"HTTP/") {
                Frame::Close(CloseReason::Http)
            } else {
                ERROR
            }
        }
    };
    frame.into()
}

fn key_ok(key: &[u8]) -> bool {
    key.len() <= MAX_KEY_LENGTH
}

fn parse_get(tokens: &Tokens<'_>, line: &[u8], command: &[u8]) -> Frame {
    let with_cas = matches!(command, b"gets" | b"gats");
    let mut first_key = 1;
    let touch = if matches!(command, b"gat" | b"gats") {
        let Some(exptime) = number::parse_i32(tokens.get(1)) else {
            return reject(BAD_EXPTIME, false);
        };
        first_key = 2;
        Some(exptime)
    } else {
        None
    };
    let mut keys: Vec<Bytes> = Vec::with_capacity(tokens.ntokens().saturating_sub(first_key));
    let mut push = |key: &[u8]| {
        if key_ok(key) {
            keys.push(Bytes::copy_from_slice(key));
            true
        } else {
            false
        }
    };
    let bad_key = || Frame::RejectedGet {
        reply: Reply::client_error(BAD_FORMAT),
    };
    for key in &tokens.as_slice()[first_key.min(tokens.as_slice().len())..] {
        if !push(key) {
            return bad_key();
        }
    }
    if let Some(rest) = tokens.rest() {
        debug_assert!(line.ends_with(rest));
        for key in rest.split(|&b| b == b' ').filter(|k| !k.is_empty()) {
            if !push(key) {
                return bad_key();
            }
        }
    }
    Frame::Request(Request::Get(Get {
        keys,
        with_cas,
        touch,
    }))
}

/// memcached's item size for the limit check (`item_make_header` plus the
/// cas field): a 48-byte header, 8 bytes of cas, the key and its NUL, 4 bytes
/// of flags when they are not 0, and the data with its `\r\n`.
pub fn item_size(key_len: usize, flags: u32, value_len: usize) -> u64 {
    let flags_len = if flags == 0 { 0 } else { 4 };
    59 + key_len as u64 + flags_len + value_len as u64
}

fn parse_store(
    tokens: &Tokens<'_>,
    mode: StoreMode,
    input: &[u8],
    line_len: usize,
    limits: &Limits,
) -> Dispatched {
    let noreply = tokens.last() == b"noreply";
    let key = tokens.get(1);
    if !key_ok(key) {
        return reject(BAD_FORMAT, noreply).into();
    }
    let (Some(flags), Some(exptime), Some(value_len)) = (
        number::parse_u32(tokens.get(2)),
        number::parse_i32(tokens.get(3)),
        number::parse_i32(tokens.get(4)),
    ) else {
        return reject(BAD_FORMAT, noreply).into();
    };
    let mode = match mode {
        StoreMode::Cas(_) => match number::parse_u64(tokens.get(5)) {
            Some(unique) => StoreMode::Cas(unique),
            None => return reject(BAD_FORMAT, noreply).into(),
        },
        other => other,
    };
    if !(0..=i32::MAX - 2).contains(&value_len) {
        return reject(BAD_FORMAT, noreply).into();
    }
    let value_len = value_len as usize;
    if item_size(key.len(), flags, value_len) > limits.max_item_size as u64 {
        return Frame::TooLarge {
            mode,
            key: Bytes::copy_from_slice(key),
            noreply,
            discard: value_len as u64 + 2,
        }
        .into();
    }
    match data_block(&input[line_len..], value_len) {
        Decoded::Incomplete => Dispatched::NeedData,
        Decoded::Complete(None, used) => {
            Dispatched::WithData(reject("bad data chunk", noreply), used)
        }
        Decoded::Complete(Some(value), used) => Dispatched::WithData(
            Frame::Request(Request::Store(Store {
                mode,
                key: Bytes::copy_from_slice(key),
                flags,
                exptime,
                value: Bytes::copy_from_slice(value),
                noreply,
            })),
            used,
        ),
    }
}

fn parse_arithmetic(tokens: &Tokens<'_>, increment: bool) -> Frame {
    let noreply = tokens.last() == b"noreply";
    let key = tokens.get(1);
    if !key_ok(key) {
        return reject(BAD_FORMAT, noreply);
    }
    let Some(delta) = number::parse_u64(tokens.get(2)) else {
        return reject("invalid numeric delta argument", noreply);
    };
    Frame::Request(Request::Arithmetic(Arithmetic {
        key: Bytes::copy_from_slice(key),
        increment,
        delta,
        noreply,
    }))
}

fn parse_delete(tokens: &Tokens<'_>) -> Frame {
    let ntokens = tokens.ntokens();
    let mut noreply = false;
    if ntokens > 3 {
        let hold_is_zero = tokens.get(2) == b"0";
        noreply = tokens.last() == b"noreply";
        let valid = (ntokens == 4 && (hold_is_zero || noreply))
            || (ntokens == 5 && hold_is_zero && noreply);
        if !valid {
            return reject(
                "bad command line format.  Usage: delete <key> [noreply]",
                noreply,
            );
        }
    }
    let key = tokens.get(1);
    if !key_ok(key) {
        return reject(BAD_FORMAT, noreply);
    }
    Frame::Request(Request::Delete(Delete {
        key: Bytes::copy_from_slice(key),
        noreply,
    }))
}

fn parse_touch(tokens: &Tokens<'_>) -> Frame {
    let noreply = tokens.last() == b"noreply";
    let key = tokens.get(1);
    if !key_ok(key) {
        return reject(BAD_FORMAT, noreply);
    }
    let Some(exptime) = number::parse_i32(tokens.get(2)) else {
        return reject(BAD_EXPTIME, noreply);
    };
    Frame::Request(Request::Touch(Touch {
        key: Bytes::copy_from_slice(key),
        exptime,
        noreply,
    }))
}

fn parse_flush_all(tokens: &Tokens<'_>) -> Frame {
    let noreply = tokens.last() == b"noreply";
    let mut delay = 0;
    if tokens.ntokens() != if noreply { 3 } else { 2 } {
        match number::parse_i32(tokens.get(1)) {
            Some(value) => delay = value,
            None => return reject(BAD_EXPTIME, noreply),
        }
    }
    Frame::Request(Request::FlushAll(FlushAll { delay, noreply }))
}

/// `slabs`: memcached's `process_slabs_command` and its automove checks.
fn parse_slabs(tokens: &Tokens<'_>) -> Frame {
    let ntokens = tokens.ntokens();
    let noreply = tokens.last() == b"noreply";
    match tokens.get(1) {
        b"reassign" if ntokens == 5 => {
            match (
                number::parse_i32(tokens.get(2)),
                number::parse_i32(tokens.get(3)),
            ) {
                (Some(source), Some(destination)) => {
                    Frame::Request(Request::Slabs(Slabs::Reassign {
                        source,
                        destination,
                    }))
                }
                _ => reject(BAD_FORMAT, false),
            }
        }
        b"automove" if ntokens >= 4 => {
            let word = tokens.get(2);
            if word == b"ratio" {
                let ratio = tokens.get(3);
                let valid = ntokens >= 5
                    && std::str::from_utf8(ratio)
                        .ok()
                        .and_then(|r| r.trim().parse::<f64>().ok())
                        .is_some();
                return if valid {
                    Frame::Request(Request::Slabs(Slabs::AutomoveRatio {
                        ratio: Bytes::copy_from_slice(ratio),
                        noreply,
                    }))
                } else {
                    Frame::Rejected {
                        reply: Reply::Error,
                        noreply,
                    }
                };
            }
            match number::parse_u32(word) {
                None => reject(BAD_FORMAT, noreply),
                Some(level @ 0..=2) => {
                    Frame::Request(Request::Slabs(Slabs::Automove { level, noreply }))
                }
                Some(_) => Frame::Rejected {
                    reply: Reply::Error,
                    noreply,
                },
            }
        }
        _ => ERROR,
    }
}

fn parse_verbosity(tokens: &Tokens<'_>) -> Frame {
    let noreply = tokens.last() == b"noreply";
    match number::parse_u32(tokens.get(1)) {
        Some(level) => Frame::Request(Request::Verbosity(Verbosity { level, noreply })),
        None => reject(BAD_FORMAT, noreply),
    }
}

#[cfg(test)]
pub(crate) mod tests;
