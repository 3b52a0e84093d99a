//! `leave` and `remove`: shrinking a cluster.

use std::time::Duration;

use mcstore_client::{Client, Error};
use mcstore_cluster::MemberState;
use mcstore_protocol::ClusterCommand;

use crate::Outcome;

/// How often the state of a leaving node is looked at.
const POLL: Duration = Duration::from_millis(500);

/// A member other than `node` that answers, to ask about `node`.
fn observers(client: &Client, node: &str) -> Vec<String> {
    client
        .topology()
        .nodes()
        .iter()
        .filter(|n| n.addr != node && n.state == MemberState::Alive)
        .map(|n| n.addr.clone())
        .collect()
}

/// How `node` is seen by the first observer that answers.
async fn seen_as(client: &Client, node: &str) -> Option<String> {
    for observer in observers(client, node) {
        if let Ok(stats) = client.stats_of(&observer, Some("cluster")).await {
            return stats.get(&format!("node:{node}")).cloned();
        }
    }
    None
}

pub async fn leave(client: &Client, node: &str, quiet: bool) -> Outcome {
    client.cluster_command(node, ClusterCommand::Leave).await?;
    let bar = crate::progress(None, &format!("{node} is leaving"), quiet);
    loop {
        tokio::time::sleep(POLL).await;
        let state = seen_as(client, node).await;
        // The leaving node's own view of its hand-over, while it answers.
        let sent = client
            .stats_of(node, Some("cluster"))
            .await
            .ok()
            .and_then(|s| s.get("transfer_keys_sent").and_then(|v| v.parse().ok()));
        if let Some(sent) = sent {
            bar.set_position(sent);
        }
        bar.set_message(format!(
            "{node}: {} (keys handed over)",
            state.as_deref().unwrap_or("?")
        ));
        if state.as_deref() == Some("left") {
            bar.finish_and_clear();
            println!("{node} left the cluster");
            return Ok(());
        }
    }
}

pub async fn remove(client: &Client, node: &str) -> Outcome {
    let Some(observer) = observers(client, node).into_iter().next() else {
        return Err(Error::NoNodeAvailable(format!("no live member besides {node}")).into());
    };
    client
        .cluster_command(&observer, ClusterCommand::Remove(node.to_string()))
        .await?;
    loop {
        if seen_as(client, node).await.as_deref() == Some("left") {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    println!("{node} removed: its ranges are being copied to the members that take them");
    Ok(())
}
