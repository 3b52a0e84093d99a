//! The single writer: group commit, and every read-modify-write.
//!
//! One thread owns the write-ahead log. It takes everything queued (up to
//! `max_batch` operations), evaluates each against the current state (the
//! engine plus this batch's earlier changes), appends the resulting changes
//! to the log, makes them durable with one `fdatasync` (`--sync always`),
//! applies them to the engine (only now can readers see them) and answers
//! every operation of the batch. Because conditional commands (cas, add,
//! replace, append, prepend, incr, decr, touch, and the meta commands with
//! their stale and win-token marks) are evaluated here, in queue order, each
//! key is linearizable: of racing clients, exactly one wins a token.
//!
//! A failed `fdatasync` or engine write is never acknowledged: the batch is
//! answered with `SERVER_ERROR` and the writer refuses all later writes
//! until the node is restarted (after a failed fsync the page cache state is
//! unknown; replaying the log on start is the only safe recovery).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mcstore_protocol::exptime::Expiry;
use mcstore_protocol::{
    item_size, ExptimeChange, MetaArithmetic, MetaArithmeticMode, MetaDelete, MetaGet, MetaSet,
    StoreMode,
};

use crate::clock::Clock;
use crate::engine::{Change, Checkpoint, Engine};
use crate::flush::FlushMarkers;
use crate::handoff::{Completer, Queue, Taken};
use crate::record::{Record, MARK_BINARY_KEY, MARK_STALE, MARK_TOKEN_SENT};
use crate::stats::Shared;
use crate::wal::{Accounting, Wal};

/// When writes become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// `fdatasync` each batch before answering it: an acknowledged write
    /// survives a crash or power loss, and no reader sees a write before it
    /// is durable.
    Always,
    /// Answer at once; `fdatasync` every `--sync-interval-ms`. A crash of the
    /// process loses nothing (the log is written before the answer); power
    /// loss can lose the last interval.
    Periodic,
    /// Never `fdatasync` the log; durability is left to the engine's
    /// checkpoints. A process crash loses nothing; power loss can lose
    /// everything since the last checkpoint.
    None,
}

impl SyncMode {
    /// The name used on the command line and in stats.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Periodic => "periodic",
            SyncMode::None => "none",
        }
    }
}

/// A write operation, as connections submit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// set/add/replace/append/prepend/cas.
    Store {
        /// Which command.
        mode: StoreMode,
        /// The key.
        key: Bytes,
        /// Client flags.
        flags: u32,
        /// Exptime as sent.
        exptime: i32,
        /// The data.
        value: Bytes,
    },
    /// delete.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// incr/decr.
    Arithmetic {
        /// The key.
        key: Bytes,
        /// incr (true) or decr.
        increment: bool,
        /// The amount.
        delta: u64,
    },
    /// touch (`return_item == false`) or one key of gat/gats.
    Touch {
        /// The key.
        key: Bytes,
        /// New exptime as sent.
        exptime: i32,
        /// Answer with the item (gat) instead of `TOUCHED`.
        return_item: bool,
    },
    /// flush_all.
    FlushAll {
        /// Delay as sent.
        delay: i32,
    },
    /// Remove whatever the key holds (a `set` over the size limit).
    Remove {
        /// The key.
        key: Bytes,
    },
    /// An `mg` that may change its item: touch (`T`), vivify (`N`), recache
    /// (`R`), or hand the win token of a stale item to this client.
    MetaGet(MetaGet),
    /// `ms`, every mode, with the stale (`I`) compare-and-swap.
    MetaSet(MetaSet),
    /// `md`: delete, or (`I`) mark stale.
    MetaDelete(MetaDelete),
    /// `ma`: increment or decrement, maybe creating the item (`N`).
    MetaArithmetic(MetaArithmetic),
    /// Reclaim the space of a dead item if it is still the same dead item.
    Reclaim {
        /// The key.
        key: Bytes,
        /// The version the reclaimer saw.
        version: u64,
    },
}

/// The writer's answer to one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND` (or a gat miss).
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
    Touched,
    /// `OK` (flush_all; also removals and reclaims, which send no reply).
    Ok,
    /// incr/decr result.
    Number(u64),
    /// incr/decr on a value that is not a number.
    NonNumeric,
    /// gat hit: the item after the touch.
    Item(Record),
    /// `md <key> I`: the item was marked stale and got a new cas unique.
    Invalidated {
        /// The cas unique before.
        old_cas: u64,
        /// The new cas unique.
        new_cas: u64,
    },
    /// `mg` hit (or vivified item): the item after the request.
    MetaItem(MetaItem),
    /// `ms` stored; the new cas unique and the stored value's size.
    MetaStored {
        /// The stored item's cas unique.
        cas: u64,
        /// Bytes of the stored value (after append/prepend: the whole).
        size: u64,
    },
    /// `ma` succeeded (or created the item).
    Counter {
        /// The new value.
        number: u64,
        /// The item after the request.
        record: Record,
        /// The item's expiry after the delta and before `T`/`N` applied
        /// (what a `t` before them reports).
        expiry_before: Expiry,
        /// The item was created by `N`.
        created: bool,
        /// The writer's unix time.
        now: u64,
    },
    /// The operation failed; the text follows `SERVER_ERROR `.
    Failed(String),
}

/// What an `mg` found or created, for its reply flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaItem {
    /// The item after the request.
    pub record: Record,
    /// The item's marks before the request (`Z` reports a token sent before).
    pub marks_before: u8,
    /// The item's expiry before the request.
    pub expiry_before: Expiry,
    /// The item was created by `N`.
    pub created: bool,
    /// This request won the win token (`W`).
    pub won: bool,
    /// The unix time the request was evaluated at.
    pub now: u64,
}

impl MetaItem {
    /// An item read without changing it.
    pub fn unchanged(record: Record, now: u64) -> MetaItem {
        MetaItem {
            marks_before: record.marks,
            expiry_before: record.expiry,
            record,
            created: false,
            won: false,
            now,
        }
    }

    /// Whether an `mg` reading `record` must go through the writer: the item
    /// is stale and nobody holds its win token yet, so this read wins it.
    pub fn read_would_win(record: &Record) -> bool {
        record.has(MARK_STALE) && !record.has(MARK_TOKEN_SENT)
    }
}

/// The expiry an exptime change leaves (`Unchanged`: `current`).
pub fn changed_expiry(change: ExptimeChange, current: Expiry, now: u64) -> Expiry {
    match change {
        ExptimeChange::Unchanged => current,
        ExptimeChange::Touch(exptime) | ExptimeChange::Vivify(exptime) => {
            Expiry::from_exptime(i64::from(exptime), now)
        }
    }
}

/// An operation with its reply channel.
pub struct Submission {
    /// The operation.
    pub op: WriteOp,
    /// Where the answer goes.
    pub completer: Completer<WriteOutcome>,
}

/// What the writer needs to know about the node's configuration.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// When to fdatasync.
    pub sync: SyncMode,
    /// For `SyncMode::Periodic`.
    pub sync_interval: Duration,
    /// Most operations in one group commit.
    pub max_batch: usize,
    /// Item size limit (append/prepend cannot grow an item past it).
    pub max_item_size: usize,
}

/// The state of one key as the writer sees it.
#[derive(Clone)]
struct Slot {
    /// The record, if a readable one is stored (possibly expired or flushed).
    record: Option<Record>,
    /// Whether anything is stored, readable or not.
    present: bool,
    /// Why the stored bytes are unreadable, if they are.
    corrupt: Option<String>,
    /// Accounted size of what is stored (0 if nothing).
    size: u64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        record: None,
        present: false,
        corrupt: None,
        size: 0,
    };

    /// The slot, or an error if its stored bytes are unreadable: for the
    /// commands that need the old item.
    fn readable(self) -> Result<Slot, String> {
        match &self.corrupt {
            Some(reason) => Err(format!("stored item is corrupt ({reason})")),
            None => Ok(self),
        }
    }
}

/// The writer thread's state.
pub struct Writer<E: Engine> {
    engine: Arc<E>,
    wal: Wal,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
    checkpoint: Checkpoint,
    next_cas: u64,
    last_version: u64,
    failure: Option<String>,
    last_sync: Instant,
}

/// Changes of the batch being built, and the per-key state they produce.
#[derive(Default)]
struct Batch {
    overlay: HashMap<Bytes, Slot>,
    changes: Vec<Change>,
    accounting: Vec<Accounting>,
    flush: Option<FlushMarkers>,
}

impl<E: Engine> Writer<E> {
    /// A writer continuing from `checkpoint` (as recovered) with `wal`.
    pub fn new(
        engine: Arc<E>,
        wal: Wal,
        shared: Arc<Shared>,
        clock: Arc<dyn Clock>,
        config: WriterConfig,
        checkpoint: Checkpoint,
    ) -> Writer<E> {
        // Uniques never repeat: continue past the highest one ever logged,
        // and past the wall clock in microseconds, so that even writes lost
        // to power loss in the weaker sync modes cannot be reissued.
        let next_cas = (checkpoint.cas_high + 1).max(clock.now_nanos() / 1_000);
        Writer {
            engine,
            wal,
            shared,
            clock,
            config,
            checkpoint,
            next_cas,
            last_version: checkpoint.version_high,
            failure: None,
            last_sync: Instant::now(),
        }
    }

    /// Serves the queue until it is closed and drained, then makes the log
    /// durable.
    pub fn run(mut self, queue: &Queue<Submission>) {
        let mut submissions = Vec::with_capacity(self.config.max_batch);
        let idle = match self.config.sync {
            SyncMode::Periodic => Some(self.config.sync_interval),
            _ => Some(Duration::from_secs(1)),
        };
        loop {
            match queue.take_batch(self.config.max_batch, &mut submissions, idle) {
                Taken::Items => self.commit(&mut submissions),
                Taken::Idle => {}
                Taken::Closed => break,
            }
            self.maybe_periodic_sync();
        }
        if let Err(err) = self.wal.sync() {
            tracing::error!(cause = %err, "final write-ahead log sync failed");
        }
    }

    fn maybe_periodic_sync(&mut self) {
        if self.config.sync != SyncMode::Periodic
            || !self.wal.has_unsynced()
            || self.last_sync.elapsed() < self.config.sync_interval
        {
            return;
        }
        self.sync_log();
    }

    fn sync_log(&mut self) -> bool {
        let started = Instant::now();
        let result = self.wal.sync();
        self.last_sync = Instant::now();
        self.shared.store.record_fsync(started.elapsed());
        match result {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(cause = %err, "fdatasync of the write-ahead log failed; refusing writes until restart");
                self.failure = Some(format!("write-ahead log sync failed: {err}"));
                false
            }
        }
    }

    /// Evaluates, logs, syncs, applies and answers one batch.
    fn commit(&mut self, submissions: &mut Vec<Submission>) {
        if let Some(failure) = &self.failure {
            for submission in submissions.drain(..) {
                submission
                    .completer
                    .complete(WriteOutcome::Failed(failure.clone()));
            }
            return;
        }
        let mut batch = Batch::default();
        let mut outcomes = Vec::with_capacity(submissions.len());
        for submission in submissions.iter() {
            let outcome = match self.evaluate(&submission.op, &mut batch) {
                Ok(outcome) => outcome,
                Err(message) => WriteOutcome::Failed(message),
            };
            outcomes.push(outcome);
        }
        if !batch.changes.is_empty() {
            if let Err(message) = self.persist(&batch) {
                self.failure = Some(message.clone());
                for submission in submissions.drain(..) {
                    submission
                        .completer
                        .complete(WriteOutcome::Failed(message.clone()));
                }
                return;
            }
        }
        self.shared.store.record_batch(submissions.len());
        for (submission, outcome) in submissions.drain(..).zip(outcomes) {
            submission.completer.complete(outcome);
        }
    }

    fn persist(&mut self, batch: &Batch) -> Result<(), String> {
        let last_seq = self
            .wal
            .append(batch.changes.iter().zip(batch.accounting.iter().copied()))
            .map_err(|err| format!("write-ahead log append failed: {err}"))?;
        if self.config.sync == SyncMode::Always && !self.sync_log() {
            return Err(self.failure.clone().unwrap_or_default());
        }
        let mut checkpoint = self.checkpoint;
        for accounting in &batch.accounting {
            checkpoint.items = checkpoint.items.saturating_add_signed(accounting.items);
            checkpoint.bytes = checkpoint.bytes.saturating_add_signed(accounting.bytes);
        }
        checkpoint.applied_seq = last_seq;
        checkpoint.cas_high = self.next_cas - 1;
        checkpoint.version_high = self.last_version;
        if let Some(flush) = batch.flush {
            checkpoint.flush = flush;
        }
        self.engine
            .apply(&batch.changes, &checkpoint)
            .map_err(|err| format!("engine write failed: {err}"))?;
        self.checkpoint = checkpoint;
        self.shared.publish(&checkpoint);
        Ok(())
    }

    fn new_cas(&mut self) -> u64 {
        let cas = self.next_cas;
        self.next_cas += 1;
        cas
    }

    /// The cas unique of a new item: `E<cas>` when sent (newer than 1.6.18;
    /// like memcached it takes no number from the counter, and what is
    /// known about the key's accesses is forgotten, since the new item may
    /// carry the old one's cas), else the next one.
    fn explicit_cas(&mut self, key: &Bytes, explicit: Option<u64>) -> u64 {
        match explicit {
            Some(cas) => {
                self.shared.access.forget(key);
                cas
            }
            None => self.new_cas(),
        }
    }

    fn new_version(&mut self) -> u64 {
        self.last_version = (self.last_version + 1).max(self.clock.now_nanos());
        self.last_version
    }

    fn flush_markers(&self, batch: &Batch) -> FlushMarkers {
        batch.flush.unwrap_or(self.checkpoint.flush)
    }

    /// The key's current state: this batch's last change, else the engine.
    /// An unreadable record is reported in the slot (a `set` or `delete`
    /// may replace it; commands that need the old item refuse it).
    fn slot(&self, key: &Bytes, batch: &Batch) -> Result<Slot, String> {
        if let Some(slot) = batch.overlay.get(key) {
            return Ok(slot.clone());
        }
        let stored = self
            .engine
            .get(key)
            .map_err(|err| format!("engine read failed: {err}"))?;
        let Some(bytes) = stored else {
            return Ok(Slot::EMPTY);
        };
        let bytes = bytes.as_ref();
        let size = (key.len() + bytes.len()) as u64;
        Ok(match Record::decode(key, bytes) {
            Ok(record) => Slot {
                record: Some(record),
                present: true,
                corrupt: None,
                size,
            },
            Err(err) => {
                self.shared.note_corrupt_record(key, &err);
                Slot {
                    record: None,
                    present: true,
                    corrupt: Some(err.to_string()),
                    size,
                }
            }
        })
    }

    /// The key's readable slot and its live record, if any: for the commands
    /// that need the old item (an unreadable record is an error for them).
    fn live_slot(&self, key: &Bytes, batch: &Batch) -> Result<(Slot, Option<Record>), String> {
        let slot = self.slot(key, batch)?.readable()?;
        let live = self.live(&slot, batch);
        Ok((slot, live))
    }

    /// The live record under `key`, if any (not expired, not flushed).
    fn live(&self, slot: &Slot, batch: &Batch) -> Option<Record> {
        let now = self.clock.now_secs();
        let flush = self.flush_markers(batch);
        slot.record
            .as_ref()
            .filter(|record| !record.expiry.is_expired(now) && !flush.hides(record.version, now))
            .cloned()
    }

    fn put(&mut self, key: &Bytes, record: Record, slot: &Slot, batch: &mut Batch) {
        let now = self.clock.now_secs();
        if record.expiry.is_expired(now) {
            // Stored and at once invisible, as memcached does; keep no bytes.
            self.remove(key, slot, batch);
            return;
        }
        if record.expiry != Expiry::Never {
            self.shared
                .store
                .expiring_writes
                .fetch_add(1, Ordering::Relaxed);
        }
        let encoded = Bytes::from(record.encode(key));
        let size = (key.len() + encoded.len()) as u64;
        batch.accounting.push(Accounting {
            items: i64::from(!slot.present),
            bytes: size as i64 - slot.size as i64,
        });
        batch.changes.push(Change::Put {
            key: key.clone(),
            record: encoded,
        });
        batch.overlay.insert(
            key.clone(),
            Slot {
                record: Some(record),
                present: true,
                corrupt: None,
                size,
            },
        );
    }

    fn remove(&mut self, key: &Bytes, slot: &Slot, batch: &mut Batch) {
        if !slot.present {
            return;
        }
        batch.accounting.push(Accounting {
            items: -1,
            bytes: -(slot.size as i64),
        });
        batch.changes.push(Change::Delete { key: key.clone() });
        batch.overlay.insert(key.clone(), Slot::EMPTY);
    }

    fn evaluate(&mut self, op: &WriteOp, batch: &mut Batch) -> Result<WriteOutcome, String> {
        let now = self.clock.now_secs();
        match op {
            WriteOp::Store {
                mode,
                key,
                flags,
                exptime,
                value,
            } => {
                let slot = self.slot(key, batch)?;
                let slot = if *mode == StoreMode::Set {
                    slot
                } else {
                    slot.readable()?
                };
                let live = self.live(&slot, batch);
                let record = |writer: &mut Self, flags, expiry, value| Record {
                    flags,
                    expiry,
                    cas: writer.new_cas(),
                    version: writer.new_version(),
                    marks: 0,
                    value,
                };
                let expiry = Expiry::from_exptime(i64::from(*exptime), now);
                let new = match (mode, &live) {
                    (StoreMode::Add, Some(_)) | (StoreMode::Replace, None) => {
                        return Ok(WriteOutcome::NotStored)
                    }
                    (StoreMode::Append | StoreMode::Prepend, None) => {
                        return Ok(WriteOutcome::NotStored)
                    }
                    (StoreMode::Cas(_), None) => return Ok(WriteOutcome::NotFound),
                    (StoreMode::Cas(unique), Some(old)) if *unique == 0 || *unique != old.cas => {
                        return Ok(WriteOutcome::Exists)
                    }
                    (StoreMode::Append | StoreMode::Prepend, Some(old)) => {
                        let combined = old.value.len() + value.len();
                        if item_size(key.len(), old.flags, combined)
                            > self.config.max_item_size as u64
                        {
                            return Ok(WriteOutcome::NotStored);
                        }
                        let mut joined = BytesMut::with_capacity(combined);
                        if *mode == StoreMode::Append {
                            joined.extend_from_slice(&old.value);
                            joined.extend_from_slice(value);
                        } else {
                            joined.extend_from_slice(value);
                            joined.extend_from_slice(&old.value);
                        }
                        record(self, old.flags, old.expiry, joined.freeze())
                    }
                    _ => record(self, *flags, expiry, value.clone()),
                };
                self.put(key, new, &slot, batch);
                Ok(WriteOutcome::Stored)
            }
            WriteOp::Delete { key } => {
                let slot = self.slot(key, batch)?;
                if slot.corrupt.is_none() && self.live(&slot, batch).is_none() {
                    return Ok(WriteOutcome::NotFound);
                }
                self.remove(key, &slot, batch);
                Ok(WriteOutcome::Deleted)
            }
            WriteOp::Arithmetic {
                key,
                increment,
                delta,
            } => {
                let (slot, old) = self.live_slot(key, batch)?;
                let Some(old) = old else {
                    return Ok(WriteOutcome::NotFound);
                };
                let Some((next, value)) = counter_step(&old.value, *increment, *delta) else {
                    return Ok(WriteOutcome::NonNumeric);
                };
                let (in_place, marks) = counter_rewrite(&old, &value);
                let new = Record {
                    cas: self.new_cas(),
                    version: self.new_version(),
                    marks,
                    value,
                    ..old
                };
                if in_place {
                    self.shared.access.renew_cas(key, old.cas, new.cas);
                }
                self.put(key, new, &slot, batch);
                Ok(WriteOutcome::Number(next))
            }
            WriteOp::Touch {
                key,
                exptime,
                return_item,
            } => {
                let (slot, old) = self.live_slot(key, batch)?;
                let Some(old) = old else {
                    return Ok(WriteOutcome::NotFound);
                };
                // A touch keeps the cas unique, as in memcached.
                let new = Record {
                    expiry: Expiry::from_exptime(i64::from(*exptime), now),
                    version: self.new_version(),
                    ..old
                };
                self.put(key, new.clone(), &slot, batch);
                Ok(if *return_item {
                    WriteOutcome::Item(new)
                } else {
                    WriteOutcome::Touched
                })
            }
            WriteOp::FlushAll { delay } => {
                let latest = self.new_version();
                let markers = self.flush_markers(batch).after_flush(*delay, now, latest);
                batch.flush = Some(markers);
                batch.changes.push(Change::Flush(markers));
                batch.accounting.push(Accounting::default());
                Ok(WriteOutcome::Ok)
            }
            WriteOp::Remove { key } => {
                let slot = self.slot(key, batch)?;
                self.remove(key, &slot, batch);
                Ok(WriteOutcome::Ok)
            }
            WriteOp::MetaGet(get) => self.meta_get(get, batch),
            WriteOp::MetaSet(set) => self.meta_set(set, batch),
            WriteOp::MetaDelete(delete) => self.meta_delete(delete, batch),
            WriteOp::MetaArithmetic(arith) => self.meta_arithmetic(arith, batch),
            WriteOp::Reclaim { key, version } => {
                let slot = self.slot(key, batch)?;
                let same_dead_item = slot
                    .record
                    .as_ref()
                    .is_some_and(|record| record.version == *version)
                    && self.live(&slot, batch).is_none();
                if same_dead_item {
                    self.remove(key, &slot, batch);
                }
                Ok(WriteOutcome::Ok)
            }
        }
    }
}

impl<E: Engine> Writer<E> {
    fn meta_get(&mut self, get: &MetaGet, batch: &mut Batch) -> Result<WriteOutcome, String> {
        let now = self.clock.now_secs();
        let (slot, live) = self.live_slot(&get.key, batch)?;
        let (old, created) = match live {
            Some(record) => (record, false),
            None if get.vivify.is_some() => {
                let record = Record {
                    flags: 0,
                    expiry: Expiry::Never,
                    cas: self.explicit_cas(&get.key, get.new_cas),
                    version: self.new_version(),
                    marks: 0,
                    value: Bytes::new(),
                };
                (record, true)
            }
            None => return Ok(WriteOutcome::NotFound),
        };
        let token_sent = old.has(MARK_TOKEN_SENT);
        let recache_against = match get.recache_compares_with() {
            Some(touch) => Expiry::from_exptime(i64::from(touch), now),
            None => old.expiry,
        };
        let recache_wins = get.recache.is_some_and(|recache| {
            match (
                recache_against,
                Expiry::from_exptime(i64::from(recache), now),
            ) {
                (Expiry::At(at), Expiry::At(limit)) => !created && !token_sent && at < limit,
                _ => false,
            }
        });
        let won = created || recache_wins || (old.has(MARK_STALE) && !token_sent);
        let expiry = changed_expiry(get.exptime(created, false), old.expiry, now);
        let marks = if won {
            old.marks | MARK_TOKEN_SENT
        } else {
            old.marks
        };
        let changed = created || expiry != old.expiry || marks != old.marks;
        let record = Record {
            expiry,
            marks,
            version: if changed && !created {
                self.new_version()
            } else {
                old.version
            },
            ..old.clone()
        };
        if changed {
            self.put(&get.key, record.clone(), &slot, batch);
        }
        Ok(WriteOutcome::MetaItem(MetaItem {
            record,
            marks_before: if created { 0 } else { old.marks },
            expiry_before: if created { Expiry::Never } else { old.expiry },
            created,
            won,
            now,
        }))
    }

    fn meta_set(&mut self, set: &MetaSet, batch: &mut Batch) -> Result<WriteOutcome, String> {
        let now = self.clock.now_secs();
        let mode = set.store_mode();
        let key = &set.key;
        let slot = self.slot(key, batch)?;
        let slot = if mode == StoreMode::Set {
            slot
        } else {
            slot.readable()?
        };
        let live = self.live(&slot, batch);
        let key_mark = if set.base64_key { MARK_BINARY_KEY } else { 0 };
        let mut flags = set.flags;
        let mut expiry = Expiry::from_exptime(i64::from(set.ttl.unwrap_or(0)), now);
        let mut marks = key_mark;
        let mut value = set.value.clone();
        match (mode, &live) {
            // `N` in append/prepend mode (newer than 1.6.18): a miss stores
            // the data as a new item with the `N` exptime, whatever `C`.
            (StoreMode::Append | StoreMode::Prepend, None) if set.vivify.is_some() => {
                let exptime = set.vivify.unwrap_or(0);
                expiry = Expiry::from_exptime(i64::from(exptime), now);
            }
            (StoreMode::Add, Some(_))
            | (StoreMode::Replace, None)
            | (StoreMode::Append | StoreMode::Prepend, None) => return Ok(WriteOutcome::NotStored),
            (StoreMode::Cas(_), None) => return Ok(WriteOutcome::NotFound),
            (StoreMode::Cas(unique), Some(old)) => {
                if unique == 0 {
                    return Ok(WriteOutcome::Exists);
                }
                if unique != old.cas {
                    if !(set.invalidate && unique < old.cas) {
                        return Ok(WriteOutcome::Exists);
                    }
                    // A stale value: keeps the TTL, is marked stale and
                    // keeps a win token already handed out.
                    expiry = old.expiry;
                    marks |= MARK_STALE | (old.marks & MARK_TOKEN_SENT);
                }
            }
            (StoreMode::Append | StoreMode::Prepend, Some(old)) => {
                if set
                    .compare_cas
                    .is_some_and(|cas| cas != 0 && cas != old.cas)
                {
                    return Ok(WriteOutcome::Exists);
                }
                let combined = old.value.len() + value.len();
                if item_size(key.len(), old.flags, combined) > self.config.max_item_size as u64 {
                    return Ok(WriteOutcome::NotStored);
                }
                let mut joined = BytesMut::with_capacity(combined);
                if mode == StoreMode::Append {
                    joined.extend_from_slice(&old.value);
                    joined.extend_from_slice(&value);
                } else {
                    joined.extend_from_slice(&value);
                    joined.extend_from_slice(&old.value);
                }
                value = joined.freeze();
                flags = old.flags;
                expiry = old.expiry;
                // memcached builds a new item: no marks carry over.
                marks = 0;
            }
            _ => {}
        }
        let record = Record {
            flags,
            expiry,
            cas: self.explicit_cas(key, set.new_cas),
            version: self.new_version(),
            marks,
            value,
        };
        let cas = record.cas;
        let size = record.value.len() as u64;
        self.put(key, record, &slot, batch);
        Ok(WriteOutcome::MetaStored { cas, size })
    }

    fn meta_delete(
        &mut self,
        delete: &MetaDelete,
        batch: &mut Batch,
    ) -> Result<WriteOutcome, String> {
        let now = self.clock.now_secs();
        let key = &delete.key;
        let slot = self.slot(key, batch)?;
        let plain = !delete.invalidate && !delete.remove_value && delete.compare_cas.is_none();
        if plain && slot.corrupt.is_some() {
            self.remove(key, &slot, batch);
            return Ok(WriteOutcome::Deleted);
        }
        let slot = slot.readable()?;
        let Some(old) = self.live(&slot, batch) else {
            return Ok(WriteOutcome::NotFound);
        };
        if delete.compare_cas.is_some_and(|cas| cas != old.cas) {
            return Ok(WriteOutcome::Exists);
        }
        // `x` (newer than 1.6.18): the item is replaced by an empty one, as
        // memcached stores its tombstone with `set`: the `F` flags, the `T`
        // exptime (none without `T`), the old cas unless `E`, no marks.
        let old = if delete.remove_value {
            let tombstone = Record {
                flags: delete.flags,
                expiry: Expiry::from_exptime(i64::from(delete.ttl.unwrap_or(0)), now),
                cas: delete.new_cas.unwrap_or(old.cas),
                version: self.new_version(),
                marks: 0,
                value: Bytes::new(),
            };
            self.shared.access.forget(key);
            if !delete.invalidate {
                self.put(key, tombstone, &slot, batch);
                return Ok(WriteOutcome::Deleted);
            }
            tombstone
        } else {
            old
        };
        if !delete.invalidate {
            self.remove(key, &slot, batch);
            return Ok(WriteOutcome::Deleted);
        }
        let expiry = match delete.ttl {
            Some(exptime) => Expiry::from_exptime(i64::from(exptime), now),
            None => old.expiry,
        };
        let record = Record {
            expiry,
            marks: (old.marks | MARK_STALE) & !MARK_TOKEN_SENT,
            cas: match delete.new_cas {
                Some(cas) => cas,
                None => self.new_cas(),
            },
            version: self.new_version(),
            ..old
        };
        let (old_cas, new_cas) = (old.cas, record.cas);
        self.put(key, record, &slot, batch);
        Ok(WriteOutcome::Invalidated { old_cas, new_cas })
    }

    fn meta_arithmetic(
        &mut self,
        arith: &MetaArithmetic,
        batch: &mut Batch,
    ) -> Result<WriteOutcome, String> {
        let now = self.clock.now_secs();
        let key = &arith.key;
        let (slot, live) = self.live_slot(key, batch)?;
        let (number, record, created) = match live {
            None => {
                if arith.vivify.is_none() {
                    return Ok(WriteOutcome::NotFound);
                }
                let record = Record {
                    flags: 0,
                    expiry: Expiry::Never,
                    cas: self.explicit_cas(key, arith.new_cas),
                    version: self.new_version(),
                    marks: 0,
                    value: Bytes::from(arith.initial.to_string()),
                };
                (arith.initial, record, true)
            }
            Some(old) => {
                if arith
                    .compare_cas
                    .is_some_and(|cas| cas != 0 && cas != old.cas)
                {
                    return Ok(WriteOutcome::Exists);
                }
                let increment = arith.mode == MetaArithmeticMode::Increment;
                let Some((next, value)) = counter_step(&old.value, increment, arith.delta) else {
                    return Ok(WriteOutcome::NonNumeric);
                };
                let (in_place, marks) = counter_rewrite(&old, &value);
                // Like memcached, the update takes the next cas unique even
                // when `E` then overrides it.
                let counted = self.new_cas();
                let cas = match arith.new_cas {
                    Some(cas) if !in_place => self.explicit_cas(key, Some(cas)),
                    Some(cas) => cas,
                    None => counted,
                };
                let record = Record {
                    cas,
                    version: self.new_version(),
                    marks,
                    value,
                    ..old
                };
                if in_place {
                    self.shared.access.renew_cas(key, old.cas, record.cas);
                }
                (next, record, false)
            }
        };
        let expiry_before = record.expiry;
        let record = Record {
            expiry: changed_expiry(arith.exptime(created, false), record.expiry, now),
            ..record
        };
        self.put(key, record.clone(), &slot, batch);
        Ok(WriteOutcome::Counter {
            number,
            record,
            expiry_before,
            created,
            now,
        })
    }
}

/// How memcached stores a counter's new number: in place, keeping the item's
/// stale/win marks, when it has the old value's length; else as a new item
/// without them. Returns whether it is in place, and the marks to keep.
fn counter_rewrite(old: &Record, new_value: &[u8]) -> (bool, u8) {
    let in_place = new_value.len() == old.value.len();
    (in_place, if in_place { old.marks } else { 0 })
}

/// Reads a counter the way memcached's incr does (`strtoull` over the data,
/// which in memcached is followed by `\r\n` and may end early at a NUL).
fn parse_counter(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let text = match memchr_nul(value) {
        Some(nul) => &value[..nul],
        None => value,
    };
    mcstore_protocol::number::parse_u64(text)
}

fn memchr_nul(value: &[u8]) -> Option<usize> {
    value.iter().position(|&b| b == 0)
}

/// One incr/decr step on a stored value: the new number and its stored
/// form, or `None` if the value is not a number. incr wraps at 2^64, decr
/// stops at 0.
fn counter_step(value: &[u8], increment: bool, delta: u64) -> Option<(u64, Bytes)> {
    let current = parse_counter(value)?;
    let next = if increment {
        current.wrapping_add(delta)
    } else {
        current.saturating_sub(delta)
    };
    Some((next, counter_value(next, value.len())))
}

/// The stored form of an incr/decr result: memcached rewrites the item in
/// place, padding with spaces, when the number fits in the old length.
fn counter_value(number: u64, old_len: usize) -> Bytes {
    let digits = number.to_string();
    if digits.len() <= old_len {
        let mut padded = digits.into_bytes();
        padded.resize(old_len, b' ');
        Bytes::from(padded)
    } else {
        Bytes::from(digits.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_like_strtoull_over_the_item() {
        assert_eq!(parse_counter(b"12"), Some(12));
        assert_eq!(parse_counter(b" 12"), Some(12));
        assert_eq!(parse_counter(b"12 "), Some(12));
        assert_eq!(parse_counter(b"1 2"), Some(1));
        assert_eq!(parse_counter(b"12\0junk"), Some(12));
        assert_eq!(parse_counter(b"12a"), None);
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"-1"), None);
        assert_eq!(parse_counter(b"18446744073709551616"), None);
    }

    #[test]
    fn shrinking_counters_are_padded_in_place() {
        assert_eq!(counter_value(5, 3), Bytes::from_static(b"5  "));
        assert_eq!(counter_value(100, 2), Bytes::from_static(b"100"));
    }
}
