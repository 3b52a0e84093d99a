//! The Prometheus endpoint: scraped over HTTP after some traffic, its
//! figures checked, and the exposition linted by `promtool check metrics`
//! (Debian's `prometheus` package; `tests/run.sh` installs it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use mcstore_e2e::{Client, Mcstore};

fn metrics_addr(server: &Mcstore) -> SocketAddr {
    let stderr = server.stderr();
    let rest = stderr
        .split("metrics_addr=")
        .nth(1)
        .unwrap_or_else(|| panic!("no serving metrics event in:\n{stderr}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// One HTTP request; the status line, headers and body.
fn http(addr: SocketAddr, request: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_endpoint_is_scraped_and_passes_promtool() {
    let server = Mcstore::start(&["--metrics-listen", "127.0.0.1:0"]);
    let mut client = Client::connect(server.addr(), Duration::from_secs(5)).unwrap();
    for i in 0..20 {
        assert_eq!(
            client.set(&format!("k{i}"), 0, 0, b"value").unwrap(),
            "STORED"
        );
    }
    assert!(client.get("k1").unwrap().is_some());
    assert!(client.get("missing").unwrap().is_none());

    let addr = metrics_addr(&server);
    let (status, headers, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert_eq!(sample(&body, "mcstore_cmd_set_total"), 20.0);
    assert_eq!(sample(&body, "mcstore_get_hits_total"), 1.0);
    assert_eq!(sample(&body, "mcstore_get_misses_total"), 1.0);
    assert_eq!(sample(&body, "mcstore_items"), 20.0);
    assert_eq!(sample(&body, "mcstore_current_connections"), 1.0);
    assert!(sample(&body, "mcstore_storage_fsync_duration_seconds_count") >= 1.0);
    assert!(sample(&body, "mcstore_storage_batch_operations_count") >= 1.0);
    assert!(body.contains("mcstore_storage_fsync_duration_seconds_bucket{le=\"+Inf\"}"));
    assert!(body.contains("# TYPE mcstore_storage_fsync_duration_seconds histogram"));
    assert!(body.contains("mcstore_disk_bytes{part=\"wal\"}"));

    let (status, _, _) = http(addr, "GET /nothing HTTP/1.1\r\n\r\n");
    assert!(status.contains("404"), "{status}");
    let (status, _, _) = http(addr, "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(status.contains("405"), "{status}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}\n{body}"
    );
}

#[test]
fn metrics_are_off_unless_asked_for() {
    let server = Mcstore::start(&[]);
    assert!(!server.stderr().contains("metrics_addr="));
}
