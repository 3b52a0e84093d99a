//! The long check (a documented command, not part of CI): writers on random
//! keys through random nodes of a three-node cluster (RF=2) while nodes are
//! killed with -9 and restarted, frozen with SIGSTOP and resumed, for
//! minutes; then every node runs again, replication catches up, and every
//! acknowledged write is checked on every replica of its key.
//!
//! ```text
//! cargo build --release -p mcstore-server
//! MCSTORE_BIN=target/release/mcstore cargo run --release -p mcstore-e2e --bin chaos -- [minutes=3] [writers=4] [seed]
//! ```
//!
//! Each key belongs to one writer, whose operations on it are sequential,
//! so the last acknowledged operation is the key's expected state. An
//! operation that got no answer (its node died) may or may not have
//! happened: either state is accepted for it. The report counts
//! acknowledged operations, keys whose state is older than their last
//! acknowledged write (lost) and keys holding a value never written
//! (wrong); it exits 1 if any key was lost or wrong.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mcstore_e2e::cluster::{Cluster, FAST_DETECTION};

/// What a writer knows about one key.
#[derive(Clone, Debug, Default)]
struct KeyState {
    /// The last acknowledged value (`None`: deleted or never written).
    acked: Option<String>,
    /// Values (or a delete, `None`) sent after it without an answer.
    unsure: Vec<Option<String>>,
}

/// One request on a fresh connection with a short timeout: the reply's
/// first line, or `None` without an answer.
fn request(addr: SocketAddr, input: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.write_all(input.as_bytes()).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if line.is_empty() {
        return None;
    }
    if line.starts_with("VALUE ") {
        let mut value = String::new();
        reader.read_line(&mut value).ok()?;
        return Some(format!("VALUE {}", value.trim_end()));
    }
    Some(line.trim_end().to_string())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let minutes: f64 = args.next().map_or(3.0, |m| m.parse().expect("minutes"));
    let writers: usize = args.next().map_or(4, |w| w.parse().expect("writers"));
    let seed: u64 = args.next().map_or_else(
        || std::process::id() as u64 * 0x9e37_79b9,
        |s| s.parse().expect("seed"),
    );
    println!("chaos: {minutes} minutes, {writers} writers, seed {seed}");
    let mut node_args = FAST_DETECTION.to_vec();
    node_args.extend_from_slice(&["--replica-reads", "--peer-timeout", "500ms"]);
    let cluster = Arc::new(Mutex::new(Cluster::start(3, &node_args)));
    let addrs = cluster.lock().unwrap().addrs.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let unanswered = Arc::new(AtomicU64::new(0));
    let states: Vec<Arc<Mutex<HashMap<String, KeyState>>>> =
        (0..writers).map(|_| Arc::default()).collect();

    let writer_threads: Vec<_> = (0..writers)
        .map(|w| {
            let (stop, acknowledged, unanswered, state, addrs) = (
                stop.clone(),
                acknowledged.clone(),
                unanswered.clone(),
                states[w].clone(),
                addrs.clone(),
            );
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(
                    seed ^ (w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
                );
                let mut counter = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("chaos-w{w}-k{}", rng.u64(..200));
                    let node = addrs[rng.usize(..addrs.len())];
                    counter += 1;
                    let (input, intended, expected_reply) = if rng.u64(..5) == 0 {
                        (format!("delete {key}\r\n"), None, ["DELETED", "NOT_FOUND"])
                    } else {
                        let value = format!("w{w}-{counter}");
                        (
                            format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()),
                            Some(value),
                            ["STORED", "STORED"],
                        )
                    };
                    let reply = request(node, &input);
                    let mut states = state.lock().unwrap();
                    let entry = states.entry(key).or_default();
                    match reply {
                        Some(line) if expected_reply.contains(&line.as_str()) => {
                            entry.acked = intended;
                            entry.unsure.clear();
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            entry.unsure.push(intended);
                            unanswered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    // Faults: every few seconds one node is killed and restarted, or
    // frozen and resumed.
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut faults = 0;
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2000 + rng.u64(..3000)));
        let victim = rng.usize(..3);
        let kill = rng.u64(..2) == 0;
        if kill {
            println!("fault {faults}: kill -9 node {victim}");
            cluster.lock().unwrap().nodes[victim].kill9();
        } else {
            println!("fault {faults}: SIGSTOP node {victim}");
            cluster.lock().unwrap().nodes[victim].signal(libc::SIGSTOP);
        }
        thread::sleep(Duration::from_millis(1000 + rng.u64(..4000)));
        if kill {
            cluster.lock().unwrap().nodes[victim].restart();
        } else {
            cluster.lock().unwrap().nodes[victim].signal(libc::SIGCONT);
        }
        faults += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for thread in writer_threads {
        thread.join().expect("writer");
    }
    let cluster = cluster.lock().unwrap();
    println!(
        "faults done ({faults}); waiting for the cluster to converge and replication to catch up"
    );
    cluster.wait_converged();
    cluster.wait_replicated();

    let (mut checked, mut lost, mut wrong) = (0u64, 0u64, 0u64);
    for state in &states {
        for (key, state) in state.lock().unwrap().iter() {
            for replica in cluster.replicas_of(key.as_bytes(), 2) {
                checked += 1;
                let reply = request(cluster.addrs[replica], &format!("get {key}\r\n"));
                let found = match reply.as_deref() {
                    Some("END") => None,
                    Some(line) if line.starts_with("VALUE ") => Some(line[6..].to_string()),
                    other => {
                        println!("{key} on node {replica}: no answer ({other:?})");
                        wrong += 1;
                        continue;
                    }
                };
                let acceptable = found == state.acked || state.unsure.contains(&found);
                if acceptable {
                    continue;
                }
                let written_by_this_writer = found
                    .as_ref()
                    .is_some_and(|v| v.starts_with(&format!("w{}-", key_writer(key))));
                if written_by_this_writer {
                    lost += 1;
                    println!(
                        "LOST {key} on node {replica}: holds {found:?}, last acknowledged {:?}",
                        state.acked
                    );
                } else {
                    wrong += 1;
                    println!("WRONG {key} on node {replica}: holds {found:?}");
                }
            }
        }
    }
    println!(
        "acknowledged {} operations, {} unanswered; checked {checked} replica copies: {lost} lost, {wrong} wrong",
        acknowledged.load(Ordering::Relaxed),
        unanswered.load(Ordering::Relaxed)
    );
    std::process::exit(i32::from(lost + wrong > 0));
}

/// The writer a key belongs to (`chaos-w<writer>-k<n>`).
fn key_writer(key: &str) -> &str {
    key.trim_start_matches("chaos-w")
        .split('-')
        .next()
        .unwrap_or_default()
}
