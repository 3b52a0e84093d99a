//! Micro-benchmarks of the protocol crate: parsing each kind of request with
//! `parse_request` and encoding each kind of reply with `Reply::encode`,
//! reported as bytes per second.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcstore_protocol::{parse_request, Decoded, Limits, Reply, Value};

/// One request of each kind, as a client sends it.
fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let key = "k".repeat(63);
    let value = "v".repeat(100);
    let large = "x".repeat(4096);
    let many_keys = (0..100)
        .map(|i| format!("key:{i:060}"))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        ("get", format!("get {key}\r\n")),
        ("get_100_keys", format!("get {many_keys}\r\n")),
        ("gets", format!("gets {key}\r\n")),
        ("gat", format!("gat 300 {key}\r\n")),
        ("set_100B", format!("set {key} 0 0 100\r\n{value}\r\n")),
        ("set_4KiB", format!("set {key} 5 3600 4096\r\n{large}\r\n")),
        ("add", format!("add {key} 0 0 100\r\n{value}\r\n")),
        ("append", format!("append {key} 0 0 100\r\n{value}\r\n")),
        ("cas", format!("cas {key} 0 0 100 123456789\r\n{value}\r\n")),
        (
            "set_noreply",
            format!("set {key} 0 0 100 noreply\r\n{value}\r\n"),
        ),
        ("delete", format!("delete {key}\r\n")),
        ("incr", format!("incr {key} 42\r\n")),
        ("touch", format!("touch {key} 300\r\n")),
        ("flush_all", "flush_all 0\r\n".to_owned()),
        ("version", "version\r\n".to_owned()),
        ("verbosity", "verbosity 1\r\n".to_owned()),
        ("stats", "stats\r\n".to_owned()),
        ("quit", "quit\r\n".to_owned()),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.into_bytes()))
    .collect()
}

fn bench_parse_request(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse_request");
    for (name, wire) in requests() {
        // Every input must parse completely, or the benchmark measures nothing.
        match parse_request(&wire, &limits) {
            Decoded::Complete(_, used) => assert_eq!(used, wire.len(), "{name}"),
            Decoded::Incomplete => panic!("{name} did not parse"),
        }
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_request(black_box(&wire), &limits))
        });
    }
    group.finish();
}

/// One reply of each kind, as a server sends it.
fn replies() -> Vec<(&'static str, Reply)> {
    let value = |size: usize, cas: Option<u64>| {
        Reply::Value(Value {
            key: Bytes::from("k".repeat(63)),
            flags: 5,
            cas,
            data: Bytes::from(vec![b'v'; size]),
        })
    };
    vec![
        ("stored", Reply::Stored),
        ("not_found", Reply::NotFound),
        ("end", Reply::End),
        ("value_100B", value(100, None)),
        ("value_4KiB", value(4096, None)),
        ("value_100B_cas", value(100, Some(123_456_789))),
        ("number", Reply::Number(18_446_744_073_709_551_615)),
        (
            "stat",
            Reply::Stat {
                name: Bytes::from_static(b"curr_connections"),
                value: Bytes::from_static(b"1234"),
            },
        ),
        ("version", Reply::Version(Bytes::from_static(b"1.6.21"))),
        (
            "server_error",
            Reply::server_error("out of memory storing object"),
        ),
        ("client_error", Reply::client_error("bad data chunk")),
    ]
}

fn bench_encode_reply(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_reply");
    let mut out = BytesMut::with_capacity(8192);
    for (name, reply) in replies() {
        out.clear();
        reply.encode(&mut out);
        assert!(out.ends_with(b"\r\n"), "{name}");
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(&reply).encode(&mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse_request, bench_encode_reply);
criterion_main!(benches);
