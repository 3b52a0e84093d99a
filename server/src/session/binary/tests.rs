//! The binary session against a real store: the same items as text and
//! meta, pipelined writes answered in order, quiet rules, counters, and
//! SASL gating.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mcstore_protocol::binary::{
    parse_binary_request, parse_binary_response, Arithmetic, BinaryFrame, BinaryRequest,
    BinaryResponse, Command, Get, Opcode, SaslAuth, Status, Store, StoreMode,
};
use mcstore_protocol::{Decoded, Limits};
use mcstore_storage::clock::ManualClock;
use mcstore_storage::Expiry;

use super::{BinaryNext, BinarySession};
use crate::auth::{Auth, PasswordFile};
use crate::session::test_support::{node, open, record};
use crate::stats::Shared;

const START: u64 = 1_800_000_000;

fn request(opaque: u32, command: Command) -> BinaryRequest {
    BinaryRequest { opaque, command }
}

fn set(opaque: u32, key: &str, value: &str, quiet: bool) -> BinaryRequest {
    request(
        opaque,
        Command::Store(Store {
            mode: StoreMode::Set,
            key: Bytes::copy_from_slice(key.as_bytes()),
            flags: 5,
            exptime: 100,
            value: Bytes::copy_from_slice(value.as_bytes()),
            cas: 0,
            quiet,
        }),
    )
}

fn get(opaque: u32, key: &str, with_key: bool, quiet: bool) -> BinaryRequest {
    request(
        opaque,
        Command::Get(Get {
            key: Bytes::copy_from_slice(key.as_bytes()),
            with_key,
            quiet,
            touch: None,
        }),
    )
}

/// Encodes the requests, runs them through the session as the connection
/// does, and decodes everything it answered.
async fn run(session: &mut BinarySession, requests: &[BinaryRequest]) -> Vec<BinaryResponse> {
    let mut input = BytesMut::new();
    for request in requests {
        request.encode(&mut input);
    }
    while let Decoded::Complete(frame, used) = parse_binary_request(&input, &Limits::default()) {
        let _ = input.split_to(used);
        if let BinaryFrame::Close(_) = frame {
            break;
        }
        if session.handle(frame).await == BinaryNext::Close {
            break;
        }
    }
    session.resolve_pending().await;
    let mut responses = Vec::new();
    let mut rest = &session.output[..];
    while let Ok(Decoded::Complete(response, used)) = parse_binary_response(rest) {
        responses.push(response);
        rest = &rest[used..];
    }
    session.output.clear();
    responses
}

fn binary(text: &crate::session::Session) -> BinarySession {
    BinarySession::for_connection(text)
}

#[tokio::test]
async fn binary_writes_are_the_items_text_and_meta_see() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let text = node(&store);
    let mut session = binary(&text);
    let responses = run(
        &mut session,
        &[
            set(1, "a", "one", true),
            set(2, "b", "two", false),
            get(3, "a", true, true),
            get(4, "missing", true, true),
            get(5, "missing", true, false),
        ],
    )
    .await;
    let opaques: Vec<u32> = responses.iter().map(|r| r.opaque).collect();
    assert_eq!(opaques, [2, 3, 5], "setq and a quiet miss say nothing");
    assert_eq!(&responses[1].value[..], b"one");
    assert_eq!(responses[1].flags(), Some(5));
    assert_eq!(responses[2].status, Status::KEY_NOT_FOUND);
    let item = record(&text, "a");
    assert_eq!((item.flags, item.expiry), (5, Expiry::At(START + 100)));
    assert_eq!(responses[1].cas, item.cas);
}

#[tokio::test]
async fn counters_create_with_the_initial_value_and_count_like_memcached() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let text = node(&store);
    let mut session = binary(&text);
    let incr = |opaque, exptime| {
        request(
            opaque,
            Command::Arithmetic(Arithmetic {
                key: Bytes::from_static(b"n"),
                increment: true,
                delta: 5,
                initial: 10,
                exptime,
                cas: 0,
                quiet: false,
            }),
        )
    };
    let responses = run(
        &mut session,
        &[incr(1, Arithmetic::NO_CREATE), incr(2, 0), incr(3, 0)],
    )
    .await;
    assert_eq!(responses[0].status, Status::KEY_NOT_FOUND);
    assert_eq!(responses[1].counter_value(), Some(10));
    assert_eq!(responses[2].counter_value(), Some(15));
    let counters = &text.shared().counters;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        load(&counters.incr_misses),
        1,
        "only the refused create misses"
    );
    assert_eq!(load(&counters.incr_hits), 1);
    assert_eq!(load(&counters.total_items), 1);
}

#[tokio::test]
async fn sasl_gates_every_command_until_plain_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(START));
    let store = open(dir.path(), &clock);
    let text = node(&store);
    let passwords = PasswordFile::parse(b"alice:secret\n").unwrap();
    let shared = Arc::new(Shared {
        auth: Auth {
            passwords: Some(Arc::new(passwords)),
        },
        ..Shared::default()
    });
    let fresh = || BinarySession::new(store.clone(), text.node.clone(), shared.clone());
    let auth = |opaque, password: &str| {
        let mut data = b"\0alice\0".to_vec();
        data.extend_from_slice(password.as_bytes());
        request(
            opaque,
            Command::SaslAuth(SaslAuth {
                mechanism: Bytes::from_static(b"PLAIN"),
                data: Bytes::from(data),
                step: false,
            }),
        )
    };

    // Unauthenticated: version is allowed, a get is refused and closes.
    let mut session = fresh();
    let responses = run(
        &mut session,
        &[
            request(1, Command::Version),
            get(2, "a", false, false),
            request(3, Command::Noop),
        ],
    )
    .await;
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[1].status, Status::AUTH_ERROR);
    assert_eq!(&responses[1].value[..], b"Auth failure.");
    assert_eq!(responses[1].opcode, Opcode::Get.code());

    let mut session = fresh();
    let responses = run(
        &mut session,
        &[
            request(1, Command::SaslListMechs),
            auth(2, "wrong"),
            auth(3, "secret"),
            set(4, "a", "v", false),
        ],
    )
    .await;
    let statuses: Vec<Status> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            Status::NO_ERROR,
            Status::AUTH_ERROR,
            Status::NO_ERROR,
            Status::NO_ERROR
        ]
    );
    assert_eq!(&responses[0].value[..], b"PLAIN");
    assert_eq!(&responses[2].value[..], b"Authenticated");
}
