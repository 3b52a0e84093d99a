//! The meta flags newer than memcached 1.6.18, against a real store with a
//! manual clock: `E<cas>` (explicit cas unique) on `mg N`, `ms`, `md`,
//! `ma`; `ms ... MA|MP N<ttl>` (append/prepend vivify); `md ... x` (empty
//! the value, keep the item). The expected results follow the current
//! memcached's `proto_parser.c` / `memcached.c` (see
//! `docs/meta-protocol.md`, "Flags newer than 1.6.18").

use mcstore_protocol::exptime::Expiry;
use mcstore_protocol::{parse_request, Decoded, Frame, Limits, MetaRequest, Request};

use super::*;
use crate::clock::ManualClock;
use crate::record::{MARK_STALE, MARK_TOKEN_SENT};

const START: u64 = 1_800_000_000;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Store {
    let mut config = StoreConfig::new(dir);
    config.reclaim_keys_per_sec = 0;
    Store::open(config, clock.clone()).expect("open store")
}

async fn meta(store: &Store, input: &str) -> WriteOutcome {
    let Decoded::Complete(Frame::Request(Request::Meta(request)), _) =
        parse_request(input.as_bytes(), &Limits::default())
    else {
        panic!("not a meta request: {input:?}");
    };
    let op = match request {
        MetaRequest::Get(get) => WriteOp::MetaGet(get),
        MetaRequest::Set(set) => WriteOp::MetaSet(set),
        MetaRequest::Delete(delete) => WriteOp::MetaDelete(delete),
        MetaRequest::Arithmetic(arith) => WriteOp::MetaArithmetic(arith),
        other => panic!("{other:?} is not a write"),
    };
    store.enqueue(op).await.outcome().await
}

async fn stored_cas(store: &Store, input: &str) -> u64 {
    match meta(store, input).await {
        WriteOutcome::MetaStored { cas, .. } => cas,
        other => panic!("{input:?}: expected stored, got {other:?}"),
    }
}

fn record(store: &Store, key: &str) -> Record {
    match store.get(key.as_bytes()).expect("readable") {
        Lookup::Hit(record) => record,
        other => panic!("{key}: expected a hit, got {other:?}"),
    }
}

#[tokio::test]
async fn explicit_cas_is_used_and_only_counter_updates_take_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let first = stored_cas(&store, "ms a 1\r\na\r\n").await;

    assert_eq!(stored_cas(&store, "ms k 1 E500\r\na\r\n").await, 500);
    assert_eq!(record(&store, "k").cas, 500);
    // Append builds a new item: it takes the E cas too.
    assert_eq!(stored_cas(&store, "ms k 1 MA E600\r\nb\r\n").await, 600);
    assert_eq!(record(&store, "k").value, Bytes::from_static(b"ab"));
    // A compare-and-swap compares with C and stores E.
    assert_eq!(stored_cas(&store, "ms k 1 C600 E5\r\nc\r\n").await, 5);
    assert_eq!(
        meta(&store, "ms k 1 C600 E6\r\nd\r\n").await,
        WriteOutcome::Exists
    );
    assert_eq!(record(&store, "k").cas, 5);

    // ma: created by N, incremented in place, grown into a new item.
    for (input, number, cas) in [
        ("ma n N0 J10 E700\r\n", 10, 700),
        ("ma n E800\r\n", 11, 800),
        ("ma n D100 E900\r\n", 111, 900),
    ] {
        match meta(&store, input).await {
            WriteOutcome::Counter {
                number: n, record, ..
            } => {
                assert_eq!((n, record.cas), (number, cas), "{input:?}");
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
    assert_eq!(record(&store, "n").cas, 900);

    // mg: E only matters for an item N creates.
    let WriteOutcome::MetaItem(created) = meta(&store, "mg v N30 E1000\r\n").await else {
        panic!("mg N did not create");
    };
    assert!(created.created && created.won);
    assert_eq!(created.record.cas, 1000);
    let WriteOutcome::MetaItem(hit) = meta(&store, "mg v N30 T60 E2000\r\n").await else {
        panic!("mg N missed");
    };
    assert!(!hit.created);
    assert_eq!(hit.record.cas, 1000, "an existing item keeps its cas");

    // md I: the stale item gets the E cas.
    assert_eq!(
        meta(&store, "md k I E1100\r\n").await,
        WriteOutcome::Invalidated {
            old_cas: 5,
            new_cas: 1100
        }
    );
    assert_eq!(record(&store, "k").marks, MARK_STALE);

    // Only the two updates of an existing counter took a number from the
    // counter (as memcached's do_add_delta does before E overrides it).
    assert_eq!(stored_cas(&store, "ms b 1\r\nb\r\n").await, first + 3);
}

#[tokio::test]
async fn append_and_prepend_vivify_on_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    assert_eq!(
        meta(&store, "ms k 3 MA T100\r\nabc\r\n").await,
        WriteOutcome::NotStored
    );
    stored_cas(&store, "ms k 3 MA N30 T100 F5\r\nabc\r\n").await;
    let created = record(&store, "k");
    assert_eq!(created.value, Bytes::from_static(b"abc"));
    assert_eq!(created.flags, 5);
    assert_eq!(created.expiry, Expiry::At(START + 30), "N's TTL, not T's");

    // On a hit N changes nothing: a plain prepend (flags and TTL kept).
    stored_cas(&store, "ms k 3 MP N60 T100 F9\r\nxyz\r\n").await;
    let prepended = record(&store, "k");
    assert_eq!(prepended.value, Bytes::from_static(b"xyzabc"));
    assert_eq!(
        (prepended.flags, prepended.expiry),
        (5, Expiry::At(START + 30))
    );
    // ... and a cas mismatch is still refused.
    assert_eq!(
        meta(&store, "ms k 1 MA N0 C1\r\nq\r\n").await,
        WriteOutcome::Exists
    );

    // A miss with C still creates (there is nothing to compare with); N0
    // means no expiry.
    stored_cas(&store, "ms j 1 MP N0 C99\r\nq\r\n").await;
    assert_eq!(record(&store, "j").expiry, Expiry::Never);

    // In the other modes N is ignored.
    stored_cas(&store, "ms s 1 N30\r\nq\r\n").await;
    assert_eq!(record(&store, "s").expiry, Expiry::Never);
    assert_eq!(
        meta(&store, "ms r 1 MR N30\r\nq\r\n").await,
        WriteOutcome::NotStored
    );
}

#[tokio::test]
async fn remove_value_leaves_an_empty_item() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let mut store = open(dir.path(), &clock);
    assert_eq!(meta(&store, "md k x\r\n").await, WriteOutcome::NotFound);
    let cas = stored_cas(&store, "ms k 5 F3 T100\r\nhello\r\n").await;
    assert_eq!(meta(&store, "md k x C1\r\n").await, WriteOutcome::Exists);
    assert_eq!(record(&store, "k").value, Bytes::from_static(b"hello"));

    // Plain x: empty value, flags 0, no expiry, the old cas, no marks.
    assert_eq!(meta(&store, "md k x\r\n").await, WriteOutcome::Deleted);
    let emptied = record(&store, "k");
    assert_eq!(emptied.value.len(), 0);
    assert_eq!((emptied.flags, emptied.expiry), (0, Expiry::Never));
    assert_eq!((emptied.cas, emptied.marks), (cas, 0));

    // F, T and E shape the emptied item.
    stored_cas(&store, "ms k 5 F3 T100\r\nhello\r\n").await;
    assert_eq!(
        meta(&store, "md k x F7 T30 E42 C0\r\n").await,
        WriteOutcome::Exists,
        "C0 compares too"
    );
    assert_eq!(
        meta(&store, "md k x F7 T30 E42\r\n").await,
        WriteOutcome::Deleted
    );
    let shaped = record(&store, "k");
    assert_eq!(shaped.value.len(), 0);
    assert_eq!(
        (shaped.flags, shaped.expiry, shaped.cas),
        (7, Expiry::At(START + 30), 42)
    );

    // A stale item with its token handed out: x alone clears the marks.
    assert!(matches!(
        meta(&store, "md k I\r\n").await,
        WriteOutcome::Invalidated { .. }
    ));
    assert!(matches!(meta(&store, "mg k\r\n").await, WriteOutcome::MetaItem(item) if item.won));
    assert_eq!(record(&store, "k").marks, MARK_STALE | MARK_TOKEN_SENT);
    assert_eq!(meta(&store, "md k x\r\n").await, WriteOutcome::Deleted);
    assert_eq!(record(&store, "k").marks, 0);

    // x with I: a stale tombstone with a new cas and the T exptime.
    stored_cas(&store, "ms k 5 F3\r\nhello\r\n").await;
    let WriteOutcome::Invalidated { new_cas, .. } = meta(&store, "md k x I T50\r\n").await else {
        panic!("md x I did not invalidate");
    };
    let tombstone = record(&store, "k");
    assert_eq!(tombstone.value.len(), 0);
    assert_eq!(tombstone.flags, 0);
    assert_eq!(tombstone.expiry, Expiry::At(START + 50));
    assert_eq!((tombstone.cas, tombstone.marks), (new_cas, MARK_STALE));
    // The tombstone survives a restart.
    drop(store);
    store = open(dir.path(), &clock);
    assert_eq!(record(&store, "k"), tombstone);
    // Without T the tombstone never expires, even if the item did.
    stored_cas(&store, "ms t 1 T100\r\nv\r\n").await;
    meta(&store, "md t x I E9\r\n").await;
    let never = record(&store, "t");
    assert_eq!((never.expiry, never.cas), (Expiry::Never, 9));
}

#[tokio::test]
async fn an_item_replaced_under_the_same_cas_reads_as_never_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let key = Bytes::from_static(b"k");
    let cas = stored_cas(&store, "ms k 1\r\nv\r\n").await;
    let access = &store.shared().access;
    access.observe(&key, cas, START, START, true);
    assert!(access.observe(&key, cas, START, START, false).fetched);
    // md x keeps the cas, but the emptied item is a new item.
    assert_eq!(meta(&store, "md k x\r\n").await, WriteOutcome::Deleted);
    assert!(!access.observe(&key, cas, START, START, false).fetched);
    // So is an item stored with E equal to the old cas.
    access.observe(&key, cas, START, START, true);
    let again = format!("ms k 1 E{cas}\r\nw\r\n");
    assert_eq!(stored_cas(&store, &again).await, cas);
    assert!(!access.observe(&key, cas, START, START, false).fetched);
}
