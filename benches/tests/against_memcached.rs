//! End-to-end runs of the `mcstore-bench` binary against real memcached
//! servers on ephemeral loopback ports.

mod common;

use std::time::Duration;

use common::{count, free_port, json_report, run_bench, Memcached, RawClient};
use mcstore_bench::args::ValueSize;
use mcstore_bench::workload::{KeySpace, ValueSource};
use mcstore_cluster::Ring;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn set_run_has_ops_and_no_errors_and_json_has_every_field() {
    let server = Memcached::start();
    let output = run_bench(
        &[
            "--servers",
            &server.addr().to_string(),
            "--connections",
            "4",
            "--duration",
            "1",
            "--keys",
            "1000",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output);
    for field in [
        "ops_per_sec",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "duration_s",
    ] {
        assert!(report[field].is_f64(), "{field} missing in {report}");
    }
    for field in ["errors", "misses", "hits", "verify_errors", "ops"] {
        count(&report, field);
    }
    assert!(count(&report, "ops") > 0);
    assert_eq!(count(&report, "errors"), 0);
    assert_eq!(count(&report, "sets"), count(&report, "ops"));
    let p50 = report["p50_us"].as_f64().unwrap();
    let p99 = report["p99_us"].as_f64().unwrap();
    let max = report["max_us"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    let rate = report["ops_per_sec"].as_f64().unwrap();
    let expected = count(&report, "ops") as f64 / report["duration_s"].as_f64().unwrap();
    assert!((rate - expected).abs() < 1e-6);
    // The human summary is not printed with --json.
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    // Progress lines go to stderr.
    assert!(String::from_utf8_lossy(&output.stderr).contains("ops/s"));
}

#[test]
fn prefilled_mixed_zipf_open_loop_run_hits_every_get() {
    let server = Memcached::start();
    let output = run_bench(
        &[
            "--servers",
            &server.addr().to_string(),
            "--connections",
            "4",
            "--pipeline",
            "4",
            "--workload",
            "mixed:0.8",
            "--distribution",
            "zipf:0.99",
            "--keys",
            "2000",
            "--value-size",
            "10-300",
            "--prefill",
            "--verify",
            "--rate",
            "4000",
            "--warmup",
            "0.3",
            "--duration",
            "1",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output);
    assert_eq!(count(&report, "prefill_stored"), 2000);
    assert!(count(&report, "hits") > 0);
    assert_eq!(count(&report, "misses"), 0);
    assert_eq!(count(&report, "errors"), 0);
    assert_eq!(count(&report, "verify_errors"), 0);
    assert!(count(&report, "sets") > 0 && count(&report, "gets") > count(&report, "sets"));
    // Open loop: about 4000 ops/s over the measured second, not the
    // server's maximum.
    let rate = report["ops_per_sec"].as_f64().unwrap();
    assert!((3000.0..=4400.0).contains(&rate), "rate {rate}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("prefill ["));
}

#[test]
fn verify_counts_values_that_are_not_the_keys_value() {
    let server = Memcached::start();
    let keys = KeySpace::new(10, 16);
    let values = ValueSource::new(ValueSize { min: 100, max: 100 }, 1);
    let mut client = RawClient::connect(server.addr());
    for index in 0..10 {
        let right = values.value(index);
        if index < 5 {
            let mut wrong = right.to_vec();
            wrong[7] = if wrong[7] == b'#' { b'%' } else { b'#' };
            client.set(&keys.key(index), &wrong);
        } else {
            client.set(&keys.key(index), &right);
        }
    }
    let output = run_bench(
        &[
            "--servers",
            &server.addr().to_string(),
            "--connections",
            "2",
            "--workload",
            "get",
            "--keys",
            "10",
            "--key-size",
            "16",
            "--verify",
            "--duration",
            "0.5",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output);
    let hits = count(&report, "hits");
    let verify_errors = count(&report, "verify_errors");
    assert!(verify_errors > 0, "{report}");
    assert_eq!(count(&report, "misses"), 0);
    // Half the keys hold the right value: they must not be reported.
    assert!(verify_errors < hits, "{report}");
    assert!(report["first_error"]
        .as_str()
        .unwrap_or_default()
        .contains("verify failed"));
}

#[test]
fn keys_go_to_the_server_the_ketama_ring_names() {
    let first = Memcached::start();
    let second = Memcached::start();
    let servers = format!("{},{}", first.addr(), second.addr());
    let output = run_bench(
        &[
            "--servers",
            &servers,
            "--connections",
            "4",
            "--keys",
            "300",
            "--key-size",
            "20",
            "--prefill",
            "--duration",
            "0.2",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output);
    assert_eq!(count(&report, "prefill_stored"), 300);
    let ring =
        Ring::unweighted([("127.0.0.1", first.port()), ("127.0.0.1", second.port())]).unwrap();
    let keys = KeySpace::new(300, 20);
    let mut clients = [
        RawClient::connect(first.addr()),
        RawClient::connect(second.addr()),
    ];
    let mut per_server = [0, 0];
    for index in 0..300 {
        let key = keys.key(index);
        let owner = ring.server_index(&key);
        per_server[owner] += 1;
        assert!(
            clients[owner].get(&key).is_some(),
            "key {index} not on its owner"
        );
        assert!(
            clients[1 - owner].get(&key).is_none(),
            "key {index} on the wrong server"
        );
    }
    assert!(per_server[0] > 50 && per_server[1] > 50, "{per_server:?}");
}

#[test]
fn a_server_that_goes_away_ends_the_run_with_an_error() {
    let mut server = Memcached::start();
    let addr = server.addr().to_string();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        server.kill();
    });
    let output = run_bench(
        &["--servers", &addr, "--connections", "4", "--duration", "10"],
        LIMIT,
    );
    killer.join().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("went away"), "stderr: {stderr}");
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let port = free_port();
    let output = run_bench(
        &["--servers", &format!("127.0.0.1:{port}"), "--duration", "1"],
        LIMIT,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "stderr: {stderr}");
}

#[test]
fn bad_arguments_are_rejected_with_a_message() {
    for (args, needle) in [
        (
            &["--servers", "127.0.0.1:1", "--workload", "mixed:2"][..],
            "workload",
        ),
        (
            &["--servers", "127.0.0.1:1", "--value-size", "9-3"][..],
            "value size",
        ),
        (
            &["--servers", "127.0.0.1:1", "--distribution", "zipf"][..],
            "zipf",
        ),
        (
            &["--servers", "127.0.0.1:1", "--key-size", "2"][..],
            "key-size",
        ),
    ] {
        let output = run_bench(args, LIMIT);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
