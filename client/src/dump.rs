//! The backup file of `mcstore-cli dump` and `restore`: every item's key,
//! flags, absolute expiry and value, written and read as a stream (never
//! all in memory).
//!
//! ```text
//! mcstore-dump 1\n
//! ITEM <key in base64> <flags> <exptime> <bytes>\n<data>\n     (one per item)
//! END <items>\n
//! ```
//!
//! `<exptime>` is the absolute unix second the item expires at, `0` for
//! never. A file without its `END` line, or whose count differs, is
//! truncated and refused.

use std::io::{self, BufRead, Write};

use bytes::Bytes;
use mcstore_protocol::meta::{decode_base64, encode_base64};

const MAGIC: &[u8] = b"mcstore-dump 1\n";

/// One item of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpItem {
    /// The key (any bytes).
    pub key: Bytes,
    /// The client flags.
    pub flags: u32,
    /// The absolute unix second it expires at; 0 for never.
    pub exptime: u64,
    /// The value.
    pub value: Bytes,
}

/// Writes a backup.
pub struct DumpWriter<W: Write> {
    out: W,
    items: u64,
}

impl<W: Write> DumpWriter<W> {
    /// Starts a backup on `out` (buffer it).
    pub fn new(mut out: W) -> io::Result<DumpWriter<W>> {
        out.write_all(MAGIC)?;
        Ok(DumpWriter { out, items: 0 })
    }

    /// Appends one item.
    pub fn write(&mut self, item: &DumpItem) -> io::Result<()> {
        let mut line = Vec::with_capacity(item.key.len() * 2 + 40);
        line.extend_from_slice(b"ITEM ");
        encode_base64(&item.key, &mut line);
        line.extend_from_slice(
            format!(" {} {} {}\n", item.flags, item.exptime, item.value.len()).as_bytes(),
        );
        self.out.write_all(&line)?;
        self.out.write_all(&item.value)?;
        self.out.write_all(b"\n")?;
        self.items += 1;
        Ok(())
    }

    /// Items written so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Writes the `END` line and flushes; the output and the item count.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.out
            .write_all(format!("END {}\n", self.items).as_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.items))
    }
}

/// Reads a backup.
pub struct DumpReader<R: BufRead> {
    input: R,
    items: u64,
    done: bool,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl<R: BufRead> DumpReader<R> {
    /// Opens a backup, checking its first line.
    pub fn new(mut input: R) -> io::Result<DumpReader<R>> {
        let mut magic = vec![0; MAGIC.len()];
        input
            .read_exact(&mut magic)
            .map_err(|_| invalid("not an mcstore dump (too short)"))?;
        if magic != MAGIC {
            return Err(invalid("not an mcstore dump (bad first line)"));
        }
        Ok(DumpReader {
            input,
            items: 0,
            done: false,
        })
    }

    /// The next item; `None` after the `END` line.
    pub fn next_item(&mut self) -> io::Result<Option<DumpItem>> {
        if self.done {
            return Ok(None);
        }
        let mut line = Vec::new();
        self.input.read_until(b'\n', &mut line)?;
        if line.pop() != Some(b'\n') {
            return Err(invalid(format!(
                "truncated dump: no END line after {} items",
                self.items
            )));
        }
        if let Some(count) = line.strip_prefix(b"END ") {
            let count: u64 = std::str::from_utf8(count)
                .ok()
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| invalid("bad END line"))?;
            if count != self.items {
                return Err(invalid(format!(
                    "dump says {count} items, holds {}",
                    self.items
                )));
            }
            self.done = true;
            return Ok(None);
        }
        let bad = || invalid(format!("bad ITEM line after {} items", self.items));
        let header = line.strip_prefix(b"ITEM ").ok_or_else(bad)?;
        let fields: Vec<&[u8]> = header.split(|&b| b == b' ').collect();
        let [key, flags, exptime, len] = fields.as_slice() else {
            return Err(bad());
        };
        let number = |text: &[u8]| -> io::Result<u64> {
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(bad)
        };
        let key = Bytes::from(decode_base64(key).ok_or_else(bad)?);
        let flags = u32::try_from(number(flags)?).map_err(|_| bad())?;
        let exptime = number(exptime)?;
        let len = usize::try_from(number(len)?).map_err(|_| bad())?;
        let mut value = vec![0; len + 1];
        self.input
            .read_exact(&mut value)
            .map_err(|_| invalid("truncated dump: an item's value is cut short"))?;
        if value.pop() != Some(b'\n') {
            return Err(bad());
        }
        self.items += 1;
        Ok(Some(DumpItem {
            key,
            flags,
            exptime,
            value: Bytes::from(value),
        }))
    }
}

impl<R: BufRead> Iterator for DumpReader<R> {
    type Item = io::Result<DumpItem>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_item() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => None,
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<DumpItem> {
        vec![
            DumpItem {
                key: Bytes::from_static(b"plain"),
                flags: 7,
                exptime: 0,
                value: Bytes::from_static(b"v"),
            },
            DumpItem {
                key: Bytes::from_static(b"a key\r\n\x00"),
                flags: u32::MAX,
                exptime: 1_900_000_000,
                value: Bytes::from_static(b"line\nEND 0\n\x00"),
            },
            DumpItem {
                key: Bytes::from_static(b"empty"),
                flags: 0,
                exptime: 0,
                value: Bytes::new(),
            },
        ]
    }

    #[test]
    fn a_dump_reads_back_item_for_item() {
        let mut writer = DumpWriter::new(Vec::new()).unwrap();
        for item in items() {
            writer.write(&item).unwrap();
        }
        let (bytes, count) = writer.finish().unwrap();
        assert_eq!(count, 3);
        let read: Vec<DumpItem> = DumpReader::new(&bytes[..])
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(read, items());
    }

    #[test]
    fn a_truncated_dump_is_refused_wherever_it_is_cut() {
        let mut writer = DumpWriter::new(Vec::new()).unwrap();
        for item in items() {
            writer.write(&item).unwrap();
        }
        let (bytes, _) = writer.finish().unwrap();
        for cut in 0..bytes.len() {
            let result = DumpReader::new(&bytes[..cut])
                .and_then(|reader| reader.collect::<io::Result<Vec<_>>>());
            assert!(result.is_err(), "cut at {cut} was accepted");
        }
    }
}
