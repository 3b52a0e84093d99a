//! One connection's command execution: requests in, reply bytes out.
//!
//! Replies leave in request order. Writes are handed to the writer without
//! waiting, so a pipeline of sets lands in one group commit; their replies
//! wait in `pending` until the next read, error or flush of the output needs
//! everything before it resolved (a connection always reads its own writes).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use mcstore_protocol::request::Stats;
use mcstore_protocol::{encode_value_header, Frame, Reply, Request, StoreMode};

use crate::engine::{Engine, SledEngine};
use crate::record::Record;
use crate::stats::Counters;
use crate::store::{Lookup, PendingWrite, Store};
use crate::writer::{WriteOp, WriteOutcome};

/// The version this node reports: memcached's protocol level, then ours.
pub const VERSION: &str = concat!("1.6.18-mcstore-", env!("CARGO_PKG_VERSION"));

/// Facts about the running node that `stats` reports.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// When the node started.
    pub started: Instant,
    /// Unix time at start.
    pub started_unix: u64,
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
    Store { cas: bool },
    Delete,
    Arithmetic { increment: bool },
    Touch,
    GatValue { key: Bytes, with_cas: bool },
    FlushAll,
    Silent,
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
                let op = WriteOp::Touch {
                    key: touch.key,
                    exptime: touch.exptime,
                    return_item: false,
                };
                self.submit(op, ReplyKind::Touch, touch.noreply).await;
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
            other => {
                tracing::debug!(request = ?other, "unsupported request");
                self.reply(Reply::Error).await;
            }
        }
        Next::Continue
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
                    if !noreply {
                        self.encode_outcome(kind, outcome);
                    }
                }
            }
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
            (ReplyKind::Touch | ReplyKind::GatValue { .. }, WriteOutcome::NotFound) => {
                &c.touch_misses
            }
            (
                ReplyKind::Touch | ReplyKind::GatValue { .. },
                WriteOutcome::Touched | WriteOutcome::Item(_),
            ) => &c.touch_hits,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn encode_outcome(&mut self, kind: ReplyKind, outcome: WriteOutcome) {
        let reply = match (kind, outcome) {
            (ReplyKind::Silent, _) => return,
            (_, WriteOutcome::Failed(message)) => Reply::ServerError(message.into()),
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
