//! Versions that order writes across nodes: a hybrid logical clock
//! timestamp plus the writing node's id.
//!
//! A [`Timestamp`] packs 48 bits of unix milliseconds and a 16-bit logical
//! counter into one `u64`, so comparing two is one integer compare
//! (Kulkarni et al., "Logical Physical Clocks", 2014). A [`Version`] is a
//! timestamp and the [`NodeId`] that made it; versions are totally ordered,
//! the node id breaking ties, which is the last-write-wins order replicas
//! agree on.
//!
//! The [`HybridClock`] of a node never goes back: it starts past the highest
//! timestamp the node ever logged, moves with the wall clock when the wall
//! clock moves forward, counts when it does not, and observes every remote
//! timestamp it applies so that later local writes are newer. A remote
//! timestamp too far in the future (a peer with a clock far ahead) is
//! refused rather than observed, so one bad clock cannot drag the cluster's
//! versions into the future.
//!
//! Trade-off, stated on the type as Garage does on its LWW register: with
//! last-write-wins, of two writes to one key a few milliseconds apart on two
//! nodes with skewed clocks, the one with the later timestamp wins even if
//! it happened first. Read-modify-write commands (cas, incr, append) are
//! therefore evaluated at one coordinator, never merged.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// Bits of a [`Timestamp`] given to the logical counter.
pub const LOGICAL_BITS: u32 = 16;

/// A hybrid logical clock reading: unix milliseconds in the high 48 bits,
/// a logical counter in the low 16.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp at the start of a unix millisecond.
    pub fn from_millis(millis: u64) -> Timestamp {
        Timestamp(millis << LOGICAL_BITS)
    }

    /// The timestamp at the start of a unix second.
    pub fn from_secs(secs: u64) -> Timestamp {
        Timestamp::from_millis(secs.saturating_mul(1000))
    }

    /// A version timestamp of the format-1 and format-2 records: unix
    /// nanoseconds, strictly increasing on the node. Maps it monotonically
    /// (sub-millisecond nanoseconds / 16 fit the 16 counter bits).
    pub fn from_legacy_nanos(nanos: u64) -> Timestamp {
        let millis = nanos / 1_000_000;
        let sub = (nanos % 1_000_000) / 16;
        Timestamp((millis << LOGICAL_BITS) | sub)
    }

    /// The physical part, in unix milliseconds.
    pub fn millis(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The physical part, in unix seconds.
    pub fn secs(self) -> u64 {
        self.millis() / 1000
    }

    /// The logical counter.
    pub fn logical(self) -> u64 {
        self.0 & ((1 << LOGICAL_BITS) - 1)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis(), self.logical())
    }
}

/// A node's identity, made once and kept in its data directory. 0 marks
/// records written before nodes had ids (format 1 and 2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The version of a write: when (hybrid clock) and where (node). Ordered by
/// timestamp, then node id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// When the write was made.
    pub timestamp: Timestamp,
    /// The node that made it.
    pub node: NodeId,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.timestamp, self.node)
    }
}

/// A remote timestamp refused because it is too far ahead of this node's
/// wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("version timestamp {remote} is {ahead_ms} ms ahead of this node's clock (at most {limit_ms} ms allowed)")]
pub struct ClockSkew {
    /// The refused timestamp.
    pub remote: Timestamp,
    /// How far ahead of the local wall clock it was.
    pub ahead_ms: u64,
    /// The bound (`--max-clock-skew`).
    pub limit_ms: u64,
}

/// A hybrid logical clock. Owned by the commit pipeline: one thread, so no
/// synchronisation.
pub struct HybridClock {
    wall: Arc<dyn Clock>,
    last: Timestamp,
    max_ahead: Duration,
}

impl HybridClock {
    /// A clock that continues past `floor` (the highest timestamp ever
    /// logged), refusing remote timestamps more than `max_ahead` in the
    /// future.
    pub fn new(wall: Arc<dyn Clock>, floor: Timestamp, max_ahead: Duration) -> HybridClock {
        HybridClock {
            wall,
            last: floor,
            max_ahead,
        }
    }

    /// A timestamp for a local event, newer than every one before.
    pub fn tick(&mut self) -> Timestamp {
        let physical = Timestamp::from_millis(self.wall.now_millis());
        self.last = if physical > self.last {
            physical
        } else {
            Timestamp(self.last.0 + 1)
        };
        self.last
    }

    /// Checks that a remote timestamp is not too far ahead of the wall
    /// clock, without observing it.
    pub fn check(&self, remote: Timestamp) -> Result<(), ClockSkew> {
        let now = self.wall.now_millis();
        let ahead_ms = remote.millis().saturating_sub(now);
        let limit_ms = self.max_ahead.as_millis() as u64;
        if ahead_ms > limit_ms {
            return Err(ClockSkew {
                remote,
                ahead_ms,
                limit_ms,
            });
        }
        Ok(())
    }

    /// Observes a remote timestamp (a record applied from another node):
    /// later local timestamps are newer than it. Refuses one too far ahead.
    pub fn observe(&mut self, remote: Timestamp) -> Result<(), ClockSkew> {
        self.check(remote)?;
        // A received timestamp is an event too: past both the local clock
        // and the remote one (the packed form makes HLC's receive rule a max
        // and an increment).
        let physical = Timestamp::from_millis(self.wall.now_millis());
        let seen = self.last.max(remote);
        self.last = if physical > seen {
            physical
        } else {
            Timestamp(seen.0 + 1)
        };
        Ok(())
    }

    /// Moves past a timestamp read from this node's own log (recovery): no
    /// skew check, the node made it.
    pub fn advance_past(&mut self, logged: Timestamp) {
        self.last = self.last.max(logged);
    }

    /// The latest timestamp handed out or observed.
    pub fn last(&self) -> Timestamp {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const START: u64 = 1_800_000_000;

    fn clock() -> (Arc<ManualClock>, HybridClock) {
        let wall = Arc::new(ManualClock::at_secs(START));
        let hlc = HybridClock::new(wall.clone(), Timestamp(0), Duration::from_millis(500));
        (wall, hlc)
    }

    #[test]
    fn ticks_follow_the_wall_clock_and_count_when_it_stands_still() {
        let (wall, mut hlc) = clock();
        let a = hlc.tick();
        let b = hlc.tick();
        assert_eq!(a, Timestamp::from_secs(START));
        assert_eq!(b.millis(), a.millis());
        assert_eq!(b.logical(), 1);
        wall.advance_millis(3);
        let c = hlc.tick();
        assert_eq!(c, Timestamp::from_millis(START * 1000 + 3));
    }

    #[test]
    fn never_goes_back_when_the_wall_clock_does_or_after_a_restart() {
        let (wall, mut hlc) = clock();
        wall.advance_millis(1000);
        let before = hlc.tick();
        wall.rewind_millis(5000);
        let after = hlc.tick();
        assert!(after > before);
        // A restart continues past the highest logged timestamp.
        let mut restarted = HybridClock::new(wall.clone(), after, Duration::from_millis(500));
        assert!(restarted.tick() > after);
    }

    #[test]
    fn observes_remote_timestamps_and_refuses_far_future_ones() {
        let (_wall, mut hlc) = clock();
        let remote = Timestamp::from_millis(START * 1000 + 400);
        hlc.observe(remote).unwrap();
        assert!(hlc.tick() > remote);
        let too_far = Timestamp::from_millis(START * 1000 + 2000);
        let err = hlc.observe(too_far).unwrap_err();
        assert_eq!(err.limit_ms, 500);
        assert!(hlc.last() < too_far);
    }

    #[test]
    fn versions_order_by_timestamp_then_node() {
        let early = Version {
            timestamp: Timestamp(5),
            node: NodeId(9),
        };
        let late = Version {
            timestamp: Timestamp(6),
            node: NodeId(1),
        };
        let tie = Version {
            timestamp: Timestamp(6),
            node: NodeId(2),
        };
        assert!(early < late && late < tie);
    }

    #[test]
    fn legacy_nanosecond_versions_map_monotonically() {
        let a = Timestamp::from_legacy_nanos(1_700_000_000_123_456_789);
        let b = Timestamp::from_legacy_nanos(1_700_000_000_123_456_805);
        let c = Timestamp::from_legacy_nanos(1_700_000_000_124_000_000);
        assert!(a < b && b < c);
        assert_eq!(a.millis(), 1_700_000_000_123);
    }
}
