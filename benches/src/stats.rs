//! Counters and latency histograms.
//!
//! Each connection records into its own [`Recorder`] (no locking per
//! operation): a total for the measured window and an interval part that it
//! hands to the shared [`IntervalStats`] every 250 ms for the progress line.
//! Operations, hits, misses and latencies count only inside the measured
//! window (after the warmup); errors and verification failures count over
//! the whole run, so none goes unreported.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histograms track, in nanoseconds (a minute); larger
/// values are clamped to it. A small range keeps merging histograms cheap.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Event counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Completed operations (sets and gets, error or not).
    pub ops: u64,
    /// Completed sets.
    pub sets: u64,
    /// Completed gets.
    pub gets: u64,
    /// Gets that returned a value.
    pub hits: u64,
    /// Gets that returned no value.
    pub misses: u64,
    /// Values read back that differ from the key's value.
    pub verify_errors: u64,
    /// Requests without a reply within the timeout.
    pub timeouts: u64,
    /// `SERVER_ERROR` replies.
    pub server_errors: u64,
    /// `CLIENT_ERROR` replies.
    pub client_errors: u64,
    /// `ERROR` replies and replies that make no sense for the request.
    pub protocol_errors: u64,
    /// Requests lost to a closed, reset or failed connection.
    pub connection_errors: u64,
    /// Connections re-established after a failure.
    pub reconnects: u64,
}

impl Counters {
    /// All errors (not counting verification failures).
    pub fn errors(&self) -> u64 {
        self.timeouts
            + self.server_errors
            + self.client_errors
            + self.protocol_errors
            + self.connection_errors
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        self.ops += other.ops;
        self.sets += other.sets;
        self.gets += other.gets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.verify_errors += other.verify_errors;
        self.timeouts += other.timeouts;
        self.server_errors += other.server_errors;
        self.client_errors += other.client_errors;
        self.protocol_errors += other.protocol_errors;
        self.connection_errors += other.connection_errors;
        self.reconnects += other.reconnects;
    }
}

/// A kind of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No reply in time.
    Timeout,
    /// `SERVER_ERROR`.
    Server,
    /// `CLIENT_ERROR`.
    Client,
    /// `ERROR` or an unexpected reply.
    Protocol,
    /// The connection failed.
    Connection,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A set was stored.
    Stored,
    /// A get found the key.
    Hit,
    /// A get found nothing.
    Miss,
    /// An error reply.
    Failed(ErrorKind),
}

/// Counters and a latency histogram.
#[derive(Debug, Clone)]
pub struct Measurements {
    /// Counts.
    pub counters: Counters,
    /// Latency of completed operations, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl Default for Measurements {
    fn default() -> Self {
        Measurements {
            counters: Counters::default(),
            latency: new_histogram(),
        }
    }
}

impl Measurements {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Measurements) {
        self.counters.add(&other.counters);
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
    }

    /// Empties counters and histogram.
    pub fn reset(&mut self) {
        self.counters = Counters::default();
        self.latency.reset();
    }

    fn record(&mut self, is_get: bool, outcome: Outcome, latency: Duration, measured: bool) {
        let counters = &mut self.counters;
        if let Outcome::Failed(kind) = outcome {
            count_error(counters, kind, 1);
        }
        if !measured {
            return;
        }
        counters.ops += 1;
        if is_get {
            counters.gets += 1;
        } else {
            counters.sets += 1;
        }
        match outcome {
            Outcome::Hit => counters.hits += 1,
            Outcome::Miss => counters.misses += 1,
            Outcome::Stored | Outcome::Failed(_) => {}
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency
            .saturating_record(nanos.clamp(1, MAX_LATENCY_NS));
    }
}

fn count_error(counters: &mut Counters, kind: ErrorKind, count: u64) {
    let slot = match kind {
        ErrorKind::Timeout => &mut counters.timeouts,
        ErrorKind::Server => &mut counters.server_errors,
        ErrorKind::Client => &mut counters.client_errors,
        ErrorKind::Protocol => &mut counters.protocol_errors,
        ErrorKind::Connection => &mut counters.connection_errors,
    };
    *slot += count;
}

/// One connection's measurements: the measured-window total and the part not
/// yet handed to the progress line.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Over the whole run (operations only inside the measured window).
    pub total: Measurements,
    /// Since the last [`Recorder::flush_into`].
    pub interval: Measurements,
}

impl Recorder {
    /// Records a completed operation; `measured` says whether it completed
    /// inside the measured window.
    pub fn record(&mut self, is_get: bool, outcome: Outcome, latency: Duration, measured: bool) {
        self.total.record(is_get, outcome, latency, measured);
        self.interval.record(is_get, outcome, latency, true);
    }

    /// Counts `count` errors of `kind` that completed no operation (requests
    /// lost with their connection).
    pub fn errors(&mut self, kind: ErrorKind, count: u64) {
        count_error(&mut self.total.counters, kind, count);
        count_error(&mut self.interval.counters, kind, count);
    }

    /// Counts a value read back that is not the key's value.
    pub fn verify_error(&mut self) {
        self.total.counters.verify_errors += 1;
        self.interval.counters.verify_errors += 1;
    }

    /// Counts a re-established connection.
    pub fn reconnect(&mut self) {
        self.total.counters.reconnects += 1;
        self.interval.counters.reconnects += 1;
    }

    /// Moves the interval part into `shared`.
    pub fn flush_into(&mut self, shared: &IntervalStats) {
        if self.interval.counters == Counters::default() && self.interval.latency.is_empty() {
            return;
        }
        shared.merge(&self.interval);
        self.interval.reset();
    }
}

/// The measurements of all connections since the last progress line.
#[derive(Debug, Default)]
pub struct IntervalStats {
    current: Mutex<Measurements>,
}

impl IntervalStats {
    /// Adds a connection's interval.
    pub fn merge(&self, part: &Measurements) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(part);
    }

    /// Takes what was gathered since the last call.
    pub fn take(&self) -> Measurements {
        std::mem::take(&mut *self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    //! Counting rules.

    use super::*;

    #[test]
    fn warmup_operations_count_errors_only() {
        let mut recorder = Recorder::default();
        let ms = Duration::from_millis(1);
        recorder.record(true, Outcome::Hit, ms, false);
        recorder.record(false, Outcome::Failed(ErrorKind::Server), ms, false);
        assert_eq!(recorder.total.counters.ops, 0);
        assert_eq!(recorder.total.counters.server_errors, 1);
        assert_eq!(recorder.interval.counters.ops, 2);
        recorder.record(true, Outcome::Miss, ms, true);
        recorder.record(false, Outcome::Stored, 2 * ms, true);
        let total = &recorder.total;
        assert_eq!(
            (
                total.counters.ops,
                total.counters.misses,
                total.counters.sets
            ),
            (2, 1, 1)
        );
        assert_eq!(total.latency.len(), 2);
        assert!(total.latency.max() >= 1_999_000);
        let shared = IntervalStats::default();
        recorder.flush_into(&shared);
        assert_eq!(recorder.interval.counters.ops, 0);
        assert_eq!(shared.take().counters.ops, 4);
        assert_eq!(shared.take().counters.ops, 0);
    }

    #[test]
    fn errors_add_up() {
        let mut recorder = Recorder::default();
        recorder.errors(ErrorKind::Connection, 3);
        recorder.errors(ErrorKind::Timeout, 1);
        recorder.verify_error();
        assert_eq!(recorder.total.counters.errors(), 4);
        assert_eq!(recorder.total.counters.verify_errors, 1);
    }
}
