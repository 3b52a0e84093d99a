//! The meta protocol's writer operations against a real store with a
//! manual clock: the stale / win-token flow, vivify, recache, the stale
//! compare-and-swap, counters, and the marks surviving restarts.

use mcstore_protocol::exptime::Expiry;
use mcstore_protocol::{parse_request, Decoded, Frame, Limits, MetaRequest, Request};

use super::*;
use crate::clock::ManualClock;
use crate::record::{MARK_BINARY_KEY, MARK_STALE, MARK_TOKEN_SENT};
use crate::writer::MetaItem;

const START: u64 = 1_800_000_000;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Store {
    let mut config = StoreConfig::new(dir);
    config.reclaim_keys_per_sec = 0;
    Store::open(config, clock.clone()).expect("open store")
}

/// The writer operation for one meta command line (with its data block).
fn meta_op(input: &str) -> WriteOp {
    let Decoded::Complete(Frame::Request(Request::Meta(request)), _) =
        parse_request(input.as_bytes(), &Limits::default())
    else {
        panic!("not a meta request: {input:?}");
    };
    match request {
        MetaRequest::Get(get) => WriteOp::MetaGet(get),
        MetaRequest::Set(set) => WriteOp::MetaSet(set),
        MetaRequest::Delete(delete) => WriteOp::MetaDelete(delete),
        MetaRequest::Arithmetic(arith) => WriteOp::MetaArithmetic(arith),
        other => panic!("{other:?} is not a write"),
    }
}

async fn meta(store: &Store, input: &str) -> WriteOutcome {
    store.enqueue(meta_op(input)).await.outcome().await
}

async fn meta_item(store: &Store, input: &str) -> MetaItem {
    match meta(store, input).await {
        WriteOutcome::MetaItem(item) => item,
        other => panic!("{input:?}: expected an item, got {other:?}"),
    }
}

fn record(store: &Store, key: &str) -> Record {
    match store.get(key.as_bytes()).expect("readable") {
        Lookup::Hit(record) => record,
        other => panic!("{key}: expected a hit, got {other:?}"),
    }
}

#[tokio::test]
async fn stale_win_flow_hands_out_one_token_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut store = open(dir.path(), &clock);
    let WriteOutcome::MetaStored { cas: first_cas, .. } =
        meta(&store, "ms k 3 T100\r\nold\r\n").await
    else {
        panic!("ms did not store");
    };
    assert!(matches!(
        meta(&store, "md k I T30\r\n").await,
        WriteOutcome::Invalidated { old_cas, .. } if old_cas == first_cas
    ));
    let stale = record(&store, "k");
    assert_eq!(stale.marks, MARK_STALE);
    assert_eq!(stale.expiry, Expiry::At(START + 30));
    assert!(stale.cas > first_cas, "md I gives a new cas");
    assert!(MetaItem::read_would_win(&stale));

    // Abrupt restart: the mark comes back from the log.
    drop(store);
    store = open(dir.path(), &clock);
    let won = meta_item(&store, "mg k v\r\n").await;
    assert!(won.won && won.marks_before == MARK_STALE);
    let lost = meta_item(&store, "mg k v\r\n").await;
    assert!(!lost.won && lost.marks_before == MARK_STALE | MARK_TOKEN_SENT);

    // Graceful restart keeps both marks.
    store.shutdown().unwrap();
    drop(store);
    store = open(dir.path(), &clock);
    let after = record(&store, "k");
    assert_eq!(after.marks, MARK_STALE | MARK_TOKEN_SENT);
    assert!(!MetaItem::read_would_win(&after));

    // The winner sets with an older cas and I: stored, still stale, TTL kept.
    let stale_set = format!("ms k 3 C{} I T0\r\nnew\r\n", after.cas - 1);
    assert!(matches!(
        meta(&store, &stale_set).await,
        WriteOutcome::MetaStored { .. }
    ));
    let recached = record(&store, "k");
    assert_eq!(recached.value, Bytes::from_static(b"new"));
    assert_eq!(recached.marks, MARK_STALE | MARK_TOKEN_SENT);
    assert_eq!(recached.expiry, Expiry::At(START + 30));
    // Without I an older cas is refused; a matching one clears the marks.
    let refused = format!("ms k 1 C{}\r\nx\r\n", recached.cas - 1);
    assert_eq!(meta(&store, &refused).await, WriteOutcome::Exists);
    let matching = format!("ms k 1 C{}\r\ny\r\n", recached.cas);
    assert!(matches!(
        meta(&store, &matching).await,
        WriteOutcome::MetaStored { .. }
    ));
    assert_eq!(record(&store, "k").marks, 0);
}

#[tokio::test]
async fn vivify_recache_and_touch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    assert_eq!(meta(&store, "mg v T30\r\n").await, WriteOutcome::NotFound);
    let created = meta_item(&store, "mg v N30 t\r\n").await;
    assert!(created.created && created.won);
    assert_eq!(created.record.expiry, Expiry::At(START + 30));
    assert_eq!(created.record.value.len(), 0);
    let again = meta_item(&store, "mg v N30\r\n").await;
    assert!(!again.created && !again.won);
    assert_eq!(again.marks_before, MARK_TOKEN_SENT);

    meta(&store, "ms r 1 T10\r\nx\r\n").await;
    assert!(
        !meta_item(&store, "mg r R5\r\n").await.won,
        "10s left is not below 5"
    );
    assert!(meta_item(&store, "mg r R30\r\n").await.won);
    assert!(
        !meta_item(&store, "mg r R30\r\n").await.won,
        "token already sent"
    );

    meta(&store, "ms t 1\r\nx\r\n").await;
    let cas = record(&store, "t").cas;
    let touched = meta_item(&store, "mg t T60\r\n").await;
    assert_eq!(touched.expiry_before, Expiry::Never);
    assert_eq!(touched.record.expiry, Expiry::At(START + 60));
    assert_eq!(record(&store, "t").cas, cas, "a touch keeps the cas");
    clock.advance_secs(61);
    assert_eq!(store.get(b"t").unwrap(), Lookup::Expired);
}

#[tokio::test]
async fn meta_set_modes_and_binary_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    assert_eq!(
        meta(&store, "ms a 1 MA\r\nx\r\n").await,
        WriteOutcome::NotStored
    );
    assert_eq!(
        meta(&store, "ms a 1 MR\r\nx\r\n").await,
        WriteOutcome::NotStored
    );
    assert_eq!(
        meta(&store, "ms a 1 C5\r\nx\r\n").await,
        WriteOutcome::NotFound
    );
    assert!(matches!(
        meta(&store, "ms a 1 ME F4 T50\r\nm\r\n").await,
        WriteOutcome::MetaStored { .. }
    ));
    assert_eq!(
        meta(&store, "ms a 1 ME\r\nx\r\n").await,
        WriteOutcome::NotStored
    );
    meta(&store, "ms a 1 MA\r\n>\r\n").await;
    meta(&store, "ms a 1 MP\r\n<\r\n").await;
    assert_eq!(
        meta(&store, "ms a 1 MA C1\r\nz\r\n").await,
        WriteOutcome::Exists
    );
    let joined = record(&store, "a");
    assert_eq!(joined.value, Bytes::from_static(b"<m>"));
    assert_eq!((joined.flags, joined.expiry), (4, Expiry::At(START + 50)));

    // `YmluAGtleQ==` is "bin\0key".
    meta(&store, "ms YmluAGtleQ== 1 b\r\nv\r\n").await;
    assert_eq!(record(&store, "bin\0key").marks, MARK_BINARY_KEY);
}

#[tokio::test]
async fn meta_arithmetic_creates_compares_and_wraps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    assert_eq!(meta(&store, "ma n\r\n").await, WriteOutcome::NotFound);
    let WriteOutcome::Counter {
        number,
        record: created,
        created: true,
        ..
    } = meta(&store, "ma n N90 J5\r\n").await
    else {
        panic!("ma N did not create");
    };
    assert_eq!(number, 5);
    assert_eq!(created.expiry, Expiry::At(START + 90));
    assert_eq!(meta(&store, "ma n C1\r\n").await, WriteOutcome::Exists);
    let WriteOutcome::Counter { number, .. } = meta(&store, "ma n MD D9\r\n").await else {
        panic!("decrement failed");
    };
    assert_eq!(number, 0, "decrement stops at 0");
    let WriteOutcome::Counter { number, .. } = meta(&store, "ma n D18446744073709551615\r\n").await
    else {
        panic!("increment failed");
    };
    assert_eq!(number, u64::MAX);
    let WriteOutcome::Counter { number, record, .. } = meta(&store, "ma n D2 T0\r\n").await else {
        panic!("increment failed");
    };
    assert_eq!(number, 1, "increment wraps at 2^64");
    assert_eq!(record.expiry, Expiry::Never);
    meta(&store, "ms s 2\r\nab\r\n").await;
    assert_eq!(meta(&store, "ma s\r\n").await, WriteOutcome::NonNumeric);
}
