//! Fuzz target for the binary protocol: [`parse_binary_request`] (server
//! side) and [`parse_binary_response`] (client side), on the same payload.
//!
//! Input layout: byte 0 bit 0 selects a small item size limit
//! (`max_item_size` = 59 + 2 × byte 1, so the too-large rule is reachable
//! with short inputs) instead of the default; bytes 2–3 (u16 LE, modulo the
//! payload length + 1) choose where the payload is split in two reads; the
//! payload starts at byte 4.
//!
//! Properties checked on every request frame (not just "no panic"):
//! - `Complete(frame, used)` has `used <= input.len()`; `used == 0` exactly
//!   for a [`BinaryFrame::Close`], which needs a 24-byte header: `BadMagic`
//!   only for a first byte other than 0x80, `ReadBufferFull` only for a
//!   header whose extras and key do not fit memcached's 16 KiB read buffer
//!   and a buffer that holds that much;
//! - parsing exactly `input[..used]` gives the same frame and `used`;
//! - parsing a shorter prefix (one byte short, halfway, the header alone)
//!   is `Incomplete`;
//! - a parsed `Request(r)` re-encoded with `r.encode` parses back to `r`,
//!   using all of the encoding, and re-encodes to the same bytes; its key
//!   is at most 250 bytes and a value-bearing command's item respects
//!   `max_item_size`; a `TooLarge` really is over the limit;
//! - every error frame's response encodes and decodes back to itself;
//! - feeding the payload in two reads gives the same frames as one read.
//!
//! A connection is simulated: after `UnknownCommand`/`TooLarge` the next
//! `discard` bytes are dropped; parsing stops at a `Close`, a
//! `ProtocolError` or a `quit`.
//!
//! The payload is also decoded as a stream of responses: each decoded
//! response uses at most the input, needs all of it (every shorter prefix
//! is `Incomplete`), and round-trips through `encode`.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mcstore_protocol::binary::{
    parse_binary_request, parse_binary_response, BinaryCloseReason, BinaryFrame, BinaryRequest,
    BinaryResponse, Command, Header, HEADER_LEN, READ_BUFFER_SIZE, REQUEST_MAGIC,
};
use mcstore_protocol::{item_size, Decoded, Limits, MAX_KEY_LENGTH};

const PREFIX: usize = 4;

fuzz_target!(|data: &[u8]| {
    if data.len() < PREFIX {
        return;
    }
    let limits = if data[0] & 1 == 1 {
        Limits {
            max_item_size: 59 + 2 * usize::from(data[1]),
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let payload = &data[PREFIX..];
    let split = usize::from(u16::from_le_bytes([data[2], data[3]])) % (payload.len() + 1);

    let mut whole = Conn::default();
    whole.feed(payload, &limits);
    let mut parts = Conn::default();
    parts.feed(&payload[..split], &limits);
    parts.feed(&payload[split..], &limits);
    assert_eq!(parts.frames, whole.frames, "two reads differ from one read");

    check_responses(payload);
});

/// A simulated binary connection.
#[derive(Default)]
struct Conn {
    buf: Vec<u8>,
    discard: u64,
    closed: bool,
    frames: Vec<BinaryFrame>,
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
            let Decoded::Complete(frame, used) = parse_binary_request(&self.buf, limits) else {
                return;
            };
            check_frame(&self.buf, &frame, used, limits);
            self.buf.drain(..used);
            match &frame {
                BinaryFrame::UnknownCommand { discard, .. } => self.discard = *discard,
                BinaryFrame::TooLarge(too_large) => self.discard = too_large.discard,
                BinaryFrame::Close(_) | BinaryFrame::ProtocolError { .. } => self.closed = true,
                BinaryFrame::Request(BinaryRequest {
                    command: Command::Quit(_),
                    ..
                }) => self.closed = true,
                BinaryFrame::Request(_) => {}
            }
            self.frames.push(frame);
            if self.closed {
                return;
            }
        }
    }
}

fn check_frame(input: &[u8], frame: &BinaryFrame, used: usize, limits: &Limits) {
    assert!(used <= input.len(), "used {used} > len {}", input.len());
    let header = Header::decode(input).expect("a complete frame has a header");
    if let BinaryFrame::Close(reason) = frame {
        assert_eq!(used, 0, "{frame:?} used bytes");
        match reason {
            BinaryCloseReason::BadMagic => assert_ne!(header.magic, REQUEST_MAGIC),
            BinaryCloseReason::ReadBufferFull => assert!(
                header.fixed_len() > READ_BUFFER_SIZE && input.len() >= READ_BUFFER_SIZE,
                "{frame:?} for {} buffered bytes, fixed part {}",
                input.len(),
                header.fixed_len()
            ),
        }
        return;
    }
    assert!(used >= HEADER_LEN, "{frame:?} used {used} bytes");

    assert_eq!(
        parse_binary_request(&input[..used], limits),
        Decoded::Complete(frame.clone(), used),
        "parsing exactly the used bytes differs"
    );
    for cut in [used - 1, used / 2, HEADER_LEN - 1, HEADER_LEN] {
        if cut < used {
            assert_eq!(
                parse_binary_request(&input[..cut], limits),
                Decoded::Incomplete,
                "prefix of {cut} of {used} bytes; whole gave {frame:?}"
            );
        }
    }

    match frame {
        BinaryFrame::Request(request) => {
            check_limits(&request.command, limits);
            common::assert_encoding_roundtrips(request, BinaryRequest::encode, |bytes| {
                match parse_binary_request(bytes, limits) {
                    Decoded::Complete(BinaryFrame::Request(again), used) => Ok((again, used)),
                    other => Err(format!("{other:?}")),
                }
            });
        }
        BinaryFrame::TooLarge(too_large) => {
            let value_len =
                header.body_len - u32::from(header.key_len) - u32::from(header.extras_len);
            let flags = if header.extras_len == 8 {
                u32::from_be_bytes(input[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap())
            } else {
                0
            };
            assert!(
                value_len > i32::MAX as u32
                    || item_size(too_large.key.len(), flags, value_len as usize)
                        > limits.max_item_size as u64,
                "{too_large:?} is not too large"
            );
            check_response_roundtrip(&too_large.response(false));
            check_response_roundtrip(&too_large.response(true));
        }
        _ => check_response_roundtrip(&frame.response().expect("an error frame has a response")),
    }
}

fn check_limits(command: &Command, limits: &Limits) {
    let (key, flags, value): (&[u8], u32, &[u8]) = match command {
        Command::Store(store) => (&store.key, store.flags, &store.value),
        Command::Concat(concat) => (&concat.key, 0, &concat.value),
        Command::SaslAuth(auth) => (&auth.mechanism, 0, &auth.data),
        Command::Get(get) => (&get.key, 0, &[]),
        Command::Delete(delete) => (&delete.key, 0, &[]),
        Command::Arithmetic(arith) => (&arith.key, 0, &[]),
        Command::Touch(touch) => (&touch.key, 0, &[]),
        Command::Stat(stat) => (&stat.key, 0, &[]),
        _ => return,
    };
    assert!(key.len() <= MAX_KEY_LENGTH, "key of {} bytes", key.len());
    if !value.is_empty() {
        assert!(
            item_size(key.len(), flags, value.len()) <= limits.max_item_size as u64,
            "value of {} bytes over max_item_size {}",
            value.len(),
            limits.max_item_size
        );
    }
}

fn check_response_roundtrip(response: &BinaryResponse) {
    common::assert_encoding_roundtrips(response, BinaryResponse::encode, |bytes| {
        match parse_binary_response(bytes) {
            Ok(Decoded::Complete(again, used)) => Ok((again, used)),
            other => Err(format!("{other:?}")),
        }
    });
}

/// Decodes the payload as responses, checking each one.
fn check_responses(payload: &[u8]) {
    let mut rest = payload;
    while let Ok(Decoded::Complete(response, used)) = parse_binary_response(rest) {
        assert!(used >= HEADER_LEN && used <= rest.len());
        for cut in [used - 1, used / 2, HEADER_LEN - 1] {
            assert_eq!(
                parse_binary_response(&rest[..cut]),
                Ok(Decoded::Incomplete),
                "response prefix of {cut} of {used} bytes"
            );
        }
        check_response_roundtrip(&response);
        rest = &rest[used..];
    }
}
