//! `stats` and `cluster`.

use std::collections::BTreeMap;

use mcstore_client::Client;

use crate::Outcome;

pub async fn stats(client: &Client, group: Option<&str>) -> Outcome {
    let mut failed = Vec::new();
    for (addr, stats) in client.stats(group).await {
        match stats {
            Ok(stats) => {
                for (name, value) in stats {
                    println!("{addr} {name} {value}");
                }
            }
            Err(err) => {
                eprintln!("mcstore-cli: {addr}: {err}");
                failed.push(err);
            }
        }
    }
    match failed.into_iter().next() {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

/// One row of the `cluster` table.
struct Row {
    node: String,
    state: String,
    weight: u32,
    items: String,
    lag_ms: String,
    pending: String,
    hints: String,
}

fn stat_sum(stats: &BTreeMap<String, String>, suffix: &str, max: bool) -> String {
    let values = stats
        .iter()
        .filter(|(name, _)| name.starts_with("peer:") && name.ends_with(suffix))
        .filter_map(|(_, value)| value.parse::<u64>().ok());
    if max {
        values.max().unwrap_or(0).to_string()
    } else {
        values.sum::<u64>().to_string()
    }
}

pub async fn cluster(client: &Client) -> Outcome {
    let topology = client.topology();
    let mut rows = Vec::new();
    for node in topology.nodes() {
        let mut row = Row {
            node: node.addr.clone(),
            state: node.state.to_string(),
            weight: node.weight,
            items: "-".into(),
            lag_ms: "-".into(),
            pending: "-".into(),
            hints: "-".into(),
        };
        if node.is_live() {
            if let Ok(general) = client.stats_of(&node.addr, None).await {
                row.items = general.get("curr_items").cloned().unwrap_or_default();
            }
            if let Ok(cluster) = client.stats_of(&node.addr, Some("cluster")).await {
                row.lag_ms = stat_sum(&cluster, ":lag_ms", true);
                row.pending = stat_sum(&cluster, ":pending", false);
                row.hints = cluster.get("hints_pending").cloned().unwrap_or_default();
            }
        }
        rows.push(row);
    }
    let width = rows.iter().map(|r| r.node.len()).max().unwrap_or(4).max(4);
    println!(
        "{:width$}  {:8} {:>6} {:>10} {:>8} {:>10} {:>8}",
        "NODE", "STATE", "WEIGHT", "ITEMS", "LAG_MS", "PENDING", "HINTS"
    );
    for row in &rows {
        println!(
            "{:width$}  {:8} {:>6} {:>10} {:>8} {:>10} {:>8}",
            row.node, row.state, row.weight, row.items, row.lag_ms, row.pending, row.hints
        );
    }
    println!(
        "replication factor {}, {} on the ring",
        topology.replication_factor(),
        topology.ring_nodes().count()
    );
    if rows.iter().all(|r| r.items == "-") {
        return Err(mcstore_client::Error::NoNodeAvailable("no node answered".into()).into());
    }
    Ok(())
}
