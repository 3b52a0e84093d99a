//! The cluster as one node routes with it: the ketama ring of the members
//! that joined and have not left, each key's replica set (its owner and the
//! next distinct members clockwise), and where a request for a key goes.
//!
//! Routing rule: to the key's first live replica (alive or suspect; a dead
//! member stays on the ring but is skipped, so a transient failure moves no
//! data, and a ketama client that ejects the dead member sends its keys to
//! exactly that next replica). A read may be answered by this node when it
//! holds a replica and `--replica-reads` is on. The candidates after the
//! first are where a request goes when the first cannot be reached.

use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::membership::{Member, MemberState, MembershipView};
use crate::ring::Ring;

/// Where a request for a key can be served, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This node.
    Local,
    /// The peer advertised at this address.
    Peer(String),
}

pub use crate::membership::{STATUS_JOINING, STATUS_LEAVING, STATUS_READY};

/// One ring: the members on it, in ring index order, and the ketama ring.
#[derive(Debug, Default)]
pub struct RingOf {
    /// The ring's servers, in ring index order (advertised-address order).
    pub members: Vec<Member>,
    /// The ring; `None` when it has no member.
    pub ring: Option<Ring>,
}

impl RingOf {
    fn new(members: Vec<Member>) -> RingOf {
        let ring = if members.is_empty() {
            None
        } else {
            let view = MembershipView::from_members(members.iter().cloned());
            match view.ring() {
                Ok(ring) => Some(ring),
                Err(err) => {
                    tracing::warn!(cause = %err, "no ring can be built from the membership");
                    None
                }
            }
        };
        RingOf { members, ring }
    }

    /// The key's replica set, at most `count` members.
    pub fn replicas(&self, key: &[u8], count: usize) -> Vec<&Member> {
        match &self.ring {
            Some(ring) => ring
                .replicas(key, count)
                .into_iter()
                .map(|index| &self.members[index])
                .collect(),
            None => Vec::new(),
        }
    }

    /// Whether `peer` is among the replicas of the key whose
    /// [`crate::ring::key_hash`] is `hash`.
    fn places_on(&self, hash: u32, count: usize, peer: &str) -> bool {
        self.ring.as_ref().is_some_and(|ring| {
            ring.replicas_from(ring.segment_of_hash(hash), count)
                .into_iter()
                .any(|index| self.members[index].advertise == peer)
        })
    }

    /// A fingerprint of the ring (its members and weights): two nodes with
    /// the same fingerprint place every key alike.
    pub fn fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for member in &self.members {
            for byte in member.advertise.bytes().chain(member.weight.to_le_bytes()) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            hash ^= 0xff;
        }
        hash
    }
}

/// A snapshot of the cluster as routing sees it: the membership view, the
/// routing ring (members that joined and have not left, without those still
/// joining) and the future ring (members that will hold data once the joins
/// and leaves under way are done: joining ones in, leaving ones out).
#[derive(Debug)]
pub struct Snapshot {
    view: MembershipView,
    routing: RingOf,
    future: RingOf,
    replication_factor: usize,
}

impl Snapshot {
    /// The snapshot of a view.
    pub fn new(view: MembershipView, replication_factor: usize) -> Snapshot {
        let on_ring = |m: &&Member| m.state.on_ring();
        let routing = view
            .members()
            .iter()
            .filter(on_ring)
            .filter(|m| m.status != STATUS_JOINING)
            .cloned()
            .collect();
        let future = view
            .members()
            .iter()
            .filter(on_ring)
            .filter(|m| m.status != STATUS_LEAVING)
            .cloned()
            .collect();
        Snapshot {
            view,
            routing: RingOf::new(routing),
            future: RingOf::new(future),
            replication_factor: replication_factor.max(1),
        }
    }

    /// The membership view.
    pub fn view(&self) -> &MembershipView {
        &self.view
    }

    /// The members on the routing ring.
    pub fn ring_members(&self) -> &[Member] {
        &self.routing.members
    }

    /// The routing ring.
    pub fn routing(&self) -> &RingOf {
        &self.routing
    }

    /// The future ring.
    pub fn future(&self) -> &RingOf {
        &self.future
    }

    /// Whether a join or a leave is under way (the rings differ).
    pub fn changing(&self) -> bool {
        self.routing.fingerprint() != self.future.fingerprint()
    }

    /// The replica set size.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// The key's replica set on the routing ring: its owner, then the next
    /// distinct members clockwise, at most the replication factor.
    pub fn replicas(&self, key: &[u8]) -> Vec<&Member> {
        self.routing.replicas(key, self.replication_factor)
    }

    /// The state of the member advertised as `peer`, if it is known.
    pub fn state_of(&self, peer: &str) -> Option<MemberState> {
        self.view.get(peer).map(|m| m.state)
    }

    /// Whether `peer` holds, or is to hold, a replica of the key: on the
    /// routing ring or on the future one.
    pub fn is_replica(&self, key: &[u8], peer: &str) -> bool {
        self.is_replica_at(crate::ring::key_hash(key), peer)
    }

    /// [`Snapshot::is_replica`] for the key whose [`crate::ring::key_hash`]
    /// is `hash`: one hash places a key on both rings, and on another
    /// snapshot's.
    pub fn is_replica_at(&self, hash: u32, peer: &str) -> bool {
        let count = self.replication_factor;
        self.routing.places_on(hash, count, peer) || self.future.places_on(hash, count, peer)
    }

    /// Whether this node holds a replica of the key.
    pub fn holds(&self, key: &[u8]) -> bool {
        self.replicas(key).iter().any(|m| m.is_self)
    }

    /// Where a request for `key` goes, best first; empty when no replica
    /// is alive. `local_read`: a read this node may answer if it holds a
    /// replica (`--replica-reads`).
    pub fn route(&self, key: &[u8], local_read: bool) -> Vec<Target> {
        let replicas = self.replicas(key);
        if local_read && replicas.iter().any(|m| m.is_self) {
            return vec![Target::Local];
        }
        replicas
            .into_iter()
            .filter(|m| m.is_self || matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .map(|m| {
                if m.is_self {
                    Target::Local
                } else {
                    Target::Peer(m.advertise.clone())
                }
            })
            .collect()
    }
}

/// The node's current snapshot, replaced whenever the membership changes.
pub struct Topology {
    current: RwLock<Arc<Snapshot>>,
    changes: watch::Sender<Arc<Snapshot>>,
    replication_factor: usize,
}

impl Topology {
    /// A topology of `view`.
    pub fn new(view: MembershipView, replication_factor: usize) -> Arc<Topology> {
        let snapshot = Arc::new(Snapshot::new(view, replication_factor));
        Arc::new(Topology {
            current: RwLock::new(snapshot.clone()),
            changes: watch::channel(snapshot).0,
            replication_factor,
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("topology lock").clone()
    }

    /// A receiver that sees every new snapshot.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }

    /// Replaces the snapshot with one of `view`.
    pub fn update(&self, view: MembershipView) {
        let snapshot = Arc::new(Snapshot::new(view, self.replication_factor));
        *self.current.write().expect("topology lock") = snapshot.clone();
        self.changes.send_replace(snapshot);
    }

    /// Follows a membership watch until it closes (spawn it).
    pub async fn follow(self: Arc<Topology>, mut views: watch::Receiver<MembershipView>) {
        loop {
            let view = views.borrow_and_update().clone();
            self.update(view);
            if views.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(addr: &str, state: MemberState, is_self: bool) -> Member {
        let mut member = Member::new(addr, 1, 1, "ready", state);
        member.is_self = is_self;
        member
    }

    fn key_owned_by(snapshot: &Snapshot, owner: &str) -> Vec<u8> {
        (0..1000)
            .map(|i| format!("key-{i}").into_bytes())
            .find(|key| snapshot.replicas(key)[0].advertise == owner)
            .expect("some key is owned by every member")
    }

    #[test]
    fn a_replica_is_one_on_the_routing_or_the_future_ring() {
        let mut joining = member("127.0.0.1:4", MemberState::Alive, false);
        joining.status = STATUS_JOINING.to_string();
        let view = MembershipView::from_members([
            member("127.0.0.1:1", MemberState::Alive, true),
            member("127.0.0.1:2", MemberState::Alive, false),
            member("127.0.0.1:3", MemberState::Alive, false),
            joining,
        ]);
        let snapshot = Snapshot::new(view, 2);
        let mut joiner_keys = 0;
        for i in 0..2000 {
            let key = format!("key-{i}").into_bytes();
            for peer in ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"] {
                let on = |ring: &RingOf| ring.replicas(&key, 2).iter().any(|m| m.advertise == peer);
                let expected = on(snapshot.routing()) || on(snapshot.future());
                assert_eq!(snapshot.is_replica(&key, peer), expected, "{peer}");
                joiner_keys += usize::from(expected && peer == "127.0.0.1:4");
            }
        }
        assert!(joiner_keys > 0, "the joiner is on the future ring only");
        assert!(snapshot
            .ring_members()
            .iter()
            .all(|m| m.advertise != "127.0.0.1:4"));
    }

    #[test]
    fn routes_go_to_the_first_live_replica() {
        let view = MembershipView::from_members([
            member("127.0.0.1:1", MemberState::Alive, true),
            member("127.0.0.1:2", MemberState::Alive, false),
            member("127.0.0.1:3", MemberState::Dead, false),
        ]);
        let snapshot = Snapshot::new(view, 2);
        let mine = key_owned_by(&snapshot, "127.0.0.1:1");
        assert_eq!(snapshot.route(&mine, false)[0], Target::Local);
        let theirs = key_owned_by(&snapshot, "127.0.0.1:2");
        assert_eq!(
            snapshot.route(&theirs, false)[0],
            Target::Peer("127.0.0.1:2".into())
        );
        // The dead owner's keys go to its next replica.
        let dead = key_owned_by(&snapshot, "127.0.0.1:3");
        let replicas = snapshot.replicas(&dead);
        assert_eq!(replicas.len(), 2);
        let route = snapshot.route(&dead, false);
        assert_eq!(route.len(), 1);
        assert_eq!(
            route[0],
            if replicas[1].is_self {
                Target::Local
            } else {
                Target::Peer(replicas[1].advertise.clone())
            }
        );
    }

    #[test]
    fn replica_reads_are_answered_locally_and_a_lone_node_serves_everything() {
        let view = MembershipView::from_members([
            member("127.0.0.1:1", MemberState::Alive, true),
            member("127.0.0.1:2", MemberState::Alive, false),
        ]);
        let snapshot = Snapshot::new(view, 2);
        let theirs = key_owned_by(&snapshot, "127.0.0.1:2");
        assert!(snapshot.holds(&theirs));
        assert_eq!(snapshot.route(&theirs, true), vec![Target::Local]);
        assert_eq!(
            snapshot.route(&theirs, false),
            vec![Target::Peer("127.0.0.1:2".into()), Target::Local]
        );
        let alone = Snapshot::new(
            MembershipView::from_members([member("127.0.0.1:1", MemberState::Alive, true)]),
            2,
        );
        assert_eq!(alone.route(b"anything", false), vec![Target::Local]);
    }
}
