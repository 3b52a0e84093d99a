//! The transaction view the command semantics are evaluated over.
//!
//! A [`Txn`] is one operation's window onto the batch being committed: it
//! reads a key's [`Slot`] (this batch's last change to the key, else the
//! engine), and records puts, tombstones and removals into the batch with
//! the accounting each implies; it hands out cas uniques and version
//! timestamps, and knows the time and the flush markers. The semantics in
//! [`crate::ops`] see nothing else, and the commit pipeline sees only the
//! changes they leave.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::ItemRules;
use crate::engine::{Change, Engine};
use crate::error::WriteError;
use crate::expiry::Expiry;
use crate::flush::FlushMarkers;
use crate::record::{CorruptRecord, Record};
use crate::stats::StorageStats;
use crate::version::{ClockSkew, HybridClock, NodeId, Version};
use crate::wal::{Accounting, Origin, Provenance};

/// What a key holds, as a read-modify-write sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Nothing.
    Nothing,
    /// An item (possibly expired or flushed).
    Item(Record),
    /// A tombstone: the key was deleted at this record's version.
    Tombstone(Record),
    /// Bytes that fail their checks.
    Corrupt(CorruptRecord),
}

/// A key's state: what it holds and the bytes that takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// What is stored.
    pub stored: Stored,
    /// Accounted size of what is stored (0 if nothing).
    pub size: u64,
}

impl Slot {
    /// A key that holds nothing.
    pub const EMPTY: Slot = Slot {
        stored: Stored::Nothing,
        size: 0,
    };

    /// The slot, or an error if its stored bytes are unreadable: for the
    /// commands that need the old item.
    pub fn readable(self) -> Result<Slot, WriteError> {
        match &self.stored {
            Stored::Corrupt(err) => Err(WriteError::Corrupt(err.clone())),
            _ => Ok(self),
        }
    }

    /// Whether the stored bytes are unreadable.
    pub fn is_corrupt(&self) -> bool {
        matches!(self.stored, Stored::Corrupt(_))
    }

    /// The version of what is stored (an item or a tombstone), if readable.
    pub fn version(&self) -> Option<Version> {
        match &self.stored {
            Stored::Item(record) | Stored::Tombstone(record) => Some(record.version),
            _ => None,
        }
    }

    /// How the slot counts: item records, their bytes, tombstones. A corrupt
    /// record was counted as an item when it was written.
    fn counts(&self) -> (i64, i64, i64) {
        match self.stored {
            Stored::Nothing => (0, 0, 0),
            Stored::Item(_) | Stored::Corrupt(_) => (1, self.size as i64, 0),
            Stored::Tombstone(_) => (0, 0, 1),
        }
    }
}

/// The changes of the batch being built, and the per-key state they leave.
#[derive(Default)]
pub struct Batch {
    pub(crate) overlay: HashMap<Bytes, Slot>,
    pub(crate) changes: Vec<Change>,
    pub(crate) accounting: Vec<Accounting>,
    pub(crate) provenances: Vec<Provenance>,
    pub(crate) flush: Option<FlushMarkers>,
    /// Items with an expiry this batch writes (counted once it is applied,
    /// so that the reclaimer never looks for them before they are there).
    pub(crate) expiring_writes: u64,
}

impl Batch {
    /// Forgets everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.overlay.clear();
        self.changes.clear();
        self.accounting.clear();
        self.provenances.clear();
        self.flush = None;
        self.expiring_writes = 0;
    }

    /// Whether the batch changes anything.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Low bits of every cas unique this node hands out: its slot, from its
/// node id, so that two nodes' uniques differ even when their counters
/// meet (each observes the other's records and moves past them).
pub const CAS_SLOT_BITS: u32 = 16;

/// The largest counter value (one whose unique still fits 64 bits). A
/// client's explicit `E<cas>` can be any number, and a counter that moved
/// past a huge one stops here rather than wrap.
pub const MAX_CAS_SEQUENCE: u64 = u64::MAX >> CAS_SLOT_BITS;

/// The cas unique of counter value `sequence` on the node with `node`.
pub fn cas_unique(sequence: u64, node: NodeId) -> u64 {
    (sequence.min(MAX_CAS_SEQUENCE) << CAS_SLOT_BITS) | (node.0 & ((1 << CAS_SLOT_BITS) - 1))
}

/// The counter value of a cas unique.
pub fn cas_sequence(cas: u64) -> u64 {
    cas >> CAS_SLOT_BITS
}

/// Counters that hand out cas uniques and versions: the commit pipeline's
/// own state, lent to each transaction.
pub struct Counters {
    /// The next cas counter value (see [`cas_unique`]).
    pub next_cas: u64,
    /// The node's hybrid clock.
    pub clock: HybridClock,
    /// This node's id.
    pub node: NodeId,
    /// The flush markers as of the last committed batch.
    pub flush: FlushMarkers,
}

/// One operation's view of the batch; see the module documentation.
pub struct Txn<'a> {
    pub(crate) engine: &'a dyn Engine,
    pub(crate) stats: &'a Arc<StorageStats>,
    pub(crate) counters: &'a mut Counters,
    pub(crate) batch: &'a mut Batch,
    pub(crate) rules: &'a ItemRules,
    pub(crate) now: u64,
}

impl Txn<'_> {
    /// Whether an item of this key length, flags and value length is within
    /// the size limit.
    pub fn fits(&self, key_len: usize, flags: u32, value_len: usize) -> bool {
        (self.rules.item_size)(key_len, flags, value_len) <= self.rules.max_item_size
    }

    /// Reads a counter's number from its stored value as the protocol does
    /// (up to a NUL).
    pub fn parse_counter(&self, value: &[u8]) -> Option<u64> {
        if value.is_empty() {
            return None;
        }
        let text = match value.iter().position(|&b| b == 0) {
            Some(nul) => &value[..nul],
            None => value,
        };
        (self.rules.parse_number)(text)
    }

    /// The unix second the operation is evaluated at.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The next cas unique.
    pub fn new_cas(&mut self) -> u64 {
        let cas = cas_unique(self.counters.next_cas, self.counters.node);
        self.counters.next_cas = (self.counters.next_cas + 1).min(MAX_CAS_SEQUENCE);
        cas
    }

    /// A version newer than every one before, made by this node.
    pub fn new_version(&mut self) -> Version {
        Version {
            timestamp: self.counters.clock.tick(),
            node: self.counters.node,
        }
    }

    /// Moves the clock and the cas counter past a record made elsewhere;
    /// refuses a version too far in the future.
    pub fn observe(&mut self, record: &Record) -> Result<(), ClockSkew> {
        self.counters.clock.observe(record.version.timestamp)?;
        self.counters.next_cas = self
            .counters
            .next_cas
            .max(cas_sequence(record.cas).saturating_add(1))
            .min(MAX_CAS_SEQUENCE);
        Ok(())
    }

    /// The flush markers in force for this operation.
    pub fn flush_markers(&self) -> FlushMarkers {
        self.batch.flush.unwrap_or(self.counters.flush)
    }

    /// Replaces the flush markers.
    pub fn set_flush(&mut self, markers: FlushMarkers) {
        self.batch.flush = Some(markers);
        self.record(
            Change::Flush(markers),
            Accounting::default(),
            Provenance::of(Origin::Housekeeping),
        );
    }

    /// The key's current state: this batch's last change, else the engine.
    /// An unreadable record is reported in the slot (a `set` or `delete`
    /// may replace it; commands that need the old item refuse it).
    pub fn slot(&self, key: &Bytes) -> Result<Slot, WriteError> {
        if let Some(slot) = self.batch.overlay.get(key) {
            return Ok(slot.clone());
        }
        let stored = self
            .engine
            .get(key)
            .map_err(|err| WriteError::EngineRead(Arc::new(err)))?;
        let Some(bytes) = stored else {
            return Ok(Slot::EMPTY);
        };
        let size = (key.len() + bytes.len()) as u64;
        let stored = match Record::decode(key, &bytes) {
            Ok(record) if record.is_tombstone() => Stored::Tombstone(record),
            Ok(record) => Stored::Item(record),
            Err(err) => {
                self.stats.note_corrupt_record(key, &err);
                Stored::Corrupt(err)
            }
        };
        Ok(Slot { stored, size })
    }

    /// The key's readable slot and its live record, if any: for the
    /// commands that need the old item (an unreadable record is an error
    /// for them).
    pub fn live_slot(&self, key: &Bytes) -> Result<(Slot, Option<Record>), WriteError> {
        let slot = self.slot(key)?.readable()?;
        let live = self.live(&slot);
        Ok((slot, live))
    }

    /// The live record in `slot`, if any (an item, not expired, not flushed).
    pub fn live(&self, slot: &Slot) -> Option<Record> {
        let flush = self.flush_markers();
        match &slot.stored {
            Stored::Item(record)
                if !record.expiry.is_expired(self.now)
                    && !flush.hides(record.version, self.now) =>
            {
                Some(record.clone())
            }
            _ => None,
        }
    }

    /// A client's write of `record`: stored, or, if it is already expired
    /// (stored and at once invisible, as memcached does), kept as a
    /// tombstone at its version.
    pub fn put(&mut self, key: &Bytes, record: Record, slot: &Slot) {
        if record.expiry.is_expired(self.now) {
            let tombstone = Record::tombstone(record.version, record.cas);
            self.store(key, tombstone, slot, Origin::Client);
            return;
        }
        if record.expiry != Expiry::Never {
            self.batch.expiring_writes += 1;
        }
        self.store(key, record, slot, Origin::Client);
    }

    /// A client's delete: a tombstone at a new version, keeping the old
    /// item's cas unique.
    pub fn delete(&mut self, key: &Bytes, slot: &Slot) {
        let cas = match &slot.stored {
            Stored::Item(record) => record.cas,
            _ => 0,
        };
        let tombstone = Record::tombstone(self.new_version(), cas);
        self.store(key, tombstone, slot, Origin::Client);
    }

    /// A record made by another node, stored as it is (even if expired: its
    /// version must keep older writes out).
    pub fn apply(&mut self, key: &Bytes, record: Record, slot: &Slot) {
        self.store(key, record, slot, Origin::Replica);
    }

    /// Housekeeping: an expired item becomes a tombstone at its own version
    /// (so that no older write can bring it back), not shipped.
    pub fn expire(&mut self, key: &Bytes, record: &Record, slot: &Slot) {
        let tombstone = Record::tombstone(record.version, record.cas);
        self.store(key, tombstone, slot, Origin::Housekeeping);
    }

    /// Housekeeping: removes whatever the key holds, leaving no trace.
    pub fn remove(&mut self, key: &Bytes, slot: &Slot) {
        if slot.stored == Stored::Nothing {
            return;
        }
        let (items, bytes, tombstones) = slot.counts();
        self.record(
            Change::Remove { key: key.clone() },
            Accounting {
                items: -items,
                bytes: -bytes,
                tombstones: -tombstones,
            },
            Provenance {
                origin: Origin::Housekeeping,
                previous: slot.version(),
            },
        );
        self.batch.overlay.insert(key.clone(), Slot::EMPTY);
    }

    fn store(&mut self, key: &Bytes, record: Record, slot: &Slot, origin: Origin) {
        let encoded = Bytes::from(record.encode(key));
        let size = (key.len() + encoded.len()) as u64;
        let new_slot = Slot {
            stored: if record.is_tombstone() {
                Stored::Tombstone(record)
            } else {
                Stored::Item(record)
            },
            size,
        };
        let (items_before, bytes_before, tombstones_before) = slot.counts();
        let (items, bytes, tombstones) = new_slot.counts();
        self.record(
            Change::Put {
                key: key.clone(),
                record: encoded,
            },
            Accounting {
                items: items - items_before,
                bytes: bytes - bytes_before,
                tombstones: tombstones - tombstones_before,
            },
            Provenance {
                origin,
                previous: slot.version(),
            },
        );
        self.batch.overlay.insert(key.clone(), new_slot);
    }

    fn record(&mut self, change: Change, accounting: Accounting, provenance: Provenance) {
        self.batch.changes.push(change);
        self.batch.accounting.push(accounting);
        self.batch.provenances.push(provenance);
    }
}
