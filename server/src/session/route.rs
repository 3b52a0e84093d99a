//! Routing: which requests this node executes and which go to the key's
//! replica on another node, in one hop, with the reply bytes relayed
//! unchanged.
//!
//! - A keyed request goes to the key's first live replica
//!   ([`mcstore_cluster::topology`]); when that peer cannot be reached it
//!   goes to the next one, or is executed here when this node is next.
//! - A multi-key `get gets gat gats` is split by where each key goes; the
//!   remote parts are sent in parallel and the answer is assembled in the
//!   client's key order.
//! - `flush_all` is executed here and sent to every other live member.
//! - A request that came from a peer is never forwarded again (the
//!   session's `forwarded` mark), so a disagreement about the ring cannot
//!   loop.
//!
//! Forwarded requests are queued on the peer connection at once, in the
//! client's order, and their replies wait in the session's pending queue
//! with the local ones, so a pipeline keeps its order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use mcstore_cluster::peer::{Dialect, ForwardCall};
use mcstore_cluster::topology::Target;
use mcstore_protocol::{
    encode_value_header, parse_reply, Decoded, MetaRequest, Reply, Request, StoreMode, Value,
};

use super::Session;
use crate::cluster::ClusterNode;

/// What a forwarded request came to.
pub(crate) enum RemoteResult {
    /// The peer's reply bytes.
    Reply(Bytes),
    /// No peer before this node answered: execute it here.
    Local,
    /// No replica answered.
    Failed(String),
}

/// A forwarded request on its way.
pub(crate) type RemoteCall = Pin<Box<dyn Future<Output = RemoteResult> + Send>>;

/// How a request is routed.
pub(crate) enum Routing {
    /// Executed by this node.
    Local,
    /// A request for one key.
    Key {
        /// The key.
        key: Bytes,
        /// A read (may be answered by a replica with `--replica-reads`).
        read: bool,
        /// Nothing is answered on success (`noreply`).
        noreply: bool,
    },
    /// `get gets gat gats` with their keys.
    MultiGet,
    /// A command for the whole cluster (`flush_all`).
    Broadcast,
}

/// How `request` is routed.
pub(crate) fn routing(request: &Request) -> Routing {
    let key = |key: &Bytes, read, noreply| Routing::Key {
        key: key.clone(),
        read,
        noreply,
    };
    match request {
        Request::Get(_) => Routing::MultiGet,
        Request::Store(store) => key(&store.key, false, store.noreply),
        Request::Delete(delete) => key(&delete.key, false, delete.noreply),
        Request::Arithmetic(arith) => key(&arith.key, false, arith.noreply),
        Request::Touch(touch) => key(&touch.key, false, touch.noreply),
        Request::FlushAll(_) => Routing::Broadcast,
        Request::Meta(meta) => match meta {
            MetaRequest::Get(get) => key(&get.key, !meta.is_write(), false),
            MetaRequest::Set(set) => key(&set.key, false, false),
            MetaRequest::Delete(delete) => key(&delete.key, false, false),
            MetaRequest::Arithmetic(arith) => key(&arith.key, false, false),
            MetaRequest::Debug(debug) => key(&debug.key, true, false),
            MetaRequest::Noop => Routing::Local,
        },
        _ => Routing::Local,
    }
}

/// The request that removes a key's old value when a `set` of it was too
/// large (memcached never leaves it behind), for the key's owner.
pub(crate) fn unlink_request(key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(key.len() + 18);
    out.put_slice(b"delete ");
    out.put_slice(key);
    out.put_slice(b" noreply\r\n");
    out.freeze()
}

/// The get line for some of a get's keys.
pub(crate) fn get_line(keys: &[&Bytes], with_cas: bool, touch: Option<i32>) -> Bytes {
    let mut out = BytesMut::new();
    match (touch, with_cas) {
        (None, false) => out.put_slice(b"get"),
        (None, true) => out.put_slice(b"gets"),
        (Some(exptime), cas) => {
            out.put_slice(if cas { b"gats " } else { b"gat " });
            out.put_slice(exptime.to_string().as_bytes());
        }
    }
    for key in keys {
        out.put_u8(b' ');
        out.put_slice(key);
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The hits of a get reply, or the error line it ended with instead.
pub(crate) fn parse_get_reply(mut bytes: &[u8]) -> Result<Vec<Value>, Bytes> {
    let mut values = Vec::new();
    loop {
        match parse_reply(bytes) {
            Decoded::Complete(Reply::Value(value), used) => {
                values.push(value);
                bytes = &bytes[used..];
            }
            Decoded::Complete(Reply::End, _) => return Ok(values),
            Decoded::Complete(other, _) => {
                let mut line = BytesMut::new();
                other.encode(&mut line);
                return Err(line.freeze());
            }
            Decoded::Incomplete => {
                return Err(Bytes::from_static(
                    b"SERVER_ERROR a peer's get reply was cut short\r\n",
                ))
            }
        }
    }
}

/// Records, for each of the keys at `indices`, its hit among `values`.
pub(crate) fn fill_hits(
    found: &mut [Option<Value>],
    keys: &[Bytes],
    indices: &[usize],
    values: &[Value],
) {
    for &index in indices {
        found[index] = values.iter().find(|v| v.key == keys[index]).cloned();
    }
}

/// Writes one hit as memcached does.
pub(crate) fn encode_value(out: &mut BytesMut, value: &Value) {
    encode_value_header(out, &value.key, value.flags, value.data.len(), value.cas);
    out.put_slice(&value.data);
    out.put_slice(b"\r\n");
}

/// Starts a forwarded request for the connection on peer slot `slot`:
/// queued on the first target's connection now, retried on the next
/// targets if it fails. Shared by the text and the binary session.
pub(crate) fn forward_call(
    cluster: Option<Arc<ClusterNode>>,
    slot: usize,
    targets: Vec<Target>,
    dialect: Dialect,
    raw: Bytes,
) -> RemoteCall {
    let Some(cluster) = cluster else {
        return Box::pin(async { RemoteResult::Local });
    };
    let mut targets = targets.into_iter();
    let first = match targets.next() {
        None => {
            return Box::pin(async {
                RemoteResult::Failed("no replica of this key is alive".into())
            })
        }
        Some(Target::Local) => return Box::pin(async { RemoteResult::Local }),
        Some(Target::Peer(peer)) => cluster.forward(&peer, slot, dialect, raw.clone()),
    };
    Box::pin(async move {
        let mut error = match first.reply().await {
            Ok(reply) => return RemoteResult::Reply(reply),
            Err(err) => err,
        };
        cluster.note_forward_error();
        for target in targets {
            tracing::debug!(cause = %error, "forwarding failed; trying the next replica");
            match target {
                Target::Local => return RemoteResult::Local,
                Target::Peer(peer) => {
                    match cluster
                        .forward(&peer, slot, dialect, raw.clone())
                        .reply()
                        .await
                    {
                        Ok(reply) => return RemoteResult::Reply(reply),
                        Err(err) => {
                            cluster.note_forward_error();
                            error = err;
                        }
                    }
                }
            }
        }
        RemoteResult::Failed(format!("no replica of this key answered ({error})"))
    })
}

/// Waits for a cluster-wide command's copies to reach the peers (the
/// local execution answers the client; a peer that missed it is logged).
pub(crate) async fn await_broadcast(cluster: Option<&ClusterNode>, calls: Vec<ForwardCall>) {
    for call in calls {
        if let Err(err) = call.reply().await {
            tracing::warn!(cause = %err, "a peer did not take a cluster-wide command");
            if let Some(cluster) = cluster {
                cluster.note_forward_error();
            }
        }
    }
}

impl Session {
    /// Starts forwarding a text or meta request (see [`forward_call`]).
    pub(crate) fn forward_call(&self, targets: Vec<Target>, raw: Bytes) -> RemoteCall {
        forward_call(self.cluster.clone(), self.slot, targets, Dialect::Text, raw)
    }

    /// Whether a too-large `set`'s unlink must go to another node, and
    /// sends it there if so.
    pub(crate) fn unlink_elsewhere(&mut self, key: &Bytes, mode: StoreMode) -> bool {
        if mode != StoreMode::Set {
            return false;
        }
        let Some(cluster) = self.cluster.as_ref().filter(|_| !self.forwarded) else {
            return false;
        };
        let targets = cluster.route(key, false);
        if matches!(targets.first(), Some(Target::Local)) {
            return false;
        }
        let call = self.forward_call(targets, unlink_request(key));
        self.pending.push_back(super::PendingReply::Remote {
            call,
            noreply: true,
            raw: Bytes::new(),
        });
        true
    }
}
