//! The change stream across `kill -9`: a child process writes keys one at a
//! time and prints each acknowledgement; it is killed with SIGKILL mid-run,
//! restarted on the same data directory, and killed again. Reading the
//! stream from the start then yields every acknowledged write exactly once,
//! in the order it was acknowledged, both runs' writes included. Once per
//! engine.
//!
//! The child is the `crash_writer` example (`cargo test` builds it; this
//! test builds it when run alone).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{engine_tests, open, START};
use mcstore_storage::clock::ManualClock;
use mcstore_storage::engine::Change;
use mcstore_storage::wal::Origin;
use mcstore_storage::EngineKind;

fn crash_writer() -> PathBuf {
    // target/<profile>/deps/stream_crash-<hash> -> target/<profile>/examples/
    let exe = std::env::current_exe().expect("test executable");
    let examples = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("examples");
    let path = examples.join("crash_writer");
    // `cargo test --test stream_crash` alone does not build examples, and a
    // binary left from an older build would test older code: build it
    // (a no-op when it is up to date).
    {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "mcstore-storage",
                "--example",
                "crash_writer",
            ])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the crash_writer example failed");
    }
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// Runs the child from `first` until it has acknowledged `count` writes,
/// kills it with SIGKILL and returns the acknowledged numbers.
fn write_then_kill(dir: &Path, engine: EngineKind, first: u64, count: usize) -> Vec<u64> {
    let mut child = Command::new(crash_writer())
        .arg(dir)
        .arg(first.to_string())
        .arg(engine.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the crash writer");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = Vec::new();
    while acked.len() < count {
        assert!(Instant::now() < deadline, "the crash writer is too slow");
        let line = lines
            .next()
            .expect("the crash writer exited early")
            .expect("read");
        let number = line
            .strip_prefix("acked ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        acked.push(number);
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    acked
}

async fn every_acknowledged_write_is_in_the_stream_once_in_order_across_kill_9(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = write_then_kill(dir.path(), engine, 0, 300);
    let first_run_end = acked.last().copied().unwrap() + 1_000;
    acked.extend(write_then_kill(dir.path(), engine, first_run_end, 300));

    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock, engine);
    let mut reader = store.follow(0);
    let mut position: HashMap<u64, u64> = HashMap::new();
    let mut last_seq = 0;
    while let Some(entry) = reader.try_next().expect("the stream reads") {
        assert!(entry.seq > last_seq, "sequences go up");
        last_seq = entry.seq;
        let Change::Put { key, .. } = &entry.change else {
            continue;
        };
        assert_eq!(entry.origin, Origin::Client);
        let number: u64 = std::str::from_utf8(&key[3..]).unwrap().parse().unwrap();
        assert!(
            position.insert(number, entry.seq).is_none(),
            "key{number} appears twice"
        );
    }
    let mut previous = 0;
    for number in &acked {
        let seq = *position
            .get(number)
            .unwrap_or_else(|| panic!("acknowledged key{number} is not in the stream"));
        assert!(seq > previous, "key{number} is out of order");
        previous = seq;
    }
    // Every write in the stream is also in the store.
    for number in position.keys() {
        assert!(store
            .get_record(format!("key{number}").as_bytes())
            .unwrap()
            .is_some());
    }
}

engine_tests!(every_acknowledged_write_is_in_the_stream_once_in_order_across_kill_9);
