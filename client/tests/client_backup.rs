//! `dump` of a three-node cluster, then `restore` into an empty cluster of
//! another size: every item comes back (keys of any bytes, flags, absolute
//! expiry, empty values), each on its new owners.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mcstore_client::dump::DumpReader;
use mcstore_client::{meta, Client};
use mcstore_e2e::cluster::{stats, Cluster};

use common::{cli, outcome, runtime};

#[test]
fn dump_then_restore_into_an_empty_cluster_of_another_size() {
    let source = Cluster::start(3, &[]);
    let rt = runtime();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = now + 3600;
    let special: Vec<(Bytes, u32, Option<u64>, Bytes)> = vec![
        (
            Bytes::from_static(b"bin key\r\n\x00\xff"),
            7,
            None,
            Bytes::from_static(b"binary\r\nvalue"),
        ),
        (
            Bytes::from_static(b"expiring"),
            1,
            Some(expires),
            Bytes::from_static(b"soon"),
        ),
        (Bytes::from_static(b"empty"), u32::MAX, None, Bytes::new()),
    ];
    rt.block_on(async {
        let client = Client::connect_seeds(source.addrs.iter().map(|a| a.to_string()))
            .await
            .unwrap();
        for (key, flags, exptime, value) in &special {
            let mut set = meta::set(key.clone(), value.clone());
            set.flags = *flags;
            set.ttl = exptime.map(|e| e as i32);
            meta::check_reply(&client.meta_set(set).await.unwrap()).unwrap();
        }
        // Already expired: not dumped.
        client.set("gone", "x", 0, -1).await.unwrap();
    });
    let (code, _, stderr) = outcome(&cli(
        &source.addrs,
        &[
            "load",
            "--prefix",
            "d",
            "--count",
            "1500",
            "--value-size",
            "200",
        ],
    ));
    assert_eq!(code, 0, "{stderr}");
    source.wait_replicated();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.mcdump");
    let file_arg = file.to_str().unwrap();
    let (code, _, stderr) = outcome(&cli(&source.addrs, &["dump", file_arg]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("dumped 1503 items from 3 node(s)"),
        "{stderr}"
    );
    let items: Vec<_> =
        DumpReader::new(std::io::BufReader::new(std::fs::File::open(&file).unwrap()))
            .unwrap()
            .collect::<std::io::Result<_>>()
            .unwrap();
    assert_eq!(items.len(), 1503, "each key once");

    // One node's dump is everything it stores, replicas included.
    let node_file = dir.path().join("node.mcdump");
    let node = source.addrs[0].to_string();
    let (code, _, stderr) = outcome(&cli(
        &source.addrs,
        &["dump", node_file.to_str().unwrap(), "--node", &node],
    ));
    assert_eq!(code, 0, "{stderr}");
    let stored = stats(source.addrs[0], "").unwrap()["curr_items"].clone();
    assert!(
        stderr.contains(&format!("dumped {stored} items from 1 node(s)")),
        "{stderr} vs curr_items {stored}"
    );

    // Restore into two nodes.
    let target = Cluster::start(2, &[]);
    let (code, _, stderr) = outcome(&cli(&target.addrs, &["restore", file_arg]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("restored 1503 items"), "{stderr}");
    let (code, stdout, stderr) = outcome(&cli(
        &target.addrs,
        &[
            "check",
            "--prefix",
            "d",
            "--count",
            "1500",
            "--value-size",
            "200",
        ],
    ));
    assert_eq!(
        (code, stdout.trim()),
        (0, "1500 ok, 0 missing, 0 wrong"),
        "{stderr}"
    );
    assert_eq!(
        target.sum_cluster_stat("forwarded"),
        0,
        "written to the owners"
    );
    target.wait_replicated();
    assert_eq!(target.total_items(), 2 * 1503, "two copies of every item");
    rt.block_on(async {
        let client = Client::connect_seeds(target.addrs.iter().map(|a| a.to_string()))
            .await
            .unwrap();
        for (key, flags, exptime, value) in &special {
            let reply = client.meta_get(meta::get(key.clone())).await.unwrap();
            let item = meta::MetaItem::from_reply(&reply).unwrap_or_else(|| panic!("{key:?}"));
            assert_eq!(item.value.as_ref(), Some(value));
            assert_eq!(item.flags, Some(*flags));
            match exptime {
                None => assert_eq!(item.ttl, Some(-1)),
                Some(at) => {
                    let left = item.ttl.unwrap() as u64;
                    assert!(left <= 3600 && now + left + 5 >= *at, "ttl {left}");
                }
            }
        }
        assert!(client.get("gone").await.unwrap().is_none());
    });

    // A truncated backup is refused (exit 4) before anything is written.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.mcdump");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let (code, _, stderr) = outcome(&cli(&target.addrs, &["restore", cut.to_str().unwrap()]));
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
}
