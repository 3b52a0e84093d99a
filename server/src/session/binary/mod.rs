//! One binary-protocol connection's command execution: frames in, response
//! bytes out, with memcached 1.6.18's answers.
//!
//! A binary request is lowered ([`lower`]) to the same storage operations
//! a text or meta command becomes, and its outcome rendered ([`render`])
//! as memcached's binary response; [`count`] keeps memcached's counters.
//! So items, cas uniques and expiries are shared with text and meta
//! clients, and item semantics live only in the storage layer.
//!
//! # Flow of a request
//!
//! [`BinarySession::handle`] takes one [`BinaryFrame`]. Malformed frames
//! are answered (or not) and tell the connection to close or discard, as
//! memcached does. In a cluster, a request for a key another node holds
//! is forwarded first ([`route`]: re-encoded, sent to the key's first
//! live replica, its response bytes relayed unchanged, nothing for a quiet
//! success), and a flush goes to every member. A request for a key this
//! node holds goes through one function, [`BinarySession::keyed`], with
//! the key, the work ([`Work::Read`] or a [`Work::Write`] operation) and
//! how to answer ([`Answer`]). Everything else (noop, version, stat,
//! SASL, quit) is answered here.
//!
//! # Ordering and group commit
//!
//! Writes are handed to the commit pipeline without waiting; their
//! responses wait in `pending`, in request order, with any response that
//! came after them. A read (get), `noop`, `stat`, `quit` and the moments
//! memcached writes its output (see [`crate::binary_connection`]) resolve
//! them, so a pipeline of (quiet) sets ending in a `noop` lands in one
//! group commit, and a connection always reads its own writes.
//!
//! # Authentication
//!
//! With `--sasl-password-file`, as memcached with `-S`: until the
//! connection authenticates with SASL `PLAIN`, every frame other than SASL
//! list mechanisms / auth / step and `version` (and the frames memcached
//! rejects before it checks: a body shorter than key and extras, a bad
//! magic) is answered "Auth failure." (`0x20`) and the connection closed.
//! Every SASL command starts from an unauthenticated connection, as
//! memcached's `init_sasl_conn` does: a failed auth, a step (`PLAIN` has
//! none) or even listing the mechanisms undoes an earlier success.
//! Without the file, the SASL opcodes answer "Unknown command", as
//! memcached without `-S`.

pub mod count;
pub mod lower;
pub mod render;
pub mod route;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use mcstore_protocol::binary::{
    BinaryCloseReason, BinaryFrame, BinaryRequest, BinaryResponse, Command, Opcode, SaslAuth,
    StatGroup, Status, MAX_SASL_MECHANISM_LEN, PLAIN,
};
use mcstore_storage::store::PendingWrite;
use mcstore_storage::{Lookup, Operation, Store};

use self::render::Answer;
use super::route::RemoteCall;
use super::stats_report::{StatGroup as Group, StatsReport};
use super::{next_slot, NodeInfo, ReplyMarks, Session, VERSION};
use crate::cluster::ClusterNode;
use crate::stats::{Counters, Shared};
use mcstore_cluster::peer::ForwardCall;

/// What the connection does after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryNext {
    /// Go on with the next frame.
    Continue,
    /// Write every response now (`noop`), then go on.
    Flush,
    /// Discard this many bytes of input as they arrive (responses are not
    /// written meanwhile, as memcached's), then go on.
    Discard(u64),
    /// Write what is buffered, then close.
    Close,
}

/// What a keyed request asks of the node that holds its key.
#[derive(Debug)]
pub enum Work {
    /// A plain read (get, getq, getk, getkq).
    Read,
    /// A write, or a read that changes its item, for the commit pipeline.
    Write(Operation),
}

enum Pending {
    /// A write and how to answer it; with `--replica-ack one`, the key
    /// whose other replica must have it first.
    Write {
        write: PendingWrite,
        answer: Answer,
        ack_key: Option<Bytes>,
    },
    /// A write nobody is answered for (a too-large `set` unlinking).
    Silent(PendingWrite),
    /// Response bytes that came after pending writes.
    Literal(Bytes),
    /// A request forwarded to a peer; `fallback` runs here if no peer
    /// before this node answers (`None`: nothing to run).
    Remote {
        call: RemoteCall,
        fallback: Option<Box<BinaryRequest>>,
    },
    /// A flush's copies to the other members.
    Broadcast(Vec<ForwardCall>),
    /// The end of the response to a request a peer forwarded.
    Mark(u64),
}

/// Pending writes a connection may have in flight before it waits for them.
const MAX_PENDING: usize = 1024;

/// A binary connection's state.
pub struct BinarySession {
    store: Arc<Store>,
    node: Arc<NodeInfo>,
    shared: Arc<Shared>,
    /// The node's cluster, if it is in one.
    cluster: Option<Arc<ClusterNode>>,
    /// The requests come from a peer: execute them here, never forward.
    forwarded: bool,
    /// Which peer connection this session's forwarded requests use.
    slot: usize,
    pending: VecDeque<Pending>,
    /// Where the response to each request a peer forwarded ends.
    marks: ReplyMarks,
    authenticated: bool,
    /// Response bytes ready to be written.
    pub output: BytesMut,
}

impl Session {
    /// The node's shared state (counters, authentication).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl BinarySession {
    /// The binary session of the connection `text` was made for.
    pub fn for_connection(text: &Session) -> BinarySession {
        BinarySession {
            cluster: text.cluster.clone(),
            ..BinarySession::new(text.store.clone(), text.node.clone(), text.shared.clone())
        }
    }

    /// The binary session of a peer's connection (`text` serves its text
    /// requests): requests are executed here, never forwarded again, and
    /// need no authentication (the forwarding node asked for it, and the
    /// peer proved the cluster secret).
    pub fn for_peer(text: &Session) -> BinarySession {
        BinarySession {
            forwarded: true,
            authenticated: true,
            ..BinarySession::for_connection(text)
        }
    }

    /// A session on `store`.
    pub fn new(store: Arc<Store>, node: Arc<NodeInfo>, shared: Arc<Shared>) -> BinarySession {
        BinarySession {
            store,
            node,
            shared,
            cluster: None,
            forwarded: false,
            slot: next_slot(),
            pending: VecDeque::new(),
            marks: ReplyMarks::default(),
            authenticated: false,
            output: BytesMut::with_capacity(16 * 1024),
        }
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    fn sasl_enabled(&self) -> bool {
        self.shared.auth.required()
    }

    /// Executes one frame.
    pub async fn handle(&mut self, frame: BinaryFrame) -> BinaryNext {
        if let Some((opcode, opaque)) = self.refused_unauthenticated(&frame) {
            self.literal(BinaryResponse::error(opcode, opaque, Status::AUTH_ERROR));
            return BinaryNext::Close;
        }
        match frame {
            BinaryFrame::Request(request) => self.execute(request).await,
            BinaryFrame::ProtocolError { .. } => {
                if let Some(response) = frame.response() {
                    self.literal(response);
                }
                BinaryNext::Close
            }
            BinaryFrame::UnknownCommand { discard, .. } => {
                if let Some(response) = frame.response() {
                    self.literal(response);
                }
                BinaryNext::Discard(discard)
            }
            BinaryFrame::TooLarge(too_large) => {
                if too_large.unlinks() && !self.unlink_elsewhere(&too_large.key) {
                    // memcached never leaves the old value behind a failed set.
                    let op = Operation::Remove {
                        key: too_large.key.clone(),
                    };
                    self.reserve_pending().await;
                    let write = self.store.enqueue(op).await;
                    self.pending.push_back(Pending::Silent(write));
                }
                let response = too_large.response(self.sasl_enabled());
                self.literal_unless_suppressed(too_large.opcode, response);
                BinaryNext::Discard(too_large.discard)
            }
            BinaryFrame::Close(reason) => {
                tracing::debug!(?reason, "closing binary connection");
                if reason == BinaryCloseReason::BadMagic {
                    // memcached drops the responses it has not sent.
                    self.resolve_pending().await;
                    self.output.clear();
                }
                BinaryNext::Close
            }
        }
    }

    /// With SASL required and the connection unauthenticated, the opcode
    /// and opaque of a frame memcached refuses with "Auth failure.".
    fn refused_unauthenticated(&self, frame: &BinaryFrame) -> Option<(u8, u32)> {
        if !self.sasl_enabled() || self.authenticated {
            return None;
        }
        let allowed = |opcode: u8| {
            [
                Opcode::SaslListMechs,
                Opcode::SaslAuth,
                Opcode::SaslStep,
                Opcode::Version,
            ]
            .iter()
            .any(|allowed| allowed.code() == opcode)
        };
        let (opcode, opaque) = match frame {
            BinaryFrame::Request(request) => (request.opcode().code(), request.opaque),
            // Checked before authentication.
            BinaryFrame::ProtocolError { status, .. } if *status == Status::UNKNOWN_COMMAND => {
                return None
            }
            BinaryFrame::ProtocolError { opcode, opaque, .. }
            | BinaryFrame::UnknownCommand { opcode, opaque, .. } => (*opcode, *opaque),
            BinaryFrame::TooLarge(too_large) => (too_large.opcode.code(), too_large.opaque),
            _ => return None,
        };
        (!allowed(opcode)).then_some((opcode, opaque))
    }

    async fn execute(&mut self, request: BinaryRequest) -> BinaryNext {
        let request = match self.forward(request).await {
            Some(request) => request,
            None => return BinaryNext::Continue,
        };
        let now = self.store.now_secs();
        let opcode = request.opcode();
        let opaque = request.opaque;
        match request.command {
            Command::Get(get) => {
                let answer = Answer::new(opcode, opaque, get.key.clone());
                match get.touch {
                    None => self.keyed(get.key, Work::Read, answer).await,
                    Some(exptime) => {
                        self.counters().cmd_touch.fetch_add(1, Ordering::Relaxed);
                        let op = lower::touch(get.key.clone(), exptime, now);
                        self.keyed(get.key, Work::Write(op), answer).await
                    }
                }
            }
            Command::Touch(touch) => {
                self.counters().cmd_touch.fetch_add(1, Ordering::Relaxed);
                let answer = Answer::new(opcode, opaque, touch.key.clone());
                let op = lower::touch(touch.key.clone(), touch.exptime, now);
                self.keyed(touch.key, Work::Write(op), answer).await;
            }
            Command::Store(store) => {
                self.counters().cmd_set.fetch_add(1, Ordering::Relaxed);
                let answer = Answer {
                    cas_store: store.cas != 0,
                    ..Answer::new(opcode, opaque, store.key.clone())
                };
                let key = store.key.clone();
                self.keyed(key, Work::Write(lower::store(store, now)), answer)
                    .await;
            }
            Command::Concat(concat) => {
                self.counters().cmd_set.fetch_add(1, Ordering::Relaxed);
                let key = concat.key.clone();
                let answer = Answer::new(opcode, opaque, key.clone());
                self.keyed(key, Work::Write(lower::concat(concat)), answer)
                    .await;
            }
            Command::Delete(delete) => {
                let key = delete.key.clone();
                let answer = Answer::new(opcode, opaque, key.clone());
                self.keyed(key, Work::Write(lower::delete(delete)), answer)
                    .await;
            }
            Command::Arithmetic(arith) => {
                let key = arith.key.clone();
                let answer = Answer::new(opcode, opaque, key.clone());
                let op = lower::arithmetic(arith, now);
                self.keyed(key, Work::Write(op), answer).await;
            }
            Command::Flush(flush) => {
                self.counters().cmd_flush.fetch_add(1, Ordering::Relaxed);
                let op = lower::flush(&flush, now);
                self.submit(op, Answer::new(opcode, opaque, Bytes::new()))
                    .await;
            }
            Command::Noop => {
                self.resolve_pending().await;
                BinaryResponse::ok(opcode.code(), opaque, 0).encode(&mut self.output);
                return BinaryNext::Flush;
            }
            Command::Version => {
                let version = Bytes::from_static(VERSION.as_bytes());
                self.literal(BinaryResponse::version(opaque, version));
            }
            Command::Quit(quit) => {
                self.resolve_pending().await;
                if !quit.quiet {
                    BinaryResponse::ok(opcode.code(), opaque, 0).encode(&mut self.output);
                }
                return BinaryNext::Close;
            }
            Command::Stat(stat) => {
                self.resolve_pending().await;
                self.stat(stat.group(), opaque);
            }
            Command::SaslListMechs => self.sasl_list_mechanisms(opcode, opaque),
            Command::SaslAuth(auth) => self.sasl_auth(opcode, opaque, &auth),
            other => {
                tracing::debug!(command = ?other, "unsupported binary command");
                self.literal(BinaryResponse::error(
                    opcode.code(),
                    opaque,
                    Status::UNKNOWN_COMMAND,
                ));
            }
        }
        BinaryNext::Continue
    }

    /// The one way a keyed request reaches this node's data: `key` is the
    /// request's key, `work` what it needs done, `answer` how its outcome
    /// is answered. (In a cluster, a request for a key another node holds
    /// was forwarded before it got here.)
    pub async fn keyed(&mut self, key: Bytes, work: Work, answer: Answer) {
        match work {
            Work::Read => {
                // A connection reads its own writes.
                self.resolve_pending().await;
                self.read(&key, &answer);
            }
            Work::Write(op) => self.submit(op, answer).await,
        }
    }

    /// `get`, `getq`, `getk`, `getkq`, counted as memcached counts them.
    fn read(&mut self, key: &Bytes, answer: &Answer) {
        let counters = &self.shared.counters;
        counters.cmd_get.fetch_add(1, Ordering::Relaxed);
        let lookup = match self.store.get(key) {
            Ok(lookup) => lookup,
            Err(err) => {
                let response = render::failure(answer.opcode.code(), answer.opaque, err);
                response.encode(&mut self.output);
                return;
            }
        };
        match lookup {
            Lookup::Hit(record) => {
                counters.get_hits.fetch_add(1, Ordering::Relaxed);
                let now = self.store.now_secs();
                let written = record.version.timestamp.secs();
                self.shared
                    .access
                    .observe(key, record.cas, written, now, true);
                render::hit(&mut self.output, answer, &record);
            }
            miss => {
                counters.get_misses.fetch_add(1, Ordering::Relaxed);
                match miss {
                    Lookup::Expired => counters.get_expired.fetch_add(1, Ordering::Relaxed),
                    Lookup::Flushed => counters.get_flushed.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                render::miss(&mut self.output, answer);
            }
        }
    }

    async fn reserve_pending(&mut self) {
        if self.pending.len() >= MAX_PENDING {
            self.resolve_pending().await;
        }
    }

    async fn submit(&mut self, op: Operation, answer: Answer) {
        self.reserve_pending().await;
        let ack_key = super::replica_ack_key(self.cluster.as_ref(), &op);
        let write = self.store.enqueue(op).await;
        self.pending.push_back(Pending::Write {
            write,
            answer,
            ack_key,
        });
    }

    /// Appends a response after everything before it, without waiting.
    fn literal(&mut self, response: BinaryResponse) {
        if self.pending.is_empty() {
            response.encode(&mut self.output);
        } else {
            let mut bytes = BytesMut::new();
            response.encode(&mut bytes);
            self.pending.push_back(Pending::Literal(bytes.freeze()));
        }
    }

    fn literal_unless_suppressed(&mut self, opcode: Opcode, response: BinaryResponse) {
        if !opcode.suppresses(response.status) {
            self.literal(response);
        }
    }

    /// Waits for every pending write and writes the responses, in order.
    pub async fn resolve_pending(&mut self) {
        while let Some(pending) = self.pending.pop_front() {
            match pending {
                Pending::Literal(bytes) => self.output.put_slice(&bytes),
                Pending::Remote { call, fallback } => self.resolve_remote(call, fallback).await,
                Pending::Broadcast(calls) => {
                    super::route::await_broadcast(self.cluster.as_deref(), calls).await
                }
                Pending::Mark(id) => self.marks.push(id, self.output.len()),
                Pending::Silent(write) => {
                    write.outcome().await;
                }
                Pending::Write {
                    write,
                    answer,
                    ack_key,
                } => {
                    let (outcome, seq) = write.outcome_and_seq().await;
                    count::outcome(&self.shared.counters, &answer, &outcome);
                    self.note_access(&answer, &outcome);
                    let missed = super::replica_ack_missed(
                        self.cluster.as_deref(),
                        ack_key,
                        outcome.is_success(),
                        seq,
                    );
                    if missed.await {
                        let code = answer.opcode.code();
                        let failure =
                            render::failure(code, answer.opaque, super::REPLICA_ACK_MISSED);
                        failure.encode(&mut self.output);
                        continue;
                    }
                    render::outcome(&mut self.output, &answer, outcome);
                }
            }
        }
    }

    /// A touch or gat marks its item fetched (for `mg h l`), as the text
    /// commands do; a counter rewritten in place stays the same item.
    fn note_access(&self, answer: &Answer, outcome: &mcstore_storage::Outcome) {
        use mcstore_storage::Outcome;
        let access = &self.shared.access;
        match outcome {
            Outcome::Fetched(item) => {
                let record = &item.record;
                let now = self.store.now_secs();
                let written = record.version.timestamp.secs();
                access.observe(&answer.key, record.cas, written, now, true);
            }
            Outcome::Counter(result) if result.in_place => {
                access.renew_cas(&answer.key, result.old_cas, result.record.cas);
            }
            _ => {}
        }
    }

    /// `stat`: one response per statistic, then the empty end response;
    /// or "Not found" for a group memcached does not know.
    fn stat(&mut self, group: StatGroup, opaque: u32) {
        let report = StatsReport {
            store: &self.store,
            node: &self.node,
            shared: &self.shared,
            cluster: self.cluster.as_deref(),
        };
        let entries = match group {
            StatGroup::General => report.entries(Group::General),
            StatGroup::Settings => report.entries(Group::Settings),
            StatGroup::Reset => {
                self.shared.counters.reset();
                Vec::new()
            }
            // mcstore keeps no per-prefix statistics: there is nothing to
            // switch on or off.
            StatGroup::DetailOn | StatGroup::DetailOff => Vec::new(),
            StatGroup::DetailDump => vec![("detailed".to_string(), "END\r\n".to_string())],
            StatGroup::Other(key) => match &key[..] {
                b"store" => report.entries(Group::Store),
                b"cluster" => report.entries(Group::Cluster),
                // Groups memcached has that mean nothing without slabs.
                b"items" | b"slabs" | b"sizes" | b"sizes_enable" | b"sizes_disable" => Vec::new(),
                _ => {
                    let opcode = Opcode::Stat.code();
                    BinaryResponse::error(opcode, opaque, Status::KEY_NOT_FOUND)
                        .encode(&mut self.output);
                    return;
                }
            },
            other => {
                tracing::debug!(group = ?other, "unknown stat group");
                Vec::new()
            }
        };
        for (name, value) in entries {
            BinaryResponse::stat(opaque, Bytes::from(name), Bytes::from(value))
                .encode(&mut self.output);
        }
        BinaryResponse::stat_end(opaque).encode(&mut self.output);
    }

    fn sasl_list_mechanisms(&mut self, opcode: Opcode, opaque: u32) {
        if !self.sasl_enabled() {
            let response = BinaryResponse::error(opcode.code(), opaque, Status::UNKNOWN_COMMAND);
            self.literal(response);
            return;
        }
        self.authenticated = false;
        self.literal(BinaryResponse {
            opcode: opcode.code(),
            opaque,
            value: Bytes::from_static(PLAIN),
            ..BinaryResponse::default()
        });
    }

    fn sasl_auth(&mut self, opcode: Opcode, opaque: u32, auth: &SaslAuth) {
        let Some(passwords) = self.shared.auth.passwords.clone() else {
            let response = BinaryResponse::error(opcode.code(), opaque, Status::UNKNOWN_COMMAND);
            self.literal(response);
            return;
        };
        if auth.mechanism.len() > MAX_SASL_MECHANISM_LEN {
            let response = BinaryResponse::error(opcode.code(), opaque, Status::INVALID_ARGUMENTS);
            self.literal(response);
            return;
        }
        self.authenticated = false;
        // PLAIN is one step: a SASL step has nothing to continue.
        let accepted = !auth.step
            && auth.plain().is_some_and(|credentials| {
                (credentials.authzid.is_empty() || credentials.authzid == credentials.user)
                    && passwords.check(credentials.user, credentials.password)
            });
        let counters = &self.shared.counters;
        counters.auth_cmds.fetch_add(1, Ordering::Relaxed);
        if accepted {
            self.authenticated = true;
            self.literal(BinaryResponse {
                opcode: opcode.code(),
                opaque,
                value: Bytes::from_static(b"Authenticated"),
                ..BinaryResponse::default()
            });
        } else {
            counters.auth_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                mechanism_len = auth.mechanism.len(),
                "SASL authentication failed"
            );
            self.literal(BinaryResponse::error(
                opcode.code(),
                opaque,
                Status::AUTH_ERROR,
            ));
        }
    }
}

#[cfg(test)]
mod tests;
