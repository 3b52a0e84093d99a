//! The semantics of every write: what each operation does to a key,
//! evaluated over a [`Txn`] in queue order by the commit pipeline.
//!
//! These are the storage layer's own operations, not the wire's commands:
//! the server lowers text and meta commands into them (a text `set` and an
//! `ms` are both a [`StoreOp`], `incr` and `ma` a [`CounterOp`], `touch`,
//! `gat` and the `mg`s that change their item a [`FetchOp`]), and renders
//! the [`Outcome`] back into replies. So append, cas, counters, touch and
//! the meta marks are written once, here, for both protocols.
//!
//! - [`store`]: set, add, replace, append, prepend, cas (with the stale
//!   compare-and-swap and append/prepend vivify).
//! - [`delete`]: delete, mark stale, empty the value.
//! - [`counter`]: incr and decr, maybe creating the item.
//! - [`fetch`]: reads that change their item (touch, vivify, recache, win
//!   tokens).
//! - [`apply`]: a record made by another node, kept if newer.
//! - [`housekeeping`]: flush_all, and the reclaimer's and purger's removals.

pub mod apply;
pub mod counter;
pub mod delete;
pub mod fetch;
pub mod housekeeping;
pub mod store;

use bytes::Bytes;

use crate::error::WriteError;
use crate::expiry::Expiry;
use crate::record::Record;
use crate::txn::Txn;
use crate::version::Version;

pub use self::counter::CounterOp;
pub use self::delete::DeleteOp;
pub use self::fetch::FetchOp;
pub use self::store::{StoreMode, StoreOp};

/// A write, as the session submits it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Store an item (every storage mode).
    Store(StoreOp),
    /// Delete, invalidate or empty an item.
    Delete(DeleteOp),
    /// Add to or subtract from a counter.
    Counter(CounterOp),
    /// A read that may change its item.
    Fetch(FetchOp),
    /// `flush_all`: hide everything written before the deadline (a unix
    /// second, computed as memcached does: now + delay - 1).
    FlushAll {
        /// The deadline.
        deadline: u64,
    },
    /// Delete whatever the key holds, without a reply (a `set` over the
    /// size limit removes the old value, as memcached does): a tombstone.
    Remove {
        /// The key.
        key: Bytes,
    },
    /// Keep a record written by another node if it is newer than what the
    /// key holds.
    Apply {
        /// The key.
        key: Bytes,
        /// The complete record (an item or a tombstone).
        record: Record,
    },
    /// Housekeeping: reclaim a dead item if it is still the same dead item.
    Reclaim {
        /// The key.
        key: Bytes,
        /// The version the reclaimer saw.
        version: Version,
    },
    /// Housekeeping: purge a tombstone past its grace period if it is still
    /// the same tombstone.
    Purge {
        /// The key.
        key: Bytes,
        /// The tombstone's version.
        version: Version,
    },
    /// Housekeeping: drop a record this node no longer replicates (the ring
    /// changed and its new replicas have it) if the key still holds that
    /// version. Leaves no trace and is never shipped.
    Discard {
        /// The key.
        key: Bytes,
        /// The version that was handed over.
        version: Version,
    },
}

impl Operation {
    /// The key the operation writes, if it has one.
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Operation::Store(op) => Some(&op.key),
            Operation::Delete(op) => Some(&op.key),
            Operation::Counter(op) => Some(&op.key),
            Operation::Fetch(op) => Some(&op.key),
            Operation::Remove { key }
            | Operation::Apply { key, .. }
            | Operation::Reclaim { key, .. }
            | Operation::Purge { key, .. }
            | Operation::Discard { key, .. } => Some(key),
            Operation::FlushAll { .. } => None,
        }
    }
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Stored: the new cas unique and the stored value's size.
    Stored {
        /// The stored item's cas unique.
        cas: u64,
        /// Bytes of the stored value (after append/prepend: the whole).
        size: u64,
    },
    /// The condition of add/replace/append/prepend failed, or an append
    /// would outgrow the item size limit.
    NotStored,
    /// A cas mismatch.
    Exists,
    /// No live item (and nothing created).
    NotFound,
    /// Deleted (or emptied).
    Deleted,
    /// Marked stale with a new cas unique.
    Invalidated {
        /// The cas unique before.
        old_cas: u64,
        /// The new cas unique.
        new_cas: u64,
    },
    /// A counter changed or was created.
    Counter(CounterResult),
    /// The value is not a number.
    NonNumeric,
    /// A read that may change its item found or created it.
    Fetched(FetchedItem),
    /// Done, nothing to report (flush, removals, housekeeping).
    Done,
    /// A record from elsewhere was kept.
    Applied,
    /// A record from elsewhere was not newer than what the key holds.
    Stale,
    /// The operation failed.
    Failed(WriteError),
}

/// A counter after `incr`/`decr`/`ma`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterResult {
    /// The new value.
    pub number: u64,
    /// The item after the request.
    pub record: Record,
    /// The item's expiry after the delta and before a touch applied (what
    /// the meta protocol's `t` before `T`/`N` reports).
    pub expiry_before: Expiry,
    /// The item was created (vivify).
    pub created: bool,
    /// The number was rewritten in place (same length): the item is the
    /// same item under a new cas unique. Otherwise it is a new item.
    pub in_place: bool,
    /// The cas unique before the change (0 when created).
    pub old_cas: u64,
    /// The unix second of the evaluation.
    pub now: u64,
}

/// What a [`FetchOp`] found or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedItem {
    /// The item after the request.
    pub record: Record,
    /// The item's marks before the request.
    pub marks_before: u8,
    /// The item's expiry before the request.
    pub expiry_before: Expiry,
    /// The item was created (vivify).
    pub created: bool,
    /// This request won the item's win token.
    pub won: bool,
    /// The unix second of the evaluation.
    pub now: u64,
}

impl Outcome {
    /// Whether the operation changed what its key holds as asked (stored,
    /// deleted, counted, touched...), as opposed to a refusal or a failure.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Stored { .. }
                | Outcome::Deleted
                | Outcome::Invalidated { .. }
                | Outcome::Counter(_)
                | Outcome::Fetched(_)
                | Outcome::Done
                | Outcome::Applied
        )
    }
}

impl FetchedItem {
    /// An item read without changing it.
    pub fn unchanged(record: Record, now: u64) -> FetchedItem {
        FetchedItem {
            marks_before: record.marks,
            expiry_before: record.expiry,
            record,
            created: false,
            won: false,
            now,
        }
    }
}

/// The expiry a touch and a vivify leave on an item: on an item the
/// request created, the vivify expiry, unless a touch came after the vivify
/// (`touch_after_vivify`); on an existing item, the touch expiry; else the
/// item's own.
pub fn expiry_after(
    created: bool,
    touch: Option<Expiry>,
    vivify: Option<Expiry>,
    touch_after_vivify: bool,
    current: Expiry,
) -> Expiry {
    match (touch, vivify.filter(|_| created)) {
        (Some(touch), Some(_)) if touch_after_vivify => touch,
        (_, Some(vivify)) => vivify,
        (Some(touch), None) => touch,
        (None, None) => current,
    }
}

/// The cas unique of a new item: `explicit` when given (the meta protocol's
/// `E<cas>`; it takes no number from the counter), else the next one.
fn new_item_cas(txn: &mut Txn<'_>, explicit: Option<u64>) -> u64 {
    explicit.unwrap_or_else(|| txn.new_cas())
}

/// Evaluates one operation.
pub fn evaluate(op: &Operation, txn: &mut Txn<'_>) -> Result<Outcome, WriteError> {
    match op {
        Operation::Store(store) => store::evaluate(store, txn),
        Operation::Delete(delete) => delete::evaluate(delete, txn),
        Operation::Counter(counter) => counter::evaluate(counter, txn),
        Operation::Fetch(fetch) => fetch::evaluate(fetch, txn),
        Operation::FlushAll { deadline } => Ok(housekeeping::flush_all(*deadline, txn)),
        Operation::Remove { key } => housekeeping::remove(key, txn),
        Operation::Apply { key, record } => apply::evaluate(key, record, txn),
        Operation::Reclaim { key, version } => housekeeping::reclaim(key, *version, txn),
        Operation::Purge { key, version } => housekeeping::purge(key, *version, txn),
        Operation::Discard { key, version } => housekeeping::discard(key, *version, txn),
    }
}
