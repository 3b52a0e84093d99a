//! A cluster from a seed list, end to end: real nodes on loopback ports the
//! OS picked, waiting on `stats cluster` conditions, never on fixed sleeps.
//!
//! - membership forms from one seed, and from seed lists naming the node
//!   itself and dead nodes, in any start order;
//! - a node killed with -9 is seen dead within 5 s (default timings), one
//!   stopped with SIGTERM is seen left;
//! - any node serves any key: writes and reads through different nodes,
//!   `gets` through one and `cas` through another, multi-key gets across
//!   owners answered in the client's key order, pipelines with `noreply`,
//!   meta quiet mode and `mn`, `flush_all` through one node empties all;
//! - a peer that fails the handshake or sends garbage is refused and
//!   counted; a node with a wrong secret is not admitted; a node listening
//!   beyond loopback with --seeds and no secret refuses to start.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mcstore_e2e::cluster::{
    ask, members, stats, wait_until, Cluster, CLUSTER_TIMEOUT, FAST_DETECTION,
};
use mcstore_e2e::{McstoreProcess, StartOutcome};

#[test]
fn membership_forms_from_one_seed_and_from_seed_lists_naming_dead_nodes() {
    // Four nodes started in a shuffled order: node 0 knows only node 2
    // (not started yet), node 1 only itself and a dead address, the others
    // every address.
    let dead = format!("127.0.0.1:{}", mcstore_e2e::free_port());
    let order = [2, 0, 3, 1];
    let cluster =
        Cluster::start_with_seeds(4, FAST_DETECTION, &order, |index, addrs| match index {
            0 => vec![addrs[2].to_string()],
            1 => vec![addrs[1].to_string(), dead.clone(), addrs[3].to_string()],
            _ => addrs.iter().map(|a| a.to_string()).collect(),
        })
        .expect("start the nodes");
    cluster.wait_converged();
    for addr in &cluster.addrs {
        let seen = stats(*addr, "cluster").unwrap();
        assert_eq!(
            seen.get("ring_nodes").map(String::as_str),
            Some("4"),
            "{seen:?}"
        );
        assert_eq!(
            seen.get("replication_factor").map(String::as_str),
            Some("2")
        );
    }
}

#[test]
fn a_killed_node_is_seen_dead_within_5_seconds_and_a_stopped_one_left() {
    // Default timings: the bound is the product's, not the test's.
    let mut cluster = Cluster::start(3, &[]);
    cluster.nodes[2].kill9();
    let started = Instant::now();
    let took = cluster.wait_state(2, "dead");
    assert!(
        took < Duration::from_secs(5),
        "a killed node was seen dead after {took:?}"
    );
    eprintln!("killed node seen dead after {:?}", started.elapsed());
    // A dead node stays on the ring (its keys go to the next replica).
    let seen = stats(cluster.addrs[0], "cluster").unwrap();
    assert_eq!(seen.get("ring_nodes").map(String::as_str), Some("3"));
    // SIGTERM: the node announces it leaves, and leaves the ring.
    assert!(cluster.nodes[1].terminate().expect("exits").success());
    cluster.wait_state(1, "left");
    let seen = stats(cluster.addrs[0], "cluster").unwrap();
    assert_eq!(seen.get("ring_nodes").map(String::as_str), Some("2"));
}

#[test]
fn any_node_serves_any_key_in_the_clients_order() {
    let cluster = Cluster::start(3, FAST_DETECTION);
    let [a, b, c] = [cluster.addrs[0], cluster.addrs[1], cluster.addrs[2]];
    // Writes through one node, reads through the others.
    for i in 0..30 {
        assert_eq!(
            ask(a, &format!("set key{i} {i} 0 3\r\nv{i:02}\r\n"), 1),
            "STORED\r\n"
        );
    }
    for (i, node) in (0..30).zip([b, c].iter().cycle()) {
        assert_eq!(
            ask(*node, &format!("get key{i}\r\n"), 1),
            format!("VALUE key{i} {i} 3\r\nv{i:02}\r\nEND\r\n")
        );
    }
    // A multi-get across owners, with a miss and a repeated key, answers
    // in the client's key order.
    let mut expected = String::new();
    let mut line = String::from("get");
    for i in [7, 3, 99, 12, 3, 25, 0] {
        line.push_str(&format!(" key{i}"));
        if i < 30 {
            expected.push_str(&format!("VALUE key{i} {i} 3\r\nv{i:02}\r\n"));
        }
    }
    expected.push_str("END\r\n");
    line.push_str("\r\n");
    assert_eq!(ask(c, &line, 1), expected);
    // gets through one node, cas through another: the owner evaluates it.
    let gets = ask(b, "gets key5\r\n", 1);
    let unique = gets
        .split_whitespace()
        .nth(4)
        .expect("a cas unique")
        .to_string();
    assert_eq!(
        ask(c, &format!("cas key5 0 0 2 {unique}\r\nxx\r\n"), 1),
        "STORED\r\n"
    );
    assert_eq!(
        ask(a, &format!("cas key5 0 0 2 {unique}\r\nyy\r\n"), 1),
        "EXISTS\r\n"
    );
    // A pipeline through one node keeps its order, with noreply, meta
    // quiet mode and mn.
    let pipeline = "set p1 0 0 1 noreply\r\n1\r\nget p1\r\nms p2 1 q\r\n2\r\nmg p2 v q\r\nmg nothere v q\r\nmn\r\nincr p1 5\r\ndelete p1\r\nget p1 p2\r\n";
    assert_eq!(
        ask(a, pipeline, 6),
        "VALUE p1 0 1\r\n1\r\nEND\r\nVA 1\r\n2\r\nMN\r\n6\r\nDELETED\r\nVALUE p2 0 1\r\n2\r\nEND\r\n"
    );
    // Requests reached their owners: some were forwarded, none failed.
    assert!(cluster.sum_cluster_stat("forwarded") > 0);
    assert_eq!(cluster.sum_cluster_stat("forward_errors"), 0);
    // flush_all through one node empties the whole cluster.
    assert_eq!(ask(b, "flush_all\r\n", 1), "OK\r\n");
    for node in [a, b, c] {
        assert_eq!(
            ask(node, "get key1 key2 key3 key20 key29 p2\r\n", 1),
            "END\r\n"
        );
    }
}

#[test]
fn a_peer_that_fails_the_handshake_or_sends_garbage_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "cluster-secret\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-secret\n").unwrap();
    let secret_arg = secret.to_str().unwrap();
    let mut args = vec!["--cluster-secret-file", secret_arg];
    args.extend_from_slice(FAST_DETECTION);
    let cluster = Cluster::start(2, &args);
    let a = cluster.addrs[0];
    let rejected = || -> u64 {
        stats(a, "cluster").unwrap()["peer_rejected"]
            .parse()
            .unwrap()
    };
    // Garbage after the peer's first byte, and a peer without the secret.
    let mut garbage = TcpStream::connect(a).unwrap();
    garbage
        .write_all(b"\xF0GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_until("the garbage peer to be counted", CLUSTER_TIMEOUT, || {
        rejected() >= 1
    });
    let mut unproven = TcpStream::connect(a).unwrap();
    let mut hello = b"\xF0MCSTORE-PEER\x01".to_vec();
    hello.extend_from_slice(&[7u8; 16]);
    hello.push(3);
    hello.extend_from_slice(b"x:1");
    unproven.write_all(&hello).unwrap();
    unproven.write_all(&[0u8; 32]).unwrap();
    wait_until("the unproven peer to be counted", CLUSTER_TIMEOUT, || {
        rejected() >= 2
    });
    // The node goes on serving clients.
    assert_eq!(ask(a, "set k 0 0 1\r\nv\r\n", 1), "STORED\r\n");
    // A node with the wrong secret is not admitted by gossip.
    let seeds = format!("{},{}", cluster.addrs[0], cluster.addrs[1]);
    let intruder_dir = tempfile::tempdir().unwrap();
    let intruder = match McstoreProcess::spawn(
        intruder_dir.path(),
        &[
            "--seeds",
            &seeds,
            "--cluster-secret-file",
            wrong.to_str().unwrap(),
        ],
    )
    .unwrap()
    {
        StartOutcome::Listening(process) => process,
        StartOutcome::Exited { stderr, .. } => panic!("the intruder did not start: {stderr}"),
    };
    wait_until(
        "the intruder's gossip to be rejected",
        CLUSTER_TIMEOUT,
        || cluster.sum_cluster_stat("gossip_rejected") > 0,
    );
    let seen = members(a);
    assert!(
        !seen.contains_key(&intruder.addr().to_string()),
        "the intruder was admitted: {seen:?}"
    );
    drop(intruder);
}

#[test]
fn beyond_loopback_with_seeds_and_no_secret_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before anything is bound or opened.
    let outcome = McstoreProcess::spawn_on(
        "0.0.0.0:0",
        dir.path(),
        &["--seeds", "127.0.0.1:1", "--advertise", "127.0.0.1:2"],
    )
    .unwrap();
    let StartOutcome::Exited { status, stderr, .. } = outcome else {
        panic!("a node beyond loopback without a secret started");
    };
    assert!(!status.success());
    assert!(stderr.contains("--cluster-secret-file"), "{stderr}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn a_node_asked_before_it_has_heard_from_its_cluster_waits_for_it_rather_than_fail() {
    let mut cluster = Cluster::start(2, FAST_DETECTION);
    assert_eq!(
        ask(cluster.addrs[0], "set early 0 0 5\r\nfirst\r\n", 1),
        "STORED\r\n"
    );
    // The members are frozen while the new node starts, so it hears from
    // none of them: a request it gets then must wait, not fail.
    cluster.nodes[0].signal(libc::SIGSTOP);
    cluster.nodes[1].signal(libc::SIGSTOP);
    let new = cluster.add_node(FAST_DETECTION);
    let mut stream = TcpStream::connect(cluster.addrs[new]).expect("connect");
    stream.write_all(b"get early\r\n").expect("send");
    cluster.nodes[0].signal(libc::SIGCONT);
    cluster.nodes[1].signal(libc::SIGCONT);
    let mut reply = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Until the whole answer (a value and END) or an error line is in.
    let complete = |reply: &[u8]| {
        reply.ends_with(b"END\r\n") || (reply.ends_with(b"\r\n") && !reply.starts_with(b"VALUE"))
    };
    while !complete(&reply) {
        let mut buffer = [0u8; 256];
        let read = std::io::Read::read(&mut stream, &mut buffer).expect("a reply");
        assert!(read > 0, "closed after {reply:?}");
        reply.extend_from_slice(&buffer[..read]);
    }
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "VALUE early 0 5\r\nfirst\r\nEND\r\n"
    );
}
