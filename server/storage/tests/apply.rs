//! Applying records written by other nodes: kept only if newer, so that any
//! set of records applied in any order, any number of times, leaves every
//! store in the same state (a property test over three stores and many
//! seeds); the clock and the cas counter move past what was applied; a
//! version too far in the future is refused and counted; tombstones hide a
//! key, replicate like items, keep an older write out, and are purged after
//! their grace period. Every test runs on each engine.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, engine_tests, open, set, Rng, START};
use mcstore_storage::clock::ManualClock;
use mcstore_storage::ops::{DeleteOp, Outcome};
use mcstore_storage::{
    EngineKind, Expiry, Lookup, NodeId, Operation, Record, Store, Timestamp, Version, WriteError,
};

const KEYS: u64 = 6;

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key{i}"))
}

/// A random record for one of a few keys: an item or a tombstone, from one
/// of three nodes, at one of a few milliseconds (so timestamps often tie
/// and the node id decides). A node never makes two writes with one
/// version, so versions already used are drawn again.
fn random_record(rng: &mut Rng, used: &mut std::collections::HashSet<Version>) -> (Bytes, Record) {
    let version = loop {
        let version = Version {
            timestamp: Timestamp(
                Timestamp::from_millis(START * 1000 - 1000 + rng.below(8)).0 + rng.below(4),
            ),
            node: NodeId(1 + rng.below(3)),
        };
        if used.insert(version) {
            break version;
        }
    };
    let record = if rng.below(4) == 0 {
        Record::tombstone(version, rng.below(1000))
    } else {
        Record {
            flags: rng.below(4) as u32,
            expiry: if rng.below(3) == 0 {
                Expiry::At(START + rng.below(100))
            } else {
                Expiry::Never
            },
            cas: 1 + rng.below(1000),
            version,
            marks: 0,
            value: Bytes::from(format!("v{}", rng.below(50))),
        }
    };
    (key(rng.below(KEYS)), record)
}

/// What every key holds, as stored (items and tombstones).
fn state(store: &Store) -> BTreeMap<Bytes, Option<Record>> {
    (0..KEYS)
        .map(|i| (key(i), store.get_record(&key(i)).expect("readable")))
        .collect()
}

async fn apply_all(store: &Store, records: &[(Bytes, Record)]) {
    for (key, record) in records {
        let outcome = store
            .execute(Operation::Apply {
                key: key.clone(),
                record: record.clone(),
            })
            .await;
        assert!(
            matches!(outcome, Outcome::Applied | Outcome::Stale),
            "{outcome:?}"
        );
    }
}

async fn any_order_any_number_of_times_converges(engine: EngineKind) {
    for seed in 1..=25u64 {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut used = std::collections::HashSet::new();
        let records: Vec<(Bytes, Record)> = (0..40)
            .map(|_| random_record(&mut rng, &mut used))
            .collect();
        let clock = Arc::new(ManualClock::at_secs(START));
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let stores: Vec<Store> = dirs
            .iter()
            .map(|d| open(d.path(), &clock, engine))
            .collect();
        // Store 0: in order. Store 1: shuffled, every record twice. Store
        // 2: shuffled, some applied, then a restart, then all again.
        apply_all(&stores[0], &records).await;
        let mut twice = records.clone();
        twice.extend(records.iter().cloned());
        rng.shuffle(&mut twice);
        apply_all(&stores[1], &twice).await;
        let mut shuffled = records.clone();
        rng.shuffle(&mut shuffled);
        apply_all(&stores[2], &shuffled[..records.len() / 2]).await;
        let mut stores = stores;
        let third = stores.pop().unwrap();
        drop(third);
        stores.push(open(dirs[2].path(), &clock, engine));
        rng.shuffle(&mut shuffled);
        apply_all(&stores[2], &shuffled).await;

        let expected = state(&stores[0]);
        // The state is the newest version of each key.
        for (key, stored) in &expected {
            let newest = records
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, r)| r)
                .max_by_key(|r| r.version);
            assert_eq!(stored.as_ref(), newest, "seed {seed} {key:?}");
        }
        for (index, store) in stores.iter().enumerate().skip(1) {
            assert_eq!(state(store), expected, "seed {seed}: store {index} differs");
        }
        // Counts agree too (tombstones are not items).
        let items: Vec<u64> = stores
            .iter()
            .map(|s| s.stats().items.load(Ordering::Relaxed))
            .collect();
        let tombstones: Vec<u64> = stores
            .iter()
            .map(|s| s.stats().tombstones.load(Ordering::Relaxed))
            .collect();
        assert!(
            items.iter().all(|&n| n == items[0]),
            "seed {seed}: {items:?}"
        );
        assert!(
            tombstones.iter().all(|&n| n == tombstones[0]),
            "seed {seed}: {tombstones:?}"
        );
        let live_items = expected
            .values()
            .flatten()
            .filter(|r| !r.is_tombstone())
            .count() as u64;
        assert_eq!(items[0], live_items, "seed {seed}");
    }
}

async fn applying_moves_the_clock_and_the_cas_counter_past_the_record(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock, engine);
    let remote = Record {
        flags: 0,
        expiry: Expiry::Never,
        cas: u64::MAX / 2,
        version: Version {
            timestamp: Timestamp::from_millis(START * 1000 + 400),
            node: NodeId(9),
        },
        marks: 0,
        value: Bytes::from_static(b"remote"),
    };
    let applied = store
        .execute(Operation::Apply {
            key: Bytes::from_static(b"k"),
            record: remote.clone(),
        })
        .await;
    assert_eq!(applied, Outcome::Applied);
    // A local write right after is newer, with a larger cas, even though
    // the wall clock has not moved.
    let Outcome::Stored { cas, .. } = store.execute(set("k", "local")).await else {
        panic!("set failed");
    };
    assert!(cas > remote.cas);
    let local = store.get_record(b"k").unwrap().unwrap();
    assert!(local.version > remote.version);
    assert_eq!(local.value, Bytes::from_static(b"local"));
    // The remote record again is stale now.
    let again = store
        .execute(Operation::Apply {
            key: Bytes::from_static(b"k"),
            record: remote,
        })
        .await;
    assert_eq!(again, Outcome::Stale);
}

async fn a_version_too_far_ahead_is_refused_and_counted(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock, engine);
    let future = Record {
        flags: 0,
        expiry: Expiry::Never,
        cas: 1,
        version: Version {
            timestamp: Timestamp::from_millis(START * 1000 + 5_000),
            node: NodeId(9),
        },
        marks: 0,
        value: Bytes::from_static(b"from the future"),
    };
    let outcome = store
        .execute(Operation::Apply {
            key: Bytes::from_static(b"k"),
            record: future,
        })
        .await;
    assert!(
        matches!(&outcome, Outcome::Failed(WriteError::ClockSkew(skew)) if skew.limit_ms == 500),
        "{outcome:?}"
    );
    assert_eq!(store.get_record(b"k").unwrap(), None);
    assert_eq!(store.stats().clock_skew_refused.load(Ordering::Relaxed), 1);
    // Later local versions did not follow the bad clock.
    store.execute(set("other", "v")).await;
    let local = store.get_record(b"other").unwrap().unwrap();
    assert!(local.version.timestamp.millis() < START * 1000 + 1000);
}

async fn a_delete_leaves_a_tombstone_that_hides_replicates_and_keeps_older_writes_out(
    engine: EngineKind,
) {
    let clock = Arc::new(ManualClock::at_secs(START));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        open(dir_a.path(), &clock, engine),
        open(dir_b.path(), &clock, engine),
    );
    a.execute(set("k", "old")).await;
    let old = a.get_record(b"k").unwrap().unwrap();
    clock.advance_millis(5);
    assert_eq!(
        a.execute(Operation::Delete(DeleteOp::new(Bytes::from_static(b"k"))))
            .await,
        Outcome::Deleted
    );
    // Invisible, not an item, but a versioned trace.
    assert_eq!(a.get(b"k").unwrap(), Lookup::Miss);
    assert_eq!(a.stats().items.load(Ordering::Relaxed), 0);
    assert_eq!(a.stats().tombstones.load(Ordering::Relaxed), 1);
    let tombstone = a.get_record(b"k").unwrap().unwrap();
    assert!(tombstone.is_tombstone() && tombstone.version > old.version);
    // A delete of a deleted key is a miss and leaves the tombstone alone.
    assert_eq!(
        a.execute(Operation::Delete(DeleteOp::new(Bytes::from_static(b"k"))))
            .await,
        Outcome::NotFound
    );
    assert_eq!(a.get_record(b"k").unwrap().unwrap(), tombstone);
    // The tombstone replicates like an item; a late, older write of the
    // key arriving after it cannot bring the key back.
    for record in [tombstone.clone(), old.clone()] {
        b.execute(Operation::Apply {
            key: Bytes::from_static(b"k"),
            record,
        })
        .await;
    }
    assert_eq!(b.get(b"k").unwrap(), Lookup::Miss);
    assert_eq!(b.get_record(b"k").unwrap().unwrap(), tombstone);
    // A new write after the delete is newer and wins everywhere.
    clock.advance_millis(5);
    b.execute(set("k", "new")).await;
    let new = b.get_record(b"k").unwrap().unwrap();
    a.execute(Operation::Apply {
        key: Bytes::from_static(b"k"),
        record: new,
    })
    .await;
    assert!(matches!(a.get(b"k").unwrap(), Lookup::Hit(record) if record.value == "new"));
    assert_eq!(a.stats().tombstones.load(Ordering::Relaxed), 0);
}

async fn tombstones_are_purged_after_their_grace_period_and_not_before(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut config = config(dir.path(), engine);
    config.reclaim_keys_per_sec = 1_000_000;
    config.tombstone_grace = Duration::from_secs(60);
    let store = Store::open(config, clock.clone()).unwrap();
    store.execute(set("k", "v")).await;
    store
        .execute(Operation::Delete(DeleteOp::new(Bytes::from_static(b"k"))))
        .await;
    assert_eq!(store.stats().tombstones.load(Ordering::Relaxed), 1);
    // Within the grace period the reclaimer keeps it (it has passes to
    // make: give it a few).
    clock.advance_secs(59);
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert!(
            store.get_record(b"k").unwrap().is_some(),
            "purged too early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    clock.advance_secs(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get_record(b"k").unwrap().is_some() {
        assert!(Instant::now() < deadline, "the tombstone was never purged");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.stats().tombstones.load(Ordering::Relaxed), 0);
    assert_eq!(store.stats().purged.load(Ordering::Relaxed), 1);
}

engine_tests!(
    any_order_any_number_of_times_converges,
    applying_moves_the_clock_and_the_cas_counter_past_the_record,
    a_version_too_far_ahead_is_refused_and_counted,
    a_delete_leaves_a_tombstone_that_hides_replicates_and_keeps_older_writes_out,
    tombstones_are_purged_after_their_grace_period_and_not_before,
);
