//! Wall-clock time, behind a trait so that expiry, tombstone grace and the
//! hybrid clock can be tested without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Unix time in nanoseconds.
    fn now_nanos(&self) -> u64;

    /// Unix time in milliseconds.
    fn now_millis(&self) -> u64 {
        self.now_nanos() / 1_000_000
    }

    /// Unix time in seconds.
    fn now_secs(&self) -> u64 {
        self.now_nanos() / 1_000_000_000
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_nanos(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `secs` unix seconds.
    pub fn at_secs(secs: u64) -> ManualClock {
        ManualClock {
            nanos: AtomicU64::new(secs * 1_000_000_000),
        }
    }

    /// Moves the clock forward by whole seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.nanos.fetch_add(secs * 1_000_000_000, Ordering::SeqCst);
    }

    /// Moves the clock forward by milliseconds.
    pub fn advance_millis(&self, millis: u64) {
        self.nanos.fetch_add(millis * 1_000_000, Ordering::SeqCst);
    }

    /// Moves the clock back by milliseconds (a wall clock stepped back by NTP).
    pub fn rewind_millis(&self, millis: u64) {
        self.nanos.fetch_sub(millis * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}
