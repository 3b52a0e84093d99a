//! `mcstore-bench`: parse the command line, run, report.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mcstore_bench::args::Args;
use mcstore_bench::report::Report;
use mcstore_bench::run::run;

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
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads as usize);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let summary = runtime.block_on(run(args)).context("benchmark failed")?;
    let report = Report::new(args, &summary);
    if args.json {
        println!("{}", report.to_json_line());
    } else {
        print!("{}", report.to_human());
    }
    Ok(())
}
