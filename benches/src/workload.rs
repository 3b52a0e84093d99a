//! What to send: the key space, the deterministic value of every key, where
//! each key lives (ketama ring) and a per-connection generator of operations.
//!
//! Key `i` is `k` followed by `i` in decimal, zero-padded to the key size.
//! Its value is a slice of a fixed pseudo-random pattern whose length (within
//! the configured range) and offset are derived from a hash of `i`: a
//! function of the key alone (for a given `--seed` and `--value-size`), so any
//! value read back can be checked, and no value is ever allocated to send
//! it.

use bytes::{BufMut, Bytes, BytesMut};
use mcstore_cluster::Ring;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use thiserror::Error;

use crate::args::{KeyDistribution, ValueSize, WorkloadKind};

/// Size of the blocks keys are formatted into by [`KeySpace::key_in`].
const KEY_SCRATCH_BYTES: usize = 64 * 1024;

/// Length of the pattern values are cut from (plus the largest value); small
/// enough to stay in the CPU cache.
const PATTERN_BYTES: usize = 64 * 1024;

/// How many zipf draws a connection tries before falling back to a uniform
/// pick among its server's keys.
const ZIPF_TRIES: usize = 64;

/// A workload that cannot be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WorkloadError {
    /// The zipf distribution rejected its parameters.
    #[error("invalid zipf distribution: {0}")]
    Zipf(String),
    /// More servers than the owner table can index.
    #[error("at most {} servers are supported", u16::MAX)]
    TooManyServers,
}

/// SplitMix64: a fast, well-mixed 64-bit hash of an integer.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The keys `0..count`, each `key_size` bytes long, formatted on demand
/// (formatting is cheaper than the cache misses of a key table).
#[derive(Debug, Clone)]
pub struct KeySpace {
    count: u32,
    key_size: usize,
}

impl KeySpace {
    /// The key space.
    pub fn new(count: u32, key_size: usize) -> KeySpace {
        KeySpace { count, key_size }
    }

    /// Number of keys.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Key length in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// Appends key `index` to `out`.
    pub fn write_key(&self, index: u32, out: &mut impl BufMut) {
        let digits = self.key_size - 1;
        let mut text = [0u8; 16];
        let mut n = index;
        let mut len = 0;
        loop {
            text[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.put_u8(b'k');
        out.put_bytes(b'0', digits - len);
        for position in (0..len).rev() {
            out.put_u8(text[position]);
        }
    }

    /// Key `index`, formatted into `scratch` and split off it: a caller that
    /// keeps one scratch buffer gets keys without an allocation per key.
    pub fn key_in(&self, index: u32, scratch: &mut BytesMut) -> Bytes {
        if scratch.capacity() - scratch.len() < self.key_size {
            scratch.reserve(self.key_size.max(KEY_SCRATCH_BYTES));
        }
        self.write_key(index, scratch);
        scratch.split().freeze()
    }

    /// Key `index` in a buffer of its own.
    pub fn key(&self, index: u32) -> Bytes {
        let mut key = BytesMut::with_capacity(self.key_size);
        self.write_key(index, &mut key);
        key.freeze()
    }

    /// Whether `key` is key `index`.
    pub fn is_key(&self, index: u32, key: &[u8]) -> bool {
        let mut expected = [0u8; mcstore_protocol::MAX_KEY_LENGTH];
        let mut out = &mut expected[..];
        self.write_key(index, &mut out);
        key == &expected[..self.key_size]
    }
}

/// The value of every key: a function of the key index, the seed and the
/// value-size range only (runs that verify must use the same `--seed` and
/// `--value-size` as the run that wrote the values).
#[derive(Debug, Clone)]
pub struct ValueSource {
    pattern: Bytes,
    size: ValueSize,
    seed: u64,
}

impl ValueSource {
    /// Values with sizes in `size`, contents drawn from a pattern made from
    /// `seed`.
    pub fn new(size: ValueSize, seed: u64) -> ValueSource {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let length = PATTERN_BYTES + size.max;
        let mut pattern = BytesMut::with_capacity(length);
        let mut state = seed;
        while pattern.len() < length {
            state = mix64(state);
            for byte in state.to_le_bytes() {
                if pattern.len() < length {
                    pattern.put_u8(ALPHABET[byte as usize % ALPHABET.len()]);
                }
            }
        }
        ValueSource {
            pattern: pattern.freeze(),
            size,
            seed,
        }
    }

    /// The value of key `index`.
    pub fn value(&self, index: u32) -> Bytes {
        let hash = mix64(u64::from(index) ^ self.seed.rotate_left(32));
        let span = (self.size.max - self.size.min + 1) as u64;
        let length = self.size.min + (hash % span) as usize;
        let offset = ((hash >> 32) % PATTERN_BYTES as u64) as usize;
        self.pattern.slice(offset..offset + length)
    }

    /// Whether `data` is the value of key `index`.
    pub fn matches(&self, index: u32, data: &[u8]) -> bool {
        self.value(index) == data
    }
}

/// One operation to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `set` the key to its value.
    Set,
    /// `get` the key.
    Get,
}

/// An operation: what and on which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Get or set.
    pub kind: OpKind,
    /// Key index.
    pub key: u32,
}

/// Everything the connections share about what to send.
#[derive(Debug)]
pub struct Workload {
    /// The keys.
    pub keys: KeySpace,
    /// The values.
    pub values: ValueSource,
    get_fraction: f64,
    zipf: Option<Zipf<f64>>,
    /// Per server, its keys (only with more than one server).
    server_keys: Vec<Vec<u32>>,
    /// Per key, its owner (only with more than one server).
    owners: Vec<u16>,
}

impl Workload {
    /// Builds the workload; with several servers every key's owner is looked
    /// up once on `ring`.
    pub fn new(
        keys: KeySpace,
        values: ValueSource,
        kind: WorkloadKind,
        distribution: KeyDistribution,
        ring: &Ring,
    ) -> Result<Workload, WorkloadError> {
        let zipf = match distribution {
            KeyDistribution::Uniform => None,
            KeyDistribution::Zipf(exponent) => Some(
                Zipf::new(f64::from(keys.count()), exponent)
                    .map_err(|e| WorkloadError::Zipf(e.to_string()))?,
            ),
        };
        let server_count = ring.servers().len();
        if server_count > usize::from(u16::MAX) {
            return Err(WorkloadError::TooManyServers);
        }
        let mut server_keys = Vec::new();
        let mut owners = Vec::new();
        if server_count > 1 {
            server_keys = vec![Vec::new(); server_count];
            owners.reserve(keys.count() as usize);
            let mut key = BytesMut::with_capacity(keys.key_size());
            for index in 0..keys.count() {
                key.clear();
                keys.write_key(index, &mut key);
                let owner = ring.server_index(&key);
                owners.push(owner as u16);
                server_keys[owner].push(index);
            }
        }
        Ok(Workload {
            keys,
            values,
            get_fraction: kind.get_fraction(),
            zipf,
            server_keys,
            owners,
        })
    }

    /// Number of servers keys are spread over.
    fn server_count(&self) -> usize {
        self.server_keys.len().max(1)
    }

    /// How many keys `server` owns.
    pub fn keys_owned_by(&self, server: usize) -> u64 {
        if self.server_count() == 1 {
            u64::from(self.keys.count())
        } else {
            self.server_keys[server].len() as u64
        }
    }

    /// The keys `server` owns, split into `parts` interleaved shares; the
    /// share numbered `part`.
    pub fn prefill_share(
        &self,
        server: usize,
        part: usize,
        parts: usize,
    ) -> impl Iterator<Item = u32> + Send + '_ {
        let all: Box<dyn Iterator<Item = u32> + Send + '_> = if self.server_count() == 1 {
            Box::new(0..self.keys.count())
        } else {
            Box::new(self.server_keys[server].iter().copied())
        };
        all.skip(part).step_by(parts.max(1))
    }

    /// A generator of operations on the keys `server` owns.
    pub fn generator(&self, server: usize, seed: u64) -> OpGenerator<'_> {
        OpGenerator {
            workload: self,
            server,
            rng: SmallRng::seed_from_u64(mix64(seed)),
        }
    }
}

/// Draws operations for one connection: the kind from the get/set mix, the
/// key from the distribution restricted to the connection's server.
#[derive(Debug)]
pub struct OpGenerator<'a> {
    workload: &'a Workload,
    server: usize,
    rng: SmallRng,
}

impl OpGenerator<'_> {
    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let workload = self.workload;
        let kind = if workload.get_fraction >= 1.0
            || (workload.get_fraction > 0.0 && self.rng.random::<f64>() < workload.get_fraction)
        {
            OpKind::Get
        } else {
            OpKind::Set
        };
        Op {
            kind,
            key: self.next_key(),
        }
    }

    fn next_key(&mut self) -> u32 {
        let workload = self.workload;
        let single = workload.server_count() == 1;
        if let Some(zipf) = &workload.zipf {
            for _ in 0..if single { 1 } else { ZIPF_TRIES } {
                let rank = zipf.sample(&mut self.rng) as u32;
                let key = rank.saturating_sub(1).min(workload.keys.count() - 1);
                if single || usize::from(workload.owners[key as usize]) == self.server {
                    return key;
                }
            }
        }
        if single {
            self.rng.random_range(0..workload.keys.count())
        } else {
            let own = &workload.server_keys[self.server];
            own[self.rng.random_range(0..own.len())]
        }
    }
}

#[cfg(test)]
mod tests {
    //! Keys, values and operation mixes.

    use super::*;

    fn ring(n: usize) -> Ring {
        Ring::unweighted((0..n).map(|i| (format!("127.0.0.{i}"), 11211))).unwrap()
    }

    #[test]
    fn keys_are_fixed_size_and_distinct() {
        let keys = KeySpace::new(1000, 8);
        assert_eq!(&keys.key(0)[..], b"k0000000");
        assert_eq!(&keys.key(999)[..], b"k0000999");
        let long = KeySpace::new(5_000_000, 250);
        let formatted = long.key(4_999_999);
        assert_eq!(formatted.len(), 250);
        assert!(formatted.ends_with(b"04999999"));
        assert!(long.is_key(4_999_999, &formatted));
        assert!(!long.is_key(4_999_998, &formatted));
        let mut scratch = BytesMut::new();
        for i in 0..5000 {
            assert_eq!(keys.key_in(i % 1000, &mut scratch), keys.key(i % 1000));
        }
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            assert!(seen.insert(keys.key(i)));
        }
    }

    #[test]
    fn values_are_deterministic_and_sized() {
        let a = ValueSource::new(ValueSize { min: 10, max: 20 }, 7);
        let b = ValueSource::new(ValueSize { min: 10, max: 20 }, 7);
        let mut lengths = std::collections::HashSet::new();
        for i in 0..500 {
            assert_eq!(a.value(i), b.value(i));
            assert!((10..=20).contains(&a.value(i).len()));
            lengths.insert(a.value(i).len());
            assert!(a.matches(i, &a.value(i)));
        }
        assert!(lengths.len() > 5);
        assert_ne!(a.value(1), a.value(2));
        let mut wrong = a.value(3).to_vec();
        wrong[0] ^= 1;
        assert!(!a.matches(3, &wrong));
    }

    #[test]
    fn mix_follows_the_get_fraction() {
        let workload = Workload::new(
            KeySpace::new(100, 8),
            ValueSource::new(ValueSize { min: 1, max: 1 }, 1),
            WorkloadKind::Mixed(0.9),
            KeyDistribution::Uniform,
            &ring(1),
        )
        .unwrap();
        let mut generator = workload.generator(0, 3);
        let gets = (0..10_000)
            .filter(|_| generator.next_op().kind == OpKind::Get)
            .count();
        assert!((8800..9200).contains(&gets), "{gets}");
    }

    #[test]
    fn zipf_prefers_low_ranks() {
        let workload = Workload::new(
            KeySpace::new(1000, 8),
            ValueSource::new(ValueSize { min: 1, max: 1 }, 1),
            WorkloadKind::Get,
            KeyDistribution::Zipf(1.2),
            &ring(1),
        )
        .unwrap();
        let mut generator = workload.generator(0, 3);
        let hot = (0..10_000).filter(|_| generator.next_op().key < 10).count();
        assert!(hot > 5000, "{hot}");
    }

    #[test]
    fn generators_stay_on_their_server() {
        let ring = ring(3);
        let workload = Workload::new(
            KeySpace::new(3000, 8),
            ValueSource::new(ValueSize { min: 1, max: 1 }, 1),
            WorkloadKind::Set,
            KeyDistribution::Zipf(0.99),
            &ring,
        )
        .unwrap();
        let total: u64 = (0..3).map(|s| workload.keys_owned_by(s)).sum();
        assert_eq!(total, 3000);
        for server in 0..3 {
            let mut generator = workload.generator(server, 9);
            for _ in 0..1000 {
                let op = generator.next_op();
                assert_eq!(ring.server_index(&workload.keys.key(op.key)), server);
            }
            let share: Vec<u32> = workload.prefill_share(server, 1, 2).collect();
            assert!(share
                .iter()
                .all(|&k| ring.server_index(&workload.keys.key(k)) == server));
        }
    }
}
