//! What the meta protocol reports about reads: whether an item was fetched
//! before (`mg ... h`, `me` `fetch=`) and when it was last accessed
//! (`mg ... l`, `me` `la=`).
//!
//! These are kept in memory only, not written on every read: after a
//! restart every item reads as never fetched, last accessed when it was
//! written. An entry belongs to one item (its key and cas unique); an item
//! replaced by a write starts afresh. The table is split into [`SHARDS`]
//! independently locked shards (by a hash of the key), so that reads on
//! different keys rarely contend, and a read of an item already marked
//! fetched within the update interval takes the lock but writes nothing. It is bounded: a
//! shard holding [`MAX_TRACKED`] / [`SHARDS`] entries is cleared, which only
//! forgets this statistical information.
//!
//! Every get passes through here, so an entry is found by one 64-bit hash
//! of the key ([`mcstore_storage::hashed`], which also picks the shard)
//! and holds no copy of the key. Two keys share an entry only if their hashes are equal, and even
//! then a read reports the other item's accesses only if it also has the
//! other item's cas unique.

use std::sync::Mutex;

use crossbeam_utils::CachePadded;
use mcstore_storage::hashed::{key_hash, shard_index, HashedMap};

/// Entries kept at most (over all shards).
pub const MAX_TRACKED: usize = 1 << 20;

/// Independently locked parts of the table.
pub const SHARDS: usize = 64;

/// memcached's `ITEM_UPDATE_INTERVAL`: an access moves the last-access time
/// only if it is older than this many seconds.
pub const UPDATE_INTERVAL_SECS: u64 = 60;

#[derive(Debug, Clone, Copy)]
struct Access {
    cas: u64,
    fetched: bool,
    last: u64,
}

/// What a read learns about an item's earlier accesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The item had been fetched before.
    pub fetched: bool,
    /// Unix seconds of the last access (or of the write).
    pub last_access: u64,
}

/// The in-memory access table.
#[derive(Debug)]
pub struct AccessTable {
    /// Each shard on cache lines of its own, so that threads locking
    /// neighbouring shards do not write to one line.
    shards: Box<[CachePadded<Mutex<HashedMap<Access>>>]>,
}

impl Default for AccessTable {
    fn default() -> Self {
        AccessTable {
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
        }
    }
}

impl AccessTable {
    /// Reports the item's accesses so far (an item unknown here: never
    /// fetched, last accessed at `written_at`) and, if `bump`, records this
    /// access at `now`.
    pub fn observe(&self, key: &[u8], cas: u64, written_at: u64, now: u64, bump: bool) -> Seen {
        let (mut entries, hash) = self.shard(key);
        let known = entries
            .get(&hash)
            .copied()
            .filter(|access| access.cas == cas);
        let seen = known.map_or(
            Seen {
                fetched: false,
                last_access: written_at,
            },
            |access| Seen {
                fetched: access.fetched,
                last_access: access.last,
            },
        );
        let last = if seen.last_access + UPDATE_INTERVAL_SECS < now {
            now
        } else {
            seen.last_access
        };
        if bump && !(seen.fetched && last == seen.last_access) {
            if entries.len() >= MAX_TRACKED / SHARDS && known.is_none() {
                entries.clear();
            }
            entries.insert(
                hash,
                Access {
                    cas,
                    fetched: true,
                    last,
                },
            );
        }
        seen
    }
}

impl AccessTable {
    /// The shard of `key`, locked, and the key's hash.
    fn shard(&self, key: &[u8]) -> (std::sync::MutexGuard<'_, HashedMap<Access>>, u64) {
        let hash = key_hash(key);
        let entries = self.shards[shard_index(hash, SHARDS)]
            .lock()
            .expect("access table lock");
        (entries, hash)
    }

    /// The item under `key` was replaced by a new item that may carry the
    /// old one's cas unique (`E<cas>`, `md <key> x`): forget what is known,
    /// so the new item reads as never fetched.
    pub fn forget(&self, key: &[u8]) {
        let (mut entries, hash) = self.shard(key);
        entries.remove(&hash);
    }

    /// The item under `key` got a new cas unique but stays the same item
    /// (`md <key> I`, an `incr` rewritten in place): it keeps what is known.
    pub fn renew_cas(&self, key: &[u8], old_cas: u64, new_cas: u64) {
        let (mut entries, hash) = self.shard(key);
        if let Some(access) = entries
            .get_mut(&hash)
            .filter(|access| access.cas == old_cas)
        {
            access.cas = new_cas;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_fetch_is_seen_by_the_next_read_of_the_same_item_only() {
        let table = AccessTable::default();
        let key = Bytes::from_static(b"k");
        let first = table.observe(&key, 7, 100, 105, true);
        assert_eq!(
            first,
            Seen {
                fetched: false,
                last_access: 100
            }
        );
        assert!(table.observe(&key, 7, 100, 106, false).fetched);
        // A new item under the key (new cas) starts afresh.
        assert!(!table.observe(&key, 8, 110, 111, false).fetched);
    }

    #[test]
    fn last_access_moves_only_after_the_update_interval() {
        let table = AccessTable::default();
        let key = Bytes::from_static(b"k");
        table.observe(&key, 1, 100, 130, true);
        assert_eq!(table.observe(&key, 1, 100, 140, true).last_access, 100);
        table.observe(&key, 1, 100, 200, true);
        assert_eq!(table.observe(&key, 1, 100, 201, false).last_access, 200);
    }

    #[test]
    fn a_renewed_cas_keeps_the_fetched_mark() {
        let table = AccessTable::default();
        let key = Bytes::from_static(b"k");
        table.observe(&key, 1, 100, 100, true);
        table.renew_cas(&key, 1, 2);
        assert!(table.observe(&key, 2, 100, 100, false).fetched);
        table.renew_cas(&key, 1, 3);
        assert!(!table.observe(&key, 3, 100, 100, false).fetched);
    }

    #[test]
    fn reads_without_bump_record_nothing() {
        let table = AccessTable::default();
        let key = Bytes::from_static(b"k");
        table.observe(&key, 1, 100, 130, false);
        assert!(!table.observe(&key, 1, 100, 131, false).fetched);
    }
}
