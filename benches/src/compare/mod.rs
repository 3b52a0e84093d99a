//! `mcstore-compare`: one command that starts memcached, mcstore in each
//! `--sync` mode and Redis (AOF `always` and `everysec`) on loopback, runs
//! the same workload matrix against each, interleaved, and writes a
//! markdown report with an SVG chart.
//!
//! # Layout
//! - [`args`]: the command line and the workload matrix it selects.
//! - [`servers`]: the systems under test, started on ephemeral ports and
//!   killed (with their temporary directories removed) on drop.
//! - [`redis`]: `redis-benchmark` invocations and the parsing of `--csv`.
//! - [`summary`]: medians, ratios to memcached, and the per-cell results.
//! - [`runner`]: the interleaved measurement loop (`mcstore-bench` and
//!   `redis-benchmark` as subprocesses with deadlines).
//! - [`render`]: the terminal table, the markdown report and the SVG chart.

pub mod args;
pub mod redis;
pub mod render;
pub mod runner;
pub mod servers;
pub mod summary;
