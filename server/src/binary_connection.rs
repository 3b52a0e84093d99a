//! The loop of a binary-protocol connection: read bytes, parse frames,
//! execute them, write responses, with memcached 1.6.18's output timing.
//!
//! memcached writes its responses when it waits for more input, at a
//! `noop`, at a `quit` and before closing after a protocol error; not while
//! it reads a request's value or discards bytes (a too-large value, an
//! unknown command's body). So does this loop: a response that follows a
//! discard is written once the discard is complete, and a bad magic drops
//! the responses not written yet. (memcached also writes after every 20
//! requests it handles in one go; that only changes when bytes leave, not
//! which, except for the responses a bad magic drops.)

use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};
use mcstore_protocol::binary::{parse_binary_request, Header, READ_BUFFER_SIZE, REQUEST_MAGIC};
use mcstore_protocol::{Decoded, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::session::binary::{BinaryNext, BinarySession};
use crate::stats::Counters;

/// Output is written out once it grows past this, even mid-pipeline.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// Room kept free in the input buffer for each read.
const READ_CHUNK: usize = 16 * 1024;

/// Serves a binary connection whose first bytes are in `input`, until the
/// client closes, quits, sends a frame memcached closes on, or the node
/// shuts down.
pub async fn serve(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    mut session: BinarySession,
    limits: Limits,
    shutdown: &mut watch::Receiver<bool>,
    counters: &Counters,
) -> std::io::Result<()> {
    let mut discard: u64 = 0;
    loop {
        loop {
            if discard > 0 {
                let now = discard.min(input.len() as u64);
                input.advance(now as usize);
                discard -= now;
                if discard > 0 {
                    break;
                }
            }
            let Decoded::Complete(frame, used) = parse_binary_request(input, &limits) else {
                break;
            };
            input.advance(used);
            match session.handle(frame).await {
                BinaryNext::Continue => {}
                BinaryNext::Discard(bytes) => discard = bytes,
                BinaryNext::Flush => {
                    session.resolve_pending().await;
                    write_output(stream, &mut session, counters).await?;
                }
                BinaryNext::Close => {
                    session.resolve_pending().await;
                    write_output(stream, &mut session, counters).await?;
                    return Ok(());
                }
            }
            if session.output.len() >= OUTPUT_HIGH_WATER {
                write_output(stream, &mut session, counters).await?;
            }
        }
        let stopping = *shutdown.borrow();
        if stopping || (discard == 0 && !reading_a_value(input)) {
            session.resolve_pending().await;
            write_output(stream, &mut session, counters).await?;
        }
        if stopping {
            return Ok(());
        }
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = stream.read_buf(input) => {
                let read = read?;
                if read == 0 {
                    return Ok(());
                }
                counters.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
            }
            _ = shutdown.changed() => {
                session.resolve_pending().await;
                write_output(stream, &mut session, counters).await?;
                return Ok(());
            }
        }
    }
}

/// Whether memcached would be reading the value of the request at the
/// start of `input`: its header, extras and key are buffered (so memcached
/// has dispatched it), yet the parser needs more.
fn reading_a_value(input: &[u8]) -> bool {
    Header::decode(input).is_some_and(|header| {
        header.magic == REQUEST_MAGIC
            && header.fixed_len() <= READ_BUFFER_SIZE
            && input.len() >= header.fixed_len()
    })
}

async fn write_output(
    stream: &mut TcpStream,
    session: &mut BinarySession,
    counters: &Counters,
) -> std::io::Result<()> {
    if session.output.is_empty() {
        return Ok(());
    }
    stream.write_all(&session.output).await?;
    counters
        .bytes_written
        .fetch_add(session.output.len() as u64, Ordering::Relaxed);
    session.output.clear();
    Ok(())
}
