//! `flush_all` as markers, not deletions.
//!
//! sled's `clear()` is not atomic, and deleting millions of items inside one
//! command would stall every writer, so a flush only records which items it
//! invalidates: every item whose version timestamp is at or below a marker.
//! Readers treat such items as absent at once; the background reclaimer
//! deletes them later. A delayed flush (`flush_all <delay>`) invalidates, from
//! its time on, every item written before that time.

use mcstore_protocol::exptime::Expiry;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The flush state of the node, stored with every engine checkpoint and in
/// the write-ahead log when it changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushMarkers {
    /// Items with a version at or below this are flushed.
    pub flushed_through: u64,
    /// A delayed flush: from this unix second on, items written before it
    /// are flushed. 0 when none is pending.
    pub pending_at: u64,
}

impl FlushMarkers {
    /// Whether an item with this version is invisible at unix second `now`.
    pub fn hides(&self, version: u64, now: u64) -> bool {
        version <= self.flushed_through
            || (self.pending_at != 0
                && self.pending_at <= now
                && version <= self.pending_at.saturating_mul(NANOS_PER_SECOND))
    }

    /// The markers after `flush_all <delay>` at unix second `now`, where
    /// `latest_version` is the newest version handed out so far.
    pub fn after_flush(&self, delay: i32, now: u64, latest_version: u64) -> FlushMarkers {
        match Expiry::from_exptime(i64::from(delay), now) {
            Expiry::At(at) if delay > 0 && at > now => FlushMarkers {
                flushed_through: self.flushed_through,
                pending_at: at,
            },
            _ => FlushMarkers {
                flushed_through: latest_version,
                pending_at: 0,
            },
        }
    }

    /// The stored form.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.flushed_through.to_le_bytes());
        out[8..].copy_from_slice(&self.pending_at.to_le_bytes());
        out
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Option<FlushMarkers> {
        let bytes: &[u8; 16] = bytes.get(..16)?.try_into().ok()?;
        Some(FlushMarkers {
            flushed_through: u64::from_le_bytes(bytes[..8].try_into().ok()?),
            pending_at: u64::from_le_bytes(bytes[8..].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn immediate_flush_hides_everything_written_so_far() {
        let markers = FlushMarkers::default().after_flush(0, NOW, 500);
        assert!(markers.hides(500, NOW));
        assert!(!markers.hides(501, NOW));
        let markers = FlushMarkers::default().after_flush(-1, NOW, 500);
        assert!(markers.hides(500, NOW));
    }

    #[test]
    fn delayed_flush_hides_older_items_from_its_time_on() {
        let written_before = NOW * NANOS_PER_SECOND;
        let markers = FlushMarkers::default().after_flush(10, NOW, written_before);
        assert!(!markers.hides(written_before, NOW + 9));
        assert!(markers.hides(written_before, NOW + 10));
        let written_after = (NOW + 11) * NANOS_PER_SECOND;
        assert!(!markers.hides(written_after, NOW + 12));
        assert_eq!(FlushMarkers::decode(&markers.encode()), Some(markers));
    }
}
