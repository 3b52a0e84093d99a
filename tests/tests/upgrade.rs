//! A data directory written by the release before record format 3 (format 2
//! records, the old checkpoint and log frames) opens with this build and
//! serves every item, counter and append it held.
//!
//! The fixtures in `tests/fixtures/` were made by
//! `tests/fixtures/make_v2_datadirs.py` with the mcstore binary of commit
//! 2ae394c: `v2-clean` was stopped with SIGTERM (everything checkpointed into
//! sled), `v2-killed` was killed with -9 right after its writes with
//! checkpoints effectively off (the items only in the write-ahead log).

use std::path::Path;
use std::process::Command;

use mcstore_e2e::{escape, exchange, Mcstore};

fn unpack(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mcstore-upgrade-")
        .tempdir()
        .expect("temporary directory");
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(fixture);
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("--strip-components=1")
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("run tar");
    assert!(status.success(), "unpacking {}", tarball.display());
    dir
}

fn ask(server: &Mcstore, input: &[u8], replies: usize) -> String {
    let reply = exchange(server.addr(), input, replies).expect("exchange");
    escape(&reply)
}

fn serves_what_the_old_release_wrote(server: &Mcstore) {
    assert_eq!(
        ask(server, b"get plain flagged far counter grown gone\r\n", 1),
        escape(
            b"VALUE plain 0 5\r\nhello\r\nVALUE flagged 3735928559 3\r\nabc\r\n\
              VALUE far 7 6\r\nfuture\r\nVALUE counter 0 2\r\n42\r\n\
              VALUE grown 0 13\r\nstart-mid-end\r\nEND\r\n"
        )
    );
    // The absolute expiry survived: `t` counts down to 2036-07-18 (unix 2100000000).
    let ttl = ask(server, b"mg far t\r\n", 1);
    let seconds: i64 = ttl
        .trim_start_matches("HD t")
        .trim_end_matches("\\r\\n")
        .parse()
        .unwrap_or_else(|_| panic!("unexpected mg reply {ttl}"));
    assert!(seconds > 100_000_000, "{ttl}");
    // The stale mark set by `md I` is still there: the first reader wins.
    assert_eq!(
        ask(server, b"mg stale v\r\n", 1),
        "VA 4 X W\\r\\nold!\\r\\n"
    );
    // Counters and appends keep working on the old records.
    assert_eq!(ask(server, b"incr counter 8\r\n", 1), "50\\r\\n");
    assert_eq!(
        ask(server, b"append grown 0 0 1\r\n!\r\n", 1),
        "STORED\\r\\n"
    );
    assert_eq!(
        ask(server, b"get grown\r\n", 1),
        "VALUE grown 0 14\\r\\nstart-mid-end!\\r\\nEND\\r\\n"
    );
    let big = ask(server, b"mg big s\r\n", 1);
    assert_eq!(big, "HD s200000\\r\\n");
    for i in [0, 250, 499] {
        let value = format!("value-{i}");
        assert_eq!(
            ask(server, format!("get bulk:{i}\r\n").as_bytes(), 1),
            format!(
                "VALUE bulk:{i} 0 {}\\r\\n{value}\\r\\nEND\\r\\n",
                value.len()
            )
        );
    }
    let stats = ask(server, b"stats\r\n", 1);
    // plain flagged far counter grown stale big + 500 bulk keys.
    assert!(stats.contains("STAT curr_items 507\\r\\n"), "{stats}");
}

#[test]
fn a_cleanly_stopped_v2_data_directory_opens_and_serves_its_items() {
    let mut server = Mcstore::start_in(unpack("v2-clean.tar.gz"), &[]);
    serves_what_the_old_release_wrote(&server);
    // And it stays readable after a restart in the new format.
    server.terminate().expect("clean stop");
    server.restart();
    assert_eq!(
        ask(&server, b"get counter grown\r\n", 1),
        "VALUE counter 0 2\\r\\n50\\r\\nVALUE grown 0 14\\r\\nstart-mid-end!\\r\\nEND\\r\\n"
    );
}

#[test]
fn a_v2_data_directory_killed_with_its_log_unreplayed_opens_and_serves_its_items() {
    let mut server = Mcstore::start_in(unpack("v2-killed.tar.gz"), &[]);
    serves_what_the_old_release_wrote(&server);
    server.kill9();
    server.restart();
    assert_eq!(
        ask(&server, b"get counter\r\n", 1),
        "VALUE counter 0 2\\r\\n50\\r\\nEND\\r\\n"
    );
}
