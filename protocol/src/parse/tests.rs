//! Parser tests: every command cut at every byte offset, pipelined input,
//! `parse(encode(x)) == x`, and memcached's treatment of malformed lines.

use super::*;
use crate::reply::Value;

fn limits() -> Limits {
    Limits::default()
}

fn parse(input: &[u8]) -> Decoded<Frame> {
    parse_request(input, &limits())
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// One request of every kind, in the variants clients send.
fn sample_requests() -> Vec<Request> {
    let store = |mode, key: &str, value: &[u8], noreply| {
        Request::Store(Store {
            mode,
            key: b(key),
            flags: 42,
            exptime: 3600,
            value: Bytes::copy_from_slice(value),
            noreply,
        })
    };
    vec![
        Request::Get(Get {
            keys: vec![b("a")],
            with_cas: false,
            touch: None,
        }),
        Request::Get(Get {
            keys: vec![b("a"), b("bb"), b("ccc")],
            with_cas: true,
            touch: None,
        }),
        Request::Get(Get {
            keys: vec![b("k")],
            with_cas: false,
            touch: Some(100),
        }),
        Request::Get(Get {
            keys: vec![b("k"), b("j")],
            with_cas: true,
            touch: Some(-1),
        }),
        store(StoreMode::Set, "key", b"value", false),
        store(StoreMode::Set, "empty", b"", true),
        store(StoreMode::Add, "k", b"with\r\ninside", false),
        store(StoreMode::Replace, "k", b"\0binary\xff", false),
        store(StoreMode::Append, "k", b"tail", true),
        store(StoreMode::Prepend, "k", b"head", false),
        store(StoreMode::Cas(u64::MAX), "k", b"v", false),
        store(StoreMode::Cas(7), "k", b"v", true),
        Request::Delete(Delete {
            key: b("gone"),
            noreply: false,
        }),
        Request::Delete(Delete {
            key: b("gone"),
            noreply: true,
        }),
        Request::Arithmetic(Arithmetic {
            key: b("n"),
            increment: true,
            delta: u64::MAX,
            noreply: false,
        }),
        Request::Arithmetic(Arithmetic {
            key: b("n"),
            increment: false,
            delta: 3,
            noreply: true,
        }),
        Request::Touch(Touch {
            key: b("t"),
            exptime: 10,
            noreply: false,
        }),
        Request::Touch(Touch {
            key: b("t"),
            exptime: -5,
            noreply: true,
        }),
        Request::FlushAll(FlushAll {
            delay: 0,
            noreply: false,
        }),
        Request::FlushAll(FlushAll {
            delay: 30,
            noreply: true,
        }),
        Request::Version,
        Request::Verbosity(Verbosity {
            level: 1,
            noreply: false,
        }),
        Request::Verbosity(Verbosity {
            level: 0,
            noreply: true,
        }),
        Request::Quit,
        Request::Stats(Stats::General),
        Request::Stats(Stats::Settings),
        Request::Stats(Stats::Reset),
        Request::Stats(Stats::Group(b("store"))),
    ]
}

fn encode(request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    request.encode(&mut out);
    out
}

/// `parse(encode(x)) == x` for each request, using all of its bytes.
pub(crate) fn assert_parse_of_encode_is_identity(requests: impl IntoIterator<Item = Request>) {
    for request in requests {
        let wire = encode(&request);
        assert_eq!(
            parse(&wire),
            Decoded::Complete(Frame::Request(request.clone()), wire.len()),
            "{:?}",
            String::from_utf8_lossy(&wire)
        );
    }
}

/// Each request cut at every byte offset is `Incomplete`.
pub(crate) fn assert_every_cut_needs_more(requests: impl IntoIterator<Item = Request>) {
    for request in requests {
        let wire = encode(&request);
        for cut in 0..wire.len() {
            assert_eq!(
                parse(&wire[..cut]),
                Decoded::Incomplete,
                "{:?} cut at {cut}",
                String::from_utf8_lossy(&wire)
            );
        }
    }
}

#[test]
fn parse_of_encode_is_identity() {
    assert_parse_of_encode_is_identity(sample_requests());
}

#[test]
fn every_command_cut_at_every_offset_needs_more() {
    assert_every_cut_needs_more(sample_requests());
}

/// The requests encoded back to back parse one after another, both from one
/// buffer and fed one byte at a time.
pub(crate) fn assert_pipelined_requests_parse(requests: &[Request]) {
    let mut wire = Vec::new();
    for request in requests {
        request.encode(&mut wire);
    }
    let mut offset = 0;
    for request in requests {
        match parse(&wire[offset..]) {
            Decoded::Complete(Frame::Request(parsed), used) => {
                assert_eq!(&parsed, request);
                offset += used;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(offset, wire.len());
    let mut buffer = Vec::new();
    let mut parsed = Vec::new();
    for &byte in &wire {
        buffer.push(byte);
        while let Decoded::Complete(frame, used) = parse(&buffer) {
            match frame {
                Frame::Request(request) => parsed.push(request),
                other => panic!("unexpected {other:?}"),
            }
            buffer.drain(..used);
        }
    }
    assert!(buffer.is_empty());
    assert_eq!(parsed, requests);
}

#[test]
fn pipelined_requests_parse_one_after_another_and_byte_by_byte() {
    assert_pipelined_requests_parse(&sample_requests());
}

fn rejected(input: &str) -> (Reply, bool) {
    match parse(input.as_bytes()) {
        Decoded::Complete(Frame::Rejected { reply, noreply }, _) => (reply, noreply),
        other => panic!("{input:?}: {other:?}"),
    }
}

#[test]
fn malformed_lines_get_memcacheds_errors() {
    let bad_format = Reply::client_error("bad command line format");
    assert_eq!(rejected("\r\n").0, Reply::Error);
    assert_eq!(rejected("\n").0, Reply::Error);
    assert_eq!(rejected("bogus\r\n").0, Reply::Error);
    assert_eq!(rejected("get\r\n").0, Reply::Error);
    assert_eq!(rejected("set k 0 0\r\n").0, Reply::Error);
    assert_eq!(rejected("set k 0 0 -1\r\n").0, bad_format);
    assert_eq!(rejected("set k x 0 1\r\n").0, bad_format);
    assert_eq!(rejected("set k 0 0 1 noreply extra\r\n").0, Reply::Error);
    assert_eq!(rejected("cas k 0 0 1 x\r\n").0, bad_format);
    assert_eq!(
        rejected("incr k x\r\n").0,
        Reply::client_error("invalid numeric delta argument")
    );
    assert_eq!(
        rejected("touch k x noreply\r\n"),
        (Reply::client_error("invalid exptime argument"), true)
    );
    assert_eq!(
        rejected("delete k 5\r\n").0,
        Reply::client_error("bad command line format.  Usage: delete <key> [noreply]")
    );
    assert_eq!(
        rejected("flush_all x\r\n").0,
        Reply::client_error("invalid exptime argument")
    );
    let long_key = format!("get a {}\r\n", "k".repeat(251));
    assert_eq!(
        parse(long_key.as_bytes()),
        Decoded::Complete(
            Frame::RejectedGet {
                reply: bad_format.clone()
            },
            long_key.len()
        )
    );
    let long_key = format!("set {} 0 0 1 noreply\r\n", "k".repeat(251));
    assert_eq!(rejected(&long_key), (bad_format, true));
}

#[test]
fn bad_data_chunk_consumes_the_declared_length() {
    let input = b"set k 0 0 3\r\nabcde\r\n";
    assert_eq!(
        parse(input),
        Decoded::Complete(reject("bad data chunk", false), 18)
    );
}

#[test]
fn a_nul_byte_ends_the_line() {
    assert_eq!(rejected("set k\0x 0 0 1\r\n").0, Reply::Error);
    assert_eq!(
        parse(b"get a\0b\r\n"),
        Decoded::Complete(
            Frame::Request(Request::Get(Get {
                keys: vec![b("a")],
                with_cas: false,
                touch: None
            })),
            9
        )
    );
}

#[test]
fn too_large_items_are_refused_before_their_data_arrives() {
    let limit = limits().max_item_size;
    // memcached: 59 + key + value <= limit with flags 0.
    let fits = limit - 60;
    let line = format!("set k 0 0 {fits}\r\n");
    assert_eq!(parse(line.as_bytes()), Decoded::Incomplete);
    let line = format!("set k 0 0 {}\r\n", fits + 1);
    assert_eq!(
        parse(line.as_bytes()),
        Decoded::Complete(
            Frame::TooLarge {
                mode: StoreMode::Set,
                key: b("k"),
                noreply: false,
                discard: fits as u64 + 3
            },
            line.len()
        )
    );
    let line = format!("add k 1 0 {} noreply\r\n", fits - 3);
    assert!(matches!(
        parse(line.as_bytes()),
        Decoded::Complete(
            Frame::TooLarge {
                mode: StoreMode::Add,
                noreply: true,
                ..
            },
            _
        )
    ));
}

#[test]
fn long_lines_without_newline_close_unless_get() {
    let junk = vec![b'x'; 2049];
    assert_eq!(
        parse(&junk),
        Decoded::Complete(Frame::Close(CloseReason::LineTooLong), 0)
    );
    assert_eq!(parse(&junk[..2048]), Decoded::Incomplete);
    let mut get = b"get ".to_vec();
    get.extend(std::iter::repeat_n(b'k', 4000));
    assert_eq!(parse(&get), Decoded::Incomplete);
    let mut get = vec![b' '; 101];
    get.extend_from_slice(b"get ");
    get.extend(std::iter::repeat_n(b'k', 4000));
    assert_eq!(
        parse(&get),
        Decoded::Complete(Frame::Close(CloseReason::LineTooLong), 0)
    );
}

#[test]
fn http_closes_the_connection() {
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\n"),
        Decoded::Complete(Frame::Close(CloseReason::Http), 16)
    );
    // A known command family with a wrong token count is ERROR, not HTTP.
    assert_eq!(rejected("gopher HTTP/1.0\r\n").0, Reply::Error);
}

#[test]
fn extra_tokens_and_noreply_follow_memcached() {
    // A seventh token that is not "noreply" is ignored.
    match parse(b"set k 0 0 1 junk\r\nx\r\n") {
        Decoded::Complete(Frame::Request(Request::Store(store)), 21) => assert!(!store.noreply),
        other => panic!("{other:?}"),
    }
    match parse(b"flush_all noreply\r\n") {
        Decoded::Complete(Frame::Request(Request::FlushAll(flush)), _) => {
            assert_eq!(
                flush,
                FlushAll {
                    delay: 0,
                    noreply: true
                }
            )
        }
        other => panic!("{other:?}"),
    }
    // The 32-bit fields truncate like memcached's strtoul into uint32_t.
    match parse(b"set k 4294967297 0 1\r\nx\r\n") {
        Decoded::Complete(Frame::Request(Request::Store(store)), _) => assert_eq!(store.flags, 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn many_keys_beyond_the_token_limit() {
    let keys: Vec<String> = (0..100).map(|i| format!("key{i}")).collect();
    let line = format!("get {}\r\n", keys.join(" "));
    match parse(line.as_bytes()) {
        Decoded::Complete(Frame::Request(Request::Get(get)), used) => {
            assert_eq!(used, line.len());
            let parsed: Vec<String> = get
                .keys
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            assert_eq!(parsed, keys);
        }
        other => panic!("{other:?}"),
    }
}

fn sample_replies() -> Vec<Reply> {
    vec![
        Reply::Stored,
        Reply::NotStored,
        Reply::Exists,
        Reply::NotFound,
        Reply::Deleted,
        Reply::Touched,
        Reply::Ok,
        Reply::End,
        Reply::Reset,
        Reply::Error,
        Reply::Number(0),
        Reply::Number(u64::MAX),
        Reply::Version(b("1.6.18")),
        Reply::Stat {
            name: b("pid"),
            value: b("123"),
        },
        Reply::Value(Value {
            key: b("k"),
            flags: 3,
            cas: None,
            data: b("data\r\nwith newline"),
        }),
        Reply::Value(Value {
            key: b("k"),
            flags: 0,
            cas: Some(99),
            data: Bytes::new(),
        }),
        Reply::ErrorMessage(" Too many open connections".into()),
        Reply::ErrorMessage(": shutdown not enabled".into()),
        Reply::client_error("bad data chunk"),
        Reply::server_error("object too large for cache"),
    ]
}

#[test]
fn replies_round_trip_and_need_all_their_bytes() {
    for reply in sample_replies() {
        let mut wire = Vec::new();
        reply.encode(&mut wire);
        assert_eq!(
            crate::parse_reply(&wire),
            Decoded::Complete(reply.clone(), wire.len())
        );
        for cut in 0..wire.len() {
            assert_eq!(
                crate::parse_reply(&wire[..cut]),
                Decoded::Incomplete,
                "{reply:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn huge_reply_lengths_are_errors_not_panics() {
    // Found by the parse_reply fuzz target: the length overflowed usize.
    for line in [
        &b"VALUE k 0 18446744073709551615\r\n"[..],
        b"VA 18446744073709551614\r\n",
    ] {
        match crate::parse_reply(line) {
            Decoded::Complete(Reply::ServerError(_), used) => assert_eq!(used, line.len()),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn meta_arithmetic_round_trips_whatever_the_ignored_flags() {
    // Found by the parse_request fuzz target: ma ignores R, yet R's position
    // leaked into the parsed request.
    let input = b"ma k T1 R1\r\n";
    let Decoded::Complete(Frame::Request(request), _) = parse(input) else {
        panic!("ma k T1 R1 should parse");
    };
    let wire = encode(&request);
    assert_eq!(
        parse(&wire),
        Decoded::Complete(Frame::Request(request), wire.len())
    );
}
