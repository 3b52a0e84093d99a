//! The meta protocol's writer operations against a real store with a
//! manual clock: the stale / win-token flow, vivify, recache, the stale
//! compare-and-swap, counters, and the marks surviving restarts.

use std::sync::Arc;

use bytes::Bytes;
use mcstore_storage::clock::ManualClock;
use mcstore_storage::ops::{CounterResult, FetchOp, Outcome};
use mcstore_storage::record::{MARK_BINARY_KEY, MARK_STALE, MARK_TOKEN_SENT};
use mcstore_storage::{Expiry, Lookup};

use super::test_support::{meta, meta_item, node, open, record};

const START: u64 = 1_800_000_000;

#[tokio::test]
async fn stale_win_flow_hands_out_one_token_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut store = open(dir.path(), &clock);
    let mut session = node(&store);
    let Outcome::Stored { cas: first_cas, .. } = meta(&session, "ms k 3 T100\r\nold\r\n").await
    else {
        panic!("ms did not store");
    };
    assert!(matches!(
        meta(&session, "md k I T30\r\n").await,
        Outcome::Invalidated { old_cas, .. } if old_cas == first_cas
    ));
    let stale = record(&session, "k");
    assert_eq!(stale.marks, MARK_STALE);
    assert_eq!(stale.expiry, Expiry::At(START + 30));
    assert!(stale.cas > first_cas, "md I gives a new cas");
    assert!(FetchOp::read_would_win(&stale));

    // Abrupt restart: the mark comes back from the log.
    drop(session);
    drop(store);
    store = open(dir.path(), &clock);
    session = node(&store);
    let won = meta_item(&session, "mg k v\r\n").await;
    assert!(won.won && won.marks_before == MARK_STALE);
    let lost = meta_item(&session, "mg k v\r\n").await;
    assert!(!lost.won && lost.marks_before == MARK_STALE | MARK_TOKEN_SENT);

    // Graceful restart keeps both marks.
    store.shutdown().unwrap();
    drop(session);
    drop(store);
    store = open(dir.path(), &clock);
    session = node(&store);
    let after = record(&session, "k");
    assert_eq!(after.marks, MARK_STALE | MARK_TOKEN_SENT);
    assert!(!FetchOp::read_would_win(&after));

    // The winner sets with an older cas and I: stored, still stale, TTL kept.
    let stale_set = format!("ms k 3 C{} I T0\r\nnew\r\n", after.cas - 1);
    assert!(matches!(
        meta(&session, &stale_set).await,
        Outcome::Stored { .. }
    ));
    let recached = record(&session, "k");
    assert_eq!(recached.value, Bytes::from_static(b"new"));
    assert_eq!(recached.marks, MARK_STALE | MARK_TOKEN_SENT);
    assert_eq!(recached.expiry, Expiry::At(START + 30));
    // Without I an older cas is refused; a matching one clears the marks.
    let refused = format!("ms k 1 C{}\r\nx\r\n", recached.cas - 1);
    assert_eq!(meta(&session, &refused).await, Outcome::Exists);
    let matching = format!("ms k 1 C{}\r\ny\r\n", recached.cas);
    assert!(matches!(
        meta(&session, &matching).await,
        Outcome::Stored { .. }
    ));
    assert_eq!(record(&session, "k").marks, 0);
}

#[tokio::test]
async fn vivify_recache_and_touch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let session = node(&store);
    assert_eq!(meta(&session, "mg v T30\r\n").await, Outcome::NotFound);
    let created = meta_item(&session, "mg v N30 t\r\n").await;
    assert!(created.created && created.won);
    assert_eq!(created.record.expiry, Expiry::At(START + 30));
    assert_eq!(created.record.value.len(), 0);
    let again = meta_item(&session, "mg v N30\r\n").await;
    assert!(!again.created && !again.won);
    assert_eq!(again.marks_before, MARK_TOKEN_SENT);

    meta(&session, "ms r 1 T10\r\nx\r\n").await;
    assert!(
        !meta_item(&session, "mg r R5\r\n").await.won,
        "10s left is not below 5"
    );
    assert!(meta_item(&session, "mg r R30\r\n").await.won);
    assert!(
        !meta_item(&session, "mg r R30\r\n").await.won,
        "token already sent"
    );

    meta(&session, "ms t 1\r\nx\r\n").await;
    let cas = record(&session, "t").cas;
    let touched = meta_item(&session, "mg t T60\r\n").await;
    assert_eq!(touched.expiry_before, Expiry::Never);
    assert_eq!(touched.record.expiry, Expiry::At(START + 60));
    assert_eq!(record(&session, "t").cas, cas, "a touch keeps the cas");
    clock.advance_secs(61);
    assert_eq!(store.get(b"t").unwrap(), Lookup::Expired);
}

#[tokio::test]
async fn meta_set_modes_and_binary_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let session = node(&store);
    assert_eq!(
        meta(&session, "ms a 1 MA\r\nx\r\n").await,
        Outcome::NotStored
    );
    assert_eq!(
        meta(&session, "ms a 1 MR\r\nx\r\n").await,
        Outcome::NotStored
    );
    assert_eq!(
        meta(&session, "ms a 1 C5\r\nx\r\n").await,
        Outcome::NotFound
    );
    assert!(matches!(
        meta(&session, "ms a 1 ME F4 T50\r\nm\r\n").await,
        Outcome::Stored { .. }
    ));
    assert_eq!(
        meta(&session, "ms a 1 ME\r\nx\r\n").await,
        Outcome::NotStored
    );
    meta(&session, "ms a 1 MA\r\n>\r\n").await;
    meta(&session, "ms a 1 MP\r\n<\r\n").await;
    assert_eq!(
        meta(&session, "ms a 1 MA C1\r\nz\r\n").await,
        Outcome::Exists
    );
    let joined = record(&session, "a");
    assert_eq!(joined.value, Bytes::from_static(b"<m>"));
    assert_eq!((joined.flags, joined.expiry), (4, Expiry::At(START + 50)));

    // `YmluAGtleQ==` is "bin\0key".
    meta(&session, "ms YmluAGtleQ== 1 b\r\nv\r\n").await;
    assert_eq!(record(&session, "bin\0key").marks, MARK_BINARY_KEY);
}

#[tokio::test]
async fn meta_arithmetic_creates_compares_and_wraps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let session = node(&store);
    assert_eq!(meta(&session, "ma n\r\n").await, Outcome::NotFound);
    let Outcome::Counter(CounterResult {
        number,
        record: created,
        created: true,
        ..
    }) = meta(&session, "ma n N90 J5\r\n").await
    else {
        panic!("ma N did not create");
    };
    assert_eq!(number, 5);
    assert_eq!(created.expiry, Expiry::At(START + 90));
    assert_eq!(meta(&session, "ma n C1\r\n").await, Outcome::Exists);
    let Outcome::Counter(CounterResult { number, .. }) = meta(&session, "ma n MD D9\r\n").await
    else {
        panic!("decrement failed");
    };
    assert_eq!(number, 0, "decrement stops at 0");
    let Outcome::Counter(CounterResult { number, .. }) =
        meta(&session, "ma n D18446744073709551615\r\n").await
    else {
        panic!("increment failed");
    };
    assert_eq!(number, u64::MAX);
    let Outcome::Counter(CounterResult { number, record, .. }) =
        meta(&session, "ma n D2 T0\r\n").await
    else {
        panic!("increment failed");
    };
    assert_eq!(number, 1, "increment wraps at 2^64");
    assert_eq!(record.expiry, Expiry::Never);
    meta(&session, "ms s 2\r\nab\r\n").await;
    assert_eq!(meta(&session, "ma s\r\n").await, Outcome::NonNumeric);
}
