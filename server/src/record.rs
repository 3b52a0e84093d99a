//! The stored form of an item: what sled holds under each key.
//!
//! Every record carries what replication will need: the client flags, the
//! absolute expiry, the cas unique, a version timestamp for last-write-wins,
//! the meta protocol's per-item marks (stale, win token sent, binary key),
//! and a crc32 over the key and everything after the checksum field, checked
//! on every read. Layout of format 2 (little-endian), the one this build
//! writes:
//!
//! ```text
//! 0      1        5       9        17     25        33      34
//! | fmt  | crc32  | flags | expiry | cas  | version | marks | value ... |
//! ```
//!
//! Format 1 (written before the meta protocol was executed) is the same
//! without the `marks` byte; it is still read, with no marks set.

use bytes::Bytes;
use mcstore_protocol::exptime::Expiry;
use thiserror::Error;

/// The first record format: no marks byte.
const FORMAT_V1: u8 = 1;
const HEADER_LEN_V1: usize = 33;
/// The record format this build writes: a marks byte after the version.
const FORMAT_V2: u8 = 2;
const HEADER_LEN: usize = 34;

/// The item is stale (`md <key> I`, or `ms ... C<older cas> I`): `mg`
/// reports `X`, and hands a win token (`W`) to the first client that asks.
pub const MARK_STALE: u8 = 1;
/// A win token (`W`) was handed out for this item: later `mg`s report `Z`.
pub const MARK_TOKEN_SENT: u8 = 2;
/// The key was sent in base64 (`ms ... b`): `k` and `me` print it in base64.
pub const MARK_BINARY_KEY: u8 = 4;

/// An item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Opaque client flags.
    pub flags: u32,
    /// When the item expires.
    pub expiry: Expiry,
    /// The cas unique; every change but a touch gets a new one.
    pub cas: u64,
    /// The write's version timestamp (unix nanoseconds, strictly increasing on
    /// this node): the last-write-wins order for replication, and the order
    /// `flush_all` compares against.
    pub version: u64,
    /// Meta protocol marks: [`MARK_STALE`], [`MARK_TOKEN_SENT`],
    /// [`MARK_BINARY_KEY`].
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

fn checksum(key: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(key);
    hasher.update(body);
    hasher.finalize()
}

impl Record {
    /// Encodes the record stored under `key`.
    pub fn encode(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.value.len());
        out.push(FORMAT_V2);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.expiry.to_stored().to_le_bytes());
        out.extend_from_slice(&self.cas.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(self.marks);
        out.extend_from_slice(&self.value);
        let crc = checksum(key, &out[5..]);
        out[1..5].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies the record stored under `key`.
    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<Record, CorruptRecord> {
        let header = RecordHeader::decode(bytes)?;
        let stored_crc = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
        if checksum(key, &bytes[5..]) != stored_crc {
            return Err(CorruptRecord::ChecksumMismatch);
        }
        Ok(Record {
            flags: header.flags,
            expiry: header.expiry,
            cas: header.cas,
            version: header.version,
            marks: header.marks,
            value: Bytes::copy_from_slice(&bytes[bytes.len() - header.value_len..]),
        })
    }

    /// Whether a mark is set.
    pub fn has(&self, mark: u8) -> bool {
        self.marks & mark != 0
    }

    /// The size this record takes in the `bytes` statistic.
    pub fn accounted_size(key_len: usize, value_len: usize) -> u64 {
        (key_len + HEADER_LEN + value_len) as u64
    }
}

/// The fixed fields of a record, read without checking the checksum or
/// copying the value (for the background reclaimer, which only needs to
/// know whether an item is dead; anything it removes is re-checked by the
/// writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Client flags.
    pub flags: u32,
    /// Expiry.
    pub expiry: Expiry,
    /// Cas unique.
    pub cas: u64,
    /// Version timestamp.
    pub version: u64,
    /// Meta protocol marks (0 in format 1).
    pub marks: u8,
    /// Length of the value.
    pub value_len: usize,
}

impl RecordHeader {
    /// Reads the header of an encoded record.
    pub fn decode(bytes: &[u8]) -> Result<RecordHeader, CorruptRecord> {
        let header_len = match bytes.first() {
            None => return Err(CorruptRecord::Truncated(0)),
            Some(&FORMAT_V1) => HEADER_LEN_V1,
            Some(&FORMAT_V2) => HEADER_LEN,
            Some(&other) => return Err(CorruptRecord::UnknownFormat(other)),
        };
        if bytes.len() < header_len {
            return Err(CorruptRecord::Truncated(bytes.len()));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(RecordHeader {
            flags: u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes")),
            expiry: Expiry::from_stored(u64_at(9)),
            cas: u64_at(17),
            version: u64_at(25),
            marks: if header_len == HEADER_LEN {
                bytes[33]
            } else {
                0
            },
            value_len: bytes.len() - header_len,
        })
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
            version: 1_700_000_000_123_456_789,
            marks: MARK_STALE | MARK_BINARY_KEY,
            value: Bytes::from_static(b"hello\r\nworld"),
        }
    }

    #[test]
    fn round_trips() {
        let record = sample();
        let bytes = record.encode(b"key");
        assert_eq!(Record::decode(b"key", &bytes), Ok(record.clone()));
        let header = RecordHeader::decode(&bytes).unwrap();
        assert_eq!(header.cas, 42);
        assert_eq!(header.value_len, record.value.len());
        assert_eq!(header.marks, MARK_STALE | MARK_BINARY_KEY);
        assert!(record.has(MARK_STALE) && !record.has(MARK_TOKEN_SENT));
    }

    #[test]
    fn format_1_records_still_decode_without_marks() {
        let record = sample();
        let mut bytes = vec![FORMAT_V1, 0, 0, 0, 0];
        bytes.extend_from_slice(&record.flags.to_le_bytes());
        bytes.extend_from_slice(&record.expiry.to_stored().to_le_bytes());
        bytes.extend_from_slice(&record.cas.to_le_bytes());
        bytes.extend_from_slice(&record.version.to_le_bytes());
        bytes.extend_from_slice(&record.value);
        let crc = checksum(b"key", &bytes[5..]);
        bytes[1..5].copy_from_slice(&crc.to_le_bytes());
        let decoded = Record::decode(b"key", &bytes).unwrap();
        assert_eq!(decoded, Record { marks: 0, ..record });
        assert_eq!(RecordHeader::decode(&bytes).unwrap().value_len, 12);
    }

    #[test]
    fn the_marks_byte_is_checksummed() {
        let mut bytes = sample().encode(b"key");
        bytes[HEADER_LEN - 1] ^= MARK_TOKEN_SENT;
        assert_eq!(
            Record::decode(b"key", &bytes),
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
                    Record::decode(b"key", &corrupt).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn a_record_under_another_key_is_detected() {
        let bytes = sample().encode(b"key");
        assert_eq!(
            Record::decode(b"kez", &bytes),
            Err(CorruptRecord::ChecksumMismatch)
        );
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let bytes = sample().encode(b"key");
        for len in 0..HEADER_LEN {
            assert!(Record::decode(b"key", &bytes[..len]).is_err());
        }
    }
}
