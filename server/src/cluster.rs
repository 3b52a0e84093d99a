//! This node's part in a cluster: its membership, the topology it routes
//! with, its connections to peers and the cluster counters of `stats
//! cluster`.
//!
//! A node started without `--seeds` has no [`ClusterNode`]: it is a one-node
//! cluster and serves every key itself, exactly as a single node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use mcstore_cluster::antientropy::AntiEntropy;
use mcstore_cluster::membership::Membership;
use mcstore_cluster::peer::{Dialect, ForwardCall, PeerPool};
use mcstore_cluster::replication::Replicator;
use mcstore_cluster::topology::{Target, Topology};

/// The counters of `stats cluster`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Requests this node forwarded to a peer.
    pub forwarded: AtomicU64,
    /// Forwarded requests that got no reply from a peer (each try counts).
    pub forward_errors: AtomicU64,
    /// Peer connections refused (failed handshake, garbage).
    pub peer_rejected: AtomicU64,
    /// Forwarded requests this node executed for its peers.
    pub executed_for_peers: AtomicU64,
    /// Records this node received by range transfers (how far a join is).
    pub transfer_keys_received: AtomicU64,
    /// Bytes (keys and records) received by range transfers.
    pub transfer_bytes_received: AtomicU64,
    /// Records anti-entropy rounds of peers sent that this node kept
    /// (newer than what it held, or what it lacked).
    pub keys_repaired: AtomicU64,
}

/// This node in its cluster.
pub struct ClusterNode {
    /// This node's advertised address (its name on the ring).
    pub advertise: String,
    /// Gossip membership.
    pub membership: Membership,
    /// The ring and routes.
    pub topology: Arc<Topology>,
    /// Connections to peers.
    pub peers: Arc<PeerPool>,
    /// Shipping writes to the other replicas.
    pub replicator: Arc<Replicator>,
    /// Digests and repair rounds.
    pub antientropy: Arc<AntiEntropy>,
    /// `--replica-ack one`: how long a write waits for another replica,
    /// if it does.
    pub replica_ack: Option<std::time::Duration>,
    /// The cluster secret, if any.
    pub secret: Option<Vec<u8>>,
    /// `--replica-reads`: a read of a key this node holds a replica of is
    /// answered here.
    pub replica_reads: bool,
    /// Counters.
    pub counters: ClusterCounters,
    /// The data directory (for the `JOINED` marker).
    pub data_dir: std::path::PathBuf,
    /// A leave is under way.
    pub leaving: std::sync::atomic::AtomicBool,
    /// Set when the node has left and should exit.
    exit: tokio::sync::Notify,
}

/// How long a request waits for a node that has just started to hear from
/// its cluster, when it knows no live member yet.
pub const FIRST_VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl ClusterNode {
    /// A node in its cluster, with zeroed counters.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        advertise: String,
        membership: Membership,
        topology: Arc<Topology>,
        peers: Arc<PeerPool>,
        replicator: Arc<Replicator>,
        antientropy: Arc<AntiEntropy>,
        replica_ack: Option<std::time::Duration>,
        secret: Option<Vec<u8>>,
        replica_reads: bool,
        data_dir: std::path::PathBuf,
    ) -> ClusterNode {
        ClusterNode {
            advertise,
            membership,
            topology,
            peers,
            replicator,
            antientropy,
            replica_ack,
            secret,
            replica_reads,
            counters: ClusterCounters::default(),
            data_dir,
            leaving: std::sync::atomic::AtomicBool::new(false),
            exit: tokio::sync::Notify::new(),
        }
    }

    /// Asks the node to exit (it has left the cluster).
    pub fn request_exit(&self) {
        self.exit.notify_one();
    }

    /// Resolves once the node is asked to exit.
    pub async fn exit_requested(&self) {
        self.exit.notified().await
    }

    /// Where a request for `key` goes, best first (empty: no live replica).
    pub fn route(&self, key: &[u8], read: bool) -> Vec<Target> {
        self.topology
            .snapshot()
            .route(key, read && self.replica_reads)
    }

    /// Like [`ClusterNode::route`], but when no replica is alive because
    /// this node has not heard from any other member yet (it has just
    /// started), waits for the membership up to [`FIRST_VIEW_WAIT`] rather
    /// than answer that no replica is alive. Costs what `route` does when
    /// some replica is alive.
    pub async fn route_once_known(&self, key: &[u8], read: bool) -> Vec<Target> {
        let targets = self.route(key, read);
        if !targets.is_empty() {
            return targets;
        }
        let mut changes = self.topology.watch();
        let deadline = tokio::time::Instant::now() + FIRST_VIEW_WAIT;
        loop {
            let targets = self.route(key, read);
            let knows_others = self
                .topology
                .snapshot()
                .view()
                .members()
                .iter()
                .any(|m| !m.is_self && m.state == mcstore_cluster::MemberState::Alive);
            if !targets.is_empty() || knows_others {
                return targets;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return targets,
            }
        }
    }

    /// Sends `request` (in `dialect`) to `peer` on `slot`, counted as
    /// forwarded.
    pub fn forward(
        &self,
        peer: &str,
        slot: usize,
        dialect: Dialect,
        request: Bytes,
    ) -> ForwardCall {
        self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        self.peers.forward(peer, slot, dialect, request)
    }

    /// Counts a forwarded request that got no reply.
    pub fn note_forward_error(&self) {
        self.counters.forward_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends a cluster-wide command (`flush_all`, in `dialect`) on `slot`
    /// to every member on the ring but this node that is not dead, each
    /// counted as forwarded.
    pub fn broadcast(&self, slot: usize, dialect: Dialect, request: Bytes) -> Vec<ForwardCall> {
        self.broadcast_targets()
            .into_iter()
            .map(|peer| self.forward(&peer, slot, dialect, request.clone()))
            .collect()
    }

    /// The peers a cluster-wide command goes to.
    fn broadcast_targets(&self) -> Vec<String> {
        self.topology
            .snapshot()
            .ring_members()
            .iter()
            .filter(|m| !m.is_self)
            .filter(|m| {
                matches!(
                    m.state,
                    mcstore_cluster::MemberState::Alive | mcstore_cluster::MemberState::Suspect
                )
            })
            .map(|m| m.advertise.clone())
            .collect()
    }
}
