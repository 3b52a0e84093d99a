//! The write-ahead log: the ordered, durable stream of changes.
//!
//! Every change the writer makes is appended here, with a sequence number,
//! before it is applied to the engine. With `--sync always` the log is
//! `fdatasync`ed before any reply or any reader sees the change, which is
//! what makes a `STORED` survive `kill -9` and power loss even though sled's
//! own `flush` does not fsync. On start the log is replayed past the last
//! sequence the engine holds durably; later, replication ships it.
//!
//! On disk: `<dir>/<first seq, 20 digits>.wal` segments, each a sequence of
//! frames `[payload length: u32][crc32 of payload: u32][payload]`, followed by
//! zeros: the active segment is zero-filled ahead of the write position in
//! [`PREALLOCATE_STEP`] steps, so that most `fdatasync` calls flush data only,
//! without a file-size change for the filesystem journal to commit. A zero
//! frame header ends a segment. A torn frame at the end of the newest segment
//! (a crash mid-write) is cut off on open; a bad frame anywhere else is
//! corruption and stops the node.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use thiserror::Error;

use crate::engine::Change;
use crate::flush::FlushMarkers;

/// How a change moves the node's item and byte counts (the `curr_items` and
/// `bytes` statistics), recorded with it so that replay restores the counts
/// exactly without re-reading the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Change in the number of stored records.
    pub items: i64,
    /// Change in accounted bytes.
    pub bytes: i64,
}

/// One change with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The sequence number: consecutive, starting at 1.
    pub seq: u64,
    /// What changed.
    pub change: Change,
    /// How the counts moved.
    pub accounting: Accounting,
}

/// Errors of the log.
#[derive(Debug, Error)]
pub enum WalError {
    /// An I/O error.
    #[error("write-ahead log I/O error: {0}")]
    Io(#[from] io::Error),
    /// A bad frame before the end of the log.
    #[error("write-ahead log segment {path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the bad frame starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_FLUSH: u8 = 3;
const FRAME_HEADER: usize = 8;
/// How far ahead of the write position the active segment is zero-filled.
pub const PREALLOCATE_STEP: u64 = 1 << 20;
/// No frame is larger: a 1 GiB item would be refused long before.
const MAX_FRAME: usize = 1 << 30;

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segments on disk, shared between the writer (which adds) and the
/// checkpointer (which removes those the engine holds durably).
#[derive(Debug, Clone, Default)]
pub struct Segments {
    /// First sequence number of each segment, in order; the last is active.
    firsts: Arc<Mutex<BTreeMap<u64, PathBuf>>>,
}

impl Segments {
    /// Deletes every segment whose entries all have a sequence number at or
    /// below `durable_seq`, never the active one. Returns how many it removed.
    pub fn remove_through(&self, durable_seq: u64) -> io::Result<usize> {
        let doomed: Vec<(u64, PathBuf)> = {
            let firsts = self.firsts.lock().expect("segments lock");
            let starts: Vec<u64> = firsts.keys().copied().collect();
            starts
                .windows(2)
                .filter(|pair| pair[1] - 1 <= durable_seq)
                .map(|pair| (pair[0], firsts[&pair[0]].clone()))
                .collect()
        };
        for (first, path) in &doomed {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.firsts.lock().expect("segments lock").remove(first);
        }
        Ok(doomed.len())
    }

    /// Total bytes of all segments (for `stats store`).
    pub fn disk_bytes(&self) -> u64 {
        let firsts = self.firsts.lock().expect("segments lock");
        firsts
            .values()
            .filter_map(|path| fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum()
    }

    fn add(&self, first: u64, path: PathBuf) {
        self.firsts
            .lock()
            .expect("segments lock")
            .insert(first, path);
    }
}

/// The appending side of the log, owned by the writer thread.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    active: File,
    /// Where the next frame goes: the end of the valid frames.
    active_len: u64,
    /// The file's length: zeros from `active_len` to here.
    allocated: u64,
    next_seq: u64,
    segment_limit: u64,
    segments: Segments,
    buffer: Vec<u8>,
    /// Bytes written since the last sync.
    unsynced: bool,
}

impl Wal {
    /// Opens the log in `dir`, calling `replay` for every entry with a
    /// sequence number above `after_seq`, in order, then starts a new
    /// segment for new entries. `after_seq` is what the engine already holds.
    pub fn open(
        dir: &Path,
        after_seq: u64,
        segment_limit: u64,
        mut replay: impl FnMut(LogEntry),
    ) -> Result<Wal, WalError> {
        fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let first = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".wal"))
                .and_then(|digits| digits.parse::<u64>().ok());
            if let Some(first) = first {
                found.push((first, path));
            }
        }
        found.sort();
        let segments = Segments::default();
        let mut last_seq = after_seq;
        let count = found.len();
        for (index, (first, path)) in found.into_iter().enumerate() {
            let is_last = index + 1 == count;
            read_segment(&path, is_last, |entry| {
                last_seq = last_seq.max(entry.seq);
                if entry.seq > after_seq {
                    replay(entry);
                }
            })?;
            segments.add(first, path);
        }
        let next_seq = last_seq + 1;
        let path = segment_path(dir, next_seq);
        // A segment named after the next sequence holds no frame yet (any
        // torn bytes were cut above): writing starts at its beginning.
        let active = open_segment(&path)?;
        let allocated = active.metadata()?.len();
        let active_len = 0;
        sync_dir(dir)?;
        segments.add(next_seq, path);
        Ok(Wal {
            dir: dir.to_path_buf(),
            active,
            active_len,
            allocated,
            next_seq,
            segment_limit,
            segments,
            buffer: Vec::new(),
            unsynced: false,
        })
    }

    /// The shared segment list, for the checkpointer.
    pub fn segments(&self) -> Segments {
        self.segments.clone()
    }

    /// The sequence number the next appended change will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends changes with consecutive sequence numbers (written, not yet
    /// synced) and returns the last sequence number used.
    pub fn append<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (&'a Change, Accounting)>,
    ) -> Result<u64, WalError> {
        if self.active_len >= self.segment_limit {
            self.roll()?;
        }
        self.buffer.clear();
        for (change, accounting) in changes {
            encode_frame(&mut self.buffer, self.next_seq, change, accounting);
            self.next_seq += 1;
        }
        let end = self.active_len + self.buffer.len() as u64;
        if end > self.allocated {
            self.preallocate(end + PREALLOCATE_STEP)?;
        }
        self.active.write_all_at(&self.buffer, self.active_len)?;
        self.active_len = end;
        self.unsynced = true;
        Ok(self.next_seq - 1)
    }

    /// Makes everything appended so far durable (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.unsynced {
            self.active.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Whether there are appended bytes not yet synced.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Zero-fills the active segment up to `len` bytes. The next sync makes
    /// the new length durable once; later syncs flush data only.
    fn preallocate(&mut self, len: u64) -> Result<(), WalError> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut at = self.allocated;
        while at < len {
            let chunk = (len - at).min(ZEROS.len() as u64) as usize;
            self.active.write_all_at(&ZEROS[..chunk], at)?;
            at += chunk as u64;
        }
        self.allocated = len;
        Ok(())
    }

    fn roll(&mut self) -> Result<(), WalError> {
        self.active.sync_data()?;
        let path = segment_path(&self.dir, self.next_seq);
        self.active = open_segment(&path)?;
        sync_dir(&self.dir)?;
        self.allocated = self.active.metadata()?.len();
        self.active_len = 0;
        self.unsynced = false;
        self.segments.add(self.next_seq, path);
        Ok(())
    }
}

fn open_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

fn encode_frame(out: &mut Vec<u8>, seq: u64, change: &Change, accounting: Accounting) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.extend_from_slice(&seq.to_le_bytes());
    let (kind, key, body): (u8, &[u8], &[u8]) = match change {
        Change::Put { key, record } => (KIND_PUT, key, record),
        Change::Delete { key } => (KIND_DELETE, key, &[]),
        Change::Flush(_) => (KIND_FLUSH, &[], &[]),
    };
    out.push(kind);
    out.extend_from_slice(&accounting.items.to_le_bytes());
    out.extend_from_slice(&accounting.bytes.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    if let Change::Flush(markers) = change {
        out.extend_from_slice(&markers.encode());
    } else {
        out.extend_from_slice(body);
    }
    let payload_len = (out.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn decode_payload(payload: &[u8]) -> Result<LogEntry, String> {
    let fixed = 8 + 1 + 8 + 8 + 4;
    if payload.len() < fixed {
        return Err(format!("payload of {} bytes is too short", payload.len()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
    let seq = u64_at(0);
    let kind = payload[8];
    let accounting = Accounting {
        items: u64_at(9) as i64,
        bytes: u64_at(17) as i64,
    };
    let key_len = u32::from_le_bytes(payload[25..29].try_into().expect("4 bytes")) as usize;
    let Some(key) = payload.get(fixed..fixed + key_len) else {
        return Err("key runs past the payload".into());
    };
    let rest = &payload[fixed + key_len..];
    let key = Bytes::copy_from_slice(key);
    let change = match kind {
        KIND_PUT => Change::Put {
            key,
            record: Bytes::copy_from_slice(rest),
        },
        KIND_DELETE => Change::Delete { key },
        KIND_FLUSH => Change::Flush(FlushMarkers::decode(rest).ok_or("bad flush markers")?),
        other => return Err(format!("unknown entry kind {other}")),
    };
    Ok(LogEntry {
        seq,
        change,
        accounting,
    })
}

/// Reads one segment. In the newest segment a bad or partial frame is a torn
/// write: the file is cut there. Elsewhere it is an error.
fn read_segment(
    path: &Path,
    is_last: bool,
    mut each: impl FnMut(LogEntry),
) -> Result<(), WalError> {
    // Read what the file's length says is there, never more.
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    let mut offset = 0usize;
    let mut bad: Option<String> = None;
    while offset < bytes.len() {
        let Some(header) = bytes.get(offset..offset + FRAME_HEADER) else {
            bad = Some("partial frame header".into());
            break;
        };
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len == 0 && crc == 0 {
            // The zero-filled space after the last frame.
            break;
        }
        if len > MAX_FRAME {
            bad = Some(format!("frame length {len} is implausible"));
            break;
        }
        let start = offset + FRAME_HEADER;
        let Some(payload) = bytes.get(start..start + len) else {
            bad = Some("partial frame".into());
            break;
        };
        if crc32fast::hash(payload) != crc {
            bad = Some("frame checksum mismatch".into());
            break;
        }
        match decode_payload(payload) {
            Ok(entry) => each(entry),
            Err(reason) => {
                bad = Some(reason);
                break;
            }
        }
        offset = start + len;
    }
    if let Some(reason) = bad {
        if !is_last {
            return Err(WalError::Corrupt {
                path: path.to_path_buf(),
                offset: offset as u64,
                reason,
            });
        }
        tracing::warn!(
            segment = %path.display(),
            offset,
            %reason,
            "cutting a torn write off the end of the write-ahead log"
        );
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(offset as u64)?;
        file.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Change {
        Change::Put {
            key: Bytes::copy_from_slice(key.as_bytes()),
            record: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    /// Where the frames of a segment end and its zero-filled space begins
    /// (the test values never end in a zero byte).
    fn frames_end(bytes: &[u8]) -> usize {
        bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
    }

    #[test]
    fn segments_are_zero_filled_ahead_and_the_zeros_end_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = reopen(dir.path(), 0);
        wal.append([(&put("a", "1"), Accounting::default())])
            .unwrap();
        wal.sync().unwrap();
        let segment = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert!(fs::metadata(&segment).unwrap().len() >= PREALLOCATE_STEP);
        wal.append([(&put("b", "2"), Accounting::default())])
            .unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, seen) = reopen(dir.path(), 0);
        assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    fn reopen(dir: &Path, after: u64) -> (Wal, Vec<LogEntry>) {
        let mut seen = Vec::new();
        let wal = Wal::open(dir, after, 1 << 20, |entry| seen.push(entry)).unwrap();
        (wal, seen)
    }

    #[test]
    fn appended_entries_replay_in_order_after_the_given_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, seen) = reopen(dir.path(), 0);
        assert!(seen.is_empty());
        let changes = [
            put("a", "1"),
            Change::Delete {
                key: Bytes::from_static(b"a"),
            },
            put("b", "2"),
        ];
        let accounting = Accounting {
            items: 1,
            bytes: 10,
        };
        let last = wal.append(changes.iter().map(|c| (c, accounting))).unwrap();
        assert_eq!(last, 3);
        wal.sync().unwrap();
        drop(wal);
        let (wal, seen) = reopen(dir.path(), 1);
        assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(seen[1].change, changes[2]);
        assert_eq!(seen[1].accounting, accounting);
        assert_eq!(wal.next_seq(), 4);
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_appends_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = reopen(dir.path(), 0);
        wal.append([(&put("a", "1"), Accounting::default())])
            .unwrap();
        wal.append([(&put("b", "2"), Accounting::default())])
            .unwrap();
        wal.sync().unwrap();
        drop(wal);
        let segment = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = fs::read(&segment).unwrap();
        // Tear the second frame: its last bytes never reached the disk.
        let end = frames_end(&bytes);
        bytes[end - 3..end].fill(0);
        fs::write(&segment, bytes).unwrap();
        let (mut wal, seen) = reopen(dir.path(), 0);
        assert_eq!(seen.len(), 1);
        wal.append([(&put("c", "3"), Accounting::default())])
            .unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, seen) = reopen(dir.path(), 0);
        let keys: Vec<_> = seen.iter().map(|e| e.seq).collect();
        assert_eq!(keys, vec![1, 2]);
    }

    #[test]
    fn corruption_before_the_last_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = reopen(dir.path(), 0);
        wal.append([(&put("a", "1"), Accounting::default())])
            .unwrap();
        wal.sync().unwrap();
        drop(wal);
        // A new segment starts on every open, so the first one is now old.
        let (wal, _) = reopen(dir.path(), 0);
        drop(wal);
        let mut paths: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        let mut bytes = fs::read(&paths[0]).unwrap();
        let last = frames_end(&bytes) - 1;
        bytes[last] ^= 0xff;
        fs::write(&paths[0], bytes).unwrap();
        let result = Wal::open(dir.path(), 0, 1 << 20, |_| {});
        assert!(matches!(result, Err(WalError::Corrupt { .. })));
    }

    #[test]
    fn segments_roll_and_durable_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 0, 64, |_| {}).unwrap();
        for i in 0..10 {
            wal.append([(
                &put(&format!("key{i}"), "value-value-value"),
                Accounting::default(),
            )])
            .unwrap();
        }
        wal.sync().unwrap();
        let segments = wal.segments();
        let before = fs::read_dir(dir.path()).unwrap().count();
        assert!(before > 3, "expected several segments, got {before}");
        segments.remove_through(5).unwrap();
        drop(wal);
        let mut seen = Vec::new();
        Wal::open(dir.path(), 0, 64, |e| seen.push(e.seq)).unwrap();
        assert!(seen.first().copied().unwrap() <= 6, "{seen:?}");
        assert_eq!(seen.last().copied(), Some(10));
    }
}
