//! Asynchronous replication end to end: RF copies of every key, failover
//! that finds the data, hinted handoff, healing, convergence, range
//! transfers, and `--replica-ack one`. Three real nodes with RF=2 (two for
//! the cut link), loopback only, bounded waits on `stats cluster`.
//!
//! Nodes run with `--replica-reads` where a test reads each replica's own
//! copy: a node that holds a replica of the key then answers from its copy.

use std::net::SocketAddr;
use std::time::Duration;

use mcstore_e2e::cluster::{
    ask, stats, value, wait_until, Cluster, CLUSTER_TIMEOUT, FAST_DETECTION,
};

fn set(addr: SocketAddr, key: &str, value: &str) {
    assert_eq!(
        ask(
            addr,
            &format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()),
            1
        ),
        "STORED\r\n",
        "set {key} through {addr}"
    );
}

fn args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = FAST_DETECTION.to_vec();
    args.extend_from_slice(&["--peer-timeout", "500ms"]);
    args.extend_from_slice(extra);
    args
}

#[test]
fn every_key_ends_with_exactly_two_copies() {
    let cluster = Cluster::start(3, &args(&["--replica-reads"]));
    for i in 0..150 {
        set(
            cluster.addrs[i % 3],
            &format!("copies{i}"),
            &format!("v{i}"),
        );
    }
    cluster.wait_replicated();
    assert_eq!(cluster.total_items(), 300, "sum of curr_items is RF x keys");
    for i in 0..150 {
        let key = format!("copies{i}");
        for replica in cluster.replicas_of(key.as_bytes(), 2) {
            assert_eq!(
                value(cluster.addrs[replica], &key),
                Some(format!("v{i}")),
                "{key} on node {replica}"
            );
        }
    }
    assert!(cluster.sum_cluster_stat("replicated_out") >= 150);
}

#[test]
fn a_killed_node_loses_nothing_and_catches_up_after_a_restart() {
    let mut cluster = Cluster::start(3, &args(&["--replica-reads"]));
    for i in 0..100 {
        set(cluster.addrs[0], &format!("kill{i}"), "before");
    }
    cluster.wait_replicated();
    cluster.nodes[2].kill9();
    // Writes keep succeeding while the node is down (its keys are
    // coordinated by their next replica, which keeps hints for it), and
    // every key reads back.
    for i in 0..100 {
        set(cluster.addrs[i % 2], &format!("kill{i}"), "during");
    }
    for i in 100..150 {
        set(cluster.addrs[1], &format!("kill{i}"), "new");
    }
    for i in 0..150 {
        let expected = if i < 100 { "during" } else { "new" };
        assert_eq!(
            value(cluster.addrs[0], &format!("kill{i}")).as_deref(),
            Some(expected)
        );
    }
    cluster.wait_state(2, "dead");
    let hints = cluster.sum_cluster_stat("hints_pending");
    assert!(hints > 0, "no hints kept for the dead node");
    // Back on its address and data: the hints reach it, RF copies again.
    cluster.nodes[2].restart();
    cluster.wait_converged();
    cluster.wait_replicated();
    assert_eq!(cluster.total_items(), 300);
    for i in 0..150 {
        let key = format!("kill{i}");
        let expected = if i < 100 { "during" } else { "new" };
        for replica in cluster.replicas_of(key.as_bytes(), 2) {
            assert_eq!(
                value(cluster.addrs[replica], &key).as_deref(),
                Some(expected),
                "{key} on node {replica}"
            );
        }
    }
}

#[test]
fn a_frozen_node_resumes_with_the_last_acknowledged_state_and_no_deleted_key_returns() {
    let cluster = Cluster::start(3, &args(&["--replica-reads"]));
    let keys: Vec<String> = (0..120).map(|i| format!("frozen{i}")).collect();
    for key in &keys {
        set(cluster.addrs[0], key, "old");
    }
    cluster.wait_replicated();
    cluster.nodes[1].signal(libc::SIGSTOP);
    cluster.wait_state(1, "dead");
    // Updated and deleted through the others while it is frozen.
    for (i, key) in keys.iter().enumerate() {
        let through = cluster.addrs[if i % 2 == 0 { 0 } else { 2 }];
        if i % 3 == 0 {
            assert_eq!(ask(through, &format!("delete {key}\r\n"), 1), "DELETED\r\n");
        } else {
            set(through, key, "new");
        }
    }
    cluster.nodes[1].signal(libc::SIGCONT);
    cluster.wait_converged();
    cluster.wait_replicated();
    for (i, key) in keys.iter().enumerate() {
        let expected = (i % 3 != 0).then(|| "new".to_string());
        for replica in cluster.replicas_of(key.as_bytes(), 2) {
            assert_eq!(
                value(cluster.addrs[replica], key),
                expected,
                "{key} on node {replica}"
            );
        }
    }
    assert_eq!(cluster.total_items(), 2 * 80);
}

#[test]
fn two_nodes_cut_from_each_other_converge_to_the_last_writes_after_healing() {
    let (cluster, proxies) = Cluster::start_behind_proxies(2, &args(&["--replica-reads"]));
    let [a, b] = [cluster.addrs[0], cluster.addrs[1]];
    let keys: Vec<String> = (0..80).map(|i| format!("cut{i}")).collect();
    for key in &keys {
        set(a, key, "before");
    }
    cluster.wait_replicated();
    // Cut the link both ways: each sees the other dead.
    proxies[1].cut(a.ip());
    proxies[0].cut(b.ip());
    cluster.wait_state(0, "dead");
    cluster.wait_state(1, "dead");
    // Both sides write the same keys, a's first, then b's; b deletes some.
    for key in &keys {
        set(a, key, "from-a");
    }
    for (i, key) in keys.iter().enumerate() {
        match i % 4 {
            0 => assert_eq!(ask(b, &format!("delete {key}\r\n"), 1), "DELETED\r\n"),
            1 => set(b, key, "from-b"),
            _ => {}
        }
    }
    // Heal: the last write of each key wins on both.
    proxies[1].heal(a.ip());
    proxies[0].heal(b.ip());
    cluster.wait_converged();
    cluster.wait_replicated();
    for (i, key) in keys.iter().enumerate() {
        let expected = match i % 4 {
            0 => None,
            1 => Some("from-b".to_string()),
            _ => Some("from-a".to_string()),
        };
        assert_eq!(value(a, key), expected, "{key} on a");
        assert_eq!(value(b, key), expected, "{key} on b");
    }
}

#[test]
fn a_node_whose_cursor_fell_behind_retention_catches_up_by_range_transfer() {
    // Tiny log segments and retention: the dead node's cursor falls behind.
    let mut cluster = Cluster::start(
        3,
        &args(&[
            "--replica-reads",
            "--wal-segment-size",
            "4k",
            "--wal-retention",
            "8k",
            "--checkpoint-interval-ms",
            "100",
        ]),
    );
    cluster.nodes[2].kill9();
    cluster.wait_state(2, "dead");
    for i in 0..300 {
        set(
            cluster.addrs[i % 2],
            &format!("behind{i}"),
            &format!("value-{i}"),
        );
    }
    let fell_behind = || {
        (0..2).any(|i| {
            stats(cluster.addrs[i], "store")
                .unwrap_or_default()
                .iter()
                .any(|(name, value)| name.ends_with(":fell_behind") && value == "1")
        })
    };
    wait_until(
        "a cursor to fall behind retention",
        CLUSTER_TIMEOUT,
        fell_behind,
    );
    cluster.nodes[2].restart();
    cluster.wait_converged();
    cluster.wait_replicated();
    assert!(cluster.sum_cluster_stat("replicated_out") > 0);
    let transferred: u64 = (0..2)
        .map(|i| {
            stats(cluster.addrs[i], "cluster")
                .unwrap()
                .iter()
                .filter(|(name, _)| name.ends_with(":transferred"))
                .map(|(_, value)| value.parse::<u64>().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert!(transferred > 0, "no range transfer happened");
    for i in 0..300 {
        let key = format!("behind{i}");
        for replica in cluster.replicas_of(key.as_bytes(), 2) {
            assert_eq!(
                value(cluster.addrs[replica], &key),
                Some(format!("value-{i}")),
                "{key} on node {replica}"
            );
        }
    }
}

#[test]
fn replica_ack_one_answers_once_another_replica_has_the_write_or_an_error_in_time() {
    let cluster = Cluster::start(
        3,
        &args(&["--replica-ack", "one", "--replica-ack-timeout", "1s"]),
    );
    for i in 0..30 {
        set(cluster.addrs[0], &format!("acked{i}"), "v");
    }
    // Each acknowledged write is already on its second replica: no waiting.
    let shipped = cluster.sum_cluster_stat("replicated_out");
    assert!(shipped >= 30, "{shipped}");
    // With every other node frozen, a write of a key this node owns cannot
    // be acknowledged by another replica: SERVER_ERROR, within the timeout.
    let key = (0..1000)
        .map(|i| format!("frozen-ack{i}"))
        .find(|key| cluster.replicas_of(key.as_bytes(), 2)[0] == 0)
        .unwrap();
    cluster.nodes[1].signal(libc::SIGSTOP);
    cluster.nodes[2].signal(libc::SIGSTOP);
    let started = std::time::Instant::now();
    let reply = {
        use std::io::{BufRead, BufReader, Write};
        let mut stream = std::net::TcpStream::connect(cluster.addrs[0]).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(format!("set {key} 0 0 1\r\nx\r\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line
    };
    let took = started.elapsed();
    cluster.nodes[1].signal(libc::SIGCONT);
    cluster.nodes[2].signal(libc::SIGCONT);
    assert!(reply.starts_with("SERVER_ERROR"), "{reply}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
