//! Membership over real UDP on 127.0.0.1: convergence, failure detection,
//! leaving, restarts, authentication and garbage.
//!
//! Every wait is on a condition with a deadline (the view's watch channel),
//! never a fixed sleep. Ports are ephemeral: sockets are bound first, so
//! seed lists can name nodes that have not started yet. Set
//! `RUST_LOG=mcstore_cluster=debug` to see the protocol.

use std::net::UdpSocket;
use std::time::Duration;

use mcstore_cluster::membership::{Counters, LeaveOutcome, STATUS_JOINING};
use mcstore_cluster::{MemberState, Membership, MembershipConfig, MembershipView, Timings};
use tokio::time::{timeout_at, Instant};

/// Faster than the defaults, still tolerant of a loaded 2-core machine.
fn timings() -> Timings {
    let mut t = Timings::default();
    t.probe_period = Duration::from_millis(200);
    t.probe_rtt = Duration::from_millis(80);
    t.suspect_to_down = Duration::from_millis(800);
    t.gossip_interval = Duration::from_millis(100);
    t.announce_interval = Duration::from_secs(1);
    t.announce_down_interval = Duration::from_millis(500);
    t.seed_retry = Duration::from_millis(100);
    t.seed_refresh = Duration::from_secs(1);
    t.down_sync_interval = Duration::from_secs(1);
    t.leave_timeout = Duration::from_secs(2);
    t
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn reserve() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn addr_of(socket: &UdpSocket) -> String {
    socket.local_addr().unwrap().to_string()
}

fn config(socket: &UdpSocket, seeds: &[String], generation: u64) -> MembershipConfig {
    let mut config =
        MembershipConfig::new(addr_of(socket), socket.local_addr().unwrap(), generation);
    config.seeds = seeds.to_vec();
    config.timings = timings();
    config
}

fn start(socket: UdpSocket, config: MembershipConfig) -> Membership {
    Membership::start_with_socket(config, socket).unwrap()
}

/// Waits until `pred` holds for `node`'s view, or panics at `deadline`.
async fn wait_view(
    node: &Membership,
    deadline: Instant,
    what: &str,
    pred: impl Fn(&MembershipView) -> bool,
) {
    let mut rx = node.watch();
    let outcome = timeout_at(deadline, rx.wait_for(|view| pred(view))).await;
    if !matches!(outcome, Ok(Ok(_))) {
        panic!(
            "{what}: not reached by {} in time; its view: {:#?}",
            node.advertise(),
            node.view()
        );
    }
}

/// The state `node` sees `addr` in, if it knows it.
fn state_of(view: &MembershipView, addr: &str) -> Option<MemberState> {
    view.get(addr).map(|m| m.state)
}

fn all_alive(view: &MembershipView, addrs: &[String]) -> bool {
    view.members().len() == addrs.len()
        && addrs
            .iter()
            .all(|a| state_of(view, a) == Some(MemberState::Alive))
}

async fn wait_converged(nodes: &[&Membership], within: Duration) {
    let addrs: Vec<String> = nodes.iter().map(|n| n.advertise().to_string()).collect();
    let deadline = Instant::now() + within;
    for node in nodes {
        wait_view(node, deadline, "every node alive", |v| all_alive(v, &addrs)).await;
    }
}

/// Starts `n` nodes; all but the first have the first as their only seed.
async fn cluster_from_one_seed(n: usize) -> Vec<Membership> {
    let sockets: Vec<UdpSocket> = (0..n).map(|_| reserve()).collect();
    let seed = vec![addr_of(&sockets[0])];
    let nodes: Vec<Membership> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let seeds = if i == 0 { Vec::new() } else { seed.clone() };
            let config = config(&s, &seeds, 1);
            start(s, config)
        })
        .collect();
    let refs: Vec<&Membership> = nodes.iter().collect();
    wait_converged(&refs, Duration::from_secs(10)).await;
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_converge_from_one_seed() {
    init_tracing();
    let nodes = cluster_from_one_seed(4).await;
    for node in &nodes {
        let view = node.view();
        assert_eq!(view.ring().unwrap().servers().len(), 4);
        assert_eq!(view.members().iter().filter(|m| m.is_self).count(), 1);
        assert!(view
            .members()
            .iter()
            .all(|m| m.generation == 1 && m.weight == 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_converge_in_any_start_order_despite_dead_self_and_bogus_seeds() {
    init_tracing();
    let sockets: Vec<UdpSocket> = (0..5).map(|_| reserve()).collect();
    let addrs: Vec<String> = sockets.iter().map(addr_of).collect();
    // Bound but silent: a seed that is dead.
    let dead = reserve();
    let mut slots: Vec<Option<UdpSocket>> = sockets.into_iter().map(Some).collect();
    let mut nodes: Vec<Option<Membership>> = (0..5).map(|_| None).collect();
    // Each node knows only itself, a dead seed, an unresolvable name and the
    // next node (which may not have started yet): reaching everyone takes
    // gossip, not seeds.
    for &i in &[3, 0, 4, 1, 2] {
        let seeds = vec![
            addrs[i].clone(),
            addr_of(&dead),
            "no-such-host.invalid:11211".to_string(),
            addrs[(i + 1) % 5].clone(),
        ];
        let socket = slots[i].take().unwrap();
        let config = config(&socket, &seeds, 7);
        nodes[i] = Some(start(socket, config));
    }
    let nodes: Vec<Membership> = nodes.into_iter().map(Option::unwrap).collect();
    let refs: Vec<&Membership> = nodes.iter().collect();
    wait_converged(&refs, Duration::from_secs(10)).await;
    for node in &nodes {
        assert!(node.view().get(&addr_of(&dead)).is_none());
    }
}

/// Waits until every node in `observers` sees `addr` in `state`; returns the
/// time it took.
async fn time_until_all_see(
    observers: &[&Membership],
    addr: &str,
    state: MemberState,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    for node in observers {
        wait_view(node, deadline, &format!("{addr} {state}"), |v| {
            state_of(v, addr) == Some(state)
        })
        .await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_seen_dead_by_every_other_node_within_five_seconds() {
    init_tracing();
    let mut nodes = cluster_from_one_seed(4).await;
    let victim = nodes.pop().unwrap();
    let addr = victim.advertise().to_string();
    // Aborting the task closes its socket: no goodbye, like kill -9.
    drop(victim);
    let survivors: Vec<&Membership> = nodes.iter().collect();
    let took =
        time_until_all_see(&survivors, &addr, MemberState::Dead, Duration::from_secs(5)).await;
    eprintln!("killed node seen dead by all 3 peers after {took:?}");
    for node in &nodes {
        let view = node.view();
        assert!(view.ring_members().any(|m| m.advertise == addr));
        assert_eq!(view.ring().unwrap().servers().len(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_is_seen_left_and_leaves_the_ring_while_a_dead_one_stays() {
    init_tracing();
    let mut nodes = cluster_from_one_seed(5).await;
    let leaver = nodes.pop().unwrap();
    let left_addr = leaver.advertise().to_string();

    let started = Instant::now();
    let outcome: LeaveOutcome = leaver.leave().await.unwrap();
    let leave_took = started.elapsed();
    let mut peers: Vec<&str> = nodes.iter().map(|n| n.advertise()).collect();
    peers.sort_unstable();
    assert_eq!(outcome.confirmed, peers, "{outcome:?}");
    assert!(outcome.unconfirmed.is_empty());
    assert_eq!(
        state_of(&leaver.view(), &left_addr),
        Some(MemberState::Left)
    );
    // The node has stopped gossiping after leave().
    assert!(leaver.set_status("ready").await.is_err());
    let observers: Vec<&Membership> = nodes.iter().collect();
    let seen_left = time_until_all_see(
        &observers,
        &left_addr,
        MemberState::Left,
        Duration::from_secs(1),
    )
    .await;

    let victim = nodes.pop().unwrap();
    let dead_addr = victim.advertise().to_string();
    drop(victim);
    let observers: Vec<&Membership> = nodes.iter().collect();
    let seen_dead = time_until_all_see(
        &observers,
        &dead_addr,
        MemberState::Dead,
        Duration::from_secs(5),
    )
    .await;
    eprintln!(
        "leave() returned after {leave_took:?} with all 4 peers confirmed, left seen by all \
         {seen_left:?} after that; a killed node seen dead by all 3 after {seen_dead:?}"
    );
    for node in &nodes {
        let view = node.view();
        let ring: Vec<&str> = view.ring_members().map(|m| m.advertise.as_str()).collect();
        assert!(!ring.contains(&left_addr.as_str()));
        assert!(ring.contains(&dead_addr.as_str()));
        assert_eq!(view.ring().unwrap().servers().len(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_timings_a_killed_node_is_seen_dead_within_five_seconds() {
    init_tracing();
    let sockets: Vec<UdpSocket> = (0..3).map(|_| reserve()).collect();
    let seed = vec![addr_of(&sockets[0])];
    let mut nodes: Vec<Membership> = sockets
        .into_iter()
        .map(|s| {
            let mut config = config(&s, &seed, 1);
            config.timings = Timings::default();
            start(s, config)
        })
        .collect();
    let refs: Vec<&Membership> = nodes.iter().collect();
    wait_converged(&refs, Duration::from_secs(10)).await;
    let victim = nodes.pop().unwrap();
    let addr = victim.advertise().to_string();
    drop(victim);
    let survivors: Vec<&Membership> = nodes.iter().collect();
    let took =
        time_until_all_see(&survivors, &addr, MemberState::Dead, Duration::from_secs(5)).await;
    eprintln!("default timings: killed node seen dead by both peers after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_later_learns_the_dead_and_left_members() {
    init_tracing();
    let mut nodes = cluster_from_one_seed(4).await;
    let leaver = nodes.pop().unwrap();
    let left_addr = leaver.advertise().to_string();
    leaver.leave().await.unwrap();
    let victim = nodes.pop().unwrap();
    let dead_addr = victim.advertise().to_string();
    drop(victim);
    let peers: Vec<&Membership> = nodes.iter().collect();
    time_until_all_see(
        &peers,
        &dead_addr,
        MemberState::Dead,
        Duration::from_secs(5),
    )
    .await;

    let socket = reserve();
    let config = config(&socket, &[nodes[0].advertise().to_string()], 1);
    let late = start(socket, config);
    let deadline = Instant::now() + Duration::from_secs(5);
    wait_view(
        &late,
        deadline,
        "late joiner knows the dead and the left",
        |v| {
            state_of(v, &dead_addr) == Some(MemberState::Dead)
                && state_of(v, &left_addr) == Some(MemberState::Left)
                && nodes
                    .iter()
                    .all(|n| state_of(v, n.advertise()) == Some(MemberState::Alive))
        },
    )
    .await;
    // Same ring everywhere: the two survivors, the dead node and the late one.
    wait_view(&nodes[0], deadline, "survivor sees the late joiner", |v| {
        state_of(v, late.advertise()) == Some(MemberState::Alive)
    })
    .await;
    let ring = nodes[0].view().ring().unwrap();
    assert_eq!(ring.servers().len(), 4);
    assert_eq!(late.view().ring().unwrap().points(), ring.points());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_alive_again_with_its_new_generation() {
    init_tracing();
    let mut nodes = cluster_from_one_seed(3).await;
    let seed = nodes[0].advertise().to_string();
    let node = nodes.pop().unwrap();
    let addr = node.advertise().to_string();
    let bind = node.local_addr();
    node.shutdown().await;
    let peers: Vec<&Membership> = nodes.iter().collect();
    time_until_all_see(&peers, &addr, MemberState::Dead, Duration::from_secs(5)).await;

    // Restart after it was declared dead, then restart again at once.
    let mut restarted = None;
    for generation in [2, 3] {
        if let Some(previous) = restarted.take() {
            Membership::shutdown(previous).await;
        }
        let socket = UdpSocket::bind(bind).unwrap();
        let config = config(&socket, std::slice::from_ref(&seed), generation);
        let node = start(socket, config);
        let deadline = Instant::now() + Duration::from_secs(10);
        for peer in &peers {
            wait_view(
                peer,
                deadline,
                "restarted node alive with its generation",
                |v| {
                    v.get(&addr).is_some_and(|m| {
                        m.state == MemberState::Alive && m.generation == generation
                    })
                },
            )
            .await;
        }
        let all: Vec<String> = peers
            .iter()
            .map(|p| p.advertise().to_string())
            .chain([addr.clone()])
            .collect();
        wait_view(&node, deadline, "restarted node sees everyone", |v| {
            all_alive(v, &all)
        })
        .await;
        restarted = Some(node);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_weight_changes_gossip_to_every_member() {
    init_tracing();
    let nodes = cluster_from_one_seed(3).await;
    let addr = nodes[1].advertise().to_string();
    nodes[1].set_status(STATUS_JOINING).await.unwrap();
    nodes[1].set_weight(5).await.unwrap();
    assert!(nodes[1].set_status("not a word").await.is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    for node in &nodes {
        wait_view(node, deadline, "new status and weight", |v| {
            v.get(&addr).is_some_and(|m| {
                m.status == STATUS_JOINING && m.weight == 5 && m.state == MemberState::Alive
            })
        })
        .await;
    }
    let ring = nodes[0].view().ring().unwrap();
    let weights: Vec<u32> = ring.servers().iter().map(|s| s.weight).collect();
    assert_eq!(weights.iter().sum::<u32>(), 7);
}

async fn wait_counters(
    node: &Membership,
    within: Duration,
    pred: impl Fn(&Counters) -> bool,
) -> Counters {
    let deadline = Instant::now() + within;
    let mut rx = node.watch();
    loop {
        let counters = node.counters();
        if pred(&counters) {
            return counters;
        }
        // Counters have no channel of their own: wake on view changes, or
        // re-check every 20 ms, until the deadline.
        let step = (Instant::now() + Duration::from_millis(20)).min(deadline);
        let _ = timeout_at(step, rx.changed()).await;
        assert!(
            Instant::now() < deadline,
            "counters not reached: {counters:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_or_no_secret_is_not_admitted() {
    init_tracing();
    let sockets: Vec<UdpSocket> = (0..4).map(|_| reserve()).collect();
    let seed = vec![addr_of(&sockets[0])];
    let secrets: [Option<&[u8]>; 4] = [Some(b"right"), Some(b"right"), Some(b"wrong"), None];
    let nodes: Vec<Membership> = sockets
        .into_iter()
        .zip(secrets)
        .enumerate()
        .map(|(i, (s, secret))| {
            let seeds = if i == 0 { Vec::new() } else { seed.clone() };
            let mut config = config(&s, &seeds, 1);
            config.secret = secret.map(<[u8]>::to_vec);
            start(s, config)
        })
        .collect();
    wait_converged(&[&nodes[0], &nodes[1]], Duration::from_secs(10)).await;
    // Both outsiders keep greeting the seed; it rejects each greeting.
    let counters =
        wait_counters(&nodes[0], Duration::from_secs(5), |c| c.rejected_auth >= 10).await;
    assert_eq!(
        counters.rejected,
        counters.rejected_auth + counters.rejected_malformed
    );
    for node in &nodes[..2] {
        assert_eq!(node.view().members().len(), 2, "{:#?}", node.view());
    }
    for node in &nodes[2..] {
        assert_eq!(node.view().members().len(), 1, "{:#?}", node.view());
    }
    let insider = nodes[1].advertise().to_string();
    wait_view(
        &nodes[0],
        Instant::now() + Duration::from_secs(1),
        "insider alive",
        |v| state_of(v, &insider) == Some(MemberState::Alive),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_counted_and_ignored() {
    init_tracing();
    for secret in [None, Some(b"k".to_vec())] {
        let (a, b) = (reserve(), reserve());
        let (addr_a, addr_b) = (addr_of(&a), addr_of(&b));
        let mut config_a = config(&a, &[], 1);
        config_a.secret = secret.clone();
        let node_a = start(a, config_a);

        let sender = reserve();
        let mut garbage: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"get foo\r\n".to_vec(),
            b"mC".to_vec(),
            b"mC\x09\x00\x00".to_vec(),
            b"mC\x01\x00\x07".to_vec(),
            b"mC\x01\x01\x00short".to_vec(),
            // A foca datagram whose header starts with an empty address.
            b"mC\x01\x00\x00\x00\x00\x00".to_vec(),
            // A down sync that claims more members than it holds.
            b"mC\x01\x00\x03\x00\x05\x01".to_vec(),
            vec![0xff; 3000],
        ];
        let mut seed: u32 = 0x1234_5678;
        for _ in 0..40 {
            let len = 5 + (seed % 200) as usize;
            let mut datagram = b"mC\x01\x00\x00".to_vec();
            for _ in 5..len {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                datagram.push((seed >> 24) as u8);
            }
            datagram[5] = 0; // an empty address: never a valid header
            garbage.push(datagram);
        }
        for datagram in &garbage {
            sender.send_to(datagram, &addr_a).unwrap();
        }
        let sent = garbage.len() as u64;
        let counters = wait_counters(&node_a, Duration::from_secs(5), |c| c.received >= sent).await;
        assert_eq!(counters.rejected, sent, "secret {secret:?}: {counters:?}");

        // The node still works: a good peer joins it.
        let mut config_b = config(&b, std::slice::from_ref(&addr_a), 1);
        config_b.secret = secret.clone();
        let node_b = start(b, config_b);
        wait_converged(&[&node_a, &node_b], Duration::from_secs(10)).await;
        assert!(node_a.view().get(&addr_b).is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_dead_member_is_seen_left_everywhere_even_by_a_node_that_was_away() {
    init_tracing();
    let mut nodes = cluster_from_one_seed(4).await;
    let victim = nodes.pop().unwrap();
    let dead_addr = victim.advertise().to_string();
    drop(victim);
    let survivors: Vec<&Membership> = nodes.iter().collect();
    time_until_all_see(
        &survivors,
        &dead_addr,
        MemberState::Dead,
        Duration::from_secs(5),
    )
    .await;
    // A live member, this node and an unknown one cannot be removed.
    let live = nodes[1].advertise().to_string();
    assert!(nodes[0].remove(&live).await.is_err());
    assert!(nodes[0].remove(nodes[0].advertise()).await.is_err());
    assert!(nodes[0].remove("127.0.0.1:1").await.is_err());

    // One survivor is away while the dead member is removed.
    let away = nodes.pop().unwrap();
    let away_addr = away.advertise().to_string();
    let away_bind = away.local_addr();
    away.shutdown().await;
    nodes[0].remove(&dead_addr).await.unwrap();
    let observers: Vec<&Membership> = nodes.iter().collect();
    time_until_all_see(
        &observers,
        &dead_addr,
        MemberState::Left,
        Duration::from_secs(3),
    )
    .await;
    for node in &nodes {
        let view = node.view();
        assert!(!view.ring_members().any(|m| m.advertise == dead_addr));
    }

    // The one that was away learns it on its return.
    let socket = UdpSocket::bind(away_bind).unwrap();
    let mut config = config(&socket, &[nodes[0].advertise().to_string()], 2);
    config.advertise = away_addr;
    let back = start(socket, config);
    let deadline = Instant::now() + Duration::from_secs(5);
    wait_view(&back, deadline, "the returning node sees it left", |v| {
        state_of(v, &dead_addr) == Some(MemberState::Left)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_change_status_at_the_same_moment_see_each_others_new_status() {
    init_tracing();
    let mut timings = timings();
    // Far beyond the wait below: the periodic announce must not be what
    // settles it.
    timings.announce_interval = Duration::from_secs(60);
    let sockets: Vec<UdpSocket> = (0..3).map(|_| reserve()).collect();
    let seeds: Vec<String> = sockets.iter().map(addr_of).collect();
    let nodes: Vec<Membership> = sockets
        .into_iter()
        .map(|s| {
            let mut config = config(&s, &seeds, 1);
            config.status = STATUS_JOINING.to_string();
            config.timings = timings.clone();
            start(s, config)
        })
        .collect();
    let refs: Vec<&Membership> = nodes.iter().collect();
    wait_converged(&refs, Duration::from_secs(10)).await;
    let (a, b, c) = tokio::join!(
        nodes[0].set_status("ready"),
        nodes[1].set_status("ready"),
        nodes[2].set_status("ready")
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    for node in &nodes {
        wait_view(node, deadline, "everyone ready", |v| {
            v.members().len() == 3
                && v.members()
                    .iter()
                    .all(|m| m.status == "ready" && m.state == MemberState::Alive)
        })
        .await;
    }
}
