//! memcached's admin commands that mcstore answers as memcached does
//! (`watch`, `slabs automove`, `slabs reassign`), and what a `watch`er is
//! told about each request (see [`crate::watch`]).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use mcstore_protocol::request::{Slabs, Watch};
use mcstore_protocol::Reply;
use mcstore_storage::ops::{Operation, Outcome, StoreMode};
use mcstore_storage::{Expiry, Lookup};

use super::{Next, Session};
use crate::watch::{FetchStatus, StoreEvent, StoreStatus, WatchFlags};

/// What a write's `watch` lines need from before it ran.
pub(crate) struct WatchNote {
    key: Bytes,
    /// The live item's expiry before the write, if there was one.
    expiry_before: Option<Expiry>,
    /// For storage commands: what the `item_store` line says.
    store: Option<StoreNote>,
}

struct StoreNote {
    command: &'static str,
    expiry: Expiry,
    value_len: u64,
    /// append/prepend keep the old item's expiry.
    keeps_expiry: bool,
}

fn fetch_status(lookup: &Lookup) -> (FetchStatus, usize) {
    match lookup {
        Lookup::Hit(record) => (FetchStatus::Found, record.value.len()),
        Lookup::Miss => (FetchStatus::NotFound, 0),
        Lookup::Expired => (FetchStatus::Expired, 0),
        Lookup::Flushed => (FetchStatus::Flushed, 0),
    }
}

fn command_name(mode: StoreMode) -> &'static str {
    match mode {
        StoreMode::Set => "set",
        StoreMode::Add => "add",
        StoreMode::Replace => "replace",
        StoreMode::Append => "append",
        StoreMode::Prepend => "prepend",
        StoreMode::Cas(_) => "cas",
    }
}

fn seconds_left(expiry: Expiry, now: u64) -> u64 {
    match expiry {
        Expiry::Never => 0,
        Expiry::At(at) => at.saturating_sub(now),
    }
}

impl Session {
    /// `watch ...`: checks as memcached does (nothing may be queued before
    /// it, only known event classes), then hands the connection over.
    pub(super) async fn watch(&mut self, watch: Watch) -> Next {
        self.resolve_pending().await;
        if !self.output.is_empty() {
            if !watch.noreply {
                Reply::ErrorMessage(" cannot pipeline other commands before watch".into())
                    .encode(&mut self.output);
            }
            return Next::Continue;
        }
        match WatchFlags::parse(watch.words.iter().map(|w| &w[..])) {
            Some(flags) => Next::Watch(flags),
            None => {
                if !watch.noreply {
                    Reply::Error.encode(&mut self.output);
                }
                Next::Continue
            }
        }
    }

    /// `slabs automove <0|1|2>` is recorded (there are no slabs to move);
    /// `slabs reassign` is refused as memcached refuses it when slab
    /// reassignment is off, which `stats settings` reports.
    pub(super) async fn slabs(&mut self, slabs: Slabs) {
        let (reply, noreply) = match slabs {
            Slabs::Automove { level, noreply } => {
                self.shared.slab_automove.store(level, Ordering::Relaxed);
                (Reply::Ok, noreply)
            }
            Slabs::AutomoveRatio { noreply, .. } => (Reply::Ok, noreply),
            Slabs::Reassign { .. } => (Reply::client_error("slab reassignment disabled"), false),
        };
        if !noreply {
            self.reply(reply).await;
        }
    }

    /// Tells fetch watchers about a lookup of `key`.
    pub(super) fn watch_lookup(&self, key: &[u8], lookup: &Lookup) {
        let watchers = &self.shared.watchers;
        if watchers.wants_fetches() {
            let (status, size) = fetch_status(lookup);
            watchers.fetch(key, status, size, self.client_fd);
        }
    }

    /// Before a write while someone watches: reports the lookup the command
    /// makes of its key and notes what its `item_store` line will need.
    pub(super) fn watch_before(&self, op: &Operation) -> Option<WatchNote> {
        let (key, store) = match op {
            Operation::Store(store) => (
                &store.key,
                Some(StoreNote {
                    command: command_name(store.mode),
                    expiry: store.expiry,
                    value_len: store.value.len() as u64,
                    keeps_expiry: matches!(store.mode, StoreMode::Append | StoreMode::Prepend),
                }),
            ),
            Operation::Delete(delete) => (&delete.key, None),
            Operation::Counter(counter) => (&counter.key, None),
            Operation::Fetch(fetch) => (&fetch.key, None),
            _ => return None,
        };
        let lookup = self.store.get(key).unwrap_or(Lookup::Miss);
        self.watch_lookup(key, &lookup);
        let expiry_before = match &lookup {
            Lookup::Hit(record) => Some(record.expiry),
            _ => None,
        };
        Some(WatchNote {
            key: key.clone(),
            expiry_before,
            store,
        })
    }

    /// After a write while someone watches: the `item_store` line of a
    /// storage command.
    pub(super) fn watch_after(&self, note: WatchNote, outcome: &Outcome) {
        let Some(store) = note.store else {
            return;
        };
        let (status, size) = match outcome {
            Outcome::Stored { size, .. } => (StoreStatus::Stored, *size),
            Outcome::Exists => (StoreStatus::Exists, store.value_len),
            Outcome::NotFound => (StoreStatus::NotFound, store.value_len),
            _ => (StoreStatus::NotStored, store.value_len),
        };
        let expiry = match (status, store.keeps_expiry, note.expiry_before) {
            (StoreStatus::Stored, true, Some(before)) => before,
            _ => store.expiry,
        };
        let event = StoreEvent {
            status,
            command: store.command,
            ttl: seconds_left(expiry, self.store.now_secs()),
            size,
        };
        self.shared.watchers.store(&note.key, event, self.client_fd);
    }
}
