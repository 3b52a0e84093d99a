//! Pooled, pipelined connections to peers.
//!
//! Each peer gets a few connections (slots). A caller picks a slot (a
//! client connection always uses the same one, so its requests reach the
//! peer in the order it sent them) and hands over a request; the request is
//! queued at once, in call order, and the returned [`ForwardCall`] resolves
//! to the peer's reply. Many requests are in flight on one connection:
//! writes are batched, replies matched by id. A slot whose connection fails
//! is re-established on its next use; every request in flight on it fails
//! with the error, so that the caller can try another replica.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::frame::{encode_frame, read_frame};
use super::handshake::{connect, HandshakeError};
use super::message::{BatchKind, Dialect, PeerMessage, ShippedRecord};

/// Why a forwarded request got no reply.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer could not be reached or the connection broke.
    #[error("peer {peer}: {reason}")]
    Unreachable {
        /// The peer's advertised address.
        peer: String,
        /// What happened.
        reason: String,
    },
    /// No reply within the peer timeout.
    #[error("peer {peer} did not answer within {timeout:?}")]
    Timeout {
        /// The peer's advertised address.
        peer: String,
        /// The timeout.
        timeout: Duration,
    },
}

/// How peer connections behave.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// This node's advertised address (sent in the handshake).
    pub advertise: String,
    /// The cluster secret, if any.
    pub secret: Option<Vec<u8>>,
    /// Connections per peer.
    pub connections_per_peer: usize,
    /// How long a forwarded request may wait for its reply.
    pub request_timeout: Duration,
    /// How long connecting and the handshake may take.
    pub connect_timeout: Duration,
    /// The largest frame accepted from a peer.
    pub max_frame: usize,
    /// The local address outgoing connections come from (this node's listen
    /// address), so that a peer sees which node connects; `None`: any.
    pub bind_ip: Option<std::net::IpAddr>,
}

type ReplySender = oneshot::Sender<Result<Bytes, PeerError>>;

/// What a request to a peer carries.
enum Body {
    Forward(Dialect, Bytes),
    Replicate(Vec<ShippedRecord>, BatchKind),
    Digest(u64, Vec<u64>),
}

struct Outgoing {
    id: u64,
    body: Body,
    reply: ReplySender,
}

/// Which of a peer's connections a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SlotKey {
    /// One of the connections for forwarded requests.
    Forward(usize),
    /// The connection that carries replication.
    Replication,
}

/// A queue into one connection's task.
struct Slot {
    sender: mpsc::UnboundedSender<Outgoing>,
}

/// The connections of this node to its peers.
pub struct PeerPool {
    config: PoolConfig,
    slots: Mutex<HashMap<(String, SlotKey), Slot>>,
    next_id: AtomicU64,
}

/// A forwarded request on its way; resolves to the peer's reply.
pub struct ForwardCall {
    peer: String,
    timeout: Duration,
    reply: oneshot::Receiver<Result<Bytes, PeerError>>,
}

impl ForwardCall {
    /// A call that has already succeeded with an empty reply (a placeholder
    /// in a queue of calls).
    pub fn ready() -> ForwardCall {
        let (sender, reply) = oneshot::channel();
        let _ = sender.send(Ok(Bytes::new()));
        ForwardCall {
            peer: String::new(),
            timeout: Duration::from_secs(1),
            reply,
        }
    }

    /// The peer's reply bytes.
    pub async fn reply(self) -> Result<Bytes, PeerError> {
        match tokio::time::timeout(self.timeout, self.reply).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PeerError::Unreachable {
                peer: self.peer,
                reason: "the connection closed".into(),
            }),
            Err(_) => Err(PeerError::Timeout {
                peer: self.peer,
                timeout: self.timeout,
            }),
        }
    }
}

impl PeerPool {
    /// A pool with no connections yet.
    pub fn new(config: PoolConfig) -> Arc<PeerPool> {
        Arc::new(PeerPool {
            config,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Queues `request`, in `dialect`, for `peer` on slot `slot` (any
    /// number; it is taken modulo the connections per peer) and returns the
    /// call to await.
    pub fn forward(
        &self,
        peer: &str,
        slot: usize,
        dialect: Dialect,
        request: Bytes,
    ) -> ForwardCall {
        let slot = SlotKey::Forward(slot % self.config.connections_per_peer.max(1));
        self.send(
            peer,
            slot,
            Body::Forward(dialect, request),
            self.config.request_timeout,
        )
    }

    /// Queues a batch of records for `peer` to apply, on the peer's
    /// replication connection (so replication and forwarded requests never
    /// wait for each other); the call resolves to the peer's reply (empty
    /// when every record was applied durably).
    pub fn replicate(
        &self,
        peer: &str,
        records: Vec<ShippedRecord>,
        timeout: Duration,
    ) -> ForwardCall {
        self.send(
            peer,
            SlotKey::Replication,
            Body::Replicate(records, BatchKind::Stream),
            timeout,
        )
    }

    /// As [`PeerPool::replicate`], for a batch sent for another reason
    /// (a range transfer, a repair).
    pub fn send_records(
        &self,
        peer: &str,
        records: Vec<ShippedRecord>,
        kind: BatchKind,
        timeout: Duration,
    ) -> ForwardCall {
        self.send(
            peer,
            SlotKey::Replication,
            Body::Replicate(records, kind),
            timeout,
        )
    }

    /// Sends a batch with [`PeerPool::send_records`] and waits until the
    /// peer has applied it; the error says why not (no answer, or the
    /// peer's refusal).
    pub async fn deliver_records(
        &self,
        peer: &str,
        records: Vec<ShippedRecord>,
        kind: BatchKind,
        timeout: Duration,
    ) -> Result<(), String> {
        let reply = self
            .send_records(peer, records, kind, timeout)
            .reply()
            .await
            .map_err(|e| e.to_string())?;
        if reply.is_empty() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&reply).into_owned())
        }
    }

    /// Sends this node's digests for an anti-entropy round; the reply lists
    /// the buckets that differ (see [`crate::antientropy`]).
    pub fn digest(
        &self,
        peer: &str,
        placement: u64,
        buckets: Vec<u64>,
        timeout: Duration,
    ) -> ForwardCall {
        self.send(
            peer,
            SlotKey::Replication,
            Body::Digest(placement, buckets),
            timeout,
        )
    }

    fn send(&self, peer: &str, slot: SlotKey, body: Body, timeout: Duration) -> ForwardCall {
        let (reply_tx, reply_rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut outgoing = Outgoing {
            id,
            body,
            reply: reply_tx,
        };
        let mut slots = self.slots.lock().expect("peer slots lock");
        // A slot whose task ended hands the message back: start a new one.
        for _attempt in 0..2 {
            let key = (peer.to_string(), slot);
            let sender = match slots.get(&key) {
                Some(existing) => existing.sender.clone(),
                None => {
                    let (sender, receiver) = mpsc::unbounded_channel();
                    tokio::spawn(run_connection(
                        peer.to_string(),
                        self.config.clone(),
                        receiver,
                    ));
                    slots.insert(
                        key.clone(),
                        Slot {
                            sender: sender.clone(),
                        },
                    );
                    sender
                }
            };
            match sender.send(outgoing) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => {
                    slots.remove(&key);
                    outgoing = back;
                }
            }
        }
        ForwardCall {
            peer: peer.to_string(),
            timeout,
            reply: reply_rx,
        }
    }
}

/// One connection: connect and handshake, then write queued requests and
/// match replies until something fails; then fail everything in flight and
/// queued, and end (the slot is replaced on its next use).
async fn run_connection(
    peer: String,
    config: PoolConfig,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
) {
    let unreachable = |reason: String| PeerError::Unreachable {
        peer: peer.clone(),
        reason,
    };
    let stream = match tokio::time::timeout(config.connect_timeout, open(&peer, &config)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(reason)) => return fail_all(&mut queue, HashMap::new(), unreachable(reason)),
        Err(_) => {
            return fail_all(
                &mut queue,
                HashMap::new(),
                unreachable("connecting timed out".into()),
            )
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    let in_flight: Arc<Mutex<HashMap<u64, ReplySender>>> = Arc::default();
    let reading = {
        let in_flight = in_flight.clone();
        let max_frame = config.max_frame;
        tokio::spawn(async move {
            loop {
                let payload = match read_frame(&mut reader, max_frame).await {
                    Ok(Some(payload)) => payload,
                    Ok(None) => return "the peer closed the connection".to_string(),
                    Err(err) => return err.to_string(),
                };
                match PeerMessage::decode(payload) {
                    Ok(PeerMessage::Reply { id, reply }) => {
                        if let Some(waiter) = in_flight.lock().expect("in-flight lock").remove(&id)
                        {
                            let _ = waiter.send(Ok(reply));
                        }
                    }
                    Ok(other) => return format!("unexpected message from the peer: {other:?}"),
                    Err(err) => return err.to_string(),
                }
            }
        })
    };
    let mut reading = reading;
    let mut buffer = BytesMut::new();
    let reason = loop {
        tokio::select! {
            next = queue.recv() => {
                let Some(first) = next else {
                    // The pool is gone: nothing more will come.
                    reading.abort();
                    return;
                };
                buffer.clear();
                let mut batch = vec![first];
                while batch.len() < 256 {
                    match queue.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                {
                    let mut waiting = in_flight.lock().expect("in-flight lock");
                    for outgoing in batch {
                        let message = match outgoing.body {
                            Body::Forward(dialect, request) => PeerMessage::Forward {
                                id: outgoing.id,
                                dialect,
                                request,
                            },
                            Body::Digest(placement, buckets) => PeerMessage::Digest {
                                id: outgoing.id,
                                placement,
                                buckets,
                            },
                            Body::Replicate(records, kind) => PeerMessage::Replicate {
                                id: outgoing.id,
                                records,
                                kind,
                            },
                        };
                        encode_frame(&mut buffer, &message.encode());
                        waiting.insert(outgoing.id, outgoing.reply);
                    }
                }
                if let Err(err) = writer.write_all(&buffer).await {
                    reading.abort();
                    break err.to_string();
                }
            }
            finished = &mut reading => {
                break finished.unwrap_or_else(|_| "the reader stopped".to_string());
            }
        }
    };
    let waiting = std::mem::take(&mut *in_flight.lock().expect("in-flight lock"));
    fail_all(&mut queue, waiting, unreachable(reason));
}

async fn open(peer: &str, config: &PoolConfig) -> Result<TcpStream, String> {
    let mut stream = match config.bind_ip {
        None => TcpStream::connect(peer)
            .await
            .map_err(|err| format!("connect: {err}"))?,
        Some(ip) => {
            let target = tokio::net::lookup_host(peer)
                .await
                .map_err(|err| format!("resolve: {err}"))?
                .find(|addr| addr.is_ipv4() == ip.is_ipv4())
                .ok_or_else(|| format!("{peer} has no address of this node's family"))?;
            let socket = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
            .map_err(|err| format!("socket: {err}"))?;
            socket
                .bind(std::net::SocketAddr::new(ip, 0))
                .map_err(|err| format!("bind {ip}: {err}"))?;
            socket
                .connect(target)
                .await
                .map_err(|err| format!("connect: {err}"))?
        }
    };
    let _ = stream.set_nodelay(true);
    connect(&mut stream, &config.advertise, config.secret.as_deref())
        .await
        .map_err(|err: HandshakeError| err.to_string())?;
    Ok(stream)
}

fn fail_all(
    queue: &mut mpsc::UnboundedReceiver<Outgoing>,
    in_flight: HashMap<u64, ReplySender>,
    error: PeerError,
) {
    tracing::debug!(cause = %error, "peer connection failed");
    for (_, waiter) in in_flight {
        let _ = waiter.send(Err(error.clone()));
    }
    queue.close();
    while let Ok(outgoing) = queue.try_recv() {
        let _ = outgoing.reply.send(Err(error.clone()));
    }
}
