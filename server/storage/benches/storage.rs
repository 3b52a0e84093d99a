//! Criterion micro-benchmarks of the storage path: encoding and decoding a
//! stored record (with its crc32), and committing batches of 1, 32 and 1024
//! writes through the commit pipeline (log append, one fdatasync, sled apply).
//!
//! `cargo bench -p mcstore-storage --bench storage`

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mcstore_storage::clock::SystemClock;
use mcstore_storage::ops::{StoreMode, StoreOp};
use mcstore_storage::version::{NodeId, Timestamp};
use mcstore_storage::{
    Expiry, ItemRules, Operation, Outcome, Record, Store, StoreConfig, SyncMode, Version,
};

fn record_codec(c: &mut Criterion) {
    let key = vec![b'k'; 64];
    let record = Record {
        flags: 7,
        expiry: Expiry::At(1_900_000_000),
        cas: 123_456,
        version: Version {
            timestamp: Timestamp::from_millis(1_800_000_000_000),
            node: NodeId(7),
        },
        marks: 0,
        value: Bytes::from(vec![b'v'; 100]),
    };
    let encoded = Bytes::from(record.encode(&key));
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode", |b| b.iter(|| record.encode(&key)));
    group.bench_function("decode", |b| {
        b.iter(|| Record::decode(&key, &encoded).unwrap())
    });
    group.finish();
}

fn batch_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("commit");
    group.sample_size(20);
    for sync in [SyncMode::Always, SyncMode::None] {
        let dir = tempfile::tempdir().unwrap();
        let rules = ItemRules {
            max_item_size: 1024 * 1024,
            item_size: mcstore_protocol::item_size,
            parse_number: mcstore_protocol::number::parse_u64,
        };
        let mut config = StoreConfig::new(dir.path(), rules);
        config.sync = sync;
        config.max_batch = 1024;
        let store = Store::open(config, Arc::new(SystemClock)).unwrap();
        let mut next_key = 0u64;
        for batch in [1usize, 32, 1024] {
            group.throughput(Throughput::Elements(batch as u64));
            let id = BenchmarkId::new(format!("sync-{}", sync.name()), batch);
            group.bench_function(id, |b| {
                b.iter_batched(
                    || {
                        (0..batch)
                            .map(|_| {
                                next_key += 1;
                                Operation::Store(StoreOp::new(
                                    Bytes::from(format!("key:{next_key:060}")),
                                    StoreMode::Set,
                                    0,
                                    Expiry::Never,
                                    Bytes::from(vec![b'v'; 100]),
                                ))
                            })
                            .collect::<Vec<_>>()
                    },
                    // All writes are queued before the pipeline wakes up with
                    // them, so they commit as one batch.
                    |ops| {
                        runtime.block_on(async {
                            let mut pending = Vec::with_capacity(ops.len());
                            for op in ops {
                                pending.push(store.enqueue(op).await);
                            }
                            for write in pending {
                                assert!(matches!(write.outcome().await, Outcome::Stored { .. }));
                            }
                        })
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        store.shutdown().unwrap();
    }
    group.finish();
}

criterion_group!(benches, record_codec, batch_commit);
criterion_main!(benches);
