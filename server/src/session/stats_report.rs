//! The `stats` report: the general group in memcached's names and order,
//! `stats settings`, `stats store` (group commit, fsyncs, disk, the change
//! stream), `stats reset`, and memcached's `stats slabs`, `stats items`,
//! `stats conns` and `stats detail`.
//!
//! mcstore has no slabs; `stats slabs` and `stats items` describe one slab
//! class (id 1) holding every item, so that dashboards and exporters built
//! on memcached's shape read true figures: one chunk per item
//! (`used_chunks` = items, no free chunks), `chunk_size` the largest item
//! allowed, `mem_requested` and `total_malloced` the items' bytes counted
//! as memcached counts them, `reclaimed` and `crawler_reclaimed` the items
//! the background reclaimer removed, `evicted` 0 (nothing is ever
//! evicted). Figures of memcached's LRU (`number_hot`, `age`, `moves_*`)
//! are 0, except `number_cold`, every item. With no items, both answer as a
//! fresh memcached does.

use std::fmt::Display;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use mcstore_protocol::request::Stats;
use mcstore_protocol::Reply;
use mcstore_storage::Store;

use super::{NodeInfo, VERSION};
use crate::cluster::ClusterNode;
use crate::stats::Shared;

/// What a `stats` request reads.
pub struct StatsReport<'a> {
    /// The node's data.
    pub store: &'a Store,
    /// The node's settings.
    pub node: &'a NodeInfo,
    /// The connections' counters.
    pub shared: &'a Shared,
    /// The node's cluster, if it is in one.
    pub cluster: Option<&'a ClusterNode>,
}

/// Statistics as names and values, in the order they are reported.
pub type StatList = Vec<(String, String)>;

fn stat(out: &mut StatList, name: &str, value: impl Display) {
    out.push((name.to_string(), value.to_string()));
}

/// A group of statistics both protocols report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatGroup {
    /// `stats`: memcached's general statistics.
    General,
    /// `stats settings`.
    Settings,
    /// `stats store`: mcstore's storage layer.
    Store,
    /// `stats cluster`: members, forwarding and replication.
    Cluster,
}

impl StatsReport<'_> {
    /// Writes the reply to `stats [group]`.
    pub fn render(&self, stats: Stats, out: &mut BytesMut) {
        let entries = match stats {
            Stats::General => self.entries(StatGroup::General),
            Stats::Settings => self.entries(StatGroup::Settings),
            Stats::Reset => {
                self.shared.counters.reset();
                self.shared.detail.clear();
                Reply::Reset.encode(out);
                return;
            }
            Stats::Detail(word) => {
                let detail = &self.shared.detail;
                match word.as_deref() {
                    Some(b"on") => {
                        detail.set_enabled(true);
                        Reply::Ok.encode(out);
                    }
                    Some(b"off") => {
                        detail.set_enabled(false);
                        Reply::Ok.encode(out);
                    }
                    Some(b"dump") => detail.dump(out),
                    _ => Reply::client_error("usage: stats detail on|off|dump").encode(out),
                }
                return;
            }
            Stats::Group(group) => match &group[..] {
                b"store" => self.entries(StatGroup::Store),
                b"cluster" => self.entries(StatGroup::Cluster),
                b"slabs" => self.listed(Self::slabs),
                b"items" => self.listed(Self::items),
                b"conns" => self.listed(Self::conns),
                // memcached without -T (track sizes) says the same.
                b"sizes" => vec![("sizes_status".to_owned(), "disabled".to_owned())],
                _ => {
                    Reply::Error.encode(out);
                    return;
                }
            },
        };
        for (name, value) in entries {
            Reply::Stat {
                name: Bytes::from(name),
                value: Bytes::from(value),
            }
            .encode(out);
        }
        Reply::End.encode(out);
    }

    /// The statistics of one group, in order.
    pub fn entries(&self, group: StatGroup) -> StatList {
        let mut out = StatList::new();
        match group {
            StatGroup::General => self.general(&mut out),
            StatGroup::Settings => self.settings(&mut out),
            StatGroup::Store => self.store(&mut out),
            StatGroup::Cluster => self.cluster(&mut out),
        }
        out
    }

    fn listed(&self, group: fn(&Self, &mut StatList)) -> StatList {
        let mut out = StatList::new();
        group(self, &mut out);
        out
    }

    fn general(&self, out: &mut StatList) {
        let shared = self.shared;
        let storage = self.store.stats();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (user, system) = rusage();
        stat(out, "pid", std::process::id());
        stat(out, "uptime", self.node.started.elapsed().as_secs());
        stat(out, "time", now);
        stat(out, "version", VERSION);
        stat(out, "pointer_size", usize::BITS);
        stat(out, "rusage_user", format_args!("{user:.6}"));
        stat(out, "rusage_system", format_args!("{system:.6}"));
        stat(out, "max_connections", self.node.max_connections);
        let connections = shared.curr_connections.load(Ordering::Relaxed);
        stat(out, "curr_connections", connections);
        let counters = shared.counters.snapshot();
        let lookup = |name: &str| {
            counters
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or(0)
        };
        stat(out, "total_connections", lookup("total_connections"));
        stat(out, "rejected_connections", lookup("rejected_connections"));
        for (name, value) in &counters {
            if !matches!(
                *name,
                "total_connections" | "rejected_connections" | "total_items"
            ) {
                stat(out, name, value);
            }
        }
        stat(out, "connection_structures", connections);
        stat(out, "limit_maxbytes", 0);
        stat(out, "threads", self.node.threads);
        stat(out, "bytes", storage.bytes.load(Ordering::Relaxed));
        stat(out, "curr_items", storage.items.load(Ordering::Relaxed));
        stat(out, "total_items", lookup("total_items"));
        // mcstore never evicts: every item stays until deleted or expired.
        stat(out, "evictions", 0);
        stat(
            out,
            "corrupt_records",
            storage.corrupt_records.load(Ordering::Relaxed),
        );
    }

    fn settings(&self, out: &mut StatList) {
        let node = self.node;
        let config = self.store.config();
        // memcached's names first, in its order, for tools that read them.
        let listen = node.listen.parse::<std::net::SocketAddr>().ok();
        stat(out, "maxbytes", 0);
        stat(out, "maxconns", node.max_connections);
        stat(out, "tcpport", listen.map_or(0, |a| a.port()));
        stat(out, "udpport", 0);
        stat(
            out,
            "inter",
            listen.map_or_else(String::new, |a| a.ip().to_string()),
        );
        stat(out, "evictions", "off");
        stat(out, "num_threads", node.threads);
        stat(
            out,
            "detail_enabled",
            if self.shared.detail.enabled() {
                "yes"
            } else {
                "no"
            },
        );
        stat(out, "cas_enabled", "yes");
        let auth = if self.shared.auth.required() {
            "yes"
        } else {
            "no"
        };
        stat(out, "auth_enabled_sasl", auth);
        stat(out, "auth_enabled_ascii", auth);
        stat(out, "item_size_max", config.rules.max_item_size);
        stat(out, "slab_reassign", "no");
        stat(
            out,
            "slab_automove",
            self.shared.slab_automove.load(Ordering::Relaxed),
        );
        stat(out, "lru_crawler", "no");
        stat(out, "flush_enabled", "yes");
        // mcstore's own.
        stat(out, "listen", &node.listen);
        stat(out, "data_dir", config.data_dir.display());
        stat(out, "sync", config.sync.name());
        stat(out, "sync_interval_ms", config.sync_interval.as_millis());
        stat(out, "max_batch", config.max_batch);
        stat(out, "cache_bytes", config.cache_bytes);
        stat(out, "wal_segment_bytes", config.wal_segment_bytes);
        stat(out, "wal_retention_bytes", config.wal_retention_bytes);
        stat(
            out,
            "checkpoint_interval_ms",
            config.checkpoint_interval.as_millis(),
        );
        stat(out, "reclaim_keys_per_sec", config.reclaim_keys_per_sec);
        stat(
            out,
            "tombstone_grace_secs",
            config.tombstone_grace.as_secs(),
        );
        stat(out, "max_clock_skew_ms", config.max_clock_skew.as_millis());
        stat(out, "max_pending_writes", config.max_pending_writes);
    }
    /// `stats slabs`: one class holding every item (see the module docs).
    fn slabs(&self, out: &mut StatList) {
        let storage = self.store.stats();
        let items = storage.items.load(Ordering::Relaxed);
        let bytes = storage.bytes.load(Ordering::Relaxed);
        if items > 0 {
            let counters = self.shared.counters.snapshot();
            let counter = |name: &str| {
                counters
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, v)| *v)
            };
            stat(out, "1:chunk_size", self.store.config().rules.max_item_size);
            stat(out, "1:chunks_per_page", 1);
            stat(out, "1:total_pages", items);
            stat(out, "1:total_chunks", items);
            stat(out, "1:used_chunks", items);
            stat(out, "1:free_chunks", 0);
            stat(out, "1:free_chunks_end", 0);
            for name in [
                "get_hits",
                "cmd_set",
                "delete_hits",
                "incr_hits",
                "decr_hits",
                "cas_hits",
                "cas_badval",
                "touch_hits",
            ] {
                stat(out, &format!("1:{name}"), counter(name));
            }
        }
        stat(out, "active_slabs", u64::from(items > 0));
        stat(out, "total_malloced", if items > 0 { bytes } else { 0 });
    }

    /// `stats items`: the one class's item figures (see the module docs).
    fn items(&self, out: &mut StatList) {
        let storage = self.store.stats();
        let items = storage.items.load(Ordering::Relaxed);
        if items == 0 {
            return;
        }
        let reclaimed = storage.reclaimed.load(Ordering::Relaxed);
        let figures: [(&str, u64); 28] = [
            ("number", items),
            ("number_hot", 0),
            ("number_warm", 0),
            ("number_cold", items),
            ("age_hot", 0),
            ("age_warm", 0),
            ("age", 0),
            ("mem_requested", storage.bytes.load(Ordering::Relaxed)),
            ("evicted", 0),
            ("evicted_nonzero", 0),
            ("evicted_time", 0),
            ("outofmemory", 0),
            ("tailrepairs", 0),
            ("reclaimed", reclaimed),
            ("expired_unfetched", 0),
            ("evicted_unfetched", 0),
            ("evicted_active", 0),
            ("crawler_reclaimed", reclaimed),
            ("crawler_items_checked", 0),
            ("lrutail_reflocked", 0),
            ("moves_to_cold", 0),
            ("moves_to_warm", 0),
            ("moves_within_lru", 0),
            ("direct_reclaims", 0),
            ("hits_to_hot", 0),
            ("hits_to_warm", 0),
            ("hits_to_cold", 0),
            ("hits_to_temp", 0),
        ];
        for (name, value) in figures {
            stat(out, &format!("items:1:{name}"), value);
        }
    }

    /// `stats conns`: the listener and every connection, by descriptor.
    fn conns(&self, out: &mut StatList) {
        for conn in self.shared.conns.report() {
            let fd = conn.fd;
            stat(out, &format!("{fd}:addr"), &conn.addr);
            if let Some(listen_addr) = &conn.listen_addr {
                stat(out, &format!("{fd}:listen_addr"), listen_addr);
            }
            stat(out, &format!("{fd}:state"), conn.state);
            stat(
                out,
                &format!("{fd}:secs_since_last_cmd"),
                conn.secs_since_last_cmd,
            );
        }
    }

    fn store(&self, out: &mut StatList) {
        let store = self.store;
        let stats = store.stats();
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let batches = load(&stats.batches);
        let ops = load(&stats.batched_ops);
        let (engine_bytes, wal_bytes) = store.disk_bytes();
        stat(out, "engine", store.engine_name());
        stat(out, "node_id", store.node_id());
        stat(out, "sync", store.config().sync.name());
        stat(out, "batches", batches);
        stat(out, "batched_ops", ops);
        let mean = if batches == 0 {
            0.0
        } else {
            ops as f64 / batches as f64
        };
        stat(out, "batch_mean", format_args!("{mean:.2}"));
        stat(out, "batch_max", load(&stats.max_batch));
        stat(out, "fsyncs", load(&stats.fsyncs));
        for (name, value) in stats.fsync_percentiles() {
            stat(out, name, value);
        }
        stat(out, "checkpoints", load(&stats.checkpoints));
        stat(out, "reclaimed", load(&stats.reclaimed));
        stat(out, "tombstones", load(&stats.tombstones));
        stat(out, "tombstones_purged", load(&stats.purged));
        stat(out, "applied", load(&stats.applied));
        stat(out, "applied_stale", load(&stats.applied_stale));
        stat(out, "clock_skew_refused", load(&stats.clock_skew_refused));
        if let Some(cache) = store.record_cache_stats() {
            stat(out, "record_cache_hits", cache.hits);
            stat(out, "record_cache_misses", cache.misses);
            stat(out, "record_cache_bytes", cache.bytes);
            stat(out, "record_cache_limit", cache.capacity);
        }
        stat(out, "engine_disk_bytes", engine_bytes);
        stat(out, "wal_disk_bytes", wal_bytes);
        stat(out, "disk_bytes", engine_bytes + wal_bytes);
        stat(out, "change_stream_seq", store.published_seq());
        for (name, state) in store.cursors() {
            stat(out, &format!("cursor:{name}"), state.position);
            if state.fell_behind {
                stat(out, &format!("cursor:{name}:fell_behind"), 1);
            }
        }
        stat(out, "corrupt_records", load(&stats.corrupt_records));
    }
}

impl StatsReport<'_> {
    /// `stats cluster`: every member and its state (this node included),
    /// every member's ketama weight (`weight:<addr>`), the replica set size, the ring, and what this node forwarded. A node
    /// without `--seeds` is a cluster of one.
    fn cluster(&self, out: &mut StatList) {
        let Some(cluster) = self.cluster else {
            stat(out, &format!("node:{}", self.node.listen), "alive");
            stat(out, &format!("weight:{}", self.node.listen), 1);
            stat(out, "replication_factor", 1);
            stat(out, "ring_nodes", 1);
            for name in ["forwarded", "forward_errors", "peer_rejected"] {
                stat(out, name, 0);
            }
            return;
        };
        let snapshot = cluster.topology.snapshot();
        for member in snapshot.view().members() {
            // A live member that is joining or leaving shows its status.
            let live = matches!(
                member.state,
                mcstore_cluster::MemberState::Alive | mcstore_cluster::MemberState::Suspect
            );
            let name = format!("node:{}", member.advertise);
            if live && member.status != mcstore_cluster::topology::STATUS_READY {
                stat(out, &name, &member.status);
            } else {
                stat(out, &name, member.state);
            }
        }
        for member in snapshot.view().members() {
            stat(out, &format!("weight:{}", member.advertise), member.weight);
        }
        stat(out, "self", &cluster.advertise);
        stat(out, "replication_factor", snapshot.replication_factor());
        stat(out, "ring_nodes", snapshot.ring_members().len());
        let counters = &cluster.counters;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        stat(out, "forwarded", load(&counters.forwarded));
        stat(out, "forward_errors", load(&counters.forward_errors));
        stat(out, "peer_rejected", load(&counters.peer_rejected));
        stat(
            out,
            "executed_for_peers",
            load(&counters.executed_for_peers),
        );
        let gossip = cluster.membership.counters();
        stat(out, "gossip_rejected", gossip.rejected);
        let reports = cluster.replicator.report();
        for report in &reports {
            let peer = &report.peer;
            stat(out, &format!("peer:{peer}:lag_ms"), report.lag_ms);
            stat(out, &format!("peer:{peer}:pending"), report.pending);
            stat(out, &format!("peer:{peer}:hints"), report.hints);
            stat(out, &format!("peer:{peer}:shipped"), report.shipped);
            stat(out, &format!("peer:{peer}:transferred"), report.transferred);
            stat(out, &format!("peer:{peer}:transfer"), report.transfer);
            stat(out, &format!("peer:{peer}:acked"), report.acked);
        }
        stat(out, "change_seq", self.store.published_seq());
        stat(
            out,
            "transfer_keys_done",
            load(&counters.transfer_keys_received),
        );
        stat(
            out,
            "transfer_bytes_done",
            load(&counters.transfer_bytes_received),
        );
        stat(
            out,
            "transfer_keys_sent",
            reports.iter().map(|r| r.transferred).sum::<u64>(),
        );
        stat(
            out,
            "transfer_bytes_sent",
            reports.iter().map(|r| r.transferred_bytes).sum::<u64>(),
        );
        let storage = self.store.stats();
        stat(
            out,
            "replicated_in",
            storage.applied.load(Ordering::Relaxed),
        );
        stat(
            out,
            "replicated_out",
            reports
                .iter()
                .map(|r| r.shipped + r.transferred)
                .sum::<u64>(),
        );
        stat(
            out,
            "hints_pending",
            reports.iter().map(|r| r.hints).sum::<u64>(),
        );
        let repairs = cluster.antientropy.report();
        for repair in &repairs {
            let peer = &repair.peer;
            stat(out, &format!("peer:{peer}:last_repair"), repair.last_repair);
            stat(
                out,
                &format!("peer:{peer}:repair_differing"),
                repair.differing,
            );
            stat(out, &format!("peer:{peer}:repair_rounds"), repair.rounds);
        }
        stat(out, "digests_ready", u8::from(cluster.antientropy.ready()));
        stat(out, "keys_repaired", load(&counters.keys_repaired));
        stat(
            out,
            "repair_keys_sent",
            repairs.iter().map(|r| r.sent).sum::<u64>(),
        );
    }
}

/// User and system CPU seconds of this process.
fn rusage() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we pass; no other memory.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}
