//! What `dist/` ships: the systemd unit passes `systemd-analyze verify`
//! (with the built binary and the generated man page in place of the
//! installed ones), and the example config file starts a node.

use std::process::{Command, Stdio};

use mcstore_e2e::{mcstore_binary, workspace_root, McstoreProcess, StartOutcome};

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(workspace_root().join("dist/mcstore.service")).unwrap();
    for directive in [
        "User=mcstore",
        "StateDirectory=mcstore",
        "--data-dir /var/lib/mcstore/data",
        "Restart=on-failure",
        "LimitNOFILE=",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive}");
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = mcstore_binary();
    let local = unit.replace("/usr/local/bin/mcstore", binary.to_str().unwrap());
    let path = dir.path().join("mcstore.service");
    std::fs::write(&path, local).unwrap();
    let man = dir.path().join("man/man1");
    std::fs::create_dir_all(&man).unwrap();
    let page = Command::new(&binary)
        .arg("--generate-man")
        .output()
        .unwrap();
    assert!(page.status.success());
    std::fs::write(man.join("mcstore.1"), page.stdout).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path().join("man"))
        .stdin(Stdio::null())
        .output()
        .expect("systemd-analyze is missing (apt-get install systemd)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.trim().is_empty(),
        "systemd-analyze verify: {report}"
    );
}

#[test]
fn the_example_config_file_starts_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = workspace_root().join("dist/mcstore.toml");
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    match McstoreProcess::spawn(dir.path(), &args).unwrap() {
        StartOutcome::Listening(process) => {
            assert!(process.stderr().contains("metrics_addr=127.0.0.1:"));
            assert!(process.terminate().is_some_and(|s| s.success()));
        }
        StartOutcome::Exited { stderr, .. } => panic!("the example config failed:\n{stderr}"),
    }
}
