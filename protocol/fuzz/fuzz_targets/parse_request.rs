//! Fuzz target for [`mcstore_protocol::parse_request`], the server-side
//! incremental request parser.
//!
//! Input layout: byte 0 bit 0 selects small [`Limits`] (taken from bytes 3,
//! 4 and 5, so that the line-length and item-size rules are reachable with
//! short inputs) instead of the defaults; bytes 1–2 choose where the payload
//! is split in two reads; the payload starts at byte 6.
//!
//! Properties checked on every frame (not just "no panic"):
//! - `Complete(frame, used)` has `used <= input.len()`, and `used > 0` unless
//!   the frame is a [`Frame::Close`];
//! - a `Close(LineTooLong | GetLineTooLong)` only comes from a buffer longer
//!   than `max_line` that holds no newline;
//! - parsing exactly `input[..used]` gives the same frame and `used`;
//! - parsing a shorter prefix (a cut before the end of the line, just after
//!   it, halfway, one byte short) never gives a complete frame: it is
//!   `Incomplete`, or the no-newline `Close` above;
//! - a parsed `Frame::Request(r)` re-encoded with `r.encode` parses back to
//!   `r`, using all of the encoding, and re-encodes to the same bytes;
//! - a parsed `set`-family or `ms` value respects `Limits::max_item_size`
//!   (as [`mcstore_protocol::item_size`] counts it) and keys are at most
//!   [`mcstore_protocol::MAX_KEY_LENGTH`] bytes;
//! - feeding the payload in two reads (the split point chosen by the fuzzer)
//!   gives the same frames as one read, except that the first read may end
//!   in a no-newline `Close` that the whole buffer would not give.
//!
//! A connection is simulated: after `TooLarge`/`Swallow` the next `discard`
//! bytes are dropped, and parsing stops at a `Close`.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mcstore_protocol::{
    item_size, parse_request, CloseReason, Decoded, Frame, Limits, MetaRequest, Request,
    MAX_KEY_LENGTH,
};

const HEADER: usize = 6;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let limits = if data[0] & 1 == 1 {
        let max_line = usize::from(data[3]);
        Limits {
            max_line,
            max_get_line: max_line + 4 * usize::from(data[4]),
            max_item_size: 59 + 2 * usize::from(data[5]),
        }
    } else {
        Limits::default()
    };
    let payload = &data[HEADER..];
    let split = usize::from(u16::from_le_bytes([data[1], data[2]])) % (payload.len() + 1);

    let mut whole = Conn::default();
    whole.feed(payload, &limits);
    let mut parts = Conn::default();
    parts.feed(&payload[..split], &limits);
    parts.feed(&payload[split..], &limits);

    if parts.frames != whole.frames {
        // Only allowed difference: the first read alone was a line too long
        // without a newline, which the whole buffer (having the newline) is not.
        let (last, before) = parts.frames.split_last().expect("frames differ");
        assert!(
            matches!(
                last,
                Frame::Close(CloseReason::LineTooLong | CloseReason::GetLineTooLong)
            ) && whole.frames.starts_with(before),
            "two reads gave {:?}, one read {:?}",
            parts.frames,
            whole.frames
        );
    }
});

/// A simulated connection: its buffer, the bytes still to discard, the frames
/// parsed so far.
#[derive(Default)]
struct Conn {
    buf: Vec<u8>,
    discard: u64,
    closed: bool,
    frames: Vec<Frame>,
}

impl Conn {
    fn feed(&mut self, chunk: &[u8], limits: &Limits) {
        if self.closed {
            return;
        }
        self.buf.extend_from_slice(chunk);
        loop {
            let skip = self.discard.min(self.buf.len() as u64) as usize;
            self.buf.drain(..skip);
            self.discard -= skip as u64;
            if self.discard > 0 {
                return;
            }
            let Decoded::Complete(frame, used) = parse_request(&self.buf, limits) else {
                return;
            };
            check_frame(&self.buf, &frame, used, limits);
            self.buf.drain(..used);
            match &frame {
                Frame::TooLarge { discard, .. } | Frame::Swallow { discard, .. } => {
                    self.discard = *discard
                }
                Frame::Close(_) => self.closed = true,
                _ => {}
            }
            self.frames.push(frame);
            if self.closed {
                return;
            }
        }
    }
}

fn is_no_newline_close(frame: &Frame) -> bool {
    matches!(
        frame,
        Frame::Close(CloseReason::LineTooLong | CloseReason::GetLineTooLong)
    )
}

fn check_frame(input: &[u8], frame: &Frame, used: usize, limits: &Limits) {
    assert!(used <= input.len(), "used {used} > len {}", input.len());
    if is_no_newline_close(frame) {
        assert!(
            !input.contains(&b'\n') && input.len() > limits.max_line,
            "{frame:?} for a buffer of {} bytes with a newline or within max_line",
            input.len()
        );
        return;
    }
    if !matches!(frame, Frame::Close(_)) {
        assert!(used > 0, "{frame:?} used 0 bytes");
    }
    if used == 0 {
        return;
    }

    // The frame depends only on the bytes it used.
    assert_eq!(
        parse_request(&input[..used], limits),
        Decoded::Complete(frame.clone(), used),
        "parsing exactly the used bytes differs"
    );

    // A cut input is never a complete frame.
    let line_end = memchr_newline(input).expect("a complete frame has a newline");
    for cut in [used - 1, used / 2, line_end, line_end + 1] {
        if cut >= used {
            continue;
        }
        match parse_request(&input[..cut], limits) {
            Decoded::Incomplete => {}
            Decoded::Complete(other, 0) if is_no_newline_close(&other) && cut <= line_end => {}
            other => panic!("prefix of {cut} of {used} bytes gave {other:?}, whole gave {frame:?}"),
        }
    }

    if let Frame::Request(request) = frame {
        check_limits(request, limits);
        check_roundtrip(request, limits);
    }
}

fn memchr_newline(input: &[u8]) -> Option<usize> {
    input.iter().position(|&b| b == b'\n')
}

fn check_limits(request: &Request, limits: &Limits) {
    let (key, flags, value) = match request {
        Request::Store(store) => (&store.key, store.flags, &store.value),
        Request::Meta(MetaRequest::Set(set)) => (&set.key, set.flags, &set.value),
        _ => return,
    };
    assert!(key.len() <= MAX_KEY_LENGTH, "key of {} bytes", key.len());
    assert!(
        item_size(key.len(), flags, value.len()) <= limits.max_item_size as u64,
        "value of {} bytes over max_item_size {}",
        value.len(),
        limits.max_item_size
    );
}

fn check_roundtrip(request: &Request, limits: &Limits) {
    common::assert_encoding_roundtrips(request, Request::encode, |bytes| {
        match parse_request(bytes, limits) {
            Decoded::Complete(Frame::Request(again), used) => Ok((again, used)),
            other => Err(format!("{other:?}")),
        }
    });
}
