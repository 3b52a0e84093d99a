//! Authentication and counters, mcstore against memcached 1.6.18:
//!
//! - SASL `PLAIN` on binary connections: mcstore with
//!   `--sasl-password-file` against `memcached -S` with a Cyrus sasldb
//!   holding the same user (made with `saslpasswd2`, package `sasl2-bin`),
//!   right and wrong passwords, commands before authentication, steps,
//!   other mechanisms; the responses must agree exactly (the version text
//!   aside), as must `auth_cmds` and `auth_errors`.
//! - memcached's ascii authentication on text connections: mcstore with
//!   `--sasl-password-file` against `memcached -Y` with the same file.
//! - `stats` after a pipeline of binary commands: every command counter
//!   must agree with memcached's.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcstore_protocol::binary::{
    parse_binary_response, Arithmetic, BinaryRequest, BinaryResponse, Command, Concat, Delete,
    Flush, Get, Opcode, SaslAuth, Stat, Store, StoreMode, Touch,
};
use mcstore_protocol::Decoded;

use mcstore_e2e::{escape, exchange, Mcstore, Memcached, GRACE_PERIOD, QUIET_PERIOD};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret pass";

/// Sends `input` on `stream` and reads responses until `expected` have
/// arrived (then a grace period), the connection is quiet, or it closes.
fn exchange_binary(
    stream: &mut TcpStream,
    input: &[u8],
    expected: usize,
) -> (Vec<BinaryResponse>, bool) {
    let _ = stream.write_all(input);
    let mut buffer = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Ok(Decoded::Complete(response, used)) = parse_binary_response(&buffer) {
            responses.push(response);
            buffer.drain(..used);
        }
        if Instant::now() > deadline {
            return (responses, false);
        }
        let wait = if responses.len() >= expected {
            GRACE_PERIOD
        } else {
            QUIET_PERIOD
        };
        let _ = stream.set_read_timeout(Some(wait));
        match stream.read(&mut chunk) {
            Ok(0) => return (responses, true),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => {
                return (responses, true)
            }
            Err(_) => return (responses, false),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

fn encode(requests: &[BinaryRequest]) -> Vec<u8> {
    let mut out = Vec::new();
    for request in requests {
        request.encode(&mut out);
    }
    out
}

/// A response as compared: every field, the version text and non-zero cas
/// values normalised.
fn shown(response: &BinaryResponse) -> String {
    let value = if response.opcode == Opcode::Version.code() && response.status.0 == 0 {
        "<version>".to_string()
    } else {
        escape(&response.value)
    };
    format!(
        "op={:02x} status={:04x} opaque={} cas={} extras={} key={} value={value}",
        response.opcode,
        response.status.0,
        response.opaque,
        if response.cas == 0 { "0" } else { "set" },
        escape(&response.extras),
        escape(&response.key),
    )
}

fn r(opaque: u32, command: Command) -> BinaryRequest {
    BinaryRequest { opaque, command }
}

fn plain(opaque: u32, data: &str) -> BinaryRequest {
    mechanism(opaque, "PLAIN", data, false)
}

fn mechanism(opaque: u32, mechanism: &str, data: &str, step: bool) -> BinaryRequest {
    r(
        opaque,
        Command::SaslAuth(SaslAuth {
            mechanism: Bytes::copy_from_slice(mechanism.as_bytes()),
            data: Bytes::copy_from_slice(data.as_bytes()),
            step,
        }),
    )
}

fn credentials(user: &str, password: &str) -> String {
    format!("\0{user}\0{password}")
}

fn get(opaque: u32, key: &str, with_key: bool, quiet: bool) -> BinaryRequest {
    r(
        opaque,
        Command::Get(Get {
            key: Bytes::copy_from_slice(key.as_bytes()),
            with_key,
            quiet,
            touch: None,
        }),
    )
}

fn store(
    opaque: u32,
    mode: StoreMode,
    key: &str,
    value: &str,
    cas: u64,
    quiet: bool,
) -> BinaryRequest {
    r(
        opaque,
        Command::Store(Store {
            mode,
            key: Bytes::copy_from_slice(key.as_bytes()),
            flags: 3,
            exptime: 0,
            value: Bytes::copy_from_slice(value.as_bytes()),
            cas,
            quiet,
        }),
    )
}

fn noop(opaque: u32) -> BinaryRequest {
    r(opaque, Command::Noop)
}

/// One SASL conversation: what to send, and how many responses to wait for.
struct Conversation {
    name: &'static str,
    steps: Vec<(Vec<u8>, usize)>,
}

fn sasl_conversations() -> Vec<Conversation> {
    let right = || plain(2, &credentials(USER, PASSWORD));
    let unknown_opcode = {
        let mut frame = vec![0x80, 0x50];
        frame.extend_from_slice(&[0; 22]);
        frame
    };
    let body_shorter_than_key = {
        let mut frame = encode(&[get(9, "abcd", false, false)]);
        frame[8..12].copy_from_slice(&2u32.to_be_bytes());
        frame
    };
    vec![
        Conversation {
            name: "list mechanisms, version and noop before authenticating",
            steps: vec![(
                encode(&[
                    r(1, Command::SaslListMechs),
                    r(2, Command::Version),
                    noop(3),
                ]),
                3,
            )],
        },
        Conversation {
            name: "a get before authenticating closes",
            steps: vec![(encode(&[get(1, "k", false, false), noop(2)]), 1)],
        },
        Conversation {
            name: "quiet set before authenticating closes",
            steps: vec![(encode(&[store(1, StoreMode::Set, "k", "v", 0, true)]), 1)],
        },
        Conversation {
            name: "unknown opcode before authenticating",
            steps: vec![(unknown_opcode, 1)],
        },
        Conversation {
            name: "body shorter than its key before authenticating",
            steps: vec![(body_shorter_than_key, 1)],
        },
        Conversation {
            name: "wrong password, then a get",
            steps: vec![
                (encode(&[plain(1, &credentials(USER, "wrong"))]), 1),
                (encode(&[get(2, "k", false, false)]), 1),
            ],
        },
        Conversation {
            name: "unknown user, empty password, no separators",
            steps: vec![(
                encode(&[
                    plain(1, &credentials("mallory", PASSWORD)),
                    plain(2, &credentials(USER, "")),
                    plain(3, "alice"),
                    noop(4),
                ]),
                4,
            )],
        },
        Conversation {
            name: "right password, then commands",
            steps: vec![(
                encode(&[
                    r(1, Command::SaslListMechs),
                    right(),
                    store(3, StoreMode::Set, "sasl_k", "v", 0, false),
                    get(4, "sasl_k", true, false),
                    noop(5),
                ]),
                5,
            )],
        },
        Conversation {
            name: "authorization identity equal to the user",
            steps: vec![(
                encode(&[
                    plain(1, &format!("{USER}\0{USER}\0{PASSWORD}")),
                    get(2, "sasl_none", false, false),
                ]),
                2,
            )],
        },
        Conversation {
            name: "a step after authenticating undoes it",
            steps: vec![
                (encode(&[right(), noop(3)]), 2),
                (encode(&[mechanism(4, "PLAIN", "more", true), noop(5)]), 2),
            ],
        },
        Conversation {
            name: "a failed second auth undoes the first",
            steps: vec![(
                encode(&[right(), plain(3, &credentials(USER, "wrong")), noop(4)]),
                3,
            )],
        },
        Conversation {
            name: "other mechanisms and a long mechanism name",
            steps: vec![(
                encode(&[
                    mechanism(1, "CRAM-MD5", "", false),
                    mechanism(2, &"X".repeat(33), "data", false),
                    mechanism(3, "PLAIN", "x", true),
                    r(4, Command::Version),
                ]),
                4,
            )],
        },
    ]
}

fn run_conversation(addr: SocketAddr, conversation: &Conversation) -> Vec<String> {
    let mut stream = connect(addr);
    let mut lines = Vec::new();
    for (input, expected) in &conversation.steps {
        let (responses, closed) = exchange_binary(&mut stream, input, *expected);
        lines.extend(responses.iter().map(shown));
        if closed {
            lines.push("<CLOSED>".into());
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    lines
}

/// Text `stats` of a server as a map.
fn stats(addr: SocketAddr) -> HashMap<String, String> {
    let reply = exchange(addr, b"stats\r\n", 1).expect("stats");
    String::from_utf8_lossy(&reply)
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("STAT"), Some(name), Some(value)) => Some((name.into(), value.into())),
                _ => None,
            }
        })
        .collect()
}

/// The statistics of an authenticated connection to a `-S` memcached.
fn stats_binary(addr: SocketAddr, authenticate: bool) -> HashMap<String, String> {
    let mut stream = connect(addr);
    let mut requests = Vec::new();
    if authenticate {
        requests.push(plain(1, &credentials(USER, PASSWORD)));
    }
    requests.push(r(2, Command::Stat(Stat { key: Bytes::new() })));
    let mut input = encode(&requests);
    input.extend(encode(&[noop(3)]));
    let (responses, _) = exchange_binary(&mut stream, &input, usize::MAX);
    responses
        .iter()
        .filter(|response| response.opcode == Opcode::Stat.code() && !response.key.is_empty())
        .map(|response| {
            (
                String::from_utf8_lossy(&response.key).into_owned(),
                String::from_utf8_lossy(&response.value).into_owned(),
            )
        })
        .collect()
}

/// A directory memcached (running as `nobody`) can read.
fn readable_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("mcstore-auth-")
        .tempdir()
        .expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the directory");
    dir
}

/// A Cyrus SASL configuration for memcached with one PLAIN user.
fn sasl_config(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let saslpasswd2 = Path::new("/usr/sbin/saslpasswd2");
    assert!(
        saslpasswd2.is_file(),
        "{} is missing: apt-get install sasl2-bin",
        saslpasswd2.display()
    );
    let db = dir.join("sasldb2");
    std::fs::write(
        dir.join("memcached.conf"),
        format!("mech_list: plain\nsasldb_path: {}\n", db.display()),
    )
    .expect("write memcached.conf");
    let mut child = Process::new(saslpasswd2)
        .args(["-a", "memcached", "-c", "-p", "-f"])
        .arg(&db)
        .arg(USER)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run saslpasswd2");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(PASSWORD.as_bytes())
        .expect("password to saslpasswd2");
    assert!(
        child.wait().expect("saslpasswd2").success(),
        "saslpasswd2 failed"
    );
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod sasldb");
}

#[test]
fn sasl_plain_answers_like_memcached() {
    let dir = readable_dir();
    sasl_config(dir.path());
    let passwords = dir.path().join("passwords");
    std::fs::write(&passwords, format!("{USER}:{PASSWORD}\n")).expect("password file");
    let conf = dir.path().display().to_string();
    let memcached = Memcached::start_with(&["-S"], &[("SASL_CONF_PATH", conf.as_str())]);
    let passwords_arg = passwords.display().to_string();
    let mcstore = Mcstore::start(&["--sasl-password-file", &passwords_arg]);

    let mut mismatches = Vec::new();
    for conversation in sasl_conversations() {
        let expected = run_conversation(memcached.addr(), &conversation);
        let actual = run_conversation(mcstore.addr(), &conversation);
        println!("{}:\n  {}", conversation.name, expected.join("\n  "));
        if expected != actual {
            println!("MISMATCH; mcstore:\n  {}", actual.join("\n  "));
            mismatches.push(conversation.name);
        }
    }
    assert!(
        mismatches.is_empty(),
        "mismatching conversations: {mismatches:?}"
    );

    let (expected, actual) = (
        stats_binary(memcached.addr(), true),
        stats_binary(mcstore.addr(), true),
    );
    for name in ["auth_cmds", "auth_errors"] {
        assert_eq!(expected.get(name), actual.get(name), "{name}");
    }
    assert!(expected.get("auth_cmds").is_some_and(|n| n != "0"));
}

#[test]
fn ascii_authentication_answers_like_memcached() {
    let dir = readable_dir();
    let passwords = dir.path().join("passwords");
    std::fs::write(&passwords, format!("{USER}:{PASSWORD}\nbob:other\n")).expect("password file");
    let passwords = passwords.display().to_string();
    let memcached = Memcached::start_with(&["-Y", &passwords], &[]);
    let mcstore = Mcstore::start(&["--sasl-password-file", &passwords]);
    let auth = |user: &str, password: &str| {
        let data = format!("{user} {password}");
        format!("set auth 0 0 {}\r\n{data}\r\n", data.len())
    };
    let cases: Vec<(String, usize)> = vec![
        ("get a\r\n".into(), 1),
        ("version\r\n".into(), 1),
        (auth(USER, "wrong") + "get a\r\n", 2),
        (auth("nobody", PASSWORD), 1),
        (auth(USER, PASSWORD) + "set a 0 0 1\r\nv\r\nget a\r\n", 3),
        (auth("bob", "other") + "version\r\n", 2),
        ("set auth 0 0 5\r\nalice\r\n".into(), 1),
        ("set auth 0 0 3\r\nabcde".into(), 1),
        ("set auth 0 0\r\nget a\r\n".into(), 2),
        ("add auth 0 0 3\r\nabc\r\n".into(), 2),
        ("x".repeat(3000), 1),
        ("mg a v\r\n".into(), 1),
    ];
    let mut mismatches = Vec::new();
    for (input, replies) in &cases {
        let expected = exchange(memcached.addr(), input.as_bytes(), *replies).expect("memcached");
        let actual = exchange(mcstore.addr(), input.as_bytes(), *replies).expect("mcstore");
        // memcached's version differs from mcstore's.
        let normal = |reply: &[u8]| {
            let text = escape(reply);
            match text.find("VERSION ") {
                Some(at) => text[..at].to_string() + "VERSION <v>",
                None => text,
            }
        };
        let (expected, actual) = (normal(&expected), normal(&actual));
        println!("{}\n  -> {expected}", escape(input.as_bytes()));
        if expected != actual {
            println!("MISMATCH; mcstore: {actual}");
            mismatches.push(escape(input.as_bytes()));
        }
    }
    assert!(mismatches.is_empty(), "mismatching inputs: {mismatches:?}");
    let stats_after = |addr| {
        let input = auth(USER, PASSWORD) + "stats\r\n";
        let reply = exchange(addr, input.as_bytes(), 2).expect("stats");
        let text = String::from_utf8_lossy(&reply).into_owned();
        let find = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("STAT {name} ")))
                .map(str::to_string)
        };
        (find("auth_cmds"), find("auth_errors"))
    };
    assert_eq!(stats_after(memcached.addr()), stats_after(mcstore.addr()));
}

/// The commands of the counting test, in two rounds (the second uses the
/// cas the first got for `a`).
fn counted_round_one() -> Vec<BinaryRequest> {
    use StoreMode::*;
    let key = |k: &str| Bytes::copy_from_slice(k.as_bytes());
    let arith = |opaque, k: &str, increment, exptime, quiet| {
        r(
            opaque,
            Command::Arithmetic(Arithmetic {
                key: key(k),
                increment,
                delta: 1,
                initial: 5,
                exptime,
                cas: 0,
                quiet,
            }),
        )
    };
    let gat = |opaque, k: &str, with_key, quiet| {
        r(
            opaque,
            Command::Get(Get {
                key: key(k),
                with_key,
                quiet,
                touch: Some(100),
            }),
        )
    };
    vec![
        store(1, Set, "a", "1", 0, false),
        store(2, Set, "b", "2", 0, true),
        get(3, "a", false, false),
        get(4, "missing", false, true),
        get(5, "missing", true, false),
        store(6, Add, "a", "x", 0, false),
        store(7, Replace, "missing", "x", 0, true),
        r(
            8,
            Command::Concat(Concat {
                prepend: false,
                key: key("a"),
                value: key("0"),
                cas: 0,
                quiet: false,
            }),
        ),
        r(
            9,
            Command::Concat(Concat {
                prepend: true,
                key: key("missing"),
                value: key("0"),
                cas: 0,
                quiet: true,
            }),
        ),
        store(10, Set, "missing", "x", 12345, false),
        store(11, Set, "b", "x", 12345, false),
        r(
            12,
            Command::Delete(Delete {
                key: key("b"),
                cas: 0,
                quiet: false,
            }),
        ),
        r(
            13,
            Command::Delete(Delete {
                key: key("b"),
                cas: 0,
                quiet: true,
            }),
        ),
        arith(14, "n", true, 0, false),
        arith(15, "n", true, 0, true),
        arith(16, "none", true, 0xffff_ffff, false),
        arith(17, "n", false, 0, false),
        arith(18, "none", false, 0xffff_ffff, true),
        store(19, Set, "w", "99", 0, false),
        arith(20, "w", true, 0, false),
        r(
            21,
            Command::Touch(Touch {
                key: key("a"),
                exptime: 100,
            }),
        ),
        r(
            22,
            Command::Touch(Touch {
                key: key("missing"),
                exptime: 100,
            }),
        ),
        gat(23, "a", true, false),
        gat(24, "missing", false, true),
        gat(25, "missing", true, false),
        store(26, Set, "big", &"x".repeat(2 << 20), 0, false),
        noop(27),
    ]
}

#[test]
fn binary_commands_are_counted_like_memcached() {
    let memcached = Memcached::start();
    let mcstore = Mcstore::start(&[]);
    let mut outputs = Vec::new();
    for addr in [memcached.addr(), mcstore.addr()] {
        let mut stream = connect(addr);
        let (responses, _) = exchange_binary(&mut stream, &encode(&counted_round_one()), 23);
        let cas_a = responses
            .iter()
            .find(|response| response.opaque == 23)
            .map_or(0, |response| response.cas);
        let round_two = [
            store(30, StoreMode::Set, "a", "swapped", cas_a, false),
            store(31, StoreMode::Set, "a", "stale", cas_a, false),
            r(
                32,
                Command::Flush(Flush {
                    delay: None,
                    quiet: true,
                }),
            ),
            get(33, "a", false, false),
            noop(34),
        ];
        let (second, _) = exchange_binary(&mut stream, &encode(&round_two), 4);
        let shown: Vec<String> = responses.iter().chain(&second).map(shown).collect();
        outputs.push(shown);
    }
    assert_eq!(outputs[0], outputs[1], "the responses differ");
    let (expected, actual) = (stats(memcached.addr()), stats(mcstore.addr()));
    let names = [
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
        "store_too_large",
        "auth_cmds",
        "auth_errors",
        "total_items",
    ];
    let differ: Vec<String> = names
        .iter()
        .filter(|name| expected.get(**name) != actual.get(**name))
        .map(|name| {
            format!(
                "{name}: memcached {:?}, mcstore {:?}",
                expected.get(*name),
                actual.get(*name)
            )
        })
        .collect();
    assert!(differ.is_empty(), "counters differ:\n{}", differ.join("\n"));
}
