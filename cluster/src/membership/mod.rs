//! Cluster membership: which nodes are in the cluster, whether they answer,
//! and the metadata each one publishes, over SWIM gossip on UDP.
//!
//! The protocol is [foca](https://docs.rs/foca/2.0.0) (SWIM with suspicion,
//! incarnations and periodic gossip); this module is its thin runtime glue
//! and the mcstore-specific parts. `docs/cluster.md` says why foca, what
//! goes on the wire and how to tune the timings.
//!
//! # Layout
//! - [`identity`]: what a node is known by. Metadata (advertised address,
//!   generation, weight, status word, left flag) is part of the identity;
//!   a node changes identity to change its metadata.
//! - [`codec`]: the binary encoding of foca's headers and updates.
//! - [`wire`]: datagram framing and HMAC-SHA256 authentication.
//! - [`view`]: [`Member`], [`MemberState`], [`MembershipView`] and the
//!   view's ketama [`Ring`](crate::Ring).
//! - `driver` (private): the tokio task that owns the socket, foca, the
//!   timers and the seed list.
//!
//! # Guarantees
//! - States: a member that answers is [`MemberState::Alive`]; one that missed
//!   a probe is [`MemberState::Suspect`]; one that did not refute the
//!   suspicion in time is [`MemberState::Dead`] and stays on the ring; one
//!   that called [`Membership::leave`] is [`MemberState::Left`] and is off
//!   the ring.
//! - A restarted node (same advertised address, larger generation) replaces
//!   its previous run everywhere and is alive again.
//! - Every datagram is bounded ([`MAX_DATAGRAM`]) and, with a secret,
//!   authenticated; a rejected or garbage datagram is counted and dropped,
//!   never a panic.

pub mod codec;
mod driver;
pub mod identity;
pub mod view;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use identity::{
    valid_status, MAX_ADVERTISE_LEN, MAX_STATUS_LEN, STATUS_JOINING, STATUS_LEAVING, STATUS_READY,
};
pub use view::{ring_from_view, Member, MemberState, MembershipView, ViewRingError};

/// The largest foca packet (a datagram's body), in bytes: below a 1500-byte
/// Ethernet MTU once IP and UDP headers are added.
pub const MAX_PACKET: usize = 1400;

/// The largest datagram sent or accepted: header, body and tag.
pub const MAX_DATAGRAM: usize = wire::HEADER_LEN + MAX_PACKET + wire::TAG_LEN;

/// Errors of the membership layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The advertised address is not `host:port` of at most
    /// [`MAX_ADVERTISE_LEN`] bytes.
    #[error("advertised address {0:?} is not host:port of at most 255 bytes")]
    BadAdvertise(String),
    /// The status word is not valid (see [`valid_status`]).
    #[error("status {0:?} is not 1-32 bytes of [A-Za-z0-9._-]")]
    BadStatus(String),
    /// A cluster secret was given but is empty.
    #[error("the cluster secret is empty")]
    EmptySecret,
    /// The timings are inconsistent.
    #[error("invalid timings: {0}")]
    BadTimings(&'static str),
    /// The gossip socket could not be bound or set up.
    #[error("gossip socket {addr}: {source}")]
    Socket {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The membership task has stopped (after [`Membership::leave`] or
    /// [`Membership::shutdown`]).
    #[error("the membership task has stopped")]
    Stopped,
    /// [`Membership::remove`] was asked to remove a member it cannot.
    #[error("cannot remove {member}: {reason}")]
    CannotRemove {
        /// The member named.
        member: String,
        /// Why not.
        reason: &'static str,
    },
}

/// Result of the membership layer.
pub type Result<T, E = MembershipError> = std::result::Result<T, E>;

/// Protocol timings. The defaults suit a LAN and see a killed node dead
/// within about 3 s in a small cluster; `docs/cluster.md` explains each knob.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timings {
    /// How often this node probes one member (SWIM's protocol period).
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe
    /// (must be less than `probe_period`).
    pub probe_rtt: Duration,
    /// How long a suspect has to refute before it is declared dead.
    pub suspect_to_down: Duration,
    /// How often recent updates are gossiped to 3 random members.
    pub gossip_interval: Duration,
    /// How often one random member is asked for its member list.
    pub announce_interval: Duration,
    /// How often two members believed dead are contacted (heals
    /// partitions and false deaths).
    pub announce_down_interval: Duration,
    /// How often the seeds are greeted while no peer is known.
    pub seed_retry: Duration,
    /// How often the seeds are greeted once peers are known (merges
    /// clusters that formed apart).
    pub seed_refresh: Duration,
    /// How often the list of dead and left members is sent to one random
    /// member (new members also get it when first seen).
    pub down_sync_interval: Duration,
    /// How long [`Membership::leave`] waits for peers to acknowledge.
    pub leave_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            suspect_to_down: Duration::from_millis(1500),
            gossip_interval: Duration::from_millis(200),
            announce_interval: Duration::from_secs(10),
            announce_down_interval: Duration::from_secs(5),
            seed_retry: Duration::from_millis(500),
            seed_refresh: Duration::from_secs(30),
            down_sync_interval: Duration::from_secs(15),
            leave_timeout: Duration::from_secs(2),
        }
    }
}

impl Timings {
    fn validate(&self) -> Result<()> {
        let all = [
            self.probe_period,
            self.probe_rtt,
            self.suspect_to_down,
            self.gossip_interval,
            self.announce_interval,
            self.announce_down_interval,
            self.seed_retry,
            self.seed_refresh,
            self.down_sync_interval,
        ];
        if all.iter().any(Duration::is_zero) {
            return Err(MembershipError::BadTimings("every period must be non-zero"));
        }
        if self.probe_rtt >= self.probe_period {
            return Err(MembershipError::BadTimings(
                "probe_rtt must be less than probe_period",
            ));
        }
        Ok(())
    }
}

/// How to start a node's membership.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MembershipConfig {
    /// This node's name on the ring: the `host:port` clients use, exactly as
    /// they write it. A port of `0` is replaced by the bound port.
    pub advertise: String,
    /// The UDP address to bind (normally the TCP listen address).
    pub bind: SocketAddr,
    /// `host:port` of other nodes (names are resolved, and re-resolved).
    /// May name this node, nodes not started yet and dead nodes.
    pub seeds: Vec<String>,
    /// This run's generation: larger than any previous run of this node
    /// (a counter kept in the data directory, or the start time in ms).
    pub generation: u64,
    /// Ketama weight (default 1).
    pub weight: u32,
    /// Initial status word (default [`STATUS_READY`]).
    pub status: String,
    /// Shared cluster secret: when set, every datagram carries an
    /// HMAC-SHA256 tag and untagged or wrongly tagged ones are dropped.
    pub secret: Option<Vec<u8>>,
    /// Protocol timings.
    pub timings: Timings,
}

impl MembershipConfig {
    /// A configuration with no seeds, weight 1, status `ready`, no secret
    /// and default timings.
    pub fn new(advertise: impl Into<String>, bind: SocketAddr, generation: u64) -> Self {
        MembershipConfig {
            advertise: advertise.into(),
            bind,
            seeds: Vec::new(),
            generation,
            weight: 1,
            status: STATUS_READY.to_string(),
            secret: None,
            timings: Timings::default(),
        }
    }
}

/// Datagram counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams dropped on receipt: `rejected_auth + rejected_malformed`.
    pub rejected: u64,
    /// Dropped for a missing, unexpected or wrong authentication tag.
    pub rejected_auth: u64,
    /// Dropped as garbage: wrong magic or version, oversized, undecodable.
    pub rejected_malformed: u64,
    /// Sends that failed in the socket.
    pub send_errors: u64,
    /// Packets not sent because the member's address did not resolve (yet).
    pub unroutable: u64,
}

#[derive(Debug, Default)]
struct AtomicCounters {
    received: AtomicU64,
    sent: AtomicU64,
    rejected_auth: AtomicU64,
    rejected_malformed: AtomicU64,
    send_errors: AtomicU64,
    unroutable: AtomicU64,
}

impl AtomicCounters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Counters {
        let auth = self.rejected_auth.load(Ordering::Relaxed);
        let malformed = self.rejected_malformed.load(Ordering::Relaxed);
        Counters {
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            rejected: auth + malformed,
            rejected_auth: auth,
            rejected_malformed: malformed,
            send_errors: self.send_errors.load(Ordering::Relaxed),
            unroutable: self.unroutable.load(Ordering::Relaxed),
        }
    }
}

/// What [`Membership::leave`] achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaveOutcome {
    /// Peers that acknowledged the leaving identity (they see it `left`).
    pub confirmed: Vec<String>,
    /// Peers that did not answer within [`Timings::leave_timeout`] (they
    /// learn it from gossip, or see the node dead).
    pub unconfirmed: Vec<String>,
}

enum Command {
    Update(Update, oneshot::Sender<Result<()>>),
    Leave(oneshot::Sender<LeaveOutcome>),
    Remove(String, oneshot::Sender<Result<()>>),
    Shutdown,
}

enum Update {
    Status(String),
    Weight(u32),
}

/// A running node's membership: a tokio task gossiping on one UDP socket.
///
/// Dropping it aborts the task without a goodbye (as `kill -9` would, as far
/// as the peers can tell); [`Membership::leave`] is the clean exit.
pub struct Membership {
    commands: mpsc::UnboundedSender<Command>,
    view: watch::Receiver<MembershipView>,
    counters: Arc<AtomicCounters>,
    task: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    advertise: String,
}

impl Membership {
    /// Binds `config.bind` and starts gossiping.
    pub async fn start(config: MembershipConfig) -> Result<Membership> {
        let bind = config.bind;
        let socket = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|source| MembershipError::Socket { addr: bind, source })?;
        Membership::start_on(config, socket)
    }

    /// Starts gossiping on an already bound socket (`config.bind` is then
    /// only informative). Must be called within a tokio runtime.
    pub fn start_with_socket(
        config: MembershipConfig,
        socket: std::net::UdpSocket,
    ) -> Result<Membership> {
        let addr = config.bind;
        socket
            .set_nonblocking(true)
            .map_err(|source| MembershipError::Socket { addr, source })?;
        let socket = tokio::net::UdpSocket::from_std(socket)
            .map_err(|source| MembershipError::Socket { addr, source })?;
        Membership::start_on(config, socket)
    }

    fn start_on(mut config: MembershipConfig, socket: tokio::net::UdpSocket) -> Result<Membership> {
        let local_addr = socket
            .local_addr()
            .map_err(|source| MembershipError::Socket {
                addr: config.bind,
                source,
            })?;
        config.advertise = resolve_port_zero(&config.advertise, local_addr.port())?;
        if !valid_status(&config.status) {
            return Err(MembershipError::BadStatus(config.status));
        }
        if config.secret.as_ref().is_some_and(Vec::is_empty) {
            return Err(MembershipError::EmptySecret);
        }
        config.timings.validate()?;
        let counters = Arc::new(AtomicCounters::default());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let advertise = config.advertise.clone();
        let (view_tx, view) = watch::channel(MembershipView::default());
        let driver = driver::Driver::new(config, socket, local_addr, counters.clone(), view_tx);
        let task = tokio::spawn(driver.run(command_rx));
        Ok(Membership {
            commands,
            view,
            counters,
            task: Some(task),
            local_addr,
            advertise,
        })
    }

    /// This node's advertised address (with a `0` port resolved).
    pub fn advertise(&self) -> &str {
        &self.advertise
    }

    /// The address the gossip socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every known member, this node included, sorted by advertised address.
    pub fn members(&self) -> Vec<Member> {
        self.view.borrow().members().to_vec()
    }

    /// The current view.
    pub fn view(&self) -> MembershipView {
        self.view.borrow().clone()
    }

    /// A receiver that changes whenever a member's state or metadata
    /// changes.
    pub fn watch(&self) -> watch::Receiver<MembershipView> {
        self.view.clone()
    }

    /// Datagram counters.
    pub fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    /// Publishes a new status word (e.g. [`STATUS_JOINING`] →
    /// [`STATUS_READY`]).
    pub async fn set_status(&self, status: &str) -> Result<()> {
        if !valid_status(status) {
            return Err(MembershipError::BadStatus(status.to_string()));
        }
        self.update(Update::Status(status.to_string())).await
    }

    /// Publishes a new ketama weight.
    pub async fn set_weight(&self, weight: u32) -> Result<()> {
        self.update(Update::Weight(weight)).await
    }

    async fn update(&self, update: Update) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Update(update, reply))
            .map_err(|_| MembershipError::Stopped)?;
        answer.await.map_err(|_| MembershipError::Stopped)?
    }

    /// Leaves the cluster: announces the node as `left`, waits until every
    /// peer alive at that moment acknowledged it or
    /// [`Timings::leave_timeout`] passed, declares itself down and stops the
    /// task.
    pub async fn leave(&self) -> Result<LeaveOutcome> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Leave(reply))
            .map_err(|_| MembershipError::Stopped)?;
        answer.await.map_err(|_| MembershipError::Stopped)
    }

    /// Removes a member that is dead for good: announces it as `left` on its
    /// behalf (its identity one version later, marked left), so that every
    /// member takes it off the ring, members that are away now included
    /// (they get it with the dead and left members on their return). Only
    /// a dead member can be removed; one that is alive leaves by itself. If
    /// the removed node is ever started again, its new generation makes it
    /// a member again.
    pub async fn remove(&self, member: &str) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Remove(member.to_string(), reply))
            .map_err(|_| MembershipError::Stopped)?;
        answer.await.map_err(|_| MembershipError::Stopped)?
    }

    /// Stops the task without a goodbye and waits until it has released the
    /// socket. Peers will see the node dead.
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Checks `advertise` and replaces a `0` port by `bound_port`.
fn resolve_port_zero(advertise: &str, bound_port: u16) -> Result<String> {
    let bad = || MembershipError::BadAdvertise(advertise.to_string());
    if advertise.len() > MAX_ADVERTISE_LEN {
        return Err(bad());
    }
    let (host, port) = identity::split_host_port(advertise).ok_or_else(bad)?;
    if port == 0 {
        Ok(format!("{host}:{bound_port}"))
    } else {
        Ok(advertise.to_string())
    }
}

#[cfg(test)]
mod tests {
    //! Configuration checks.

    use super::*;

    #[test]
    fn port_zero_takes_the_bound_port() {
        assert_eq!(
            resolve_port_zero("127.0.0.1:0", 4000).unwrap(),
            "127.0.0.1:4000"
        );
        assert_eq!(resolve_port_zero("h:11211", 4000).unwrap(), "h:11211");
        assert!(resolve_port_zero("h", 4000).is_err());
        assert!(resolve_port_zero(&format!("{}:1", "h".repeat(300)), 1).is_err());
    }

    #[test]
    fn timings_are_checked() {
        assert!(Timings::default().validate().is_ok());
        let bad = Timings {
            probe_rtt: Duration::from_secs(1),
            ..Timings::default()
        };
        assert!(bad.validate().is_err());
        let zero = Timings {
            gossip_interval: Duration::ZERO,
            ..Timings::default()
        };
        assert!(zero.validate().is_err());
    }
}
