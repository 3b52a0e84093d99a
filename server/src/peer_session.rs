//! The accepting side of a peer connection: requests other nodes forward
//! here are executed by this node (never forwarded again) and their replies
//! sent back.
//!
//! A connection whose first byte is the peer handshake's is handed here by
//! the listener. After the handshake (which checks the cluster secret), each
//! forwarded request runs through a [`Session`] marked as serving a peer,
//! exactly as a client's request would, pipelined: requests are handed on as
//! they arrive and replies written when the input runs dry, so forwarded
//! writes share group commits. A peer that fails the handshake or sends
//! garbage is disconnected and counted in `peer_rejected`; nothing it sends
//! can crash the node.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcstore_cluster::peer::frame::{encode_frame, read_frame};
use mcstore_cluster::peer::{handshake, PeerMessage};
use mcstore_protocol::{parse_request, Decoded, Reply};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use mcstore_cluster::peer::message::ShippedRecord;
use mcstore_storage::ops::Outcome;
use mcstore_storage::{Operation, Record, Store};

use crate::cluster::ClusterNode;
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
            Ok(PeerMessage::Forward { id, request }) => {
                cluster
                    .counters
                    .executed_for_peers
                    .fetch_add(1, Ordering::Relaxed);
                run(&mut session, id, request, &limits).await;
            }
            Ok(PeerMessage::Replicate {
                id,
                records,
                transfer,
            }) => {
                // Applied durably before the acknowledgement goes back;
                // replies to earlier forwarded requests go first.
                session.resolve_pending().await;
                let count = records.len() as u64;
                let bytes = mcstore_cluster::replication::batch_size(&records);
                let answer = apply(&store, records).await;
                if transfer && answer.is_empty() {
                    let counters = &cluster.counters;
                    counters
                        .transfer_keys_received
                        .fetch_add(count, Ordering::Relaxed);
                    counters
                        .transfer_bytes_received
                        .fetch_add(bytes as u64, Ordering::Relaxed);
                }
                out.clear();
                for (id, reply) in session.take_marked() {
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
            session.resolve_pending().await;
            out.clear();
            for (id, reply) in session.take_marked() {
                encode_frame(&mut out, &PeerMessage::Reply { id, reply }.encode());
            }
            if writer.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

/// Applies replicated records, each only if newer, through the commit
/// pipeline (pipelined: they share group commits), and answers once all are
/// durable: empty, or what went wrong. A record that fails its checksum is
/// refused (and the batch with it), never stored.
async fn apply(store: &Store, records: Vec<ShippedRecord>) -> Bytes {
    let mut pending = Vec::with_capacity(records.len());
    for shipped in records {
        let record = match Record::decode(&shipped.key, &shipped.record) {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(cause = %err, "a peer shipped a corrupt record");
                return Bytes::from(format!("corrupt record: {err}"));
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
    for write in pending {
        match write.outcome().await {
            Outcome::Applied | Outcome::Stale => {}
            // A refused clock is counted by the store; the rest of the
            // batch still applies.
            Outcome::Failed(mcstore_storage::WriteError::ClockSkew(_)) => {}
            Outcome::Failed(err) => failure = Some(err.to_string()),
            other => failure = Some(format!("unexpected outcome {other:?}")),
        }
    }
    match failure {
        None => Bytes::new(),
        Some(reason) => Bytes::from(reason),
    }
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
