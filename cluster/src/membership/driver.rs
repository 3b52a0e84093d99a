//! The tokio task behind [`Membership`](super::Membership): it owns the UDP
//! socket, the foca instance, foca's timers, the route table and the seed
//! list, and it publishes the view.
//!
//! One loop, no locks: each turn handles one event (a datagram, a due timer,
//! a command, a seed greeting, a down sync, a resolved name), then sends
//! what foca asked to send, schedules what it asked to schedule, and
//! republishes the view if it changed.
//!
//! Beside foca's own messages the task speaks two small exchanges of its
//! own (see [`wire`](super::wire)):
//! - hello: seeds are addresses, not identities, so the task asks each seed
//!   who it is and announces itself to the identity it gets back (a seed
//!   that is this node, or not started yet, or dead, simply never answers
//!   with another identity);
//! - down sync: foca's join feed lists only live members, so the task sends
//!   the dead and left members it knows to each member it sees for the
//!   first time and, periodically, to a random member; they apply it
//!   without re-gossiping. Every node then agrees on who is on the ring.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;

use foca::{
    AccumulatingRuntime, Config, Error as FocaError, Foca, Member, NoCustomBroadcast,
    OwnedNotification, PeriodicParams, State, Timer,
};
use rand_foca::rngs::SmallRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, trace, warn};

use super::codec::{self, WireCodec};
use super::identity::NodeId;
use super::view::MembershipView;
use super::wire::{self, Authenticator, Kind, Reject};
use super::{
    AtomicCounters, Command, LeaveOutcome, MembershipConfig, Timings, Update, MAX_DATAGRAM,
    MAX_PACKET,
};

type Swim = Foca<NodeId, WireCodec, SmallRng, NoCustomBroadcast>;

/// A name resolved in a helper task.
enum Resolved {
    /// A seed's addresses.
    Seed(String, Vec<SocketAddr>),
    /// A member's address, to send it packets.
    Route(Arc<str>, Option<SocketAddr>),
}

/// An ongoing [`Membership::leave`](super::Membership::leave).
struct Leaving {
    /// Peers alive when the leave started.
    targets: HashSet<Arc<str>>,
    /// Those that sent a packet addressed to the leaving identity.
    confirmed: HashSet<Arc<str>>,
    deadline: Instant,
    next_announce: Instant,
    reply: oneshot::Sender<LeaveOutcome>,
}

pub(crate) struct Driver {
    foca: Swim,
    runtime: AccumulatingRuntime<NodeId>,
    socket: UdpSocket,
    local_addr: SocketAddr,
    auth: Option<Authenticator>,
    timings: Timings,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_events: HashMap<u64, Timer<NodeId>>,
    timer_seq: u64,
    /// Where to send packets for a member: the source address of its last
    /// authentic datagram, else its advertised address resolved.
    routes: HashMap<Arc<str>, SocketAddr>,
    resolving: HashSet<Arc<str>>,
    resolved_tx: mpsc::UnboundedSender<Resolved>,
    resolved_rx: mpsc::UnboundedReceiver<Resolved>,
    seeds: Vec<String>,
    seed_addrs: HashMap<String, Vec<SocketAddr>>,
    /// Seed names whose resolution is in flight.
    seeds_resolving: HashSet<String>,
    next_seed_greeting: Instant,
    next_down_sync: Instant,
    down_sync_cursor: usize,
    /// Members already sent a down sync on first sight.
    greeted: HashSet<Arc<str>>,
    view_tx: watch::Sender<MembershipView>,
    counters: Arc<AtomicCounters>,
    leaving: Option<Leaving>,
    out: Vec<u8>,
}

/// What the loop does after an event.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

fn foca_config(t: &Timings) -> Config {
    Config {
        probe_period: t.probe_period,
        probe_rtt: t.probe_rtt,
        num_indirect_probes: NonZeroUsize::new(3).expect("non-zero"),
        max_transmissions: NonZeroU8::new(10).expect("non-zero"),
        suspect_to_down_after: t.suspect_to_down,
        // Dead members stay members: never forget one.
        remove_down_after: None,
        max_packet_size: NonZeroUsize::new(MAX_PACKET).expect("non-zero"),
        notify_down_members: true,
        periodic_announce: Some(PeriodicParams {
            frequency: t.announce_interval,
            num_members: NonZeroUsize::new(1).expect("non-zero"),
        }),
        periodic_announce_to_down_members: Some(PeriodicParams {
            frequency: t.announce_down_interval,
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        }),
        periodic_gossip: Some(PeriodicParams {
            frequency: t.gossip_interval,
            num_members: NonZeroUsize::new(3).expect("non-zero"),
        }),
    }
}

impl Driver {
    pub(crate) fn new(
        config: MembershipConfig,
        socket: UdpSocket,
        local_addr: SocketAddr,
        counters: Arc<AtomicCounters>,
        view_tx: watch::Sender<MembershipView>,
    ) -> Driver {
        let identity = NodeId {
            addr: config.advertise.as_str().into(),
            generation: config.generation,
            version: 0,
            weight: config.weight,
            status: config.status.as_str().into(),
            left: false,
        };
        let foca = Foca::new(
            identity,
            foca_config(&config.timings),
            rand_foca::make_rng::<SmallRng>(),
            WireCodec,
        );
        let (resolved_tx, resolved_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        Driver {
            foca,
            runtime: AccumulatingRuntime::new(),
            socket,
            local_addr,
            auth: config.secret.as_deref().map(Authenticator::new),
            next_down_sync: now + config.timings.down_sync_interval,
            timings: config.timings,
            timers: BinaryHeap::new(),
            timer_events: HashMap::new(),
            timer_seq: 0,
            routes: HashMap::new(),
            resolving: HashSet::new(),
            resolved_tx,
            resolved_rx,
            seeds: config.seeds,
            seed_addrs: HashMap::new(),
            seeds_resolving: HashSet::new(),
            next_seed_greeting: now,
            down_sync_cursor: 0,
            greeted: HashSet::new(),
            view_tx,
            counters,
            leaving: None,
            out: Vec::with_capacity(MAX_DATAGRAM),
        }
    }

    fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        info!(advertise = %self.identity().addr, bind = %self.local_addr, "membership started");
        self.publish_view();
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let next_leave = self
                .leaving
                .as_ref()
                .map(|l| l.next_announce.min(l.deadline));
            let flow = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => Flow::Stop,
                },
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        self.handle_datagram(&buf[..len], from);
                        Flow::Continue
                    }
                    Err(err) => {
                        debug!(cause = %err, "gossip recv failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        Flow::Continue
                    }
                },
                _ = sleep_until(next_timer.unwrap_or_else(far_future)), if next_timer.is_some() => {
                    self.fire_due_timers();
                    Flow::Continue
                }
                _ = sleep_until(self.next_seed_greeting) => {
                    self.greet_seeds();
                    Flow::Continue
                }
                _ = sleep_until(self.next_down_sync) => {
                    self.periodic_down_sync();
                    Flow::Continue
                }
                _ = sleep_until(next_leave.unwrap_or_else(far_future)), if next_leave.is_some() => {
                    self.leave_tick();
                    Flow::Continue
                }
                Some(resolved) = self.resolved_rx.recv() => {
                    self.handle_resolved(resolved);
                    Flow::Continue
                }
            };
            self.drain();
            let flow = if flow == Flow::Continue {
                self.maybe_finish_leave()
            } else {
                flow
            };
            self.publish_view();
            if flow == Flow::Stop {
                break;
            }
        }
        info!(advertise = %self.identity().addr, "membership stopped");
    }

    fn handle_command(&mut self, command: Command) -> Flow {
        match command {
            Command::Update(update, reply) => {
                if self.leaving.is_some() {
                    let _ = reply.send(Err(super::MembershipError::Stopped));
                    return Flow::Continue;
                }
                let mut next = self.identity().next_version();
                match update {
                    Update::Status(status) => next.status = status.into(),
                    Update::Weight(weight) => next.weight = weight,
                }
                debug!(identity = ?next, "changing identity");
                let result = self.foca.change_identity(next, &mut self.runtime);
                if let Err(err) = result {
                    warn!(cause = %err, "identity change failed");
                }
                // foca only accepts messages addressed to its current
                // identity (announcements excepted): members that changed
                // identity at the same moment would keep talking past each
                // other until the next periodic announce. Announcing the new
                // identity to every member settles it at once.
                let members: Vec<NodeId> =
                    self.foca.iter_members().map(|m| m.id().clone()).collect();
                for member in members {
                    if let Err(err) = self.foca.announce(member, &mut self.runtime) {
                        debug!(cause = %err, "announce failed");
                    }
                }
                let _ = reply.send(Ok(()));
                Flow::Continue
            }
            Command::Leave(reply) => {
                self.start_leave(reply);
                Flow::Continue
            }
            Command::Remove(member, reply) => {
                let _ = reply.send(self.remove(&member));
                Flow::Continue
            }
            Command::Shutdown => Flow::Stop,
        }
    }

    fn handle_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        AtomicCounters::bump(&self.counters.received);
        if datagram.len() > MAX_DATAGRAM {
            self.reject(Reject::Malformed, from, "oversized");
            return;
        }
        let (kind, body) = match wire::open(datagram, self.auth.as_ref()) {
            Ok(opened) => opened,
            Err(reject) => {
                self.reject(reject, from, "framing");
                return;
            }
        };
        match kind {
            Kind::Foca => self.handle_foca(body, from),
            Kind::Hello => self.handle_hello(body, from),
            Kind::HelloReply => self.handle_hello_reply(body, from),
            Kind::DownSync => self.handle_down_sync(body, from),
        }
    }

    fn reject(&self, reject: Reject, from: SocketAddr, what: &str) {
        let counter = match reject {
            Reject::Auth => &self.counters.rejected_auth,
            Reject::Malformed => &self.counters.rejected_malformed,
        };
        AtomicCounters::bump(counter);
        debug!(%from, ?reject, what, "dropped a gossip datagram");
    }

    fn handle_foca(&mut self, body: &[u8], from: SocketAddr) {
        let header = match codec::decode_header(&mut &body[..]) {
            Ok(header) => header,
            Err(err) => {
                self.reject(Reject::Malformed, from, "foca header");
                trace!(cause = %err, "undecodable foca header");
                return;
            }
        };
        if header.src.addr != self.identity().addr {
            self.routes.insert(header.src.addr.clone(), from);
        }
        if header.dst == *self.foca.identity() {
            if let Some(leaving) = &mut self.leaving {
                leaving.confirmed.insert(header.src.addr.clone());
            }
        }
        match self.foca.handle_data(body, &mut self.runtime) {
            Ok(()) => {}
            Err(FocaError::Decode(err)) => {
                self.reject(Reject::Malformed, from, "foca payload");
                trace!(cause = %err, "undecodable foca payload");
            }
            Err(FocaError::MalformedPacket | FocaError::DataTooBig) => {
                self.reject(Reject::Malformed, from, "foca payload");
            }
            Err(err) => trace!(cause = %err, %from, "foca ignored a packet"),
        }
    }

    fn decode_whole_identity(body: &[u8]) -> Option<NodeId> {
        let mut rest = body;
        let id = codec::decode_identity(&mut rest).ok()?;
        rest.is_empty().then_some(id)
    }

    fn handle_hello(&mut self, body: &[u8], from: SocketAddr) {
        let Some(sender) = Self::decode_whole_identity(body) else {
            self.reject(Reject::Malformed, from, "hello");
            return;
        };
        if sender.addr == self.identity().addr || self.leaving.is_some() {
            return;
        }
        self.routes.insert(sender.addr.clone(), from);
        let mut body = Vec::with_capacity(64);
        if codec::encode_identity(self.foca.identity(), &mut body).is_ok() {
            self.send(Kind::HelloReply, &body, from);
        }
    }

    fn handle_hello_reply(&mut self, body: &[u8], from: SocketAddr) {
        let Some(peer) = Self::decode_whole_identity(body) else {
            self.reject(Reject::Malformed, from, "hello reply");
            return;
        };
        if peer.addr == self.identity().addr || self.leaving.is_some() {
            return;
        }
        self.routes.insert(peer.addr.clone(), from);
        let known_alive = self.foca.iter_members().any(|m| *m.id() == peer);
        if !known_alive {
            debug!(peer = ?peer, "announcing to a seed");
            if let Err(err) = self.foca.announce(peer, &mut self.runtime) {
                debug!(cause = %err, "announce failed");
            }
        }
    }

    fn handle_down_sync(&mut self, body: &[u8], from: SocketAddr) {
        let mut rest = body;
        let Some(members) = decode_down_list(&mut rest).filter(|_| rest.is_empty()) else {
            self.reject(Reject::Malformed, from, "down sync");
            return;
        };
        let own = self.identity().addr.clone();
        let updates = members.into_iter().filter(|m| m.id().addr != own);
        if let Err(err) = self.foca.apply_many(updates, false, &mut self.runtime) {
            debug!(cause = %err, "down sync not applied");
        }
    }

    fn handle_resolved(&mut self, resolved: Resolved) {
        match resolved {
            Resolved::Seed(seed, addrs) => {
                self.seeds_resolving.remove(&seed);
                self.seed_addrs.insert(seed, addrs);
            }
            Resolved::Route(name, addr) => {
                self.resolving.remove(&name);
                if let Some(addr) = addr {
                    self.routes.entry(name).or_insert(addr);
                }
            }
        }
    }

    /// Sends and schedules what foca asked for, and reacts to its
    /// notifications (which may ask for more).
    fn drain(&mut self) {
        while self.runtime.backlog() > 0 {
            while let Some((to, data)) = self.runtime.to_send() {
                self.send_to_member(&to, &data);
            }
            while let Some((after, timer)) = self.runtime.to_schedule() {
                let seq = self.timer_seq;
                self.timer_seq += 1;
                self.timers.push(Reverse((Instant::now() + after, seq)));
                self.timer_events.insert(seq, timer);
            }
            while let Some(notification) = self.runtime.to_notify() {
                self.handle_notification(notification);
            }
        }
    }

    fn handle_notification(&mut self, notification: OwnedNotification<NodeId>) {
        match notification {
            OwnedNotification::MemberUp(id) => {
                debug!(member = ?id, "member up");
                if self.greeted.insert(id.addr.clone()) {
                    self.send_down_sync(&id);
                }
            }
            OwnedNotification::MemberDown(id) => debug!(member = ?id, "member down"),
            OwnedNotification::Rename(old, new) => debug!(?old, ?new, "member renamed"),
            OwnedNotification::Rejoin(id) => {
                info!(identity = ?id, "rejoined after being declared down")
            }
            OwnedNotification::Defunct => debug!("this identity was declared down"),
            OwnedNotification::Active => debug!("connected to the cluster"),
            OwnedNotification::Idle => debug!("no live peer"),
        }
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, seq))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(timer) = self.timer_events.remove(&seq) {
                if let Err(err) = self.foca.handle_timer(timer, &mut self.runtime) {
                    trace!(cause = %err, "timer");
                }
            }
        }
    }

    /// Greets every seed address that is not this socket, resolving names in
    /// the background.
    fn greet_seeds(&mut self) {
        let alone = self.foca.num_members() == 0;
        let period = if alone {
            self.timings.seed_retry
        } else {
            self.timings.seed_refresh
        };
        self.next_seed_greeting = Instant::now() + period;
        if self.leaving.is_some() {
            return;
        }
        let mut targets = Vec::new();
        for seed in &self.seeds {
            if let Ok(addr) = seed.parse::<SocketAddr>() {
                targets.push(addr);
                continue;
            }
            if let Some(addrs) = self.seed_addrs.get(seed) {
                targets.extend(addrs.iter().copied());
            }
            if !self.seeds_resolving.insert(seed.clone()) {
                continue;
            }
            let seed = seed.clone();
            let tx = self.resolved_tx.clone();
            tokio::spawn(async move {
                let addrs = match tokio::net::lookup_host(seed.as_str()).await {
                    Ok(addrs) => addrs.collect(),
                    Err(err) => {
                        debug!(%seed, cause = %err, "seed does not resolve");
                        Vec::new()
                    }
                };
                let _ = tx.send(Resolved::Seed(seed, addrs));
            });
        }
        let mut body = Vec::with_capacity(64);
        if codec::encode_identity(self.foca.identity(), &mut body).is_err() {
            return;
        }
        for addr in targets {
            if addr != self.local_addr && addr.is_ipv4() == self.local_addr.is_ipv4() {
                self.send(Kind::Hello, &body, addr);
            }
        }
    }

    /// The dead and left members this node knows, as down updates.
    fn down_members(&self) -> Vec<Member<NodeId>> {
        let own = &self.identity().addr;
        self.foca
            .iter_membership_state()
            .filter(|m| m.state() == State::Down && m.id().addr != *own)
            .cloned()
            .collect()
    }

    fn send_down_sync(&mut self, to: &NodeId) {
        let down = self.down_members();
        let mut body = Vec::with_capacity(MAX_PACKET);
        let mut count: u16 = 0;
        body.extend_from_slice(&[0, 0]);
        let mut item = Vec::with_capacity(128);
        for member in down.iter().filter(|m| m.id().addr != to.addr) {
            item.clear();
            if codec::encode_member(member, &mut item).is_err() {
                continue;
            }
            if body.len() + item.len() > MAX_PACKET || count == u16::MAX {
                self.send_down_chunk(to, &mut body, count);
                count = 0;
            }
            body.extend_from_slice(&item);
            count += 1;
        }
        if count > 0 {
            self.send_down_chunk(to, &mut body, count);
        }
    }

    fn send_down_chunk(&mut self, to: &NodeId, body: &mut Vec<u8>, count: u16) {
        body[..2].copy_from_slice(&count.to_be_bytes());
        if let Some(addr) = self.route(&to.addr) {
            self.send(Kind::DownSync, body, addr);
        }
        body.truncate(2);
    }

    fn periodic_down_sync(&mut self) {
        self.next_down_sync = Instant::now() + self.timings.down_sync_interval;
        let active: Vec<NodeId> = self.foca.iter_members().map(|m| m.id().clone()).collect();
        if active.is_empty() || self.leaving.is_some() {
            return;
        }
        self.down_sync_cursor = self.down_sync_cursor.wrapping_add(1);
        let to = active[self.down_sync_cursor % active.len()].clone();
        self.send_down_sync(&to);
    }

    /// Declares a dead member left on its behalf and tells every live
    /// member at once (foca gossips it too, and down syncs carry it to the
    /// members that are away).
    fn remove(&mut self, member: &str) -> super::Result<()> {
        let cannot = |reason| super::MembershipError::CannotRemove {
            member: member.to_string(),
            reason,
        };
        if *self.identity().addr == *member {
            return Err(cannot("it is this node (use leave)"));
        }
        let known = self
            .foca
            .iter_membership_state()
            .find(|m| *m.id().addr == *member)
            .cloned()
            .ok_or_else(|| cannot("it is not a member"))?;
        if known.id().left {
            return Ok(());
        }
        if known.state() != State::Down {
            return Err(cannot(
                "it is not dead (a live member leaves by itself; wait until it is seen dead)",
            ));
        }
        let removed = NodeId {
            left: true,
            ..known.id().next_version()
        };
        info!(identity = ?removed, "removing a dead member");
        let update = Member::new(removed, known.incarnation(), State::Down);
        if let Err(err) = self
            .foca
            .apply_many(std::iter::once(update), true, &mut self.runtime)
        {
            warn!(cause = %err, "removing the member failed");
            return Err(cannot("the membership refused the update"));
        }
        let active: Vec<NodeId> = self.foca.iter_members().map(|m| m.id().clone()).collect();
        for peer in active {
            self.send_down_sync(&peer);
        }
        Ok(())
    }

    fn start_leave(&mut self, reply: oneshot::Sender<LeaveOutcome>) {
        if self.leaving.is_some() {
            return;
        }
        let targets: HashSet<Arc<str>> = self
            .foca
            .iter_members()
            .map(|m| m.id().addr.clone())
            .collect();
        let left = NodeId {
            left: true,
            ..self.identity().next_version()
        };
        info!(identity = ?left, peers = targets.len(), "leaving the cluster");
        if let Err(err) = self.foca.change_identity(left, &mut self.runtime) {
            warn!(cause = %err, "identity change failed");
        }
        let now = Instant::now();
        self.leaving = Some(Leaving {
            targets,
            confirmed: HashSet::new(),
            deadline: now + self.timings.leave_timeout,
            next_announce: now,
            reply,
        });
        self.leave_tick();
    }

    /// Re-announces the leaving identity to the peers that have not
    /// acknowledged it yet.
    fn leave_tick(&mut self) {
        let Some(leaving) = &mut self.leaving else {
            return;
        };
        let now = Instant::now();
        if now < leaving.next_announce {
            return;
        }
        leaving.next_announce = now + self.timings.probe_rtt;
        let pending: Vec<NodeId> = self
            .foca
            .iter_membership_state()
            .filter(|m| {
                leaving.targets.contains(&m.id().addr) && !leaving.confirmed.contains(&m.id().addr)
            })
            .map(|m| m.id().clone())
            .collect();
        for peer in pending {
            if let Err(err) = self.foca.announce(peer, &mut self.runtime) {
                debug!(cause = %err, "announce failed");
            }
        }
        self.drain();
    }

    /// Ends a leave once every peer acknowledged or the deadline passed:
    /// declares the node down and stops.
    fn maybe_finish_leave(&mut self) -> Flow {
        let Some(leaving) = &self.leaving else {
            return Flow::Continue;
        };
        // A peer declared down meanwhile will not answer: stop waiting for it.
        let down: HashSet<&Arc<str>> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == State::Down)
            .map(|m| &m.id().addr)
            .collect();
        let all_answered = leaving
            .targets
            .iter()
            .all(|t| leaving.confirmed.contains(t) || down.contains(t));
        if !all_answered && Instant::now() < leaving.deadline {
            return Flow::Continue;
        }
        let leaving = self.leaving.take().expect("checked above");
        if let Err(err) = self.foca.leave_cluster(&mut self.runtime) {
            warn!(cause = %err, "leave failed");
        }
        self.drain();
        let mut confirmed: Vec<String> = leaving.confirmed.iter().map(|a| a.to_string()).collect();
        let mut unconfirmed: Vec<String> = leaving
            .targets
            .difference(&leaving.confirmed)
            .map(|a| a.to_string())
            .collect();
        confirmed.sort();
        unconfirmed.sort();
        info!(
            confirmed = confirmed.len(),
            unconfirmed = unconfirmed.len(),
            "left the cluster"
        );
        // The identity is `left` from here on; keep the local view in step.
        self.publish_view();
        let _ = leaving.reply.send(LeaveOutcome {
            confirmed,
            unconfirmed,
        });
        Flow::Stop
    }

    /// The address to send to for member `name`, starting a resolution if
    /// it is a name not resolved yet.
    fn route(&mut self, name: &Arc<str>) -> Option<SocketAddr> {
        if let Some(addr) = self.routes.get(name) {
            return Some(*addr);
        }
        if let Ok(addr) = name.parse::<SocketAddr>() {
            self.routes.insert(name.clone(), addr);
            return Some(addr);
        }
        AtomicCounters::bump(&self.counters.unroutable);
        if self.resolving.insert(name.clone()) {
            let name = name.clone();
            let tx = self.resolved_tx.clone();
            let want_v4 = self.local_addr.is_ipv4();
            tokio::spawn(async move {
                let addr = match tokio::net::lookup_host(&*name).await {
                    Ok(mut addrs) => addrs.find(|a| a.is_ipv4() == want_v4),
                    Err(_) => None,
                };
                let _ = tx.send(Resolved::Route(name, addr));
            });
        }
        None
    }

    fn send_to_member(&mut self, to: &NodeId, data: &[u8]) {
        if let Some(addr) = self.route(&to.addr) {
            self.send(Kind::Foca, data, addr);
        }
    }

    fn send(&mut self, kind: Kind, body: &[u8], to: SocketAddr) {
        wire::seal(kind, body, self.auth.as_ref(), &mut self.out);
        match self.socket.try_send_to(&self.out, to) {
            Ok(_) => AtomicCounters::bump(&self.counters.sent),
            Err(err) => {
                AtomicCounters::bump(&self.counters.send_errors);
                trace!(%to, cause = %err, "gossip send failed");
            }
        }
    }

    fn publish_view(&mut self) {
        let view =
            MembershipView::from_foca(self.foca.identity(), self.foca.iter_membership_state());
        self.view_tx.send_if_modified(|current| {
            if *current == view {
                false
            } else {
                *current = view;
                true
            }
        });
    }
}

/// Reads a down-sync body: a count, then that many members, all down.
fn decode_down_list(buf: &mut &[u8]) -> Option<Vec<Member<NodeId>>> {
    if buf.len() < 2 {
        return None;
    }
    let count = u16::from_be_bytes([buf[0], buf[1]]);
    *buf = &buf[2..];
    let mut members = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let member = codec::decode_member(buf).ok()?;
        if member.state() != State::Down {
            return None;
        }
        members.push(member);
    }
    Some(members)
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400)
}
