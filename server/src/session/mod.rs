//! One connection's command execution: requests in, reply bytes out.
//!
//! Replies leave in request order. Writes are handed to the storage layer's
//! commit pipeline without waiting, so a pipeline of sets lands in one group
//! commit; their replies wait in `pending` until the next read, error or
//! flush of the output needs everything before it resolved (a connection
//! always reads its own writes).
//!
//! Meta commands (`mg ms md ma mn me`, see `docs/meta-protocol.md`) follow
//! the same split: `ms`, `md`, `ma` and the `mg`s that touch, vivify,
//! recache or win a stale item's token become writes; other `mg`s and `me`
//! read directly. `q` is applied per command, as memcached does, rather
//! than through `noreply`.
//!
//! - this file: dispatch, ordering and the read path;
//! - [`route`]: in a cluster, what goes to another node;
//! - [`lower`]: requests become storage operations;
//! - [`render`]: outcomes and items become reply bytes;
//! - [`count`]: memcached's counters, from outcomes;
//! - [`stats_report`]: the `stats` groups;
//! - [`scan`]: `mcstore_scan`, the bounded listing of this node's items;
//! - [`admin`]: `watch`, `slabs`, and what a `watch`er sees of each request.

pub mod admin;
pub mod binary;
pub mod count;
pub mod lower;
pub mod render;
pub mod route;
pub mod scan;
pub mod stats_report;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use mcstore_cluster::peer::{Dialect, ForwardCall};
use mcstore_cluster::topology::Target;
use mcstore_protocol::request::Stats;
use mcstore_protocol::{
    parse_request, Decoded, Frame, Get, Limits, MetaReply, MetaRequest, MetaStatus, Reply, Request,
    StoreMode, Value,
};
use mcstore_storage::ops::{CounterOp, DeleteOp, FetchOp, FetchedItem, Outcome};
use mcstore_storage::store::PendingWrite;
use mcstore_storage::{Lookup, Operation, Store};

use self::route::{RemoteCall, RemoteResult, Routing};
use crate::cluster::ClusterNode;
use crate::stats::{Counters, Shared};
use crate::watch::WatchFlags;

/// The version this node reports: memcached's protocol level, then ours.
pub const VERSION: &str = concat!("1.6.18-mcstore-", env!("CARGO_PKG_VERSION"));

/// Facts about the running node that `stats` reports.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// When the node started.
    pub started: Instant,
    /// `--max-connections`.
    pub max_connections: usize,
    /// Worker threads serving connections.
    pub threads: usize,
    /// `--listen`.
    pub listen: String,
    /// The parser's limits.
    pub limits: Limits,
}

/// What to do after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep reading requests.
    Continue,
    /// Discard this many bytes of input (a refused item's data), then go on.
    Discard(u64),
    /// Write what is buffered, then close.
    Close,
    /// `watch`: from now on, stream these events' log lines.
    Watch(WatchFlags),
}

/// How an outcome becomes reply bytes.
pub(crate) enum ReplyKind {
    Store {
        cas: bool,
    },
    Delete,
    Arithmetic {
        increment: bool,
        key: Bytes,
    },
    Touch {
        key: Bytes,
    },
    GatValue {
        key: Bytes,
        with_cas: bool,
    },
    FlushAll,
    Silent,
    /// A meta command: the request says which flags the reply carries.
    Meta(MetaRequest),
}

enum PendingReply {
    Write {
        write: PendingWrite,
        kind: ReplyKind,
        noreply: bool,
        /// What a `watch`er is told once the write is done.
        watch: Option<Box<admin::WatchNote>>,
        /// With `--replica-ack one`: the key whose other replica must have
        /// the write before it is answered.
        ack_key: Option<Bytes>,
    },
    Literal(Bytes),
    /// A request forwarded to a peer; `raw` is run here if it falls back.
    Remote {
        call: RemoteCall,
        noreply: bool,
        raw: Bytes,
    },
    /// A get whose keys live on several nodes.
    MultiGet(Box<MultiGetPending>),
    /// A cluster-wide command's copies to the peers (their replies only
    /// need to arrive: the local execution answers).
    Broadcast(Vec<ForwardCall>),
    /// The end of a forwarded request's reply (see [`Session::mark`]).
    Mark(u64),
}

/// A get split by where its keys live.
struct MultiGetPending {
    get: Get,
    /// Each key's part: `None` for this node, else an index into `calls`.
    parts: Vec<Option<usize>>,
    /// The remote parts, and which keys each one asked for.
    calls: Vec<(RemoteCall, Vec<usize>)>,
}

/// A connection's state.
pub struct Session {
    store: Arc<Store>,
    node: Arc<NodeInfo>,
    shared: Arc<Shared>,
    cluster: Option<Arc<ClusterNode>>,
    /// The requests come from a peer: execute them here, never forward.
    forwarded: bool,
    /// Which peer connection this session's forwarded requests use (one per
    /// session, so they reach the peer in order).
    slot: usize,
    pending: VecDeque<PendingReply>,
    /// Where each marked forwarded request's reply ends in `output`.
    marks: ReplyMarks,
    /// Reply bytes ready to be written.
    pub output: BytesMut,
    /// The connection's file descriptor (`cfd=` of `watch` lines).
    pub client_fd: i32,
}

/// Why a write is answered with an error under `--replica-ack one` when no
/// other replica acknowledged it in time (text and binary alike).
const REPLICA_ACK_MISSED: &str =
    "no other replica acknowledged the write in time (it is committed on this node)";

/// `--replica-ack one`: the key of `op` if its write must reach another
/// replica before it is answered.
fn replica_ack_key(cluster: Option<&Arc<ClusterNode>>, op: &Operation) -> Option<Bytes> {
    cluster
        .filter(|cluster| cluster.replica_ack.is_some())
        .and_then(|_| op.key().cloned())
}

/// `--replica-ack one`: whether a write that waited for another replica
/// (`ack_key`, from [`replica_ack_key`]) and succeeded at `seq` must be
/// answered with [`REPLICA_ACK_MISSED`], because no other replica
/// acknowledged it within the timeout. A failed write, or one with nothing
/// to wait for, never is.
async fn replica_ack_missed(
    cluster: Option<&ClusterNode>,
    ack_key: Option<Bytes>,
    succeeded: bool,
    seq: Option<u64>,
) -> bool {
    let (Some(cluster), Some(key), Some(seq), true) = (cluster, ack_key, seq, succeeded) else {
        return false;
    };
    let Some(timeout) = cluster.replica_ack else {
        return false;
    };
    !cluster
        .replicator
        .wait_for_replica(&key, seq, timeout)
        .await
}

/// Where the replies of requests a peer forwarded end in a session's
/// output, so that each goes back with its request's id (a reply may be
/// empty: `noreply`, a quiet binary command).
#[derive(Debug, Default)]
pub(crate) struct ReplyMarks(Vec<(u64, usize)>);

impl ReplyMarks {
    /// The reply of request `id` ends at `end`.
    pub(crate) fn push(&mut self, id: u64, end: usize) {
        self.0.push((id, end));
    }

    /// Cuts `output` into the marked replies, in order, and empties it.
    pub(crate) fn take(&mut self, output: &mut BytesMut) -> Vec<(u64, Bytes)> {
        let output = output.split().freeze();
        let mut start = 0;
        self.0
            .drain(..)
            .map(|(id, end)| {
                let reply = output.slice(start..end);
                start = end;
                (id, reply)
            })
            .collect()
    }
}

/// Hands each session its peer connection slot.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// The peer connection slot of a new session (text or binary): sessions
/// spread over a peer's connections, and each keeps to one so that its
/// forwarded requests reach the peer in order.
pub(crate) fn next_slot() -> usize {
    NEXT_SLOT.fetch_add(1, Ordering::Relaxed)
}

/// Pending writes a connection may have in flight before it waits for them.
const MAX_PENDING: usize = 1024;

impl Session {
    /// A session on `store`; in a cluster, keyed requests for other nodes
    /// are forwarded through `cluster` unless the session serves a peer
    /// (`forwarded`).
    pub fn new(
        store: Arc<Store>,
        node: Arc<NodeInfo>,
        shared: Arc<Shared>,
        cluster: Option<Arc<ClusterNode>>,
        forwarded: bool,
    ) -> Session {
        Session {
            store,
            node,
            shared,
            cluster,
            forwarded,
            slot: next_slot(),
            pending: VecDeque::new(),
            marks: ReplyMarks::default(),
            output: BytesMut::with_capacity(16 * 1024),
            client_fd: -1,
        }
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Executes one parsed frame; `raw` is the request's bytes as they
    /// came (forwarded unchanged when the key lives elsewhere).
    pub async fn handle(&mut self, frame: Frame, raw: Bytes) -> Next {
        match frame {
            Frame::Request(request) => self.execute(request, raw).await,
            Frame::Rejected { reply, noreply } => {
                if !noreply {
                    self.reply(reply).await;
                }
                Next::Continue
            }
            Frame::TooLarge {
                mode,
                key,
                noreply,
                discard,
            } => {
                let counters = self.counters();
                counters.cmd_set.fetch_add(1, Ordering::Relaxed);
                counters.store_too_large.fetch_add(1, Ordering::Relaxed);
                self.shared.detail.record_set(&key);
                if mode == StoreMode::Set && !self.unlink_elsewhere(&key, mode) {
                    // memcached never leaves the old value behind a failed set.
                    self.submit(Operation::Remove { key }, ReplyKind::Silent, true)
                        .await;
                }
                if !noreply {
                    self.reply(Reply::server_error("object too large for cache"))
                        .await;
                }
                Next::Discard(discard)
            }
            Frame::RejectedGet { reply } => {
                self.discard_unsent().await;
                reply.encode(&mut self.output);
                Next::Continue
            }
            Frame::Swallow {
                reply,
                discard,
                unlink,
            } => {
                if let Some(key) = unlink {
                    if !self.unlink_elsewhere(&key, StoreMode::Set) {
                        self.submit(Operation::Remove { key }, ReplyKind::Silent, true)
                            .await;
                    }
                }
                self.reply(reply).await;
                Next::Discard(discard)
            }
            Frame::Close(reason) => {
                tracing::debug!(?reason, "closing connection");
                self.discard_unsent().await;
                Next::Close
            }
        }
    }

    async fn execute(&mut self, request: Request, raw: Bytes) -> Next {
        if let Some(cluster) = self.cluster.clone().filter(|_| !self.forwarded) {
            match route::routing(&request) {
                Routing::Local => {}
                Routing::Key { key, read, noreply } => {
                    let targets = cluster.route_once_known(&key, read).await;
                    if !matches!(targets.first(), Some(Target::Local)) {
                        let call = self.forward_call(targets, raw.clone());
                        self.push_pending(PendingReply::Remote { call, noreply, raw })
                            .await;
                        return Next::Continue;
                    }
                }
                Routing::MultiGet => {
                    if let Request::Get(get) = request {
                        if self.split_get(&cluster, get.clone()).await {
                            return Next::Continue;
                        }
                        return self.execute_get(get).await;
                    }
                }
                Routing::Broadcast => {
                    let calls = cluster.broadcast(self.slot, Dialect::Text, raw.clone());
                    self.push_pending(PendingReply::Broadcast(calls)).await;
                }
            }
        }
        // The unix second relative exptimes count from, as memcached reads
        // its clock once per command.
        let now = || self.store.now_secs();
        match request {
            Request::Get(get) => return self.execute_get(get).await,
            Request::Store(store) => {
                self.counters().cmd_set.fetch_add(1, Ordering::Relaxed);
                self.shared.detail.record_set(&store.key);
                let cas = matches!(store.mode, StoreMode::Cas(_));
                let noreply = store.noreply;
                let op = lower::text_store(store, now());
                self.submit(op, ReplyKind::Store { cas }, noreply).await;
            }
            Request::Delete(delete) => {
                self.shared.detail.record_delete(&delete.key);
                let op = Operation::Delete(DeleteOp::new(delete.key));
                self.submit(op, ReplyKind::Delete, delete.noreply).await;
            }
            Request::Arithmetic(arith) => {
                let op = Operation::Counter(CounterOp::new(
                    arith.key.clone(),
                    arith.increment,
                    arith.delta,
                ));
                let kind = ReplyKind::Arithmetic {
                    increment: arith.increment,
                    key: arith.key,
                };
                self.submit(op, kind, arith.noreply).await;
            }
            Request::Touch(touch) => {
                self.counters().cmd_touch.fetch_add(1, Ordering::Relaxed);
                // The item comes back (answered as `TOUCHED`) so that the
                // touch can mark it fetched, as memcached does.
                let op = Operation::Fetch(FetchOp::touch(
                    touch.key.clone(),
                    lower::expiry(touch.exptime, now()),
                ));
                let kind = ReplyKind::Touch { key: touch.key };
                self.submit(op, kind, touch.noreply).await;
            }
            Request::FlushAll(flush) => {
                self.counters().cmd_flush.fetch_add(1, Ordering::Relaxed);
                let op = Operation::FlushAll {
                    deadline: lower::flush_deadline(flush.delay, now()),
                };
                self.submit(op, ReplyKind::FlushAll, flush.noreply).await;
            }
            Request::Version => {
                self.reply(Reply::Version(Bytes::from_static(VERSION.as_bytes())))
                    .await
            }
            Request::Verbosity(verbosity) => {
                if !verbosity.noreply {
                    self.reply(Reply::Ok).await;
                }
            }
            Request::Quit => {
                self.resolve_pending().await;
                return Next::Close;
            }
            Request::Stats(stats) => {
                self.resolve_pending().await;
                self.stats(stats);
            }
            Request::Meta(meta) => {
                let now = now();
                self.meta(meta, now).await
            }
            Request::Cluster(command) => {
                self.resolve_pending().await;
                let reply = crate::rebalance::admin(self.cluster.as_ref(), command).await;
                self.reply(reply).await;
            }
            Request::Scan(scan) => {
                self.resolve_pending().await;
                scan::render(&self.store, &scan, &mut self.output);
            }
            Request::Watch(watch) => return self.watch(watch).await,
            Request::Slabs(slabs) => self.slabs(slabs).await,
            other => {
                tracing::debug!(request = ?other, "unsupported request");
                self.reply(Reply::Error).await;
            }
        }
        Next::Continue
    }

    /// Executes a meta command. Writes (and `mg`s that touch, create,
    /// recache or win a stale item's token) go to the commit pipeline;
    /// other `mg`s and `me` read directly.
    async fn meta(&mut self, request: MetaRequest, now: u64) {
        let changes_item = request.is_write();
        match request {
            MetaRequest::Noop => {
                self.reply(Reply::Meta(MetaReply::bare(MetaStatus::Noop)))
                    .await
            }
            MetaRequest::Debug(debug) => {
                self.resolve_pending().await;
                self.meta_debug(&debug);
            }
            MetaRequest::Get(get) => {
                if changes_item {
                    let op = lower::meta_get(&get, now);
                    self.submit_meta(op, MetaRequest::Get(get)).await;
                    return;
                }
                self.resolve_pending().await;
                let lookup = match self.store.get(&get.key) {
                    Ok(lookup) => lookup,
                    Err(err) => {
                        Reply::ServerError(err.to_string().into()).encode(&mut self.output);
                        return;
                    }
                };
                // A read that wins the token is reported by `submit`.
                if !matches!(&lookup, Lookup::Hit(record) if FetchOp::read_would_win(record)) {
                    self.watch_lookup(&get.key, &lookup);
                }
                let counters = &self.shared.counters;
                match lookup {
                    Lookup::Hit(record) if FetchOp::read_would_win(&record) => {
                        // This read wins the stale item's token: the commit
                        // pipeline decides, so that only one client gets it.
                        let op = lower::meta_get(&get, now);
                        self.submit_meta(op, MetaRequest::Get(get)).await;
                    }
                    Lookup::Hit(record) => {
                        counters.cmd_get.fetch_add(1, Ordering::Relaxed);
                        counters.get_hits.fetch_add(1, Ordering::Relaxed);
                        let now = self.store.now_secs();
                        self.meta_get_hit(&get, FetchedItem::unchanged(record, now));
                    }
                    miss => {
                        counters.cmd_get.fetch_add(1, Ordering::Relaxed);
                        counters.get_misses.fetch_add(1, Ordering::Relaxed);
                        if matches!(miss, Lookup::Expired) {
                            counters.get_expired.fetch_add(1, Ordering::Relaxed);
                        } else if matches!(miss, Lookup::Flushed) {
                            counters.get_flushed.fetch_add(1, Ordering::Relaxed);
                        }
                        self.meta_get_miss(&get);
                    }
                }
            }
            MetaRequest::Set(set) => {
                self.counters().cmd_set.fetch_add(1, Ordering::Relaxed);
                let op = lower::meta_set(&set, now);
                self.submit_meta(op, MetaRequest::Set(set)).await;
            }
            MetaRequest::Delete(delete) => {
                let op = lower::meta_delete(&delete, now);
                self.submit_meta(op, MetaRequest::Delete(delete)).await;
            }
            MetaRequest::Arithmetic(arith) => {
                let op = lower::meta_arithmetic(&arith, now);
                self.submit_meta(op, MetaRequest::Arithmetic(arith)).await;
            }
        }
    }

    /// `get gets gat gats`, all keys on this node.
    async fn execute_get(&mut self, get: Get) -> Next {
        match get.touch {
            None => {
                self.resolve_pending().await;
                self.get(&get.keys, get.with_cas);
            }
            Some(exptime) => {
                let expiry = lower::expiry(exptime, self.store.now_secs());
                for key in get.keys {
                    self.counters().cmd_touch.fetch_add(1, Ordering::Relaxed);
                    let op = Operation::Fetch(FetchOp::touch(key.clone(), expiry));
                    let kind = ReplyKind::GatValue {
                        key,
                        with_cas: get.with_cas,
                    };
                    self.submit(op, kind, false).await;
                }
                self.literal(Bytes::from_static(b"END\r\n"));
            }
        }
        Next::Continue
    }

    /// Splits a get whose keys live on several nodes; false if every key
    /// is this node's (then it runs as on a single node).
    async fn split_get(&mut self, cluster: &ClusterNode, get: Get) -> bool {
        let mut parts = Vec::with_capacity(get.keys.len());
        let mut groups: Vec<(Vec<Target>, Vec<usize>)> = Vec::new();
        for (index, key) in get.keys.iter().enumerate() {
            let targets = cluster.route_once_known(key, get.touch.is_none()).await;
            if matches!(targets.first(), Some(Target::Local)) {
                parts.push(None);
                continue;
            }
            // Keys are grouped by their whole replica list, not only the
            // first: a group that falls back to its next replica must find
            // every one of its keys there.
            let group = match groups.iter().position(|(t, _)| *t == targets) {
                Some(group) => group,
                None => {
                    groups.push((targets, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[group].1.push(index);
            parts.push(Some(group));
        }
        if groups.is_empty() {
            return false;
        }
        let calls = groups
            .into_iter()
            .map(|(targets, indices)| {
                let keys: Vec<&Bytes> = indices.iter().map(|&i| &get.keys[i]).collect();
                let line = route::get_line(&keys, get.with_cas, get.touch);
                (self.forward_call(targets, line), indices)
            })
            .collect();
        let pending = MultiGetPending { get, parts, calls };
        self.push_pending(PendingReply::MultiGet(Box::new(pending)))
            .await;
        true
    }

    /// Queues a pending reply, waiting for earlier ones if too many are
    /// in flight.
    async fn push_pending(&mut self, pending: PendingReply) {
        if self.pending.len() >= MAX_PENDING {
            self.resolve_pending().await;
        }
        self.pending.push_back(pending);
    }

    /// Marks the end of a forwarded request's reply: [`Session::take_marked`]
    /// cuts the output there.
    pub fn mark(&mut self, id: u64) {
        if self.pending.is_empty() {
            self.marks.push(id, self.output.len());
        } else {
            self.pending.push_back(PendingReply::Mark(id));
        }
    }

    /// The replies of the marked requests resolved so far, each with its
    /// mark; the output is emptied.
    pub fn take_marked(&mut self) -> Vec<(u64, Bytes)> {
        self.marks.take(&mut self.output)
    }

    async fn submit_meta(&mut self, op: Operation, request: MetaRequest) {
        // Meta replies decide for themselves what `q` hides.
        self.submit(op, ReplyKind::Meta(request), false).await;
    }

    async fn submit(&mut self, op: Operation, kind: ReplyKind, noreply: bool) {
        // While someone watches, requests run one at a time, so that the
        // lookup reported before a write sees every earlier write.
        let watching = self.shared.watchers.active() && !matches!(kind, ReplyKind::Silent);
        let watch = if watching {
            self.resolve_pending().await;
            self.watch_before(&op).map(Box::new)
        } else {
            None
        };
        if self.pending.len() >= MAX_PENDING {
            self.resolve_pending().await;
        }
        let ack_key = replica_ack_key(self.cluster.as_ref(), &op);
        let write = self.store.enqueue(op).await;
        self.pending.push_back(PendingReply::Write {
            write,
            kind,
            noreply,
            watch,
            ack_key,
        });
        if watching {
            self.resolve_pending().await;
        }
    }

    /// Runs a forwarded request here after no peer before this node
    /// answered: its reply goes exactly where the forwarded one would have.
    fn execute_here(&mut self, raw: Bytes) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let later = std::mem::take(&mut self.pending);
            let forwarded = std::mem::replace(&mut self.forwarded, true);
            if let Decoded::Complete(frame, _) = parse_request(&raw, &self.node.limits) {
                self.handle(frame, raw.clone()).await;
            }
            self.resolve_pending().await;
            self.forwarded = forwarded;
            self.pending = later;
        })
    }

    /// Answers a get split over several nodes, in the client's key order.
    async fn resolve_multi_get(&mut self, pending: MultiGetPending) {
        let MultiGetPending { get, parts, calls } = pending;
        let mut found: Vec<Option<Value>> = vec![None; get.keys.len()];
        let mut local: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|(_, part)| part.is_none())
            .map(|(index, _)| index)
            .collect();
        for (call, indices) in calls {
            match call.await {
                RemoteResult::Reply(bytes) => match route::parse_get_reply(&bytes) {
                    Ok(values) => route::fill_hits(&mut found, &get.keys, &indices, &values),
                    Err(error_line) => {
                        self.output.put_slice(&error_line);
                        return;
                    }
                },
                RemoteResult::Local => local.extend(indices),
                RemoteResult::Failed(reason) => {
                    Reply::ServerError(reason.into()).encode(&mut self.output);
                    return;
                }
            }
        }
        if !local.is_empty() {
            local.sort_unstable();
            let keys: Vec<Bytes> = local.iter().map(|&i| get.keys[i].clone()).collect();
            let here = Get {
                keys,
                with_cas: get.with_cas,
                touch: get.touch,
            };
            let start = self.output.len();
            let later = std::mem::take(&mut self.pending);
            self.execute_get(here).await;
            self.resolve_pending().await;
            self.pending = later;
            let reply = self.output.split_off(start).freeze();
            match route::parse_get_reply(&reply) {
                Ok(values) => route::fill_hits(&mut found, &get.keys, &local, &values),
                Err(error_line) => {
                    self.output.put_slice(&error_line);
                    return;
                }
            }
        }
        for value in found.iter().flatten() {
            route::encode_value(&mut self.output, value);
        }
        self.output.put_slice(b"END\r\n");
    }

    fn literal(&mut self, bytes: Bytes) {
        if self.pending.is_empty() {
            self.output.put_slice(&bytes);
        } else {
            self.pending.push_back(PendingReply::Literal(bytes));
        }
    }

    /// Appends a reply after everything before it.
    async fn reply(&mut self, reply: Reply) {
        self.resolve_pending().await;
        reply.encode(&mut self.output);
    }

    /// Drops every reply not yet sent, as memcached does before closing a
    /// connection or answering a get with a bad key. The writes behind them
    /// still complete (and are counted); only their replies are dropped.
    async fn discard_unsent(&mut self) {
        self.resolve_pending().await;
        self.output.clear();
    }

    /// Waits for every pending write and writes their replies, in order.
    pub async fn resolve_pending(&mut self) {
        while let Some(pending) = self.pending.pop_front() {
            match pending {
                PendingReply::Literal(bytes) => self.output.put_slice(&bytes),
                PendingReply::Remote { call, noreply, raw } => match call.await {
                    RemoteResult::Reply(bytes) => self.output.put_slice(&bytes),
                    RemoteResult::Local => self.execute_here(raw).await,
                    RemoteResult::Failed(reason) => {
                        if !noreply {
                            Reply::ServerError(reason.into()).encode(&mut self.output);
                        }
                    }
                },
                PendingReply::MultiGet(pending) => Box::pin(self.resolve_multi_get(*pending)).await,
                PendingReply::Broadcast(calls) => {
                    route::await_broadcast(self.cluster.as_deref(), calls).await
                }
                PendingReply::Mark(id) => self.marks.push(id, self.output.len()),
                PendingReply::Write {
                    write,
                    kind,
                    noreply,
                    watch,
                    ack_key,
                } => {
                    let (outcome, seq) = write.outcome_and_seq().await;
                    count::count_outcome(&self.shared.counters, &kind, &outcome);
                    if let ReplyKind::GatValue { key, .. } = &kind {
                        let hit = matches!(outcome, Outcome::Fetched(_));
                        self.shared.detail.record_get(key, hit);
                    }
                    if let Some(note) = watch {
                        self.watch_after(*note, &outcome);
                    }
                    self.note_access(&kind, &outcome);
                    let missed = replica_ack_missed(
                        self.cluster.as_deref(),
                        ack_key,
                        outcome.is_success(),
                        seq,
                    );
                    if missed.await {
                        if !noreply {
                            Reply::server_error(REPLICA_ACK_MISSED).encode(&mut self.output);
                        }
                        continue;
                    }
                    if !noreply {
                        self.encode_outcome(kind, outcome);
                    }
                }
            }
        }
    }

    /// What a write teaches the access table (`mg h l`, `me`): `touch` and
    /// `gat` mark the item fetched, as memcached's do; an item given a new
    /// cas unique but staying the same item (`md I`, a counter rewritten in
    /// place) keeps what is known; a new item that may carry an old item's
    /// cas (`E<cas>`, `md x`) starts afresh.
    fn note_access(&self, kind: &ReplyKind, outcome: &Outcome) {
        let access = &self.shared.access;
        match (kind, outcome) {
            (ReplyKind::Meta(MetaRequest::Delete(delete)), outcome) => {
                let done = matches!(outcome, Outcome::Deleted | Outcome::Invalidated { .. });
                if delete.remove_value && done {
                    access.forget(&delete.key);
                }
                if let Outcome::Invalidated { old_cas, new_cas } = outcome {
                    access.renew_cas(&delete.key, *old_cas, *new_cas);
                }
            }
            (ReplyKind::Meta(MetaRequest::Set(set)), Outcome::Stored { .. })
                if set.new_cas.is_some() =>
            {
                access.forget(&set.key)
            }
            (ReplyKind::Meta(MetaRequest::Get(get)), Outcome::Fetched(item))
                if item.created && get.new_cas.is_some() =>
            {
                access.forget(&get.key)
            }
            (ReplyKind::Meta(MetaRequest::Arithmetic(arith)), Outcome::Counter(result)) => {
                if result.in_place {
                    access.renew_cas(&arith.key, result.old_cas, result.record.cas);
                } else if arith.new_cas.is_some() {
                    access.forget(&arith.key);
                }
            }
            (ReplyKind::Arithmetic { key, .. }, Outcome::Counter(result)) if result.in_place => {
                access.renew_cas(key, result.old_cas, result.record.cas);
            }
            (
                ReplyKind::Touch { key } | ReplyKind::GatValue { key, .. },
                Outcome::Fetched(item),
            ) => {
                let record = &item.record;
                let now = self.store.now_secs();
                access.observe(key, record.cas, record.version.timestamp.secs(), now, true);
            }
            _ => {}
        }
    }

    fn get(&mut self, keys: &[Bytes], with_cas: bool) {
        let start = self.output.len();
        for key in keys {
            let counters = &self.shared.counters;
            counters.cmd_get.fetch_add(1, Ordering::Relaxed);
            let lookup = match self.store.get(key) {
                Ok(lookup) => lookup,
                Err(err) => {
                    // Like memcached's failure path: drop this get's partial
                    // answer and send one error instead.
                    self.output.truncate(start);
                    Reply::ServerError(err.to_string().into()).encode(&mut self.output);
                    return;
                }
            };
            self.shared
                .detail
                .record_get(key, matches!(lookup, Lookup::Hit(_)));
            self.watch_lookup(key, &lookup);
            let counters = &self.shared.counters;
            match lookup {
                Lookup::Hit(record) => {
                    counters.get_hits.fetch_add(1, Ordering::Relaxed);
                    let now = self.store.now_secs();
                    let written_at = record.version.timestamp.secs();
                    self.shared
                        .access
                        .observe(key, record.cas, written_at, now, true);
                    self.encode_value(key, &record, with_cas);
                }
                Lookup::Miss => {
                    counters.get_misses.fetch_add(1, Ordering::Relaxed);
                }
                Lookup::Expired => {
                    counters.get_misses.fetch_add(1, Ordering::Relaxed);
                    counters.get_expired.fetch_add(1, Ordering::Relaxed);
                }
                Lookup::Flushed => {
                    counters.get_misses.fetch_add(1, Ordering::Relaxed);
                    counters.get_flushed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.output.put_slice(b"END\r\n");
    }

    fn stats(&mut self, stats: Stats) {
        let report = stats_report::StatsReport {
            store: &self.store,
            node: &self.node,
            shared: &self.shared,
            cluster: self.cluster.as_deref(),
        };
        report.render(stats, &mut self.output);
    }
}

#[cfg(test)]
mod meta_tests;

#[cfg(test)]
mod meta_newer_tests;

#[cfg(test)]
mod test_support {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Instant;

    use mcstore_protocol::{parse_request, Decoded, Frame, Limits, MetaRequest, Request};
    use mcstore_storage::clock::ManualClock;
    use mcstore_storage::ops::{FetchedItem, Outcome};
    use mcstore_storage::{Lookup, Record, Store};

    use super::{lower, NodeInfo, ReplyKind, Session};
    use crate::config::Config;
    use crate::stats::Shared;

    /// A store on `dir` with the command line's defaults, no reclaimer.
    pub fn open(dir: &Path, clock: &Arc<ManualClock>) -> Arc<Store> {
        use clap::Parser;
        let config = Config::parse_from(["mcstore", "--reclaim-rate", "0"]);
        let store_config = mcstore_storage::StoreConfig {
            data_dir: dir.to_path_buf(),
            ..config.store()
        };
        Arc::new(Store::open(store_config, clock.clone()).expect("open store"))
    }

    /// A session on `store`, as a connection would have.
    pub fn node(store: &Arc<Store>) -> Session {
        let node = Arc::new(NodeInfo {
            started: Instant::now(),
            max_connections: 16,
            threads: 1,
            listen: "127.0.0.1:0".into(),
            limits: Limits::default(),
        });
        Session::new(
            store.clone(),
            node,
            Arc::new(Shared::default()),
            None,
            false,
        )
    }

    /// Runs one meta command line (with its data block) as the session does:
    /// lowered, executed by the commit pipeline, its access effects noted.
    pub async fn meta(session: &Session, input: &str) -> Outcome {
        let Decoded::Complete(Frame::Request(Request::Meta(request)), _) =
            parse_request(input.as_bytes(), &Limits::default())
        else {
            panic!("not a meta request: {input:?}");
        };
        let now = session.store.now_secs();
        let op = match &request {
            MetaRequest::Get(get) => lower::meta_get(get, now),
            MetaRequest::Set(set) => lower::meta_set(set, now),
            MetaRequest::Delete(delete) => lower::meta_delete(delete, now),
            MetaRequest::Arithmetic(arith) => lower::meta_arithmetic(arith, now),
            other => panic!("{other:?} is not a write"),
        };
        let outcome = session.store.execute(op).await;
        session.note_access(&ReplyKind::Meta(request), &outcome);
        outcome
    }

    pub async fn meta_item(session: &Session, input: &str) -> FetchedItem {
        match meta(session, input).await {
            Outcome::Fetched(item) => item,
            other => panic!("{input:?}: expected an item, got {other:?}"),
        }
    }

    pub async fn stored_cas(session: &Session, input: &str) -> u64 {
        match meta(session, input).await {
            Outcome::Stored { cas, .. } => cas,
            other => panic!("{input:?}: expected stored, got {other:?}"),
        }
    }

    pub fn record(session: &Session, key: &str) -> Record {
        match session.store.get(key.as_bytes()).expect("readable") {
            Lookup::Hit(record) => record,
            other => panic!("{key}: expected a hit, got {other:?}"),
        }
    }
}
