//! `mcstore-bench`: parse the command line, run, report.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mcstore_bench::args::Args;
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
