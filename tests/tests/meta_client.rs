//! A real meta-protocol client against mcstore: runs
//! `tests/python/meta_client_exercise.py` (plain sockets, no dependencies)
//! against a fresh mcstore and requires it to exit 0; then kills the server
//! with SIGKILL, restarts it on the same data directory and runs the script's
//! `after-restart` phase, which checks that the stale mark, the win-token
//! mark and a counter survived. Output is shown on failure.
//!
//! Set `META_CLIENT_AGAINST_MEMCACHED=1` to run the first phase against
//! memcached instead (self-check of the script; memcached cannot restart
//! with its data, so the second phase is skipped).
//!
//! A second test races many connections on one stale item and on one
//! missing key with `N`: exactly one of them must win the token (`W`).

use std::time::Duration;

use mcstore_e2e::{exchange, run_python, Mcstore, Memcached};

/// Upper bound on one run of the script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the script against `port` in `phase`; panics with its output (and
/// `server_log`) unless it exits 0.
fn run_phase(port: u16, phase: &str, server_log: impl Fn() -> String) {
    let args = [port.to_string(), "--phase".into(), phase.into()];
    match run_python(
        "tests/python/meta_client_exercise.py",
        &args,
        SCRIPT_TIMEOUT,
    ) {
        Ok(output) => println!("{output}"),
        Err(failure) => panic!(
            "meta client phase {phase}: {failure}\nserver stderr:\n{}",
            server_log()
        ),
    }
}

#[test]
fn meta_client_exercises_every_command_and_marks_survive_a_crash() {
    if std::env::var("META_CLIENT_AGAINST_MEMCACHED").is_ok_and(|v| !v.is_empty() && v != "0") {
        let server = Memcached::start();
        run_phase(server.port(), "full", String::new);
        return;
    }
    let mut server = Mcstore::start(&[]);
    run_phase(server.port(), "full", || server.stderr());
    server.kill9();
    server.restart();
    run_phase(server.port(), "after-restart", || server.stderr());
}

/// Connections racing for one win token.
const RACERS: usize = 16;

/// Sends `line` from [`RACERS`] connections at once; returns their replies.
fn race(addr: std::net::SocketAddr, line: &'static [u8]) -> Vec<String> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(RACERS));
    let threads: Vec<_> = (0..RACERS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let reply = exchange(addr, line, 1).expect("exchange");
                String::from_utf8_lossy(&reply).into_owned()
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| thread.join().expect("racer"))
        .collect()
}

/// How many replies carry the flag `flag` (a whole token of the first line).
fn count_flag(replies: &[String], flag: &str) -> usize {
    replies
        .iter()
        .filter(|reply| {
            let header = reply.lines().next().unwrap_or_default();
            header.split(' ').skip(1).any(|token| token == flag)
        })
        .count()
}

#[test]
fn exactly_one_racing_client_wins_the_token() {
    let server = Mcstore::start(&[]);
    let addr = server.addr();
    let setup =
        exchange(addr, b"ms race:stale 1 T0\r\nv\r\nmd race:stale I\r\n", 2).expect("setup");
    assert_eq!(setup, b"HD\r\nHD\r\n");

    let replies = race(addr, b"mg race:stale v\r\n");
    assert_eq!(count_flag(&replies, "W"), 1, "{replies:?}");
    assert_eq!(count_flag(&replies, "X"), RACERS, "{replies:?}");
    assert_eq!(count_flag(&replies, "Z"), RACERS - 1, "{replies:?}");

    let replies = race(addr, b"mg race:new N30 c\r\n");
    assert_eq!(count_flag(&replies, "W"), 1, "{replies:?}");
    assert_eq!(count_flag(&replies, "Z"), RACERS - 1, "{replies:?}");
    let cas: std::collections::HashSet<&str> = replies
        .iter()
        .filter_map(|reply| reply.split(' ').find(|t| t.starts_with('c')))
        .collect();
    assert_eq!(
        cas.len(),
        1,
        "all racers see the one created item: {replies:?}"
    );
}
