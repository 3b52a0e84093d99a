//! The identity a node gossips, and the rules that make a newer one win.
//!
//! foca gossips identities, not metadata: every datagram names its sender and
//! its target by identity, and every membership update carries one. mcstore
//! therefore puts the per-member metadata in the identity itself (advertised
//! address, generation, weight, status word, left flag) and changes identity
//! (foca's `change_identity`) whenever the node changes its metadata. The
//! `version` counter orders the identities a node goes through during one
//! run; the `generation` orders its runs.
//!
//! Pure data, no I/O.

use std::sync::Arc;

use foca::Identity;

/// Longest advertised address, in bytes (it travels in every datagram).
pub const MAX_ADVERTISE_LEN: usize = 255;

/// Longest status word, in bytes.
pub const MAX_STATUS_LEN: usize = 32;

/// The status word of a node that serves its share of the ring.
pub const STATUS_READY: &str = "ready";

/// The status word of a node that is still receiving its data: not on the
/// routing ring yet, already on the future one.
pub const STATUS_JOINING: &str = "joining";

/// The status word of a node handing its data over before it leaves: still
/// on the routing ring, no longer on the future one.
pub const STATUS_LEAVING: &str = "leaving";

/// Checks a status word: 1 to [`MAX_STATUS_LEN`] bytes of ASCII letters,
/// digits, `-`, `_` or `.`.
pub fn valid_status(status: &str) -> bool {
    !status.is_empty()
        && status.len() <= MAX_STATUS_LEN
        && status
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Splits an advertised `host:port` at its last colon; the host is kept as
/// written (an IPv6 host keeps its brackets). `None` if there is no colon,
/// the host is empty or the port is not a `u16`.
pub fn split_host_port(advertise: &str) -> Option<(&str, u16)> {
    let (host, port) = advertise.rsplit_once(':')?;
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// What a node is known by: its foca identity.
///
/// Two identities with the same `addr` are the same member; the one with the
/// larger [`NodeId::precedence`] replaces the other everywhere.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct NodeId {
    /// The advertised `host:port`, exactly as configured (ketama hashes it).
    pub(crate) addr: Arc<str>,
    /// The run: larger after every restart.
    pub(crate) generation: u64,
    /// Bumped by the node on every metadata change and on every rejoin.
    pub(crate) version: u32,
    /// Ketama weight.
    pub(crate) weight: u32,
    /// A small status word (see [`valid_status`]).
    pub(crate) status: Arc<str>,
    /// The node has left the cluster on purpose.
    pub(crate) left: bool,
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}#{}.{}(w{},{}{})",
            self.addr,
            self.generation,
            self.version,
            self.weight,
            self.status,
            if self.left { ",left" } else { "" }
        )
    }
}

impl NodeId {
    /// Total order between identities of one member: later runs first, then
    /// later versions; the remaining fields only break ties between two
    /// processes wrongly sharing one identity, so that exactly one wins.
    pub(crate) fn precedence(&self) -> (u64, u32, bool, u32, &str) {
        (
            self.generation,
            self.version,
            self.left,
            self.weight,
            &self.status,
        )
    }

    /// The same identity one version later (saturating: a node that changes
    /// its metadata four billion times in one run stops winning conflicts).
    pub(crate) fn next_version(&self) -> NodeId {
        NodeId {
            version: self.version.saturating_add(1),
            ..self.clone()
        }
    }
}

impl Identity for NodeId {
    type Addr = Arc<str>;

    /// A node wrongly declared down (a partition, a pause) comes back with
    /// the next version; a node that left stays gone.
    fn renew(&self) -> Option<Self> {
        if self.left {
            None
        } else {
            Some(self.next_version())
        }
    }

    fn addr(&self) -> Arc<str> {
        self.addr.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.precedence() > adversary.precedence()
    }
}

#[cfg(test)]
mod tests {
    //! Identity ordering and the validation helpers.

    use super::*;

    fn id(generation: u64, version: u32) -> NodeId {
        NodeId {
            addr: "127.0.0.1:11211".into(),
            generation,
            version,
            weight: 1,
            status: STATUS_READY.into(),
            left: false,
        }
    }

    #[test]
    fn a_later_generation_wins_over_any_version() {
        assert!(id(2, 0).win_addr_conflict(&id(1, 9)));
        assert!(!id(1, 9).win_addr_conflict(&id(2, 0)));
        assert!(id(1, 3).win_addr_conflict(&id(1, 2)));
    }

    #[test]
    fn exactly_one_of_two_distinct_identities_wins() {
        let a = id(1, 1);
        let b = NodeId {
            status: STATUS_JOINING.into(),
            ..id(1, 1)
        };
        assert_ne!(a.win_addr_conflict(&b), b.win_addr_conflict(&a));
    }

    #[test]
    fn renew_bumps_the_version_unless_left() {
        assert_eq!(id(1, 1).renew().unwrap().version, 2);
        let left = NodeId {
            left: true,
            ..id(1, 1)
        };
        assert!(left.renew().is_none());
    }

    #[test]
    fn status_words_are_small_and_plain() {
        assert!(valid_status("joining"));
        assert!(valid_status("ready-2.b_c"));
        assert!(!valid_status(""));
        assert!(!valid_status("has space"));
        assert!(!valid_status(&"x".repeat(MAX_STATUS_LEN + 1)));
    }

    #[test]
    fn host_port_splits_at_the_last_colon() {
        assert_eq!(
            split_host_port("127.0.0.1:11212"),
            Some(("127.0.0.1", 11212))
        );
        assert_eq!(split_host_port("cache-1:11211"), Some(("cache-1", 11211)));
        assert_eq!(split_host_port("[::1]:11211"), Some(("[::1]", 11211)));
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(split_host_port(":11211"), None);
        assert_eq!(split_host_port("h:99999"), None);
    }
}
