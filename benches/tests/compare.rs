//! End to end: `mcstore-compare --quick` against a real memcached, the
//! release mcstore (`MCSTORE_BIN` or `<workspace>/target/release/mcstore`)
//! and a real Redis on loopback, run from the workspace root with the
//! default output directory: it writes the report, the chart and the
//! summary under `target/mcstore-compare/` and leaves the published report
//! in docs/ untouched.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcstore_e2e::{mcstore_binary, workspace_root};

/// The published report a smoke run must not touch.
const PUBLISHED: &[&str] = &["docs/compare.md", "docs/compare.svg", "docs/benchmarks.md"];

#[test]
fn quick_comparison_writes_a_row_per_system_and_an_svg() {
    for program in ["memcached", "redis-server", "redis-benchmark"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .status()
            .map(|status| status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{program} is missing (apt-get install memcached redis-server)"
        );
    }
    let root = workspace_root();
    let published_before: Vec<Vec<u8>> = PUBLISHED
        .iter()
        .map(|path| std::fs::read(root.join(path)).expect("the published report exists"))
        .collect();
    let dir = root.join("target/mcstore-compare");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("compare.md");
    let svg = dir.join("compare.svg");
    // The summary goes into `benchmarks.md` in the output directory,
    // keeping what is written around it.
    let summary = dir.join("benchmarks.md");
    std::fs::write(&summary, "# Benchmarks\n\nHand-written text.\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcstore-compare"))
        .current_dir(&root)
        .arg("--quick")
        .arg("--mcstore-bin")
        .arg(mcstore_binary())
        .arg("--bench-bin")
        .arg(env!("CARGO_BIN_EXE_mcstore-bench"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start mcstore-compare");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mcstore-compare --quick did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert!(
        status.success(),
        "mcstore-compare failed: {status}\n{stdout}"
    );

    let report = std::fs::read_to_string(&out).expect("the report was written");
    let systems = [
        "memcached",
        "mcstore-always",
        "mcstore-periodic",
        "mcstore-none",
        "redis-aof-always",
        "redis-aof-everysec",
    ];
    for workload in ["set", "mixed:0.9", "get"] {
        for system in systems {
            let row = report
                .lines()
                .find(|line| {
                    line.starts_with(&format!("| {workload} |"))
                        && line.contains(&format!("| {system} |"))
                })
                .unwrap_or_else(|| panic!("no {workload} row for {system} in:\n{report}"));
            assert!(!row.contains("failed"), "a failed run: {row}");
            let ops: f64 = row
                .split('|')
                .nth(6)
                .unwrap()
                .trim()
                .replace(',', "")
                .parse()
                .unwrap();
            assert!(ops > 0.0, "no throughput in {row}");
            assert!(
                stdout.contains(system),
                "{system} missing from the terminal table"
            );
        }
    }
    assert!(report.contains("| memcached | ") && report.contains("1.00 / 1.00"));
    assert!(report.contains("`memcached -V`: memcached 1."));
    assert!(report.contains("`redis-server --version`: Redis server v="));
    assert!(report.contains("--appendfsync always") && report.contains("--appendfsync everysec"));
    assert!(
        report.contains("(compare.svg)"),
        "the report links its chart"
    );

    let summary = std::fs::read_to_string(&summary).expect("the summary was written");
    assert!(
        summary.starts_with("# Benchmarks\n\nHand-written text.\n"),
        "the hand-written part is kept:\n{summary}"
    );
    let header = format!(
        "| workload | value | conns | pipeline | {} |",
        systems.join(" | ")
    );
    assert!(
        summary.contains(&header),
        "no summary header in:\n{summary}"
    );
    for workload in ["set", "mixed:0.9", "get"] {
        let row = summary
            .lines()
            .find(|line| line.starts_with(&format!("| {workload} | 100 B | 4 | 1 |")))
            .unwrap_or_else(|| panic!("no {workload} row in the summary:\n{summary}"));
        assert_eq!(
            row.matches(" (").count(),
            systems.len(),
            "a figure per system: {row}"
        );
        assert!(row.contains(" (1.00) |"), "memcached's ratio is 1: {row}");
    }
    assert!(summary.contains("](compare.md)") && summary.contains("](compare.svg)"));
    assert_eq!(summary.matches("mcstore-compare summary: begin").count(), 1);

    let chart = std::fs::read_to_string(&svg).expect("the chart was written");
    let start = chart.trim_start();
    assert!(
        start.starts_with("<svg") || start.starts_with("<?xml"),
        "not SVG: {}",
        &chart[..chart.len().min(200)]
    );
    assert!(chart.trim_end().ends_with("</svg>"));
    assert!(
        chart.matches("<rect").count() > systems.len() * 3,
        "too few bars"
    );
    for system in systems {
        assert!(
            chart.contains(system),
            "{system} missing from the chart legend"
        );
    }
    for (path, before) in PUBLISHED.iter().zip(&published_before) {
        let after = std::fs::read(root.join(path)).unwrap();
        assert!(&after == before, "the smoke run changed {path}");
    }
}

#[test]
fn help_shows_the_comparison_tool() {
    let output = Command::new(env!("CARGO_BIN_EXE_mcstore-compare"))
        .arg("--help")
        .output()
        .expect("run mcstore-compare --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        help.starts_with("Compare mcstore with memcached and Redis"),
        "{help}"
    );
    assert!(help.contains("--publish") && help.contains("target/mcstore-compare"));
}
