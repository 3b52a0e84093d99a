//! A tour of `mcstore-client` against a running cluster.
//!
//! ```sh
//! bash benches/scripts/local-cluster.sh start 3
//! cargo run -p mcstore-client --example cluster_demo -- 127.0.0.1:21211,127.0.0.1:21212
//! ```
//!
//! Connects through the seeds, prints the topology, writes and reads a few
//! keys on their owners, shows a compare-and-swap losing, and a
//! stale-while-revalidate round.

use mcstore_client::{Client, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let seeds = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:21211".to_owned());
    let client = Client::connect_seeds(seeds.split(',').map(str::to_owned)).await?;

    let topology = client.topology();
    println!(
        "{} members, replication factor {}",
        topology.nodes().len(),
        topology.replication_factor()
    );
    for node in topology.nodes() {
        println!("  {} {} (weight {})", node.addr, node.state, node.weight);
    }

    for i in 0..5 {
        let key = format!("demo:{i}");
        client.set(&key, format!("value {i}"), 0, 300).await?;
        let owners: Vec<&str> = topology
            .replicas(key.as_bytes())
            .iter()
            .map(|n| n.addr.as_str())
            .collect();
        println!("{key} -> {owners:?}");
    }
    let hits = client.get_many((0..6).map(|i| format!("demo:{i}"))).await?;
    println!("get_many found {} of 6", hits.len());

    let item = client.gets("demo:0").await?.expect("just stored");
    client.set("demo:0", "changed", 0, 300).await?;
    match client
        .cas("demo:0", "lost", 0, 300, item.cas.unwrap_or(0))
        .await
    {
        Err(Error::Exists) => println!("cas lost, as it should: the item changed"),
        other => println!("unexpected cas outcome: {other:?}"),
    }

    client.invalidate("demo:1", 30).await?;
    if let Some(item) = client.get_swr("demo:1", 10).await? {
        println!("stale {}, won the recache token {}", item.stale, item.won);
        if item.won {
            client
                .recache("demo:1", "fresh", 0, 300, item.cas.unwrap_or(0))
                .await?;
        }
    }
    println!("requests per node: {:?}", client.requests_per_node());
    Ok(())
}
