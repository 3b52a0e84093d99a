//! Golden vectors from libmemcached's test fixtures: a ring built the
//! libmemcached way sends each key to the listed server.

use mcstore_cluster::{Ring, ServerSpec};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    about: String,
    servers: Vec<FixtureServer>,
    ketama_weighted: Mapping,
    ketama_spy: Mapping,
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

fn fixture() -> Fixture {
    let text = include_str!("data/ketama_libmemcached.json");
    serde_json::from_str(text).expect("fixture parses")
}

fn check(ring: &Ring, cases: &[Case]) {
    let mut mismatches = Vec::new();
    for case in cases {
        let got = &ring.server_for(case.key.as_bytes()).host;
        if *got != case.server {
            mismatches.push(format!("{:?}: got {got}, want {}", case.key, case.server));
        }
    }
    assert!(mismatches.is_empty(), "mismatches: {mismatches:#?}");
}

#[test]
fn ketama_weighted_matches_libmemcached() {
    let fixture = fixture();
    assert!(fixture.about.contains("libmemcached"));
    assert_eq!(fixture.ketama_weighted.cases.len(), 99);
    let ring = Ring::new(
        fixture
            .servers
            .iter()
            .map(|s| ServerSpec::new(s.host.clone(), s.port, s.weight))
            .collect(),
    )
    .unwrap();
    check(&ring, &fixture.ketama_weighted.cases);
}

#[test]
fn named_servers_match_libmemcached_spy_mapping() {
    let fixture = fixture();
    let ring = Ring::new(
        fixture
            .servers
            .iter()
            .map(|s| {
                ServerSpec::new(s.host.clone(), s.port, s.weight)
                    .with_name(format!("/{}:{}", s.host, s.port))
            })
            .collect(),
    )
    .unwrap();
    check(&ring, &fixture.ketama_spy.cases);
}
