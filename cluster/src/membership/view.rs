//! What a node knows about the cluster: members, their states and metadata,
//! and the ketama ring they make.
//!
//! Pure data: the view is rebuilt from foca's member table after every
//! event and published when it differs from the previous one.

use foca::State;
use thiserror::Error;

use super::identity::{split_host_port, NodeId};
use crate::ring::{Ring, RingError, ServerSpec};

/// How this node sees a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Missed a probe; declared dead unless it refutes in time.
    Suspect,
    /// Stopped answering without a goodbye. Still a member: it keeps its
    /// place on the ring.
    Dead,
    /// Left on purpose. No longer on the ring.
    Left,
}

impl MemberState {
    /// Whether a member in this state has a place on the ring (every state
    /// but [`MemberState::Left`]).
    pub fn on_ring(self) -> bool {
        !matches!(self, MemberState::Left)
    }
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        })
    }
}

/// One member of the cluster, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Member {
    /// The advertised `host:port`, exactly as the member was configured
    /// (ketama hashes this text).
    pub advertise: String,
    /// The member's run; a restarted member has a larger one.
    pub generation: u64,
    /// Ketama weight.
    pub weight: u32,
    /// The member's status word (e.g. `joining`, `ready`).
    pub status: String,
    /// Its state as seen from here.
    pub state: MemberState,
    /// This is the local node.
    pub is_self: bool,
}

impl Member {
    /// A member (for building views by hand, e.g. in tests).
    pub fn new(
        advertise: impl Into<String>,
        generation: u64,
        weight: u32,
        status: impl Into<String>,
        state: MemberState,
    ) -> Member {
        Member {
            advertise: advertise.into(),
            generation,
            weight,
            status: status.into(),
            state,
            is_self: false,
        }
    }

    pub(crate) fn from_id(id: &NodeId, state: MemberState, is_self: bool) -> Member {
        Member {
            advertise: id.addr.to_string(),
            generation: id.generation,
            weight: id.weight,
            status: id.status.to_string(),
            state,
            is_self,
        }
    }
}

/// Why a view's ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ViewRingError {
    /// A member's advertised address is not `host:port`.
    #[error("advertised address {0:?} is not host:port")]
    BadAddress(String),
    /// The members on the ring make no ring (none, or all of weight 0).
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// Every member this node knows, itself included, sorted by advertised
/// address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipView {
    members: Vec<Member>,
}

impl MembershipView {
    /// A view of these members (sorted here; for one address, the last given
    /// wins).
    pub fn from_members(members: impl IntoIterator<Item = Member>) -> MembershipView {
        let mut members: Vec<Member> = members.into_iter().collect();
        members.sort_by(|a, b| a.advertise.cmp(&b.advertise));
        members.reverse();
        members.dedup_by(|later, earlier| later.advertise == earlier.advertise);
        members.reverse();
        MembershipView { members }
    }

    /// Builds the view from the local identity and foca's member table
    /// (which may hold stale identities of the local address: skipped).
    pub(crate) fn from_foca<'a>(
        local: &NodeId,
        table: impl Iterator<Item = &'a foca::Member<NodeId>>,
    ) -> MembershipView {
        let local_state = if local.left {
            MemberState::Left
        } else {
            MemberState::Alive
        };
        let mut members = vec![Member::from_id(local, local_state, true)];
        for member in table {
            let id = member.id();
            if id.addr == local.addr {
                continue;
            }
            let state = match (id.left, member.state()) {
                (true, _) => MemberState::Left,
                (false, State::Alive) => MemberState::Alive,
                (false, State::Suspect) => MemberState::Suspect,
                (false, State::Down) => MemberState::Dead,
            };
            members.push(Member::from_id(id, state, false));
        }
        MembershipView::from_members(members)
    }

    /// All members, sorted by advertised address.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member advertised as `advertise`, if known.
    pub fn get(&self, advertise: &str) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.advertise.as_str().cmp(advertise))
            .ok()
            .map(|i| &self.members[i])
    }

    /// The members that have a place on the ring: every one that has not
    /// left (alive, suspect or dead), in advertised-address order.
    pub fn ring_members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.state.on_ring())
    }

    /// The ketama ring of [`MembershipView::ring_members`]; see
    /// [`ring_from_view`].
    pub fn ring(&self) -> Result<Ring, ViewRingError> {
        ring_from_view(self)
    }
}

/// Builds the ketama ring of a view: one server per member that has not
/// left, with its weight, host and port parsed from its advertised address
/// (the host text as written, so it hashes as clients configured it).
/// Servers are indexed in advertised-address order, so every node with the
/// same view builds the same ring.
pub fn ring_from_view(view: &MembershipView) -> Result<Ring, ViewRingError> {
    let servers = view
        .ring_members()
        .map(|m| {
            let (host, port) = split_host_port(&m.advertise)
                .ok_or_else(|| ViewRingError::BadAddress(m.advertise.clone()))?;
            Ok(ServerSpec::new(host, port, m.weight))
        })
        .collect::<Result<Vec<_>, ViewRingError>>()?;
    Ok(Ring::new(servers)?)
}

#[cfg(test)]
mod tests {
    //! The view's ring: who is on it, with which weight and address.

    use super::*;

    fn view() -> MembershipView {
        MembershipView::from_members([
            Member::new("10.0.0.3:11211", 1, 1, "ready", MemberState::Left),
            Member::new("10.0.0.1:11211", 1, 2, "ready", MemberState::Alive),
            Member::new("10.0.0.2:11212", 1, 1, "joining", MemberState::Dead),
            Member::new("10.0.0.4:11211", 1, 1, "ready", MemberState::Suspect),
        ])
    }

    #[test]
    fn ring_holds_every_member_that_has_not_left() {
        let ring = ring_from_view(&view()).unwrap();
        let servers: Vec<_> = ring
            .servers()
            .iter()
            .map(|s| (s.host.as_str(), s.port, s.weight))
            .collect();
        assert_eq!(
            servers,
            [
                ("10.0.0.1", 11211, 2),
                ("10.0.0.2", 11212, 1),
                ("10.0.0.4", 11211, 1)
            ]
        );
    }

    #[test]
    fn ring_matches_one_built_from_the_same_server_list() {
        let expected = Ring::new(vec![
            ServerSpec::new("10.0.0.1", 11211, 2),
            ServerSpec::new("10.0.0.2", 11212, 1),
            ServerSpec::new("10.0.0.4", 11211, 1),
        ])
        .unwrap();
        let ring = view().ring().unwrap();
        assert_eq!(ring.points(), expected.points());
        for i in 0..100 {
            let key = format!("key-{i}");
            assert_eq!(
                ring.server_index(key.as_bytes()),
                expected.server_index(key.as_bytes())
            );
        }
    }

    #[test]
    fn bad_addresses_and_empty_rings_are_errors() {
        let bad = MembershipView::from_members([Member::new(
            "no-port",
            1,
            1,
            "ready",
            MemberState::Alive,
        )]);
        assert_eq!(
            ring_from_view(&bad).unwrap_err(),
            ViewRingError::BadAddress("no-port".into())
        );
        let gone =
            MembershipView::from_members([Member::new("h:1", 1, 1, "ready", MemberState::Left)]);
        assert_eq!(
            ring_from_view(&gone).unwrap_err(),
            ViewRingError::Ring(RingError::NoServers)
        );
    }

    #[test]
    fn views_are_sorted_and_deduplicated_by_address() {
        let v = MembershipView::from_members([
            Member::new("b:1", 1, 1, "ready", MemberState::Alive),
            Member::new("a:1", 1, 1, "ready", MemberState::Alive),
            Member::new("b:1", 2, 1, "ready", MemberState::Alive),
        ]);
        let names: Vec<_> = v.members().iter().map(|m| m.advertise.as_str()).collect();
        assert_eq!(names, ["a:1", "b:1"]);
        assert_eq!(v.get("b:1").unwrap().generation, 2);
        assert!(v.get("c:1").is_none());
    }
}
