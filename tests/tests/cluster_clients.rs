//! Real memcache clients and proxies in front of a cluster:
//!
//! - twemproxy (Debian's `nutcracker`) with `hash: md5` and
//!   `distribution: ketama` hashes exactly as the nodes do, so every
//!   request lands on its key's owner: nothing is forwarded anywhere;
//! - pymemcache's HashClient hashes its own way (rendezvous), so most
//!   requests land elsewhere and are forwarded: every key still reads back.
//! - after a node is killed, both find every key: twemproxy with
//!   `auto_eject_hosts` sends the dead node's keys to the next server on its
//!   ring, which is the key's second replica; the HashClient marks the node
//!   dead and the nodes it rehashes to forward to the next live replica.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mcstore_e2e::cluster::{ask, wait_until, Cluster, CLUSTER_TIMEOUT, FAST_DETECTION};
use mcstore_e2e::{free_port, run_python};

/// A twemproxy in front of `nodes`; killed on drop.
struct Twemproxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Twemproxy {
    const BINARY: &'static str = "/usr/sbin/nutcracker";

    fn start(nodes: &[SocketAddr]) -> Twemproxy {
        Twemproxy::start_with(nodes, "  auto_eject_hosts: false\n")
    }

    fn start_with(nodes: &[SocketAddr], options: &str) -> Twemproxy {
        assert!(
            std::path::Path::new(Self::BINARY).is_file(),
            "{} is missing: apt-get install nutcracker",
            Self::BINARY
        );
        let dir = tempfile::tempdir().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let servers: String = nodes
            .iter()
            .map(|node| format!("   - {node}:1\n"))
            .collect();
        let config = format!(
            "mcstore:\n  listen: {addr}\n  hash: md5\n  distribution: ketama\n  timeout: 2000\n{options}  servers:\n{servers}"
        );
        let path = dir.path().join("nutcracker.yml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(Self::BINARY)
            .arg("-c")
            .arg(&path)
            .arg("-o")
            .arg(dir.path().join("nutcracker.log"))
            .arg("-s")
            .arg(free_port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nutcracker");
        wait_until("twemproxy to listen", CLUSTER_TIMEOUT, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Twemproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Twemproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn twemproxy_with_ketama_sends_every_request_to_its_owner() {
    let cluster = Cluster::start(3, FAST_DETECTION);
    let proxy = Twemproxy::start(&cluster.addrs);
    for i in 0..200 {
        assert_eq!(
            ask(
                proxy.addr,
                &format!("set proxied{i} 0 0 4\r\n{i:04}\r\n"),
                1
            ),
            "STORED\r\n",
            "key {i}"
        );
    }
    for i in 0..200 {
        assert_eq!(
            ask(proxy.addr, &format!("get proxied{i}\r\n"), 1),
            format!("VALUE proxied{i} 0 4\r\n{i:04}\r\nEND\r\n")
        );
    }
    assert_eq!(
        cluster.sum_cluster_stat("forwarded"),
        0,
        "a request missed its owner"
    );
    // And each node holds a share of the keys.
    for addr in &cluster.addrs {
        let items: u64 = mcstore_e2e::cluster::stats(*addr, "").unwrap()["curr_items"]
            .parse()
            .unwrap();
        assert!(items > 20, "{addr} holds {items} of 200 keys");
    }
}

#[test]
fn pymemcache_hash_client_works_through_forwarding() {
    let cluster = Cluster::start(3, FAST_DETECTION);
    let ports: Vec<String> = cluster.addrs.iter().map(|a| a.port().to_string()).collect();
    match run_python(
        "tests/python/hash_client_exercise.py",
        &ports,
        Duration::from_secs(120),
    ) {
        Ok(output) => println!("{output}"),
        Err(failure) => panic!("{failure}"),
    }
    assert!(cluster.sum_cluster_stat("forwarded") > 0);
    assert_eq!(cluster.sum_cluster_stat("forward_errors"), 0);
}

#[test]
fn twemproxy_with_auto_eject_finds_every_key_after_a_node_dies() {
    let mut cluster = Cluster::start(3, FAST_DETECTION);
    let proxy = Twemproxy::start_with(
        &cluster.addrs,
        "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n",
    );
    for i in 0..150 {
        assert_eq!(
            ask(proxy.addr, &format!("set eject{i} 0 0 4\r\n{i:04}\r\n"), 1),
            "STORED\r\n"
        );
    }
    assert_eq!(cluster.sum_cluster_stat("forwarded"), 0);
    cluster.wait_replicated();
    cluster.nodes[1].kill9();
    // The first request for the dead node fails and ejects it; after that
    // twemproxy sends its keys to the next server, the keys' second replica.
    for i in 0..150 {
        let expected = format!("VALUE eject{i} 0 4\r\n{i:04}\r\nEND\r\n");
        let mut reply = String::new();
        for _attempt in 0..3 {
            reply = ask(proxy.addr, &format!("get eject{i}\r\n"), 1);
            if reply == expected {
                break;
            }
        }
        assert_eq!(reply, expected, "key {i} after the node died");
    }
}

#[test]
fn pymemcache_hash_client_reads_every_key_after_a_node_dies() {
    let mut cluster = Cluster::start(3, FAST_DETECTION);
    let ports: Vec<String> = cluster.addrs.iter().map(|a| a.port().to_string()).collect();
    let run = |phase: &str| {
        let mut args = vec![phase.to_string()];
        args.extend(ports.iter().cloned());
        match run_python(
            "tests/python/hash_client_failover.py",
            &args,
            Duration::from_secs(120),
        ) {
            Ok(output) => println!("{output}"),
            Err(failure) => panic!("{failure}"),
        }
    };
    run("write");
    cluster.wait_replicated();
    cluster.nodes[2].kill9();
    run("read");
}
