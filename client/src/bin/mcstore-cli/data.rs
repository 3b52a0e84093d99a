//! `load` and `check`: test data whose values can be verified.
//!
//! Key `i` is `<prefix><i>`; its value is the key followed by `:`,
//! repeated and cut to `--value-size` bytes, so `check` knows what every
//! key must hold without any state between the two runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use mcstore_client::Client;

use crate::{progress, Failure, Outcome};

/// Which keys `load` writes and `check` reads.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Key prefix.
    #[arg(long)]
    prefix: String,
    /// How many keys.
    #[arg(long)]
    count: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// The value `load` writes under `key`.
pub fn value_for(key: &str, size: usize) -> Bytes {
    let pattern = format!("{key}:");
    pattern
        .bytes()
        .cycle()
        .take(size)
        .collect::<Vec<u8>>()
        .into()
}

/// Runs `work(i)` for every i in 0..count on `concurrency` tasks, in
/// batches of `batch`; the first error stops the rest.
async fn for_each_batch<F, Fut>(
    count: u64,
    batch: u64,
    concurrency: usize,
    bar: &indicatif::ProgressBar,
    work: F,
) -> Result<(), mcstore_client::Error>
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), mcstore_client::Error>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let work = Arc::new(work);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let next = next.clone();
        let work = work.clone();
        let bar = bar.clone();
        tasks.spawn(async move {
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= count {
                    return Ok(());
                }
                let end = (start + batch).min(count);
                work(start, end).await?;
                bar.inc(end - start);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(err) = done.expect("a load task does not panic") {
            next.store(count, Ordering::Relaxed);
            return Err(err);
        }
    }
    Ok(())
}

pub async fn load(client: &Client, args: &LoadArgs, quiet: bool) -> Outcome {
    let bar = progress(Some(args.count), "load", quiet);
    let started = Instant::now();
    let prefix = args.prefix.clone();
    let size = args.value_size;
    let writer = client.clone();
    for_each_batch(args.count, 1, args.concurrency, &bar, move |i, _| {
        let client = writer.clone();
        let key = format!("{prefix}{i}");
        async move { client.set(&key, value_for(&key, size), 0, 0).await }
    })
    .await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "loaded {} items in {seconds:.2} s ({:.0}/s)",
        args.count,
        args.count as f64 / seconds.max(1e-9)
    );
    Ok(())
}

pub async fn check(client: &Client, args: &LoadArgs, quiet: bool) -> Outcome {
    let bar = progress(Some(args.count), "check", quiet);
    let ok = Arc::new(AtomicU64::new(0));
    let missing = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let (prefix, size, reader) = (args.prefix.clone(), args.value_size, client.clone());
    let counts = (ok.clone(), missing.clone(), wrong.clone());
    for_each_batch(
        args.count,
        100,
        args.concurrency,
        &bar,
        move |start, end| {
            let client = reader.clone();
            let keys: Vec<String> = (start..end).map(|i| format!("{prefix}{i}")).collect();
            let (ok, missing, wrong) = counts.clone();
            async move {
                let found = client.get_many(&keys).await?;
                for key in &keys {
                    let counter = match found.get(key.as_bytes()) {
                        None => &missing,
                        Some(item) if item.value == value_for(key, size) => &ok,
                        Some(_) => &wrong,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        },
    )
    .await?;
    bar.finish_and_clear();
    let (ok, missing, wrong) = (
        ok.load(Ordering::Relaxed),
        missing.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
    );
    let summary = format!("{ok} ok, {missing} missing, {wrong} wrong");
    println!("{summary}");
    if missing > 0 || wrong > 0 {
        return Err(Failure::Negative(summary));
    }
    Ok(())
}
