//! `Client::connect_servers` is a plain ketama client: against real
//! memcached processes, each key lands on the server libmemcached's
//! `KETAMA_WEIGHTED` puts it on (the golden vectors of
//! `cluster/tests/data/ketama_libmemcached.json`: eight servers
//! `10.0.1.1..8:11211` with weights). Each memcached stands in for one
//! fixture server under its name (twemproxy's `host:port:weight name`),
//! whose point strings are then exactly the fixture's `10.0.1.N-i`.

mod common;

use mcstore_client::Client;
use mcstore_e2e::{exchange, Memcached};
use serde::Deserialize;

use common::runtime;

#[derive(Deserialize)]
struct Fixture {
    servers: Vec<FixtureServer>,
    ketama_weighted: Mapping,
}

#[derive(Deserialize)]
struct FixtureServer {
    host: String,
    port: u16,
    weight: u32,
}

#[derive(Deserialize)]
struct Mapping {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    key: String,
    server: String,
}

#[test]
fn keys_land_where_libmemcached_puts_them() {
    let fixture: Fixture = serde_json::from_str(include_str!(
        "../../cluster/tests/data/ketama_libmemcached.json"
    ))
    .unwrap();
    let servers: Vec<Memcached> = fixture.servers.iter().map(|_| Memcached::start()).collect();
    let list: Vec<String> = fixture
        .servers
        .iter()
        .zip(&servers)
        .map(|(s, m)| {
            assert_eq!(s.port, 11211);
            format!("{}:{} {}", m.addr(), s.weight, s.host)
        })
        .collect();
    let rt = runtime();
    let client = Client::connect_servers(&list).unwrap();
    rt.block_on(async {
        for case in &fixture.ketama_weighted.cases {
            client
                .set(&case.key, case.server.clone(), 0, 0)
                .await
                .unwrap();
        }
        let keys: Vec<&str> = fixture
            .ketama_weighted
            .cases
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(client.get_many(&keys).await.unwrap().len(), keys.len());
    });
    // Read every key straight from each memcached: each one holds exactly
    // the keys the fixture puts on the server it stands in for.
    let keys: Vec<&str> = fixture
        .ketama_weighted
        .cases
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    for (spec, memcached) in fixture.servers.iter().zip(&servers) {
        let reply = exchange(
            memcached.addr(),
            format!("get {}\r\n", keys.join(" ")).as_bytes(),
            1,
        )
        .unwrap();
        let mut held: Vec<String> = String::from_utf8_lossy(&reply)
            .lines()
            .filter_map(|line| line.strip_prefix("VALUE "))
            .map(|rest| rest.split(' ').next().unwrap().to_string())
            .collect();
        held.sort();
        let mut expected: Vec<String> = fixture
            .ketama_weighted
            .cases
            .iter()
            .filter(|c| c.server == spec.host)
            .map(|c| c.key.clone())
            .collect();
        expected.sort();
        assert_eq!(held, expected, "keys on the stand-in for {}", spec.host);
    }
    // A plain host:port list hashes the address as written, as
    // libmemcached does: the ring of the list is the client's ring.
    let plain: Vec<String> = servers
        .iter()
        .take(3)
        .map(|m| m.addr().to_string())
        .collect();
    let client = Client::connect_servers(&plain).unwrap();
    let ring =
        mcstore_cluster::Ring::unweighted(servers.iter().take(3).map(|m| ("127.0.0.1", m.port())))
            .unwrap();
    for i in 0..300 {
        let key = format!("plain-{i}");
        let owner = &plain[ring.server_index(key.as_bytes())];
        assert_eq!(&client.route(key.as_bytes(), true)[0], owner);
    }
}
