//! `mcstore-bench`: parse the command line, run, report.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mcstore_bench::args::Args;
use mcstore_bench::client_run;
use mcstore_bench::report::Report;
use mcstore_bench::run::run;
use mcstore_bench::workers::WorkerPool;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = args.validate() {
        clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!("{error}\n"),
        )
        .exit();
    }
    match run_and_report(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_and_report(args: &Args) -> anyhow::Result<()> {
    if args.uses_client() {
        return run_through_client(args);
    }
    let threads = match args.threads {
        Some(threads) => threads as usize,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let pool = WorkerPool::new(threads, !args.no_pin).context("cannot start the worker threads")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let summary = runtime
        .block_on(run(args, &pool))
        .context("benchmark failed")?;
    let report = Report::new(args, &summary);
    if args.json {
        println!("{}", report.to_json_line());
    } else {
        print!("{}", report.to_human());
    }
    Ok(())
}

/// `--seeds` or `--via-client`: the run goes through `mcstore-client` on a
/// multi-threaded runtime (the client spreads its connections' tasks).
fn run_through_client(args: &Args) -> anyhow::Result<()> {
    let threads = match args.threads {
        Some(threads) => threads as usize,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let (summary, per_node) = runtime
        .block_on(client_run::run(args))
        .context("benchmark failed")?;
    let report = Report::new(args, &summary);
    if args.json {
        let mut json: serde_json::Value = serde_json::from_str(&report.to_json_line())?;
        json["per_node_ops_per_sec"] = serde_json::to_value(&per_node)?;
        println!("{json}");
    } else {
        print!("{}", report.to_human());
        print!("{}", client_run::per_node_text(&per_node));
    }
    Ok(())
}
