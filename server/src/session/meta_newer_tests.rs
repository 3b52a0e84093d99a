//! The meta flags newer than memcached 1.6.18, against a real store with a
//! manual clock: `E<cas>` (explicit cas unique) on `mg N`, `ms`, `md`,
//! `ma`; `ms ... MA|MP N<ttl>` (append/prepend vivify); `md ... x` (empty
//! the value, keep the item). The expected results follow the current
//! memcached's `proto_parser.c` / `memcached.c` (see
//! `docs/meta-protocol.md`, "Flags newer than 1.6.18").

use std::sync::Arc;

use bytes::Bytes;
use mcstore_storage::clock::ManualClock;
use mcstore_storage::ops::{CounterResult, Outcome};
use mcstore_storage::record::{MARK_STALE, MARK_TOKEN_SENT};
use mcstore_storage::Expiry;

use mcstore_storage::txn::cas_sequence;

use super::test_support::{meta, node, open, record, stored_cas};

const START: u64 = 1_800_000_000;

#[tokio::test]
async fn explicit_cas_is_used_and_only_counter_updates_take_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let session = node(&store);
    let first = stored_cas(&session, "ms a 1\r\na\r\n").await;

    assert_eq!(stored_cas(&session, "ms k 1 E500\r\na\r\n").await, 500);
    assert_eq!(record(&session, "k").cas, 500);
    // Append builds a new item: it takes the E cas too.
    assert_eq!(stored_cas(&session, "ms k 1 MA E600\r\nb\r\n").await, 600);
    assert_eq!(record(&session, "k").value, Bytes::from_static(b"ab"));
    // A compare-and-swap compares with C and stores E.
    assert_eq!(stored_cas(&session, "ms k 1 C600 E5\r\nc\r\n").await, 5);
    assert_eq!(
        meta(&session, "ms k 1 C600 E6\r\nd\r\n").await,
        Outcome::Exists
    );
    assert_eq!(record(&session, "k").cas, 5);

    // ma: created by N, incremented in place, grown into a new item.
    for (input, number, cas) in [
        ("ma n N0 J10 E700\r\n", 10, 700),
        ("ma n E800\r\n", 11, 800),
        ("ma n D100 E900\r\n", 111, 900),
    ] {
        match meta(&session, input).await {
            Outcome::Counter(CounterResult {
                number: n, record, ..
            }) => {
                assert_eq!((n, record.cas), (number, cas), "{input:?}");
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
    assert_eq!(record(&session, "n").cas, 900);

    // mg: E only matters for an item N creates.
    let Outcome::Fetched(created) = meta(&session, "mg v N30 E1000\r\n").await else {
        panic!("mg N did not create");
    };
    assert!(created.created && created.won);
    assert_eq!(created.record.cas, 1000);
    let Outcome::Fetched(hit) = meta(&session, "mg v N30 T60 E2000\r\n").await else {
        panic!("mg N missed");
    };
    assert!(!hit.created);
    assert_eq!(hit.record.cas, 1000, "an existing item keeps its cas");

    // md I: the stale item gets the E cas.
    assert_eq!(
        meta(&session, "md k I E1100\r\n").await,
        Outcome::Invalidated {
            old_cas: 5,
            new_cas: 1100
        }
    );
    assert_eq!(record(&session, "k").marks, MARK_STALE);

    // Only the two updates of an existing counter took a number from the
    // counter (as memcached's do_add_delta does before E overrides it).
    let next = stored_cas(&session, "ms b 1\r\nb\r\n").await;
    assert_eq!(cas_sequence(next), cas_sequence(first) + 3);
}

#[tokio::test]
async fn append_and_prepend_vivify_on_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let session = node(&store);
    assert_eq!(
        meta(&session, "ms k 3 MA T100\r\nabc\r\n").await,
        Outcome::NotStored
    );
    stored_cas(&session, "ms k 3 MA N30 T100 F5\r\nabc\r\n").await;
    let created = record(&session, "k");
    assert_eq!(created.value, Bytes::from_static(b"abc"));
    assert_eq!(created.flags, 5);
    assert_eq!(created.expiry, Expiry::At(START + 30), "N's TTL, not T's");

    // On a hit N changes nothing: a plain prepend (flags and TTL kept).
    stored_cas(&session, "ms k 3 MP N60 T100 F9\r\nxyz\r\n").await;
    let prepended = record(&session, "k");
    assert_eq!(prepended.value, Bytes::from_static(b"xyzabc"));
    assert_eq!(
        (prepended.flags, prepended.expiry),
        (5, Expiry::At(START + 30))
    );
    // ... and a cas mismatch is still refused.
    assert_eq!(
        meta(&session, "ms k 1 MA N0 C1\r\nq\r\n").await,
        Outcome::Exists
    );

    // A miss with C still creates (there is nothing to compare with); N0
    // means no expiry.
    stored_cas(&session, "ms j 1 MP N0 C99\r\nq\r\n").await;
    assert_eq!(record(&session, "j").expiry, Expiry::Never);

    // In the other modes N is ignored.
    stored_cas(&session, "ms s 1 N30\r\nq\r\n").await;
    assert_eq!(record(&session, "s").expiry, Expiry::Never);
    assert_eq!(
        meta(&session, "ms r 1 MR N30\r\nq\r\n").await,
        Outcome::NotStored
    );
}

#[tokio::test]
async fn remove_value_leaves_an_empty_item() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut store = open(dir.path(), &clock);
    let mut session = node(&store);
    assert_eq!(meta(&session, "md k x\r\n").await, Outcome::NotFound);
    let cas = stored_cas(&session, "ms k 5 F3 T100\r\nhello\r\n").await;
    assert_eq!(meta(&session, "md k x C1\r\n").await, Outcome::Exists);
    assert_eq!(record(&session, "k").value, Bytes::from_static(b"hello"));

    // Plain x: empty value, flags 0, no expiry, the old cas, no marks.
    assert_eq!(meta(&session, "md k x\r\n").await, Outcome::Deleted);
    let emptied = record(&session, "k");
    assert_eq!(emptied.value.len(), 0);
    assert_eq!((emptied.flags, emptied.expiry), (0, Expiry::Never));
    assert_eq!((emptied.cas, emptied.marks), (cas, 0));

    // F, T and E shape the emptied item.
    stored_cas(&session, "ms k 5 F3 T100\r\nhello\r\n").await;
    assert_eq!(
        meta(&session, "md k x F7 T30 E42 C0\r\n").await,
        Outcome::Exists,
        "C0 compares too"
    );
    assert_eq!(
        meta(&session, "md k x F7 T30 E42\r\n").await,
        Outcome::Deleted
    );
    let shaped = record(&session, "k");
    assert_eq!(shaped.value.len(), 0);
    assert_eq!(
        (shaped.flags, shaped.expiry, shaped.cas),
        (7, Expiry::At(START + 30), 42)
    );

    // A stale item with its token handed out: x alone clears the marks.
    assert!(matches!(
        meta(&session, "md k I\r\n").await,
        Outcome::Invalidated { .. }
    ));
    assert!(matches!(meta(&session, "mg k\r\n").await, Outcome::Fetched(item) if item.won));
    assert_eq!(record(&session, "k").marks, MARK_STALE | MARK_TOKEN_SENT);
    assert_eq!(meta(&session, "md k x\r\n").await, Outcome::Deleted);
    assert_eq!(record(&session, "k").marks, 0);

    // x with I: a stale tombstone with a new cas and the T exptime.
    stored_cas(&session, "ms k 5 F3\r\nhello\r\n").await;
    let Outcome::Invalidated { new_cas, .. } = meta(&session, "md k x I T50\r\n").await else {
        panic!("md x I did not invalidate");
    };
    let tombstone = record(&session, "k");
    assert_eq!(tombstone.value.len(), 0);
    assert_eq!(tombstone.flags, 0);
    assert_eq!(tombstone.expiry, Expiry::At(START + 50));
    assert_eq!((tombstone.cas, tombstone.marks), (new_cas, MARK_STALE));
    // The tombstone survives a restart.
    drop(session);
    drop(store);
    store = open(dir.path(), &clock);
    session = node(&store);
    assert_eq!(record(&session, "k"), tombstone);
    // Without T the tombstone never expires, even if the item did.
    stored_cas(&session, "ms t 1 T100\r\nv\r\n").await;
    meta(&session, "md t x I E9\r\n").await;
    let never = record(&session, "t");
    assert_eq!((never.expiry, never.cas), (Expiry::Never, 9));
}

#[tokio::test]
async fn an_item_replaced_under_the_same_cas_reads_as_never_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let session = node(&store);
    let key = Bytes::from_static(b"k");
    let cas = stored_cas(&session, "ms k 1\r\nv\r\n").await;
    let access = &session.shared.access;
    access.observe(&key, cas, START, START, true);
    assert!(access.observe(&key, cas, START, START, false).fetched);
    // md x keeps the cas, but the emptied item is a new item.
    assert_eq!(meta(&session, "md k x\r\n").await, Outcome::Deleted);
    assert!(!access.observe(&key, cas, START, START, false).fetched);
    // So is an item stored with E equal to the old cas.
    access.observe(&key, cas, START, START, true);
    let again = format!("ms k 1 E{cas}\r\nw\r\n");
    assert_eq!(stored_cas(&session, &again).await, cas);
    assert!(!access.observe(&key, cas, START, START, false).fetched);
}
