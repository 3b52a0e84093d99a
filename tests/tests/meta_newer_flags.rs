//! End-to-end checks of the meta flags newer than memcached 1.6.18: `E<cas>`
//! (explicit cas unique) on `mg N`, `ms`, `md`, `ma`; `ms ... MA|MP N<ttl>`
//! (append/prepend vivify); `md ... x` (empty the value, keep the item);
//! `ms ... s` (echo the stored size).
//!
//! These cannot be differential: the 1.6.18 binary that
//! `tests/tests/differential.rs` compares with answers `E` and `x` with
//! `CLIENT_ERROR invalid flag` and ignores `N` and `s` on `ms`. The expected bytes here are derived from the
//! current memcached `doc/protocol.txt` and its implementation
//! (`proto_parser.c`, `memcached.c`'s `do_store_item`); see
//! `docs/meta-protocol.md`, "Flags newer than 1.6.18".

use mcstore_e2e::{count_reply_terminators, escape, exchange, Mcstore};

/// Sends each `(request, expected reply)` pair in order, each on a fresh
/// connection, and requires the exact reply bytes.
fn check(server: &Mcstore, steps: &[(&str, &str)]) {
    for (request, expected) in steps {
        let terminators = count_reply_terminators(expected.as_bytes());
        let reply = exchange(server.addr(), request.as_bytes(), terminators).expect("exchange");
        assert_eq!(
            escape(&reply),
            escape(expected.as_bytes()),
            "request {request:?}\nserver stderr:\n{}",
            server.stderr()
        );
    }
}

#[test]
fn explicit_cas_on_every_command() {
    let server = Mcstore::start(&[]);
    check(
        &server,
        &[
            ("ms k 2 E1000 c\r\nhi\r\n", "HD c1000\r\n"),
            ("mg k c v\r\n", "VA 2 c1000\r\nhi\r\n"),
            // Compare with C, store with E.
            ("ms k 2 C999 E1 c\r\nno\r\n", "EX c0\r\n"),
            ("ms k 1 MA C1000 E1001 c\r\n!\r\n", "HD c1001\r\n"),
            ("mg k c s v\r\n", "VA 3 c1001 s3\r\nhi!\r\n"),
            // md I: the stale item gets the E cas; the next mg wins.
            ("md k I E1002\r\n", "HD\r\n"),
            ("mg k c\r\n", "HD c1002 X W\r\n"),
            // ma: created by N, then incremented.
            ("ma n N0 J5 E2000 c v\r\n", "VA 1 c2000\r\n5\r\n"),
            ("ma n E2001 c v\r\n", "VA 1 c2001\r\n6\r\n"),
            ("ma n D100 E2002 c v\r\n", "VA 3 c2002\r\n106\r\n"),
            // mg: E applies to the item N creates, not to an existing one.
            ("mg v N30 E3000 c\r\n", "HD c3000 W\r\n"),
            ("mg v N30 E3001 c\r\n", "HD c3000 Z\r\n"),
            ("mg w E3002 c\r\n", "EN\r\n"),
            // E's argument is a cas: a 64-bit unsigned number.
            (
                "ms k 1 E18446744073709551615 c\r\nx\r\n",
                "HD c18446744073709551615\r\n",
            ),
            (
                "mg k E\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
            ),
            ("md k Ex\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
        ],
    );
}

#[test]
fn append_and_prepend_vivify_with_n() {
    let server = Mcstore::start(&[]);
    check(
        &server,
        &[
            ("ms a 3 MA T100\r\nabc\r\n", "NS\r\n"),
            // N creates the item with the data, its flags and N's TTL (T is
            // ignored: N0 means no expiry, so t is -1).
            ("ms a 3 MA N0 T100 F7\r\nabc\r\n", "HD\r\n"),
            ("mg a f t v\r\n", "VA 3 f7 t-1\r\nabc\r\n"),
            // On a hit N changes nothing: a plain prepend.
            ("ms a 3 MP N-1 F9\r\nxyz\r\n", "HD\r\n"),
            ("mg a f t v\r\n", "VA 6 f7 t-1\r\nxyzabc\r\n"),
            // N's TTL, not T's: N-1 creates an item that is expired at once.
            ("ms e 1 MP N-1 T100\r\nx\r\n", "HD\r\n"),
            ("mg e v\r\n", "EN\r\n"),
            // A miss with C still creates (nothing to compare with).
            ("ms c 1 MA N0 C77\r\nq\r\n", "HD\r\n"),
            ("mg c v\r\n", "VA 1\r\nq\r\n"),
            // Other modes ignore N.
            ("ms r 1 MR N30\r\nq\r\n", "NS\r\n"),
            ("ms s 1 N30\r\nq\r\n", "HD\r\n"),
            ("mg s t\r\n", "HD t-1\r\n"),
        ],
    );
}

#[test]
fn delete_with_x_empties_the_value_and_keeps_the_item() {
    let server = Mcstore::start(&[]);
    check(
        &server,
        &[
            ("md d x\r\n", "NF\r\n"),
            ("ms d 5 F3 T100 E50\r\nhello\r\n", "HD\r\n"),
            ("md d x C1\r\n", "EX\r\n"),
            // Empty value, flags 0 and no expiry (no F, no T), the old cas.
            ("md d x k\r\n", "HD kd\r\n"),
            ("mg d c f s t v\r\n", "VA 0 c50 f0 s0 t-1\r\n\r\n"),
            // F, E and q on the emptied item.
            ("md d x F9 E60 q\r\nmn\r\n", "MN\r\n"),
            ("mg d c f v\r\n", "VA 0 c60 f9\r\n\r\n"),
            // With I: an empty stale item whose next reader wins.
            ("ms d 5\r\nhello\r\n", "HD\r\n"),
            ("md d x I E70\r\n", "HD\r\n"),
            ("mg d c s v\r\n", "VA 0 c70 s0 X W\r\n\r\n"),
            ("mg d c v\r\n", "VA 0 c70 Z X\r\n\r\n"),
            // x alone leaves a fresh item: the stale and token marks go.
            ("md d x\r\n", "HD\r\n"),
            ("mg d c v\r\n", "VA 0 c70\r\n\r\n"),
            // x with a T in the past: the emptied item is expired at once.
            ("md d x T-1\r\n", "HD\r\n"),
            ("mg d v\r\n", "EN\r\n"),
            // x means nothing to ms, mg, ma: accepted and ignored.
            ("ms d 1 x\r\nv\r\n", "HD\r\n"),
            ("mg d x v\r\n", "VA 1\r\nv\r\n"),
            ("md d x x\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
        ],
    );
}

/// The value of `STAT <name>` in a `stats` reply.
fn stat(server: &Mcstore, name: &str) -> u64 {
    let reply = exchange(server.addr(), b"stats\r\n", 1).expect("stats");
    let text = String::from_utf8_lossy(&reply);
    let prefix = format!("STAT {name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .expect("a number")
}

#[test]
fn delete_with_x_counts_as_memcached_does() {
    let server = Mcstore::start(&[]);
    check(&server, &[("ms d 1\r\nv\r\n", "HD\r\n")]);
    assert_eq!(stat(&server, "total_items"), 1);
    // x without I: a delete hit, and the emptied item is a new item.
    check(&server, &[("md d x\r\n", "HD\r\n")]);
    assert_eq!(stat(&server, "delete_hits"), 1);
    assert_eq!(stat(&server, "total_items"), 2);
    // x with I: a new item, no delete hit (as for md I).
    check(&server, &[("md d x I\r\n", "HD\r\n")]);
    assert_eq!(stat(&server, "delete_hits"), 1);
    assert_eq!(stat(&server, "total_items"), 3);
    check(
        &server,
        &[("md e x\r\n", "NF\r\n"), ("md d x C1\r\n", "EX\r\n")],
    );
    assert_eq!(stat(&server, "delete_misses"), 2);
    assert_eq!(stat(&server, "total_items"), 3);
}

#[test]
fn set_with_s_echoes_the_stored_size() {
    let server = Mcstore::start(&[]);
    check(
        &server,
        &[
            // The size of what was stored, in request-flag order.
            ("ms size:a 2 s k\r\nhi\r\n", "HD s2 ksize:a\r\n"),
            // After append: the whole value's size.
            ("ms size:a 3 MA s\r\nabc\r\n", "HD s5\r\n"),
            ("mg size:a v\r\n", "VA 5\r\nhiabc\r\n"),
            // Nothing stored: the request's data length, as memcached's
            // _finalize_mset reports it.
            ("ms size:missing 4 MR s\r\nabcd\r\n", "NS s4\r\n"),
            // q hides HD, even with s.
            ("ms size:a 1 s q\r\nz\r\nmn\r\n", "MN\r\n"),
        ],
    );
}
