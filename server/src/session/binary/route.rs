//! Binary requests in a cluster: a request for a key another node holds
//! is forwarded to it in one hop, exactly as a text or meta request is
//! (see [`crate::session::route`]): re-encoded from the parsed request,
//! sent to the key's first live replica (then the next ones), and the
//! peer's response bytes put in the client's order unchanged. A quiet
//! command's success comes back as nothing, so nothing is added. A flush
//! is executed here and sent to every other member.
//!
//! The peer runs the frame in the binary session of its peer connection
//! ([`BinarySession::for_peer`]), which never forwards again.

use bytes::{Bytes, BytesMut};
use mcstore_cluster::peer::Dialect;
use mcstore_cluster::topology::Target;
use mcstore_protocol::binary::{BinaryRequest, BinaryResponse, Command};

use super::{render, BinarySession, Pending};
use crate::session::route::{forward_call, unlink_request, RemoteCall, RemoteResult};

/// Where a binary request goes in a cluster.
enum BinaryRouting {
    /// Executed here.
    Local,
    /// The request's key, and whether it only reads (`get*`: a replica
    /// may answer with `--replica-reads`).
    Key(Bytes, bool),
    /// A flush: here and on every other member.
    Broadcast,
}

fn routing(request: &BinaryRequest) -> BinaryRouting {
    match &request.command {
        Command::Get(get) => BinaryRouting::Key(get.key.clone(), get.touch.is_none()),
        Command::Touch(touch) => BinaryRouting::Key(touch.key.clone(), false),
        Command::Store(store) => BinaryRouting::Key(store.key.clone(), false),
        Command::Concat(concat) => BinaryRouting::Key(concat.key.clone(), false),
        Command::Delete(delete) => BinaryRouting::Key(delete.key.clone(), false),
        Command::Arithmetic(arith) => BinaryRouting::Key(arith.key.clone(), false),
        Command::Flush(_) => BinaryRouting::Broadcast,
        _ => BinaryRouting::Local,
    }
}

fn encoded(request: &BinaryRequest) -> Bytes {
    let mut out = BytesMut::with_capacity(request.encoded_len());
    request.encode(&mut out);
    out.freeze()
}

impl BinarySession {
    /// In a cluster, forwards `request` if its key lives on another node
    /// (its response is then pending) and returns `None`; otherwise
    /// returns it to be executed here (after sending a flush's copies).
    pub(super) async fn forward(&mut self, request: BinaryRequest) -> Option<BinaryRequest> {
        let Some(cluster) = self.cluster.clone().filter(|_| !self.forwarded) else {
            return Some(request);
        };
        match routing(&request) {
            BinaryRouting::Local => Some(request),
            BinaryRouting::Key(key, read) => {
                let targets = cluster.route_once_known(&key, read).await;
                if matches!(targets.first(), Some(Target::Local)) {
                    return Some(request);
                }
                let raw = encoded(&request);
                let call = forward_call(Some(cluster), self.slot, targets, Dialect::Binary, raw);
                self.reserve_pending().await;
                self.pending.push_back(Pending::Remote {
                    call,
                    fallback: Some(Box::new(request)),
                });
                None
            }
            BinaryRouting::Broadcast => {
                let calls = cluster.broadcast(self.slot, Dialect::Binary, encoded(&request));
                self.reserve_pending().await;
                self.pending.push_back(Pending::Broadcast(calls));
                Some(request)
            }
        }
    }

    /// Whether the unlink of a too-large `set` must go to the key's owner
    /// on another node, and sends it there if so (as the text session's
    /// `delete <key> noreply`, which answers nothing).
    pub(super) fn unlink_elsewhere(&mut self, key: &Bytes) -> bool {
        let Some(cluster) = self.cluster.clone().filter(|_| !self.forwarded) else {
            return false;
        };
        let targets = cluster.route(key, false);
        if matches!(targets.first(), Some(Target::Local)) {
            return false;
        }
        let call = forward_call(
            Some(cluster),
            self.slot,
            targets,
            Dialect::Text,
            unlink_request(key),
        );
        self.pending.push_back(Pending::Remote {
            call,
            fallback: None,
        });
        true
    }

    /// Puts a forwarded request's response in place: the peer's bytes, or
    /// the request run here when no peer before this node answered, or
    /// memcached's internal error status when no replica answered.
    pub(super) async fn resolve_remote(
        &mut self,
        call: RemoteCall,
        fallback: Option<Box<BinaryRequest>>,
    ) {
        match (call.await, fallback) {
            (RemoteResult::Reply(bytes), _) => self.output.extend_from_slice(&bytes),
            (RemoteResult::Local, Some(request)) => Box::pin(self.execute_here(*request)).await,
            (RemoteResult::Failed(reason), Some(request)) => {
                let opcode = request.opcode().code();
                let response: BinaryResponse = render::failure(opcode, request.opaque, reason);
                response.encode(&mut self.output);
            }
            (_, None) => {}
        }
    }

    /// Runs a request here whose forwarding fell back to this node: its
    /// response goes where the forwarded one would have.
    async fn execute_here(&mut self, request: BinaryRequest) {
        let later = std::mem::take(&mut self.pending);
        let forwarded = std::mem::replace(&mut self.forwarded, true);
        self.execute(request).await;
        self.resolve_pending().await;
        self.forwarded = forwarded;
        self.pending = later;
    }

    /// Marks the end of the response to request `id`, forwarded by a
    /// peer: [`BinarySession::take_marked`] cuts the output there.
    pub fn mark(&mut self, id: u64) {
        if self.pending.is_empty() {
            self.marks.push(id, self.output.len());
        } else {
            self.pending.push_back(Pending::Mark(id));
        }
    }

    /// The responses of the marked requests resolved so far, each with its
    /// mark; the output is emptied.
    pub fn take_marked(&mut self) -> Vec<(u64, Bytes)> {
        self.marks.take(&mut self.output)
    }
}
