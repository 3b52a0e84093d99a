//! Where keys live, as the client sees it: the servers, their states and
//! the ketama ring over them.
//!
//! In a cluster the topology is read from `stats cluster` (the
//! `node:<addr> <state>`, `weight:<addr> <weight>` and `replication_factor`
//! lines) and the ring is built exactly as the nodes build theirs, by
//! [`mcstore_cluster::ring_from_view`] over the members that have not left,
//! so the client's owner of a key is the nodes' owner. Over a static server
//! list the ring is [`mcstore_cluster::Ring::new`] over the list as given,
//! which is libmemcached's `KETAMA_WEIGHTED` placement.

use std::collections::BTreeMap;

use mcstore_cluster::topology::{Snapshot, STATUS_READY};
use mcstore_cluster::{Member, MemberState, MembershipView, Ring, ServerSpec};

use crate::error::{Error, Result};

/// How the client sees one server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Node {
    /// Where the client connects (a member's advertised `host:port`).
    pub addr: String,
    /// The member's state as the node the topology was read from reported
    /// it; always [`MemberState::Alive`] for a static server list.
    pub state: MemberState,
    /// Its ketama weight.
    pub weight: u32,
}

impl Node {
    /// Whether requests may be sent to it (alive or suspect).
    pub fn is_live(&self) -> bool {
        matches!(self.state, MemberState::Alive | MemberState::Suspect)
    }
}

/// A snapshot of where keys live.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Every known server (members that left included), sorted by address
    /// in a cluster, in the configured order for a static list.
    nodes: Vec<Node>,
    /// Indices into `nodes` of the ring's servers, in ring index order.
    ring_nodes: Vec<usize>,
    ring: Ring,
    replication_factor: usize,
    /// Read from a cluster's `stats cluster` (rather than a static list).
    clustered: bool,
}

/// A server of a static list: where to connect and how to place keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `host:port` to connect to.
    pub addr: String,
    /// The ring's view of it: the `host`, `port`, `weight` and optional
    /// `name` that ketama hashes.
    pub spec: ServerSpec,
}

impl std::str::FromStr for ServerConfig {
    type Err = Error;

    /// `host:port`, `host:port:weight`, or twemproxy's `host:port:weight
    /// name` (keys are then placed by `name` rather than by address).
    fn from_str(text: &str) -> Result<ServerConfig> {
        let bad = || {
            Error::Client(format!(
                "server must be host:port[:weight [name]], got {text:?}"
            ))
        };
        let (address, name) = match text.trim().split_once(' ') {
            Some((address, name)) => (address, Some(name.trim())),
            None => (text.trim(), None),
        };
        let (hostport, weight) = match address.rsplit_once(':') {
            Some((rest, weight)) if rest.contains(':') && !rest.ends_with(']') => {
                (rest, weight.parse().map_err(|_| bad())?)
            }
            _ => (address, 1),
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        let mut spec = ServerSpec::new(host, port, weight);
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            spec = spec.with_name(name);
        }
        Ok(ServerConfig {
            addr: hostport.to_owned(),
            spec,
        })
    }
}

impl Topology {
    /// The topology of a static server list (replication factor 1).
    pub fn from_servers(servers: &[ServerConfig]) -> Result<Topology> {
        let ring = Ring::new(servers.iter().map(|s| s.spec.clone()).collect())
            .map_err(|err| Error::Client(err.to_string()))?;
        Ok(Topology {
            nodes: servers
                .iter()
                .map(|s| Node {
                    addr: s.addr.clone(),
                    state: MemberState::Alive,
                    weight: s.spec.weight,
                })
                .collect(),
            ring_nodes: (0..servers.len()).collect(),
            ring,
            replication_factor: 1,
            clustered: false,
        })
    }

    /// The topology a `stats cluster` answer describes (name -> value, in
    /// any order).
    pub fn from_cluster_stats<'a>(
        stats: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Topology> {
        let mut states = BTreeMap::new();
        let mut statuses = BTreeMap::new();
        let mut weights = BTreeMap::new();
        let mut replication_factor = 1;
        for (name, value) in stats {
            if let Some(addr) = name.strip_prefix("node:") {
                // A live member joining or leaving shows its status.
                let state = match value {
                    "joining" | "leaving" => {
                        statuses.insert(addr.to_owned(), value);
                        MemberState::Alive
                    }
                    "alive" => MemberState::Alive,
                    "suspect" => MemberState::Suspect,
                    "dead" => MemberState::Dead,
                    "left" => MemberState::Left,
                    other => {
                        return Err(Error::Server(format!(
                            "stats cluster: unknown state {other:?} of {addr}"
                        )))
                    }
                };
                states.insert(addr.to_owned(), state);
            } else if let Some(addr) = name.strip_prefix("weight:") {
                let weight = value.parse().map_err(|_| {
                    Error::Server(format!("stats cluster: bad weight {value:?} of {addr}"))
                })?;
                weights.insert(addr.to_owned(), weight);
            } else if name == "replication_factor" {
                replication_factor = value.parse().map_err(|_| {
                    Error::Server(format!("stats cluster: bad replication_factor {value:?}"))
                })?;
            }
        }
        let view = MembershipView::from_members(states.iter().map(|(addr, state)| {
            let weight = weights.get(addr).copied().unwrap_or(1);
            let status = statuses.get(addr).copied().unwrap_or(STATUS_READY);
            Member::new(addr.clone(), 0, weight, status, *state)
        }));
        // Routed as the nodes route: a joining member is not on the ring yet.
        let snapshot = Snapshot::new(view.clone(), replication_factor);
        let ring = snapshot.routing().ring.clone().ok_or_else(|| {
            Error::NoNodeAvailable("no ring: no member has joined and not left".into())
        })?;
        let nodes: Vec<Node> = view
            .members()
            .iter()
            .map(|m| Node {
                addr: m.advertise.clone(),
                state: m.state,
                weight: m.weight,
            })
            .collect();
        let ring_nodes = snapshot
            .ring_members()
            .iter()
            .map(|m| {
                nodes
                    .iter()
                    .position(|n| n.addr == m.advertise)
                    .expect("a ring member is a member")
            })
            .collect();
        Ok(Topology {
            nodes,
            ring_nodes,
            ring,
            replication_factor: replication_factor.max(1),
            clustered: true,
        })
    }

    /// Every known server.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The servers on the ring, in ring index order.
    pub fn ring_nodes(&self) -> impl Iterator<Item = &Node> {
        self.ring_nodes.iter().map(|&i| &self.nodes[i])
    }

    /// The replica set size (1 for a static list).
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// Whether the topology came from a cluster's `stats cluster`.
    pub fn is_cluster(&self) -> bool {
        self.clustered
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The key's owner.
    pub fn owner(&self, key: &[u8]) -> &Node {
        &self.nodes[self.ring_nodes[self.ring.server_index(key)]]
    }

    /// The key's replica set: its owner, then the next distinct servers
    /// clockwise, [`Topology::replication_factor`] of them at most.
    pub fn replicas(&self, key: &[u8]) -> Vec<&Node> {
        self.ring
            .replicas(key, self.replication_factor)
            .into_iter()
            .map(|index| &self.nodes[self.ring_nodes[index]])
            .collect()
    }

    /// Whether `addr` is the first live replica of `key`, the one node
    /// that reports it in a cluster-wide listing (every replica stores it).
    pub fn is_first_live_replica(&self, key: &[u8], addr: &str) -> bool {
        let replicas = self.replicas(key);
        let first = replicas.iter().find(|n| n.is_live()).or(replicas.first());
        first.is_some_and(|n| n.addr == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse_like_libmemcached_and_twemproxy() {
        let plain: ServerConfig = "10.0.0.1:11211".parse().unwrap();
        assert_eq!(plain.addr, "10.0.0.1:11211");
        assert_eq!(plain.spec, ServerSpec::new("10.0.0.1", 11211, 1));
        let weighted: ServerConfig = "h:1234:5".parse().unwrap();
        assert_eq!(weighted.addr, "h:1234");
        assert_eq!(weighted.spec.weight, 5);
        let named: ServerConfig = "127.0.0.1:4000:600 10.0.1.1".parse().unwrap();
        assert_eq!(named.addr, "127.0.0.1:4000");
        assert_eq!(named.spec.point_prefix(), "10.0.1.1");
        for bad in ["nohost", ":1", "h:x", "h:1:x"] {
            assert!(bad.parse::<ServerConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cluster_ring_is_the_nodes_ring() {
        let stats = [
            ("node:127.0.0.1:3", "dead"),
            ("node:127.0.0.1:1", "alive"),
            ("node:127.0.0.1:2", "alive"),
            ("node:127.0.0.1:4", "left"),
            ("node:127.0.0.1:5", "joining"),
            ("weight:127.0.0.1:2", "3"),
            ("replication_factor", "2"),
            ("forwarded", "0"),
        ];
        let topology = Topology::from_cluster_stats(stats).unwrap();
        assert_eq!(topology.nodes().len(), 5);
        assert_eq!(
            topology.ring_nodes().count(),
            3,
            "left and joining are off the ring"
        );
        let view = MembershipView::from_members([
            Member::new("127.0.0.1:1", 1, 1, "ready", MemberState::Alive),
            Member::new("127.0.0.1:2", 1, 3, "ready", MemberState::Alive),
            Member::new("127.0.0.1:3", 1, 1, "ready", MemberState::Dead),
        ]);
        let nodes = mcstore_cluster::topology::Snapshot::new(view, 2);
        for i in 0..500 {
            let key = format!("key-{i}");
            let theirs: Vec<&str> = nodes
                .replicas(key.as_bytes())
                .iter()
                .map(|m| m.advertise.as_str())
                .collect();
            let ours: Vec<&str> = topology
                .replicas(key.as_bytes())
                .iter()
                .map(|n| n.addr.as_str())
                .collect();
            assert_eq!(ours, theirs, "{key}");
        }
    }
}
