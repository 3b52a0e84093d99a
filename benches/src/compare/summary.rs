//! The numbers of the report: a [`Cell`] of the workload matrix, the
//! [`Sample`]s measured for each system in it, their medians and the ratios
//! to memcached.

use std::collections::BTreeMap;

use crate::args::WorkloadKind;

use super::servers::System;

/// One point of the workload matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// set-only, `mixed:R` or get-only (after a prefill).
    pub workload: WorkloadKind,
    /// Value size in bytes.
    pub value_size: usize,
    /// Client connections.
    pub connections: u32,
    /// Requests in flight per connection.
    pub pipeline: u32,
}

impl Cell {
    /// A short human label, e.g. `mixed:0.9 4096B c32 p16`.
    pub fn label(&self) -> String {
        format!(
            "{} {}B c{} p{}",
            self.workload, self.value_size, self.connections, self.pipeline
        )
    }

    /// Whether the workload reads, so the keys must be stored first.
    pub fn needs_prefill(&self) -> bool {
        self.workload.get_fraction() > 0.0
    }
}

/// One measured run of one system on one cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Operations per second.
    pub ops_per_sec: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Errors the client counted (always 0 for redis-benchmark, which does
    /// not count them).
    pub errors: u64,
}

/// The median of `values` (the mean of the two middle ones for an even
/// count); `None` when empty. NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

/// `value / reference`, or `None` without a positive finite reference.
pub fn ratio(value: f64, reference: f64) -> Option<f64> {
    (reference.is_finite() && reference > 0.0 && value.is_finite()).then(|| value / reference)
}

/// The medians of one system on one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Median operations per second.
    pub ops_per_sec: f64,
    /// Median p99, microseconds.
    pub p99_us: f64,
    /// Errors summed over the runs.
    pub errors: u64,
    /// Runs that produced a sample.
    pub runs: usize,
    /// Runs that failed (their error messages).
    pub failures: Vec<String>,
}

/// Every sample and failure, by cell and system.
#[derive(Debug, Default, Clone)]
pub struct Results {
    samples: BTreeMap<(usize, System), Vec<Sample>>,
    failures: BTreeMap<(usize, System), Vec<String>>,
}

impl Results {
    /// Records a run of `system` on cell number `cell`.
    pub fn record(&mut self, cell: usize, system: System, sample: Sample) {
        self.samples.entry((cell, system)).or_default().push(sample);
    }

    /// Records a failed run.
    pub fn record_failure(&mut self, cell: usize, system: System, error: String) {
        self.failures.entry((cell, system)).or_default().push(error);
    }

    /// The medians of `system` on cell number `cell`; `None` if it never ran.
    pub fn outcome(&self, cell: usize, system: System) -> Option<Outcome> {
        let samples = self
            .samples
            .get(&(cell, system))
            .map_or(&[][..], Vec::as_slice);
        let failures = self
            .failures
            .get(&(cell, system))
            .cloned()
            .unwrap_or_default();
        if samples.is_empty() && failures.is_empty() {
            return None;
        }
        let ops: Vec<f64> = samples.iter().map(|s| s.ops_per_sec).collect();
        let p99: Vec<f64> = samples.iter().map(|s| s.p99_us).collect();
        Some(Outcome {
            ops_per_sec: median(&ops).unwrap_or(0.0),
            p99_us: median(&p99).unwrap_or(0.0),
            errors: samples.iter().map(|s| s.errors).sum(),
            runs: samples.len(),
            failures,
        })
    }

    /// `system`'s median throughput and p99 on cell `cell` as ratios to
    /// memcached's: `(ops ratio, p99 ratio)`.
    pub fn ratios_to_memcached(&self, cell: usize, system: System) -> (Option<f64>, Option<f64>) {
        match (
            self.outcome(cell, system),
            self.outcome(cell, System::Memcached),
        ) {
            (Some(this), Some(reference)) if this.runs > 0 && reference.runs > 0 => (
                ratio(this.ops_per_sec, reference.ops_per_sec),
                ratio(this.p99_us, reference.p99_us),
            ),
            _ => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[3.0, 100.0, 2.0, 1.0, 50.0]), Some(3.0));
    }

    #[test]
    fn ratio_needs_a_positive_reference() {
        assert_eq!(ratio(50.0, 200.0), Some(0.25));
        assert_eq!(ratio(50.0, 0.0), None);
        assert_eq!(ratio(50.0, -1.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    fn sample(ops: f64, p99: f64) -> Sample {
        Sample {
            ops_per_sec: ops,
            p99_us: p99,
            errors: 1,
        }
    }

    #[test]
    fn outcomes_are_medians_and_ratios_are_to_memcached() {
        let mut results = Results::default();
        for (ops, p99) in [(100.0, 10.0), (300.0, 30.0), (200.0, 20.0)] {
            results.record(0, System::Memcached, sample(ops, p99));
        }
        for (ops, p99) in [(50.0, 90.0), (10.0, 40.0), (70.0, 60.0)] {
            results.record(0, System::McstoreAlways, sample(ops, p99));
        }
        results.record_failure(0, System::McstoreAlways, "boom".into());
        let mc = results.outcome(0, System::Memcached).unwrap();
        assert_eq!((mc.ops_per_sec, mc.p99_us, mc.runs), (200.0, 20.0, 3));
        let always = results.outcome(0, System::McstoreAlways).unwrap();
        assert_eq!((always.ops_per_sec, always.p99_us), (50.0, 60.0));
        assert_eq!(always.errors, 3);
        assert_eq!(always.failures, vec!["boom".to_owned()]);
        assert_eq!(
            results.ratios_to_memcached(0, System::McstoreAlways),
            (Some(0.25), Some(3.0))
        );
        assert_eq!(results.outcome(1, System::Memcached), None);
        assert_eq!(
            results.ratios_to_memcached(0, System::RedisAlways),
            (None, None)
        );
    }
}
