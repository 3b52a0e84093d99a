//! `flush_all` as markers, not deletions.
//!
//! sled's `clear()` is not atomic, and deleting millions of items inside one
//! command would stall every writer, so a flush only records which items it
//! invalidates. Readers treat such items as absent at once; the background
//! reclaimer deletes them later. The markers belong to the node's storage
//! (they are kept with every engine checkpoint and logged when they change),
//! and they are local: a cluster flushes by sending `flush_all` to every
//! node, so they are never shipped to replicas.
//!
//! memcached 1.6.18's rule, kept here: `flush_all <delay>` sets a deadline
//! of `now + delay - 1` (`now - 1` without a delay). From the deadline on,
//! every item last written in a second up to the deadline is invisible; when
//! the deadline is already here (no delay, or a delay of 1), every item
//! written before the flush is invisible at once too (memcached's
//! `oldest_cas`). So `flush_all 1` hides existing items at once and
//! `flush_all 2` about a second later.

use std::sync::RwLock;

use crate::version::{Timestamp, Version};

/// The markers in force, published by the commit pipeline after each batch
/// and read by every reader.
#[derive(Debug, Default)]
pub struct FlushState(RwLock<FlushMarkers>);

impl FlushState {
    /// The markers readers must honour.
    pub fn get(&self) -> FlushMarkers {
        *self.0.read().expect("flush markers lock")
    }

    /// Publishes new markers.
    pub fn set(&self, markers: FlushMarkers) {
        let mut current = self.0.write().expect("flush markers lock");
        if *current != markers {
            *current = markers;
        }
    }
}

/// The flush state of the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushMarkers {
    /// Items with a version timestamp at or below this are flushed.
    pub flushed_through: Timestamp,
    /// From this unix second on, items last written in a second at or
    /// before it are flushed. 0: no flush deadline.
    pub deadline: u64,
}

impl FlushMarkers {
    /// Whether an item with this version is invisible at unix second `now`.
    pub fn hides(&self, version: Version, now: u64) -> bool {
        version.timestamp <= self.flushed_through
            || (self.deadline != 0
                && self.deadline <= now
                && version.timestamp.secs() <= self.deadline)
    }

    /// The markers after `flush_all` with the given deadline (unix second,
    /// computed by the caller as memcached does: now + delay - 1), at unix
    /// second `now`, where `latest` is a timestamp taken for the flush
    /// (newer than every write before it).
    pub fn after_flush(&self, deadline: u64, now: u64, latest: Timestamp) -> FlushMarkers {
        FlushMarkers {
            flushed_through: if deadline <= now {
                latest
            } else {
                self.flushed_through
            },
            deadline,
        }
    }

    /// The stored form.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.flushed_through.0.to_le_bytes());
        out[8..].copy_from_slice(&self.deadline.to_le_bytes());
        out
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Option<FlushMarkers> {
        let bytes: &[u8; 16] = bytes.get(..16)?.try_into().ok()?;
        Some(FlushMarkers {
            flushed_through: Timestamp(u64::from_le_bytes(bytes[..8].try_into().ok()?)),
            deadline: u64::from_le_bytes(bytes[8..].try_into().ok()?),
        })
    }

    /// Reads the form earlier releases stored: a nanosecond version and a
    /// pending unix second from which items written before that second
    /// were hidden. A pending flush then takes effect one second earlier
    /// than the old rule said (never later, and never hiding more items).
    pub fn decode_legacy(bytes: &[u8]) -> Option<FlushMarkers> {
        let bytes: &[u8; 16] = bytes.get(..16)?.try_into().ok()?;
        let nanos = u64::from_le_bytes(bytes[..8].try_into().ok()?);
        let pending_at = u64::from_le_bytes(bytes[8..].try_into().ok()?);
        Some(FlushMarkers {
            flushed_through: if nanos == 0 {
                Timestamp(0)
            } else {
                Timestamp::from_legacy_nanos(nanos)
            },
            deadline: pending_at.saturating_sub(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::NodeId;

    const NOW: u64 = 1_700_000_000;

    fn written_at(secs: u64, millis: u64) -> Version {
        Version {
            timestamp: Timestamp::from_millis(secs * 1000 + millis),
            node: NodeId(1),
        }
    }

    #[test]
    fn flush_without_delay_hides_everything_written_before_it() {
        let latest = Timestamp::from_millis(NOW * 1000 + 500);
        let markers = FlushMarkers::default().after_flush(NOW - 1, NOW, latest);
        assert!(markers.hides(written_at(NOW, 499), NOW));
        assert!(!markers.hides(written_at(NOW, 501), NOW));
    }

    #[test]
    fn a_delay_of_one_hides_existing_items_at_once() {
        let latest = Timestamp::from_millis(NOW * 1000 + 500);
        let markers = FlushMarkers::default().after_flush(NOW, NOW, latest);
        assert!(markers.hides(written_at(NOW - 5, 0), NOW));
        assert!(markers.hides(written_at(NOW, 400), NOW));
        assert!(!markers.hides(written_at(NOW + 1, 0), NOW + 1));
    }

    #[test]
    fn a_delay_of_two_hides_older_items_a_second_later() {
        let latest = Timestamp::from_millis(NOW * 1000 + 500);
        let markers = FlushMarkers::default().after_flush(NOW + 1, NOW, latest);
        assert!(!markers.hides(written_at(NOW, 400), NOW));
        assert!(markers.hides(written_at(NOW, 400), NOW + 1));
        assert!(!markers.hides(written_at(NOW + 2, 0), NOW + 2));
        assert_eq!(FlushMarkers::decode(&markers.encode()), Some(markers));
    }

    #[test]
    fn legacy_markers_keep_their_meaning() {
        let mut old = [0u8; 16];
        old[..8].copy_from_slice(&(NOW * 1_000_000_000).to_le_bytes());
        old[8..].copy_from_slice(&(NOW + 10).to_le_bytes());
        let markers = FlushMarkers::decode_legacy(&old).unwrap();
        assert!(markers.hides(written_at(NOW - 1, 0), NOW));
        // The old rule: from NOW+10 on, items written before second NOW+10;
        // now from NOW+9 on.
        assert!(!markers.hides(written_at(NOW + 5, 0), NOW + 8));
        assert!(markers.hides(written_at(NOW + 5, 0), NOW + 9));
        assert!(markers.hides(written_at(NOW + 8, 999), NOW + 10));
        assert!(!markers.hides(written_at(NOW + 10, 0), NOW + 10));
    }
}
