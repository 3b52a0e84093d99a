//! `mcstore-bench --seeds` against a real three-node cluster: requests go
//! through `mcstore-client` to each key's owner (no node forwards any), and
//! the report has every node's throughput; `--via-client` drives a static
//! server list through the same client code.

mod common;

use std::time::Duration;

use common::{count, json_report, run_bench};
use mcstore_e2e::cluster::{Cluster, FAST_DETECTION};
use mcstore_e2e::Memcached;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn seeds_mode_hits_owners_and_reports_per_node_throughput() {
    let cluster = Cluster::start(3, FAST_DETECTION);
    let seeds = cluster.advertised.join(",");
    let output = run_bench(
        &[
            "--seeds",
            &seeds,
            "--connections",
            "6",
            "--pipeline",
            "2",
            "--workload",
            "mixed:0.8",
            "--keys",
            "2000",
            "--prefill",
            "--verify",
            "--duration",
            "1",
            "--json",
            "--quiet",
        ],
        LIMIT,
    );
    let report = json_report(&output);
    assert!(count(&report, "ops") > 100, "{report}");
    assert_eq!(count(&report, "errors"), 0, "{report}");
    assert_eq!(count(&report, "verify_errors"), 0, "{report}");
    let per_node = report["per_node_ops_per_sec"]
        .as_object()
        .expect("per-node rates");
    assert_eq!(per_node.len(), 3, "{report}");
    for addr in &cluster.advertised {
        assert!(per_node[addr].as_f64().unwrap() > 0.0, "{addr}: {report}");
    }
    assert_eq!(
        cluster.sum_cluster_stat("forwarded"),
        0,
        "owners were hit directly"
    );

    let memcached = Memcached::start();
    let output = run_bench(
        &[
            "--servers",
            &memcached.addr().to_string(),
            "--via-client",
            "--connections",
            "2",
            "--workload",
            "set",
            "--keys",
            "500",
            "--duration",
            "0.5",
            "--json",
            "--quiet",
        ],
        LIMIT,
    );
    let report = json_report(&output);
    assert!(count(&report, "ops") > 10, "{report}");
    assert_eq!(count(&report, "errors"), 0, "{report}");
}
