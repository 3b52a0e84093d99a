//! The end of a run: the JSON object (`--json`, one line) and the human
//! summary.

use serde::Serialize;

use crate::args::Args;
use crate::run::RunSummary;

/// Error counts by kind.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorBreakdown {
    /// No reply within the timeout.
    pub timeouts: u64,
    /// `SERVER_ERROR` replies.
    pub server_errors: u64,
    /// `CLIENT_ERROR` replies.
    pub client_errors: u64,
    /// `ERROR` and replies that did not fit the request.
    pub protocol_errors: u64,
    /// Requests lost to closed or failed connections.
    pub connection_errors: u64,
}

/// The result of a run as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Operations completed in the measured window.
    pub ops: u64,
    /// `ops / duration_s`.
    pub ops_per_sec: f64,
    /// The measured window, in seconds.
    pub duration_s: f64,
    /// Sets completed.
    pub sets: u64,
    /// Gets completed.
    pub gets: u64,
    /// Gets that found their key.
    pub hits: u64,
    /// Gets that did not.
    pub misses: u64,
    /// All errors (see `error_breakdown`), over the whole run.
    pub errors: u64,
    /// Values read back that were not the key's value.
    pub verify_errors: u64,
    /// Latency percentiles and extremes, in microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest latency.
    pub max_us: f64,
    /// Mean latency.
    pub mean_us: f64,
    /// Errors by kind.
    pub error_breakdown: ErrorBreakdown,
    /// Connections re-established after failures.
    pub reconnects: u64,
    /// Connections used.
    pub connections: usize,
    /// Connections that failed for good.
    pub dead_connections: usize,
    /// Requests in flight per connection.
    pub pipeline: u32,
    /// The workload, as given.
    pub workload: String,
    /// The key distribution, as given.
    pub distribution: String,
    /// Open-loop target rate, if any.
    pub target_rate: Option<f64>,
    /// Keys stored by the prefill.
    pub prefill_stored: u64,
    /// Failed prefill sets.
    pub prefill_errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Report {
    /// The report of `summary` for a run of `args`.
    pub fn new(args: &Args, summary: &RunSummary) -> Report {
        let counters = &summary.measurements.counters;
        let latency = &summary.measurements.latency;
        let us = |nanos: u64| nanos as f64 / 1000.0;
        let quantile = |q: f64| {
            if latency.is_empty() {
                0.0
            } else {
                us(latency.value_at_quantile(q))
            }
        };
        let duration_s = summary.duration.as_secs_f64();
        let prefill = summary.prefill.clone().unwrap_or_default();
        Report {
            ops: counters.ops,
            ops_per_sec: if duration_s > 0.0 {
                counters.ops as f64 / duration_s
            } else {
                0.0
            },
            duration_s,
            sets: counters.sets,
            gets: counters.gets,
            hits: counters.hits,
            misses: counters.misses,
            errors: counters.errors(),
            verify_errors: counters.verify_errors,
            p50_us: quantile(0.50),
            p90_us: quantile(0.90),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
            max_us: if latency.is_empty() {
                0.0
            } else {
                us(latency.max())
            },
            mean_us: if latency.is_empty() {
                0.0
            } else {
                latency.mean() / 1000.0
            },
            error_breakdown: ErrorBreakdown {
                timeouts: counters.timeouts,
                server_errors: counters.server_errors,
                client_errors: counters.client_errors,
                protocol_errors: counters.protocol_errors,
                connection_errors: counters.connection_errors,
            },
            reconnects: counters.reconnects,
            connections: summary.connections,
            dead_connections: summary.dead_connections,
            pipeline: args.pipeline,
            workload: args.workload.to_string(),
            distribution: args.distribution.to_string(),
            target_rate: args.rate,
            prefill_stored: prefill.stored,
            prefill_errors: prefill.errors,
            first_error: summary.first_error.clone().or(prefill.first_error),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// The report for people.
    pub fn to_human(&self) -> String {
        let mut text = format!(
            "workload {} ({}), {} connections x pipeline {}{}\n",
            self.workload,
            self.distribution,
            self.connections,
            self.pipeline,
            match self.target_rate {
                Some(rate) => format!(", open loop at {rate:.0} ops/s"),
                None => ", closed loop".to_owned(),
            }
        );
        text += &format!(
            "ops          {} in {:.2} s = {:.0} ops/s (sets {}, gets {})\n",
            self.ops, self.duration_s, self.ops_per_sec, self.sets, self.gets
        );
        text += &format!("gets         hits {}, misses {}\n", self.hits, self.misses);
        text += &format!(
            "latency us   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}\n",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us, self.mean_us
        );
        let breakdown = &self.error_breakdown;
        text += &format!(
            "errors       {} (timeouts {}, server {}, client {}, protocol {}, connection {}), reconnects {}, dead connections {}\n",
            self.errors,
            breakdown.timeouts,
            breakdown.server_errors,
            breakdown.client_errors,
            breakdown.protocol_errors,
            breakdown.connection_errors,
            self.reconnects,
            self.dead_connections
        );
        text += &format!("verify errors {}\n", self.verify_errors);
        if self.prefill_stored > 0 || self.prefill_errors > 0 {
            text += &format!(
                "prefill      {} stored, {} errors\n",
                self.prefill_stored, self.prefill_errors
            );
        }
        if let Some(error) = &self.first_error {
            text += &format!("first error  {error}\n");
        }
        text
    }
}
