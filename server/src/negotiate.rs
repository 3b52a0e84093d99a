//! The start of every connection: which protocol it speaks and, with
//! `--sasl-password-file`, the text protocol's authentication.
//!
//! As memcached decides: a connection whose first byte is `0x80` speaks
//! the binary protocol for its whole life ([`crate::binary_connection`]);
//! any other first byte makes it a text (and meta) connection. A text
//! connection on a node that requires authentication first goes through
//! memcached's ascii authentication ([`crate::auth::AsciiAuth`]); the
//! bytes after it are its first text commands.

use std::sync::atomic::Ordering;

use bytes::BytesMut;
use mcstore_protocol::binary::REQUEST_MAGIC;
use mcstore_protocol::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::auth::{AsciiAuth, AsciiStep};
use crate::session::binary::BinarySession;
use crate::session::Session;
use crate::stats::Counters;

/// How the connection goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// As a text connection, with what was read so far in the input.
    Text,
    /// It is over (served as binary, closed, or the node shuts down).
    Finished,
}

/// Reads until the first byte decides the protocol, serves a binary
/// connection to its end, and authenticates a text one if the node asks.
pub async fn negotiate(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    session: &mut Session,
    limits: &Limits,
    shutdown: &mut watch::Receiver<bool>,
    counters: &Counters,
) -> std::io::Result<Negotiated> {
    if input.is_empty() && !read_more(stream, input, shutdown, counters).await? {
        return Ok(Negotiated::Finished);
    }
    if input[0] == REQUEST_MAGIC {
        let binary = BinarySession::for_connection(session);
        crate::binary_connection::serve(stream, input, binary, *limits, shutdown, counters).await?;
        return Ok(Negotiated::Finished);
    }
    let Some(passwords) = session.shared().auth.passwords.clone() else {
        return Ok(Negotiated::Text);
    };
    let mut auth = AsciiAuth::default();
    let mut out = BytesMut::new();
    loop {
        loop {
            match auth.step(input, &passwords, limits.max_item_size, &mut out) {
                AsciiStep::NeedMore => break,
                AsciiStep::Refused => {}
                AsciiStep::Failed => {
                    counters.auth_cmds.fetch_add(1, Ordering::Relaxed);
                    counters.auth_errors.fetch_add(1, Ordering::Relaxed);
                }
                AsciiStep::Authenticated => {
                    counters.auth_cmds.fetch_add(1, Ordering::Relaxed);
                    // Written with the replies to the commands that follow.
                    session.output.extend_from_slice(&out);
                    return Ok(Negotiated::Text);
                }
                AsciiStep::Close => return Ok(Negotiated::Finished),
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            counters
                .bytes_written
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            out.clear();
        }
        if !read_more(stream, input, shutdown, counters).await? {
            return Ok(Negotiated::Finished);
        }
    }
}

/// One read into `input`; `false` at the end of the stream or shutdown.
async fn read_more(
    stream: &mut TcpStream,
    input: &mut BytesMut,
    shutdown: &mut watch::Receiver<bool>,
    counters: &Counters,
) -> std::io::Result<bool> {
    if *shutdown.borrow() {
        return Ok(false);
    }
    if input.capacity() - input.len() < 4096 {
        input.reserve(16 * 1024);
    }
    tokio::select! {
        read = stream.read_buf(input) => {
            let read = read?;
            counters.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
            Ok(read > 0)
        }
        _ = shutdown.changed() => Ok(false),
    }
}
