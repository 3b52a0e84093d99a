//! Differential test: the same raw bytes go to a real memcached and to mcstore,
//! and the replies must agree byte for byte after normalisation.
//!
//! Both servers are started once for this test binary. Every case runs on a
//! fresh connection, uses its own key prefix (`dNNN_`), and consists of steps
//! (bytes to send, how many replies to expect, an optional pause before).
//! memcached's live reply is the expectation; nothing here hard-codes replies.
//!
//! Normalisation: cas uniques are replaced by their order of first appearance
//! within the case (`#0`, `#1`, …) so equal/different cas values must still
//! agree, and `VERSION …` lines are reduced to `VERSION <v>`. `stats` is not
//! compared byte-wise: both must end with `END` and mcstore must report every
//! general stat name that memcached reports from [`GENERAL_STATS`].
//!
//! An input may contain `<cas:KEY>`: it is replaced, when the step is sent, by
//! the cas unique last seen for KEY in an earlier reply of the same case on the
//! same server (so `cas` commands can use real uniques on both sides). A
//! `VALUE` line with a cas counts, and so does a meta reply line carrying both
//! `k<KEY>` and `c<cas>` (`mg KEY c k`).
//!
//! Meta replies are normalised too: a `c<cas>` token of a meta reply line and
//! the `cas=` field of an `ME` line are numbered like `VALUE` cas uniques.
//!
//! Set `DIFF_AGAINST_MEMCACHED=1` to run the harness against a second memcached
//! instead of mcstore (self-check: no mismatches expected, and every step's
//! expected reply count must match memcached's replies).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use mcstore_e2e::{
    collect_reply, collect_reply_with_quiet, count_reply_terminators, data_block_length, escape,
    send_all, Mcstore, Memcached,
};

/// General stats names checked for presence (when memcached reports them).
const GENERAL_STATS: &[&str] = &[
    "pid",
    "uptime",
    "time",
    "version",
    "pointer_size",
    "rusage_user",
    "rusage_system",
    "max_connections",
    "curr_connections",
    "total_connections",
    "rejected_connections",
    "connection_structures",
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "get_expired",
    "get_flushed",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "bytes_read",
    "bytes_written",
    "limit_maxbytes",
    "threads",
    "bytes",
    "curr_items",
    "total_items",
    "evictions",
];

/// memcached's default maximum item size.
const ITEM_SIZE_MAX: usize = 1024 * 1024;

/// memcached's per-item overhead besides the key: header, cas, key NUL, data `\r\n`.
const ITEM_OVERHEAD: usize = 59;

/// How long a silent step listens for unexpected replies.
const SILENT_STEP_WAIT: Duration = Duration::from_millis(60);

/// One send on the case's connection.
struct Step {
    pause_before: Duration,
    input: Vec<u8>,
    /// Complete replies expected; 0 means the connection should close, unless `silent`.
    replies: usize,
    /// No reply is expected yet (e.g. half a command): read briefly, don't wait for a close.
    silent: bool,
}

/// A named sequence of steps on one connection.
struct Case {
    name: String,
    steps: Vec<Step>,
}

/// Builds a step expecting `replies` complete replies (0: read until close or quiet).
fn step(input: impl Into<Vec<u8>>, replies: usize) -> Step {
    Step {
        pause_before: Duration::ZERO,
        input: input.into(),
        replies,
        silent: false,
    }
}

/// Builds a step sent after sleeping `millis`, expecting no reply yet.
fn step_silent_after(millis: u64, input: impl Into<Vec<u8>>) -> Step {
    Step {
        silent: true,
        ..step_after(millis, input, 0)
    }
}

/// Builds a step sent after sleeping `millis`.
fn step_after(millis: u64, input: impl Into<Vec<u8>>, replies: usize) -> Step {
    Step {
        pause_before: Duration::from_millis(millis),
        ..step(input, replies)
    }
}

/// Concatenates byte pieces.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A storage command with its data block.
fn store(cmd: &str, key: &str, flags: &str, exptime: &str, value: &[u8], extra: &str) -> Vec<u8> {
    let mut line = format!("{cmd} {key} {flags} {exptime} {}", value.len());
    if !extra.is_empty() {
        line.push(' ');
        line.push_str(extra);
    }
    cat(&[line.as_bytes(), b"\r\n", value, b"\r\n"])
}

/// `set key 0 0 <len>` with `value`.
fn set(key: &str, value: &[u8]) -> Vec<u8> {
    store("set", key, "0", "0", value, "")
}

/// Collects test cases, giving each its key prefix.
struct CaseList {
    cases: Vec<Case>,
}

impl CaseList {
    fn add(&mut self, name: impl Into<String>, build: impl FnOnce(&str) -> Vec<Step>) {
        let prefix = format!("d{:03}_", self.cases.len());
        let steps = build(&prefix);
        self.cases.push(Case {
            name: name.into(),
            steps,
        });
    }
}

fn storage_cases(c: &mut CaseList) {
    c.add("set_then_get", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"hello"),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("set_overwrite", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"one"),
                &set(&format!("{k}a"), b"second"),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("set_empty_value", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b""),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    // add/replace/append/prepend against a missing and an existing key, with and without noreply.
    for cmd in ["add", "replace", "append", "prepend", "set"] {
        for existing in [false, true] {
            for noreply in [false, true] {
                let name = format!(
                    "{cmd}_{}{}",
                    if existing { "existing" } else { "missing" },
                    if noreply { "_noreply" } else { "" }
                );
                c.add(name, |k| {
                    let key = format!("{k}a");
                    let mut input = Vec::new();
                    let mut replies = 0;
                    if existing {
                        input.extend(store("set", &key, "7", "0", b"base", ""));
                        replies += 1;
                    }
                    input.extend(store(
                        cmd,
                        &key,
                        "9",
                        "0",
                        b"NEW",
                        if noreply { "noreply" } else { "" },
                    ));
                    if !noreply {
                        replies += 1;
                    }
                    input.extend(format!("gets {key}\r\n").as_bytes());
                    replies += 1;
                    vec![step(input, replies)]
                });
            }
        }
    }
    c.add("append_keeps_flags_and_exptime", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &store("set", &key, "5", "0", b"abc", ""),
                &store("append", &key, "99", "-1", b"def", ""),
                &store("prepend", &key, "98", "-1", b"012", ""),
                format!("get {key}\r\n").as_bytes(),
            ]),
            4,
        )]
    });
    c.add("append_binary_pieces", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &set(&key, b"\r\n"),
                &store("append", &key, "0", "0", b"\0\xff\r", ""),
                &store("prepend", &key, "0", "0", b"\n", ""),
                format!("get {key}\r\n").as_bytes(),
            ]),
            4,
        )]
    });
    c.add("add_after_delete", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &set(&key, b"x"),
                format!("delete {key}\r\n").as_bytes(),
                &store("add", &key, "0", "0", b"y", ""),
                format!("get {key}\r\n").as_bytes(),
            ]),
            4,
        )]
    });
    c.add("add_over_expired", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &store("set", &key, "0", "-1", b"x", ""),
                &store("add", &key, "0", "0", b"y", ""),
                format!("get {key}\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("replace_over_expired", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &store("set", &key, "0", "-1", b"x", ""),
                &store("replace", &key, "0", "0", b"y", ""),
                format!("get {key}\r\n").as_bytes(),
            ]),
            3,
        )]
    });
}

fn cas_cases(c: &mut CaseList) {
    c.add("cas_missing_key", |k| {
        vec![step(
            cat(&[
                &store("cas", &format!("{k}a"), "0", "0", b"x", "12345"),
                format!("gets {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("cas_matching_unique", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[&set(&key, b"v1"), format!("gets {key}\r\n").as_bytes()]),
                2,
            ),
            step(
                cat(&[
                    &store("cas", &key, "3", "0", b"v2", &format!("<cas:{key}>")),
                    format!("gets {key}\r\n").as_bytes(),
                ]),
                2,
            ),
        ]
    });
    c.add("cas_stale_unique_after_set", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[&set(&key, b"v1"), format!("gets {key}\r\n").as_bytes()]),
                2,
            ),
            step(
                cat(&[
                    &set(&key, b"v2"),
                    &store("cas", &key, "0", "0", b"v3", &format!("<cas:{key}>")),
                    format!("gets {key}\r\n").as_bytes(),
                ]),
                3,
            ),
        ]
    });
    c.add("cas_wrong_unique", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &set(&key, b"v1"),
                &store("cas", &key, "0", "0", b"v2", "987654321"),
                format!("gets {key}\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("cas_noreply_success_and_exists", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[&set(&key, b"v1"), format!("gets {key}\r\n").as_bytes()]),
                2,
            ),
            step(
                cat(&[
                    &store(
                        "cas",
                        &key,
                        "0",
                        "0",
                        b"v2",
                        &format!("<cas:{key}> noreply"),
                    ),
                    &store(
                        "cas",
                        &key,
                        "0",
                        "0",
                        b"v3",
                        &format!("<cas:{key}> noreply"),
                    ),
                    &store("cas", &format!("{k}missing"), "0", "0", b"v3", "1 noreply"),
                    format!("gets {key}\r\n").as_bytes(),
                ]),
                1,
            ),
        ]
    });
    c.add("cas_unique_changes_on_append_and_incr", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &set(&key, b"1"),
                format!("gets {key}\r\n").as_bytes(),
                &store("append", &key, "0", "0", b"0", ""),
                format!("gets {key}\r\n").as_bytes(),
                format!("incr {key} 5\r\ngets {key}\r\n").as_bytes(),
                format!("touch {key} 0\r\ngets {key}\r\n").as_bytes(),
            ]),
            8,
        )]
    });
    c.add("cas_unique_distinct_per_key", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                &set(&format!("{k}b"), b"x"),
                format!("gets {k}a {k}b {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("cas_after_delete", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[&set(&key, b"v1"), format!("gets {key}\r\n").as_bytes()]),
                2,
            ),
            step(
                cat(&[
                    format!("delete {key}\r\n").as_bytes(),
                    &store("cas", &key, "0", "0", b"v2", &format!("<cas:{key}>")),
                ]),
                2,
            ),
        ]
    });
    c.add("cas_missing_unique_token", |k| {
        vec![step(
            cat(&[format!("cas {k}a 0 0 1\r\nx\r\n").as_bytes()]),
            2,
        )]
    });
    c.add("cas_non_numeric_unique", |k| {
        vec![step(
            cat(&[format!("cas {k}a 0 0 1 abc\r\nx\r\n").as_bytes()]),
            2,
        )]
    });
    c.add("cas_bad_data_chunk", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[&set(&key, b"v1"), format!("gets {key}\r\n").as_bytes()]),
                2,
            ),
            step(
                format!("cas {key} 0 0 1 <cas:{key}>\r\nxyz\r\nget {key}\r\n"),
                3,
            ),
        ]
    });
}

fn noreply_cases(c: &mut CaseList) {
    c.add("noreply_all_storage_commands", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &store("set", &key, "0", "0", b"1", "noreply"),
                &store("add", &key, "0", "0", b"2", "noreply"),
                &store("replace", &key, "0", "0", b"3", "noreply"),
                &store("append", &key, "0", "0", b"4", "noreply"),
                &store("prepend", &key, "0", "0", b"5", "noreply"),
                format!("get {key}\r\n").as_bytes(),
            ]),
            1,
        )]
    });
    c.add("noreply_incr_decr_touch_delete", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &set(&key, b"10"),
                format!("incr {key} 5 noreply\r\ndecr {key} 2 noreply\r\nget {key}\r\n").as_bytes(),
                format!("touch {key} 0 noreply\r\ndelete {key} noreply\r\nget {key}\r\n")
                    .as_bytes(),
            ]),
            3,
        )]
    });
    c.add("noreply_on_misses", |k| {
        vec![step(
            format!(
                "incr {k}x 1 noreply\r\ndecr {k}x 1 noreply\r\ntouch {k}x 0 noreply\r\ndelete {k}x noreply\r\nget {k}x\r\n"
            ),
            1,
        )]
    });
    c.add("noreply_incr_non_numeric", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &set(&key, b"abc"),
                format!("incr {key} 1 noreply\r\nget {key}\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("noreply_incr_invalid_delta", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &set(&key, b"1"),
                format!("incr {key} x noreply\r\nget {key}\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("noreply_bad_data_chunk", |k| {
        vec![step(
            format!("set {k}a 0 0 1 noreply\r\nxyz\r\nget {k}a\r\n"),
            2,
        )]
    });
    c.add("noreply_bad_command_line", |k| {
        vec![step(format!("set {k}a 0 0 -1 noreply\r\nget {k}a\r\n"), 1)]
    });
    c.add("noreply_too_large", |k| {
        let value = vec![b'z'; ITEM_SIZE_MAX + 10];
        vec![step(
            cat(&[
                &store("set", &format!("{k}a"), "0", "0", &value, "noreply"),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            1,
        )]
    });
    c.add("noreply_flush_all", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("flush_all noreply\r\nget {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("noreply_flush_all_zero", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("flush_all 0 noreply\r\nget {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("noreply_verbosity", |_| {
        vec![step("verbosity 1 noreply\r\nverbosity 0\r\n", 1)]
    });
    c.add("noreply_misspelled", |k| {
        vec![step(
            cat(&[
                &store("set", &format!("{k}a"), "0", "0", b"x", "norepl"),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("noreply_on_get_is_a_key", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("get {k}a noreply\r\n").as_bytes(),
            ]),
            2,
        )]
    });
}

fn retrieval_cases(c: &mut CaseList) {
    c.add("get_miss", |k| vec![step(format!("get {k}nothing\r\n"), 1)]);
    c.add("gets_miss", |k| {
        vec![step(format!("gets {k}nothing\r\n"), 1)]
    });
    c.add("get_many_mixed", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                &store("set", &format!("{k}c"), "3", "0", b"333", ""),
                format!("get {k}a {k}b {k}c {k}d\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("gets_many_mixed", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                &set(&format!("{k}c"), b"3"),
                format!("gets {k}a {k}b {k}c {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("get_duplicate_keys", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"dup"),
                format!("get {k}a {k}a {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    for count in [23usize, 24, 25, 30, 120, 300] {
        c.add(format!("get_{count}_keys_half_present"), |k| {
            let mut input = Vec::new();
            for i in (0..count).step_by(2) {
                input.extend(set(&format!("{k}{i}"), format!("v{i}").as_bytes()));
            }
            let keys: Vec<String> = (0..count).map(|i| format!("{k}{i}")).collect();
            input.extend(format!("get {}\r\n", keys.join(" ")).as_bytes());
            vec![step(input, count.div_ceil(2) + 1)]
        });
    }
    c.add("gets_30_keys", |k| {
        let mut input = Vec::new();
        for i in 0..30 {
            input.extend(set(&format!("{k}{i}"), b"x"));
        }
        let keys: Vec<String> = (0..30).map(|i| format!("{k}{i}")).collect();
        input.extend(format!("gets {}\r\n", keys.join(" ")).as_bytes());
        vec![step(input, 31)]
    });
    c.add("get_extra_spaces", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("get   {k}a    {k}b  \r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("get_leading_spaces", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("   get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("get_no_key", |_| vec![step("get\r\n", 1)]);
    c.add("get_only_space", |_| vec![step("get \r\n", 1)]);
    c.add("gets_no_key", |_| vec![step("gets\r\n", 1)]);
    c.add("get_tab_in_key", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a\tb"), b"tab"),
                format!("get {k}a\tb\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("get_uppercase_command", |k| {
        vec![step(format!("GET {k}a\r\n"), 1)]
    });
    c.add("gat_hit_and_miss", |k| {
        vec![step(
            cat(&[
                &store("set", &format!("{k}a"), "4", "0", b"abc", ""),
                format!("gat 100 {k}a {k}b\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("gats_120_keys", |k| {
        let mut input = Vec::new();
        for i in (0..120).step_by(3) {
            input.extend(set(&format!("{k}{i}"), b"g"));
        }
        let keys: Vec<String> = (0..120).map(|i| format!("{k}{i}")).collect();
        input.extend(format!("gats 100 {}\r\n", keys.join(" ")).as_bytes());
        vec![step(input, 41)]
    });
    c.add("gets_120_keys_after_cas", |k| {
        let key = format!("{k}0");
        let keys: Vec<String> = (0..120).map(|i| format!("{k}{i}")).collect();
        let mut first = Vec::new();
        for i in 0..120 {
            first.extend(set(&format!("{k}{i}"), b"c"));
        }
        first.extend(format!("gets {key}\r\n").as_bytes());
        vec![
            step(first, 121),
            step(
                cat(&[
                    &store("cas", &key, "0", "0", b"d", &format!("<cas:{key}>")),
                    format!("gets {}\r\n", keys.join(" ")).as_bytes(),
                ]),
                2,
            ),
        ]
    });
    c.add("gats_hit_many", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                &set(&format!("{k}b"), b"2"),
                format!("gats 0 {k}a {k}b {k}c\r\ngets {k}a\r\n").as_bytes(),
            ]),
            4,
        )]
    });
    c.add("gat_negative_exptime_expires", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                format!("gat -1 {k}a\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("gat_no_key", |_| vec![step("gat 10\r\n", 1)]);
    c.add("gat_no_args", |_| vec![step("gat\r\n", 1)]);
    c.add("gat_invalid_exptime", |k| {
        vec![step(format!("gat abc {k}a\r\n"), 1)]
    });
    c.add("gats_invalid_exptime", |k| {
        vec![step(format!("gats 1x {k}a\r\n"), 1)]
    });
    c.add("gat_30_keys", |k| {
        let mut input = Vec::new();
        for i in 0..30 {
            input.extend(set(&format!("{k}{i}"), b"x"));
        }
        let keys: Vec<String> = (0..30).map(|i| format!("{k}{i}")).collect();
        input.extend(format!("gat 0 {}\r\n", keys.join(" ")).as_bytes());
        vec![step(input, 31)]
    });
}

fn touch_delete_cases(c: &mut CaseList) {
    c.add("touch_hit", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("touch {k}a 100\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("touch_miss", |k| {
        vec![step(format!("touch {k}a 10\r\n"), 1)]
    });
    c.add("touch_negative_expires", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("touch {k}a -1\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("touch_invalid_exptime", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("touch {k}a abc\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("touch_missing_exptime", |k| {
        vec![step(format!("touch {k}a\r\n"), 1)]
    });
    c.add("touch_too_many_tokens", |k| {
        vec![step(format!("touch {k}a 1 noreply extra\r\n"), 1)]
    });
    c.add("delete_hit_then_miss", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("delete {k}a\r\ndelete {k}a\r\nget {k}a\r\n").as_bytes(),
            ]),
            4,
        )]
    });
    c.add("delete_with_zero", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("delete {k}a 0\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("delete_with_zero_noreply", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("delete {k}a 0 noreply\r\nget {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    for hold in ["5", "-1", "abc", "00", "0 0"] {
        c.add(format!("delete_bad_hold_{}", hold.replace(' ', "_")), |k| {
            vec![step(
                cat(&[
                    &set(&format!("{k}a"), b"x"),
                    format!("delete {k}a {hold}\r\nget {k}a\r\n").as_bytes(),
                ]),
                3,
            )]
        });
    }
    c.add("delete_no_key", |_| vec![step("delete\r\n", 1)]);
    c.add("delete_expired", |k| {
        vec![step(
            cat(&[
                &store("set", &format!("{k}a"), "0", "-1", b"x", ""),
                format!("delete {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
}

fn arithmetic_cases(c: &mut CaseList) {
    let arith = |c: &mut CaseList, name: &str, initial: &[u8], commands: &str, replies: usize| {
        let initial = initial.to_vec();
        let commands = commands.to_string();
        c.add(name, move |k| {
            let key = format!("{k}a");
            vec![step(
                cat(&[
                    &set(&key, &initial),
                    commands.replace("KEY", &key).as_bytes(),
                    format!("get {key}\r\n").as_bytes(),
                ]),
                replies + 2,
            )]
        });
    };
    arith(c, "incr_basic", b"10", "incr KEY 5\r\n", 1);
    arith(c, "decr_basic", b"10", "decr KEY 3\r\n", 1);
    arith(
        c,
        "incr_wraps_at_2_64",
        b"18446744073709551615",
        "incr KEY 1\r\n",
        1,
    );
    arith(
        c,
        "incr_wraps_by_large_delta",
        b"18446744073709551610",
        "incr KEY 18446744073709551615\r\n",
        1,
    );
    arith(
        c,
        "incr_max_delta",
        b"0",
        "incr KEY 18446744073709551615\r\n",
        1,
    );
    arith(c, "decr_floors_at_zero", b"5", "decr KEY 10\r\n", 1);
    arith(c, "decr_zero", b"0", "decr KEY 1\r\n", 1);
    arith(
        c,
        "decr_shrinks_length_pads_spaces",
        b"100",
        "decr KEY 95\r\n",
        1,
    );
    arith(
        c,
        "decr_shrink_then_incr",
        b"1000",
        "decr KEY 999\r\nincr KEY 1\r\n",
        2,
    );
    arith(c, "incr_grows_length", b"99", "incr KEY 1\r\n", 1);
    // A stale item's marks survive an in-place update, not a new item.
    arith(
        c,
        "incr_in_place_keeps_stale_marks",
        b"10",
        "md KEY I\r\nincr KEY 1\r\nmg KEY v\r\nmg KEY v\r\n",
        4,
    );
    arith(
        c,
        "incr_growing_drops_stale_marks",
        b"99",
        "md KEY I\r\nincr KEY 1\r\nmg KEY v\r\nmg KEY v\r\n",
        4,
    );
    arith(c, "incr_non_numeric", b"abc", "incr KEY 1\r\n", 1);
    arith(c, "decr_non_numeric", b"12abc", "decr KEY 1\r\n", 1);
    arith(c, "incr_empty_value", b"", "incr KEY 1\r\n", 1);
    arith(
        c,
        "incr_value_overflowing_u64",
        b"18446744073709551616",
        "incr KEY 1\r\n",
        1,
    );
    arith(c, "incr_leading_space_value", b" 5", "incr KEY 1\r\n", 1);
    arith(c, "incr_trailing_space_value", b"5 ", "incr KEY 1\r\n", 1);
    arith(c, "incr_negative_value", b"-5", "incr KEY 1\r\n", 1);
    arith(c, "incr_leading_zeros", b"007", "incr KEY 1\r\n", 1);
    arith(c, "incr_invalid_delta", b"1", "incr KEY abc\r\n", 1);
    arith(c, "incr_negative_delta", b"1", "incr KEY -1\r\n", 1);
    arith(
        c,
        "incr_delta_overflow",
        b"1",
        "incr KEY 18446744073709551616\r\n",
        1,
    );
    arith(c, "decr_invalid_delta", b"1", "decr KEY 1.5\r\n", 1);
    arith(c, "incr_zero_delta", b"42", "incr KEY 0\r\n", 1);
    arith(c, "incr_missing_delta", b"1", "incr KEY\r\n", 1);
    arith(
        c,
        "incr_too_many_tokens",
        b"1",
        "incr KEY 1 noreply extra\r\n",
        1,
    );
    arith(
        c,
        "incr_many_times_pipelined",
        b"0",
        &"incr KEY 1\r\n".repeat(20),
        20,
    );
    c.add("incr_missing_key", |k| {
        vec![step(format!("incr {k}a 1\r\ndecr {k}a 1\r\n"), 2)]
    });
    c.add("incr_keeps_flags", |k| {
        vec![step(
            cat(&[
                &store("set", &format!("{k}a"), "77", "0", b"1", ""),
                format!("incr {k}a 1\r\ngets {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("incr_on_appended_number", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                &store("append", &format!("{k}a"), "0", "0", b"2", ""),
                format!("incr {k}a 1\r\n").as_bytes(),
            ]),
            3,
        )]
    });
}

fn flags_exptime_cases(c: &mut CaseList) {
    for flags in [
        "0",
        "1",
        "65535",
        "65536",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "-1",
        "abc",
        "1.5",
        "+5",
        "00012",
    ] {
        let valid = flags.parse::<u64>().is_ok();
        c.add(format!("flags_{flags}"), |k| {
            vec![step(
                cat(&[
                    &store("set", &format!("{k}a"), flags, "0", b"f", ""),
                    format!("get {k}a\r\n").as_bytes(),
                ]),
                if valid { 2 } else { 3 },
            )]
        });
    }
    for exptime in [
        "-1",
        "-100",
        "0",
        "1000",
        "2592000",
        "2592001",
        "1000000000",
        "4102444800",
        "abc",
        "99999999999",
        "1.5",
    ] {
        let valid = exptime.parse::<i64>().is_ok();
        c.add(format!("exptime_{exptime}"), |k| {
            vec![step(
                cat(&[
                    &store("set", &format!("{k}a"), "0", exptime, b"e", ""),
                    format!("get {k}a\r\n").as_bytes(),
                ]),
                if valid { 2 } else { 3 },
            )]
        });
    }
    c.add("exptime_negative_via_add", |k| {
        vec![step(
            cat(&[
                &store("add", &format!("{k}a"), "0", "-1", b"e", ""),
                &store("add", &format!("{k}a"), "0", "0", b"f", ""),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("touch_absolute_past", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("touch {k}a 1000000000\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
}

fn misc_command_cases(c: &mut CaseList) {
    c.add("version", |_| vec![step("version\r\n", 1)]);
    c.add("version_with_argument", |_| vec![step("version x\r\n", 1)]);
    for line in [
        "verbosity 1",
        "verbosity 0",
        "verbosity",
        "verbosity abc",
        "verbosity 1 2 3",
        "verbosity -1",
    ] {
        c.add(format!("verbosity_{}", line.replace(' ', "_")), |_| {
            vec![step(format!("{line}\r\n"), 1)]
        });
    }
    c.add("flush_all_immediate", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("flush_all\r\nget {k}a\r\n").as_bytes(),
                &set(&format!("{k}b"), b"y"),
                format!("get {k}b\r\n").as_bytes(),
            ]),
            5,
        )]
    });
    c.add("flush_all_zero", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("flush_all 0\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    for arg in ["abc", "-1", "0 0", "1 2 3"] {
        c.add(format!("flush_all_bad_{}", arg.replace(' ', "_")), |_| {
            vec![step(format!("flush_all {arg}\r\n"), 1)]
        });
    }
    c.add("quit", |_| vec![step("quit\r\n", 0)]);
    c.add("quit_with_argument", |_| vec![step("quit now\r\n", 0)]);
    c.add("quit_after_pipelined_get", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("get {k}a\r\nquit\r\nget {k}a\r\n").as_bytes(),
            ]),
            0,
        )]
    });
    for unknown in [
        "foo",
        "sets k 0 0 1",
        "getx k",
        "stat",
        "incrx k 1",
        "flush",
        "delete_all",
        "shutdown",
        "cache_memlimit",
    ] {
        c.add(
            format!("unknown_{}", unknown.split(' ').next().unwrap_or_default()),
            |_| vec![step(format!("{unknown}\r\n"), 1)],
        );
    }
    c.add("unknown_with_30_tokens", |_| {
        vec![step(
            format!(
                "bogus {}\r\n",
                (0..30).map(|i| i.to_string()).collect::<Vec<_>>().join(" ")
            ),
            1,
        )]
    });
    for line in [
        "set",
        "set k",
        "set k 0",
        "set k 0 0",
        "add k 0 0",
        "replace k",
        "append k 0 0",
        "prepend",
        "cas k 0 0",
        "set k 0 0 1 noreply extra",
    ] {
        c.add(format!("token_count_{}", line.replace(' ', "_")), |k| {
            let line = line.replacen(" k", &format!(" {k}k"), 1);
            vec![step(format!("{line}\r\nx\r\nget {k}k\r\n"), 3)]
        });
    }
}

fn framing_cases(c: &mut CaseList) {
    c.add("bare_lf_line_endings", |k| {
        vec![step(
            format!("set {k}a 0 0 1\nx\r\nget {k}a\nget {k}b\n"),
            3,
        )]
    });
    c.add("empty_line_crlf", |_| vec![step("\r\n", 1)]);
    c.add("empty_line_lf", |_| vec![step("\n", 1)]);
    c.add("two_empty_lines", |_| vec![step("\r\n\r\n", 2)]);
    c.add("only_spaces_line", |_| vec![step("   \r\n", 1)]);
    c.add("data_block_lf_only", |k| {
        vec![step(format!("set {k}a 0 0 1\r\nx\nget {k}a\r\n"), 2)]
    });
    c.add("bad_data_chunk_too_long", |k| {
        vec![step(format!("set {k}a 0 0 3\r\nabcd\r\nget {k}a\r\n"), 3)]
    });
    c.add("bad_data_chunk_too_short", |k| {
        vec![step(format!("set {k}a 0 0 3\r\nab\r\n\r\nget {k}a\r\n"), 3)]
    });
    c.add("bad_data_chunk_replaces_nothing", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"old"),
                format!("set {k}a 0 0 2\r\nnewX\r\nget {k}a\r\n").as_bytes(),
            ]),
            4,
        )]
    });
    c.add("bad_data_chunk_cr_only", |k| {
        vec![step(format!("set {k}a 0 0 1\r\nx\rZget {k}a\r\n"), 2)]
    });
    for len in [
        "-1",
        "abc",
        "18446744073709551616",
        "4294967296",
        "1x",
        "2147483648",
    ] {
        c.add(format!("bad_length_{len}"), |k| {
            vec![step(format!("set {k}a 0 0 {len}\r\nxy\r\nget {k}a\r\n"), 3)]
        });
    }
    c.add("pipelined_many_commands", |k| {
        let mut input = Vec::new();
        for i in 0..40 {
            input.extend(set(&format!("{k}{i}"), format!("value-{i}").as_bytes()));
        }
        for i in 0..40 {
            input.extend(
                format!("get {k}{i}\r\nincr {k}{i} 1\r\ndelete {k}{}\r\n", i + 1).as_bytes(),
            );
        }
        vec![step(input, 40 + 40 * 3)]
    });
    c.add("pipelined_mixed_errors", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                b"bogus\r\n",
                format!("incr {k}a x\r\nget {k}a\r\nset {k}b 0 0 z\r\nget {k}a {k}b\r\n")
                    .as_bytes(),
            ]),
            6,
        )]
    });
    c.add("nul_in_command_line", |k| {
        vec![step(format!("get {k}a\0{k}b\r\n"), 1)]
    });
    c.add("nul_in_key_set", |k| {
        vec![step(format!("set {k}a\0b 0 0 1\r\nx\r\nget {k}a\r\n"), 3)]
    });
    c.add("nul_command_only", |_| vec![step("\0\r\n", 1)]);
    c.add("control_chars_in_key", |k| {
        let key = format!("{k}\x01\x02\x7f\x1b");
        vec![step(
            cat(&[
                &set(&key, b"ctl"),
                format!("get {key}\r\ndelete {key}\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("high_bytes_in_key", |k| {
        let key = cat(&[k.as_bytes(), b"\xc3\xa9\xff"]);
        vec![step(
            cat(&[b"set ", &key, b" 0 0 1\r\nx\r\nget ", &key, b"\r\n"]),
            2,
        )]
    });
    c.add("key_250_bytes", |k| {
        let key = format!("{k}{}", "k".repeat(250 - k.len()));
        vec![step(
            cat(&[
                &set(&key, b"ok"),
                format!("get {key}\r\ntouch {key} 0\r\nincr {key} 1\r\ndelete {key}\r\n")
                    .as_bytes(),
            ]),
            5,
        )]
    });
    c.add("key_251_bytes_set", |k| {
        let key = format!("{k}{}", "k".repeat(251 - k.len()));
        vec![step(
            cat(&[&set(&key, b"no"), format!("get {k}\r\n").as_bytes()]),
            3,
        )]
    });
    c.add("key_251_bytes_get", |k| {
        let key = format!("{k}{}", "k".repeat(251 - k.len()));
        vec![step(format!("get {key}\r\n"), 1)]
    });
    c.add("key_251_bytes_among_good_keys", |k| {
        let key = format!("{k}{}", "k".repeat(251 - k.len()));
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                format!("get {k}a {key} {k}a\r\n").as_bytes(),
            ]),
            1,
        )]
    });
    for cmd in ["delete", "touch", "incr", "decr"] {
        c.add(format!("key_251_bytes_{cmd}"), |k| {
            let key = format!("{k}{}", "k".repeat(251 - k.len()));
            let args = if cmd == "delete" { "" } else { " 1" };
            vec![step(format!("{cmd} {key}{args}\r\n"), 1)]
        });
    }
    c.add("long_non_get_line_without_newline", |_| {
        vec![step(vec![b'x'; 3000], 0)]
    });
    c.add("long_set_line_without_newline", |k| {
        vec![step(format!("set {k}a 0 0 1 {}", "9".repeat(3000)), 0)]
    });
    c.add("long_get_line_without_newline_then_newline", |k| {
        let keys: Vec<String> = (0..200).map(|i| format!("{k}long{i:04}")).collect();
        let line = format!("get {}", keys.join(" "));
        vec![
            step(
                cat(&[&set(&format!("{k}long0007"), b"seven"), line.as_bytes()]),
                1,
            ),
            step_after(100, "\r\n", 1),
        ]
    });
    c.add("long_get_line_served", |k| {
        let keys: Vec<String> = (0..400).map(|i| format!("{k}many{i:04}")).collect();
        vec![step(
            cat(&[
                &set(&format!("{k}many0399"), b"last"),
                format!("gets {}\r\n", keys.join(" ")).as_bytes(),
            ]),
            2,
        )]
    });
    c.add("long_unknown_line_with_newline", |_| {
        vec![step(format!("{}\r\n", "y".repeat(3000)), 1)]
    });
    c.add("many_leading_spaces_get", |k| {
        vec![step(
            format!("{}get {k}a {}", " ".repeat(150), "z".repeat(3000)),
            0,
        )]
    });
    c.add("http_get", |_| {
        vec![step("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 0)]
    });
    c.add("http_post", |_| vec![step("POST /api HTTP/1.0\r\n\r\n", 0)]);
    c.add("http_after_valid_command", |_| {
        vec![step("version\r\nGET /index.html HTTP/1.1\r\n", 0)]
    });
}

fn value_cases(c: &mut CaseList) {
    c.add("value_all_byte_values", |k| {
        let value: Vec<u8> = (0..=255u8).collect();
        vec![step(
            cat(&[
                &set(&format!("{k}a"), &value),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("value_with_crlf_inside", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"line1\r\nline2\r\n"),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("value_looks_like_replies", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"END\r\nVALUE x 0 1\r\ny\r\nSTORED\r\n"),
                format!("get {k}a {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("value_only_crlf", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"\r\n"),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("value_nuls", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), &[0u8; 64]),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("value_64k", |k| {
        let value: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        vec![step(
            cat(&[
                &set(&format!("{k}a"), &value),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("value_split_across_sends", |k| {
        vec![
            step_silent_after(0, format!("set {k}a 0 0 10\r\n01234")),
            step_silent_after(50, "56789"),
            step_after(50, format!("\r\nget {k}a\r\n"), 2),
        ]
    });
    c.add("command_split_across_sends", |k| {
        vec![
            step_silent_after(0, "ge"),
            step_silent_after(50, format!("t {k}a\r")),
            step_after(50, "\n", 1),
        ]
    });
    // Size limits: memcached refuses values whose item would exceed 1 MiB.
    for (name, flags, delta) in [
        ("too_large_limit_exact", "0", 0i64),
        ("too_large_limit_plus_one", "0", 1),
        ("too_large_flags_limit_exact", "1", 0),
        ("too_large_flags_limit_plus_one", "1", 1),
        ("too_large_way_over", "0", 1_000_000),
    ] {
        c.add(name, |k| {
            let key = format!("{k}a");
            let flag_bytes = if flags == "0" { 0 } else { 4 };
            let limit = ITEM_SIZE_MAX - ITEM_OVERHEAD - key.len() - flag_bytes;
            let len = (limit as i64 + delta) as usize;
            let value = vec![b'v'; len];
            vec![step(
                cat(&[
                    &store("set", &key, "0", "0", b"old", ""),
                    &store("set", &key, flags, "0", &value, ""),
                    format!("get {key}\r\n").as_bytes(),
                    &set(&format!("{k}after"), b"next"),
                    format!("get {k}after\r\n").as_bytes(),
                ]),
                5,
            )]
        });
    }
    c.add("too_large_append", |k| {
        let key = format!("{k}a");
        let half = vec![b'h'; 600 * 1024];
        vec![step(
            cat(&[
                &set(&key, &half),
                &store("append", &key, "0", "0", &half, ""),
                format!("gets {k}b\r\n").as_bytes(),
            ]),
            3,
        )]
    });
}

/// Odd but legal (or at least deterministic) inputs beyond the basics.
fn edge_cases(c: &mut CaseList) {
    c.add("pipelined_1000_gets_one_send", |k| {
        let mut input = set(&format!("{k}a"), b"p");
        for _ in 0..1000 {
            input.extend(format!("get {k}a\r\n").as_bytes());
        }
        vec![step(input, 1001)]
    });
    c.add("pipelined_200_sets_one_send", |k| {
        let mut input = Vec::new();
        for i in 0..200 {
            input.extend(set(
                &format!("{k}{i}"),
                format!("{i}").repeat(50).as_bytes(),
            ));
        }
        input.extend(format!("get {k}0 {k}199\r\n").as_bytes());
        vec![step(input, 201)]
    });
    c.add("carriage_return_inside_line", |k| {
        vec![step(format!("get {k}a\r{k}b\r\n"), 1)]
    });
    c.add("double_carriage_return", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("get {k}a\r\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("set_trailing_space", |k| {
        vec![step(format!("set {k}a 0 0 1 \r\nx\r\nget {k}a\r\n"), 2)]
    });
    c.add("set_capitalised_command", |k| {
        vec![step(format!("Set {k}a 0 0 1\r\nx\r\nget {k}a\r\n"), 3)]
    });
    c.add("incr_delta_leading_zeros", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                format!("incr {k}a 007\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("decr_delta_minus_zero", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                format!("decr {k}a -0\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("incr_delta_plus_sign", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"1"),
                format!("incr {k}a +3\r\n").as_bytes(),
            ]),
            2,
        )]
    });
    c.add("incr_twenty_digit_value", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"09999999999999999999"),
                format!("incr {k}a 1\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("delete_noreply_extra_token", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                format!("delete {k}a noreply extra\r\nget {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("flush_all_noreply_extra", |_| {
        vec![step("flush_all 0 noreply extra\r\n", 1)]
    });
    c.add("version_noreply", |_| vec![step("version noreply\r\n", 1)]);
    c.add("quit_noreply", |_| vec![step("quit noreply\r\n", 0)]);
    c.add("touch_250_byte_key", |k| {
        let key = format!("{k}{}", "t".repeat(250 - k.len()));
        vec![step(
            cat(&[
                &set(&key, b"x"),
                format!("touch {key} 10\r\ngat 0 {key}\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("get_30_keys_of_250_bytes", |k| {
        let keys: Vec<String> = (0..30)
            .map(|i| format!("{k}{i:02}{}", "g".repeat(248 - k.len())))
            .collect();
        vec![step(
            cat(&[
                &set(&keys[29], b"last"),
                format!("get {}\r\n", keys.join(" ")).as_bytes(),
            ]),
            2,
        )]
    });
    c.add("value_exactly_crlf_terminated_twice", |k| {
        vec![step(format!("set {k}a 0 0 2\r\n\r\n\r\nget {k}a\r\n"), 2)]
    });
    c.add("append_noreply_missing", |k| {
        vec![step(
            cat(&[
                &store("append", &format!("{k}a"), "0", "0", b"x", "noreply"),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            1,
        )]
    });
    c.add("cas_zero_unique", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"x"),
                &store("cas", &format!("{k}a"), "0", "0", b"y", "0"),
                format!("get {k}a\r\n").as_bytes(),
            ]),
            3,
        )]
    });
    c.add("cas_negative_exptime_success", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[&set(&key, b"x"), format!("gets {key}\r\n").as_bytes()]),
                2,
            ),
            step(
                cat(&[
                    &store("cas", &key, "0", "-1", b"y", &format!("<cas:{key}>")),
                    format!("get {key}\r\n").as_bytes(),
                ]),
                2,
            ),
        ]
    });
    // Meta protocol basics (memcached 1.6 speaks it on the same port).
    c.add("meta_noop", |_| vec![step("mn\r\n", 1)]);
    c.add("meta_get_miss_and_hit", |k| {
        vec![step(
            cat(&[
                &store("set", &format!("{k}a"), "5", "0", b"meta", ""),
                format!("mg {k}b v\r\nmg {k}a v f k\r\nmn\r\n").as_bytes(),
            ]),
            4,
        )]
    });
    c.add("meta_set_and_delete", |k| {
        vec![step(
            format!("ms {k}a 2\r\nhi\r\nmg {k}a v\r\nmd {k}a\r\nmg {k}a v\r\nmn\r\n"),
            5,
        )]
    });
    c.add("meta_arithmetic", |k| {
        vec![step(
            cat(&[
                &set(&format!("{k}a"), b"10"),
                format!("ma {k}a\r\nma {k}a v\r\nma {k}missing\r\nmn\r\n").as_bytes(),
            ]),
            5,
        )]
    });
    c.add("meta_bad_flags", |k| {
        vec![step(format!("mg {k}a !\r\n"), 1)]
    });
}

/// memcached's admin commands that change nothing stored: `slabs
/// automove`, `stats detail` usage, `stats sizes`, and `watch` refusals
/// (stateful `stats` groups and streaming `watch` are checked on fresh
/// servers by [`stats_groups_and_watch_like_memcached`]).
fn admin_cases(c: &mut CaseList) {
    for line in [
        "slabs automove",
        "slabs automove 0",
        "slabs automove 2",
        "slabs automove 3",
        "slabs automove -1",
        "slabs automove x",
        "slabs automove 1x",
        "slabs automove 01",
        "slabs automove 1 2",
        "slabs automove ratio",
        "slabs automove ratio 0.5",
        "slabs automove ratio x",
        "slabs",
        "slabs bogus",
        "slabs bogus 1 2",
        "slabs automove 1",
    ] {
        c.add(format!("admin_{}", line.replace(' ', "_")), |_| {
            vec![step(format!("{line}\r\n"), 1)]
        });
    }
    for line in [
        "slabs automove 2 noreply",
        "slabs automove 9 noreply",
        "slabs automove 1 noreply",
    ] {
        c.add(format!("admin_{}", line.replace(' ', "_")), |_| {
            vec![step(format!("{line}\r\nversion\r\n"), 1)]
        });
    }
    for line in [
        "stats detail",
        "stats detail x",
        "stats detail ON",
        "stats detail on x\r\nstats detail off",
        "stats detail off",
        "stats sizes",
    ] {
        let name = line
            .split("\r\n")
            .next()
            .unwrap_or_default()
            .replace(' ', "_");
        let replies = line.split("\r\n").count();
        c.add(format!("admin_{name}"), |_| {
            vec![step(format!("{line}\r\n"), replies)]
        });
    }
    c.add("watch_unknown_event", |_| vec![step("watch bogus\r\n", 1)]);
    c.add("watch_unknown_after_known", |_| {
        vec![step("watch fetchers bogus\r\n", 1)]
    });
    c.add("watch_after_a_pipelined_command", |_| {
        vec![step("version\r\nwatch\r\n", 2)]
    });
    c.add("watch_refused_quietly_with_noreply", |_| {
        vec![step("watch fetchers noreply\r\nversion\r\n", 1)]
    });
}

/// Cases that need time to pass; few and bounded (about 3 s each).
fn timed_cases(c: &mut CaseList) {
    c.add("timed_relative_exptime_and_touch", |k| {
        vec![
            step(
                cat(&[
                    &store("set", &format!("{k}exp"), "0", "2", b"e", ""),
                    &set(&format!("{k}keep"), b"k"),
                    &set(&format!("{k}touched"), b"t"),
                    &set(&format!("{k}gat"), b"g"),
                    format!("touch {k}touched 2\r\ngat 2 {k}gat\r\nget {k}exp {k}keep {k}touched {k}gat\r\n").as_bytes(),
                ]),
                7,
            ),
            step_after(3300, format!("get {k}exp {k}keep {k}touched {k}gat\r\n"), 1),
        ]
    });
    // memcached 1.6.18's deadline is now + delay - 1: `flush_all 1` hides
    // existing items at once, `flush_all 2` only about a second later.
    c.add("timed_flush_all_one_hides_at_once", |k| {
        vec![
            step(
                cat(&[
                    &set(&format!("{k}a"), b"x"),
                    format!("flush_all 1\r\nget {k}a\r\n").as_bytes(),
                ]),
                3,
            ),
            step_after(
                2200,
                cat(&[
                    &set(&format!("{k}b"), b"y"),
                    format!("get {k}a {k}b\r\n").as_bytes(),
                ]),
                2,
            ),
        ]
    });
    c.add("timed_flush_all_delayed", |k| {
        vec![
            step(
                cat(&[
                    &set(&format!("{k}a"), b"x"),
                    format!("flush_all 2\r\nget {k}a\r\n").as_bytes(),
                ]),
                3,
            ),
            step_after(
                3300,
                cat(&[
                    format!("get {k}a\r\n").as_bytes(),
                    &set(&format!("{k}b"), b"y"),
                    format!("get {k}b\r\n").as_bytes(),
                ]),
                3,
            ),
        ]
    });
}

/// `ms <key> <len> <flags>` with `value`.
fn ms(key: &str, value: &[u8], flags: &str) -> Vec<u8> {
    let mut line = format!("ms {key} {}", value.len());
    if !flags.is_empty() {
        line.push(' ');
        line.push_str(flags);
    }
    cat(&[line.as_bytes(), b"\r\n", value, b"\r\n"])
}

/// Standard base64 with padding (for `b` keys).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lines joined with `\r\n` (each one ends with it).
fn lines(lines: &[&str]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect()
}

fn meta_cases(c: &mut CaseList) {
    c.add("meta_exec_noop", |_| {
        vec![step(lines(&["mn", "mn extra tokens"]), 2)]
    });
    c.add("meta_exec_set_get_all_return_flags", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &ms(&key, b"hello", "F5 T0"),
                &lines(&[
                    &format!("mg {key} s v f t c k Oop h l"),
                    &format!("mg {key} h l k"),
                    &format!("mg {key} v"),
                    &format!("mg {key}"),
                ]),
            ]),
            5,
        )]
    });
    c.add("meta_exec_get_miss_flags", |k| {
        let key = format!("{k}a");
        vec![step(
            lines(&[
                &format!("mg {key} c f k Oabc s t v"),
                &format!("mg {key} q k"),
                &format!("mg {key} k O1 q v"),
                "mn",
            ]),
            2,
        )]
    });
    c.add("meta_exec_quiet_pipeline", |k| {
        let (a, b, m) = (format!("{k}a"), format!("{k}b"), format!("{k}missing"));
        vec![step(
            cat(&[
                &ms(&a, b"one", "q"),
                &ms(&b, b"two", "q T0 F3"),
                &ms(&a, b"x", "q ME"),
                &lines(&[
                    &format!("mg {a} v q k"),
                    &format!("mg {m} v q"),
                    &format!("md {b} q"),
                    &format!("md {m} q O7"),
                    &format!("ma {m} q"),
                    &format!("mg {b} v q"),
                    "mn",
                ]),
            ]),
            5,
        )]
    });
    c.add("meta_exec_set_modes", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &ms(&key, b"r", "MR c"),
                &ms(&key, b"a", "MA c k"),
                &ms(&key, b"p", "MP"),
                &ms(&key, b"add", "ME c"),
                &ms(&key, b"again", "ME"),
                &ms(&key, b"+tail", "MA F9 T100"),
                &ms(&key, b"head+", "MP"),
                &lines(&[&format!("mg {key} v f t")]),
                &ms(&key, b"new", "MR F2"),
                &ms(&key, b"set", "MS"),
                &lines(&[&format!("mg {key} v f"), &format!("ms {key} 1 MZ")]),
                b"x\r\n",
            ]),
            12,
        )]
    });
    c.add("meta_exec_set_compare_cas", |k| {
        let key = format!("{k}a");
        let missing = format!("{k}m");
        vec![
            step(
                cat(&[&ms(&key, b"v1", ""), &lines(&[&format!("mg {key} c k")])]),
                2,
            ),
            step(
                cat(&[
                    &ms(&key, b"v2", &format!("C<cas:{key}> c")),
                    &ms(&key, b"v3", &format!("C<cas:{key}>")),
                    &ms(&key, b"v4", "C0"),
                    &ms(&missing, b"v", "C5"),
                    &ms(&missing, b"v", "C5 MR k"),
                    &lines(&[&format!("mg {key} v c")]),
                ]),
                6,
            ),
            step(
                cat(&[
                    &lines(&[&format!("mg {key} c k")]),
                    &ms(&key, b"ap", "MA C1"),
                    &ms(&key, b"ad", "ME C1"),
                ]),
                3,
            ),
            step(
                cat(&[
                    &ms(&key, b"+", &format!("MA C<cas:{key}>")),
                    &ms(&key, b"-", "MP C0"),
                    &lines(&[&format!("mg {key} v")]),
                ]),
                3,
            ),
        ]
    });
    c.add("meta_exec_set_stale_cas_invalidate", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[
                    &ms(&key, b"v1", "T100"),
                    &lines(&[&format!("mg {key} c k")]),
                ]),
                2,
            ),
            step(cat(&[&ms(&key, b"v2", "T200")]), 1),
            step(
                cat(&[
                    &ms(&key, b"v3", &format!("C<cas:{key}> I c")),
                    &lines(&[
                        &format!("mg {key} v c t"),
                        &format!("mg {key} v c"),
                        &format!("mg {key} k c"),
                    ]),
                    &ms(&key, b"v4", &format!("C<cas:{key}> I")),
                    &lines(&[&format!("mg {key} v t")]),
                    &ms(&key, b"v5", ""),
                    &lines(&[&format!("mg {key} v")]),
                ]),
                8,
            ),
            step(
                cat(&[
                    &ms(&key, b"v6", "C1 I"),
                    &ms(&key, b"v7", "I"),
                    &lines(&[&format!("mg {key} v")]),
                ]),
                3,
            ),
        ]
    });
    c.add("meta_exec_delete_invalidate_win_flow", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[
                    &ms(&key, b"val", "T0"),
                    &lines(&[
                        &format!("md {key} I"),
                        &format!("mg {key} c v"),
                        &format!("mg {key} c v"),
                        &format!("mg {key}"),
                        &format!("mg {key} c k"),
                    ]),
                ]),
                6,
            ),
            step(
                cat(&[
                    &ms(&key, b"new", &format!("C<cas:{key}> I")),
                    &lines(&[&format!("mg {key} v c")]),
                ]),
                2,
            ),
            step(cat(&[&lines(&[&format!("mg {key} c k")])]), 1),
            step(
                cat(&[
                    &ms(&key, b"fresh", &format!("C<cas:{key}>")),
                    &lines(&[
                        &format!("mg {key} v c"),
                        &format!("md {key} I T30 q"),
                        &format!("mg {key} t v"),
                        &format!("md {key} I"),
                        &format!("mg {key} t"),
                        &format!("md {key}"),
                        &format!("mg {key} v"),
                    ]),
                ]),
                7,
            ),
        ]
    });
    c.add("meta_exec_delete_flags", |k| {
        let key = format!("{k}a");
        vec![
            step(
                cat(&[
                    &ms(&key, b"v", ""),
                    &lines(&[
                        &format!("md {key} C1 k O5"),
                        &format!("md {key}x k Onf"),
                        &format!("mg {key} c k"),
                    ]),
                ]),
                4,
            ),
            step(
                lines(&[
                    &format!("md {key} C<cas:{key}> O1 k"),
                    &format!("md {key}"),
                    &format!("md {key} q"),
                    &format!("md {key} I"),
                    "mn",
                ]),
                5,
            ),
        ]
    });
    c.add("meta_exec_arithmetic", |k| {
        let (key, missing, text) = (format!("{k}a"), format!("{k}m"), format!("{k}t"));
        vec![step(
            cat(&[
                &lines(&[
                    &format!("ma {missing}"),
                    &format!("ma {missing} MD k O2"),
                    &format!("ma {key} N0 J10 v"),
                    &format!("ma {key} v"),
                    &format!("ma {key} MD D5 v t"),
                    &format!("ma {key} M- D100 v"),
                    &format!("ma {key} M+ D18446744073709551615 v"),
                    &format!("ma {key} MI D2 v"),
                    &format!("ma {key} v T30 t"),
                    &format!("ma {key} t v"),
                    &format!("ma {key} q"),
                    &format!("ma {key} q v"),
                    &format!("ma {key} C1 v"),
                    &format!("ma {key} C0 v c"),
                    &format!("mg {key} v t c"),
                ]),
                &ms(&text, b"abc", ""),
                &lines(&[&format!("ma {text}"), &format!("ma {text} N0"), "mn"]),
            ]),
            17,
        )]
    });
    c.add("meta_exec_arithmetic_vivify_quiet_and_ttl", |k| {
        let (a, b, d) = (format!("{k}a"), format!("{k}b"), format!("{k}d"));
        vec![step(
            lines(&[
                &format!("ma {a} N30 J7 q v"),
                &format!("ma {a} q v"),
                &format!("ma {b} t N40 T50 v"),
                &format!("ma {b} t"),
                &format!("ma {d} N40 J3 MD t"),
                &format!("mg {d} v t"),
                "mn",
            ]),
            6,
        )]
    });
    c.add("meta_exec_arithmetic_counter_width", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &ms(&key, b"100", ""),
                &lines(&[
                    &format!("ma {key} MD D95 v"),
                    &format!("mg {key} v s"),
                    &format!("ma {key} D9999 v"),
                    &format!("mg {key} v s"),
                ]),
            ]),
            5,
        )]
    });
    c.add("meta_exec_get_vivify", |k| {
        let key = format!("{k}a");
        vec![step(
            lines(&[
                &format!("mg {key} N30 c v t s f"),
                &format!("mg {key} c v t h"),
                &format!("mg {key} N30 c"),
                &format!("mg {key}b N30 q"),
                &format!("mg {key}b t N60 T90 t"),
                &format!("mg {key}c T90 N60 t"),
                &format!("mg {key}c v"),
                "mn",
            ]),
            8,
        )]
    });
    c.add("meta_exec_get_recache", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &ms(&key, b"v", "T10"),
                &lines(&[
                    &format!("mg {key} R5 v"),
                    &format!("mg {key} R30 v c"),
                    &format!("mg {key} R30 v"),
                    &format!("mg {key}n R30 v"),
                ]),
                &ms(&format!("{key}x"), b"v", "T0"),
                &lines(&[
                    &format!("mg {key}x R30 v"),
                    &format!("mg {key}x T10 R30 t"),
                    &format!("mg {key}x t"),
                ]),
                &ms(&format!("{key}y"), b"v", "T100"),
                &lines(&[&format!("mg {key}y R30 T10"), &format!("mg {key}y R30")]),
            ]),
            12,
        )]
    });
    c.add("meta_exec_get_touch", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &ms(&key, b"v", ""),
                &lines(&[
                    &format!("mg {key} T30 t"),
                    &format!("mg {key} t T60"),
                    &format!("mg {key} t v"),
                    &format!("mg {key} T0 t"),
                    &format!("mg {key}m T30 t k"),
                    &format!("mg {key} T-1 v"),
                    &format!("mg {key} v"),
                ]),
            ]),
            8,
        )]
    });
    c.add("meta_exec_get_hit_and_no_bump", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &ms(&key, b"v", ""),
                &lines(&[
                    &format!("mg {key} h l u"),
                    &format!("mg {key} h u"),
                    &format!("me {key}"),
                    &format!("mg {key} h"),
                    &format!("mg {key} h l"),
                    &format!("me {key}"),
                ]),
            ]),
            7,
        )]
    });
    c.add("meta_exec_fetched_by_text_commands", |k| {
        let (a, b, n, s) = (
            format!("{k}a"),
            format!("{k}b"),
            format!("{k}n"),
            format!("{k}s"),
        );
        vec![step(
            cat(&[
                &set(&a, b"x"),
                &set(&b, b"x"),
                &set(&n, b"10"),
                &set(&s, b"x"),
                &lines(&[
                    &format!("touch {a} 0"),
                    &format!("mg {a} h"),
                    &format!("gat 0 {b}"),
                    &format!("mg {b} h"),
                    // memcached rewrites a counter in place only when no
                    // reply still references the item (timing-dependent in a
                    // pipeline), so `h` after an incr is not compared.
                    &format!("incr {n} 1"),
                    &format!("mg {n} v"),
                    &format!("md {s} I"),
                    &format!("mg {s} h"),
                    &format!("md {s} I"),
                    &format!("mg {s} h"),
                    &format!("me {s}"),
                ]),
            ]),
            15,
        )]
    });
    c.add("meta_exec_base64_keys", |k| {
        let key = format!("{k}bin");
        let encoded = base64(key.as_bytes());
        vec![step(
            cat(&[
                &ms(&encoded, b"val", "b k c"),
                &lines(&[
                    &format!("mg {encoded} b k v"),
                    &format!("mg {key} k s"),
                    &format!("me {encoded} b"),
                    &format!("me {key}"),
                    &format!("ma {encoded} b k"),
                    &format!("md {encoded} b k q"),
                    &format!("md {encoded} b k"),
                    &format!("mg {encoded} b k O1"),
                    &format!("mg {} b k", base64(format!("{k}other").as_bytes())),
                    "mg !!!! b",
                ]),
            ]),
            10,
        )]
    });
    c.add("meta_exec_base64_request_on_text_key", |k| {
        let key = format!("{k}plain");
        let encoded = base64(key.as_bytes());
        vec![step(
            cat(&[
                &set(&key, b"p"),
                &lines(&[
                    &format!("mg {encoded} b k v"),
                    &format!("me {encoded} b"),
                    &format!("ma {encoded} b k"),
                    &format!("md {encoded} b k"),
                ]),
            ]),
            5,
        )]
    });
    c.add("meta_exec_text_and_meta_share_items", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &store("set", &key, "7", "0", b"text", ""),
                &lines(&[&format!("mg {key} v f c t"), &format!("gets {key}")]),
                &ms(&key, b"meta", "F9 T0"),
                &lines(&[&format!("gets {key}"), &format!("mg {key} c")]),
                &store("append", &key, "0", "0", b"+", ""),
                &lines(&[
                    &format!("mg {key} v f"),
                    &format!("incr {key} 1"),
                    &format!("touch {key} 100"),
                    &format!("mg {key} t"),
                ]),
            ]),
            11,
        )]
    });
    c.add("meta_exec_opaque_tokens", |k| {
        let key = format!("{k}a");
        let long = "x".repeat(31);
        vec![step(
            cat(&[
                &ms(&key, b"v", &format!("O{long} k")),
                &lines(&[
                    &format!("mg {key} O{long} v"),
                    &format!("mg {key} O{long}y v"),
                    &format!("md {key}m O{long}"),
                    &format!("ma {key}m O"),
                    &format!("mg {key}m O"),
                ]),
            ]),
            6,
        )]
    });
    c.add("meta_exec_malformed_lines", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &lines(&[
                    "mg",
                    "mz key",
                    &format!("mg {key} zz"),
                    &format!("mg {key} v v"),
                    &format!("ms {key}"),
                    &format!("ms {key} abc"),
                    &format!("md {key} F"),
                    &format!("ma {key} Mx"),
                    &format!("ma {key} Dabc"),
                    &format!("mg {key} Tabc"),
                    "me",
                ]),
                &ms(&key, b"v", "MX"),
                &ms(&key, b"v", "q F1 T1 Tx"),
                &lines(&[&format!("mg {key} v"), "mn"]),
            ]),
            15,
        )]
    });
    c.add("meta_exec_timed_expiry", |k| {
        let (a, v, s, n, t) = (
            format!("{k}a"),
            format!("{k}v"),
            format!("{k}s"),
            format!("{k}n"),
            format!("{k}t"),
        );
        vec![
            step(
                cat(&[
                    &ms(&a, b"x", "T2"),
                    &ms(&s, b"x", "T0"),
                    &ms(&t, b"x", "T0"),
                    &lines(&[
                        &format!("mg {v} N2 v"),
                        &format!("md {s} I T2"),
                        &format!("ma {n} N2 J5 v"),
                        &format!("mg {t} T2"),
                        &format!("mg {a} v"),
                    ]),
                ]),
                8,
            ),
            step_after(
                3300,
                lines(&[
                    &format!("mg {a} v k"),
                    &format!("mg {v} v"),
                    &format!("mg {s} v"),
                    &format!("ma {n} v"),
                    &format!("mg {t} v"),
                    &format!("mg {v} N0 v c k"),
                    &format!("mg {v} v t"),
                    &format!("md {s}"),
                    &format!("ms {a} 1 MA"),
                    "y",
                    &format!("ms {a} 1 ME"),
                    "z",
                    "mn",
                ]),
                11,
            ),
        ]
    });
    c.add("meta_exec_debug", |k| {
        let key = format!("{k}a");
        vec![step(
            cat(&[
                &ms(&key, b"value", "T0 F3"),
                &lines(&[&format!("me {key}"), &format!("me {key}m")]),
                &ms(&key, b"value", "T100"),
                &lines(&[&format!("me {key}"), &format!("me {key} x")]),
            ]),
            6,
        )]
    });
}

fn all_cases() -> Vec<Case> {
    let mut list = CaseList { cases: Vec::new() };
    storage_cases(&mut list);
    cas_cases(&mut list);
    noreply_cases(&mut list);
    retrieval_cases(&mut list);
    touch_delete_cases(&mut list);
    arithmetic_cases(&mut list);
    flags_exptime_cases(&mut list);
    misc_command_cases(&mut list);
    admin_cases(&mut list);
    framing_cases(&mut list);
    value_cases(&mut list);
    edge_cases(&mut list);
    timed_cases(&mut list);
    meta_cases(&mut list);
    list.cases
}

/// The raw reply of one case on one server, plus harness notes.
struct CaseRun {
    reply: Vec<u8>,
    /// Steps whose reply count differed from the case's expectation.
    count_notes: Vec<String>,
}

/// Visits every `VALUE` header in a reply stream, skipping data blocks.
fn for_each_value_header(reply: &[u8], mut visit: impl FnMut(&[u8])) {
    let mut pos = 0;
    while let Some(len) = reply[pos..].windows(2).position(|w| w == b"\r\n") {
        let line = &reply[pos..pos + len];
        pos += len + 2;
        if let Some(bytes) = data_block_length(line) {
            if line.starts_with(b"VALUE ") {
                visit(line);
            }
            if let Some(n) = bytes {
                pos = (pos + n + 2).min(reply.len());
            }
        }
    }
}

/// Replaces `<cas:KEY>` markers with the cas last seen for KEY.
fn substitute_cas(input: &[u8], seen: &HashMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    const OPEN: &[u8] = b"<cas:";
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(OPEN) {
            if let Some(end) = input[i..].iter().position(|&b| b == b'>') {
                let key = &input[i + OPEN.len()..i + end];
                out.extend_from_slice(seen.get(key).map(Vec::as_slice).unwrap_or(b"0"));
                i += end + 1;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn run_case(addr: SocketAddr, case: &Case) -> CaseRun {
    let mut run = CaseRun {
        reply: Vec::new(),
        count_notes: Vec::new(),
    };
    let mut stream = match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            run.reply = format!("<CONNECT FAILED: {e}>").into_bytes();
            return run;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut seen_cas: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for (index, step) in case.steps.iter().enumerate() {
        thread::sleep(step.pause_before);
        let input = substitute_cas(&step.input, &seen_cas);
        send_all(&mut stream, &input);
        let start = run.reply.len();
        let closed = if step.silent {
            collect_reply_with_quiet(&mut stream, 0, SILENT_STEP_WAIT, &mut run.reply)
        } else {
            collect_reply(&mut stream, step.replies, &mut run.reply)
        };
        let got = count_reply_terminators(&run.reply[start..]);
        if !closed && got != step.replies {
            run.count_notes.push(format!(
                "step {index}: expected {} replies, got {got}",
                step.replies
            ));
        }
        if step.replies == 0 && !step.silent && !closed {
            run.count_notes
                .push(format!("step {index}: expected the connection to close"));
        }
        for_each_value_header(&run.reply[start..], |line| {
            let tokens: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            if tokens.len() == 5 {
                seen_cas.insert(tokens[1].to_vec(), tokens[4].to_vec());
            }
        });
        for_each_meta_line(&run.reply[start..], |line| {
            let tokens: Vec<&[u8]> = line.split(|&b| b == b' ').skip(1).collect();
            let key = tokens.iter().find(|t| t.first() == Some(&b'k'));
            let cas = tokens.iter().find(|t| is_meta_cas_token(t));
            if let (Some(key), Some(cas)) = (key, cas) {
                seen_cas.insert(key[1..].to_vec(), cas[1..].to_vec());
            }
        });
        if closed {
            break;
        }
    }
    run
}

/// Whether a line is a meta reply line (`HD`, `VA`, `EN`, `NF`, `NS`, `EX`).
fn is_meta_line(line: &[u8]) -> bool {
    const CODES: [&[u8]; 6] = [b"HD", b"VA", b"EN", b"NF", b"NS", b"EX"];
    line.len() >= 2 && CODES.contains(&&line[..2]) && (line.len() == 2 || line[2] == b' ')
}

/// A meta reply token `c<digits>`.
fn is_meta_cas_token(token: &[u8]) -> bool {
    token.len() > 1 && token[0] == b'c' && token[1..].iter().all(u8::is_ascii_digit)
}

/// Visits every meta reply line, skipping data blocks.
fn for_each_meta_line(reply: &[u8], mut visit: impl FnMut(&[u8])) {
    let mut pos = 0;
    while let Some(len) = reply[pos..].windows(2).position(|w| w == b"\r\n") {
        let line = &reply[pos..pos + len];
        pos += len + 2;
        if is_meta_line(line) {
            visit(line);
        }
        if let Some(Some(n)) = data_block_length(line) {
            pos = (pos + n + 2).min(reply.len());
        }
    }
}

/// Numbers a cas unique by first appearance.
fn cas_id(cas_ids: &mut HashMap<Vec<u8>, usize>, cas: &[u8]) -> usize {
    let next = cas_ids.len();
    *cas_ids.entry(cas.to_vec()).or_insert(next)
}

/// A meta reply line (or an `ME` line) with its cas uniques numbered.
fn normalise_meta_line(line: &[u8], cas_ids: &mut HashMap<Vec<u8>, usize>) -> Vec<u8> {
    let tokens: Vec<Vec<u8>> = line
        .split(|&b| b == b' ')
        .enumerate()
        .map(|(i, token)| {
            if i > 0 && line.starts_with(b"ME ") && token.starts_with(b"cas=") {
                format!("cas=#{}", cas_id(cas_ids, &token[4..])).into_bytes()
            } else if i > 0 && !line.starts_with(b"ME ") && is_meta_cas_token(token) {
                format!("c#{}", cas_id(cas_ids, &token[1..])).into_bytes()
            } else {
                token.to_vec()
            }
        })
        .collect();
    tokens.join(&b' ')
}

/// Normalises cas uniques (order of first appearance) and VERSION lines.
fn normalise(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len());
    let mut cas_ids: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut pos = 0;
    while let Some(len) = reply[pos..].windows(2).position(|w| w == b"\r\n") {
        let line = &reply[pos..pos + len];
        pos += len + 2;
        if line.starts_with(b"VERSION ") {
            out.extend_from_slice(b"VERSION <v>\r\n");
            continue;
        }
        if is_meta_line(line) || line.starts_with(b"ME ") {
            out.extend_from_slice(&normalise_meta_line(line, &mut cas_ids));
            out.extend_from_slice(b"\r\n");
            if let Some(Some(n)) = data_block_length(line) {
                let end = (pos + n + 2).min(reply.len());
                out.extend_from_slice(&reply[pos..end]);
                pos = end;
            }
            continue;
        }
        if let Some(bytes) = data_block_length(line) {
            let tokens: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            if tokens.len() == 5 && tokens[0] == b"VALUE" {
                let next = cas_ids.len();
                let id = *cas_ids.entry(tokens[4].to_vec()).or_insert(next);
                out.extend_from_slice(&tokens[..4].join(&b' '));
                out.extend_from_slice(format!(" #{id}\r\n").as_bytes());
            } else {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
            if let Some(n) = bytes {
                let end = (pos + n + 2).min(reply.len());
                out.extend_from_slice(&reply[pos..end]);
                pos = end;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&reply[pos..]);
    out
}

/// Whether two normalised replies agree: byte for byte, except that the
/// clock-derived numbers of meta replies (`t<ttl>` tokens, and `exp=` and
/// `la=` of `ME` lines) may differ by one second. memcached's clock ticks
/// once a second from its own start, mcstore's with the wall clock, so the
/// same remaining TTL can read `t199` on one and `t200` on the other when a
/// tick falls between the two servers' handling of a step.
fn replies_agree(expected: &[u8], actual: &[u8]) -> bool {
    if expected == actual {
        return true;
    }
    let expected_lines: Vec<&[u8]> = split_lines(expected);
    let actual_lines: Vec<&[u8]> = split_lines(actual);
    expected_lines.len() == actual_lines.len()
        && expected_lines
            .iter()
            .zip(&actual_lines)
            .all(|(e, a)| e == a || clock_tokens_agree(e, a))
}

fn split_lines(reply: &[u8]) -> Vec<&[u8]> {
    reply.split(|&b| b == b'\n').collect()
}

/// Two meta (or `ME`) reply lines with the same tokens, except clock-derived
/// numbers at most one apart.
fn clock_tokens_agree(expected: &[u8], actual: &[u8]) -> bool {
    let trim = |line: &[u8]| line.strip_suffix(b"\r").unwrap_or(line).to_vec();
    let (expected, actual) = (trim(expected), trim(actual));
    let debug_line = expected.starts_with(b"ME ") && actual.starts_with(b"ME ");
    let meta_lines = is_meta_line(&expected) && is_meta_line(&actual);
    if !(debug_line || meta_lines) {
        return false;
    }
    let prefixes: &[&[u8]] = if debug_line {
        &[b"exp=", b"la="]
    } else {
        &[b"t"]
    };
    let expected_tokens: Vec<&[u8]> = expected.split(|&b| b == b' ').collect();
    let actual_tokens: Vec<&[u8]> = actual.split(|&b| b == b' ').collect();
    expected_tokens.len() == actual_tokens.len()
        && expected_tokens
            .iter()
            .zip(&actual_tokens)
            .enumerate()
            .all(|(index, (e, a))| {
                e == a
                    || (index > 0
                        && prefixes.iter().any(|prefix| {
                            let number = |token: &[u8]| {
                                std::str::from_utf8(token.strip_prefix(*prefix)?)
                                    .ok()?
                                    .parse::<i64>()
                                    .ok()
                            };
                            match (number(e), number(a)) {
                                // -1 is "never expires", not a clock reading.
                                (Some(e), Some(a)) => e != -1 && a != -1 && e.abs_diff(a) <= 1,
                                _ => false,
                            }
                        }))
            })
}

/// Runs all cases against one server, in order.
fn run_all(addr: SocketAddr, cases: &[Case]) -> Vec<CaseRun> {
    cases.iter().map(|case| run_case(addr, case)).collect()
}

/// `STAT` names of a `stats` reply, or an error describing what is wrong.
fn stat_names(addr: SocketAddr) -> Result<Vec<String>, String> {
    let reply = mcstore_e2e::exchange(addr, b"stats\r\n", 1).map_err(|e| e.to_string())?;
    if !reply.ends_with(b"END\r\n") {
        return Err(format!(
            "stats reply does not end with END: {}",
            escape(&reply)
        ));
    }
    let text = String::from_utf8_lossy(&reply);
    let mut names = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty() && *l != "END") {
        let mut tokens = line.split(' ');
        match (tokens.next(), tokens.next(), tokens.next()) {
            (Some("STAT"), Some(name), Some(_)) => names.push(name.to_string()),
            _ => return Err(format!("malformed stats line {line:?}")),
        }
    }
    Ok(names)
}

/// Limit on the characters of one escaped input or reply in a mismatch report.
const SHOWN_CHARS: usize = 3000;

/// Truncates a long escaped text for display.
fn shorten(text: String) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!(
            "{}…({} more chars)",
            &text[..cut],
            text[cut..].chars().count()
        ),
        None => text,
    }
}

/// Byte offset of the first difference between two replies.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn describe_input(case: &Case) -> String {
    case.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let pause = if s.pause_before.is_zero() {
                String::new()
            } else {
                format!(" (after {:?})", s.pause_before)
            };
            format!("    step {i}{pause}: {}", shorten(escape(&s.input)))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn mcstore_replies_like_memcached() {
    let self_check =
        std::env::var("DIFF_AGAINST_MEMCACHED").is_ok_and(|v| !v.is_empty() && v != "0");
    let reference = Memcached::start();
    let (_mcstore, _second_memcached, subject_addr, subject_name);
    if self_check {
        let second = Memcached::start();
        subject_addr = second.addr();
        subject_name = "memcached#2";
        _second_memcached = Some(second);
        _mcstore = None;
    } else {
        let server = Mcstore::start(&[]);
        subject_addr = server.addr();
        subject_name = "mcstore";
        _mcstore = Some(server);
        _second_memcached = None;
    }
    compare_with_memcached(&reference, subject_addr, subject_name, self_check);
}

/// Every case sent through one node of a three-node cluster (most keys
/// live on the other nodes, so most requests are forwarded) gives
/// memcached's bytes.
#[test]
fn a_cluster_node_replies_like_memcached() {
    let reference = Memcached::start();
    let cluster = mcstore_e2e::cluster::Cluster::start(3, mcstore_e2e::cluster::FAST_DETECTION);
    compare_with_memcached(&reference, cluster.addrs[0], "mcstore cluster node", false);
    assert!(cluster.sum_cluster_stat("forwarded") > 100);
}

/// Runs every case against memcached and the subject, and compares.
fn compare_with_memcached(
    reference: &Memcached,
    subject_addr: SocketAddr,
    subject_name: &str,
    self_check: bool,
) {
    let cases = all_cases();
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.as_str()),
            "duplicate case name {}",
            case.name
        );
    }
    println!(
        "{} differential cases: memcached at {} vs {subject_name} at {subject_addr}",
        cases.len(),
        reference.addr()
    );

    let reference_addr = reference.addr();
    let (reference_runs, subject_runs) = thread::scope(|scope| {
        let reference_thread = scope.spawn(|| run_all(reference_addr, &cases));
        let subject_thread = scope.spawn(|| run_all(subject_addr, &cases));
        (
            reference_thread.join().expect("reference runner"),
            subject_thread.join().expect("subject runner"),
        )
    });

    let mut mismatches = Vec::new();
    let mut harness_notes = Vec::new();
    for ((case, expected), actual) in cases.iter().zip(&reference_runs).zip(&subject_runs) {
        for note in &expected.count_notes {
            harness_notes.push(format!("{}: {note}", case.name));
        }
        let expected_norm = normalise(&expected.reply);
        let actual_norm = normalise(&actual.reply);
        if !replies_agree(&expected_norm, &actual_norm) {
            let offset = first_difference(&expected_norm, &actual_norm);
            println!(
                "MISMATCH {}\n  input:\n{}\n  memcached: {}\n  {subject_name}: {}\n  first difference at reply byte {offset}: memcached {} vs {subject_name} {}\n",
                case.name,
                describe_input(case),
                shorten(escape(&expected_norm)),
                shorten(escape(&actual_norm)),
                shorten(escape(&expected_norm[offset..(offset + 40).min(expected_norm.len())])),
                shorten(escape(&actual_norm[offset..(offset + 40).min(actual_norm.len())])),
            );
            mismatches.push(case.name.clone());
        }
    }

    // stats: not byte-compared; END-terminated and the same general stat names.
    match (stat_names(reference_addr), stat_names(subject_addr)) {
        (Ok(reference_names), Ok(subject_names)) => {
            let missing: Vec<&str> = GENERAL_STATS
                .iter()
                .copied()
                .filter(|name| {
                    reference_names.iter().any(|n| n == name)
                        && !subject_names.iter().any(|n| n == name)
                })
                .collect();
            if !missing.is_empty() {
                println!("MISMATCH stats_general_names: {subject_name} lacks {missing:?}\n");
                mismatches.push("stats_general_names".to_string());
            }
        }
        (Err(e), _) => panic!("memcached's stats reply is unusable: {e}"),
        (_, Err(e)) => {
            println!("MISMATCH stats_general_names: {e}\n");
            mismatches.push("stats_general_names".to_string());
        }
    }

    if !harness_notes.is_empty() {
        println!("harness notes (memcached's reply count differs from the case's expectation; this only slows the case down):");
        for note in &harness_notes {
            println!("  {note}");
        }
    }
    println!("{} of {} cases mismatch", mismatches.len(), cases.len() + 1);
    assert!(
        mismatches.is_empty(),
        "{} mismatching cases: {}",
        mismatches.len(),
        mismatches.join(", ")
    );
    if self_check {
        assert!(
            harness_notes.is_empty(),
            "self-check: case reply counts are wrong: {harness_notes:?}"
        );
    }
}

#[test]
fn normalisation_numbers_cas_by_first_appearance() {
    let reply = b"VALUE a 0 1 555\r\nx\r\nVALUE b 0 1 777\r\n\r\n\r\nEND\r\nVALUE a 0 1 555\r\nx\r\nEND\r\nVERSION 1.6.18\r\n";
    assert_eq!(
        normalise(reply),
        b"VALUE a 0 1 #0\r\nx\r\nVALUE b 0 1 #1\r\n\r\n\r\nEND\r\nVALUE a 0 1 #0\r\nx\r\nEND\r\nVERSION <v>\r\n"
    );
    // A value that looks like a VALUE header is data, not a header.
    let tricky = b"VALUE a 0 15\r\nVALUE z 0 1 9\r\n\r\nEND\r\n";
    assert_eq!(normalise(tricky), tricky);
}

#[test]
fn clock_readings_may_differ_by_one_second_and_nothing_else_may() {
    assert!(replies_agree(b"HD t199 c#0\r\n", b"HD t200 c#0\r\n"));
    assert!(replies_agree(
        b"ME k exp=-99 la=3 cas=#0 fetch=no cls=1 size=60\r\n",
        b"ME k exp=-100 la=2 cas=#0 fetch=no cls=1 size=60\r\n"
    ));
    assert!(!replies_agree(b"HD t199\r\n", b"HD t201\r\n"));
    assert!(!replies_agree(b"HD t-1\r\n", b"HD t0\r\n"));
    assert!(!replies_agree(b"HD t5 f1\r\n", b"HD t5 f2\r\n"));
    // Only meta reply lines carry clock tokens: data and other lines are exact.
    assert!(!replies_agree(
        b"VALUE k 0 2\r\nt1\r\n",
        b"VALUE k 0 2\r\nt2\r\n"
    ));
    assert!(!replies_agree(b"HD t5\r\n", b"HD t5\r\nHD\r\n"));
}

#[test]
fn cas_markers_are_substituted() {
    let mut seen = HashMap::new();
    seen.insert(b"k1".to_vec(), b"42".to_vec());
    assert_eq!(
        substitute_cas(b"cas k1 0 0 1 <cas:k1>\r\ncas k2 0 0 1 <cas:k2>\r\n", &seen),
        b"cas k1 0 0 1 42\r\ncas k2 0 0 1 0\r\n"
    );
}

/// A connection kept open for the stateful checks.
fn open(addr: SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connect for a stateful check");
    let _ = stream.set_nodelay(true);
    stream
}

/// Sends `input` on `stream` and collects `replies` replies.
fn ask(stream: &mut std::net::TcpStream, input: &[u8], replies: usize) -> Vec<u8> {
    let mut reply = Vec::new();
    send_all(stream, input);
    collect_reply(stream, replies, &mut reply);
    reply
}

/// `STAT name value` lines of a reply, in order.
fn stat_lines(reply: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(reply)
        .split("\r\n")
        .filter_map(|line| line.strip_prefix("STAT "))
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// `stats conns` as one line per connection (`field value` pairs, in
/// order), addresses reduced to `tcp:127.0.0.1:SERVER` (the server's port)
/// or `tcp:127.0.0.1:CLIENT`, seconds checked to be numbers and masked; the
/// descriptors must ascend, and the connections are then sorted, since which
/// connection got the lower descriptor depends on when each server released
/// a closed one.
fn normalise_conns(reply: &[u8], port: u16) -> Result<Vec<String>, String> {
    let mut conns: Vec<(u64, Vec<String>)> = Vec::new();
    for (name, value) in stat_lines(reply) {
        let (fd, field) = name
            .split_once(':')
            .ok_or_else(|| format!("no <fd>: in {name}"))?;
        let fd: u64 = fd
            .parse()
            .map_err(|_| format!("{name}: not a descriptor"))?;
        let value = match field {
            "addr" | "listen_addr" => {
                if value == format!("tcp:127.0.0.1:{port}") {
                    "tcp:127.0.0.1:SERVER".to_owned()
                } else if value.starts_with("tcp:127.0.0.1:") {
                    "tcp:127.0.0.1:CLIENT".to_owned()
                } else {
                    return Err(format!("unexpected address {value}"));
                }
            }
            "secs_since_last_cmd" => {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{name} {value} is not a number"))?;
                "N".to_owned()
            }
            _ => value,
        };
        match conns.last_mut() {
            Some((last, fields)) if *last == fd => fields.push(format!("{field} {value}")),
            Some((last, _)) if *last > fd => {
                return Err(format!("descriptor {fd} listed after {last}"))
            }
            _ => conns.push((fd, vec![format!("{field} {value}")])),
        }
    }
    let mut lines: Vec<String> = conns.into_iter().map(|(_, f)| f.join(", ")).collect();
    lines.sort();
    Ok(lines)
}

/// `watch` lines with the parts that legitimately differ masked: the
/// timestamp, the global id and the client's descriptor.
fn normalise_watch(reply: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(reply)
        .lines()
        .map(|line| {
            line.trim_end_matches('\r')
                .split(' ')
                .filter(|token| !token.starts_with("ts=") && !token.starts_with("gid="))
                .map(|token| {
                    if token.starts_with("cfd=") {
                        "cfd=#"
                    } else {
                        token
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Two watch streams agree: the same lines, `ttl=` within one second.
fn watch_lines_agree(expected: &[String], actual: &[String]) -> bool {
    expected.len() == actual.len()
        && expected.iter().zip(actual).all(|(e, a)| {
            e == a || {
                let (et, at): (Vec<&str>, Vec<&str>) =
                    (e.split(' ').collect(), a.split(' ').collect());
                et.len() == at.len()
                    && et.iter().zip(&at).all(|(x, y)| {
                        x == y || {
                            let ttl = |t: &str| t.strip_prefix("ttl=")?.parse::<i64>().ok();
                            matches!((ttl(x), ttl(y)), (Some(x), Some(y)) if x.abs_diff(y) <= 1)
                        }
                    })
            }
        })
}

/// What one server answers to the stateful checks, in order.
struct Stateful {
    /// Byte-compared replies: (check name, reply).
    exact: Vec<(&'static str, Vec<u8>)>,
    slabs: Vec<(String, String)>,
    items: Vec<(String, String)>,
    settings: Vec<(String, String)>,
    conns: Result<Vec<String>, String>,
    /// (watch command, its stream).
    watches: Vec<(&'static str, Vec<String>)>,
}

/// Requests whose `stats detail dump` is compared: several prefixes (so
/// the dump's bucket order shows), text gets, gat, sets, cas, deletes; meta commands, incr and touch, which memcached does not count.
fn detail_traffic() -> Vec<u8> {
    let mut input = Vec::new();
    for key in [
        "foo:1",
        "bar:1",
        "a:b:c",
        "user:42",
        "session:x",
        "x:",
        ":lead",
    ] {
        input.extend_from_slice(&set(key, b"v"));
    }
    input.extend_from_slice(b"get foo:1 foo:2 bar:1 nokey user:42\r\ngets a:b:c zz:1\r\n");
    input.extend_from_slice(b"gat 0 session:x session:y\r\ndelete foo:1\r\ndelete foo:9\r\n");
    input.extend_from_slice(b"incr foo:2 1\r\ntouch bar:1 0\r\nmg user:42 v\r\nmd x:\r\n");
    input.extend_from_slice(&store("cas", "bar:1", "0", "0", b"w", "1"));
    input
}

/// Requests a `watch` sees: every storage command and status, gets,
/// lookups by delete, incr, touch and the meta commands, a key that needs
/// encoding and a flushed one.
fn watched_traffic() -> Vec<u8> {
    let mut input = Vec::new();
    input.extend_from_slice(&store("set", "wk:1", "5", "100", b"abc", ""));
    input.extend_from_slice(b"get wk:1 wk:2\r\ngets wk:1\r\ndelete wk:1\r\ndelete wk:1\r\n");
    input.extend_from_slice(b"mg wk:3 v\r\n");
    input.extend_from_slice(&ms("wk:3", b"hi", "T0"));
    input.extend_from_slice(b"mg wk:3 v\r\nincr wk:3 1\r\ntouch wk:3 0\r\n");
    input.extend_from_slice(&store("append", "wk:3", "0", "0", b"x", ""));
    input.extend_from_slice(&store("prepend", "wk:none", "0", "0", b"x", ""));
    input.extend_from_slice(&store("replace", "wk:none", "0", "0", b"x", ""));
    input.extend_from_slice(b"gat 0 wk:3\r\nmd wk:3\r\nme wk:3\r\n");
    input.extend_from_slice(&store("set", "wk:n", "0", "0", b"41", ""));
    input.extend_from_slice(b"incr wk:n 1\r\nma wk:n\r\n");
    input.extend_from_slice(&store("add", "wk:n", "0", "0", b"1", ""));
    input.extend_from_slice(&store("add", "wk:a", "0", "0", b"1", ""));
    input.extend_from_slice(&store("cas", "wk:a", "0", "0", b"2", "1"));
    input.extend_from_slice(&store("cas", "wk:gone", "0", "0", b"2", "1"));
    input.extend_from_slice(&store("set", "wk/%~.k", "0", "0", b"e", "noreply"));
    input.extend_from_slice(b"get wk/%~.k\r\nflush_all\r\nget wk:a\r\n");
    input.extend_from_slice(&store("set", "wk:f", "0", "0", b"after", ""));
    input.extend_from_slice(b"version\r\n");
    input
}

/// Replies `watched_traffic` gets (for `collect_reply`).
const WATCHED_REPLIES: usize = 29;

fn run_stateful(addr: SocketAddr) -> Stateful {
    let mut exact = Vec::new();
    let mut admin = open(addr);
    for (name, input) in [
        ("stats_slabs_empty", &b"stats slabs\r\n"[..]),
        ("stats_items_empty", b"stats items\r\n"),
        ("stats_detail_dump_never_on", b"stats detail dump\r\n"),
    ] {
        exact.push((name, ask(&mut admin, input, 1)));
    }
    exact.push((
        "stats_detail_on",
        ask(&mut admin, b"stats detail on\r\n", 1),
    ));
    let mut traffic = open(addr);
    exact.push((
        "detail_traffic",
        normalise(&ask(&mut traffic, &detail_traffic(), 17)),
    ));
    exact.push((
        "stats_detail_dump",
        ask(&mut admin, b"stats detail dump\r\n", 1),
    ));
    exact.push((
        "stats_detail_off_keeps_counts",
        ask(&mut admin, b"stats detail off\r\nstats detail dump\r\n", 2),
    ));
    let slabs = stat_lines(&ask(&mut admin, b"stats slabs\r\n", 1));
    let items = stat_lines(&ask(&mut admin, b"stats items\r\n", 1));
    ask(&mut admin, b"slabs automove 2\r\n", 1);
    let settings = stat_lines(&ask(&mut admin, b"stats settings\r\n", 1));
    exact.push((
        "stats_reset_forgets_prefixes",
        ask(&mut admin, b"stats reset\r\nstats detail dump\r\n", 2),
    ));
    drop(traffic);

    // stats conns: an idle connection, one inside a data block, a watcher
    // and the one asking.
    let mut idle = open(addr);
    ask(&mut idle, b"version\r\n", 1);
    let mut partial = open(addr);
    send_all(&mut partial, b"set part 0 0 10\r\nabc");
    let mut watcher = open(addr);
    exact.push(("watch_answers_ok", ask(&mut watcher, b"watch\r\n", 1)));
    thread::sleep(Duration::from_millis(1100));
    let mut asking = open(addr);
    let conns = normalise_conns(&ask(&mut asking, b"stats conns\r\n", 1), addr.port());
    drop((idle, partial, watcher, asking));
    thread::sleep(Duration::from_millis(100));

    // watch: three watchers, then one client's traffic.
    let mut watchers = Vec::new();
    for command in [
        "watch fetchers mutations",
        "watch mutations",
        "watch evictions",
    ] {
        let mut stream = open(addr);
        send_all(&mut stream, format!("{command}\r\n").as_bytes());
        watchers.push((command, stream));
    }
    thread::sleep(Duration::from_millis(200));
    let mut client = open(addr);
    let replies = ask(&mut client, &watched_traffic(), WATCHED_REPLIES);
    exact.push(("watched_traffic_replies", normalise(&replies)));
    thread::sleep(Duration::from_millis(300));
    let watches = watchers
        .into_iter()
        .map(|(command, mut stream)| {
            let mut lines = Vec::new();
            collect_reply_with_quiet(&mut stream, 0, Duration::from_millis(300), &mut lines);
            (command, normalise_watch(&lines))
        })
        .collect();
    Stateful {
        exact,
        slabs,
        items,
        settings,
        conns,
        watches,
    }
}

/// Stats values both must report alike on the same traffic.
const SAME_VALUES: &[&str] = &[
    "1:used_chunks",
    "1:get_hits",
    "1:delete_hits",
    "1:incr_hits",
    "1:decr_hits",
    "1:cas_hits",
    "1:cas_badval",
    "1:touch_hits",
    "1:free_chunks_end",
    "active_slabs",
    "items:1:number",
    "items:1:evicted",
    "items:1:evicted_nonzero",
    "items:1:outofmemory",
    "items:1:reclaimed",
    "items:1:evicted_unfetched",
    "items:1:expired_unfetched",
    "udpport",
    "detail_enabled",
    "cas_enabled",
    "item_size_max",
    "slab_automove",
    "flush_enabled",
];

#[test]
fn stats_groups_and_watch_like_memcached() {
    let reference = Memcached::start();
    let subject = Mcstore::start(&[]);
    let (expected, actual) = thread::scope(|scope| {
        let reference = scope.spawn(|| run_stateful(reference.addr()));
        let subject = scope.spawn(|| run_stateful(subject.addr()));
        (
            reference.join().expect("memcached run"),
            subject.join().expect("mcstore run"),
        )
    });
    println!("memcached's side of the stateful checks (mcstore must agree):");
    for (name, reply) in &expected.exact {
        println!("  {name}: {}", shorten(escape(reply)));
    }
    println!("  stats conns: {:?}", expected.conns);
    for (command, lines) in &expected.watches {
        println!("  {command}:\n    {}", lines.join("\n    "));
    }
    let mut mismatches = Vec::new();
    for ((name, e), (_, a)) in expected.exact.iter().zip(&actual.exact) {
        if e != a {
            println!(
                "MISMATCH {name}\n  memcached: {}\n  mcstore:   {}\n",
                shorten(escape(e)),
                shorten(escape(a))
            );
            mismatches.push(name.to_string());
        }
    }
    // slabs and items: the same names in the same order; SAME_VALUES equal.
    for (group, e, a) in [
        ("stats_slabs", &expected.slabs, &actual.slabs),
        ("stats_items", &expected.items, &actual.items),
    ] {
        let names =
            |stats: &[(String, String)]| stats.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        if names(e) != names(a) {
            println!(
                "MISMATCH {group} names\n  memcached: {:?}\n  mcstore:   {:?}\n",
                names(e),
                names(a)
            );
            mismatches.push(format!("{group}_names"));
        }
    }
    for stats in [
        (&expected.slabs, &actual.slabs),
        (&expected.items, &actual.items),
        (&expected.settings, &actual.settings),
    ] {
        for name in SAME_VALUES {
            let value =
                |s: &[(String, String)]| s.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            if let (Some(e), a) = (value(stats.0), value(stats.1)) {
                if Some(&e) != a.as_ref() {
                    println!("MISMATCH {name}: memcached {e}, mcstore {a:?}\n");
                    mismatches.push(name.to_string());
                }
            }
        }
    }
    // settings: the memcached names mcstore reports, in memcached's order.
    let memcached_names: Vec<&String> = expected.settings.iter().map(|(n, _)| n).collect();
    let shared: Vec<&String> = actual
        .settings
        .iter()
        .map(|(n, _)| n)
        .filter(|n| memcached_names.contains(n))
        .collect();
    let in_reference_order: Vec<&String> = memcached_names
        .iter()
        .copied()
        .filter(|n| shared.contains(n))
        .collect();
    if shared.len() < 14 || shared != in_reference_order {
        println!("MISMATCH stats_settings: shared names {shared:?}\n");
        mismatches.push("stats_settings_names".into());
    }
    if expected.conns != actual.conns {
        println!(
            "MISMATCH stats_conns\n  memcached: {:?}\n  mcstore:   {:?}\n",
            expected.conns, actual.conns
        );
        mismatches.push("stats_conns".into());
    }
    for ((command, e), (_, a)) in expected.watches.iter().zip(&actual.watches) {
        if !watch_lines_agree(e, a) {
            println!(
                "MISMATCH {command}\n  memcached:\n    {}\n  mcstore:\n    {}\n",
                e.join("\n    "),
                a.join("\n    ")
            );
            mismatches.push(command.to_string());
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} stateful checks mismatch: {}",
        mismatches.len(),
        mismatches.join(", ")
    );
}

#[test]
fn watch_normalisation_masks_only_clock_ids_and_descriptors() {
    let lines = normalise_watch(
        b"OK\r\nts=1796120222.637688 gid=2 type=item_get key=wk%3A1 status=found clsid=1 cfd=25 size=3\n",
    );
    assert_eq!(
        lines,
        [
            "OK",
            "type=item_get key=wk%3A1 status=found clsid=1 cfd=# size=3"
        ]
    );
    let a =
        vec!["type=item_store key=k status=stored cmd=set ttl=100 clsid=1 cfd=# size=3".to_owned()];
    let b =
        vec!["type=item_store key=k status=stored cmd=set ttl=99 clsid=1 cfd=# size=3".to_owned()];
    let c =
        vec!["type=item_store key=k status=stored cmd=add ttl=99 clsid=1 cfd=# size=3".to_owned()];
    assert!(watch_lines_agree(&a, &b));
    assert!(!watch_lines_agree(&a, &c));
}
