//! `stats detail on|off|dump`: per-prefix counts of gets, hits, sets and
//! deletes, as memcached keeps them.
//!
//! A key's prefix is what comes before its first `:` (keys without one are
//! not counted). Text `get`/`gets`/`gat`/`gats` count a get per key (and a
//! hit when found), the text storage commands count a set, `delete` a
//! delete; the meta commands are not counted (memcached 1.6.18 counts none
//! of them). The dump lists prefixes in memcached's order: by bucket of
//! memcached's default hash (MurmurHash3, x86 32-bit, seed 0) modulo 256,
//! newest first within a bucket, so a dump reads byte for byte like
//! memcached's. `stats reset` forgets every prefix.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::{BufMut, BytesMut};

/// memcached's `PREFIX_HASH_SIZE`.
const BUCKETS: usize = 256;
/// memcached's default `-D` (prefix delimiter).
const DELIMITER: u8 = b':';

#[derive(Debug, Default, Clone)]
struct Prefix {
    prefix: Vec<u8>,
    gets: u64,
    hits: u64,
    sets: u64,
    deletes: u64,
}

/// The per-prefix counters and whether they are being kept.
#[derive(Debug)]
pub struct PrefixStats {
    enabled: AtomicBool,
    buckets: Mutex<Vec<Vec<Prefix>>>,
}

impl Default for PrefixStats {
    fn default() -> Self {
        PrefixStats {
            enabled: AtomicBool::new(false),
            buckets: Mutex::new(vec![Vec::new(); BUCKETS]),
        }
    }
}

impl PrefixStats {
    /// Whether `stats detail on` is in force (`stats settings`: `detail_enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// `stats detail on` / `off`.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Counts a get of `key` (and a hit).
    pub fn record_get(&self, key: &[u8], hit: bool) {
        self.with_prefix(key, |p| {
            p.gets += 1;
            p.hits += u64::from(hit);
        });
    }

    /// Counts a storage command on `key`.
    pub fn record_set(&self, key: &[u8]) {
        self.with_prefix(key, |p| p.sets += 1);
    }

    /// Counts a delete of `key`.
    pub fn record_delete(&self, key: &[u8]) {
        self.with_prefix(key, |p| p.deletes += 1);
    }

    fn with_prefix(&self, key: &[u8], count: impl FnOnce(&mut Prefix)) {
        if !self.enabled() {
            return;
        }
        // As memcached: the prefix ends at the first delimiter; a NUL before
        // it, or no delimiter, means the key is not counted.
        let Some(length) = key
            .iter()
            .take_while(|&&b| b != 0)
            .position(|&b| b == DELIMITER)
        else {
            return;
        };
        let prefix = &key[..length];
        let bucket = murmur3_32(prefix) as usize % BUCKETS;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let list = &mut buckets[bucket];
        // memcached compares the first `length` bytes of the stored prefix.
        let index = match list.iter().position(|p| p.prefix.starts_with(prefix)) {
            Some(index) => index,
            None => {
                list.insert(
                    0,
                    Prefix {
                        prefix: prefix.to_vec(),
                        ..Prefix::default()
                    },
                );
                0
            }
        };
        count(&mut list[index]);
    }

    /// Forgets every prefix (`stats reset`).
    pub fn clear(&self) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.iter_mut().for_each(Vec::clear);
    }

    /// Writes `stats detail dump`: a `PREFIX` line per prefix, then `END`.
    pub fn dump(&self, out: &mut BytesMut) {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for prefix in buckets.iter().flatten() {
            out.put_slice(b"PREFIX ");
            out.put_slice(&prefix.prefix);
            out.put_slice(
                format!(
                    " get {} hit {} set {} del {}\r\n",
                    prefix.gets, prefix.hits, prefix.sets, prefix.deletes
                )
                .as_bytes(),
            );
        }
        out.put_slice(b"END\r\n");
    }
}

/// MurmurHash3 x86 32-bit with seed 0, memcached's default `hash_algorithm`.
pub fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h: u32 = 0;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        h ^= mix(k);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k ^= u32::from(b) << (8 * i);
        }
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!"), 0xc036_3e43);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn counts_by_prefix_only_when_enabled() {
        let stats = PrefixStats::default();
        stats.record_get(b"foo:1", true);
        stats.set_enabled(true);
        stats.record_get(b"foo:1", true);
        stats.record_get(b"foo:2", false);
        stats.record_set(b"foo:3");
        stats.record_delete(b"foo:3");
        stats.record_set(b"plain");
        stats.record_set(b"a\0b:c");
        let mut out = BytesMut::new();
        stats.dump(&mut out);
        assert_eq!(&out[..], b"PREFIX foo get 2 hit 1 set 1 del 1\r\nEND\r\n");
        stats.clear();
        out.clear();
        stats.dump(&mut out);
        assert_eq!(&out[..], b"END\r\n");
    }
}
