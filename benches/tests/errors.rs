//! Errors are counted and reported: timeouts and `SERVER_ERROR` replies
//! from fake servers on ephemeral loopback ports.

mod common;

use std::time::Duration;

use common::{count, json_report, run_bench, FakeServer};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn server_errors_are_counted_not_dropped() {
    let server = FakeServer::start(Some(b"SERVER_ERROR out of memory storing object\r\n"));
    let output = run_bench(
        &[
            "--servers",
            &server.addr(),
            "--connections",
            "2",
            "--keys",
            "100",
            "--duration",
            "0.5",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output);
    let errors = count(&report, "errors");
    assert!(errors > 0, "{report}");
    assert_eq!(
        report["error_breakdown"]["server_errors"].as_u64(),
        Some(errors)
    );
    // Every measured operation failed.
    assert!(count(&report, "ops") <= errors);
    assert!(report["first_error"]
        .as_str()
        .unwrap()
        .contains("SERVER_ERROR out of memory"));
}

#[test]
fn requests_without_reply_time_out_and_the_connection_is_reopened() {
    let server = FakeServer::start(None);
    let output = run_bench(
        &[
            "--servers",
            &server.addr(),
            "--connections",
            "2",
            "--pipeline",
            "3",
            "--keys",
            "100",
            "--timeout",
            "200ms",
            "--duration",
            "1",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output);
    let timeouts = report["error_breakdown"]["timeouts"].as_u64().unwrap();
    assert!(timeouts >= 6, "{report}");
    assert_eq!(count(&report, "errors"), timeouts);
    assert!(count(&report, "reconnects") >= 2, "{report}");
    assert_eq!(count(&report, "ops"), 0);
}
