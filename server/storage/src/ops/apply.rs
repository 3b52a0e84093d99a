//! Applying a record written by another node: kept only if its version is
//! newer than what the key holds (an item or a tombstone), so that applying
//! the same records in any order, any number of times, leaves every replica
//! in the same state.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::Outcome;
use crate::error::WriteError;
use crate::record::Record;
use crate::txn::Txn;

pub(super) fn evaluate(
    key: &Bytes,
    record: &Record,
    txn: &mut Txn<'_>,
) -> Result<Outcome, WriteError> {
    // The clock observes every remote timestamp, and refuses one from a
    // clock too far ahead rather than follow it.
    if let Err(skew) = txn.observe(record) {
        txn.stats.note_clock_skew(&skew);
        return Ok(Outcome::Failed(WriteError::ClockSkew(skew)));
    }
    let slot = txn.slot(key)?;
    if slot
        .version()
        .is_some_and(|stored| record.version <= stored)
    {
        txn.stats.applied_stale.fetch_add(1, Ordering::Relaxed);
        return Ok(Outcome::Stale);
    }
    txn.apply(key, record.clone(), &slot);
    txn.stats.applied.fetch_add(1, Ordering::Relaxed);
    Ok(Outcome::Applied)
}
