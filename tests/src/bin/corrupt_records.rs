//! Damages stored records, for the anti-entropy tests:
//! `corrupt_records <data dir> flip <key>...` flips one bit of each key's
//! stored record the way bit rot would (it then fails its checksum when it
//! is read); `corrupt_records <data dir> drop <key>...` removes each key's
//! record (an item or a tombstone) as if the node had never received it
//! (the engine's item and tombstone counts follow).
//!
//! Run it on the data directory of a node that is not running (killed with
//! `kill -9` is fine): it first opens the store, which replays the
//! write-ahead log into the engine, and shuts it down, so that the engine
//! holds every change and no replay at the node's next start rewrites the
//! damaged records; then it rewrites each record's bytes directly in the
//! engine, keeping the engine's checkpoint as it was.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use mcstore_storage::clock::SystemClock;
use mcstore_storage::engine::Change;
use mcstore_storage::{EngineKind, ItemRules, Record, Store, StoreConfig};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: corrupt_records <data dir> flip|drop <key>...");
        return ExitCode::from(2);
    };
    let drop_them = match args
        .next()
        .and_then(|mode| mode.into_string().ok())
        .as_deref()
    {
        Some("flip") => false,
        Some("drop") => true,
        _ => {
            eprintln!("usage: corrupt_records <data dir> flip|drop <key>...");
            return ExitCode::from(2);
        }
    };
    let keys: Vec<Vec<u8>> = args.map(|key| key.into_encoded_bytes()).collect();
    match corrupt(&dir, drop_them, &keys) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("corrupt_records: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn corrupt(dir: &std::path::Path, drop_them: bool, keys: &[Vec<u8>]) -> Result<(), String> {
    let rules = ItemRules {
        max_item_size: 1 << 20,
        item_size: |key, _flags, value| (key + value) as u64,
        parse_number: |text| std::str::from_utf8(text).ok()?.parse().ok(),
    };
    // The data directory's engine, from its ENGINE marker (none: sled).
    let marker = std::fs::read_to_string(dir.join("ENGINE")).unwrap_or_default();
    let kind = EngineKind::ALL
        .into_iter()
        .find(|kind| kind.name() == marker.trim())
        .unwrap_or_default();
    let mut config = StoreConfig::new(dir, rules);
    config.engine = kind;
    let store = Store::open(config, Arc::new(SystemClock))
        .map_err(|e| format!("opening the store: {e}"))?;
    store
        .shutdown()
        .map_err(|e| format!("shutting it down: {e}"))?;
    drop(store);
    let engine = mcstore_storage::engine::open(kind, dir, 16 << 20)
        .map_err(|e| format!("opening the engine: {e}"))?;
    let mut checkpoint = engine
        .checkpoint()
        .map_err(|e| e.to_string())?
        .ok_or("the engine has no checkpoint")?;
    let mut changes = Vec::new();
    for key in keys {
        let stored = engine
            .get(key)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no record for {}", String::from_utf8_lossy(key)))?;
        if drop_them {
            // The checkpoint's counts follow, as the store's would.
            let record = Record::decode(key, &stored).map_err(|e| e.to_string())?;
            if record.is_tombstone() {
                checkpoint.tombstones -= 1;
            } else {
                checkpoint.items -= 1;
                checkpoint.bytes -= (key.len() + stored.len()) as u64;
            }
            changes.push(Change::Remove {
                key: Bytes::from(key.clone()),
            });
            continue;
        }
        let mut damaged = stored.to_vec();
        // The last byte is the value's (or a tombstone's last header byte):
        // covered by the checksum either way.
        *damaged.last_mut().ok_or("an empty record")? ^= 0x20;
        changes.push(Change::Put {
            key: Bytes::from(key.clone()),
            record: Bytes::from(damaged),
        });
    }
    engine
        .apply(&changes, &checkpoint)
        .map_err(|e| e.to_string())?;
    engine.make_durable().map_err(|e| e.to_string())?;
    Ok(())
}
