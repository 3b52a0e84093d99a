//! Fuzz target for [`mcstore_protocol::parse_reply`], the client-side
//! incremental reply decoder.
//!
//! Input layout: bytes 0–1 choose where the payload is split in two reads;
//! the payload starts at byte 2.
//!
//! Properties checked on every reply (not just "no panic"):
//! - `Complete(reply, used)` has `0 < used <= input.len()`;
//! - parsing exactly `input[..used]` gives the same reply and `used`;
//! - parsing a shorter prefix (one byte short, halfway, the line without its
//!   newline, the line alone) is `Incomplete`;
//! - `parse_reply(encode(r)) == r`, using all of the encoding, and encoding
//!   again gives the same bytes;
//! - decoding the payload in two reads (split point chosen by the fuzzer)
//!   gives the same replies as one read.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mcstore_protocol::{parse_reply, Decoded, Reply};

const HEADER: usize = 2;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let payload = &data[HEADER..];
    let split = usize::from(u16::from_le_bytes([data[0], data[1]])) % (payload.len() + 1);
    let whole = decode_all(&[payload]);
    let parts = decode_all(&[&payload[..split], &payload[split..]]);
    assert_eq!(parts, whole, "two reads differ from one read");
});

/// Decodes the chunks as a client would, read by read; returns the replies.
fn decode_all(chunks: &[&[u8]]) -> Vec<Reply> {
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Decoded::Complete(reply, used) = parse_reply(&buf) {
            check_reply(&buf, &reply, used);
            buf.drain(..used);
            replies.push(reply);
        }
    }
    replies
}

fn check_reply(input: &[u8], reply: &Reply, used: usize) {
    assert!(
        0 < used && used <= input.len(),
        "used {used} of {}",
        input.len()
    );
    assert_eq!(
        parse_reply(&input[..used]),
        Decoded::Complete(reply.clone(), used),
        "parsing exactly the used bytes differs"
    );
    let line_end = input
        .iter()
        .position(|&b| b == b'\n')
        .expect("a complete reply has a newline");
    for cut in [used - 1, used / 2, line_end, line_end + 1] {
        if cut < used {
            let prefix = parse_reply(&input[..cut]);
            assert_eq!(
                prefix,
                Decoded::Incomplete,
                "prefix of {cut} of {used} bytes; whole gave {reply:?}"
            );
        }
    }

    common::assert_encoding_roundtrips(reply, Reply::encode, |bytes| match parse_reply(bytes) {
        Decoded::Complete(again, used) => Ok((again, used)),
        other => Err(format!("{other:?}")),
    });
}
