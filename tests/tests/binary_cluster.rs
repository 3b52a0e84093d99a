//! Binary-protocol clients in front of a cluster: a request for a key
//! another node holds is forwarded to it, its response relayed unchanged
//! (nothing for a quiet success), and when the key's owner is killed,
//! frozen or cut off, the next replica answers; every acknowledged write is
//! found on its replicas afterwards. (Every opcode's bytes through a
//! cluster node are compared with memcached's by
//! `binary_differential::binary_responses_through_a_cluster_agree_with_memcached`.)
//!
//! Three real nodes with RF=2, loopback only, bounded waits on
//! `stats cluster`. Nodes run with `--replica-reads` so that a text `get`
//! on a replica reads that replica's own copy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcstore_e2e::cluster::{value, wait_until, Cluster, CLUSTER_TIMEOUT, FAST_DETECTION};
use mcstore_protocol::binary::parse_binary_response;
use mcstore_protocol::binary::{
    parse_binary_request, Arithmetic, BinaryFrame, BinaryRequest, BinaryResponse, Command, Get,
    Opcode, SaslAuth, Stat, Status, Store, StoreMode,
};
use mcstore_protocol::Decoded;

/// The opaque of the `noop` that ends every exchange.
const END: u32 = u32::MAX;

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = FAST_DETECTION.to_vec();
    args.extend_from_slice(&["--peer-timeout", "500ms", "--replica-reads"]);
    args.extend_from_slice(extra);
    args
}

fn request(opaque: u32, command: Command) -> BinaryRequest {
    BinaryRequest { opaque, command }
}

/// A `set` (`setq` when `quiet`).
fn set(opaque: u32, key: &str, value: &str, flags: u32, quiet: bool) -> BinaryRequest {
    request(
        opaque,
        Command::Store(Store {
            mode: StoreMode::Set,
            key: Bytes::copy_from_slice(key.as_bytes()),
            flags,
            exptime: 0,
            value: Bytes::copy_from_slice(value.as_bytes()),
            cas: 0,
            quiet,
        }),
    )
}

fn getkq(opaque: u32, key: &str) -> BinaryRequest {
    request(
        opaque,
        Command::Get(Get {
            key: Bytes::copy_from_slice(key.as_bytes()),
            with_key: true,
            quiet: true,
            touch: None,
        }),
    )
}

/// Sends `requests` and a `noop` through `addr` on one connection and
/// returns every response before the noop's.
fn exchange(addr: SocketAddr, requests: &[BinaryRequest]) -> Vec<BinaryResponse> {
    let mut out = BytesMut::new();
    for request in requests.iter().chain([&request(END, Command::Noop)]) {
        request.encode(&mut out);
    }
    // The frames a client sends are frames a node accepts.
    let mut check = &out[..];
    while !check.is_empty() {
        match parse_binary_request(check, &mcstore_protocol::Limits::default()) {
            Decoded::Complete(BinaryFrame::Request(_), used) => check = &check[used..],
            other => panic!("the test built a bad frame: {other:?}"),
        }
    }
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(&out).expect("send");
    let mut input = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Ok(Decoded::Complete(response, used)) = parse_binary_response(&input) {
            input.drain(..used);
            if response.opaque == END && response.opcode == Opcode::Noop.code() {
                return responses;
            }
            responses.push(response);
        }
        let read = stream
            .read(&mut chunk)
            .unwrap_or_else(|err| panic!("reading from {addr}: {err}"));
        assert!(read > 0, "{addr} closed before the noop's response");
        input.extend_from_slice(&chunk[..read]);
    }
}

fn key(i: usize) -> String {
    format!("bin{i}")
}

/// Writes `values[i]` to `key(i)` with quiet sets through `addr`: a quiet
/// success answers nothing, forwarded or not.
fn write_all(addr: SocketAddr, values: &[String]) {
    let requests: Vec<BinaryRequest> = values
        .iter()
        .enumerate()
        .map(|(i, v)| set(i as u32, &key(i), v, i as u32, true))
        .collect();
    let responses = exchange(addr, &requests);
    assert!(
        responses.is_empty(),
        "quiet sets through {addr} answered {responses:?}"
    );
}

/// What `getkq` of every key through `addr` answers (plus one missing
/// key, which must answer nothing), against what it should: each hit in
/// order, with its flags.
type Hit = (u32, String, String, Option<u32>);

fn read_back(addr: SocketAddr, values: &[String]) -> (Vec<Hit>, Vec<Hit>) {
    let mut requests: Vec<BinaryRequest> = (0..values.len())
        .map(|i| getkq(i as u32, &key(i)))
        .collect();
    requests.insert(values.len() / 2, getkq(1_000_000, "bin-missing"));
    let got = exchange(addr, &requests)
        .iter()
        .map(|r| {
            (
                r.opaque,
                String::from_utf8_lossy(&r.key).into_owned(),
                String::from_utf8_lossy(&r.value).into_owned(),
                r.flags(),
            )
        })
        .collect();
    let expected = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32, key(i), v.clone(), Some(i as u32)))
        .collect();
    (got, expected)
}

/// Every key reads back through `addr`.
fn read_all(addr: SocketAddr, values: &[String]) {
    let (got, expected) = read_back(addr, values);
    assert_eq!(got, expected, "getkq through {addr}");
}

/// Every key reads back through `addr` once replication reached it (with
/// `--replica-reads` a node that holds a replica answers from its copy,
/// which a write through another node reaches asynchronously).
fn read_all_eventually(addr: SocketAddr, values: &[String]) {
    wait_until(
        "every acknowledged write to read back",
        CLUSTER_TIMEOUT,
        || {
            let (got, expected) = read_back(addr, values);
            got == expected
        },
    );
}

/// Every replica of every key holds its value (read as text on the
/// replica itself).
fn on_every_replica(cluster: &Cluster, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        for replica in cluster.replicas_of(key(i).as_bytes(), 2) {
            assert_eq!(
                value(cluster.addrs[replica], &key(i)).as_deref(),
                Some(v.as_str()),
                "{} on node {replica}",
                key(i)
            );
        }
    }
}

fn values(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

#[test]
fn binary_requests_go_to_each_keys_replicas_and_survive_kill_and_freeze() {
    let mut cluster = Cluster::start(3, &args(&[]));
    let first = values("first", 90);
    write_all(cluster.addrs[0], &first);
    assert!(cluster.sum_cluster_stat("forwarded") > 0);
    cluster.wait_replicated();
    assert_eq!(cluster.total_items(), 2 * 90, "RF copies of every key");
    on_every_replica(&cluster, &first);
    for addr in &cluster.addrs {
        read_all(*addr, &first);
    }

    // A counter with an initial value, forwarded to its owner: the same
    // item whichever node is asked.
    let incr = |addr: SocketAddr, opaque: u32| {
        let responses = exchange(
            addr,
            &[request(
                opaque,
                Command::Arithmetic(Arithmetic {
                    key: Bytes::from_static(b"bin-counter"),
                    increment: true,
                    delta: 5,
                    initial: 100,
                    exptime: 0,
                    cas: 0,
                    quiet: false,
                }),
            )],
        );
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_eq!(responses[0].status, Status::NO_ERROR);
        assert_eq!(responses[0].opaque, opaque);
        responses[0].counter_value()
    };
    assert_eq!(incr(cluster.addrs[0], 1), Some(100));
    assert_eq!(incr(cluster.addrs[1], 2), Some(105));
    assert_eq!(incr(cluster.addrs[2], 3), Some(110));

    // kill -9: its keys are answered and written by their next replica.
    cluster.nodes[1].kill9();
    read_all(cluster.addrs[0], &first);
    let second = values("second", 90);
    write_all(cluster.addrs[2], &second);
    read_all_eventually(cluster.addrs[0], &second);
    cluster.nodes[1].restart();
    cluster.wait_converged();
    cluster.wait_replicated();
    on_every_replica(&cluster, &second);

    // Frozen (SIGSTOP) until seen dead, then thawed: nothing acknowledged
    // meanwhile is lost, and the thawed node gets what it missed.
    cluster.nodes[2].signal(libc::SIGSTOP);
    cluster.wait_state(2, "dead");
    let third = values("third", 90);
    write_all(cluster.addrs[0], &third);
    read_all_eventually(cluster.addrs[1], &third);
    cluster.nodes[2].signal(libc::SIGCONT);
    cluster.wait_converged();
    cluster.wait_replicated();
    on_every_replica(&cluster, &third);
    for addr in &cluster.addrs {
        read_all(*addr, &third);
    }
    assert_eq!(cluster.total_items(), 2 * 91);
}

#[test]
fn binary_writes_across_a_cut_link_are_either_refused_or_kept() {
    let (cluster, proxies) = Cluster::start_behind_proxies(3, &args(&[]));
    let before = values("before", 60);
    write_all(cluster.addrs[0], &before);
    cluster.wait_replicated();
    // Cut the link between nodes 0 and 1 both ways; node 2 still sees both.
    let (zero, one) = (cluster.addrs[0].ip(), cluster.addrs[1].ip());
    proxies[1].cut(zero);
    proxies[0].cut(one);
    // Through node 0, one non-quiet set per key: each is either stored (on
    // a replica reached some way) or refused with an error, never lost.
    let during = values("during", 60);
    let requests: Vec<BinaryRequest> = during
        .iter()
        .enumerate()
        .map(|(i, v)| set(i as u32, &key(i), v, i as u32, false))
        .collect();
    let responses = exchange(cluster.addrs[0], &requests);
    assert_eq!(responses.len(), during.len(), "one response per set");
    // A stored set must be on every replica after healing; a refused one
    // may have reached a replica before the error (then the replicas
    // agree on the new value) or not (the old one).
    let mut stored = 0;
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.opaque, i as u32, "responses in request order");
        if response.status == Status::NO_ERROR {
            stored += 1;
        } else {
            assert_eq!(
                response.status,
                Status(0x84),
                "a set that is not stored is refused as an internal error: {response:?}"
            );
        }
    }
    println!(
        "{stored} of {} sets across the cut link were stored",
        during.len()
    );
    assert!(stored > 0, "no set got through the cut link");
    proxies[1].heal(zero);
    proxies[0].heal(one);
    cluster.wait_converged();
    cluster.wait_replicated();
    let mut expected = Vec::new();
    for (i, response) in responses.iter().enumerate() {
        let replicas = cluster.replicas_of(key(i).as_bytes(), 2);
        let found: Vec<Option<String>> = replicas
            .iter()
            .map(|&r| value(cluster.addrs[r], &key(i)))
            .collect();
        let acknowledged = response.status == Status::NO_ERROR;
        let allowed = |v: &Option<String>| {
            v.as_deref() == Some(during[i].as_str())
                || (!acknowledged && v.as_deref() == Some(before[i].as_str()))
        };
        assert!(
            found.iter().all(allowed) && found.windows(2).all(|w| w[0] == w[1]),
            "{} (acknowledged: {acknowledged}) on nodes {replicas:?}: {found:?}",
            key(i)
        );
        expected.push(found[0].clone().expect("checked above"));
    }
    read_all(cluster.addrs[1], &expected);
}

/// `stat <group>` through `addr` after authenticating with `auth`.
fn binary_stats(
    addr: SocketAddr,
    group: &str,
    auth: &BinaryRequest,
) -> std::collections::BTreeMap<String, String> {
    let stat = request(
        8,
        Command::Stat(Stat {
            key: Bytes::copy_from_slice(group.as_bytes()),
        }),
    );
    exchange(addr, &[auth.clone(), stat])
        .into_iter()
        .filter(|r| r.opaque == 8 && !r.key.is_empty())
        .map(|r| {
            (
                String::from_utf8_lossy(&r.key).into_owned(),
                String::from_utf8_lossy(&r.value).into_owned(),
            )
        })
        .collect()
}

#[test]
fn with_sasl_the_node_a_client_authenticated_with_forwards_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    std::fs::write(&passwords, "alice:wonderland\n").unwrap();
    let passwords = passwords.to_str().unwrap().to_string();
    let mut node_args = args(&[]);
    node_args.extend(["--sasl-password-file", passwords.as_str()]);
    let order = [0, 1, 2];
    let all = |_: usize, addrs: &[SocketAddr]| addrs.iter().map(|a| a.to_string()).collect();
    let cluster = Cluster::start_with_seeds(3, &node_args, &order, all).expect("start");
    let auth = |password: &str| {
        request(
            7,
            Command::SaslAuth(SaslAuth {
                mechanism: Bytes::from_static(b"PLAIN"),
                data: Bytes::from(format!("\0alice\0{password}")),
                step: false,
            }),
        )
    };
    let alice = auth("wonderland");
    // `stats cluster` in text needs ascii authentication: ask in binary.
    let stat_sum = |group: &str, name: &str| -> u64 {
        cluster
            .addrs
            .iter()
            .map(|&addr| {
                binary_stats(addr, group, &alice)
                    .get(name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    wait_until("the cluster to converge", CLUSTER_TIMEOUT, || {
        cluster.addrs.iter().all(|&addr| {
            let seen = binary_stats(addr, "cluster", &alice);
            cluster
                .advertised
                .iter()
                .all(|node| seen.get(&format!("node:{node}")).map(String::as_str) == Some("alive"))
        })
    });
    let secret = |i: usize| set(i as u32, &key(i), "secret", 0, false);
    // Unauthenticated, or with a wrong password: refused and closed,
    // nothing stored.
    let refused = |requests: &[BinaryRequest]| -> Vec<BinaryResponse> {
        let mut stream = TcpStream::connect(cluster.addrs[0]).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut out = BytesMut::new();
        for request in requests {
            request.encode(&mut out);
        }
        stream.write_all(&out).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        let mut responses = Vec::new();
        let mut rest = &reply[..];
        while let Ok(Decoded::Complete(response, used)) = parse_binary_response(rest) {
            responses.push(response);
            rest = &rest[used..];
        }
        responses
    };
    let statuses = |responses: Vec<BinaryResponse>| -> Vec<Status> {
        responses.into_iter().map(|r| r.status).collect()
    };
    assert_eq!(statuses(refused(&[secret(0)])), [Status::AUTH_ERROR]);
    assert_eq!(
        statuses(refused(&[auth("wrong"), secret(1)])),
        [Status::AUTH_ERROR, Status::AUTH_ERROR]
    );
    assert_eq!(stat_sum("", "curr_items"), 0);
    // Authenticated on the node it is connected to: every key is stored
    // on its replicas, most of them on other nodes.
    let mut requests = vec![alice.clone()];
    requests.extend((0..30).map(secret));
    let responses = exchange(cluster.addrs[0], &requests);
    assert_eq!(responses.len(), 31, "{responses:?}");
    assert!(
        responses.iter().all(|r| r.status == Status::NO_ERROR),
        "{responses:?}"
    );
    assert!(stat_sum("cluster", "forwarded") > 0);
    wait_until("RF copies of every key", CLUSTER_TIMEOUT, || {
        stat_sum("", "curr_items") == 2 * 30
    });
}

#[test]
fn with_replica_ack_one_a_binary_write_is_answered_once_another_replica_has_it() {
    let cluster = Cluster::start(
        3,
        &args(&["--replica-ack", "one", "--replica-ack-timeout", "1s"]),
    );
    // Each quiet set answered (with nothing) is already on both replicas:
    // read each replica's own copy at once, no waiting.
    let acked = values("acked", 30);
    write_all(cluster.addrs[0], &acked);
    on_every_replica(&cluster, &acked);

    // With every other node frozen, a write of a key this node owns cannot
    // reach another replica: memcached's internal-error status with the
    // reason, within the timeout, for a quiet set as for a plain one (a
    // quiet command hides only success).
    let owned: Vec<String> = (0..1000)
        .map(|i| format!("frozen-ack{i}"))
        .filter(|key| cluster.replicas_of(key.as_bytes(), 2)[0] == 0)
        .take(2)
        .collect();
    cluster.nodes[1].signal(libc::SIGSTOP);
    cluster.nodes[2].signal(libc::SIGSTOP);
    let started = std::time::Instant::now();
    let responses = exchange(
        cluster.addrs[0],
        &[
            set(7, &owned[0], "x", 0, false),
            set(8, &owned[1], "x", 0, true),
        ],
    );
    let took = started.elapsed();
    cluster.nodes[1].signal(libc::SIGCONT);
    cluster.nodes[2].signal(libc::SIGCONT);
    assert_eq!(responses.len(), 2, "{responses:?}");
    for (response, opaque) in responses.iter().zip([7, 8]) {
        assert_eq!(response.opaque, opaque);
        assert_eq!(response.status, Status(0x0084), "{response:?}");
        let reason = String::from_utf8_lossy(&response.value);
        assert!(reason.contains("no other replica acknowledged"), "{reason}");
    }
    assert!(took < Duration::from_secs(8), "{took:?}");
}
