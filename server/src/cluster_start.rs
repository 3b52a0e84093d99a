//! Starting this node's cluster part from the command line: the advertised
//! name, the secret, the generation, membership, topology and peer pool.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use mcstore_cluster::membership::{Membership, MembershipConfig, Timings};
use mcstore_cluster::peer::{PeerPool, PoolConfig};
use mcstore_cluster::replication::{ReplicationConfig, Replicator};
use mcstore_cluster::topology::Topology;
use mcstore_storage::Store;

use crate::cluster::ClusterNode;
use crate::config::Config;
use crate::rebalance::Bootstrap;
use mcstore_cluster::topology::STATUS_JOINING;

/// Connections to each peer.
const CONNECTIONS_PER_PEER: usize = 4;

/// Refuses a cluster configuration that cannot work or is unsafe, before
/// anything is opened or bound: a node listening on all addresses needs
/// `--advertise`, and one listening beyond loopback needs a secret.
pub fn check(config: &Config, listen: SocketAddr) -> anyhow::Result<()> {
    if config.replica_ack == "one" && (config.seeds.is_empty() || config.replication_factor < 2) {
        bail!(
            "--replica-ack one needs a cluster (--seeds) with --replication-factor 2 or more: \
             with one copy there is no other replica to wait for"
        );
    }
    if config.seeds.is_empty() {
        return Ok(());
    }
    if config.advertise.is_none() && listen.ip().is_unspecified() {
        bail!(
            "--advertise host:port is required with --seeds when listening on {listen}: \
             it is this node's name on the ring, as clients address it"
        );
    }
    if config.cluster_secret_file.is_none() && !listen.ip().is_loopback() {
        bail!(
            "a node with --seeds listening on {listen} (beyond loopback) needs \
             --cluster-secret-file: without it anyone who reaches the port could join the cluster"
        );
    }
    if let Some(advertise) = &config.advertise {
        let valid = advertise.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            bail!("--advertise {advertise:?} is not host:port");
        }
    }
    Ok(())
}

/// Starts the cluster part of a node listening on `local`, or `None` for a
/// node without `--seeds`. [`check`] has passed.
pub async fn start(
    config: &Config,
    local: SocketAddr,
    store: Arc<Store>,
) -> anyhow::Result<Option<Arc<ClusterNode>>> {
    if config.seeds.is_empty() {
        return Ok(None);
    }
    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| local.to_string());
    let secret = match &config.cluster_secret_file {
        Some(path) => Some(read_secret(path)?),
        None => None,
    };
    let generation = next_generation(&config.data_dir)?;
    let mut membership_config = MembershipConfig::new(advertise.clone(), local, generation);
    membership_config.seeds = config.seeds.clone();
    membership_config.weight = config.weight;
    membership_config.secret = secret.clone();
    let status = crate::rebalance::initial_status(&config.data_dir, &advertise);
    membership_config.status = status.to_string();
    let mut timings = Timings::default();
    timings.probe_period = config.probe_interval;
    timings.probe_rtt = config.probe_interval * 2 / 5;
    timings.suspect_to_down = config.suspect_timeout;
    membership_config.timings = timings;
    let membership = Membership::start(membership_config)
        .await
        .context("starting cluster membership")?;
    let topology = Topology::new(membership.view(), config.replication_factor as usize);
    tokio::spawn(topology.clone().follow(membership.watch()));
    let limits = config.limits();
    let peers = PeerPool::new(PoolConfig {
        advertise: advertise.clone(),
        secret: secret.clone(),
        connections_per_peer: CONNECTIONS_PER_PEER,
        request_timeout: config.peer_timeout,
        connect_timeout: config.peer_timeout,
        max_frame: crate::peer_session::max_frame(limits.max_item_size, limits.max_get_line) * 64,
        bind_ip: (!local.ip().is_unspecified()).then_some(local.ip()),
    });
    let replicator = Replicator::start(
        store,
        topology.clone(),
        peers.clone(),
        ReplicationConfig {
            hint_window: config.hint_window,
            transfer_rate: config.transfer_rate as u64,
            ..ReplicationConfig::default()
        },
    )
    .context("starting replication")?;
    tracing::info!(
        %advertise,
        generation,
        status,
        seeds = %config.seeds.join(","),
        replication_factor = config.replication_factor,
        "joining the cluster"
    );
    let node = Arc::new(ClusterNode::new(
        advertise.clone(),
        membership,
        topology,
        peers,
        replicator,
        (config.replica_ack == "one").then_some(config.replica_ack_timeout),
        secret,
        config.replica_reads,
        config.data_dir.clone(),
    ));
    if status == STATUS_JOINING {
        let bootstrap = Bootstrap {
            alone: config.seeds.iter().all(|seed| *seed == advertise),
            settle: config.probe_interval * 3,
        };
        tokio::spawn(crate::rebalance::join(node.clone(), bootstrap));
    }
    Ok(Some(node))
}

fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading the cluster secret file {}", path.display()))?;
    let secret: Vec<u8> = text.strip_suffix(b"\n").unwrap_or(&text).to_vec();
    if secret.is_empty() {
        bail!("the cluster secret file {} is empty", path.display());
    }
    Ok(secret)
}

/// The generation of this run: larger than every earlier run's (kept in
/// `<data dir>/GENERATION`, written durably) and than the time in ms.
fn next_generation(data_dir: &Path) -> anyhow::Result<u64> {
    let path = data_dir.join("GENERATION");
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .with_context(|| format!("{} is not a number", path.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let generation = (previous + 1).max(now_ms);
    mcstore_storage::datadir::write_file_durably(
        data_dir,
        "GENERATION",
        format!("{generation}\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(generation)
}
