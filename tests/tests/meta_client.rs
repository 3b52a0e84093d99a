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

use std::process::{Command, Stdio};
use std::time::Duration;

use mcstore_e2e::{wait_with_timeout, workspace_root, CapturedOutput, Mcstore, Memcached};

/// Upper bound on one run of the script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the script against `port` in `phase`; panics with its output (and
/// `server_log`) unless it exits 0.
fn run_phase(port: u16, phase: &str, server_log: impl Fn() -> String) {
    let script = workspace_root().join("tests/python/meta_client_exercise.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .args(["--phase", phase])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (is it installed?)");
    let output = CapturedOutput::default();
    output.drain_from(child.stdout.take().expect("stdout is piped"));
    output.drain_from(child.stderr.take().expect("stderr is piped"));
    let status = wait_with_timeout(&mut child, SCRIPT_TIMEOUT).expect("wait for python3");
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Let the drain threads pick up the last output.
    std::thread::sleep(Duration::from_millis(100));
    let text = output.text();
    match status {
        Some(status) if status.success() => println!("{text}"),
        Some(status) => panic!(
            "meta client phase {phase} failed with {status}:\n{text}\nserver stderr:\n{}",
            server_log()
        ),
        None => {
            panic!("meta client phase {phase} did not finish within {SCRIPT_TIMEOUT:?}:\n{text}")
        }
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
