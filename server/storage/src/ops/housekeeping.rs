//! `flush_all`, and the removals nobody asked a reply for: a `set` over the
//! size limit removing the old value, the reclaimer's expired and flushed
//! items, the purger's old tombstones, records handed over to new replicas.

use bytes::Bytes;

use super::Outcome;
use crate::error::WriteError;
use crate::txn::{Stored, Txn};
use crate::version::Version;

/// `flush_all` with its deadline (see [`crate::flush`]).
pub(super) fn flush_all(deadline: u64, txn: &mut Txn<'_>) -> Outcome {
    let latest = txn.new_version().timestamp;
    let markers = txn.flush_markers().after_flush(deadline, txn.now(), latest);
    txn.set_flush(markers);
    Outcome::Done
}

/// Deletes whatever the key holds: a client-visible delete (a tombstone).
pub(super) fn remove(key: &Bytes, txn: &mut Txn<'_>) -> Result<Outcome, WriteError> {
    let slot = txn.slot(key)?;
    if matches!(slot.stored, Stored::Item(_) | Stored::Corrupt(_)) {
        txn.delete(key, &slot);
    }
    Ok(Outcome::Done)
}

/// Reclaims a dead item if the key still holds that item (same version) and
/// it is still dead. A flushed item goes without a trace (the flush markers
/// keep older writes hidden); an expired one leaves a tombstone at its own
/// version, so that no older write from a replica can bring it back.
pub(super) fn reclaim(
    key: &Bytes,
    version: Version,
    txn: &mut Txn<'_>,
) -> Result<Outcome, WriteError> {
    let slot = txn.slot(key)?;
    let Stored::Item(record) = &slot.stored else {
        return Ok(Outcome::Done);
    };
    if record.version != version || txn.live(&slot).is_some() {
        return Ok(Outcome::Done);
    }
    if txn.flush_markers().hides(record.version, txn.now()) {
        txn.remove(key, &slot);
    } else {
        let record = record.clone();
        txn.expire(key, &record, &slot);
    }
    Ok(Outcome::Done)
}

/// Purges a tombstone if the key still holds that tombstone.
pub(super) fn purge(
    key: &Bytes,
    version: Version,
    txn: &mut Txn<'_>,
) -> Result<Outcome, WriteError> {
    let slot = txn.slot(key)?;
    if matches!(&slot.stored, Stored::Tombstone(record) if record.version == version) {
        txn.remove(key, &slot);
    }
    Ok(Outcome::Done)
}

/// Drops a record (item or tombstone) if the key still holds that version.
pub(super) fn discard(
    key: &Bytes,
    version: Version,
    txn: &mut Txn<'_>,
) -> Result<Outcome, WriteError> {
    let slot = txn.slot(key)?;
    if slot.version() == Some(version) {
        txn.remove(key, &slot);
    }
    Ok(Outcome::Done)
}
