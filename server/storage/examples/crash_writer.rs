//! The child process of the storage crate's crash test
//! (`tests/stream_crash.rs`): opens a store on the directory given as its
//! first argument (`--sync always`, on the engine named by the optional
//! third argument, sled by default), writes `key<N>` for N from the second
//! argument upwards, one at a time, and prints `acked <N>` after each write
//! the store acknowledged, until it is killed. It registers the change-stream
//! cursor `crash-test` first, so the log is kept for a reader. It
//! checkpoints every 20 ms and has the engine shorten its recovery every
//! 4 KiB applied.
//!
//! `cargo run -p mcstore-storage --example crash_writer -- DIR FIRST [ENGINE]`

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use mcstore_storage::clock::SystemClock;
use mcstore_storage::ops::{Outcome, StoreMode, StoreOp};
use mcstore_storage::{EngineKind, Expiry, ItemRules, Operation, Store, StoreConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(first)) = (args.next(), args.next()) else {
        eprintln!("usage: crash_writer DIR FIRST [ENGINE]");
        std::process::exit(2);
    };
    let first: u64 = first.parse().expect("FIRST is a number");
    let engine: EngineKind = args
        .next()
        .map_or(Ok(EngineKind::Sled), |name| name.parse())
        .expect("ENGINE is sled or fjall");
    let rules = ItemRules {
        max_item_size: 1024 * 1024,
        item_size: mcstore_protocol::item_size,
        parse_number: mcstore_protocol::number::parse_u64,
    };
    // Frequent checkpoints, and the engine shortening its recovery (sled
    // reopening itself) every few writes, so that the kill lands at any
    // point of them.
    let config = StoreConfig {
        engine,
        checkpoint_interval: std::time::Duration::from_millis(20),
        engine_replay_bytes: 4096,
        ..StoreConfig::new(&dir, rules)
    };
    let store = Arc::new(Store::open(config, Arc::new(SystemClock)).expect("open"));
    // A consumer's cursor keeps the log from its first write on.
    store
        .register_cursor("crash-test")
        .expect("register a cursor");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut stdout = std::io::stdout().lock();
    runtime.block_on(async {
        for n in first.. {
            let op = Operation::Store(StoreOp::new(
                Bytes::from(format!("key{n}")),
                StoreMode::Set,
                0,
                Expiry::Never,
                Bytes::from(format!("value{n}")),
            ));
            match store.execute(op).await {
                Outcome::Stored { .. } => {
                    writeln!(stdout, "acked {n}").expect("stdout");
                    stdout.flush().expect("stdout");
                }
                other => panic!("write {n}: {other:?}"),
            }
        }
    });
}
