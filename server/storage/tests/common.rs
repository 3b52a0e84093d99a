//! Helpers shared by the storage crate's integration tests.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mcstore_storage::clock::ManualClock;
use mcstore_storage::ops::{StoreMode, StoreOp};
use mcstore_storage::{EngineKind, Expiry, ItemRules, Operation, Store, StoreConfig};

/// The unix second the tests' clocks start at.
pub const START: u64 = 1_800_000_000;

/// memcached's item rules, as the server passes them.
pub fn rules() -> ItemRules {
    ItemRules {
        max_item_size: 1024 * 1024,
        item_size: mcstore_protocol::item_size,
        parse_number: mcstore_protocol::number::parse_u64,
    }
}

/// The default configuration for `dir` on `engine`.
pub fn config(dir: &Path, engine: EngineKind) -> StoreConfig {
    StoreConfig {
        engine,
        ..StoreConfig::new(dir, rules())
    }
}

/// A store on `dir` and `engine` without a background reclaimer.
pub fn open(dir: &Path, clock: &Arc<ManualClock>, engine: EngineKind) -> Store {
    let mut config = config(dir, engine);
    config.reclaim_keys_per_sec = 0;
    config.checkpoint_interval = Duration::from_millis(100);
    Store::open(config, clock.clone()).expect("open store")
}

/// Runs each `async fn NAME(engine: EngineKind)` named as one test per
/// engine: `NAME::sled` and `NAME::fjall`.
#[allow(unused_macros)]
macro_rules! engine_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                super::$name(mcstore_storage::EngineKind::Sled).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fjall() {
                super::$name(mcstore_storage::EngineKind::Fjall).await
            }
        }
    )+};
}
#[allow(unused_imports)]
pub(crate) use engine_tests;

/// A plain `set`.
pub fn set(key: &str, value: &str) -> Operation {
    Operation::Store(StoreOp::new(
        Bytes::copy_from_slice(key.as_bytes()),
        StoreMode::Set,
        0,
        Expiry::Never,
        Bytes::copy_from_slice(value.as_bytes()),
    ))
}

/// A xorshift generator: deterministic, seeded, no dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Shuffles a slice in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}
