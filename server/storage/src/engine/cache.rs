//! A cache of hot records in front of the engine: a get that hits it costs
//! a hash and a short lock instead of the engine's lookup (for sled about
//! 12% of a node's CPU on a get-heavy load: its page cache, tree descent,
//! binary search and LRU, and the copy out of its buffer).
//!
//! The cache holds encoded records exactly as the engine returns them, so
//! everything above the engine (decoding, the checksum, expiry, flush
//! markers, tombstones) is unchanged, and so is every invariant of
//! docs/ARCHITECTURE.md: the engine stays the truth and the cache only
//! ever holds what it holds.
//!
//! # Coherence
//!
//! Every change reaches the engine through [`Engine::apply`] (the commit
//! pipeline, recovery), so that is where the cache is kept right: after the
//! engine applied a batch, each key it changed is updated in place if
//! cached (a put) or dropped (a remove), and its shard's epoch is bumped.
//! A reader that missed notes the shard's epoch before it reads the
//! engine and fills the cache only if the epoch is still the same: a fill
//! can never put back a value that a change applied meanwhile replaced.
//! Only hits are cached, and only on reads: a write-only load leaves the
//! cache alone.
//!
//! # Size
//!
//! A fixed budget of key and record bytes (plus a per-entry overhead),
//! split over [`SHARDS`] shards; a full shard drops arbitrary entries
//! (the first in its hash order, which is random with respect to use)
//! until the new one fits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use crossbeam_utils::CachePadded;

use super::{Change, Checkpoint, Engine, EngineError};
use crate::hashed::{key_hash, shard_index, HashedMap};

/// Shards of the cache (a power of two).
pub const SHARDS: usize = 64;

/// What an entry costs beyond its key and record bytes (the map slot, the
/// two `Bytes` handles, their allocations).
const ENTRY_OVERHEAD: usize = 96;

/// How many reads the cache answered and how many went to the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that went to the engine.
    pub misses: u64,
    /// Bytes held (keys, records and the per-entry overhead).
    pub bytes: u64,
    /// The budget.
    pub capacity: u64,
}

/// What an entry of `stored` key and record bytes costs of the budget.
fn entry_cost(stored: usize) -> usize {
    stored + ENTRY_OVERHEAD
}

/// A cached record and the key it is the record of, in one buffer (the
/// key, then the record), so that a hit reads one place in memory for
/// both: on a get-heavy load the cache's time is its misses in the CPU's
/// caches, not its instructions.
struct Entry {
    key_and_record: Bytes,
    key_len: usize,
}

impl Entry {
    fn new(key: &[u8], record: &[u8]) -> Entry {
        let mut key_and_record = Vec::with_capacity(key.len() + record.len());
        key_and_record.extend_from_slice(key);
        key_and_record.extend_from_slice(record);
        Entry {
            key_and_record: Bytes::from(key_and_record),
            key_len: key.len(),
        }
    }

    fn key(&self) -> &[u8] {
        &self.key_and_record[..self.key_len]
    }

    fn record(&self) -> Bytes {
        self.key_and_record.slice(self.key_len..)
    }

    fn cost(&self) -> usize {
        entry_cost(self.key_and_record.len())
    }
}

/// One shard's entries, by the key's [`key_hash`]. Two keys of one hash
/// take turns in its slot: a read compares the key it holds.
#[derive(Default)]
struct Shard {
    entries: HashedMap<Entry>,
    bytes: usize,
    /// Bumped by every change applied to one of this shard's keys.
    epoch: u64,
    /// Reads of this shard's keys answered here and sent to the engine,
    /// counted under the lock a read takes anyway (one counter shared by
    /// all shards would be a cache line every reading thread writes).
    hits: u64,
    misses: u64,
}

impl Shard {
    fn get(&self, hash: u64, key: &[u8]) -> Option<Bytes> {
        self.entries
            .get(&hash)
            .filter(|entry| entry.key() == key)
            .map(Entry::record)
    }

    fn insert(&mut self, hash: u64, key: &[u8], record: &[u8], budget: usize) {
        let cost = entry_cost(key.len() + record.len());
        if cost > budget {
            return;
        }
        if let Some(old) = self.entries.remove(&hash) {
            self.bytes -= old.cost();
        }
        while self.bytes + cost > budget {
            let Some(&victim) = self.entries.keys().next() else {
                break;
            };
            let old = self.entries.remove(&victim).expect("just seen");
            self.bytes -= old.cost();
        }
        self.bytes += cost;
        self.entries.insert(hash, Entry::new(key, record));
    }

    fn changed(&mut self, hash: u64, key: &[u8], record: Option<&[u8]>) {
        self.epoch += 1;
        let Some(old) = self
            .entries
            .get_mut(&hash)
            .filter(|entry| entry.key() == key)
        else {
            return;
        };
        self.bytes -= old.cost();
        match record {
            Some(record) => {
                *old = Entry::new(key, record);
                self.bytes += old.cost();
            }
            None => {
                self.entries.remove(&hash);
            }
        }
    }

    fn clear(&mut self) {
        self.epoch += 1;
        self.entries.clear();
        self.bytes = 0;
    }
}

/// An engine with a cache of hot records in front of it.
pub struct CachedEngine {
    inner: Arc<dyn Engine>,
    /// Each shard on cache lines of its own, so that threads locking
    /// neighbouring shards do not write to one line.
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    shard_budget: usize,
    /// Set when the engine closed itself (a failed reopen): reads go to the
    /// engine, which refuses them, rather than to a cache of a closed store.
    bypass: AtomicBool,
}

impl CachedEngine {
    /// `inner` behind a cache of `capacity` bytes.
    pub fn new(inner: Arc<dyn Engine>, capacity: u64) -> CachedEngine {
        CachedEngine {
            inner,
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
            shard_budget: (capacity as usize) / SHARDS,
            bypass: AtomicBool::new(false),
        }
    }

    /// The shard of a key of hash `hash`, locked.
    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        self.shards[shard_index(hash, SHARDS)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }
}

impl Engine for CachedEngine {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
        if self.bypass.load(Ordering::Acquire) {
            return self.inner.get(key);
        }
        let hash = key_hash(key);
        let epoch = {
            let mut shard = self.shard(hash);
            if let Some(record) = shard.get(hash, key) {
                shard.hits += 1;
                return Ok(Some(record));
            }
            shard.misses += 1;
            shard.epoch
        };
        let record = self.inner.get(key)?;
        if let Some(record) = &record {
            let mut shard = self.shard(hash);
            if shard.epoch == epoch {
                let budget = self.shard_budget;
                shard.insert(hash, key, record, budget);
            }
        }
        Ok(record)
    }

    fn apply(&self, changes: &[Change], checkpoint: &Checkpoint) -> Result<(), EngineError> {
        let result = self.inner.apply(changes, checkpoint);
        for change in changes {
            match change {
                // After a failed apply the engine may hold either value:
                // the cache holds neither.
                Change::Put { key, record } => {
                    let hash = key_hash(key);
                    self.shard(hash)
                        .changed(hash, key, result.is_ok().then_some(&record[..]))
                }
                Change::Remove { key } => {
                    let hash = key_hash(key);
                    self.shard(hash).changed(hash, key, None)
                }
                Change::Flush(_) => {}
            }
        }
        result
    }

    fn scan(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, EngineError> {
        self.inner.scan(after, limit)
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, EngineError> {
        self.inner.checkpoint()
    }

    fn make_durable(&self) -> Result<Option<Checkpoint>, EngineError> {
        self.inner.make_durable()
    }

    fn disk_bytes(&self) -> u64 {
        self.inner.disk_bytes()
    }

    fn recovery_backlog(&self) -> u64 {
        self.inner.recovery_backlog()
    }

    fn shorten_recovery(&self) -> Result<(), EngineError> {
        let result = self.inner.shorten_recovery();
        if result.is_err() {
            self.bypass.store(true, Ordering::Release);
            self.clear();
        }
        result
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        let mut stats = CacheStats {
            capacity: (self.shard_budget * SHARDS) as u64,
            ..CacheStats::default()
        };
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            stats.hits += shard.hits;
            stats.misses += shard.misses;
            stats.bytes += shard.bytes as u64;
        }
        Some(stats)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc;

    use super::*;

    /// A key whose next read, once done, tells the first channel and waits
    /// on the second.
    type Hold = (Bytes, mpsc::Sender<()>, mpsc::Receiver<()>);

    /// An engine in a map; a read of a held key waits, after reading, until
    /// the test lets it go.
    #[derive(Default)]
    struct MapEngine {
        items: Mutex<BTreeMap<Bytes, Bytes>>,
        reads: AtomicU64,
        held: Mutex<Option<Hold>>,
        fail_next_apply: AtomicBool,
    }

    impl Engine for MapEngine {
        fn name(&self) -> &'static str {
            "map"
        }
        fn get(&self, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let value = self.items.lock().unwrap().get(key).cloned();
            let hold = self.held.lock().unwrap().take();
            match hold {
                Some((held, reading, go)) if held == key => {
                    reading.send(()).unwrap();
                    go.recv().unwrap();
                }
                other => *self.held.lock().unwrap() = other,
            }
            Ok(value)
        }
        fn apply(&self, changes: &[Change], _: &Checkpoint) -> Result<(), EngineError> {
            let mut items = self.items.lock().unwrap();
            for change in changes {
                match change {
                    Change::Put { key, record } => {
                        items.insert(key.clone(), record.clone());
                    }
                    Change::Remove { key } => {
                        items.remove(key);
                    }
                    Change::Flush(_) => {}
                }
                if self.fail_next_apply.swap(false, Ordering::Relaxed) {
                    return Err(EngineError::Closed);
                }
            }
            Ok(())
        }
        fn scan(&self, _: Option<&[u8]>, _: usize) -> Result<Vec<(Bytes, Bytes)>, EngineError> {
            Ok(Vec::new())
        }
        fn checkpoint(&self) -> Result<Option<Checkpoint>, EngineError> {
            Ok(None)
        }
        fn make_durable(&self) -> Result<Option<Checkpoint>, EngineError> {
            Ok(None)
        }
        fn disk_bytes(&self) -> u64 {
            0
        }
        fn recovery_backlog(&self) -> u64 {
            0
        }
        fn shorten_recovery(&self) -> Result<(), EngineError> {
            Err(EngineError::Closed)
        }
    }

    fn put(key: &str, record: &str) -> Change {
        Change::Put {
            key: Bytes::copy_from_slice(key.as_bytes()),
            record: Bytes::copy_from_slice(record.as_bytes()),
        }
    }

    fn remove(key: &str) -> Change {
        Change::Remove {
            key: Bytes::copy_from_slice(key.as_bytes()),
        }
    }

    fn setup(capacity: u64) -> (Arc<MapEngine>, CachedEngine) {
        let inner = Arc::new(MapEngine::default());
        let cached = CachedEngine::new(inner.clone(), capacity);
        (inner, cached)
    }

    fn read(cached: &CachedEngine, key: &str) -> Option<String> {
        cached
            .get(key.as_bytes())
            .unwrap()
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    #[test]
    fn hits_are_served_from_the_cache_and_changes_reach_it() {
        let (inner, cached) = setup(1 << 20);
        let checkpoint = Checkpoint::default();
        cached
            .apply(&[put("a", "1"), put("b", "1")], &checkpoint)
            .unwrap();
        assert_eq!(
            inner.reads.load(Ordering::Relaxed),
            0,
            "writes fill nothing"
        );
        assert_eq!(read(&cached, "a").as_deref(), Some("1"));
        assert_eq!(read(&cached, "a").as_deref(), Some("1"));
        assert_eq!(read(&cached, "missing"), None);
        assert_eq!(read(&cached, "missing"), None);
        assert_eq!(
            inner.reads.load(Ordering::Relaxed),
            3,
            "one read of a, two of missing"
        );
        let stats = cached.cache_stats().unwrap();
        assert_eq!((stats.hits, stats.misses), (1, 3));
        // A put updates the cached record; a remove drops it.
        cached.apply(&[put("a", "2")], &checkpoint).unwrap();
        assert_eq!(read(&cached, "a").as_deref(), Some("2"));
        assert_eq!(inner.reads.load(Ordering::Relaxed), 3, "updated in place");
        cached.apply(&[remove("a")], &checkpoint).unwrap();
        assert_eq!(read(&cached, "a"), None);
        // A failed apply leaves the cache holding neither value.
        assert_eq!(read(&cached, "b").as_deref(), Some("1"));
        inner.fail_next_apply.store(true, Ordering::Relaxed);
        assert!(cached.apply(&[put("b", "2")], &checkpoint).is_err());
        let reads = inner.reads.load(Ordering::Relaxed);
        assert_eq!(read(&cached, "b").as_deref(), Some("2"));
        assert_eq!(inner.reads.load(Ordering::Relaxed), reads + 1, "dropped");
        // A failed reopen: reads go to the engine from then on.
        assert!(cached.shorten_recovery().is_err());
        assert_eq!(cached.cache_stats().unwrap().bytes, 0);
        read(&cached, "b");
        assert_eq!(inner.reads.load(Ordering::Relaxed), reads + 2);
    }

    #[test]
    fn a_fill_never_puts_back_a_value_a_concurrent_change_replaced() {
        let (inner, cached) = setup(1 << 20);
        let cached = Arc::new(cached);
        let checkpoint = Checkpoint::default();
        cached.apply(&[put("k", "old")], &checkpoint).unwrap();
        let (reading_tx, reading) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        *inner.held.lock().unwrap() = Some((Bytes::from_static(b"k"), reading_tx, go_rx));
        // A reader misses and reads "old" from the engine; before it fills
        // the cache, a change to "new" is applied.
        let reader = {
            let cached = cached.clone();
            std::thread::spawn(move || read(&cached, "k"))
        };
        reading.recv().unwrap();
        cached.apply(&[put("k", "new")], &checkpoint).unwrap();
        go.send(()).unwrap();
        assert_eq!(reader.join().unwrap().as_deref(), Some("old"));
        assert_eq!(read(&cached, "k").as_deref(), Some("new"));
        assert_eq!(read(&cached, "k").as_deref(), Some("new"));
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let capacity = (SHARDS * 4 * (ENTRY_OVERHEAD + 110)) as u64;
        let (_inner, cached) = setup(capacity);
        let checkpoint = Checkpoint::default();
        let value = "v".repeat(100);
        let changes: Vec<Change> = (0..10_000)
            .map(|i| put(&format!("key{i:05}"), &value))
            .collect();
        cached.apply(&changes, &checkpoint).unwrap();
        for i in 0..10_000 {
            assert_eq!(
                read(&cached, &format!("key{i:05}")).as_deref(),
                Some(value.as_str())
            );
        }
        let stats = cached.cache_stats().unwrap();
        assert!(stats.bytes <= capacity, "{stats:?}");
        assert!(stats.bytes > capacity / 2, "{stats:?}");
        // A record larger than a shard's budget is never cached.
        let huge = "h".repeat(capacity as usize);
        cached.apply(&[put("huge", &huge)], &checkpoint).unwrap();
        assert_eq!(read(&cached, "huge").map(|v| v.len()), Some(huge.len()));
        assert!(cached.cache_stats().unwrap().bytes <= capacity);
    }
}
