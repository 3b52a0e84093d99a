//! One connection's command execution: requests in, reply bytes out.
//!
//! Replies leave in request order. Writes are handed to the writer without
//! waiting, so a pipeline of sets lands in one group commit; their replies
//! wait in `pending` until the next read, error or flush of the output needs
//! everything before it resolved (a connection always reads its own writes).
//!
//! Meta commands (`mg ms md ma mn me`, see `docs/meta-protocol.md`) follow
//! the same split: `ms`, `md`, `ma` and the `mg`s that touch, vivify,
//! recache or win a stale item's token go to the writer; other `mg`s and
//! `me` read directly. Their replies are built from the request's return
//! flags when the outcome arrives; `q` is applied per command, as memcached
//! does, rather than through `noreply`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use mcstore_protocol::exptime::Expiry;
use mcstore_protocol::meta::{base64_encoded, encode_meta_value_header, return_flags, ItemMeta};
use mcstore_protocol::request::Stats;
use mcstore_protocol::{
    encode_value_header, item_size, Frame, MetaArithmetic, MetaArithmeticMode, MetaDebug,
    MetaDebugInfo, MetaDelete, MetaFlag, MetaGet, MetaReply, MetaRequest, MetaSet, MetaStatus,
    Reply, Request, StoreMode,
};

use crate::engine::{Engine, SledEngine};
use crate::record::{Record, MARK_BINARY_KEY, MARK_STALE, MARK_TOKEN_SENT};
use crate::stats::Counters;
use crate::store::{Lookup, PendingWrite, Store};
use crate::writer::{changed_expiry, MetaItem, WriteOp, WriteOutcome};

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
}

/// How a writer outcome becomes reply bytes.
enum ReplyKind {
    Store {
        cas: bool,
    },
    Delete,
    Arithmetic {
        increment: bool,
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
    },
    Literal(Bytes),
}

/// A connection's state.
pub struct Session<E: Engine = SledEngine> {
    store: Arc<Store<E>>,
    node: Arc<NodeInfo>,
    pending: VecDeque<PendingReply>,
    /// Reply bytes ready to be written.
    pub output: BytesMut,
}

/// Pending writes a connection may have in flight before it waits for them.
const MAX_PENDING: usize = 1024;

impl<E: Engine> Session<E> {
    /// A session on `store`.
    pub fn new(store: Arc<Store<E>>, node: Arc<NodeInfo>) -> Session<E> {
        Session {
            store,
            node,
            pending: VecDeque::new(),
            output: BytesMut::with_capacity(16 * 1024),
        }
    }

    fn counters(&self) -> &Counters {
        &self.store.shared().counters
    }

    /// Whether replies are waiting on the writer.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Executes one parsed frame.
    pub async fn handle(&mut self, frame: Frame) -> Next {
        match frame {
            Frame::Request(request) => self.execute(request).await,
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
                if mode == StoreMode::Set {
                    // memcached never leaves the old value behind a failed set.
                    self.submit(WriteOp::Remove { key }, ReplyKind::Silent, true)
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
                    self.submit(WriteOp::Remove { key }, ReplyKind::Silent, true)
                        .await;
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

    async fn execute(&mut self, request: Request) -> Next {
        let shared = self.store.shared().clone();
        let counters = &shared.counters;
        match request {
            Request::Get(get) => match get.touch {
                None => {
                    self.resolve_pending().await;
                    self.get(&get.keys, get.with_cas);
                }
                Some(exptime) => {
                    for key in get.keys {
                        counters.cmd_touch.fetch_add(1, Ordering::Relaxed);
                        let op = WriteOp::Touch {
                            key: key.clone(),
                            exptime,
                            return_item: true,
                        };
                        let kind = ReplyKind::GatValue {
                            key,
                            with_cas: get.with_cas,
                        };
                        self.submit(op, kind, false).await;
                    }
                    self.literal(Bytes::from_static(b"END\r\n"));
                }
            },
            Request::Store(store) => {
                counters.cmd_set.fetch_add(1, Ordering::Relaxed);
                let cas = matches!(store.mode, StoreMode::Cas(_));
                let op = WriteOp::Store {
                    mode: store.mode,
                    key: store.key,
                    flags: store.flags,
                    exptime: store.exptime,
                    value: store.value,
                };
                self.submit(op, ReplyKind::Store { cas }, store.noreply)
                    .await;
            }
            Request::Delete(delete) => {
                let op = WriteOp::Delete { key: delete.key };
                self.submit(op, ReplyKind::Delete, delete.noreply).await;
            }
            Request::Arithmetic(arith) => {
                let op = WriteOp::Arithmetic {
                    key: arith.key,
                    increment: arith.increment,
                    delta: arith.delta,
                };
                let kind = ReplyKind::Arithmetic {
                    increment: arith.increment,
                };
                self.submit(op, kind, arith.noreply).await;
            }
            Request::Touch(touch) => {
                counters.cmd_touch.fetch_add(1, Ordering::Relaxed);
                // The item comes back (answered as `TOUCHED`) so that the
                // touch can mark it fetched, as memcached does.
                let op = WriteOp::Touch {
                    key: touch.key.clone(),
                    exptime: touch.exptime,
                    return_item: true,
                };
                let kind = ReplyKind::Touch { key: touch.key };
                self.submit(op, kind, touch.noreply).await;
            }
            Request::FlushAll(flush) => {
                counters.cmd_flush.fetch_add(1, Ordering::Relaxed);
                let op = WriteOp::FlushAll { delay: flush.delay };
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
            Request::Meta(meta) => self.meta(meta).await,
            other => {
                tracing::debug!(request = ?other, "unsupported request");
                self.reply(Reply::Error).await;
            }
        }
        Next::Continue
    }

    /// Executes a meta command. Writes (and `mg`s that touch, create,
    /// recache or win a stale item's token) go to the writer; other `mg`s
    /// and `me` read directly.
    async fn meta(&mut self, request: MetaRequest) {
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
                    self.submit_meta(WriteOp::MetaGet(get.clone()), MetaRequest::Get(get))
                        .await;
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
                let counters = &self.store.shared().counters;
                match lookup {
                    Lookup::Hit(record) if MetaItem::read_would_win(&record) => {
                        // This read wins the stale item's token: the writer
                        // decides, so that only one client gets it.
                        self.submit_meta(WriteOp::MetaGet(get.clone()), MetaRequest::Get(get))
                            .await;
                    }
                    Lookup::Hit(record) => {
                        counters.cmd_get.fetch_add(1, Ordering::Relaxed);
                        counters.get_hits.fetch_add(1, Ordering::Relaxed);
                        let now = self.store.now_secs();
                        self.meta_get_hit(&get, MetaItem::unchanged(record, now));
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
                self.submit_meta(WriteOp::MetaSet(set.clone()), MetaRequest::Set(set))
                    .await;
            }
            MetaRequest::Delete(delete) => {
                let op = WriteOp::MetaDelete(delete.clone());
                self.submit_meta(op, MetaRequest::Delete(delete)).await;
            }
            MetaRequest::Arithmetic(arith) => {
                let op = WriteOp::MetaArithmetic(arith.clone());
                self.submit_meta(op, MetaRequest::Arithmetic(arith)).await;
            }
        }
    }

    async fn submit_meta(&mut self, op: WriteOp, request: MetaRequest) {
        // Meta replies decide for themselves what `q` hides.
        self.submit(op, ReplyKind::Meta(request), false).await;
    }

    fn meta_get_hit(&mut self, get: &MetaGet, item: MetaItem) {
        let record = &item.record;
        let now = item.now;
        let seen = self.store.shared().access.observe(
            &get.key,
            record.cas,
            record.version / 1_000_000_000,
            now,
            !get.no_bump,
        );
        let ttl_expiry = changed_expiry(get.exptime(item.created, true), item.expiry_before, now);
        let meta = ItemMeta {
            cas: record.cas,
            flags: record.flags,
            fetched: seen.fetched,
            last_access: now.saturating_sub(seen.last_access),
            size: record.value.len() as u64,
            ttl: ttl_expiry.ttl_remaining(now),
        };
        let mut flags = return_flags(
            &get.returns,
            &get.key,
            record.has(MARK_BINARY_KEY),
            get.opaque.as_ref(),
            Some(&meta),
        );
        if item.marks_before & MARK_TOKEN_SENT != 0 {
            flags.push(MetaFlag::TokenSent);
        }
        if record.has(MARK_STALE) {
            flags.push(MetaFlag::Stale);
        }
        if item.won {
            flags.push(MetaFlag::Won);
        }
        if get.value {
            encode_meta_value_header(&mut self.output, record.value.len(), &flags);
            self.output.put_slice(&record.value);
            self.output.put_slice(b"\r\n");
        } else {
            MetaReply {
                status: MetaStatus::Done,
                flags,
            }
            .encode(&mut self.output);
        }
    }

    fn meta_get_miss(&mut self, get: &MetaGet) {
        if get.quiet {
            return;
        }
        let flags = return_flags(
            &get.returns,
            &get.key,
            get.base64_key,
            get.opaque.as_ref(),
            None,
        );
        MetaReply {
            status: MetaStatus::Miss,
            flags,
        }
        .encode(&mut self.output);
    }

    fn meta_debug(&mut self, debug: &MetaDebug) {
        let record = match self.store.get(&debug.key) {
            Ok(Lookup::Hit(record)) => record,
            Ok(_) => {
                MetaReply::bare(MetaStatus::Miss).encode(&mut self.output);
                return;
            }
            Err(err) => {
                Reply::ServerError(err.to_string().into()).encode(&mut self.output);
                return;
            }
        };
        let now = self.store.now_secs();
        let seen = self.store.shared().access.observe(
            &debug.key,
            record.cas,
            record.version / 1_000_000_000,
            now,
            false,
        );
        let key = if record.has(MARK_BINARY_KEY) {
            base64_encoded(&debug.key)
        } else {
            debug.key.clone()
        };
        let info = MetaDebugInfo {
            key,
            exp: match record.expiry {
                Expiry::Never => -1,
                Expiry::At(at) => now as i64 - at as i64,
            },
            la: now.saturating_sub(seen.last_access),
            cas: record.cas,
            fetch: seen.fetched,
            cls: 1,
            size: item_size(debug.key.len(), record.flags, record.value.len()),
        };
        Reply::MetaDebug(info).encode(&mut self.output);
    }

    fn encode_meta(&mut self, request: MetaRequest, outcome: WriteOutcome) {
        let (status, flags) = match (request, outcome) {
            (MetaRequest::Get(get), WriteOutcome::MetaItem(item)) => {
                self.meta_get_hit(&get, item);
                return;
            }
            (MetaRequest::Get(get), _) => {
                self.meta_get_miss(&get);
                return;
            }
            (MetaRequest::Set(set), outcome) => meta_set_reply(&set, outcome),
            (MetaRequest::Delete(delete), outcome) => meta_delete_reply(&delete, outcome),
            (MetaRequest::Arithmetic(arith), outcome) => {
                match meta_arithmetic_reply(&arith, outcome) {
                    Ok(reply) => reply,
                    Err(reply) => {
                        reply.encode(&mut self.output);
                        return;
                    }
                }
            }
            (MetaRequest::Noop | MetaRequest::Debug(_), _) => return,
        };
        if let Some(status) = status {
            MetaReply { status, flags }.encode(&mut self.output);
        }
    }

    async fn submit(&mut self, op: WriteOp, kind: ReplyKind, noreply: bool) {
        if self.pending.len() >= MAX_PENDING {
            self.resolve_pending().await;
        }
        let write = self.store.enqueue(op).await;
        self.pending.push_back(PendingReply::Write {
            write,
            kind,
            noreply,
        });
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
                PendingReply::Write {
                    write,
                    kind,
                    noreply,
                } => {
                    let outcome = write.outcome().await;
                    self.count_outcome(&kind, &outcome);
                    self.note_fetch(&kind, &outcome);
                    if !noreply {
                        self.encode_outcome(kind, outcome);
                    }
                }
            }
        }
    }

    /// `touch` and `gat` mark the item fetched, as memcached's do; an item
    /// marked stale by `md I` stays the same item under its new cas.
    fn note_fetch(&self, kind: &ReplyKind, outcome: &WriteOutcome) {
        if let (
            ReplyKind::Meta(MetaRequest::Delete(delete)),
            WriteOutcome::Invalidated { old_cas, new_cas },
        ) = (kind, outcome)
        {
            let access = &self.store.shared().access;
            access.renew_cas(&delete.key, *old_cas, *new_cas);
            return;
        }
        if let (
            ReplyKind::Touch { key } | ReplyKind::GatValue { key, .. },
            WriteOutcome::Item(record),
        ) = (kind, outcome)
        {
            let now = self.store.now_secs();
            let written_at = record.version / 1_000_000_000;
            let access = &self.store.shared().access;
            access.observe(key, record.cas, written_at, now, true);
        }
    }

    fn count_outcome(&self, kind: &ReplyKind, outcome: &WriteOutcome) {
        let c = self.counters();
        let counter = match (kind, outcome) {
            (ReplyKind::Store { .. }, WriteOutcome::Stored) => {
                if let ReplyKind::Store { cas: true } = kind {
                    c.cas_hits.fetch_add(1, Ordering::Relaxed);
                }
                &c.total_items
            }
            (ReplyKind::Store { cas: true }, WriteOutcome::Exists) => &c.cas_badval,
            (ReplyKind::Store { cas: true }, WriteOutcome::NotFound) => &c.cas_misses,
            (ReplyKind::Delete, WriteOutcome::Deleted) => &c.delete_hits,
            (ReplyKind::Delete, WriteOutcome::NotFound) => &c.delete_misses,
            (ReplyKind::Arithmetic { increment: true }, WriteOutcome::NotFound) => &c.incr_misses,
            (ReplyKind::Arithmetic { increment: false }, WriteOutcome::NotFound) => &c.decr_misses,
            (ReplyKind::Arithmetic { increment: true }, WriteOutcome::Number(_)) => &c.incr_hits,
            (ReplyKind::Arithmetic { increment: false }, WriteOutcome::Number(_)) => &c.decr_hits,
            (ReplyKind::Touch { .. } | ReplyKind::GatValue { .. }, WriteOutcome::NotFound) => {
                &c.touch_misses
            }
            (
                ReplyKind::Touch { .. } | ReplyKind::GatValue { .. },
                WriteOutcome::Touched | WriteOutcome::Item(_),
            ) => &c.touch_hits,
            (ReplyKind::Meta(request), outcome) => {
                count_meta_outcome(c, request, outcome);
                return;
            }
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn encode_outcome(&mut self, kind: ReplyKind, outcome: WriteOutcome) {
        let reply = match (kind, outcome) {
            (ReplyKind::Silent, _) => return,
            (_, WriteOutcome::Failed(message)) => Reply::ServerError(message.into()),
            (ReplyKind::Meta(request), outcome) => {
                self.encode_meta(request, outcome);
                return;
            }
            (ReplyKind::GatValue { key, with_cas }, WriteOutcome::Item(record)) => {
                self.encode_value(&key, &record, with_cas);
                return;
            }
            (ReplyKind::GatValue { .. }, _) => return,
            (_, WriteOutcome::Stored) => Reply::Stored,
            (_, WriteOutcome::NotStored) => Reply::NotStored,
            (_, WriteOutcome::Exists) => Reply::Exists,
            (_, WriteOutcome::NotFound) => Reply::NotFound,
            (_, WriteOutcome::Deleted) => Reply::Deleted,
            (_, WriteOutcome::Touched) => Reply::Touched,
            (_, WriteOutcome::Ok) => Reply::Ok,
            (_, WriteOutcome::Number(number)) => Reply::Number(number),
            (_, WriteOutcome::NonNumeric) => {
                Reply::client_error("cannot increment or decrement non-numeric value")
            }
            (_, WriteOutcome::Item(_)) => Reply::Touched,
            // Only meta requests get these; they are answered above.
            (_, WriteOutcome::MetaItem(_) | WriteOutcome::MetaStored { .. }) => Reply::Stored,
            (_, WriteOutcome::Invalidated { .. }) => Reply::Deleted,
            (_, WriteOutcome::Counter { number, .. }) => Reply::Number(number),
        };
        reply.encode(&mut self.output);
    }

    fn encode_value(&mut self, key: &[u8], record: &Record, with_cas: bool) {
        let cas = with_cas.then_some(record.cas);
        encode_value_header(&mut self.output, key, record.flags, record.value.len(), cas);
        self.output.put_slice(&record.value);
        self.output.put_slice(b"\r\n");
    }

    fn get(&mut self, keys: &[Bytes], with_cas: bool) {
        let start = self.output.len();
        for key in keys {
            let counters = &self.store.shared().counters;
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
            let counters = &self.store.shared().counters;
            match lookup {
                Lookup::Hit(record) => {
                    counters.get_hits.fetch_add(1, Ordering::Relaxed);
                    let now = self.store.now_secs();
                    let written_at = record.version / 1_000_000_000;
                    let access = &self.store.shared().access;
                    access.observe(key, record.cas, written_at, now, true);
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

    fn stat(&mut self, name: &str, value: impl std::fmt::Display) {
        Reply::Stat {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::from(value.to_string()),
        }
        .encode(&mut self.output);
    }

    fn stats(&mut self, stats: Stats) {
        match stats {
            Stats::General => self.general_stats(),
            Stats::Settings => self.settings_stats(),
            Stats::Reset => {
                self.counters().reset();
                Reply::Reset.encode(&mut self.output);
                return;
            }
            Stats::Group(group) => match &group[..] {
                b"store" => self.store_stats(),
                // Groups memcached has that mean nothing here: no slabs.
                b"items" | b"slabs" | b"sizes" | b"conns" => {}
                _ => {
                    Reply::Error.encode(&mut self.output);
                    return;
                }
            },
        }
        Reply::End.encode(&mut self.output);
    }

    fn general_stats(&mut self) {
        let node = self.node.clone();
        let shared = self.store.shared().clone();
        let now = crate::clock::Clock::now_secs(&crate::clock::SystemClock);
        let (user, system) = rusage();
        self.stat("pid", std::process::id());
        self.stat("uptime", node.started.elapsed().as_secs());
        self.stat("time", now);
        self.stat("version", VERSION);
        self.stat("pointer_size", usize::BITS);
        self.stat("rusage_user", format_args!("{user:.6}"));
        self.stat("rusage_system", format_args!("{system:.6}"));
        self.stat("max_connections", node.max_connections);
        self.stat(
            "curr_connections",
            shared.curr_connections.load(Ordering::Relaxed),
        );
        let counters = shared.counters.snapshot();
        let lookup = |name: &str| {
            counters
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or(0)
        };
        self.stat("total_connections", lookup("total_connections"));
        self.stat("rejected_connections", lookup("rejected_connections"));
        for (name, value) in &counters {
            if !matches!(
                *name,
                "total_connections" | "rejected_connections" | "total_items"
            ) {
                self.stat(name, value);
            }
        }
        self.stat(
            "connection_structures",
            shared.curr_connections.load(Ordering::Relaxed),
        );
        self.stat("limit_maxbytes", 0);
        self.stat("threads", node.threads);
        self.stat("bytes", shared.bytes.load(Ordering::Relaxed));
        self.stat("curr_items", shared.items.load(Ordering::Relaxed));
        self.stat("total_items", lookup("total_items"));
        // mcstore never evicts: every item stays until deleted or expired.
        self.stat("evictions", 0);
        self.stat(
            "corrupt_records",
            shared.corrupt_records.load(Ordering::Relaxed),
        );
    }

    fn settings_stats(&mut self) {
        let node = self.node.clone();
        let config = self.store.config().clone();
        self.stat("listen", &node.listen);
        self.stat("maxconns", node.max_connections);
        self.stat("num_threads", node.threads);
        self.stat("item_size_max", config.max_item_size);
        self.stat("data_dir", config.data_dir.display());
        self.stat("sync", config.sync.name());
        self.stat("sync_interval_ms", config.sync_interval.as_millis());
        self.stat("max_batch", config.max_batch);
        self.stat("cache_bytes", config.cache_bytes);
        self.stat("wal_segment_bytes", config.wal_segment_bytes);
        self.stat(
            "checkpoint_interval_ms",
            config.checkpoint_interval.as_millis(),
        );
        self.stat("reclaim_keys_per_sec", config.reclaim_keys_per_sec);
        self.stat("max_pending_writes", config.max_pending_writes);
        self.stat("cas_enabled", "yes");
        self.stat("flush_enabled", "yes");
    }

    fn store_stats(&mut self) {
        let shared = self.store.shared().clone();
        let store = &shared.store;
        let batches = store.batches.load(Ordering::Relaxed);
        let ops = store.batched_ops.load(Ordering::Relaxed);
        let (engine_bytes, wal_bytes) = self.store.disk_bytes();
        self.stat("engine", "sled-0.34.7");
        self.stat("sync", self.store.config().sync.name());
        self.stat("batches", batches);
        self.stat("batched_ops", ops);
        let mean = if batches == 0 {
            0.0
        } else {
            ops as f64 / batches as f64
        };
        self.stat("batch_mean", format_args!("{mean:.2}"));
        self.stat("batch_max", store.max_batch.load(Ordering::Relaxed));
        self.stat("fsyncs", store.fsyncs.load(Ordering::Relaxed));
        for (name, value) in store.fsync_percentiles() {
            self.stat(name, value);
        }
        self.stat("checkpoints", store.checkpoints.load(Ordering::Relaxed));
        self.stat("reclaimed", store.reclaimed.load(Ordering::Relaxed));
        self.stat("engine_disk_bytes", engine_bytes);
        self.stat("wal_disk_bytes", wal_bytes);
        self.stat("disk_bytes", engine_bytes + wal_bytes);
        self.stat(
            "corrupt_records",
            shared.corrupt_records.load(Ordering::Relaxed),
        );
    }
}

/// Counts a meta write's outcome as memcached does.
fn count_meta_outcome(c: &Counters, request: &MetaRequest, outcome: &WriteOutcome) {
    let bump = |counter: &std::sync::atomic::AtomicU64| {
        counter.fetch_add(1, Ordering::Relaxed);
    };
    match request {
        MetaRequest::Get(get) => {
            // As memcached: a hit with `T` counts as a touch, a miss always
            // as a get miss.
            match outcome {
                WriteOutcome::MetaItem(item) => {
                    if get.touch.is_some() {
                        bump(&c.cmd_touch);
                        bump(&c.touch_hits);
                    } else {
                        bump(&c.cmd_get);
                        bump(&c.get_hits);
                    }
                    if item.created {
                        bump(&c.total_items);
                    }
                }
                _ => {
                    bump(&c.cmd_get);
                    bump(&c.get_misses);
                }
            }
        }
        MetaRequest::Set(set) => {
            let cas = matches!(set.store_mode(), StoreMode::Cas(_));
            match outcome {
                WriteOutcome::MetaStored { .. } => {
                    bump(&c.total_items);
                    if cas {
                        bump(&c.cas_hits);
                    }
                }
                WriteOutcome::Exists if cas => bump(&c.cas_badval),
                WriteOutcome::NotFound if cas => bump(&c.cas_misses),
                _ => {}
            }
        }
        MetaRequest::Delete(delete) => {
            // `x` links a new, emptied item, which memcached counts.
            if delete.remove_value
                && matches!(
                    outcome,
                    WriteOutcome::Deleted | WriteOutcome::Invalidated { .. }
                )
            {
                bump(&c.total_items);
            }
            match outcome {
                WriteOutcome::Deleted if !delete.invalidate => bump(&c.delete_hits),
                WriteOutcome::NotFound | WriteOutcome::Exists => bump(&c.delete_misses),
                _ => {}
            }
        }
        MetaRequest::Arithmetic(arith) => {
            let increment = arith.mode == MetaArithmeticMode::Increment;
            match outcome {
                WriteOutcome::Counter { created: true, .. } => bump(&c.total_items),
                WriteOutcome::Counter { created: false, .. } => bump(if increment {
                    &c.incr_hits
                } else {
                    &c.decr_hits
                }),
                WriteOutcome::NotFound => bump(if increment {
                    &c.incr_misses
                } else {
                    &c.decr_misses
                }),
                _ => {}
            }
        }
        MetaRequest::Noop | MetaRequest::Debug(_) => {}
    }
}

/// The `ms` reply: `HD` (hidden by `q`), `NS`, `EX`, `NF`, with `O`, `k`
/// and `c` (the new cas, 0 when nothing was stored).
fn meta_set_reply(set: &MetaSet, outcome: WriteOutcome) -> (Option<MetaStatus>, Vec<MetaFlag>) {
    // `s` (newer than 1.6.18) reports the stored size, or the request's data
    // length when nothing was stored, as memcached's _finalize_mset does.
    let unstored = set.value.len() as u64;
    let (status, cas, size) = match outcome {
        WriteOutcome::MetaStored { cas, size } => {
            ((!set.quiet).then_some(MetaStatus::Done), cas, size)
        }
        WriteOutcome::NotStored => (Some(MetaStatus::NotStored), 0, unstored),
        WriteOutcome::Exists => (Some(MetaStatus::Exists), 0, unstored),
        _ => (Some(MetaStatus::NotFound), 0, unstored),
    };
    let item = ItemMeta {
        cas,
        size,
        ..ItemMeta::default()
    };
    let flags = return_flags(
        &set.returns,
        &set.key,
        set.base64_key,
        set.opaque.as_ref(),
        Some(&item),
    );
    (status, flags)
}

/// The `md` reply: `HD` (hidden by `q`), `NF`, `EX`, with `O` and `k`.
fn meta_delete_reply(
    delete: &MetaDelete,
    outcome: WriteOutcome,
) -> (Option<MetaStatus>, Vec<MetaFlag>) {
    let status = match outcome {
        WriteOutcome::Deleted | WriteOutcome::Invalidated { .. } => {
            (!delete.quiet).then_some(MetaStatus::Done)
        }
        WriteOutcome::Exists => Some(MetaStatus::Exists),
        _ => Some(MetaStatus::NotFound),
    };
    let flags = return_flags(
        &delete.returns,
        &delete.key,
        delete.base64_key,
        delete.opaque.as_ref(),
        None,
    );
    (status, flags)
}

/// The `ma` reply: `HD` or `VA` with the number (hidden by `q` unless the
/// item was just created), `NF`, `EX`; or an error reply.
fn meta_arithmetic_reply(
    arith: &MetaArithmetic,
    outcome: WriteOutcome,
) -> Result<(Option<MetaStatus>, Vec<MetaFlag>), Reply> {
    let flags = |item: Option<&ItemMeta>| {
        return_flags(
            &arith.returns,
            &arith.key,
            arith.base64_key,
            arith.opaque.as_ref(),
            item,
        )
    };
    Ok(match outcome {
        WriteOutcome::Counter {
            number,
            record,
            expiry_before,
            created,
            now,
        } => {
            let ttl = changed_expiry(arith.exptime(created, true), expiry_before, now);
            let item = ItemMeta {
                cas: record.cas,
                ttl: ttl.ttl_remaining(now),
                ..ItemMeta::default()
            };
            let status = if arith.quiet && !created {
                None
            } else if arith.value {
                Some(MetaStatus::Value(Bytes::from(number.to_string())))
            } else {
                Some(MetaStatus::Done)
            };
            (status, flags(Some(&item)))
        }
        WriteOutcome::NonNumeric => {
            return Err(Reply::client_error(
                "cannot increment or decrement non-numeric value",
            ))
        }
        WriteOutcome::Exists => (Some(MetaStatus::Exists), flags(None)),
        _ => (Some(MetaStatus::NotFound), flags(None)),
    })
}

/// User and system CPU seconds of this process.
fn rusage() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we pass; no other memory.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}
