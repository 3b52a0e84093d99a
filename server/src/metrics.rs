//! The Prometheus endpoint (`--metrics-listen 127.0.0.1:9150`, off by
//! default): `GET /metrics` answers the text exposition format 0.0.4.
//!
//! Names follow Prometheus' conventions: the `mcstore_` prefix, base units
//! in the name (`_seconds`, `_bytes`), `_total` on counters. What is
//! exported:
//!
//! - memcached's `stats` counters as counters (`mcstore_cmd_get_total`,
//!   `mcstore_get_hits_total`, ..., `mcstore_client_read_bytes_total`),
//!   and its gauges (`mcstore_current_connections`, `mcstore_items`,
//!   `mcstore_item_bytes`, ...);
//! - the storage layer's figures: group commits and their operations, the
//!   fsync latency histogram `mcstore_storage_fsync_duration_seconds`, the
//!   batch size histogram `mcstore_storage_batch_operations`, checkpoints,
//!   reclaimed items, tombstones, disk bytes, corrupt records.
//!
//! Extension point: anything implementing [`MetricsSource`] can be added to
//! the [`Registry`] the endpoint serves (the cluster's membership,
//! forwarding and replication figures are meant to arrive that way, in a
//! source of their own next to [`NodeMetrics`]).
//!
//! The HTTP side is a few dozen lines on tokio rather than a web framework:
//! one route, `GET`/`HEAD`, `Connection: close`, a bounded request head.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mcstore_storage::stats::HistogramSnapshot;
use mcstore_storage::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::session::NodeInfo;
use crate::stats::Shared;

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Most bytes of a request head read before answering 431.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a scrape may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// fsync latency bucket bounds, microseconds.
const FSYNC_BOUNDS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// Batch size bucket bounds, operations.
const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384];

/// Something that adds metric families to a scrape.
pub trait MetricsSource: Send + Sync {
    /// Writes this source's families into `out`.
    fn collect(&self, out: &mut Exposition);
}

/// The sources a scrape reads, in order.
#[derive(Default)]
pub struct Registry {
    sources: Vec<Arc<dyn MetricsSource>>,
}

impl Registry {
    /// Adds a source.
    pub fn register(&mut self, source: Arc<dyn MetricsSource>) {
        self.sources.push(source);
    }

    /// The exposition of every source.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        for source in &self.sources {
            source.collect(&mut out);
        }
        out.text
    }
}

/// A text exposition being written: one `# HELP` and `# TYPE` per family,
/// then its samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
    families: HashSet<String>,
}

/// A label set: `(name, value)` pairs.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    /// Starts a family (`kind`: `counter`, `gauge`, `histogram`); panics in
    /// debug builds if one is started twice, which Prometheus would refuse.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let new = self.families.insert(name.to_owned());
        debug_assert!(new, "metric family {name} written twice");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value as f64);
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A histogram family from a snapshot whose bounds and sum are divided
    /// by `divisor` (e.g. 1e6 for microseconds into seconds).
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        snapshot: &HistogramSnapshot,
        divisor: f64,
    ) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for &(bound, count) in &snapshot.buckets {
            let le = format_value(bound as f64 / divisor);
            self.sample(&bucket, &[("le", &le)], count as f64);
        }
        self.sample(&bucket, &[("le", "+Inf")], snapshot.count as f64);
        self.sample(&format!("{name}_sum"), &[], snapshot.sum as f64 / divisor);
        self.sample(&format!("{name}_count"), &[], snapshot.count as f64);
    }
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

/// The node's own figures: memcached's `stats` and the storage layer's.
pub struct NodeMetrics {
    /// The node's data.
    pub store: Arc<Store>,
    /// The node's settings.
    pub node: Arc<NodeInfo>,
    /// The connections' counters.
    pub shared: Arc<Shared>,
}

/// The exported name and help of a memcached counter.
fn counter_name(stat: &str) -> (String, String) {
    let (name, help) = match stat {
        "bytes_read" => ("client_read_bytes", "Bytes read from clients."),
        "bytes_written" => ("client_written_bytes", "Bytes written to clients."),
        "total_items" => ("items_stored", "Items stored (memcached's total_items)."),
        "total_connections" => ("connections_accepted", "Client connections accepted."),
        "rejected_connections" => (
            "connections_rejected",
            "Client connections refused at --max-connections.",
        ),
        other => {
            return (
                format!("mcstore_{other}_total"),
                format!("memcached's {other} counter."),
            )
        }
    };
    (format!("mcstore_{name}_total"), help.to_owned())
}

impl MetricsSource for NodeMetrics {
    fn collect(&self, out: &mut Exposition) {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        out.gauge(
            "mcstore_uptime_seconds",
            "Seconds since the node started.",
            self.node.started.elapsed().as_secs_f64(),
        );
        for (stat, value) in self.shared.counters.snapshot() {
            let (name, help) = counter_name(stat);
            out.counter(&name, &help, value);
        }
        out.gauge(
            "mcstore_current_connections",
            "Open client connections.",
            load(&self.shared.curr_connections) as f64,
        );
        out.gauge(
            "mcstore_max_connections",
            "The --max-connections limit.",
            self.node.max_connections as f64,
        );
        let storage = self.store.stats();
        out.gauge(
            "mcstore_items",
            "Items stored (memcached's curr_items).",
            load(&storage.items) as f64,
        );
        out.gauge(
            "mcstore_item_bytes",
            "Bytes of the items, counted as memcached counts them.",
            load(&storage.bytes) as f64,
        );
        out.gauge(
            "mcstore_tombstones",
            "Deleted keys' tombstones kept.",
            load(&storage.tombstones) as f64,
        );
        let (engine_bytes, wal_bytes) = self.store.disk_bytes();
        out.family("mcstore_disk_bytes", "gauge", "Bytes on disk, by part.");
        out.sample(
            "mcstore_disk_bytes",
            &[("part", "engine")],
            engine_bytes as f64,
        );
        out.sample("mcstore_disk_bytes", &[("part", "wal")], wal_bytes as f64);
        out.counter(
            "mcstore_storage_batches_total",
            "Group commits with at least one operation.",
            load(&storage.batches),
        );
        out.counter(
            "mcstore_storage_batched_operations_total",
            "Operations in group commits.",
            load(&storage.batched_ops),
        );
        out.histogram(
            "mcstore_storage_batch_operations",
            "Operations per group commit.",
            &storage.batch_buckets(BATCH_BOUNDS),
            1.0,
        );
        out.histogram(
            "mcstore_storage_fsync_duration_seconds",
            "Time of each fdatasync of the write-ahead log.",
            &storage.fsync_buckets(FSYNC_BOUNDS_US),
            1e6,
        );
        out.counter(
            "mcstore_storage_checkpoints_total",
            "Engine checkpoints made durable.",
            load(&storage.checkpoints),
        );
        out.counter(
            "mcstore_storage_reclaimed_total",
            "Expired and flushed items removed by the reclaimer.",
            load(&storage.reclaimed),
        );
        out.counter(
            "mcstore_storage_tombstones_purged_total",
            "Tombstones purged after their grace period.",
            load(&storage.purged),
        );
        out.counter(
            "mcstore_storage_corrupt_records_total",
            "Stored records that failed their checksum.",
            load(&storage.corrupt_records),
        );
        out.counter(
            "mcstore_storage_applied_total",
            "Records from other nodes kept.",
            load(&storage.applied),
        );
        out.counter(
            "mcstore_storage_applied_stale_total",
            "Records from other nodes not newer than the stored one.",
            load(&storage.applied_stale),
        );
        out.counter(
            "mcstore_storage_clock_skew_refused_total",
            "Records from other nodes refused for a clock too far ahead.",
            load(&storage.clock_skew_refused),
        );
        if let Some(cache) = self.store.record_cache_stats() {
            out.counter(
                "mcstore_storage_record_cache_hits_total",
                "Reads answered by the cache of hot records.",
                cache.hits,
            );
            out.counter(
                "mcstore_storage_record_cache_misses_total",
                "Reads the cache of hot records passed to the engine.",
                cache.misses,
            );
            out.gauge(
                "mcstore_storage_record_cache_bytes",
                "Bytes held by the cache of hot records.",
                cache.bytes as f64,
            );
        }
        out.gauge(
            "mcstore_change_stream_sequence",
            "Sequence number of the last change published to the change stream.",
            self.store.published_seq() as f64,
        );
    }
}

/// Serves `registry` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let registry = registry.clone();
                tokio::spawn(async move {
                    if let Err(err) = answer(stream, &registry).await {
                        tracing::debug!(cause = %err, "metrics request failed");
                    }
                });
            }
            Err(err) => {
                tracing::warn!(cause = %err, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let complete = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        loop {
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok::<bool, std::io::Error>(true);
            }
            if head.len() > MAX_REQUEST_HEAD {
                return Ok(false);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body, content_type) = if !complete {
        ("400 Bad Request", "bad request\n".to_owned(), "text/plain")
    } else if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "only GET\n".to_owned(),
            "text/plain",
        )
    } else if path == "/metrics" {
        ("200 OK", registry.render(), CONTENT_TYPE)
    } else if path == "/" {
        (
            "200 OK",
            "mcstore: metrics are at /metrics\n".to_owned(),
            "text/plain",
        )
    } else {
        (
            "404 Not Found",
            "not found; try /metrics\n".to_owned(),
            "text/plain",
        )
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl MetricsSource for Fixed {
        fn collect(&self, out: &mut Exposition) {
            out.counter("mcstore_test_total", "A test counter.", 3);
            let snapshot = HistogramSnapshot {
                buckets: vec![(100, 1), (1000, 2)],
                count: 3,
                sum: 5000,
            };
            out.histogram("mcstore_test_seconds", "A test histogram.", &snapshot, 1e6);
        }
    }

    #[test]
    fn sources_render_the_text_format() {
        let mut registry = Registry::default();
        registry.register(Arc::new(Fixed));
        let text = registry.render();
        assert!(text.contains("# TYPE mcstore_test_total counter\nmcstore_test_total 3\n"));
        assert!(text.contains("mcstore_test_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("mcstore_test_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("mcstore_test_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("mcstore_test_seconds_sum 0.005\n"));
        assert!(text.contains("mcstore_test_seconds_count 3\n"));
    }

    #[test]
    fn counter_names_follow_conventions() {
        assert_eq!(counter_name("cmd_get").0, "mcstore_cmd_get_total");
        assert_eq!(
            counter_name("bytes_read").0,
            "mcstore_client_read_bytes_total"
        );
    }
}
