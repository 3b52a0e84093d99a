//! Storage model test: random operations against the store and against a
//! `HashMap`, with graceful and abrupt restarts and a clock that jumps, plus
//! the corrupt-record path.

use std::collections::HashMap;

use std::time::Instant;

use mcstore_protocol::exptime::Expiry;
use mcstore_protocol::StoreMode;

use super::*;
use crate::clock::ManualClock;

const START: u64 = 1_800_000_000;

/// The model's view of an item.
#[derive(Debug, Clone)]
struct Item {
    value: Vec<u8>,
    flags: u32,
    expiry: Expiry,
    cas: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Store {
    let mut config = StoreConfig::new(dir);
    config.reclaim_keys_per_sec = 0;
    config.checkpoint_interval = Duration::from_millis(50);
    config.wal_segment_bytes = 4096;
    Store::open(config, clock.clone()).expect("open store")
}

async fn write(store: &Store, op: WriteOp) -> WriteOutcome {
    store.enqueue(op).await.outcome().await
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key{i}"))
}

/// The model's live item under a key at `now`.
fn live(model: &HashMap<Bytes, Item>, key: &Bytes, now: u64) -> Option<Item> {
    model
        .get(key)
        .filter(|item| !item.expiry.is_expired(now))
        .cloned()
}

async fn check_all(store: &Store, model: &HashMap<Bytes, Item>, now: u64, step: usize) {
    for i in 0..16 {
        let key = key(i);
        let expected = live(model, &key, now);
        match (store.get(&key).expect("readable"), expected) {
            (Lookup::Hit(record), Some(item)) => {
                assert_eq!(
                    record.value.as_ref(),
                    &item.value[..],
                    "step {step} {key:?}"
                );
                assert_eq!(record.flags, item.flags, "step {step} {key:?}");
                assert_eq!(record.expiry, item.expiry, "step {step} {key:?}");
                assert_eq!(record.cas, item.cas, "step {step} {key:?}");
            }
            (Lookup::Hit(record), None) => {
                panic!("step {step}: {key:?} should be gone, found {record:?}")
            }
            (_, Some(item)) => panic!("step {step}: {key:?} missing, expected {item:?}"),
            (_, None) => {}
        }
    }
}

/// After a change, the model learns the cas the store gave the item.
fn learn_cas(store: &Store, model: &mut HashMap<Bytes, Item>, key: &Bytes) -> u64 {
    match store.get(key).expect("readable") {
        Lookup::Hit(record) => {
            if let Some(item) = model.get_mut(key) {
                item.cas = record.cas;
            }
            record.cas
        }
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_matches_a_hashmap_model_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut store = open(dir.path(), &clock);
    let mut model: HashMap<Bytes, Item> = HashMap::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut all_cas = std::collections::HashSet::new();
    for step in 0..3000 {
        let now = clock.now_secs();
        let k = key(rng.below(16));
        let value = format!("v{}", rng.below(1000)).into_bytes();
        let flags = rng.below(4) as u32;
        let exptime: i32 = match rng.below(10) {
            0 => 2,
            1 => -1,
            _ => 0,
        };
        let choice = rng.below(100);
        let existing = live(&model, &k, now);
        match choice {
            0..=29 => {
                let mode = [
                    StoreMode::Set,
                    StoreMode::Add,
                    StoreMode::Replace,
                    StoreMode::Append,
                    StoreMode::Prepend,
                ][rng.below(5) as usize];
                let outcome = write(
                    &store,
                    WriteOp::Store {
                        mode,
                        key: k.clone(),
                        flags,
                        exptime,
                        value: Bytes::from(value.clone()),
                    },
                )
                .await;
                let expiry = Expiry::from_exptime(i64::from(exptime), now);
                let expected = match (mode, &existing) {
                    (StoreMode::Add, Some(_))
                    | (StoreMode::Replace, None)
                    | (StoreMode::Append | StoreMode::Prepend, None) => WriteOutcome::NotStored,
                    (StoreMode::Append, Some(old)) => {
                        let mut joined = old.value.clone();
                        joined.extend_from_slice(&value);
                        model.insert(
                            k.clone(),
                            Item {
                                value: joined,
                                ..old.clone()
                            },
                        );
                        WriteOutcome::Stored
                    }
                    (StoreMode::Prepend, Some(old)) => {
                        let mut joined = value.clone();
                        joined.extend_from_slice(&old.value);
                        model.insert(
                            k.clone(),
                            Item {
                                value: joined,
                                ..old.clone()
                            },
                        );
                        WriteOutcome::Stored
                    }
                    _ => {
                        model.insert(
                            k.clone(),
                            Item {
                                value: value.clone(),
                                flags,
                                expiry,
                                cas: 0,
                            },
                        );
                        WriteOutcome::Stored
                    }
                };
                assert_eq!(outcome, expected, "step {step} {mode:?}");
                if outcome == WriteOutcome::Stored && live(&model, &k, now).is_some() {
                    assert!(
                        all_cas.insert(learn_cas(&store, &mut model, &k)),
                        "cas repeated"
                    );
                }
            }
            30..=39 => {
                let unique = match (&existing, rng.below(2)) {
                    (Some(item), 0) => item.cas,
                    _ => rng.below(1 << 40) + 1,
                };
                let outcome = write(
                    &store,
                    WriteOp::Store {
                        mode: StoreMode::Cas(unique),
                        key: k.clone(),
                        flags,
                        exptime: 0,
                        value: Bytes::from(value.clone()),
                    },
                )
                .await;
                let expected = match &existing {
                    None => WriteOutcome::NotFound,
                    Some(item) if item.cas != unique => WriteOutcome::Exists,
                    Some(_) => {
                        model.insert(
                            k.clone(),
                            Item {
                                value: value.clone(),
                                flags,
                                expiry: Expiry::Never,
                                cas: 0,
                            },
                        );
                        WriteOutcome::Stored
                    }
                };
                assert_eq!(outcome, expected, "step {step} cas");
                if outcome == WriteOutcome::Stored {
                    assert!(
                        all_cas.insert(learn_cas(&store, &mut model, &k)),
                        "cas repeated"
                    );
                }
            }
            40..=49 => {
                let outcome = write(&store, WriteOp::Delete { key: k.clone() }).await;
                let expected = if existing.is_some() {
                    WriteOutcome::Deleted
                } else {
                    WriteOutcome::NotFound
                };
                model.remove(&k);
                assert_eq!(outcome, expected, "step {step} delete");
            }
            50..=64 => {
                let increment = rng.below(2) == 0;
                let delta = rng.below(50);
                let outcome = write(
                    &store,
                    WriteOp::Arithmetic {
                        key: k.clone(),
                        increment,
                        delta,
                    },
                )
                .await;
                match &existing {
                    None => assert_eq!(outcome, WriteOutcome::NotFound),
                    Some(item) => match std::str::from_utf8(&item.value)
                        .ok()
                        .and_then(|s| s.trim_end().parse::<u64>().ok())
                    {
                        None => assert_eq!(outcome, WriteOutcome::NonNumeric, "step {step}"),
                        Some(current) => {
                            let next = if increment {
                                current.wrapping_add(delta)
                            } else {
                                current.saturating_sub(delta)
                            };
                            assert_eq!(outcome, WriteOutcome::Number(next), "step {step}");
                            let mut text = next.to_string().into_bytes();
                            if text.len() <= item.value.len() {
                                text.resize(item.value.len(), b' ');
                            }
                            model.insert(
                                k.clone(),
                                Item {
                                    value: text,
                                    ..item.clone()
                                },
                            );
                            assert!(
                                all_cas.insert(learn_cas(&store, &mut model, &k)),
                                "cas repeated"
                            );
                        }
                    },
                }
            }
            65..=72 => {
                let number = rng.below(100).to_string();
                write(
                    &store,
                    WriteOp::Store {
                        mode: StoreMode::Set,
                        key: k.clone(),
                        flags: 0,
                        exptime: 0,
                        value: Bytes::from(number.clone()),
                    },
                )
                .await;
                model.insert(
                    k.clone(),
                    Item {
                        value: number.into_bytes(),
                        flags: 0,
                        expiry: Expiry::Never,
                        cas: 0,
                    },
                );
                assert!(
                    all_cas.insert(learn_cas(&store, &mut model, &k)),
                    "cas repeated"
                );
            }
            73..=80 => {
                let outcome = write(
                    &store,
                    WriteOp::Touch {
                        key: k.clone(),
                        exptime,
                        return_item: false,
                    },
                )
                .await;
                match &existing {
                    None => assert_eq!(outcome, WriteOutcome::NotFound),
                    Some(item) => {
                        assert_eq!(outcome, WriteOutcome::Touched);
                        let expiry = Expiry::from_exptime(i64::from(exptime), now);
                        model.insert(
                            k.clone(),
                            Item {
                                expiry,
                                ..item.clone()
                            },
                        );
                    }
                }
            }
            81..=82 => {
                assert_eq!(
                    write(&store, WriteOp::FlushAll { delay: 0 }).await,
                    WriteOutcome::Ok
                );
                model.clear();
            }
            83..=89 => clock.advance_secs(1),
            90..=94 => {
                store.shutdown().unwrap();
                drop(store);
                store = open(dir.path(), &clock);
            }
            _ => {
                // Abrupt: no final checkpoint; recovery replays the log.
                drop(store);
                store = open(dir.path(), &clock);
            }
        }
        check_all(&store, &model, clock.now_secs(), step).await;
    }
    let items = store.shared().items.load(Ordering::Relaxed);
    let live_count = (0..16)
        .filter(|&i| live(&model, &key(i), clock.now_secs()).is_some())
        .count() as u64;
    assert!(
        items >= live_count,
        "curr_items {items} < live {live_count}"
    );
    store.shutdown().unwrap();
}

#[tokio::test]
async fn a_corrupt_record_is_reported_and_counted_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let k = Bytes::from_static(b"victim");
    write(
        &store,
        WriteOp::Store {
            mode: StoreMode::Set,
            key: k.clone(),
            flags: 0,
            exptime: 0,
            value: Bytes::from_static(b"precious"),
        },
    )
    .await;
    // Flip a byte of the value behind the store's back.
    let mut bytes = store.engine.get(&k).unwrap().unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    store
        .engine
        .apply(
            &[Change::Put {
                key: k.clone(),
                record: Bytes::from(bytes),
            }],
            &store.engine.checkpoint().unwrap().unwrap(),
        )
        .unwrap();
    assert!(matches!(store.get(&k), Err(ReadError::Corrupt(_))));
    assert_eq!(store.shared().corrupt_records.load(Ordering::Relaxed), 1);
    // Read-modify-write commands refuse it too, with an error, not a panic.
    let outcome = write(
        &store,
        WriteOp::Store {
            mode: StoreMode::Append,
            key: k.clone(),
            flags: 0,
            exptime: 0,
            value: Bytes::from_static(b"x"),
        },
    )
    .await;
    assert!(matches!(outcome, WriteOutcome::Failed(message) if message.contains("corrupt")));
    // A plain set replaces it.
    write(
        &store,
        WriteOp::Store {
            mode: StoreMode::Set,
            key: k.clone(),
            flags: 0,
            exptime: 0,
            value: Bytes::from_static(b"fresh"),
        },
    )
    .await;
    assert!(matches!(store.get(&k), Ok(Lookup::Hit(record)) if record.value == "fresh"));
    store.shutdown().unwrap();
}

#[tokio::test]
async fn expired_and_flushed_items_are_invisible_at_once_and_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut config = StoreConfig::new(dir.path());
    config.reclaim_keys_per_sec = 1_000_000;
    let store = Store::open(config, clock.clone()).unwrap();
    let set = |key: &'static str, exptime| WriteOp::Store {
        mode: StoreMode::Set,
        key: Bytes::from_static(key.as_bytes()),
        flags: 0,
        exptime,
        value: Bytes::from_static(b"v"),
    };
    write(&store, set("short", 10)).await;
    write(&store, set("long", 0)).await;
    assert_eq!(store.shared().items.load(Ordering::Relaxed), 2);
    clock.advance_secs(10);
    assert_eq!(store.get(b"short").unwrap(), Lookup::Expired);
    assert!(matches!(store.get(b"long").unwrap(), Lookup::Hit(_)));
    write(&store, WriteOp::FlushAll { delay: 0 }).await;
    assert_eq!(store.get(b"long").unwrap(), Lookup::Flushed);
    write(&store, set("after", 0)).await;
    assert!(matches!(store.get(b"after").unwrap(), Lookup::Hit(_)));
    // The reclaimer removes both dead items and the count follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.shared().items.load(Ordering::Relaxed) != 1 {
        assert!(
            Instant::now() < deadline,
            "reclaimer did not remove dead items"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.get(b"short").unwrap(), Lookup::Miss);
    store.shutdown().unwrap();
}

#[tokio::test]
async fn a_failed_log_write_is_never_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // The first log segment the store creates is a link to /dev/full: every
    // write to it fails with ENOSPC.
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    std::os::unix::fs::symlink("/dev/full", wal.join(format!("{:020}.wal", 1))).unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let set = || WriteOp::Store {
        mode: StoreMode::Set,
        key: Bytes::from_static(b"k"),
        flags: 0,
        exptime: 0,
        value: Bytes::from_static(b"v"),
    };
    let outcome = write(&store, set()).await;
    assert!(
        matches!(&outcome, WriteOutcome::Failed(message) if message.contains("write-ahead log")),
        "{outcome:?}"
    );
    // Nothing became visible, and the writer refuses later writes too.
    assert_eq!(store.get(b"k").unwrap(), Lookup::Miss);
    assert!(matches!(
        write(&store, set()).await,
        WriteOutcome::Failed(_)
    ));
    assert_eq!(store.get(b"k").unwrap(), Lookup::Miss);
}
