//! The accepting side of a peer connection: requests other nodes forward
//! here are executed by this node (never forwarded again) and their replies
//! sent back.
//!
//! A connection whose first byte is the peer handshake's is handed here by
//! the listener. After the handshake (which checks the cluster secret), each
//! forwarded request runs through a [`Session`] marked as serving a peer,
//! exactly as a client's request would (a binary one through the binary
//! session of the connection), pipelined: requests are handed on as
//! they arrive and replies written when the input runs dry, so forwarded
//! writes share group commits. A peer that fails the handshake or sends
//! garbage is disconnected and counted in `peer_rejected`; nothing it sends
//! can crash the node.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcstore_cluster::peer::frame::{encode_frame, read_frame};
use mcstore_cluster::peer::{handshake, Dialect, PeerMessage};
use mcstore_protocol::binary::{parse_binary_request, BinaryFrame, Header};
use mcstore_protocol::{parse_request, Decoded, Limits, Reply};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use mcstore_cluster::peer::message::{BatchKind, ShippedRecord};
use mcstore_cluster::replication::batch_size;
use mcstore_storage::ops::Outcome;
use mcstore_storage::{Operation, Record, Store};

use crate::cluster::ClusterNode;
use crate::session::binary::render::failure;
use crate::session::binary::BinarySession;
use crate::session::Session;

/// How long the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest frame a peer may send: a forwarded request is at most one
/// item or one get line, with room to spare.
pub fn max_frame(item_limit: usize, get_line_limit: usize) -> usize {
    2 * item_limit.max(get_line_limit) + 64 * 1024
}

/// Serves one peer connection until it closes or misbehaves.
pub async fn serve(
    mut stream: TcpStream,
    mut session: Session,
    store: Arc<Store>,
    cluster: Arc<ClusterNode>,
    limits: mcstore_protocol::Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::accept(&mut stream, cluster.secret.as_deref()),
    )
    .await
    {
        Ok(Ok(peer)) => peer,
        Ok(Err(err)) => return reject(&cluster, &err.to_string()),
        Err(_) => return reject(&cluster, "the handshake timed out"),
    };
    tracing::debug!(%peer, "peer connected");
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let limit = max_frame(limits.max_item_size, limits.max_get_line);
    let mut binary = BinarySession::for_peer(&session);
    let mut out = BytesMut::new();
    loop {
        let payload = tokio::select! {
            read = read_frame(&mut reader, limit) => read,
            _ = shutdown.changed() => return,
        };
        let payload = match payload {
            Ok(Some(payload)) => payload,
            Ok(None) => return,
            Err(err) => return reject(&cluster, &err.to_string()),
        };
        match PeerMessage::decode(payload) {
            Ok(PeerMessage::Forward {
                id,
                dialect,
                request,
            }) => {
                cluster
                    .counters
                    .executed_for_peers
                    .fetch_add(1, Ordering::Relaxed);
                // Each dialect has its own session: one waits for the
                // other's writes first, so that a request sees every
                // request forwarded before it (a binary client's too-large
                // set unlinks its key with a text `delete`).
                match dialect {
                    Dialect::Text => {
                        binary.resolve_pending().await;
                        run(&mut session, id, request, &limits).await
                    }
                    Dialect::Binary => {
                        session.resolve_pending().await;
                        run_binary(&mut binary, id, request, &limits).await
                    }
                }
            }
            Ok(message @ (PeerMessage::Replicate { .. } | PeerMessage::Digest { .. })) => {
                // Answered before the next message is read: applied durably
                // (records) or compared (digests); replies to earlier
                // forwarded requests go first.
                let replies = resolved_replies(&mut session, &mut binary).await;
                let (id, answer) = match message {
                    PeerMessage::Replicate { id, records, kind } => {
                        (id, receive(&store, &cluster, records, kind).await)
                    }
                    PeerMessage::Digest {
                        id,
                        placement,
                        buckets,
                    } => (id, cluster.antientropy.compare(&peer, placement, &buckets)),
                    _ => unreachable!("matched above"),
                };
                out.clear();
                for (id, reply) in replies {
                    encode_frame(&mut out, &PeerMessage::Reply { id, reply }.encode());
                }
                encode_frame(&mut out, &PeerMessage::Reply { id, reply: answer }.encode());
                if writer.write_all(&out).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(other) => return reject(&cluster, &format!("unexpected message {other:?}")),
            Err(err) => return reject(&cluster, &err.to_string()),
        }
        // Reply once nothing more is waiting, so that pipelined writes share
        // a group commit.
        if reader.buffer().is_empty() {
            out.clear();
            for (id, reply) in resolved_replies(&mut session, &mut binary).await {
                encode_frame(&mut out, &PeerMessage::Reply { id, reply }.encode());
            }
            if writer.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

/// Applies a batch of records and counts it by kind: what a range transfer
/// brought (a join's progress) and what a repair round made newer.
async fn receive(
    store: &Store,
    cluster: &ClusterNode,
    records: Vec<ShippedRecord>,
    kind: BatchKind,
) -> Bytes {
    let count = records.len() as u64;
    let bytes = batch_size(&records) as u64;
    let (answer, applied) = apply(store, records).await;
    let counters = &cluster.counters;
    match kind {
        BatchKind::Transfer if answer.is_empty() => {
            counters
                .transfer_keys_received
                .fetch_add(count, Ordering::Relaxed);
            counters
                .transfer_bytes_received
                .fetch_add(bytes, Ordering::Relaxed);
        }
        BatchKind::Repair => {
            counters.keys_repaired.fetch_add(applied, Ordering::Relaxed);
        }
        _ => {}
    }
    answer
}

/// Applies replicated records, each only if newer, through the commit
/// pipeline (pipelined: they share group commits), and answers once all are
/// durable: empty, or what went wrong; with the number of records kept. A
/// record that fails its checksum is refused (and the batch with it), never
/// stored.
async fn apply(store: &Store, records: Vec<ShippedRecord>) -> (Bytes, u64) {
    let mut pending = Vec::with_capacity(records.len());
    for shipped in records {
        let record = match Record::decode(&shipped.key, &shipped.record) {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(cause = %err, "a peer shipped a corrupt record");
                return (Bytes::from(format!("corrupt record: {err}")), 0);
            }
        };
        pending.push(
            store
                .enqueue(Operation::Apply {
                    key: shipped.key,
                    record,
                })
                .await,
        );
    }
    let mut failure = None;
    let mut applied = 0;
    for write in pending {
        match write.outcome().await {
            Outcome::Applied => applied += 1,
            Outcome::Stale => {}
            // A refused clock is counted by the store; the rest of the
            // batch still applies.
            Outcome::Failed(mcstore_storage::WriteError::ClockSkew(_)) => {}
            Outcome::Failed(err) => failure = Some(err.to_string()),
            other => failure = Some(format!("unexpected outcome {other:?}")),
        }
    }
    let answer = match failure {
        None => Bytes::new(),
        Some(reason) => Bytes::from(reason),
    };
    (answer, applied)
}

/// The replies to every forwarded request so far, text and binary, once
/// resolved (their ids tell them apart; each session keeps its own order).
async fn resolved_replies(session: &mut Session, binary: &mut BinarySession) -> Vec<(u64, Bytes)> {
    session.resolve_pending().await;
    binary.resolve_pending().await;
    let mut replies = session.take_marked();
    replies.extend(binary.take_marked());
    replies
}

/// Runs one forwarded binary request frame and marks the end of its
/// response (nothing, for a quiet command's success).
async fn run_binary(binary: &mut BinarySession, id: u64, request: Bytes, limits: &Limits) {
    match parse_binary_request(&request, limits) {
        Decoded::Complete(frame @ BinaryFrame::Request(_), used) if used == request.len() => {
            binary.handle(frame).await;
        }
        _ => {
            // Not one whole request: the forwarding node never sends that.
            binary.resolve_pending().await;
            let (opcode, opaque) = Header::decode(&request)
                .map(|header| (header.opcode, header.opaque))
                .unwrap_or_default();
            failure(opcode, opaque, "a peer forwarded a malformed request")
                .encode(&mut binary.output);
        }
    }
    binary.mark(id);
}

/// Runs one forwarded request and marks the end of its reply.
async fn run(session: &mut Session, id: u64, request: Bytes, limits: &mcstore_protocol::Limits) {
    match parse_request(&request, limits) {
        Decoded::Complete(frame, used) if used == request.len() => {
            session.handle(frame, request).await;
        }
        _ => {
            // Not one whole request: the forwarding node never sends that.
            session.resolve_pending().await;
            Reply::server_error("a peer forwarded a malformed request").encode(&mut session.output);
        }
    }
    session.mark(id);
}

fn reject(cluster: &ClusterNode, reason: &str) {
    cluster
        .counters
        .peer_rejected
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%reason, "refused a peer connection");
}
