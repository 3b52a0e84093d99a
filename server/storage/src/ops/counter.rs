//! Counters: `incr`, `decr` and `ma`, as memcached computes them.
//!
//! The value is read the way memcached's `strtoull` reads an item (stopping
//! at a NUL; the protocol's number rules, [`crate::ItemRules`]), incr wraps at 2^64 and decr stops at 0, and the new number is
//! written in place (padded with spaces, keeping the item's stale/win marks)
//! when it fits the old length, else as a new item without them.

use bytes::Bytes;

use super::{expiry_after, new_item_cas, CounterResult, Outcome};
use crate::error::WriteError;
use crate::expiry::Expiry;
use crate::record::Record;
use crate::txn::Txn;

/// Add to or subtract from a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterOp {
    /// The key.
    pub key: Bytes,
    /// Add (true) or subtract.
    pub increment: bool,
    /// The amount.
    pub delta: u64,
    /// Only if the item's cas unique equals this (0 compares nothing).
    pub compare_cas: Option<u64>,
    /// On a miss, create the item with this value and expiry (the delta is
    /// not applied).
    pub vivify: Option<(u64, Expiry)>,
    /// On success, set the item's expiry.
    pub touch: Option<Expiry>,
    /// On an item this request created, the touch came after the vivify
    /// and its expiry wins.
    pub touch_after_vivify: bool,
    /// The new cas unique instead of the next one.
    pub explicit_cas: Option<u64>,
}

impl CounterOp {
    /// A plain `incr`/`decr`.
    pub fn new(key: Bytes, increment: bool, delta: u64) -> CounterOp {
        CounterOp {
            key,
            increment,
            delta,
            compare_cas: None,
            vivify: None,
            touch: None,
            touch_after_vivify: false,
            explicit_cas: None,
        }
    }
}

pub(super) fn evaluate(op: &CounterOp, txn: &mut Txn<'_>) -> Result<Outcome, WriteError> {
    let now = txn.now();
    let key = &op.key;
    let (slot, live) = txn.live_slot(key)?;
    let (number, record, created, in_place, old_cas) = match live {
        None => {
            let Some((initial, _)) = op.vivify else {
                return Ok(Outcome::NotFound);
            };
            let record = Record {
                flags: 0,
                expiry: Expiry::Never,
                cas: new_item_cas(txn, op.explicit_cas),
                version: txn.new_version(),
                marks: 0,
                value: Bytes::from(initial.to_string()),
            };
            (initial, record, true, false, 0)
        }
        Some(old) => {
            // memcached's do_add_delta refuses an empty value before it
            // compares the cas, and any other value after.
            if old.value.is_empty() {
                return Ok(Outcome::NonNumeric);
            }
            if op.compare_cas.is_some_and(|cas| cas != 0 && cas != old.cas) {
                return Ok(Outcome::Exists);
            }
            let Some(current) = txn.parse_counter(&old.value) else {
                return Ok(Outcome::NonNumeric);
            };
            let (next, value) = counter_step(current, old.value.len(), op.increment, op.delta);
            let in_place = value.len() == old.value.len();
            let marks = if in_place { old.marks } else { 0 };
            // Like memcached, the update takes the next cas unique even
            // when an explicit one then overrides it.
            let counted = txn.new_cas();
            let old_cas = old.cas;
            let record = Record {
                cas: op.explicit_cas.unwrap_or(counted),
                version: txn.new_version(),
                marks,
                value,
                ..old
            };
            (next, record, false, in_place, old_cas)
        }
    };
    let expiry_before = record.expiry;
    let record = Record {
        expiry: expiry_after(
            created,
            op.touch,
            op.vivify.map(|(_, expiry)| expiry),
            op.touch_after_vivify,
            record.expiry,
        ),
        ..record
    };
    txn.put(key, record.clone(), &slot);
    Ok(Outcome::Counter(CounterResult {
        number,
        record,
        expiry_before,
        created,
        in_place,
        old_cas,
        now,
    }))
}

/// One incr/decr step: the new number and its stored form.
fn counter_step(current: u64, old_len: usize, increment: bool, delta: u64) -> (u64, Bytes) {
    let next = if increment {
        current.wrapping_add(delta)
    } else {
        current.saturating_sub(delta)
    };
    (next, counter_value(next, old_len))
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
    fn shrinking_counters_are_padded_in_place() {
        assert_eq!(counter_value(5, 3), Bytes::from_static(b"5  "));
        assert_eq!(counter_value(100, 2), Bytes::from_static(b"100"));
    }
}
