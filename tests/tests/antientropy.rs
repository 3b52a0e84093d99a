//! Anti-entropy end to end: two real nodes with RF=2 compare digests of
//! what they share every second (`--repair-interval 1s`) and repair what
//! differs. The damage is done to a killed node's data directory by the
//! `corrupt_records` tool: records with a flipped bit (bit rot), items and
//! tombstones removed (writes the node never received, which neither hints
//! nor the change stream would bring back).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

use mcstore_e2e::cluster::{
    ask, stats, value, wait_until, Cluster, CLUSTER_TIMEOUT, FAST_DETECTION,
};

fn number(stats: &BTreeMap<String, String>, name: &str) -> u64 {
    stats.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn cluster_stat(addr: SocketAddr, name: &str) -> u64 {
    number(&stats(addr, "cluster").unwrap_or_default(), name)
}

fn corrupt(dir: &std::path::Path, mode: &str, keys: &[String]) {
    let status = Command::new(env!("CARGO_BIN_EXE_corrupt_records"))
        .arg(dir)
        .arg(mode)
        .args(keys)
        .status()
        .expect("run corrupt_records");
    assert!(status.success(), "corrupt_records {mode}: {status}");
}

#[test]
fn damaged_and_missing_records_on_one_replica_are_repaired_from_the_other() {
    repair_damage("sled");
}

#[test]
fn damaged_and_missing_records_are_repaired_on_fjall_too() {
    repair_damage("fjall");
}

fn repair_damage(engine: &'static str) {
    let mut args = FAST_DETECTION.to_vec();
    args.extend_from_slice(&[
        "--engine",
        engine,
        "--replica-reads",
        "--replication-factor",
        "2",
        "--repair-interval",
        "1s",
    ]);
    let mut cluster = Cluster::start(2, &args);
    let (first, second) = (cluster.addrs[0], cluster.addrs[1]);
    let keys: Vec<String> = (0..200).map(|i| format!("ae{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let value = format!("value-{i}");
        let reply = ask(
            cluster.addrs[i % 2],
            &format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()),
            1,
        );
        assert_eq!(reply, "STORED\r\n", "set {key}");
    }
    for key in &keys[190..] {
        assert_eq!(ask(first, &format!("delete {key}\r\n"), 1), "DELETED\r\n");
    }
    cluster.wait_replicated();

    // In agreement, a round finds nothing to send: one that started after
    // replication caught up (rounds during the writes may have seen
    // records one node had and the other did not have yet).
    let peer = &cluster.advertised[0];
    let rounds = format!("peer:{peer}:repair_rounds");
    let after_writes = cluster_stat(second, &rounds);
    wait_until("two rounds after the writes", CLUSTER_TIMEOUT, || {
        cluster_stat(second, &rounds) >= after_writes + 2
    });
    let sent_before = cluster_stat(second, "repair_keys_sent");
    let round = cluster_stat(second, &rounds);
    wait_until("one more round", CLUSTER_TIMEOUT, || {
        cluster_stat(second, &rounds) > round
    });
    let seen = stats(second, "cluster").expect("stats cluster");
    assert_eq!(number(&seen, "digests_ready"), 1);
    assert_eq!(number(&seen, &format!("peer:{peer}:repair_differing")), 0);
    assert_eq!(number(&seen, "repair_keys_sent"), sent_before);

    // Damage the second node at rest: 20 records rot, 20 items and the 10
    // tombstones are gone.
    cluster.nodes[1].kill9();
    let dir = cluster.nodes[1].data_dir().to_path_buf();
    corrupt(&dir, "flip", &keys[0..20]);
    corrupt(&dir, "drop", &keys[20..40]);
    corrupt(&dir, "drop", &keys[190..]);
    cluster.nodes[1].restart();
    cluster.wait_converged();

    // Every damaged record comes back from the first node, and only those.
    wait_until(
        "the damaged records to be repaired",
        CLUSTER_TIMEOUT,
        || cluster_stat(second, "keys_repaired") >= 50,
    );
    for (i, key) in keys.iter().enumerate() {
        let expected = (i < 190).then(|| format!("value-{i}"));
        assert_eq!(value(second, key), expected, "{key} on the second node");
    }
    let repaired_store = stats(second, "store").expect("stats store");
    assert!(
        number(&repaired_store, "corrupt_records") >= 1,
        "the rotten records were noticed: {repaired_store:?}"
    );
    assert_eq!(number(&repaired_store, "tombstones"), 10);
    let items = |addr| number(&stats(addr, "").expect("stats"), "curr_items");
    assert_eq!(items(second), 190);
    assert_eq!(items(first), 190);
    assert_eq!(cluster_stat(second, "keys_repaired"), 50);
    // The first node was never damaged: nothing the second sent was newer.
    assert_eq!(cluster_stat(first, "keys_repaired"), 0);
}
