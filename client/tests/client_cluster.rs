//! The client against a real three-node cluster (replication factor 2):
//! every operation, owners hit directly (nothing forwarded after a
//! `load`), a killed node (every key still read, writes still accepted)
//! and its return (the topology refresh routes to it again).

mod common;

use std::time::Duration;

use mcstore_client::{meta, Client, Config, Error, MemberState};
use mcstore_e2e::cluster::{stats, wait_until, Cluster, CLUSTER_TIMEOUT, FAST_DETECTION};

use common::{cli, outcome, runtime};

fn forwarded(cluster: &Cluster) -> Vec<u64> {
    cluster
        .running_addrs()
        .into_iter()
        .map(|addr| {
            stats(addr, "cluster").unwrap()["forwarded"]
                .parse()
                .unwrap()
        })
        .collect()
}

/// `mcstore-cli check --prefix k` of `count` keys with values of `size`
/// bytes: exit code, stdout and stderr.
fn check(seeds: &[std::net::SocketAddr], count: usize, size: usize) -> (i32, String, String) {
    let (count, size) = (count.to_string(), size.to_string());
    outcome(&cli(
        seeds,
        &[
            "check",
            "--prefix",
            "k",
            "--count",
            &count,
            "--value-size",
            &size,
        ],
    ))
}

#[test]
fn load_check_and_a_killed_node() {
    let mut cluster = Cluster::start(3, FAST_DETECTION);
    let seeds = cluster.addrs.clone();

    // load writes every key on its owner: no node forwards anything.
    let (code, _, stderr) = outcome(&cli(
        &seeds,
        &[
            "load",
            "--prefix",
            "k",
            "--count",
            "3000",
            "--value-size",
            "64",
        ],
    ));
    assert_eq!(code, 0, "load failed: {stderr}");
    let (code, stdout, stderr) = check(&seeds, 3000, 64);
    assert_eq!(
        (code, stdout.trim()),
        (0, "3000 ok, 0 missing, 0 wrong"),
        "{stderr}"
    );
    assert_eq!(
        forwarded(&cluster),
        [0, 0, 0],
        "owners were not hit directly"
    );
    // A value of another size is wrong, keys never written are missing.
    let (code, stdout, _) = check(&seeds, 3010, 63);
    assert_eq!((code, stdout.trim()), (1, "0 ok, 10 missing, 3000 wrong"));
    cluster.wait_replicated();

    // Kill a node: every key is still read, from its other replica, and
    // writes still succeed (the next replica takes them).
    let victim = 1;
    let victim_addr = cluster.advertised[victim].clone();
    cluster.nodes[victim].kill9();
    let (code, stdout, stderr) = check(&seeds, 3000, 64);
    assert_eq!(
        (code, stdout.trim()),
        (0, "3000 ok, 0 missing, 0 wrong"),
        "{stderr}"
    );
    let rt = runtime();
    let config = Config::default()
        .refresh_interval(Duration::from_millis(200))
        .timeout(Duration::from_secs(5));
    let client = rt
        .block_on(Client::connect_seeds_with(
            seeds.iter().map(|a| a.to_string()),
            config,
        ))
        .unwrap();
    let victims_keys: Vec<String> = (0..400)
        .map(|i| format!("w{i}"))
        .filter(|key| cluster.replicas_of(key.as_bytes(), 2)[0] == victim)
        .collect();
    assert!(victims_keys.len() > 50);
    rt.block_on(async {
        for key in &victims_keys {
            client.set(key, key.clone(), 0, 0).await.unwrap();
            assert_eq!(client.get(key).await.unwrap().unwrap().value, key.as_str());
        }
    });
    cluster.wait_state(victim, "dead");
    wait_until("the client to see the node dead", CLUSTER_TIMEOUT, || {
        client
            .topology()
            .nodes()
            .iter()
            .any(|n| n.addr == victim_addr && n.state == MemberState::Dead)
    });

    // Restart it: the refresh routes its keys to it again, and it has the
    // writes it missed (hinted handoff).
    cluster.nodes[victim].restart();
    cluster.wait_converged();
    wait_until("the client to see the node alive", CLUSTER_TIMEOUT, || {
        client
            .topology()
            .nodes()
            .iter()
            .any(|n| n.addr == victim_addr && n.state == MemberState::Alive)
    });
    cluster.wait_replicated();
    let before = stats(cluster.addrs[victim], "").unwrap()["cmd_get"].clone();
    rt.block_on(async {
        for key in &victims_keys {
            // On a loaded machine the node may be suspect for a moment in
            // the topology the client last read: wait for it to be routed to.
            let started = std::time::Instant::now();
            while client.route(key.as_bytes(), true)[0] != victim_addr {
                assert!(
                    started.elapsed() < CLUSTER_TIMEOUT,
                    "{key} is not routed to its owner"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(client.get(key).await.unwrap().unwrap().value, key.as_str());
        }
    });
    let after = stats(cluster.addrs[victim], "").unwrap()["cmd_get"].clone();
    let served = after.parse::<u64>().unwrap() - before.parse::<u64>().unwrap();
    assert_eq!(
        served,
        victims_keys.len() as u64,
        "the owner served its keys"
    );
}

#[test]
fn every_operation_through_the_client() {
    let cluster = Cluster::start(3, &[]);
    let rt = runtime();
    rt.block_on(async {
        let client = Client::connect_seeds(cluster.addrs.iter().map(|a| a.to_string()))
            .await
            .unwrap();
        let topology = client.topology();
        assert_eq!(topology.replication_factor(), 2);
        assert_eq!(topology.ring_nodes().count(), 3);

        // Storage commands.
        client.set("a", "1", 5, 0).await.unwrap();
        let item = client.get("a").await.unwrap().unwrap();
        assert_eq!(
            (&item.value[..], item.flags, item.cas),
            (&b"1"[..], 5, None)
        );
        assert!(matches!(
            client.add("a", "x", 0, 0).await,
            Err(Error::NotStored)
        ));
        client.add("b", "2", 0, 0).await.unwrap();
        assert!(matches!(
            client.replace("nope", "x", 0, 0).await,
            Err(Error::NotStored)
        ));
        client.replace("b", "20", 0, 0).await.unwrap();
        client.append("b", "0").await.unwrap();
        client.prepend("b", "<").await.unwrap();
        assert_eq!(client.get("b").await.unwrap().unwrap().value, "<200");
        assert!(matches!(
            client.append("nope", "x").await,
            Err(Error::NotStored)
        ));

        // cas.
        let cas = client.gets("a").await.unwrap().unwrap().cas.unwrap();
        client.cas("a", "2", 0, 0, cas).await.unwrap();
        assert!(matches!(
            client.cas("a", "3", 0, 0, cas).await,
            Err(Error::Exists)
        ));
        assert!(matches!(
            client.cas("nope", "3", 0, 0, cas).await,
            Err(Error::NotFound)
        ));

        // Counters, delete, touch, gat.
        client.set("n", "41", 0, 0).await.unwrap();
        assert_eq!(client.incr("n", 1).await.unwrap(), 42);
        assert_eq!(client.decr("n", 50).await.unwrap(), 0);
        assert!(matches!(client.incr("nope", 1).await, Err(Error::NotFound)));
        client.delete("n").await.unwrap();
        assert!(matches!(client.delete("n").await, Err(Error::NotFound)));
        client.touch("a", 100).await.unwrap();
        assert!(matches!(
            client.touch("nope", 1).await,
            Err(Error::NotFound)
        ));
        assert_eq!(client.gat("a", 0).await.unwrap().unwrap().value, "2");
        assert!(client.gats("a", 0).await.unwrap().unwrap().cas.is_some());
        assert!(client.get("nope").await.unwrap().is_none());
        assert!(matches!(client.get("a b").await, Err(Error::Client(_))));

        // Many keys over every node, in one call.
        for i in 0..200 {
            client
                .set(format!("m{i}"), format!("v{i}"), 0, 0)
                .await
                .unwrap();
        }
        let keys: Vec<String> = (0..210).map(|i| format!("m{i}")).collect();
        let hits = client.get_many(&keys).await.unwrap();
        assert_eq!(hits.len(), 200);
        assert_eq!(hits[&b"m7"[..]].value, "v7");

        // Meta: mg flags, ms modes and base64 keys, ms I, md.
        let binary_key = bytes::Bytes::from_static(b"bin key\r\n\x00");
        let mut set = meta::set(binary_key.clone(), "bv");
        set.flags = 9;
        set.ttl = Some(100);
        let cas = meta::check_reply(&client.meta_set(set).await.unwrap()).unwrap();
        let reply = client
            .meta_get(meta::get(binary_key.clone()))
            .await
            .unwrap();
        let got = meta::MetaItem::from_reply(&reply).unwrap();
        assert_eq!(got.value.as_deref(), Some(&b"bv"[..]));
        assert_eq!((got.flags, got.cas), (Some(9), Some(cas)));
        assert!((1..=100).contains(&got.ttl.unwrap()));
        let mut add = meta::set(binary_key.clone(), "x");
        add.mode = mcstore_protocol::MetaSetMode::Add;
        let reply = client.meta_set(add).await.unwrap();
        assert_eq!(reply.status, mcstore_protocol::MetaStatus::NotStored);
        // I: a cas lower than the item's is accepted, the item marked stale.
        let mut stale = meta::set(binary_key.clone(), "older");
        stale.compare_cas = Some(cas - 1);
        stale.invalidate = true;
        client.meta_set(stale).await.unwrap();
        let got = meta::MetaItem::from_reply(
            &client
                .meta_get(meta::get(binary_key.clone()))
                .await
                .unwrap(),
        )
        .unwrap();
        assert!(got.stale && got.won, "{got:?}");
        let reply = client
            .meta_delete(meta::delete(binary_key.clone()))
            .await
            .unwrap();
        assert_eq!(reply.status, mcstore_protocol::MetaStatus::Done);
        let reply = client.meta_get(meta::get(binary_key)).await.unwrap();
        assert!(meta::MetaItem::from_reply(&reply).is_none());
        let reply = client
            .meta_arithmetic(meta::arithmetic("nope"))
            .await
            .unwrap();
        assert_eq!(reply.status, mcstore_protocol::MetaStatus::NotFound);

        // Stale-while-revalidate: one reader wins the token, the others
        // see it taken; the winner's recache clears the mark.
        client.set("page", "v1", 0, 0).await.unwrap();
        client.invalidate("page", 30).await.unwrap();
        let first = client.get_swr("page", 10).await.unwrap().unwrap();
        assert!(first.stale && first.won && !first.token_sent, "{first:?}");
        let second = client.get_swr("page", 10).await.unwrap().unwrap();
        assert!(
            second.stale && !second.won && second.token_sent,
            "{second:?}"
        );
        assert_eq!(second.value.as_deref(), Some(&b"v1"[..]));
        client
            .recache("page", "v2", 0, 0, first.cas.unwrap())
            .await
            .unwrap();
        let fresh = client.get_swr("page", 10).await.unwrap().unwrap();
        assert!(!fresh.stale && !fresh.won, "{fresh:?}");
        assert!(matches!(
            client.recache("page", "v3", 0, 0, first.cas.unwrap()).await,
            Err(Error::Exists)
        ));
        assert!(matches!(
            client.invalidate("nope", 30).await,
            Err(Error::NotFound)
        ));

        // Stats of every node; flush_all everywhere.
        let all = client.stats(Some("cluster")).await;
        assert_eq!(all.len(), 3);
        for (_, stats) in &all {
            assert_eq!(stats.as_ref().unwrap()["forwarded"], "0");
        }
        client.flush_all().await.unwrap();
        assert!(client.get("a").await.unwrap().is_none());
        assert!(client.get_many(&keys).await.unwrap().is_empty());
    });
    // Nothing above was forwarded but the flush_all broadcast.
    let forwarded: u64 = cluster.sum_cluster_stat("forwarded");
    assert!(forwarded <= 2, "forwarded {forwarded}");
}

#[test]
fn cli_commands_and_exit_codes() {
    let cluster = Cluster::start(3, &[]);
    let seeds = &cluster.addrs;
    assert_eq!(outcome(&cli(seeds, &["set", "greeting", "hello"])).0, 0);
    let (code, stdout, _) = outcome(&cli(seeds, &["get", "greeting"]));
    assert_eq!((code, stdout.as_str()), (0, "hello"));
    let (code, _, stderr) = outcome(&cli(seeds, &["get", "missing"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("missing: not found"), "{stderr}");
    assert_eq!(outcome(&cli(seeds, &["set", "n", "9"])).0, 0);
    assert_eq!(outcome(&cli(seeds, &["incr", "n", "3"])).1.trim(), "12");
    assert_eq!(outcome(&cli(seeds, &["decr", "n"])).1.trim(), "11");
    assert_eq!(outcome(&cli(seeds, &["incr", "missing"])).0, 1);
    assert_eq!(outcome(&cli(seeds, &["delete", "n"])).0, 0);
    assert_eq!(outcome(&cli(seeds, &["delete", "n"])).0, 1);
    let (code, stdout, _) = outcome(&cli(seeds, &["stats", "cluster"]));
    assert_eq!(code, 0);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" replication_factor 2"))
            .count(),
        3
    );
    let (code, stdout, _) = outcome(&cli(seeds, &["cluster"]));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("NODE"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" alive ")).count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout.contains("replication factor 2, 3 on the ring"),
        "{stdout}"
    );
    // Usage errors are 2; no reachable seed is 3.
    assert_eq!(outcome(&cli(seeds, &["get"])).0, 2);
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], mcstore_e2e::free_port()));
    let (code, _, stderr) = outcome(&cli(&[dead], &["get", "x"]));
    assert_eq!(code, 3, "{stderr}");
}

#[test]
fn the_cli_makes_a_node_leave_and_removes_a_dead_one() {
    let mut cluster = Cluster::start(4, FAST_DETECTION);
    let seeds = cluster.addrs.clone();
    let load = ["--prefix", "s", "--count", "1000", "--value-size", "32"];
    let (code, _, stderr) = outcome(&cli(&seeds, &[&["load"][..], &load[..]].concat()));
    assert_eq!(code, 0, "{stderr}");
    cluster.wait_replicated();

    // A live node cannot be removed: a client error, exit 4.
    let live = cluster.advertised[3].clone();
    let (code, _, stderr) = outcome(&cli(&seeds, &["remove", &live]));
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("not dead"), "{stderr}");

    let (code, stdout, stderr) = outcome(&cli(&seeds, &["leave", &live]));
    assert_eq!(
        (code, stdout.trim()),
        (0, format!("{live} left the cluster").as_str()),
        "{stderr}"
    );
    assert!(
        cluster.nodes[3].wait_exit(CLUSTER_TIMEOUT).is_some(),
        "the node that left exits"
    );

    cluster.nodes[2].kill9();
    cluster.wait_state(2, "dead");
    let dead = cluster.advertised[2].clone();
    let (code, stdout, stderr) = outcome(&cli(&seeds[..2], &["remove", &dead]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Two nodes with RF 2: each holds every key once the ranges moved.
    wait_until("both copies of every key", CLUSTER_TIMEOUT * 2, || {
        cluster.total_items() == 2000
    });
    let (code, stdout, stderr) = outcome(&cli(&seeds[..2], &[&["check"][..], &load[..]].concat()));
    assert_eq!(
        (code, stdout.trim()),
        (0, "1000 ok, 0 missing, 0 wrong"),
        "{stderr}"
    );
}
