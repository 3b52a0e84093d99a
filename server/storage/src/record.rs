//! The stored form of an item: what the engine holds under each key.
//!
//! Every record carries what a replica needs to apply it: the client flags,
//! the absolute expiry, the cas unique, the [`Version`] (hybrid clock
//! timestamp and writing node) that orders it against other writes of the
//! key, the per-item marks (the meta protocol's stale / win token / binary
//! key, and [`MARK_TOMBSTONE`] for a deleted key), and a crc32 over the format byte, the
//! key and everything after the checksum field, checked on every read.
//!
//! Format 3 (little-endian), the one this build writes:
//!
//! ```text
//! 0     1       5       9        17    25          33     41      42
//! | fmt | crc32 | flags | expiry | cas | timestamp | node | marks | value ... |
//! ```
//!
//! Formats 1 and 2 (earlier releases) are still read: format 2 has a
//! nanosecond version in place of timestamp and node, and no node; format 1
//! also lacks the marks byte. Their versions map to timestamps with
//! [`Timestamp::from_legacy_nanos`] and node 0.
//!
//! A tombstone is a format-3 record with [`MARK_TOMBSTONE`] set and no
//! value: a client's delete, kept (invisible, not counted as an item) for
//! the tombstone grace period so that an older write arriving late from a
//! replica cannot bring the key back.

use bytes::Bytes;
use thiserror::Error;

use crate::expiry::Expiry;
use crate::version::{NodeId, Timestamp, Version};

const FORMAT_V1: u8 = 1;
const HEADER_LEN_V1: usize = 33;
const FORMAT_V2: u8 = 2;
const HEADER_LEN_V2: usize = 34;
/// The record format this build writes.
const FORMAT_V3: u8 = 3;
const HEADER_LEN: usize = 42;

/// The item is stale (`md <key> I`, or `ms ... C<older cas> I`): `mg`
/// reports `X`, and hands a win token (`W`) to the first client that asks.
pub const MARK_STALE: u8 = 1;
/// A win token (`W`) was handed out for this item: later `mg`s report `Z`.
pub const MARK_TOKEN_SENT: u8 = 2;
/// The key was sent in base64 (`ms ... b`): `k` and `me` print it in base64.
pub const MARK_BINARY_KEY: u8 = 4;
/// The record is a tombstone: the key was deleted at this version.
pub const MARK_TOMBSTONE: u8 = 8;

/// An item (or a tombstone) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Opaque client flags.
    pub flags: u32,
    /// When the item expires.
    pub expiry: Expiry,
    /// The cas unique; every change but a touch gets a new one.
    pub cas: u64,
    /// The write's version: the last-write-wins order between replicas,
    /// and the order `flush_all` compares against.
    pub version: Version,
    /// [`MARK_STALE`], [`MARK_TOKEN_SENT`], [`MARK_BINARY_KEY`],
    /// [`MARK_TOMBSTONE`].
    pub marks: u8,
    /// The data.
    pub value: Bytes,
}

/// A record whose bytes do not check out.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CorruptRecord {
    /// Shorter than the header.
    #[error("record of {0} bytes is shorter than its header")]
    Truncated(usize),
    /// A format byte this build does not know.
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    /// The crc32 does not match the contents.
    #[error("record checksum mismatch")]
    ChecksumMismatch,
}

/// The crc32 of a record: over the key and everything after the checksum
/// field, and from format 3 on over the format byte too (so that a flipped
/// format byte cannot pass as an older format).
fn checksum(key: &[u8], format: u8, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(key);
    if format >= FORMAT_V3 {
        hasher.update(&[format]);
    }
    hasher.update(body);
    hasher.finalize()
}

impl Record {
    /// A tombstone: the key was deleted at `version`. `cas` is kept so
    /// that a deleted item's last cas unique is never reissued.
    pub fn tombstone(version: Version, cas: u64) -> Record {
        Record {
            flags: 0,
            expiry: Expiry::Never,
            cas,
            version,
            marks: MARK_TOMBSTONE,
            value: Bytes::new(),
        }
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.has(MARK_TOMBSTONE)
    }

    /// Encodes the record stored under `key`, in format 3.
    pub fn encode(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.value.len());
        out.push(FORMAT_V3);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.expiry.to_stored().to_le_bytes());
        out.extend_from_slice(&self.cas.to_le_bytes());
        out.extend_from_slice(&self.version.timestamp.0.to_le_bytes());
        out.extend_from_slice(&self.version.node.0.to_le_bytes());
        out.push(self.marks);
        out.extend_from_slice(&self.value);
        let crc = checksum(key, FORMAT_V3, &out[5..]);
        out[1..5].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies the record stored under `key` (any format).
    /// The value shares `bytes`' buffer.
    pub fn decode(key: &[u8], bytes: &Bytes) -> Result<Record, CorruptRecord> {
        let header = RecordHeader::decode(bytes)?;
        let stored_crc = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
        if checksum(key, bytes[0], &bytes[5..]) != stored_crc {
            return Err(CorruptRecord::ChecksumMismatch);
        }
        Ok(Record {
            flags: header.flags,
            expiry: header.expiry,
            cas: header.cas,
            version: header.version,
            marks: header.marks,
            value: bytes.slice(bytes.len() - header.value_len..),
        })
    }

    /// Whether a mark is set.
    pub fn has(&self, mark: u8) -> bool {
        self.marks & mark != 0
    }

    /// The size a record with this key and value takes in the `bytes`
    /// statistic (key, header and value, as stored).
    pub fn accounted_size(key_len: usize, value_len: usize) -> u64 {
        (key_len + HEADER_LEN + value_len) as u64
    }
}

/// The fixed fields of a record, read without checking the checksum or
/// copying the value (for the background reclaimer, which only needs to
/// know whether an item is dead; anything it removes is re-checked by the
/// commit pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Client flags.
    pub flags: u32,
    /// Expiry.
    pub expiry: Expiry,
    /// Cas unique.
    pub cas: u64,
    /// Version.
    pub version: Version,
    /// Marks (0 in format 1).
    pub marks: u8,
    /// Length of the value.
    pub value_len: usize,
}

impl RecordHeader {
    /// Reads the header of an encoded record.
    pub fn decode(bytes: &[u8]) -> Result<RecordHeader, CorruptRecord> {
        let format = *bytes.first().ok_or(CorruptRecord::Truncated(0))?;
        let header_len = match format {
            FORMAT_V1 => HEADER_LEN_V1,
            FORMAT_V2 => HEADER_LEN_V2,
            FORMAT_V3 => HEADER_LEN,
            other => return Err(CorruptRecord::UnknownFormat(other)),
        };
        if bytes.len() < header_len {
            return Err(CorruptRecord::Truncated(bytes.len()));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let (version, marks) = match format {
            FORMAT_V3 => (
                Version {
                    timestamp: Timestamp(u64_at(25)),
                    node: NodeId(u64_at(33)),
                },
                bytes[41],
            ),
            _ => (
                Version {
                    timestamp: Timestamp::from_legacy_nanos(u64_at(25)),
                    node: NodeId(0),
                },
                if format == FORMAT_V2 { bytes[33] } else { 0 },
            ),
        };
        Ok(RecordHeader {
            flags: u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes")),
            expiry: Expiry::from_stored(u64_at(9)),
            cas: u64_at(17),
            version,
            marks,
            value_len: bytes.len() - header_len,
        })
    }

    /// Whether the record is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.marks & MARK_TOMBSTONE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            flags: 0xdead_beef,
            expiry: Expiry::At(1_800_000_000),
            cas: 42,
            version: Version {
                timestamp: Timestamp::from_millis(1_700_000_000_123),
                node: NodeId(0x1234_5678_9abc_def0),
            },
            marks: MARK_STALE | MARK_BINARY_KEY,
            value: Bytes::from_static(b"hello\r\nworld"),
        }
    }

    /// A record in an older format, as an earlier release wrote it.
    fn legacy(record: &Record, format: u8, nanos: u64) -> Bytes {
        let mut bytes = vec![format, 0, 0, 0, 0];
        bytes.extend_from_slice(&record.flags.to_le_bytes());
        bytes.extend_from_slice(&record.expiry.to_stored().to_le_bytes());
        bytes.extend_from_slice(&record.cas.to_le_bytes());
        bytes.extend_from_slice(&nanos.to_le_bytes());
        if format == FORMAT_V2 {
            bytes.push(record.marks);
        }
        bytes.extend_from_slice(&record.value);
        let crc = checksum(b"key", format, &bytes[5..]);
        bytes[1..5].copy_from_slice(&crc.to_le_bytes());
        Bytes::from(bytes)
    }

    #[test]
    fn round_trips() {
        let record = sample();
        let bytes = Bytes::from(record.encode(b"key"));
        assert_eq!(Record::decode(b"key", &bytes), Ok(record.clone()));
        let header = RecordHeader::decode(&bytes).unwrap();
        assert_eq!(header.cas, 42);
        assert_eq!(header.version, record.version);
        assert_eq!(header.value_len, record.value.len());
        assert_eq!(header.marks, MARK_STALE | MARK_BINARY_KEY);
        assert!(record.has(MARK_STALE) && !record.has(MARK_TOKEN_SENT));
    }

    #[test]
    fn tombstones_round_trip() {
        let tombstone = Record::tombstone(sample().version, 77);
        let bytes = Bytes::from(tombstone.encode(b"key"));
        let decoded = Record::decode(b"key", &bytes).unwrap();
        assert!(decoded.is_tombstone() && decoded.value.is_empty());
        assert!(RecordHeader::decode(&bytes).unwrap().is_tombstone());
        assert_eq!(decoded.cas, 77);
    }

    #[test]
    fn formats_1_and_2_still_decode() {
        let record = sample();
        let nanos = 1_700_000_000_123_456_789;
        let v2 = Record::decode(b"key", &legacy(&record, FORMAT_V2, nanos)).unwrap();
        let expected_version = Version {
            timestamp: Timestamp::from_legacy_nanos(nanos),
            node: NodeId(0),
        };
        assert_eq!(
            v2,
            Record {
                version: expected_version,
                ..record.clone()
            }
        );
        let v1 = Record::decode(b"key", &legacy(&record, FORMAT_V1, nanos)).unwrap();
        assert_eq!(
            v1,
            Record {
                version: expected_version,
                marks: 0,
                ..record
            }
        );
    }

    #[test]
    fn the_marks_byte_is_checksummed() {
        let mut bytes = sample().encode(b"key");
        bytes[HEADER_LEN - 1] ^= MARK_TOKEN_SENT;
        assert_eq!(
            Record::decode(b"key", &Bytes::from(bytes)),
            Err(CorruptRecord::ChecksumMismatch)
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample().encode(b"key");
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut corrupt = bytes.clone();
                corrupt[byte] ^= 1 << bit;
                assert!(
                    Record::decode(b"key", &Bytes::from(corrupt)).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn a_record_under_another_key_is_detected() {
        let bytes = Bytes::from(sample().encode(b"key"));
        assert_eq!(
            Record::decode(b"kez", &bytes),
            Err(CorruptRecord::ChecksumMismatch)
        );
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let bytes = Bytes::from(sample().encode(b"key"));
        for len in 0..HEADER_LEN {
            assert!(Record::decode(b"key", &bytes.slice(..len)).is_err());
        }
    }
}
