//! The ketama consistent-hash ring, exactly as libmemcached's
//! `KETAMA_WEIGHTED` distribution and twemproxy's `ketama` + `md5` build it.
//!
//! Pure computation, no I/O: the ring maps a key to the index of the server
//! that owns it, and to its replica set (the owner, then the next distinct
//! servers met going clockwise).
//!
//! # Construction
//! - Each server gets `floor(((w / W) * 160) / 4 * n + 1e-10) * 4` points,
//!   with `w` its weight, `W` the sum of the weights and `n` the number of
//!   servers, the product computed in `f32` in exactly that order (so equal
//!   weights give 156 points rather than 160 for some `n`, as in the C
//!   clients).
//! - Its points come from MD5 digests of `"{host}-{i}"` (port 11211) or
//!   `"{host}:{port}-{i}"` (any other port), or of `"{name}-{i}"` when the
//!   server has a name (twemproxy), for `i` in `0..points / 4`; each digest
//!   gives four points, the little-endian `u32`s of bytes `4k..4k + 4`.
//! - Points are sorted by (value, server index).
//!
//! # Lookup
//! A key hashes to the little-endian `u32` of the first four bytes of its
//! MD5 digest; its owner is the server of the first point whose value is at
//! least the hash, wrapping to the first point past the end.

use md5::{Digest, Md5};
use thiserror::Error;

/// Points per server before weighting, as in libmemcached and twemproxy.
pub const POINTS_PER_SERVER: u32 = 160;

/// The default memcached port: servers on it leave the port out of their
/// point strings.
pub const DEFAULT_PORT: u16 = 11211;

/// A server as configured: where it is and how much of the key space it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Host as configured (no DNS lookup is done: the text itself is hashed).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Relative weight; a server's share of points is `weight / sum of weights`.
    pub weight: u32,
    /// A name hashed instead of `host[:port]` (twemproxy's `name`), if any.
    pub name: Option<String>,
}

impl ServerSpec {
    /// A server with the given weight and no name.
    pub fn new(host: impl Into<String>, port: u16, weight: u32) -> Self {
        ServerSpec {
            host: host.into(),
            port,
            weight,
            name: None,
        }
    }

    /// The same server, hashed under `name` instead of `host[:port]`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The prefix of this server's point strings (before `-{i}`).
    pub fn point_prefix(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None if self.port == DEFAULT_PORT => self.host.clone(),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// Why a ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RingError {
    /// No servers were given.
    #[error("a ring needs at least one server")]
    NoServers,
    /// Every server has weight 0, so none would get any point.
    #[error("the sum of the server weights is 0")]
    ZeroTotalWeight,
}

/// One point on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Point {
    /// Position on the ring.
    pub value: u32,
    /// Index (in [`Ring::servers`]) of the server the point belongs to.
    pub server: usize,
}

/// A ketama ring over a fixed list of servers.
#[derive(Debug, Clone)]
pub struct Ring {
    servers: Vec<ServerSpec>,
    points: Vec<Point>,
}

/// The four ring points of one point string: the little-endian `u32`s of
/// bytes `0..4`, `4..8`, `8..12` and `12..16` of its MD5 digest.
pub fn md5_points(text: &[u8]) -> [u32; 4] {
    let digest = Md5::digest(text);
    std::array::from_fn(|k| {
        u32::from_le_bytes([
            digest[4 * k],
            digest[4 * k + 1],
            digest[4 * k + 2],
            digest[4 * k + 3],
        ])
    })
}

/// The ring position of a key: the little-endian `u32` of the first four
/// bytes of its MD5 digest.
pub fn key_hash(key: &[u8]) -> u32 {
    md5_points(key)[0]
}

/// How many points a server of weight `weight` gets among `server_count`
/// servers whose weights add up to `total_weight`.
///
/// The arithmetic is libmemcached's: the weight share and its products in
/// `f32`, the `1e-10` guard added in `f64`, then floored and multiplied by 4.
pub fn points_for(weight: u32, total_weight: u64, server_count: usize) -> u32 {
    if total_weight == 0 {
        return 0;
    }
    let share = weight as f32 / total_weight as f32;
    let scaled = share * POINTS_PER_SERVER as f32 / 4.0 * server_count as f32;
    ((f64::from(scaled) + 1e-10).floor() as u32) * 4
}

impl Ring {
    /// Builds the ring of `servers` (their order gives the server indices).
    pub fn new(servers: Vec<ServerSpec>) -> Result<Ring, RingError> {
        if servers.is_empty() {
            return Err(RingError::NoServers);
        }
        let total_weight: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
        if total_weight == 0 {
            return Err(RingError::ZeroTotalWeight);
        }
        let mut points = Vec::new();
        let mut text = String::new();
        for (index, server) in servers.iter().enumerate() {
            let prefix = server.point_prefix();
            let count = points_for(server.weight, total_weight, servers.len());
            for i in 0..count / 4 {
                text.clear();
                text.push_str(&prefix);
                text.push('-');
                text.push_str(&i.to_string());
                for value in md5_points(text.as_bytes()) {
                    points.push(Point {
                        value,
                        server: index,
                    });
                }
            }
        }
        points.sort_unstable();
        Ok(Ring { servers, points })
    }

    /// A ring where every server has weight 1.
    pub fn unweighted<I, H>(servers: I) -> Result<Ring, RingError>
    where
        I: IntoIterator<Item = (H, u16)>,
        H: Into<String>,
    {
        Ring::new(
            servers
                .into_iter()
                .map(|(host, port)| ServerSpec::new(host, port, 1))
                .collect(),
        )
    }

    /// The servers, in index order.
    pub fn servers(&self) -> &[ServerSpec] {
        &self.servers
    }

    /// The sorted points.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Index of the first point at or after `hash`, wrapping to 0.
    fn first_point_at(&self, hash: u32) -> usize {
        let position = self.points.partition_point(|point| point.value < hash);
        if position == self.points.len() {
            0
        } else {
            position
        }
    }

    /// The index of the server that owns `key`.
    pub fn server_index(&self, key: &[u8]) -> usize {
        if self.servers.len() == 1 || self.points.is_empty() {
            return 0;
        }
        self.points[self.first_point_at(key_hash(key))].server
    }

    /// The server that owns `key`.
    pub fn server_for(&self, key: &[u8]) -> &ServerSpec {
        &self.servers[self.server_index(key)]
    }

    /// The replica set of `key`: its owner, then the next distinct servers
    /// met going clockwise from the key's point, at most `count` of them
    /// (fewer when fewer servers have points).
    pub fn replicas(&self, key: &[u8], count: usize) -> Vec<usize> {
        self.replicas_from(self.segment(key), count)
    }

    /// The segment `key` falls in: the index of the first point at or after
    /// its hash. Every key of a segment has the same replica set.
    pub fn segment(&self, key: &[u8]) -> usize {
        if self.servers.len() == 1 || self.points.is_empty() {
            return 0;
        }
        self.first_point_at(key_hash(key))
    }

    /// The segment of a key whose [`key_hash`] is `hash` (to place one key
    /// on several rings with one hash).
    pub fn segment_of_hash(&self, hash: u32) -> usize {
        if self.servers.len() == 1 || self.points.is_empty() {
            return 0;
        }
        self.first_point_at(hash)
    }

    /// The number of segments (points; 1 for a single server).
    pub fn segments(&self) -> usize {
        if self.servers.len() == 1 {
            1
        } else {
            self.points.len().max(1)
        }
    }

    /// The replica set of the keys of segment `segment`.
    pub fn replicas_from(&self, segment: usize, count: usize) -> Vec<usize> {
        let mut replicas = Vec::with_capacity(count.min(self.servers.len()));
        if count == 0 {
            return replicas;
        }
        if self.servers.len() == 1 {
            replicas.push(0);
            return replicas;
        }
        let start = segment;
        for offset in 0..self.points.len() {
            let server = self.points[(start + offset) % self.points.len()].server;
            if !replicas.contains(&server) {
                replicas.push(server);
                if replicas.len() == count {
                    break;
                }
            }
        }
        replicas
    }
}

#[cfg(test)]
mod tests {
    //! Ring construction and lookup against hand-computed expectations.

    use super::*;

    #[test]
    fn every_key_of_a_segment_has_the_segment_replica_set() {
        let ring = Ring::unweighted([
            ("10.0.0.1", 11211),
            ("10.0.0.2", 11211),
            ("10.0.0.3", 11211),
        ])
        .unwrap();
        assert_eq!(ring.segments(), 480);
        for i in 0..500 {
            let key = format!("key-{i}");
            let segment = ring.segment(key.as_bytes());
            assert!(segment < ring.segments());
            assert_eq!(
                ring.replicas(key.as_bytes(), 2),
                ring.replicas_from(segment, 2)
            );
        }
    }

    #[test]
    fn md5_points_match_the_reference_values() {
        let points = md5_points(b"server1-8");
        assert_eq!(points[0], 3853726576);
        assert_eq!(points[3], 2667054752);
    }

    #[test]
    fn equal_weights_give_160_points_except_where_f32_rounds_down() {
        assert_eq!(points_for(1, 1, 1), 160);
        assert_eq!(points_for(1, 4, 4), 160);
        for n in [25u64, 47, 50, 55] {
            assert_eq!(points_for(1, n, n as usize), 156, "n = {n}");
        }
    }

    #[test]
    fn point_strings_leave_out_the_default_port() {
        assert_eq!(ServerSpec::new("a", 11211, 1).point_prefix(), "a");
        assert_eq!(ServerSpec::new("a", 11212, 1).point_prefix(), "a:11212");
        assert_eq!(
            ServerSpec::new("a", 11212, 1)
                .with_name("cache-1")
                .point_prefix(),
            "cache-1"
        );
    }

    #[test]
    fn ring_has_the_computed_number_of_points_sorted() {
        let ring = Ring::unweighted([("h1", 11211), ("h2", 11212), ("h3", 11213)]).unwrap();
        assert_eq!(ring.points().len(), 3 * 160);
        assert!(ring.points().windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn one_server_owns_everything() {
        let ring = Ring::unweighted([("only", 11211)]).unwrap();
        for key in ["a", "b", "zzz"] {
            assert_eq!(ring.server_index(key.as_bytes()), 0);
            assert_eq!(ring.replicas(key.as_bytes(), 3), vec![0]);
        }
    }

    #[test]
    fn lookup_takes_the_first_point_at_or_after_the_hash_and_wraps() {
        let ring = Ring::unweighted([("h1", 11211), ("h2", 11211)]).unwrap();
        for i in 0..200 {
            let key = format!("key-{i}");
            let hash = key_hash(key.as_bytes());
            let expected = ring
                .points()
                .iter()
                .find(|p| p.value >= hash)
                .unwrap_or(&ring.points()[0])
                .server;
            assert_eq!(ring.server_index(key.as_bytes()), expected);
        }
    }

    #[test]
    fn replicas_start_with_the_owner_and_are_distinct() {
        let ring = Ring::unweighted((0..5).map(|i| (format!("10.0.0.{i}"), 11211))).unwrap();
        for i in 0..100 {
            let key = format!("k{i}");
            let replicas = ring.replicas(key.as_bytes(), 3);
            assert_eq!(replicas.len(), 3);
            assert_eq!(replicas[0], ring.server_index(key.as_bytes()));
            assert!(replicas[0] != replicas[1] && replicas[1] != replicas[2]);
            assert!(replicas[0] != replicas[2]);
            assert_eq!(ring.replicas(key.as_bytes(), 10).len(), 5);
        }
    }

    #[test]
    fn second_replica_is_the_owner_once_the_first_is_removed() {
        let specs: Vec<_> = (0..4)
            .map(|i| ServerSpec::new(format!("10.0.0.{i}"), 11211, 1))
            .collect();
        let ring = Ring::new(specs.clone()).unwrap();
        for i in 0..100 {
            let key = format!("k{i}");
            let replicas = ring.replicas(key.as_bytes(), 2);
            // A client that ejects the owner skips its points: the key then
            // lands on the next other server clockwise.
            let hash = key_hash(key.as_bytes());
            let start = ring.points().partition_point(|p| p.value < hash);
            let next = (0..ring.points().len())
                .map(|o| ring.points()[(start + o) % ring.points().len()].server)
                .find(|&s| s != replicas[0])
                .unwrap();
            assert_eq!(replicas[1], next);
        }
    }

    #[test]
    fn empty_and_weightless_rings_are_errors() {
        assert_eq!(Ring::new(vec![]).unwrap_err(), RingError::NoServers);
        assert_eq!(
            Ring::new(vec![ServerSpec::new("a", 1, 0)]).unwrap_err(),
            RingError::ZeroTotalWeight
        );
    }
}
