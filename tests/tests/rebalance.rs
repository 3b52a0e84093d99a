//! Growing and shrinking a live cluster end to end: a node joins under
//! load, a join interrupted by kill -9 resumes, a join outlives a member
//! frozen during it and a link cut between two members, a node leaves
//! under load, a
//! dead node is removed, a wiped data directory is restored. Real nodes
//! with RF=2 on loopback, a steady client load (writers and readers spread
//! over the nodes), bounded waits on `stats cluster`.
//!
//! Nodes run with `--replica-reads`, so that a `get` sent to a node that
//! holds a replica of the key is answered from its own copy: that is how
//! the tests check that every key has its copies where the ring says.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mcstore_e2e::cluster::{members, stats, wait_until, Cluster, CLUSTER_TIMEOUT, FAST_DETECTION};
use mcstore_e2e::load::{LoadReport, SteadyLoad};
use mcstore_e2e::{exchange, Client};

const RF: usize = 2;

fn args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = FAST_DETECTION.to_vec();
    args.extend_from_slice(&["--peer-timeout", "1s", "--replica-reads"]);
    args.extend_from_slice(extra);
    args
}

fn ask(addr: SocketAddr, input: &str) -> String {
    String::from_utf8_lossy(&exchange(addr, input.as_bytes(), 1).expect("exchange")).into_owned()
}

/// Stores `count` keys `<prefix>-<i>` through `addr`, pipelined; returns
/// them with their values.
fn preload(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    value_len: usize,
) -> Vec<(String, String)> {
    let keys: Vec<(String, String)> = (0..count)
        .map(|i| {
            let value = format!("{prefix}-value-{i}-");
            let pad = "p".repeat(value_len.saturating_sub(value.len()));
            (format!("{prefix}-{i}"), value + &pad)
        })
        .collect();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    for chunk in keys.chunks(200) {
        let mut request = Vec::new();
        for (key, value) in chunk {
            request.extend_from_slice(
                format!("set {key} 0 0 {} noreply\r\n{value}\r\n", value.len()).as_bytes(),
            );
        }
        request.extend_from_slice(b"mn\r\n");
        stream.write_all(&request).expect("send");
        let mut reply = Vec::new();
        let mut buffer = [0u8; 4096];
        while !reply.ends_with(b"MN\r\n") {
            let read = stream
                .read(&mut buffer)
                .expect("the reply to a batch of sets");
            assert!(read > 0, "connection closed after {reply:?}");
            reply.extend_from_slice(&buffer[..read]);
        }
        assert_eq!(
            reply,
            b"MN\r\n",
            "a noreply set failed: {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    keys
}

/// Every key has its value on each of its replicas on the ring of
/// `members` (asked on the replica itself, which answers from its copy).
fn assert_copies(cluster: &Cluster, keys: &[(String, String)], members: &[usize]) {
    let mut by_node: BTreeMap<usize, Vec<&(String, String)>> = BTreeMap::new();
    for entry in keys {
        for replica in cluster.replicas_among(entry.0.as_bytes(), RF, members) {
            by_node.entry(replica).or_default().push(entry);
        }
    }
    let mut problems = Vec::new();
    for (node, entries) in by_node {
        let mut client =
            Client::connect(cluster.addrs[node], Duration::from_secs(10)).expect("connect");
        for chunk in entries.chunks(50) {
            let names: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let found = client.get_many(&names).expect("get");
            for (key, value) in chunk {
                match found.get(key) {
                    Some(got) if got == value.as_bytes() => {}
                    Some(_) => problems.push(format!("{key}: wrong value on node {node}")),
                    None => problems.push(format!("{key}: missing on node {node}")),
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} copies missing or wrong, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
}

/// Waits until the running nodes hold `RF x keys` items: the copies a ring
/// change made are where they belong and the ones no longer needed dropped.
fn wait_for_exact_copies(cluster: &Cluster, keys: usize) {
    let expected = (RF * keys) as u64;
    wait_until(
        &format!("{expected} items in the cluster"),
        CLUSTER_TIMEOUT * 2,
        || cluster.total_items() == expected,
    );
}

fn assert_clean(report: &LoadReport) {
    assert!(
        report.write_failures.is_empty(),
        "{} writes failed, e.g. {:?}",
        report.write_failures.len(),
        &report.write_failures[..report.write_failures.len().min(5)]
    );
    assert!(
        report.read_failures.is_empty(),
        "{} reads failed, e.g. {:?}",
        report.read_failures.len(),
        &report.read_failures[..report.read_failures.len().min(5)]
    );
    assert!(
        report.misses.is_empty(),
        "{} misses of keys written before, e.g. {:?}",
        report.misses.len(),
        &report.misses[..report.misses.len().min(5)]
    );
    assert!(report.reads > 0 && !report.acked.is_empty(), "the load ran");
}

/// Waits until every running node sees node `index` alive (a joiner
/// that is done); returns how long that took.
fn wait_alive_everywhere(cluster: &Cluster, index: usize) -> Duration {
    wait_until(
        "the new node to be alive everywhere",
        CLUSTER_TIMEOUT * 2,
        || {
            cluster.running_addrs().iter().all(|&addr| {
                members(addr)
                    .get(&cluster.advertised[index])
                    .map(String::as_str)
                    == Some("alive")
            })
        },
    )
}

/// Waits until node `index` sees every other running node alive.
fn wait_until_it_knows_the_cluster(cluster: &Cluster, index: usize) {
    wait_until("the new node to see the cluster", CLUSTER_TIMEOUT, || {
        let seen = members(cluster.addrs[index]);
        (0..cluster.nodes.len())
            .filter(|&i| i != index && cluster.nodes[i].is_running())
            .all(|i| seen.get(&cluster.advertised[i]).map(String::as_str) == Some("alive"))
    });
}

fn cluster_stat(addr: SocketAddr, name: &str) -> u64 {
    stats(addr, "cluster")
        .ok()
        .and_then(|s| s.get(name).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn a_node_joins_under_load_without_a_miss_and_every_key_ends_with_two_copies() {
    let mut cluster = Cluster::start(3, &args(&[]));
    let preloaded = preload(cluster.addrs[0], "pre", 3000, 100);
    cluster.wait_replicated();
    let load = SteadyLoad::start(&cluster.addrs, preloaded.clone(), 2, 2, "join");
    load.wait_for_more_writes(200);

    let joiner = cluster.add_node(&args(&[]));
    // As a client or proxy given the new server list would, at once: a
    // request that comes before the node has heard from the cluster waits
    // for it.
    load.add_target(cluster.addrs[joiner]);
    let took = wait_alive_everywhere(&cluster, joiner);
    eprintln!("the fourth node joined in {took:?}");
    load.wait_for_more_writes(300);
    let report = load.stop();
    assert_clean(&report);

    let log = cluster.nodes[joiner].stderr();
    assert!(log.contains("joining: waiting"), "{log}");
    assert!(log.contains("joined: ready"), "{log}");
    let received = cluster_stat(cluster.addrs[joiner], "transfer_keys_done");
    assert!(received > 0, "the joiner received its ranges by transfer");

    // Every key is readable from its new owner, on the new node's own copy.
    let all: Vec<usize> = (0..4).collect();
    let owned: Vec<(String, String)> = preloaded
        .iter()
        .filter(|(key, _)| cluster.replicas_among(key.as_bytes(), RF, &all)[0] == joiner)
        .cloned()
        .collect();
    assert!(!owned.is_empty());
    let mut client = Client::connect(cluster.addrs[joiner], Duration::from_secs(10)).unwrap();
    for (key, value) in &owned {
        assert_eq!(
            client.get(key).unwrap().as_deref(),
            Some(value.as_bytes()),
            "{key}"
        );
    }

    let mut every_key = preloaded;
    every_key.extend(report.acked);
    cluster.wait_replicated();
    wait_for_exact_copies(&cluster, every_key.len());
    assert_copies(&cluster, &every_key, &all);
}

#[test]
fn a_join_interrupted_by_kill_9_resumes_where_it_was() {
    // Transfers paced at 64 KB/s per peer, so the join takes seconds.
    let mut cluster = Cluster::start(3, &args(&["--transfer-rate", "64k"]));
    let preloaded = preload(cluster.addrs[0], "big", 1500, 1000);
    cluster.wait_replicated();
    let all: Vec<usize> = (0..4).collect();
    let joiner = cluster.add_node(&args(&[]));
    let joiner_name = cluster.advertised[joiner].clone();
    let for_joiner = preloaded
        .iter()
        .filter(|(key, _)| {
            cluster
                .replicas_among(key.as_bytes(), RF, &all)
                .contains(&joiner)
        })
        .count() as u64;
    // Each of those keys comes from both of its current replicas.
    let expected = RF as u64 * for_joiner;
    let sent_to_joiner = |cluster: &Cluster| -> u64 {
        (0..3)
            .map(|i| cluster_stat(cluster.addrs[i], &format!("peer:{joiner_name}:transferred")))
            .sum()
    };
    wait_until("a quarter of the join's transfer", CLUSTER_TIMEOUT, || {
        sent_to_joiner(&cluster) >= expected / 4
    });
    cluster.nodes[joiner].kill9();
    let before_kill = sent_to_joiner(&cluster);
    assert!(
        before_kill < expected,
        "the transfer ({before_kill} of {expected}) was over before the kill: make it slower"
    );
    cluster.wait_state(joiner, "dead");
    cluster.nodes[joiner].restart();
    assert!(cluster.nodes[joiner]
        .stderr()
        .contains("status=\"joining\""));
    cluster.wait_converged();
    let total = sent_to_joiner(&cluster);
    eprintln!(
        "join transfer: {before_kill} records before kill -9, {total} in all, {expected} needed"
    );
    assert!(
        total < expected + before_kill / 2,
        "the transfer started over: {total} records sent for {expected} needed \
         ({before_kill} before the kill)"
    );
    let senders_log: String = (0..3).map(|i| cluster.nodes[i].stderr()).collect();
    assert!(
        senders_log.contains("range transfer resumed"),
        "{senders_log}"
    );
    cluster.wait_replicated();
    wait_for_exact_copies(&cluster, preloaded.len());
    assert_copies(&cluster, &preloaded, &all);
}

#[test]
fn a_join_completes_after_a_member_frozen_during_it_resumes() {
    // Paced as in the kill -9 test, so the join is under way when the
    // member freezes.
    let mut cluster = Cluster::start(3, &args(&["--transfer-rate", "64k"]));
    let preloaded = preload(cluster.addrs[0], "frz", 1500, 1000);
    cluster.wait_replicated();
    let all: Vec<usize> = (0..4).collect();
    let joiner = cluster.add_node(&args(&[]));
    let joiner_name = cluster.advertised[joiner].clone();
    wait_until("the join's transfer to start", CLUSTER_TIMEOUT, || {
        (0..3)
            .any(|i| cluster_stat(cluster.addrs[i], &format!("peer:{joiner_name}:transferred")) > 0)
    });
    cluster.nodes[1].signal(libc::SIGSTOP);
    cluster.wait_state(1, "dead");
    let joining = members(cluster.addrs[0]).get(&joiner_name).cloned();
    cluster.nodes[1].signal(libc::SIGCONT);
    cluster.wait_converged();
    wait_alive_everywhere(&cluster, joiner);
    assert_eq!(
        joining.as_deref(),
        Some("joining"),
        "the join was over before the member froze: make it slower"
    );
    cluster.wait_replicated();
    wait_for_exact_copies(&cluster, preloaded.len());
    assert_copies(&cluster, &preloaded, &all);
}

#[test]
fn a_join_under_load_completes_across_a_cut_link_and_every_write_has_its_copies_after_healing() {
    // Members 1 and 2 behind proxies that can cut the link between them;
    // the joiner reaches everyone.
    let (mut cluster, proxies) =
        Cluster::start_behind_proxies(3, &args(&["--transfer-rate", "256k"]));
    let preloaded = preload(cluster.addrs[0], "cut", 1500, 500);
    cluster.wait_replicated();
    let load = SteadyLoad::start(&cluster.addrs, preloaded.clone(), 2, 2, "cutjoin");
    load.wait_for_more_writes(100);
    let joiner = cluster.add_node(&args(&[]));
    wait_until_it_knows_the_cluster(&cluster, joiner);
    load.add_target(cluster.addrs[joiner]);
    let (one, two) = (cluster.addrs[1].ip(), cluster.addrs[2].ip());
    proxies[1].cut(two);
    proxies[2].cut(one);
    load.wait_for_more_writes(200);
    wait_alive_everywhere(&cluster, joiner);
    load.wait_for_more_writes(200);
    proxies[1].heal(two);
    proxies[2].heal(one);
    cluster.wait_converged();
    load.wait_for_more_writes(100);
    let report = load.stop();
    // A cut link can cost requests (each side may declare the other down,
    // and a key whose two replicas are the cut pair then has none alive
    // for a moment: SERVER_ERROR, not acknowledged), but never a miss or
    // a wrong value, and every acknowledged write has its copies below.
    assert!(report.reads > 0 && !report.acked.is_empty(), "the load ran");
    assert!(
        report.misses.is_empty(),
        "{} misses of keys written before, e.g. {:?}",
        report.misses.len(),
        &report.misses[..report.misses.len().min(5)]
    );
    let wrong: Vec<&String> = report
        .read_failures
        .iter()
        .filter(|failure| failure.ends_with("wrong value"))
        .collect();
    assert!(wrong.is_empty(), "wrong values read: {wrong:?}");
    let mut every_key = preloaded;
    every_key.extend(report.acked);
    cluster.wait_replicated();
    let all: Vec<usize> = (0..4).collect();
    // At least RF copies of every acknowledged key (a write answered with
    // an error may have landed too, so the total is not exact).
    let expected = (RF * every_key.len()) as u64;
    wait_until("every copy in place", CLUSTER_TIMEOUT * 2, || {
        cluster.total_items() >= expected
    });
    assert_copies(&cluster, &every_key, &all);
}

#[test]
fn a_node_leaves_under_load_without_a_miss_and_no_key_loses_a_copy() {
    let mut cluster = Cluster::start(4, &args(&[]));
    let preloaded = preload(cluster.addrs[0], "pre", 2000, 100);
    cluster.wait_replicated();
    let staying = vec![0, 1, 2];
    let staying_addrs: Vec<SocketAddr> = staying.iter().map(|&i| cluster.addrs[i]).collect();
    let load = SteadyLoad::start(&staying_addrs, preloaded.clone(), 2, 2, "leave");
    load.wait_for_more_writes(200);

    assert_eq!(ask(cluster.addrs[3], "mcstore_cluster leave\r\n"), "OK\r\n");
    let status = cluster.nodes[3].wait_exit(CLUSTER_TIMEOUT * 2);
    assert!(
        status.is_some_and(|s| s.success()),
        "the leaving node exits by itself once its ranges are handed over: {status:?}\n{}",
        if cluster.nodes[3].is_running() {
            cluster.nodes[3].stderr()
        } else {
            String::new()
        }
    );
    cluster.wait_state(3, "left");
    load.wait_for_more_writes(300);
    let report = load.stop();
    assert_clean(&report);

    let mut every_key = preloaded;
    every_key.extend(report.acked);
    cluster.wait_replicated();
    wait_for_exact_copies(&cluster, every_key.len());
    assert_copies(&cluster, &every_key, &staying);
}

#[test]
fn a_dead_node_removed_has_its_copies_restored_by_the_survivors() {
    let mut cluster = Cluster::start(4, &args(&[]));
    let preloaded = preload(cluster.addrs[0], "pre", 2000, 100);
    cluster.wait_replicated();
    let victim = cluster.advertised[3].clone();
    // A live member cannot be removed.
    let refused = ask(
        cluster.addrs[0],
        &format!("mcstore_cluster remove {victim}\r\n"),
    );
    assert!(
        refused.starts_with("CLIENT_ERROR cannot remove"),
        "{refused}"
    );
    cluster.nodes[3].kill9();
    cluster.wait_state(3, "dead");
    assert_eq!(
        ask(
            cluster.addrs[1],
            &format!("mcstore_cluster remove {victim}\r\n")
        ),
        "OK\r\n"
    );
    cluster.wait_state(3, "left");
    let survivors = vec![0, 1, 2];
    wait_for_exact_copies(&cluster, preloaded.len());
    assert_copies(&cluster, &preloaded, &survivors);
    // Keys are still written and read on the smaller ring.
    let mut client = Client::connect(cluster.addrs[2], Duration::from_secs(10)).unwrap();
    assert_eq!(client.set("after-remove", 0, 0, b"v").unwrap(), "STORED");
    // (A replica answers reads from its copy: it has the write soon after.)
    wait_until("the new key to be read back", CLUSTER_TIMEOUT, || {
        client.get("after-remove").unwrap().as_deref() == Some(&b"v"[..])
    });
}

#[test]
fn a_replica_whose_data_directory_was_wiped_gets_every_key_back() {
    let mut cluster = Cluster::start(3, &args(&[]));
    let preloaded = preload(cluster.addrs[0], "pre", 2000, 100);
    cluster.wait_replicated();
    cluster.nodes[2].kill9();
    let dir = cluster.nodes[2].data_dir().to_path_buf();
    for entry in std::fs::read_dir(&dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("wipe");
        } else {
            std::fs::remove_file(&path).expect("wipe");
        }
    }
    cluster.nodes[2].restart();
    // It comes back joining (its data is gone), not serving misses.
    assert!(cluster.nodes[2].stderr().contains("status=\"joining\""));
    cluster.wait_converged();
    let all = vec![0, 1, 2];
    cluster.wait_replicated();
    wait_for_exact_copies(&cluster, preloaded.len());
    assert_copies(&cluster, &preloaded, &all);
}
