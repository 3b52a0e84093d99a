//! `dump` and `restore`.
//!
//! `dump` pages through each node with `mcstore_scan` (1000 records a
//! call) and writes the items as it gets them, so neither side holds more
//! than a page. Every replica stores a key, so a whole-cluster dump keeps a
//! key only from the node that is its first live replica (the owner, or the
//! next replica while the owner is down): each key once. `--node` keeps
//! everything one node lists.
//!
//! `restore` reads the file as a stream and writes each item through the
//! client (`ms` with the absolute expiry, a base64 key when the text
//! protocol cannot carry it), so every key lands on its owner in the
//! cluster restored into, whatever its size, and is replicated from there.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use mcstore_client::dump::{DumpItem, DumpReader, DumpWriter};
use mcstore_client::{meta, Client, Error};

use crate::{progress, Outcome};

/// Stored records a scan call examines.
const PAGE: u32 = 1000;

pub async fn dump(client: &Client, file: &Path, node: Option<&str>, quiet: bool) -> Outcome {
    let topology = client.topology();
    let nodes: Vec<String> = match node {
        Some(node) => vec![node.to_owned()],
        None => topology
            .ring_nodes()
            .filter(|n| n.is_live())
            .map(|n| n.addr.clone())
            .collect(),
    };
    if nodes.is_empty() {
        return Err(Error::NoNodeAvailable("no live node to dump".into()).into());
    }
    let out = File::create(file).with_context(|| format!("cannot create {}", file.display()))?;
    let mut writer = DumpWriter::new(BufWriter::new(out))?;
    let bar = progress(None, "dump: items", quiet);
    let started = Instant::now();
    for addr in &nodes {
        let mut after = None;
        loop {
            let page = client.scan_node(addr, after.take(), PAGE).await?;
            for item in page.items {
                if node.is_none() && !topology.is_first_live_replica(&item.key, addr) {
                    continue;
                }
                writer.write(&DumpItem {
                    key: item.key,
                    flags: item.flags,
                    exptime: item.exptime,
                    value: item.value,
                })?;
                bar.inc(1);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    let (_, items) = writer.finish()?;
    bar.finish_and_clear();
    eprintln!(
        "dumped {items} items from {} node(s) to {} in {:.2} s",
        nodes.len(),
        file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn restore(client: &Client, file: &Path, concurrency: usize, quiet: bool) -> Outcome {
    let input = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut reader = DumpReader::new(BufReader::new(input))
        .with_context(|| format!("{} is not an mcstore dump", file.display()))?;
    let bar = progress(None, "restore: items", quiet);
    let started = Instant::now();
    // A thread reads the file; tasks write what it read.
    let (items, receiver) = tokio::sync::mpsc::channel::<DumpItem>(1024);
    let read_file = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        while let Some(item) = reader.next_item()? {
            if items.blocking_send(item).is_err() {
                return Ok(());
            }
        }
        Ok(())
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let written = Arc::new(AtomicU64::new(0));
    let expired = Arc::new(AtomicU64::new(0));
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, receiver, bar) = (client.clone(), receiver.clone(), bar.clone());
        let (written, expired) = (written.clone(), expired.clone());
        tasks.spawn(async move {
            loop {
                let Some(item) = receiver.lock().await.recv().await else {
                    return Ok::<(), Error>(());
                };
                if item.exptime != 0 && item.exptime <= now {
                    expired.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let ttl = i32::try_from(item.exptime).map_err(|_| {
                    Error::Client(format!("exptime {} is beyond 2038", item.exptime))
                })?;
                let mut request = meta::set(item.key, item.value);
                request.returns.clear();
                request.flags = item.flags;
                request.ttl = (ttl != 0).then_some(ttl);
                let reply = client.meta_set(request).await?;
                if !matches!(reply.status, mcstore_protocol::MetaStatus::Done) {
                    return Err(Error::Server(format!("restore: unexpected {reply:?}")));
                }
                written.fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            }
        });
    }
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        if let Err(err) = done.expect("a restore task does not panic") {
            failure.get_or_insert(err);
            tasks.abort_all();
        }
    }
    let read = read_file.await.expect("the reader does not panic");
    bar.finish_and_clear();
    if let Some(err) = failure {
        return Err(err.into());
    }
    read.with_context(|| format!("reading {}", file.display()))?;
    eprintln!(
        "restored {} items ({} expired, skipped) from {} in {:.2} s",
        written.load(Ordering::Relaxed),
        expired.load(Ordering::Relaxed),
        file.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
