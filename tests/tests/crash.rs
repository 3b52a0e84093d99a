//! Crash and shutdown tests: no acknowledged write may be lost.
//!
//! - `kill9_loses_no_acknowledged_write`: several rounds (env `CRASH_ROUNDS`,
//!   default 4) on one data directory. Each round, 16 writer threads (env
//!   `CRASH_THREADS`) with their own connections `set` unique keys and overwrite
//!   a small shared key set, with values that embed key, round, thread and
//!   sequence number plus a checksum; every write whose `STORED` arrived is
//!   recorded. After a random 0.5–2 s the server gets `kill -9`, is restarted on
//!   the same data, and every acknowledged write must be there intact: a unique
//!   key holds exactly its value; a shared key holds a value that no
//!   acknowledged write started after its acknowledgement supersedes (the last
//!   acknowledged one, or a later one still in flight). No value may be corrupt.
//!   Later rounds keep checking the earlier rounds' keys (recovery after recovery).
//!   The random seed is printed; set `CRASH_SEED` to replay it. `CRASH_SYNC`
//!   (e.g. `periodic`) passes `--sync` to the server; by default it runs with
//!   the server's default, `--sync always`. It checkpoints every 200 ms and
//!   the engine shortens its own recovery every 4 MiB
//!   (`--engine-replay-limit 4m`: sled reopens itself).
//! - `kill9_loses_no_acknowledged_write_on_fjall`: the same with `--engine
//!   fjall` (env `CRASH_ROUNDS_FJALL`, default 3 rounds).
//! - `sigterm_during_load_exits_cleanly_and_keeps_writes`: SIGTERM under load
//!   exits 0 and the acknowledged writes survive a restart.
//! - `second_instance_on_same_data_dir_refuses_to_start`: a second mcstore on a
//!   data directory in use exits non-zero with a message about the lock / data dir.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mcstore_e2e::{escape, Client, Mcstore, McstoreProcess, StartOutcome};

/// Number of keys all writers overwrite.
const SHARED_KEYS: usize = 8;

/// Socket timeout for writers and verification.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Keys fetched per `get` during verification.
const VERIFY_BATCH: usize = 100;

/// Extra server arguments for the kill -9 test: `--sync <CRASH_SYNC>` if set
/// (default: none, i.e. the server's default `--sync always`).
fn crash_server_args() -> Vec<String> {
    match std::env::var("CRASH_SYNC") {
        Ok(mode) if !mode.is_empty() => vec!["--sync".to_string(), mode],
        _ => Vec::new(),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 64-bit FNV-1a, used as the value checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The value written for `key` by `thread` as its `seq`-th write in `round`:
/// `key|round|thread|seq|payload|checksum`, with a payload of varying length.
fn make_value(key: &str, round: u64, thread: usize, seq: u64) -> Vec<u8> {
    let mut value = format!("{key}|r{round}|t{thread}|s{seq}|").into_bytes();
    let hash = fnv1a(&value);
    // Mostly small values; about one in 64 is large (64-192 KiB).
    let payload_len = if hash.is_multiple_of(64) {
        64 * 1024 + (hash >> 8) as usize % (128 * 1024)
    } else {
        (hash % 1500) as usize + 16
    };
    value.extend((0..payload_len).map(|i| b'a' + ((i as u64 + seq) % 26) as u8));
    let checksum = fnv1a(&value);
    value.extend(format!("|{checksum:016x}").as_bytes());
    value
}

/// Whether `value` is a well-formed value for `key` (prefix and checksum).
fn is_well_formed(key: &str, value: &[u8]) -> bool {
    if value.len() < 17 || !value.starts_with(format!("{key}|").as_bytes()) {
        return false;
    }
    let (body, tail) = value.split_at(value.len() - 17);
    tail[0] == b'|' && tail[1..] == *format!("{:016x}", fnv1a(body)).as_bytes()
}

/// One attempted write.
#[derive(Clone, Debug)]
struct WriteRecord {
    key: String,
    value: Vec<u8>,
    started: Instant,
    /// When `STORED` arrived; `None` if the write was in flight when the server died.
    acked: Option<Instant>,
}

/// What the writers did during one load phase.
#[derive(Default)]
struct LoadOutcome {
    writes: Vec<WriteRecord>,
    /// Replies other than `STORED` (a protocol failure, not a crash effect).
    unexpected: Vec<String>,
}

fn shared_key(index: usize) -> String {
    format!("shared{index}")
}

/// Runs `threads` writers against `addr` until `stop` is set or their connection fails.
fn run_writers(
    addr: SocketAddr,
    round: u64,
    threads: usize,
    seed: u64,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<LoadOutcome>> {
    (0..threads)
        .map(|thread_index| {
            let stop = Arc::clone(stop);
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed ^ (round << 32) ^ thread_index as u64);
                let mut outcome = LoadOutcome::default();
                let mut client = match Client::connect(addr, CLIENT_TIMEOUT) {
                    Ok(client) => client,
                    Err(_) => return outcome,
                };
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let key = if rng.u8(..) < 80 {
                        shared_key(rng.usize(..SHARED_KEYS))
                    } else {
                        format!("u_r{round}_t{thread_index}_s{seq}")
                    };
                    let value = make_value(&key, round, thread_index, seq);
                    let started = Instant::now();
                    let reply = client.set(&key, 0, 0, &value);
                    let acked = match &reply {
                        Ok(line) if line == "STORED" => Some(Instant::now()),
                        _ => None,
                    };
                    outcome.writes.push(WriteRecord {
                        key,
                        value,
                        started,
                        acked,
                    });
                    match reply {
                        Ok(line) if line == "STORED" => {}
                        Ok(line) => {
                            outcome
                                .unexpected
                                .push(format!("thread {thread_index} seq {seq}: {line}"));
                            break;
                        }
                        Err(_) => break,
                    }
                }
                outcome
            })
        })
        .collect()
}

fn join_writers(handles: Vec<thread::JoinHandle<LoadOutcome>>) -> LoadOutcome {
    let mut all = LoadOutcome::default();
    for handle in handles {
        let outcome = handle.join().expect("writer thread panicked");
        all.writes.extend(outcome.writes);
        all.unexpected.extend(outcome.unexpected);
    }
    all
}

/// Everything known about the store's expected contents.
#[derive(Default)]
struct Expectations {
    /// Unique keys: exactly one write each.
    unique: HashMap<String, WriteRecord>,
    /// Shared keys: the value seen at the last verification (the baseline).
    shared_baseline: HashMap<String, Vec<u8>>,
}

/// Checks one shared key's recovered value against the baseline and this round's writes.
fn check_shared_value(
    key: &str,
    found: Option<&[u8]>,
    baseline: Option<&[u8]>,
    writes: &[&WriteRecord],
) -> Result<(), String> {
    let last_acked_start = writes
        .iter()
        .filter(|w| w.acked.is_some())
        .map(|w| w.started)
        .max();
    let Some(found) = found else {
        if baseline.is_none() && last_acked_start.is_none() {
            return Ok(());
        }
        return Err(format!(
            "{key}: missing, but writes to it were acknowledged"
        ));
    };
    if !is_well_formed(key, found) {
        return Err(format!("{key}: corrupt value {}", escape(found)));
    }
    if baseline == Some(found) {
        return match last_acked_start {
            None => Ok(()),
            Some(_) => Err(format!(
                "{key}: still holds the value from before this round ({}), although later writes were acknowledged",
                escape(&found[..found.len().min(40)])
            )),
        };
    }
    let Some(write) = writes.iter().find(|w| w.value == found) else {
        return Err(format!(
            "{key}: holds a value nobody wrote this round: {}",
            escape(&found[..found.len().min(60)])
        ));
    };
    if let (Some(acked), Some(last_start)) = (write.acked, last_acked_start) {
        if last_start > acked {
            return Err(format!(
                "{key}: holds {} but a write started after its acknowledgement was itself acknowledged (lost update)",
                escape(&found[..found.len().min(40)])
            ));
        }
    }
    Ok(())
}

/// Verifies the recovered store at `addr` against `expect` and this round's writes,
/// then updates `expect`. Returns the failures.
fn verify_and_update(
    addr: SocketAddr,
    expect: &mut Expectations,
    round_writes: &[WriteRecord],
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut client = Client::connect(addr, CLIENT_TIMEOUT).expect("connect for verification");

    for write in round_writes.iter().filter(|w| !w.key.starts_with("shared")) {
        expect.unique.insert(write.key.clone(), write.clone());
    }
    let keys: Vec<&str> = expect.unique.keys().map(String::as_str).collect();
    for batch in keys.chunks(VERIFY_BATCH) {
        let found = client.get_many(batch).expect("verification get");
        for key in batch {
            let write = &expect.unique[*key];
            match (found.get(*key), write.acked) {
                (Some(value), _) if *value == write.value => {}
                (Some(value), _) => failures.push(format!(
                    "{key}: value differs from the one written (acked: {}): {}",
                    write.acked.is_some(),
                    escape(&value[..value.len().min(60)])
                )),
                (None, Some(_)) => failures.push(format!("{key}: acknowledged write lost")),
                (None, None) => {}
            }
        }
    }
    // Unacknowledged unique writes that did not survive are forgotten.
    expect.unique.retain(|_, w| w.acked.is_some());

    let shared: Vec<String> = (0..SHARED_KEYS).map(shared_key).collect();
    let shared_refs: Vec<&str> = shared.iter().map(String::as_str).collect();
    let found = client.get_many(&shared_refs).expect("verification get");
    for key in &shared {
        let writes: Vec<&WriteRecord> = round_writes.iter().filter(|w| &w.key == key).collect();
        let found_value = found.get(key).map(Vec::as_slice);
        if let Err(failure) = check_shared_value(
            key,
            found_value,
            expect.shared_baseline.get(key).map(Vec::as_slice),
            &writes,
        ) {
            failures.push(failure);
        }
        match found_value {
            Some(value) => expect.shared_baseline.insert(key.clone(), value.to_vec()),
            None => expect.shared_baseline.remove(key),
        };
    }
    failures
}

fn report(failures: &[String], context: &str) {
    if failures.is_empty() {
        return;
    }
    for failure in failures.iter().take(50) {
        println!("FAILURE {failure}");
    }
    panic!(
        "{context}: {} failures (first: {})",
        failures.len(),
        failures[0]
    );
}

#[test]
fn kill9_loses_no_acknowledged_write() {
    kill9_rounds(env_number("CRASH_ROUNDS", 4), &[]);
}

#[test]
fn kill9_loses_no_acknowledged_write_on_fjall() {
    kill9_rounds(env_number("CRASH_ROUNDS_FJALL", 3), &["--engine", "fjall"]);
}

/// `rounds` rounds of writers, kill -9, restart and verification, with the
/// server's `--sync` from `CRASH_SYNC` and `engine_args`.
fn kill9_rounds(rounds: u64, engine_args: &[&str]) {
    let threads = env_number("CRASH_THREADS", 16) as usize;
    let seed = env_number(
        "CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    let mut args = crash_server_args();
    args.extend(engine_args.iter().map(|arg| arg.to_string()));
    // Checkpoints every 200 ms, and the engine shortens its recovery (sled
    // reopens itself) once 4 MiB were applied, several times a second under
    // this load, so kills land during and between those too.
    args.extend(
        [
            "--checkpoint-interval-ms",
            "200",
            "--engine-replay-limit",
            "4m",
        ]
        .map(String::from),
    );
    println!("crash test: {rounds} rounds, {threads} writers, args {args:?}, CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut server = Mcstore::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut expect = Expectations::default();

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = run_writers(server.addr(), round, threads, seed, &stop);
        let run_for = Duration::from_millis(rng.u64(500..=2000));
        thread::sleep(run_for);
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let outcome = join_writers(writers);
        let acked = outcome.writes.iter().filter(|w| w.acked.is_some()).count();
        println!(
            "round {round}: killed after {run_for:?}; {} writes attempted, {acked} acknowledged",
            outcome.writes.len()
        );
        report(&outcome.unexpected, "unexpected replies to set");
        assert!(acked > 0, "round {round}: no write was acknowledged");

        server.restart();
        let failures = verify_and_update(server.addr(), &mut expect, &outcome.writes);
        report(
            &failures,
            &format!("round {round}: recovery after kill -9 (CRASH_SEED={seed})"),
        );
        println!(
            "round {round}: recovered; {} acknowledged unique keys verified",
            expect.unique.len()
        );
    }
    let status = server.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "final SIGTERM: mcstore exited with {status:?}"
    );
}

#[test]
fn sigterm_during_load_exits_cleanly_and_keeps_writes() {
    let seed = env_number("CRASH_SEED", 7);
    let mut server = Mcstore::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = run_writers(server.addr(), 0, 16, seed, &stop);
    thread::sleep(Duration::from_millis(1000));
    let stderr_before = server.stderr();
    let status = server.terminate();
    stop.store(true, Ordering::Relaxed);
    let outcome = join_writers(writers);
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM under load: mcstore exited with {status:?} (None: not within the timeout)\nstderr so far:\n{stderr_before}"
    );
    report(&outcome.unexpected, "unexpected replies to set");
    let acked = outcome.writes.iter().filter(|w| w.acked.is_some()).count();
    println!(
        "{} writes attempted, {acked} acknowledged before shutdown",
        outcome.writes.len()
    );
    assert!(acked > 0, "no write was acknowledged");

    server.restart();
    let mut expect = Expectations::default();
    let failures = verify_and_update(server.addr(), &mut expect, &outcome.writes);
    report(&failures, "restart after SIGTERM");
}

#[test]
fn second_instance_on_same_data_dir_refuses_to_start() {
    let server = Mcstore::start(&[]);
    let outcome = McstoreProcess::spawn(server.data_dir(), &[]).expect("spawn a second mcstore");
    match outcome {
        StartOutcome::Listening(second) => {
            let addr = second.addr();
            drop(second);
            panic!("a second mcstore started on a data dir in use (listening on {addr})");
        }
        StartOutcome::Exited {
            status,
            stdout,
            stderr,
        } => {
            assert!(
                !status.success(),
                "second mcstore exited successfully: {status}"
            );
            let message = format!("{stdout}\n{stderr}").to_lowercase();
            assert!(
                ["lock", "data dir", "data-dir", "data_dir", "in use"]
                    .iter()
                    .any(|word| message.contains(word)),
                "second mcstore's message does not mention the lock or data dir:\n{stdout}\n{stderr}"
            );
            println!("second instance refused: {status}: {}", stderr.trim());
        }
    }
    // The first instance is unaffected.
    let mut client = Client::connect(server.addr(), CLIENT_TIMEOUT).expect("connect");
    assert_eq!(
        client.set("still_alive", 0, 0, b"yes").expect("set"),
        "STORED"
    );
    assert_eq!(
        client.get("still_alive").expect("get").as_deref(),
        Some(&b"yes"[..])
    );
}

/// Unit checks of the verification logic itself (no server needed).
mod checker {
    use super::*;

    #[test]
    fn values_are_self_checking() {
        let value = make_value("k", 1, 2, 3);
        assert!(is_well_formed("k", &value));
        assert!(!is_well_formed("other", &value));
        let mut corrupt = value.clone();
        corrupt[10] ^= 1;
        assert!(!is_well_formed("k", &corrupt));
        assert!(!is_well_formed("k", &value[..value.len() - 1]));
    }

    #[test]
    fn shared_key_rules() {
        let base = Instant::now();
        let make = |seq: u64, started: u64, acked: Option<u64>| WriteRecord {
            key: "shared0".into(),
            value: make_value("shared0", 0, 0, seq),
            started: base + Duration::from_millis(started),
            acked: acked.map(|a| base + Duration::from_millis(a)),
        };
        let first = make(1, 0, Some(10));
        let second = make(2, 20, Some(30));
        let in_flight = make(3, 40, None);
        let writes = [&first, &second, &in_flight];
        let check = |found: Option<&WriteRecord>, baseline: Option<&[u8]>| {
            check_shared_value(
                "shared0",
                found.map(|w| w.value.as_slice()),
                baseline,
                &writes,
            )
        };
        assert!(check(Some(&second), None).is_ok(), "last acked");
        assert!(check(Some(&in_flight), None).is_ok(), "in flight");
        assert!(check(Some(&first), None).is_err(), "superseded");
        assert!(check(None, None).is_err(), "lost");
        let baseline = make(9, 0, Some(0)).value;
        assert!(check(Some(&second), Some(&baseline)).is_ok());
        assert!(
            check_shared_value("shared0", Some(&baseline), Some(&baseline), &[&in_flight]).is_ok(),
            "baseline kept when nothing was acknowledged"
        );
        assert!(check_shared_value("shared0", None, None, &[&in_flight]).is_ok());
        // Concurrent acknowledged writes: either may win.
        let a = make(4, 0, Some(50));
        let b = make(5, 10, Some(40));
        assert!(check_shared_value("shared0", Some(&a.value), None, &[&a, &b]).is_ok());
        assert!(check_shared_value("shared0", Some(&b.value), None, &[&a, &b]).is_ok());
    }
}
