//! Deleting an item: a plain delete (leaving a tombstone), marking it stale
//! (`md I`), or emptying its value (`md x`), for `delete` and `md` alike.

use bytes::Bytes;

use super::Outcome;
use crate::error::WriteError;
use crate::expiry::Expiry;
use crate::record::{Record, MARK_STALE, MARK_TOKEN_SENT};
use crate::txn::Txn;

/// Delete, invalidate or empty an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOp {
    /// The key.
    pub key: Bytes,
    /// Only if the item's cas unique equals this.
    pub compare_cas: Option<u64>,
    /// Do not delete: mark the item stale, give it a new cas unique and
    /// clear its "win token sent" mark.
    pub invalidate: bool,
    /// Do not delete: replace the item with an empty one with these client
    /// flags (then marked stale if `invalidate`).
    pub empty_with_flags: Option<u32>,
    /// With `invalidate` or `empty_with_flags`: the item's new expiry
    /// (`invalidate` keeps the old one, an emptied item never expires,
    /// without it).
    pub expiry: Option<Expiry>,
    /// The cas unique `invalidate` gives (instead of the next one) or the
    /// emptied item keeps (instead of the old one).
    pub explicit_cas: Option<u64>,
}

impl DeleteOp {
    /// A plain delete, as the text command makes it.
    pub fn new(key: Bytes) -> DeleteOp {
        DeleteOp {
            key,
            compare_cas: None,
            invalidate: false,
            empty_with_flags: None,
            expiry: None,
            explicit_cas: None,
        }
    }

    fn is_plain(&self) -> bool {
        !self.invalidate && self.empty_with_flags.is_none() && self.compare_cas.is_none()
    }
}

pub(super) fn evaluate(op: &DeleteOp, txn: &mut Txn<'_>) -> Result<Outcome, WriteError> {
    let key = &op.key;
    let slot = txn.slot(key)?;
    // A plain delete removes even an unreadable record.
    if op.is_plain() && slot.is_corrupt() {
        txn.delete(key, &slot);
        return Ok(Outcome::Deleted);
    }
    let slot = slot.readable()?;
    let Some(old) = txn.live(&slot) else {
        return Ok(Outcome::NotFound);
    };
    if op.compare_cas.is_some_and(|cas| cas != old.cas) {
        return Ok(Outcome::Exists);
    }
    // An emptied item is a new item, as memcached stores it with `set`:
    // the given flags, the given expiry (none without), the old cas unless
    // one is given, no marks.
    let old = match op.empty_with_flags {
        Some(flags) => {
            let emptied = Record {
                flags,
                expiry: op.expiry.unwrap_or(Expiry::Never),
                cas: op.explicit_cas.unwrap_or(old.cas),
                version: txn.new_version(),
                marks: 0,
                value: Bytes::new(),
            };
            if !op.invalidate {
                txn.put(key, emptied, &slot);
                return Ok(Outcome::Deleted);
            }
            emptied
        }
        None => old,
    };
    if !op.invalidate {
        txn.delete(key, &slot);
        return Ok(Outcome::Deleted);
    }
    let record = Record {
        expiry: op.expiry.unwrap_or(old.expiry),
        marks: (old.marks | MARK_STALE) & !MARK_TOKEN_SENT,
        cas: match op.explicit_cas {
            Some(cas) => cas,
            None => txn.new_cas(),
        },
        version: txn.new_version(),
        ..old
    };
    let (old_cas, new_cas) = (old.cas, record.cas);
    txn.put(key, record, &slot);
    Ok(Outcome::Invalidated { old_cas, new_cas })
}
