//! One pipelined connection to one server: many requests in flight, their
//! replies matched to them in order.
//!
//! A writer task takes requests from a channel, queues each one's reply
//! slot for the reader and writes whatever has accumulated in one
//! `write_all`; a reader task decodes replies with the protocol crate's
//! decoders ([`parse_reply`], [`parse_scan_reply`]) and completes the
//! oldest slot. When either side fails the connection is closed: requests
//! in flight fail with [`Error::Io`] and the pool opens a new connection
//! for the next request.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcstore_protocol::scan::{parse_scan_reply, ScanReply};
use mcstore_protocol::{parse_reply, Decoded, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// What a request's reply looks like on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// One reply line (with its data for `VA`).
    One,
    /// Replies up to `END` (or an error line): `get`, `stats`.
    UntilEnd,
    /// An `mcstore_scan` page, up to `NEXT` or `END` (or an error line).
    Scan,
}

/// A request's decoded reply.
#[derive(Debug)]
pub(crate) enum Response {
    /// The replies of [`Expect::One`] and [`Expect::UntilEnd`], the
    /// terminating `END` included.
    Replies(Vec<Reply>),
    /// The lines of an [`Expect::Scan`] page.
    Scan(Vec<ScanReply>),
}

struct Call {
    bytes: Bytes,
    expect: Expect,
    done: oneshot::Sender<Result<Response>>,
}

/// Requests a connection writes in one go, at most.
const MAX_BATCH: usize = 256;
/// Bytes a connection writes in one go, at most (one request may be more).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Requests queued for a connection before callers wait.
const QUEUE_DEPTH: usize = 4096;

/// An open connection.
pub(crate) struct Conn {
    addr: String,
    calls: mpsc::Sender<Call>,
    closed: Arc<AtomicBool>,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
}

impl Conn {
    /// Connects to `addr` within `timeout`.
    pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<Conn> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(Error::io(addr, err, true)),
            Err(_) => {
                let err = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                return Err(Error::io(addr, err, true));
            }
        };
        stream
            .set_nodelay(true)
            .map_err(|err| Error::io(addr, err, true))?;
        let (read, write) = stream.into_split();
        let (calls, calls_rx) = mpsc::channel(QUEUE_DEPTH);
        let (inflight, inflight_rx) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_loop(
            addr.to_owned(),
            read,
            inflight_rx,
            closed.clone(),
        ));
        let writer = tokio::spawn(write_loop(
            addr.to_owned(),
            write,
            calls_rx,
            inflight,
            closed.clone(),
        ));
        Ok(Conn {
            addr: addr.to_owned(),
            calls,
            closed,
            writer,
            reader,
        })
    }

    /// Whether the connection failed or was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.calls.is_closed()
    }

    /// Closes the connection; requests in flight fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.abort();
        self.reader.abort();
    }

    /// Sends one request (its complete wire bytes) and waits for its reply.
    pub(crate) async fn call(&self, bytes: Bytes, expect: Expect) -> Result<Response> {
        let (done, reply) = oneshot::channel();
        let closed = || io::Error::new(io::ErrorKind::ConnectionReset, "connection closed");
        self.calls
            .send(Call {
                bytes,
                expect,
                done,
            })
            .await
            .map_err(|_| Error::io(&self.addr, closed(), true))?;
        reply
            .await
            .unwrap_or_else(|_| Err(Error::io(&self.addr, closed(), false)))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

async fn write_loop(
    addr: String,
    mut write: OwnedWriteHalf,
    mut calls: mpsc::Receiver<Call>,
    inflight: mpsc::UnboundedSender<(Expect, oneshot::Sender<Result<Response>>)>,
    closed: Arc<AtomicBool>,
) {
    let mut buffer = BytesMut::with_capacity(16 * 1024);
    while let Some(first) = calls.recv().await {
        let mut next = Some(first);
        let mut count = 0;
        while let Some(call) = next.take() {
            buffer.extend_from_slice(&call.bytes);
            if inflight.send((call.expect, call.done)).is_err() {
                closed.store(true, Ordering::Release);
                return;
            }
            count += 1;
            if count < MAX_BATCH && buffer.len() < MAX_BATCH_BYTES {
                next = calls.try_recv().ok();
            }
        }
        if let Err(err) = write.write_all(&buffer).await {
            tracing::debug!(%addr, cause = %err, "write failed");
            closed.store(true, Ordering::Release);
            // The reader fails the requests in flight once the socket closes.
            let _ = write.shutdown().await;
            return;
        }
        buffer.clear();
    }
}

async fn read_loop(
    addr: String,
    mut read: OwnedReadHalf,
    mut inflight: mpsc::UnboundedReceiver<(Expect, oneshot::Sender<Result<Response>>)>,
    closed: Arc<AtomicBool>,
) {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let failure = loop {
        // While nothing is in flight, watch the socket too, so that a server
        // that went away closes the connection before the next request.
        let next = tokio::select! {
            next = inflight.recv() => next,
            read = read.read_buf(&mut buffer), if buffer.is_empty() => match read {
                Ok(0) => break Some(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )),
                Ok(_) => continue,
                Err(err) => break Some(err),
            },
        };
        let Some((expect, done)) = next else {
            break None;
        };
        match read_response(&mut read, &mut buffer, expect).await {
            Ok(response) => {
                let _ = done.send(Ok(response));
            }
            Err(err) => {
                let _ = done.send(Err(Error::io(&addr, clone_io(&err), false)));
                break Some(err);
            }
        }
    };
    closed.store(true, Ordering::Release);
    if let Some(err) = failure {
        tracing::debug!(%addr, cause = %err, "connection closed");
        inflight.close();
        while let Ok((_, done)) = inflight.try_recv() {
            let _ = done.send(Err(Error::io(&addr, clone_io(&err), false)));
        }
    }
}

fn clone_io(err: &io::Error) -> io::Error {
    io::Error::new(err.kind(), err.to_string())
}

/// Reads until `expect`'s reply is complete.
async fn read_response(
    read: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    expect: Expect,
) -> io::Result<Response> {
    let mut replies = Vec::new();
    let mut scan = Vec::new();
    loop {
        // Decode everything buffered for this request.
        loop {
            let done = match expect {
                Expect::One | Expect::UntilEnd => match parse_reply(buffer) {
                    Decoded::Complete(reply, used) => {
                        let _ = buffer.split_to(used);
                        let last = expect == Expect::One || ends_answer(&reply);
                        replies.push(reply);
                        last
                    }
                    Decoded::Incomplete => break,
                },
                Expect::Scan => match parse_scan_reply(buffer) {
                    Decoded::Complete(reply, used) => {
                        let _ = buffer.split_to(used);
                        let last = !matches!(reply, ScanReply::Item(_));
                        scan.push(reply);
                        last
                    }
                    Decoded::Incomplete => break,
                },
            };
            if done {
                return Ok(match expect {
                    Expect::Scan => Response::Scan(scan),
                    _ => Response::Replies(replies),
                });
            }
        }
        buffer.reserve(16 * 1024);
        if read.read_buf(buffer).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
    }
}

/// Whether `reply` is the last one of a multi-line answer.
fn ends_answer(reply: &Reply) -> bool {
    !matches!(reply, Reply::Value(_) | Reply::Stat { .. })
}
