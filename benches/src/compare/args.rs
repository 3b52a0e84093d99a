//! The `mcstore-compare` command line, and the workload matrix and run
//! settings ([`Plan`]) it resolves to, `--quick` included.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use crate::args::WorkloadKind;

use super::servers::System;
use super::summary::Cell;

/// Where a run writes unless told otherwise: under `target/`, never docs/.
pub const DEFAULT_OUT: &str = "target/mcstore-compare";
/// Where `--publish` writes: the published report.
pub const PUBLISHED_DIR: &str = "docs";

/// Compare mcstore with memcached and Redis on loopback, on one workload
/// matrix, and write a markdown report with an SVG chart.
///
/// The report, chart and summary go to --out (default
/// target/mcstore-compare); only --publish updates the published report in
/// docs/ (docs/compare.md, docs/compare.svg and the summary section of
/// docs/benchmarks.md).
#[derive(Debug, Clone, Parser)]
#[command(name = "mcstore-compare", version)]
pub struct CompareArgs {
    /// Runs per system and cell; the report shows medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Seconds per run.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Directory for the report (`compare.md`), its chart (`compare.svg`)
    /// and the summary (`benchmarks.md`, its summary section replaced or
    /// appended; created if missing). Ignored with --publish.
    #[arg(long, default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Write the published report instead: docs/compare.md, docs/compare.svg
    /// and the summary section of docs/benchmarks.md (paths from the current
    /// directory, the workspace root).
    #[arg(long)]
    pub publish: bool,
    /// Document whose generated summary section (between the
    /// `mcstore-compare summary` markers) is replaced, or appended if it has
    /// none; created if missing (default: `benchmarks.md` in the output
    /// directory).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// One run of 0.5 s on a reduced matrix (set, mixed:0.9 and get; 100 B;
    /// 4 connections; pipeline 1) and 2,000 keys, for tests.
    #[arg(long)]
    pub quick: bool,
    /// Workloads, comma separated (`set`, `get`, `mixed:R`).
    #[arg(long, value_delimiter = ',', default_value = "set,mixed:0.9,get")]
    pub workloads: Vec<WorkloadKind>,
    /// Value sizes in bytes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,4096")]
    pub value_sizes: Vec<usize>,
    /// Connection counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub connections: Vec<u32>,
    /// Pipeline depths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub pipelines: Vec<u32>,
    /// Systems, comma separated (default all): memcached, mcstore-always,
    /// mcstore-periodic, mcstore-none, redis-aof-always, redis-aof-everysec.
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Key space size.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// The mcstore server binary (default `MCSTORE_BIN`, then
    /// `target/release/mcstore`).
    #[arg(long, env = "MCSTORE_BIN")]
    pub mcstore_bin: Option<PathBuf>,
    /// The mcstore-bench binary (default: next to this binary).
    #[arg(long)]
    pub bench_bin: Option<PathBuf>,
    /// memcached.
    #[arg(long, default_value = "memcached")]
    pub memcached_bin: PathBuf,
    /// redis-server.
    #[arg(long, default_value = "redis-server")]
    pub redis_server_bin: PathBuf,
    /// redis-benchmark.
    #[arg(long, default_value = "redis-benchmark")]
    pub redis_benchmark_bin: PathBuf,
}

/// What to run, resolved from [`CompareArgs`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The matrix, in run order.
    pub cells: Vec<Cell>,
    /// The systems, in report order (memcached first when present).
    pub systems: Vec<System>,
    /// Runs per system and cell.
    pub runs: u32,
    /// Measured time per run.
    pub duration: Duration,
    /// mcstore-bench warm-up before each measured window.
    pub warmup: Duration,
    /// Key space.
    pub keys: u64,
    /// Key size for mcstore-bench, close to redis-benchmark's
    /// `key:NNNNNNNNNNNN` (16 bytes).
    pub key_size: usize,
    /// Whether this is the `--quick` matrix.
    pub quick: bool,
}

impl CompareArgs {
    /// The plan these flags describe.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= 3600.0) {
            bail!("--duration must be between 0 and 3600 seconds");
        }
        let systems = if self.systems.is_empty() {
            System::ALL.to_vec()
        } else {
            let mut systems = self
                .systems
                .iter()
                .map(|name| {
                    System::from_name(name).with_context(|| format!("unknown system `{name}`"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            systems.sort();
            systems.dedup();
            systems
        };
        let (workloads, value_sizes, connections, pipelines, keys, runs, duration, warmup) =
            if self.quick {
                (
                    vec![
                        WorkloadKind::Set,
                        WorkloadKind::Mixed(0.9),
                        WorkloadKind::Get,
                    ],
                    vec![100],
                    vec![4],
                    vec![1],
                    2_000,
                    1,
                    Duration::from_millis(500),
                    Duration::ZERO,
                )
            } else {
                (
                    self.workloads.clone(),
                    self.value_sizes.clone(),
                    self.connections.clone(),
                    self.pipelines.clone(),
                    self.keys,
                    self.runs,
                    Duration::from_secs_f64(self.duration),
                    Duration::from_millis(500),
                )
            };
        if value_sizes
            .iter()
            .any(|&size| size == 0 || size > crate::args::MAX_VALUE_SIZE)
        {
            bail!("value sizes must be 1..={}", crate::args::MAX_VALUE_SIZE);
        }
        if connections.contains(&0) || pipelines.contains(&0) || keys == 0 {
            bail!("connections, pipelines and keys must be positive");
        }
        let mut cells = Vec::new();
        for &workload in &workloads {
            for &value_size in &value_sizes {
                for &connections in &connections {
                    for &pipeline in &pipelines {
                        cells.push(Cell {
                            workload,
                            value_size,
                            connections,
                            pipeline,
                        });
                    }
                }
            }
        }
        if cells.is_empty() {
            bail!("the workload matrix is empty");
        }
        Ok(Plan {
            cells,
            systems,
            runs,
            duration,
            warmup,
            keys,
            key_size: 16,
            quick: self.quick,
        })
    }

    /// The output directory: `docs` with --publish, else --out.
    pub fn out_dir(&self) -> PathBuf {
        if self.publish {
            PathBuf::from(PUBLISHED_DIR)
        } else {
            self.out.clone()
        }
    }

    /// The markdown report: `compare.md` in the output directory.
    pub fn report_path(&self) -> PathBuf {
        self.out_dir().join("compare.md")
    }

    /// The summary document: `--summary`, or `benchmarks.md` in the output
    /// directory.
    pub fn summary_path(&self) -> PathBuf {
        self.summary
            .clone()
            .unwrap_or_else(|| self.out_dir().join("benchmarks.md"))
    }

    /// The SVG chart: `compare.svg` in the output directory.
    pub fn svg_path(&self) -> PathBuf {
        self.out_dir().join("compare.svg")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matrix_is_24_cells_on_6_systems() {
        let plan = CompareArgs::parse_from(["mcstore-compare"]).plan().unwrap();
        assert_eq!(plan.cells.len(), 24);
        assert_eq!(plan.systems.len(), 6);
        assert_eq!(plan.systems[0], System::Memcached);
        assert_eq!(plan.runs, 3);
        assert_eq!(plan.duration, Duration::from_secs(3));
    }

    #[test]
    fn quick_is_one_short_run_on_three_cells() {
        let plan = CompareArgs::parse_from(["mcstore-compare", "--quick", "--runs", "5"])
            .plan()
            .unwrap();
        assert_eq!(plan.cells.len(), 3);
        assert_eq!(plan.runs, 1);
        assert!(plan.duration < Duration::from_secs(1));
    }

    #[test]
    fn rejects_unknown_systems_and_bad_values() {
        let args = CompareArgs::parse_from(["mcstore-compare", "--systems", "memcached,mysql"]);
        assert!(args.plan().is_err());
        let args = CompareArgs::parse_from(["mcstore-compare", "--value-sizes", "0"]);
        assert!(args.plan().is_err());
        let args = CompareArgs::parse_from(["mcstore-compare", "--duration", "0"]);
        assert!(args.plan().is_err());
        assert_eq!(
            args.svg_path(),
            PathBuf::from("target/mcstore-compare/compare.svg"),
            "the chart sits next to the report"
        );
    }

    #[test]
    fn only_publish_writes_into_docs() {
        let smoke = CompareArgs::parse_from(["mcstore-compare", "--quick"]);
        for path in [smoke.report_path(), smoke.svg_path(), smoke.summary_path()] {
            assert!(path.starts_with("target/mcstore-compare"), "{path:?}");
        }
        let publish = CompareArgs::parse_from(["mcstore-compare", "--publish"]);
        assert_eq!(publish.report_path(), PathBuf::from("docs/compare.md"));
        assert_eq!(publish.svg_path(), PathBuf::from("docs/compare.svg"));
        assert_eq!(publish.summary_path(), PathBuf::from("docs/benchmarks.md"));
    }

    #[test]
    fn help_describes_this_tool() {
        use clap::CommandFactory;
        let about = CompareArgs::command()
            .get_about()
            .map(|about| about.to_string())
            .unwrap_or_default();
        assert!(
            about.starts_with("Compare mcstore with memcached"),
            "{about}"
        );
    }
}
