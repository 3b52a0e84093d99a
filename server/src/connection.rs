//! The per-connection loop: read bytes, parse frames, execute them, write
//! replies. (A connection whose first byte is `0x80` is a binary one and
//! authentication comes first: see [`crate::negotiate`].)
//!
//! Input is read only when every buffered request has been handled, so a
//! connection buffers at most one read beyond its current request (and
//! requests are bounded by the parser's limits). Replies are written when the
//! input runs dry or the output grows large. On shutdown a connection
//! finishes the requests it has already read, writes their replies and
//! closes. After `watch` the connection only streams log lines (input is
//! read and ignored, as memcached ignores it) until the client goes.

use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};
use mcstore_protocol::{parse_request, Decoded, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::conns::{ConnEntry, ConnState};
use crate::negotiate::{negotiate, Negotiated};
use crate::session::{Next, Session};
use crate::stats::{Counters, Shared};
use crate::watch::WatchFlags;

/// Output is written out once it grows past this, even mid-pipeline.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// Room kept free in the input buffer for each read (memcached reads up to
/// 16 KiB; matching it keeps the "line without newline" rule comparable).
const READ_CHUNK: usize = 16 * 1024;

/// Serves one client until it closes, asks to quit, misbehaves or the
/// node shuts down.
pub async fn serve(
    mut stream: TcpStream,
    mut session: Session,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    shared: &Shared,
    entry: &ConnEntry,
) -> std::io::Result<()> {
    let counters = &shared.counters;
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let negotiated = negotiate(
        &mut stream,
        &mut input,
        &mut session,
        &limits,
        &mut shutdown,
        counters,
    );
    if negotiated.await? == Negotiated::Finished {
        return Ok(());
    }
    let mut discard: u64 = 0;
    loop {
        entry.set_state(ConnState::ParseCmd);
        loop {
            if discard > 0 {
                let now = discard.min(input.len() as u64);
                input.advance(now as usize);
                discard -= now;
                if discard > 0 {
                    break;
                }
            }
            let Decoded::Complete(frame, used) = parse_request(&input, &limits) else {
                break;
            };
            let raw = input.split_to(used).freeze();
            match session.handle(frame, raw).await {
                Next::Continue => {}
                Next::Discard(bytes) => discard = bytes,
                Next::Close => {
                    write_output(&mut stream, &mut session, counters).await?;
                    return Ok(());
                }
                Next::Watch(flags) => {
                    write_output(&mut stream, &mut session, counters).await?;
                    return stream_watch(stream, flags, shutdown, shared, entry).await;
                }
            }
            if session.output.len() >= OUTPUT_HIGH_WATER {
                write_output(&mut stream, &mut session, counters).await?;
            }
        }
        session.resolve_pending().await;
        write_output(&mut stream, &mut session, counters).await?;
        if *shutdown.borrow() {
            return Ok(());
        }
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        entry.set_state(if input.is_empty() && discard == 0 {
            ConnState::Read
        } else {
            ConnState::Nread
        });
        tokio::select! {
            read = stream.read_buf(&mut input) => {
                let read = read?;
                if read == 0 {
                    return Ok(());
                }
                counters.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
                entry.touch();
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// A `watch` connection: `OK`, then the log lines of `flags`' events until
/// the client closes or the node shuts down.
async fn stream_watch(
    mut stream: TcpStream,
    flags: WatchFlags,
    mut shutdown: watch::Receiver<bool>,
    shared: &Shared,
    entry: &ConnEntry,
) -> std::io::Result<()> {
    let mut lines = shared.watchers.subscribe(flags);
    entry.set_state(ConnState::Watch);
    stream.write_all(b"OK\r\n").await?;
    let mut ignored = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => stream.write_all(&line).await?,
                None => return Ok(()),
            },
            read = stream.read(&mut ignored) => {
                if read? == 0 {
                    return Ok(());
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

async fn write_output(
    stream: &mut TcpStream,
    session: &mut Session,
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
