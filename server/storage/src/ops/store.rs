//! Storing an item: set, add, replace, append, prepend and compare-and-swap,
//! for the text commands and `ms` alike.

use bytes::{Bytes, BytesMut};

use super::{new_item_cas, Outcome};
use crate::error::WriteError;
use crate::expiry::Expiry;
use crate::record::{Record, MARK_BINARY_KEY, MARK_STALE, MARK_TOKEN_SENT};
use crate::txn::Txn;

/// Which storage condition applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreMode {
    /// Store unconditionally.
    Set,
    /// Store only if the key holds no live item.
    Add,
    /// Store only if the key holds a live item.
    Replace,
    /// Add the data after the live item's data; its flags and expiry stay.
    Append,
    /// Add the data before the live item's data; its flags and expiry stay.
    Prepend,
    /// Store only if the live item's cas unique equals this (0 never does).
    Cas(u64),
}

/// Store an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOp {
    /// The key.
    pub key: Bytes,
    /// The condition.
    pub mode: StoreMode,
    /// Client flags of a new item.
    pub flags: u32,
    /// Expiry of a new item.
    pub expiry: Expiry,
    /// The data.
    pub value: Bytes,
    /// Append/prepend only if the item's cas unique equals this (0
    /// compares nothing): the meta protocol's `C` in those modes.
    pub compare_cas: Option<u64>,
    /// A compare-and-swap with a cas *older* than the item's is accepted,
    /// and the stored item is marked stale, keeping its expiry and any win
    /// token already handed out (`ms ... C<cas> I`).
    pub invalidate: bool,
    /// Append/prepend to a missing item stores the data as a new item with
    /// this expiry instead of failing (`ms ... MA N<ttl>`).
    pub vivify: Option<Expiry>,
    /// The new item's cas unique instead of the next one (`E<cas>`).
    pub explicit_cas: Option<u64>,
    /// The key was sent in base64: the item remembers it.
    pub binary_key: bool,
}

impl StoreOp {
    /// A plain store of `value` under `key` in `mode`, as the text commands
    /// make it.
    pub fn new(key: Bytes, mode: StoreMode, flags: u32, expiry: Expiry, value: Bytes) -> StoreOp {
        StoreOp {
            key,
            mode,
            flags,
            expiry,
            value,
            compare_cas: None,
            invalidate: false,
            vivify: None,
            explicit_cas: None,
            binary_key: false,
        }
    }
}

pub(super) fn evaluate(op: &StoreOp, txn: &mut Txn<'_>) -> Result<Outcome, WriteError> {
    let key = &op.key;
    let slot = txn.slot(key)?;
    // A plain set may replace an unreadable record; the others need it.
    let slot = if op.mode == StoreMode::Set {
        slot
    } else {
        slot.readable()?
    };
    let live = txn.live(&slot);
    let mut flags = op.flags;
    let mut expiry = op.expiry;
    let mut marks = if op.binary_key { MARK_BINARY_KEY } else { 0 };
    let mut value = op.value.clone();
    match (op.mode, &live) {
        (StoreMode::Append | StoreMode::Prepend, None) if op.vivify.is_some() => {
            expiry = op.vivify.unwrap_or(Expiry::Never);
        }
        (StoreMode::Add, Some(_))
        | (StoreMode::Replace, None)
        | (StoreMode::Append | StoreMode::Prepend, None) => return Ok(Outcome::NotStored),
        (StoreMode::Cas(_), None) => return Ok(Outcome::NotFound),
        (StoreMode::Cas(unique), Some(old)) => {
            if unique == 0 {
                return Ok(Outcome::Exists);
            }
            if unique != old.cas {
                if !(op.invalidate && unique < old.cas) {
                    return Ok(Outcome::Exists);
                }
                // A stale value: keeps the TTL, is marked stale and keeps a
                // win token already handed out.
                expiry = old.expiry;
                marks |= MARK_STALE | (old.marks & MARK_TOKEN_SENT);
            }
        }
        (StoreMode::Append | StoreMode::Prepend, Some(old)) => {
            if op.compare_cas.is_some_and(|cas| cas != 0 && cas != old.cas) {
                return Ok(Outcome::Exists);
            }
            let combined = old.value.len() + value.len();
            if !txn.fits(key.len(), old.flags, combined) {
                return Ok(Outcome::NotStored);
            }
            let mut joined = BytesMut::with_capacity(combined);
            if op.mode == StoreMode::Append {
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
        cas: new_item_cas(txn, op.explicit_cas),
        version: txn.new_version(),
        marks,
        value,
    };
    let (cas, size) = (record.cas, record.value.len() as u64);
    txn.put(key, record, &slot);
    Ok(Outcome::Stored { cas, size })
}
