//! A real client against mcstore: runs `tests/python/pymemcache_exercise.py`
//! (pymemcache, `pip install pymemcache`) against a fresh mcstore and requires
//! it to exit 0; its output is shown on failure.
//!
//! Set `PYMEMCACHE_AGAINST_MEMCACHED=1` to run the script against memcached
//! instead (self-check of the script).

use std::process::{Command, Stdio};
use std::time::Duration;

use mcstore_e2e::{wait_with_timeout, workspace_root, CapturedOutput, Mcstore, Memcached};

/// Upper bound on the script's run time.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn pymemcache_client_exercises_every_operation() {
    let against_memcached =
        std::env::var("PYMEMCACHE_AGAINST_MEMCACHED").is_ok_and(|v| !v.is_empty() && v != "0");
    let (_mcstore, _memcached, port) = if against_memcached {
        let server = Memcached::start();
        let port = server.port();
        (None, Some(server), port)
    } else {
        let server = Mcstore::start(&[]);
        let port = server.port();
        (Some(server), None, port)
    };

    let script = workspace_root().join("tests/python/pymemcache_exercise.py");
    let mut command = Command::new("python3");
    command.arg(&script).arg(port.to_string());
    if !against_memcached {
        command.arg("--mcstore");
    }
    let mut child = command
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
        Some(status) => {
            let server_log = _mcstore.as_ref().map(Mcstore::stderr).unwrap_or_default();
            panic!(
                "pymemcache exercise failed with {status}:\n{text}\nserver stderr:\n{server_log}"
            )
        }
        None => panic!("pymemcache exercise did not finish within {SCRIPT_TIMEOUT:?}:\n{text}"),
    }
}
