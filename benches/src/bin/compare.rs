//! `mcstore-compare`: parse the command line, run the comparison, print the
//! table, write the markdown report and the SVG chart, and update the
//! summary section of the summary document (under `target/` unless
//! `--publish` says docs/).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mcstore_bench::compare::args::CompareArgs;
use mcstore_bench::compare::render::{
    markdown, replace_summary, summary_section, terminal_table, write_svg,
};
use mcstore_bench::compare::runner::{run, Clients};
use mcstore_bench::compare::servers::Binaries;

fn main() -> ExitCode {
    match compare(&CompareArgs::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let here = std::env::current_exe().context("cannot find this binary")?;
    let sibling = |name: &str| here.with_file_name(name);
    let binaries = Binaries {
        mcstore: args
            .mcstore_bin
            .clone()
            .unwrap_or_else(|| sibling("mcstore")),
        memcached: args.memcached_bin.clone(),
        redis_server: args.redis_server_bin.clone(),
    };
    let clients = Clients {
        bench: args
            .bench_bin
            .clone()
            .unwrap_or_else(|| sibling("mcstore-bench")),
        redis_benchmark: args.redis_benchmark_bin.clone(),
    };
    for (what, path) in [
        ("mcstore", &binaries.mcstore),
        ("mcstore-bench", &clients.bench),
    ] {
        anyhow::ensure!(
            path.is_file(),
            "{what} not found at {} (cargo build --release -p mcstore-server -p mcstore-bench)",
            path.display()
        );
    }
    let comparison = run(&plan, &binaries, &clients)?;
    print!("{}", terminal_table(&comparison));
    let out = args.report_path();
    let svg = args.svg_path();
    let summary = args.summary_path();
    for path in [&out, &svg, &summary] {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
    }
    write_svg(&comparison, &svg)?;
    let svg_name = relative_name(&svg, &out);
    let command = std::iter::once("mcstore-compare".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&out, markdown(&comparison, &command, &svg_name))
        .with_context(|| format!("cannot write {}", out.display()))?;
    let document = match std::fs::read_to_string(&summary) {
        Ok(document) => document,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).context(format!("cannot read {}", summary.display())),
    };
    let section = summary_section(
        &comparison,
        &command,
        &relative_name(&out, &summary),
        &relative_name(&svg, &summary),
    );
    std::fs::write(&summary, replace_summary(&document, &section))
        .with_context(|| format!("cannot write {}", summary.display()))?;
    eprintln!(
        "wrote {}, {} and the summary in {}",
        out.display(),
        svg.display(),
        summary.display()
    );
    Ok(())
}

/// `path` as referenced from the document `from`: its file name when both
/// sit in the same directory, else its path as given.
fn relative_name(path: &std::path::Path, from: &std::path::Path) -> String {
    if path.parent() == from.parent() {
        path.file_name()
            .map(|name| PathBuf::from(name).display().to_string())
            .unwrap_or_default()
    } else {
        path.display().to_string()
    }
}
