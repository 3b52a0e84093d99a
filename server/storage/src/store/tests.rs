//! Storage model test: random operations against the store and against a
//! `HashMap`, with graceful and abrupt restarts and a clock that jumps, plus
//! the corrupt-record path, reclaiming, tombstones and a failed log write.
//! The tests that exercise the engine run on each engine.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::clock::ManualClock;
use crate::config::{EngineKind, ItemRules};
use crate::engine::{Change, Checkpoint};
use crate::expiry::Expiry;
use crate::ops::{CounterOp, DeleteOp, FetchOp, StoreMode, StoreOp};

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

/// memcached's item rules, from the protocol crate, as the server passes them.
pub(crate) fn memcached_rules() -> ItemRules {
    ItemRules {
        max_item_size: 1024 * 1024,
        item_size: mcstore_protocol::item_size,
        parse_number: mcstore_protocol::number::parse_u64,
    }
}

pub(crate) fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig::new(dir, memcached_rules())
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Store {
    open_on(dir, clock, EngineKind::Sled)
}

fn open_on(dir: &std::path::Path, clock: &Arc<ManualClock>, engine: EngineKind) -> Store {
    let mut config = config(dir);
    config.engine = engine;
    // The checkpointer has the engine shorten its recovery (sled reopens
    // itself) whenever a few writes were applied.
    config.engine_replay_bytes = 2048;
    config.reclaim_keys_per_sec = 0;
    config.checkpoint_interval = Duration::from_millis(50);
    config.wal_segment_bytes = 4096;
    Store::open(config, clock.clone()).expect("open store")
}

async fn write(store: &Store, op: Operation) -> Outcome {
    store.execute(op).await
}

fn expiry(exptime: i32, now: u64) -> Expiry {
    Expiry::from_deadline(mcstore_protocol::exptime::expires_at(
        i64::from(exptime),
        now,
    ))
}

fn store_op(
    mode: StoreMode,
    key: &Bytes,
    flags: u32,
    exptime: i32,
    value: &[u8],
    now: u64,
) -> Operation {
    Operation::Store(StoreOp::new(
        key.clone(),
        mode,
        flags,
        expiry(exptime, now),
        Bytes::copy_from_slice(value),
    ))
}

fn stored(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Stored { .. })
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

/// Runs each `async fn NAME(engine: EngineKind)` named as one test per
/// engine: `NAME::sled` and `NAME::fjall`.
macro_rules! engine_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                super::$name(super::EngineKind::Sled).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fjall() {
                super::$name(super::EngineKind::Fjall).await
            }
        }
    )+};
}

engine_tests!(
    store_matches_a_hashmap_model_across_restarts,
    shortening_the_engines_recovery_keeps_everything,
    a_corrupt_record_is_reported_and_counted_never_returned,
    expired_and_flushed_items_are_invisible_at_once_and_reclaimed,
);

async fn store_matches_a_hashmap_model_across_restarts(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut store = open_on(dir.path(), &clock, engine);
    let mut model: HashMap<Bytes, Item> = HashMap::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut all_cas = std::collections::HashSet::new();
    // Times the engine shortened its recovery between the steps.
    let mut shortened = 0;
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
                let outcome = write(&store, store_op(mode, &k, flags, exptime, &value, now)).await;
                let new_expiry = expiry(exptime, now);
                let expected_stored = match (mode, &existing) {
                    (StoreMode::Add, Some(_))
                    | (StoreMode::Replace, None)
                    | (StoreMode::Append | StoreMode::Prepend, None) => false,
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
                        true
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
                        true
                    }
                    _ => {
                        model.insert(
                            k.clone(),
                            Item {
                                value: value.clone(),
                                flags,
                                expiry: new_expiry,
                                cas: 0,
                            },
                        );
                        true
                    }
                };
                assert_eq!(
                    stored(&outcome),
                    expected_stored,
                    "step {step} {mode:?}: {outcome:?}"
                );
                if !expected_stored {
                    assert_eq!(outcome, Outcome::NotStored, "step {step} {mode:?}");
                }
                if stored(&outcome) && live(&model, &k, now).is_some() {
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
                    store_op(StoreMode::Cas(unique), &k, flags, 0, &value, now),
                )
                .await;
                match &existing {
                    None => assert_eq!(outcome, Outcome::NotFound, "step {step} cas"),
                    Some(item) if item.cas != unique => {
                        assert_eq!(outcome, Outcome::Exists, "step {step} cas")
                    }
                    Some(_) => {
                        assert!(stored(&outcome), "step {step} cas: {outcome:?}");
                        model.insert(
                            k.clone(),
                            Item {
                                value: value.clone(),
                                flags,
                                expiry: Expiry::Never,
                                cas: 0,
                            },
                        );
                        assert!(
                            all_cas.insert(learn_cas(&store, &mut model, &k)),
                            "cas repeated"
                        );
                    }
                }
            }
            40..=49 => {
                let outcome = write(&store, Operation::Delete(DeleteOp::new(k.clone()))).await;
                let expected = if existing.is_some() {
                    Outcome::Deleted
                } else {
                    Outcome::NotFound
                };
                model.remove(&k);
                assert_eq!(outcome, expected, "step {step} delete");
            }
            50..=64 => {
                let increment = rng.below(2) == 0;
                let delta = rng.below(50);
                let outcome = write(
                    &store,
                    Operation::Counter(CounterOp::new(k.clone(), increment, delta)),
                )
                .await;
                match &existing {
                    None => assert_eq!(outcome, Outcome::NotFound),
                    Some(item) => match std::str::from_utf8(&item.value)
                        .ok()
                        .and_then(|s| s.trim_end().parse::<u64>().ok())
                    {
                        None => assert_eq!(outcome, Outcome::NonNumeric, "step {step}"),
                        Some(current) => {
                            let next = if increment {
                                current.wrapping_add(delta)
                            } else {
                                current.saturating_sub(delta)
                            };
                            let Outcome::Counter(result) = &outcome else {
                                panic!("step {step}: {outcome:?}");
                            };
                            assert_eq!(result.number, next, "step {step}");
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
                    store_op(StoreMode::Set, &k, 0, 0, number.as_bytes(), now),
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
                let new_expiry = expiry(exptime, now);
                let outcome = write(
                    &store,
                    Operation::Fetch(FetchOp::touch(k.clone(), new_expiry)),
                )
                .await;
                match &existing {
                    None => assert_eq!(outcome, Outcome::NotFound),
                    Some(item) => {
                        assert!(matches!(outcome, Outcome::Fetched(_)), "{outcome:?}");
                        model.insert(
                            k.clone(),
                            Item {
                                expiry: new_expiry,
                                ..item.clone()
                            },
                        );
                    }
                }
            }
            81..=82 => {
                assert_eq!(
                    write(&store, Operation::FlushAll { deadline: now - 1 }).await,
                    Outcome::Done
                );
                model.clear();
            }
            83..=88 => clock.advance_secs(1),
            89 => {
                // What the checkpointer does when the backlog is large
                // (sled reopens itself): everything stays.
                store.engine.shorten_recovery().unwrap();
                shortened += 1;
            }
            90..=94 => {
                store.shutdown().unwrap();
                shortened += store.stats().recoveries_shortened.load(Ordering::Relaxed);
                drop(store);
                store = open_on(dir.path(), &clock, engine);
            }
            _ => {
                // Abrupt: no final checkpoint; recovery replays the log.
                shortened += store.stats().recoveries_shortened.load(Ordering::Relaxed);
                drop(store);
                store = open_on(dir.path(), &clock, engine);
            }
        }
        check_all(&store, &model, clock.now_secs(), step).await;
    }
    let items = store.stats().items.load(Ordering::Relaxed);
    let live_count = (0..16)
        .filter(|&i| live(&model, &key(i), clock.now_secs()).is_some())
        .count() as u64;
    assert!(
        items >= live_count,
        "curr_items {items} < live {live_count}"
    );
    store.shutdown().unwrap();
    shortened += store.stats().recoveries_shortened.load(Ordering::Relaxed);
    assert!(shortened > 0, "the engine never shortened its recovery");
}

async fn shortening_the_engines_recovery_keeps_everything(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open_on(dir.path(), &clock, engine);
    // Writers keep going while the checkpointer has the engine shorten its
    // recovery (the backlog passes 2 KiB every few writes).
    let before = store.stats().recoveries_shortened.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0u64;
    while store.stats().recoveries_shortened.load(Ordering::Relaxed) < before + 3 {
        assert!(
            Instant::now() < deadline,
            "the engine never shortened its recovery"
        );
        let outcome = write(&store, store_op(StoreMode::Set, &key(n), 0, 0, b"v", START)).await;
        assert!(stored(&outcome), "{outcome:?}");
        n += 1;
    }
    let checkpoint = store.engine.checkpoint().unwrap();
    store.engine.shorten_recovery().unwrap();
    assert_eq!(store.engine.checkpoint().unwrap(), checkpoint);
    assert_eq!(store.engine.recovery_backlog(), 0);
    for i in 0..n {
        assert!(
            matches!(store.get(&key(i)).unwrap(), Lookup::Hit(_)),
            "key{i}"
        );
    }
    // An abrupt restart after it replays the log and finds everything too.
    drop(store);
    let store = open_on(dir.path(), &clock, engine);
    for i in 0..n {
        assert!(
            matches!(store.get(&key(i)).unwrap(), Lookup::Hit(_)),
            "key{i}"
        );
    }
    store.shutdown().unwrap();
}

fn set(key: &'static str, exptime: i32) -> Operation {
    store_op(
        StoreMode::Set,
        &Bytes::from_static(key.as_bytes()),
        0,
        exptime,
        b"v",
        START,
    )
}

async fn a_corrupt_record_is_reported_and_counted_never_returned(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open_on(dir.path(), &clock, engine);
    let k = Bytes::from_static(b"victim");
    write(
        &store,
        store_op(StoreMode::Set, &k, 0, 0, b"precious", START),
    )
    .await;
    // Flip a byte of the value behind the store's back.
    let mut bytes = store.engine.get(&k).unwrap().unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    let checkpoint: Checkpoint = store.engine.checkpoint().unwrap().unwrap();
    store
        .engine
        .apply(
            &[Change::Put {
                key: k.clone(),
                record: Bytes::from(bytes),
            }],
            &checkpoint,
        )
        .unwrap();
    assert!(matches!(store.get(&k), Err(ReadError::Corrupt(_))));
    assert_eq!(store.stats().corrupt_records.load(Ordering::Relaxed), 1);
    // Read-modify-write commands refuse it too, with an error, not a panic.
    let outcome = write(&store, store_op(StoreMode::Append, &k, 0, 0, b"x", START)).await;
    assert!(
        matches!(&outcome, Outcome::Failed(WriteError::Corrupt(_))),
        "{outcome:?}"
    );
    assert!(format!(
        "{}",
        match outcome {
            Outcome::Failed(e) => e,
            _ => unreachable!(),
        }
    )
    .contains("corrupt"));
    // A plain set replaces it.
    write(&store, store_op(StoreMode::Set, &k, 0, 0, b"fresh", START)).await;
    assert!(matches!(store.get(&k), Ok(Lookup::Hit(record)) if record.value == "fresh"));
    store.shutdown().unwrap();
}

async fn expired_and_flushed_items_are_invisible_at_once_and_reclaimed(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut config = config(dir.path());
    config.engine = engine;
    config.reclaim_keys_per_sec = 1_000_000;
    let store = Store::open(config, clock.clone()).unwrap();
    write(&store, set("short", 10)).await;
    write(&store, set("long", 0)).await;
    assert_eq!(store.stats().items.load(Ordering::Relaxed), 2);
    clock.advance_secs(10);
    assert_eq!(store.get(b"short").unwrap(), Lookup::Expired);
    assert!(matches!(store.get(b"long").unwrap(), Lookup::Hit(_)));
    // The reclaimer turns the expired item into a tombstone at its own
    // version, so that no older write from a replica can bring it back.
    wait_for(|| store.stats().items.load(Ordering::Relaxed) == 1);
    assert_eq!(store.get(b"short").unwrap(), Lookup::Miss);
    let tombstone = store.get_record(b"short").unwrap().unwrap();
    assert!(tombstone.is_tombstone());
    assert_eq!(tombstone.version.timestamp.secs(), START);
    assert_eq!(store.stats().tombstones.load(Ordering::Relaxed), 1);
    // A flushed item goes without a trace: the markers keep it hidden.
    write(
        &store,
        Operation::FlushAll {
            deadline: START + 9,
        },
    )
    .await;
    assert_eq!(store.get(b"long").unwrap(), Lookup::Flushed);
    clock.advance_millis(1);
    write(
        &store,
        store_op(
            StoreMode::Set,
            &Bytes::from_static(b"after"),
            0,
            0,
            b"v",
            START + 11,
        ),
    )
    .await;
    assert!(matches!(store.get(b"after").unwrap(), Lookup::Hit(_)));
    wait_for(|| store.get_record(b"long").unwrap().is_none());
    assert_eq!(store.stats().items.load(Ordering::Relaxed), 1);
    store.shutdown().unwrap();
}

fn wait_for(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "the reclaimer did not get there");
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let outcome = write(&store, set("k", 0)).await;
    assert!(
        matches!(&outcome, Outcome::Failed(err) if err.to_string().contains("write-ahead log")),
        "{outcome:?}"
    );
    // Nothing became visible, and the pipeline refuses later writes too.
    assert_eq!(store.get(b"k").unwrap(), Lookup::Miss);
    assert!(matches!(
        write(&store, set("k", 0)).await,
        Outcome::Failed(WriteError::Refusing(_))
    ));
    assert_eq!(store.get(b"k").unwrap(), Lookup::Miss);
}

#[tokio::test]
async fn counters_read_stored_values_like_strtoull() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    for (stored, expected) in [
        (&b"12"[..], Some(13)),
        (b" 12", Some(13)),
        (b"12 ", Some(13)),
        (b"1 2", Some(2)),
        (b"12\0junk", Some(13)),
        (b"12a", None),
        (b"-1", None),
        (b"18446744073709551616", None),
    ] {
        let k = Bytes::from_static(b"counter");
        write(&store, store_op(StoreMode::Set, &k, 0, 0, stored, START)).await;
        let outcome = write(&store, Operation::Counter(CounterOp::new(k, true, 1))).await;
        match (outcome, expected) {
            (Outcome::Counter(result), Some(number)) => assert_eq!(result.number, number),
            (Outcome::NonNumeric, None) => {}
            (other, _) => panic!("{stored:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn each_write_learns_the_stream_sequence_of_its_change() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let k = Bytes::from_static(b"k");
    let first = store
        .enqueue(store_op(StoreMode::Set, &k, 0, 0, b"one", START))
        .await;
    let second = store
        .enqueue(store_op(StoreMode::Set, &k, 0, 0, b"two", START))
        .await;
    let unchanged = store
        .enqueue(store_op(StoreMode::Add, &k, 0, 0, b"no", START))
        .await;
    let (_, first) = first.outcome_and_seq().await;
    let (_, second) = second.outcome_and_seq().await;
    let (outcome, none) = unchanged.outcome_and_seq().await;
    assert_eq!(outcome, Outcome::NotStored);
    assert_eq!(none, None, "a write that changed nothing has no sequence");
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(second, first + 1);
    let mut reader = store.follow(first - 1);
    let entry = reader.try_next().unwrap().unwrap();
    assert_eq!(entry.seq, first);
    let Change::Put { record, .. } = reader.try_next().unwrap().unwrap().change else {
        panic!("not a put");
    };
    assert_eq!(Record::decode(b"k", &record).unwrap().value, "two");
}
