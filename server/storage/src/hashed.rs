//! Maps keyed by a key's 64-bit hash, for the in-memory tables that every
//! read passes through (the record cache, the server's access table).
//!
//! The key is hashed once (xxh3), and that hash both picks the table's
//! shard ([`shard_index`]) and finds the entry, which the map's hasher
//! takes as it is ([`HashedMap`]), instead of a second hash and a
//! comparison of the key in the map itself. Whether an entry is the key's
//! own is the table's business: the cache keeps the key and compares it,
//! the access table compares the item's cas unique.
//!
//! xxh3 comes from `xxhash-rust`, which the build already has for fjall:
//! a one-shot hash of a byte slice, fast on short keys, and no new crate
//! (foldhash, tried earlier as the maps' hasher, still hashed twice and
//! measured within the noise). The tables' shards are padded to cache
//! lines with `crossbeam-utils`' `CachePadded`, also already in the build
//! (through sled).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The hash of `key`.
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Which of `shards` shards a key of hash `hash` belongs to. It comes from
/// bits that neither a [`HashedMap`]'s bucket index (the low bits) nor its
/// tags (the top seven) use, so that one shard's keys still spread over
/// its map.
pub fn shard_index(hash: u64, shards: usize) -> usize {
    (hash >> 32) as usize % shards
}

/// A map from key hashes to `V`.
pub type HashedMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// The hasher of a [`HashedMap`]: its keys are already hashes and are used
/// as they are.
#[derive(Debug, Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_shards_and_every_entry_is_found() {
        let mut shards: Vec<HashedMap<usize>> = (0..64).map(|_| HashedMap::default()).collect();
        for i in 0..20_000 {
            let hash = key_hash(format!("key:{i:08}").as_bytes());
            shards[shard_index(hash, 64)].insert(hash, i);
        }
        for shard in &shards {
            assert!((200..450).contains(&shard.len()), "{}", shard.len());
        }
        for i in 0..20_000 {
            let hash = key_hash(format!("key:{i:08}").as_bytes());
            assert_eq!(shards[shard_index(hash, 64)].get(&hash), Some(&i));
        }
    }
}
