//! The stored form of an item: what sled holds under each key.
//!
//! Every record carries what replication will need: the client flags, the
//! absolute expiry, the cas unique, a version timestamp for last-write-wins,
//! and a crc32 over the key and everything after the checksum field, checked
//! on every read. Layout (little-endian):
//!
//! ```text
//! 0      1        5       9        17     25        33
//! | fmt  | crc32  | flags | expiry | cas  | version | value ... |
//! ```

use bytes::Bytes;
use mcstore_protocol::exptime::Expiry;
use thiserror::Error;

/// The record format this build writes.
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 33;

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
        out.push(FORMAT_V1);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.expiry.to_stored().to_le_bytes());
        out.extend_from_slice(&self.cas.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
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
            value: Bytes::copy_from_slice(&bytes[HEADER_LEN..]),
        })
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
    /// Length of the value.
    pub value_len: usize,
}

impl RecordHeader {
    /// Reads the header of an encoded record.
    pub fn decode(bytes: &[u8]) -> Result<RecordHeader, CorruptRecord> {
        if bytes.len() < HEADER_LEN {
            return Err(CorruptRecord::Truncated(bytes.len()));
        }
        if bytes[0] != FORMAT_V1 {
            return Err(CorruptRecord::UnknownFormat(bytes[0]));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(RecordHeader {
            flags: u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes")),
            expiry: Expiry::from_stored(u64_at(9)),
            cas: u64_at(17),
            version: u64_at(25),
            value_len: bytes.len() - HEADER_LEN,
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
