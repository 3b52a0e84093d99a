//! The command line as operators use it: memcached's short flags, hostnames
//! and bare ports, a config file and its precedence, clean refusals (exit
//! 2, one clear line, never a panic), both log formats, and the man page.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mcstore_e2e::{free_port, mcstore_binary, Client, McstoreProcess, StartOutcome};

/// Runs mcstore to completion (for refusals, `--help`, `--generate-man`).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(mcstore_binary());
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MCSTORE_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcstore");
    match mcstore_e2e::wait_with_timeout(&mut child, Duration::from_secs(20)).unwrap() {
        Some(_) => child.wait_with_output().unwrap(),
        None => {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "mcstore {args:?} did not exit:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

fn started(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> McstoreProcess {
    match McstoreProcess::spawn_with(data_dir, args, env).expect("spawn mcstore") {
        StartOutcome::Listening(process) => process,
        StartOutcome::Exited { status, stderr, .. } => {
            panic!("mcstore {args:?} exited with {status}:\n{stderr}")
        }
    }
}

fn stat(process: &McstoreProcess, group: &str, name: &str) -> String {
    let reply = mcstore_e2e::exchange(process.addr(), format!("stats {group}\r\n").as_bytes(), 1)
        .expect("stats");
    let text = String::from_utf8_lossy(&reply).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("STAT {name} ")))
        .unwrap_or_else(|| panic!("no {name} in stats {group}: {text}"))
        .to_owned()
}

#[test]
fn every_invalid_value_is_a_usage_error_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["--threads", "0"],
        &["-t", "0"],
        &["--threads", "many"],
        &["--max-connections", "0"],
        &["-c", "-5"],
        &["--max-item-size", "2g"],
        &["-I", "100"],
        &["--max-item-size", "0"],
        &["-U", "11211"],
        &["--port", "65536"],
        &["-p", "x"],
        &["--listen", "host:port"],
        &["--listen", "99999"],
        &["--max-batch", "0"],
        &["--max-pending-writes", "0"],
        &["--sync-interval-ms", "0"],
        &["--checkpoint-interval-ms", "0"],
        &["--wal-segment-size", "1"],
        &["--max-get-line", "1"],
        &["--cache-size", "0"],
        &["--wal-retention", "lots"],
        &["--tombstone-grace", "soon"],
        &["--max-clock-skew", "-1s"],
        &["--reclaim-rate", "-1"],
        &["--sync", "sometimes"],
        &["--log-format", "xml"],
        &["--log-level", "loud"],
        &["--metrics-listen", "nowhere:port"],
        &["--data-dir", ""],
        &["-m", "64"],
        &["--bogus"],
    ];
    for args in cases {
        let mut argv = vec!["--data-dir", data];
        argv.extend_from_slice(args);
        let output = run(&argv, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert!(
            stderr.contains("error"),
            "{args:?}: no error message: {stderr}"
        );
    }
    // The environment is checked the same way.
    let output = run(&["--data-dir", data], &[("MCSTORE_THREADS", "0")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        !Path::new(data).exists(),
        "a refused start created the data directory"
    );
}

#[test]
fn memcached_short_flags_start_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let process = started(
        dir.path(),
        &[
            "-p",
            &port,
            "-l",
            "127.0.0.1",
            "-c",
            "77",
            "-t",
            "2",
            "-I",
            "2m",
            "-U",
            "0",
            "-vv",
        ],
        &[],
    );
    assert_eq!(process.addr().port().to_string(), port);
    assert_eq!(stat(&process, "settings", "maxconns"), "77");
    assert_eq!(stat(&process, "settings", "num_threads"), "2");
    assert_eq!(stat(&process, "settings", "item_size_max"), "2097152");
    assert_eq!(stat(&process, "settings", "udpport"), "0");
    // -vv is debug for mcstore: connections are logged.
    let mut client = Client::connect(process.addr(), Duration::from_secs(5)).unwrap();
    assert_eq!(
        client.command("version").unwrap().split(' ').next(),
        Some("VERSION")
    );
    drop(client);
    std::thread::sleep(Duration::from_millis(200));
    assert!(process.stderr().contains("DEBUG"), "{}", process.stderr());
    assert!(
        !process.stderr().contains("sled::"),
        "sled's internals flood: {}",
        process.stderr()
    );
}

#[test]
fn a_hostname_and_a_bare_port_are_listen_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let process = started(dir.path(), &["--listen", &format!("localhost:{port}")], &[]);
    assert!(process.addr().ip().is_loopback());
    assert_eq!(process.addr().port().to_string(), port);
    drop(process);
    let port = free_port().to_string();
    let process = started(dir.path(), &["--listen", &port], &[]);
    assert_eq!(process.addr().to_string(), format!("127.0.0.1:{port}"));
}

#[test]
fn config_file_under_environment_under_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcstore.toml");
    std::fs::write(
        &file,
        "max-connections = 100\nthreads = 3\nmax-item-size = \"3m\"\nsync = \"periodic\"\n\
         log-format = \"json\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let process = started(
        &data,
        &["--config", file.to_str().unwrap(), "--threads", "2"],
        &[("MCSTORE_MAX_CONNECTIONS", "200"), ("MCSTORE_THREADS", "4")],
    );
    assert_eq!(
        stat(&process, "settings", "num_threads"),
        "2",
        "command line wins"
    );
    assert_eq!(
        stat(&process, "settings", "maxconns"),
        "200",
        "environment beats the file"
    );
    assert_eq!(
        stat(&process, "settings", "item_size_max"),
        "3145728",
        "the file beats defaults"
    );
    assert_eq!(stat(&process, "settings", "sync"), "periodic");
    assert!(
        process.stderr().trim_start().starts_with('{'),
        "json from the file"
    );
    drop(process);

    std::fs::write(&file, "max_connections = 100\n").unwrap();
    let output = run(&["--config", file.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown key `max_connections`"), "{stderr}");
    std::fs::write(&file, "threads = 0\n").unwrap();
    let output = run(&["--config", file.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mcstore.toml") && stderr.contains("`threads`"),
        "{stderr}"
    );
}

#[test]
fn logs_are_one_format_on_stderr_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let process = started(dir.path(), &[], &[]);
    let text = process.stderr();
    assert!(process.stdout().is_empty(), "stdout: {}", process.stdout());
    let line = text.lines().find(|l| l.contains("listening on")).unwrap();
    assert!(line.contains(" INFO ") && line.contains(&format!("addr={}", process.addr())));
    assert!(!text.contains('{'), "text logs: {text}");
    drop(process);

    let process = started(dir.path(), &["--log-format", "json"], &[]);
    let json = process.stderr();
    assert!(process.stdout().is_empty());
    for line in json.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not one object a line: {line}"
        );
    }
    let line = json.lines().find(|l| l.contains("listening on")).unwrap();
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
    assert!(
        line.contains(&format!("\"addr\":\"{}\"", process.addr())),
        "{line}"
    );
    let status = process.terminate().expect("exits on SIGTERM");
    assert!(status.success());
}

#[test]
fn a_data_directory_that_is_a_file_is_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    match McstoreProcess::spawn(&file, &[]).unwrap() {
        StartOutcome::Listening(_) => panic!("started on a file"),
        StartOutcome::Exited { status, stderr, .. } => {
            assert_eq!(status.code(), Some(1), "{stderr}");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
            assert_eq!(errors.len(), 1, "{stderr}");
            let message = errors[0];
            assert!(
                message.contains("exists and is not a directory"),
                "{message}"
            );
            assert_eq!(message.matches("afile").count(), 1, "repeated: {message}");
            assert!(!message.contains("os error"), "{message}");
        }
    }
}

#[test]
fn a_port_in_use_is_found_before_the_data_directory_is_made() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-made");
    let output = run(
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&port) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(!data.exists(), "the data directory was created");
}

#[test]
fn the_man_page_is_generated_from_the_flags() {
    let output = run(&["--generate-man"], &[]);
    assert!(output.status.success());
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(page.contains(".TH mcstore"), "{page}");
    assert!(page.contains("metrics\\-listen") && page.contains("max\\-item\\-size"));
    let help = run(&["--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains("generate-man"), "the flag is hidden");
    assert!(
        help.contains("-p, --port") && help.contains("-I, --max-item-size"),
        "{help}"
    );
}
