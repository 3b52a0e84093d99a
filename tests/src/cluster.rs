//! Clusters of real mcstore nodes on loopback for the end-to-end tests.
//!
//! [`Cluster::start`] picks a free port for every node first, then starts
//! each node seeded with every address, so any node can be killed and
//! restarted on its address; [`Cluster::wait_for`] waits (bounded) on a
//! condition read from `stats cluster`, never on a fixed sleep. Every node
//! is killed and its data directory removed when the cluster is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::{exchange, free_port, Mcstore};

/// How long a cluster may take to converge or to notice a change.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Running nodes (some may be stopped by a test).
pub struct Cluster {
    /// The nodes, in start order.
    pub nodes: Vec<Mcstore>,
    /// Every node's address, in start order.
    pub addrs: Vec<SocketAddr>,
    /// Every node's name on the ring (its address unless it advertises
    /// another, e.g. a fault proxy's).
    pub advertised: Vec<String>,
}

/// Faster failure detection than the defaults, for tests that do not check
/// the default bound.
pub const FAST_DETECTION: &[&str] = &["--probe-interval", "200ms", "--suspect-timeout", "800ms"];

/// A fresh data directory for node `index`, with a node id whose low 16
/// bits (its cas slot) are `index + 1`: the nodes of a test cluster never
/// share a slot, so their cas uniques never coincide (in production two
/// random ids share one with a chance of about 1 in 65536 per pair, which
/// only makes two keys' uniques equal: harmless, cas is per key).
fn node_dir(index: usize) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mcstore-e2e-")
        .tempdir()
        .expect("create a temporary data directory");
    let id = (fastrand::u64(1..u64::MAX >> 16) << 16) | (index as u64 + 1);
    std::fs::write(dir.path().join("NODE_ID"), format!("{id:016x}\n")).expect("write NODE_ID");
    dir
}

/// `stats <group>` of a node as name -> value.
pub fn stats(addr: SocketAddr, group: &str) -> Result<BTreeMap<String, String>, String> {
    let request = if group.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {group}\r\n")
    };
    let reply = exchange(addr, request.as_bytes(), 1).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&reply);
    if !text.ends_with("END\r\n") {
        return Err(format!("stats {group} reply: {text:?}"));
    }
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("STAT "))
        .filter_map(|line| line.split_once(' '))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect())
}

/// Sends `input` to `addr` and returns the first `replies` replies as text.
pub fn ask(addr: SocketAddr, input: &str, replies: usize) -> String {
    String::from_utf8_lossy(&exchange(addr, input.as_bytes(), replies).expect("exchange"))
        .into_owned()
}

/// The value `get <key>` through `addr` returns, `None` on a miss; panics
/// on anything else.
pub fn value(addr: SocketAddr, key: &str) -> Option<String> {
    let reply = ask(addr, &format!("get {key}\r\n"), 1);
    let mut lines = reply.split("\r\n");
    match lines.next() {
        Some("END") => None,
        Some(header) if header.starts_with("VALUE ") => lines.next().map(str::to_string),
        other => panic!("get {key} through {addr}: {other:?} in {reply:?}"),
    }
}

/// The members a node sees: address -> state.
pub fn members(addr: SocketAddr) -> BTreeMap<String, String> {
    stats(addr, "cluster")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, state)| Some((name.strip_prefix("node:")?.to_string(), state)))
        .collect()
}

/// Waits until `condition` holds, at most `timeout`; panics with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

impl Cluster {
    /// Starts `n` nodes, every one seeded with every address, with `args`,
    /// and waits until every node sees every node alive. Ports are picked
    /// in advance; a start that loses a port race is retried with new ones.
    pub fn start(n: usize, args: &[&str]) -> Cluster {
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let order: Vec<usize> = (0..n).collect();
            let all =
                |_: usize, addrs: &[SocketAddr]| addrs.iter().map(|a| a.to_string()).collect();
            match Cluster::start_with_seeds(n, args, &order, all) {
                Ok(cluster) => {
                    cluster.wait_converged();
                    return cluster;
                }
                Err(err) => last_error = err,
            }
        }
        panic!("could not start a {n}-node cluster: {last_error}");
    }

    /// Starts `n` nodes in the order `order` gives (a permutation of
    /// `0..n`), each seeded with `seeds(index, addrs)`; does not wait.
    pub fn start_with_seeds(
        n: usize,
        args: &[&str],
        order: &[usize],
        seeds: impl Fn(usize, &[SocketAddr]) -> Vec<String>,
    ) -> Result<Cluster, String> {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        let mut started: Vec<Option<Mcstore>> = (0..n).map(|_| None).collect();
        for &index in order {
            let seed_list = seeds(index, &addrs).join(",");
            let mut node_args = vec!["--seeds", seed_list.as_str()];
            node_args.extend_from_slice(args);
            let node =
                Mcstore::start_in_at(node_dir(index), &addrs[index].to_string(), &node_args)?;
            started[index] = Some(node);
        }
        Ok(Cluster {
            nodes: started
                .into_iter()
                .map(|n| n.expect("every node started"))
                .collect(),
            advertised: addrs.iter().map(|a| a.to_string()).collect(),
            addrs,
        })
    }

    /// Starts `n` nodes, node `i` listening on 127.0.0.`i+1` behind a fault
    /// proxy on 127.0.1.`i+1` that it advertises (and every node is seeded
    /// with), so that links between nodes can be cut; waits until the
    /// cluster converges.
    pub fn start_behind_proxies(
        n: usize,
        args: &[&str],
    ) -> (Cluster, Vec<crate::faults::LinkProxy>) {
        let ips: Vec<std::net::Ipv4Addr> = (0..n)
            .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i as u8 + 1))
            .collect();
        let addrs: Vec<SocketAddr> = ips
            .iter()
            .map(|ip| {
                let port = std::net::TcpListener::bind((*ip, 0))
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                SocketAddr::from((*ip, port))
            })
            .collect();
        let proxies: Vec<crate::faults::LinkProxy> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                crate::faults::LinkProxy::start(
                    std::net::Ipv4Addr::new(127, 0, 1, i as u8 + 1),
                    *addr,
                )
            })
            .collect();
        let advertised: Vec<String> = proxies.iter().map(|p| p.addr.to_string()).collect();
        let seeds = advertised.join(",");
        let nodes = (0..n)
            .map(|i| {
                let mut node_args = vec![
                    "--seeds",
                    seeds.as_str(),
                    "--advertise",
                    advertised[i].as_str(),
                ];
                node_args.extend_from_slice(args);
                Mcstore::start_in_at(node_dir(i), &addrs[i].to_string(), &node_args)
                    .expect("start a node")
            })
            .collect();
        let cluster = Cluster {
            nodes,
            addrs,
            advertised,
        };
        cluster.wait_converged();
        (cluster, proxies)
    }

    /// Starts one more node on a fresh data directory, seeded with every
    /// address; it joins (`joining`, then `alive`). Returns its index; does
    /// not wait.
    pub fn add_node(&mut self, args: &[&str]) -> usize {
        let index = self.nodes.len();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut seeds: Vec<String> = self.advertised.clone();
        seeds.push(addr.to_string());
        let seed_list = seeds.join(",");
        let mut node_args = vec!["--seeds", seed_list.as_str()];
        node_args.extend_from_slice(args);
        let node = Mcstore::start_in_at(node_dir(index), &addr.to_string(), &node_args)
            .expect("start the new node");
        self.nodes.push(node);
        self.addrs.push(addr);
        self.advertised.push(addr.to_string());
        index
    }

    /// Waits until every running node sees every running node alive.
    pub fn wait_converged(&self) {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        let converged = || {
            running.iter().all(|&i| {
                let seen = members(self.addrs[i]);
                running
                    .iter()
                    .all(|&j| seen.get(&self.advertised[j]).map(String::as_str) == Some("alive"))
            })
        };
        let started = Instant::now();
        while !converged() {
            if started.elapsed() > CLUSTER_TIMEOUT {
                panic!(
                    "timed out after {CLUSTER_TIMEOUT:?} waiting for the cluster to converge:\n{}",
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// What every running node sees (members and its peers' progress), and
    /// the end of its log: for the message of a failed wait.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_running() {
                out.push_str(&format!("node {i} ({}): stopped\n", self.advertised[i]));
                continue;
            }
            let seen: Vec<String> = stats(self.addrs[i], "cluster")
                .unwrap_or_default()
                .into_iter()
                .filter(|(name, _)| name.starts_with("node:") || name.ends_with(":transfer"))
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            let log = self.nodes[i].stderr();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            out.push_str(&format!(
                "node {i} ({}): {}\n  log: {}\n",
                self.advertised[i],
                seen.join(" "),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n       ")
            ));
        }
        out
    }

    /// Waits until every running node other than `subject` sees `subject`
    /// in `state`; returns how long it took.
    pub fn wait_state(&self, subject: usize, state: &str) -> Duration {
        let name = self.advertised[subject].clone();
        let observers: Vec<SocketAddr> = (0..self.nodes.len())
            .filter(|&i| i != subject && self.nodes[i].is_running())
            .map(|i| self.addrs[i])
            .collect();
        wait_until(
            &format!("every node to see {name} {state}"),
            CLUSTER_TIMEOUT,
            || {
                observers
                    .iter()
                    .all(|&o| members(o).get(&name).map(String::as_str) == Some(state))
            },
        )
    }

    /// A counter of `stats cluster` summed over the running nodes.
    pub fn sum_cluster_stat(&self, name: &str) -> u64 {
        self.running_addrs()
            .into_iter()
            .map(|addr| {
                stats(addr, "cluster")
                    .ok()
                    .and_then(|s| s.get(name).and_then(|v| v.parse().ok()))
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Waits until every running node has shipped everything to every
    /// running peer (`peer:<addr>:pending 0`).
    pub fn wait_replicated(&self) {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        wait_until("replication to catch up", CLUSTER_TIMEOUT, || {
            running.iter().all(|&i| {
                let seen = stats(self.addrs[i], "cluster").unwrap_or_default();
                running.iter().filter(|&&j| j != i).all(|&j| {
                    let peer = &self.advertised[j];
                    seen.get(&format!("peer:{peer}:pending"))
                        .map(String::as_str)
                        == Some("0")
                })
            })
        });
    }

    /// `curr_items` summed over the running nodes.
    pub fn total_items(&self) -> u64 {
        self.running_addrs()
            .into_iter()
            .map(|addr| {
                stats(addr, "")
                    .ok()
                    .and_then(|s| s.get("curr_items").and_then(|v| v.parse().ok()))
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The indices of the nodes that hold `key`'s replicas (the same ketama
    /// ring as the nodes build), owner first.
    pub fn replicas_of(&self, key: &[u8], replication_factor: usize) -> Vec<usize> {
        let all: Vec<usize> = (0..self.advertised.len()).collect();
        self.replicas_among(key, replication_factor, &all)
    }

    /// As [`Cluster::replicas_of`], on the ring of the nodes `members` only
    /// (after a node left or was removed, or before one joined).
    pub fn replicas_among(
        &self,
        key: &[u8],
        replication_factor: usize,
        members: &[usize],
    ) -> Vec<usize> {
        let mut by_address: Vec<(String, usize)> = members
            .iter()
            .map(|&i| (self.advertised[i].clone(), i))
            .collect();
        by_address.sort();
        let ring = mcstore_cluster::Ring::new(
            by_address
                .iter()
                .map(|(addr, _)| {
                    let (host, port) = addr.rsplit_once(':').expect("host:port");
                    mcstore_cluster::ServerSpec::new(host, port.parse().unwrap(), 1)
                })
                .collect(),
        )
        .expect("a ring");
        ring.replicas(key, replication_factor)
            .into_iter()
            .map(|index| by_address[index].1)
            .collect()
    }

    /// The addresses of the running nodes.
    pub fn running_addrs(&self) -> Vec<SocketAddr> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .map(|i| self.addrs[i])
            .collect()
    }
}
