//! `mcstore-bench`: a load generator for memcache servers (memcached,
//! mcstore), in the spirit of memaslap and memtier_benchmark.
//!
//! # Layout
//! - [`args`]: the command line and its validation.
//! - [`workload`]: the key space, the deterministic values and the per
//!   connection operation generator (uniform or zipf keys, get/set mix),
//!   with keys placed on servers by the ketama ring.
//! - [`stats`]: counters and HDR latency histograms.
//! - [`driver`]: one connection's request loop (pipelined, closed or open
//!   loop, timeouts, reconnects) and the prefill loop.
//! - [`run`]: connects, prefills, runs the connections and prints progress.
//! - [`client_run`]: `--seeds` and `--via-client`: the run through
//!   `mcstore-client`, with throughput per node.
//! - [`report`]: the final human summary and the JSON object.
//! - [`workers`]: the pinned single-threaded runtimes the connections run on.
//! - [`compare`]: `mcstore-compare`, memcached, mcstore and Redis on one
//!   workload matrix, with a markdown report and an SVG chart.
#![deny(missing_docs)]

pub mod args;
pub mod client_run;
pub mod compare;
pub mod driver;
pub mod report;
pub mod run;
pub mod stats;
pub mod workers;
pub mod workload;
