//! The write-ahead log: the ordered, durable stream of changes.
//!
//! Every change the commit pipeline makes is appended here, with a sequence
//! number, before it is applied to the engine. With `--sync always` the log
//! is `fdatasync`ed before any reply or any reader sees the change, which is
//! what makes a `STORED` survive `kill -9` and power loss even though sled's
//! own `flush` does not fsync. On start the log is replayed past the last
//! sequence the engine holds durably. While the node runs, the log is also
//! the change stream ([`stream`]) replicas follow, and segments are kept for
//! the registered [`cursors`] up to the retention bound.
//!
//! On disk: `<dir>/<first seq, 20 digits>.wal` segments, each a sequence of
//! frames `[payload length: u32][crc32 of payload: u32][payload]`, followed by
//! zeros: the active segment is zero-filled ahead of the write position in
//! [`PREALLOCATE_STEP`] steps, so that most `fdatasync` calls flush data only,
//! without a file-size change for the filesystem journal to commit. A zero
//! frame header ends a segment. A torn frame at the end of the newest segment
//! (a crash mid-write) is cut off on open; a bad frame anywhere else is
//! corruption and stops the node.
//!
//! A payload is `[seq: u64][kind: u8][items: i64][bytes: i64]`, for this
//! release's kinds `[tombstones: i64][previous: u8 flag, timestamp: u64,
//! node: u64]`, then `[key length: u32][key][body]`.
//! Kinds 1-3 are the frames of earlier releases (put, delete, flush with
//! nanosecond markers); this release writes 4-7 (a client's put, a put
//! applied from a replica, a housekeeping removal, a flush).

pub mod cursors;
pub mod stream;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::watch;

use crate::engine::Change;
use crate::flush::FlushMarkers;
use crate::version::{NodeId, Timestamp, Version};

/// How a change moves the node's item, byte and tombstone counts (the
/// `curr_items` and `bytes` statistics), recorded with it so that replay
/// restores the counts exactly without re-reading the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Change in the number of stored item records.
    pub items: i64,
    /// Change in accounted bytes of item records.
    pub bytes: i64,
    /// Change in the number of stored tombstones.
    pub tombstones: i64,
}

/// Where a change came from, which decides whether replication ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A client's write evaluated on this node: replicas need it.
    Client,
    /// A record written by another node and applied here: already where it
    /// came from, not shipped again.
    Replica,
    /// Local housekeeping (reclaiming an expired or flushed item, purging a
    /// tombstone, a flush marker): never shipped; every node does its own.
    Housekeeping,
}

/// Where a change came from and what it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance {
    /// Where it came from.
    pub origin: Origin,
    /// The version of what the key held before (an item or a tombstone),
    /// if anything readable: what a consumer keeping digests of the stored
    /// versions takes out before it puts the new one in.
    pub previous: Option<Version>,
}

impl Provenance {
    /// A change with no record of what it replaced.
    pub fn of(origin: Origin) -> Provenance {
        Provenance {
            origin,
            previous: None,
        }
    }
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
    /// Where it came from.
    pub origin: Origin,
    /// The version the key held before (not recorded by frames of earlier
    /// releases).
    pub previous: Option<Version>,
}

/// Errors of the log.
#[derive(Debug, Error)]
#[non_exhaustive]
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
        reason: FrameError,
    },
}

/// What is wrong with a frame.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than a frame header.
    #[error("partial frame header")]
    PartialHeader,
    /// A length no frame can have.
    #[error("frame length {0} is implausible")]
    ImplausibleLength(usize),
    /// Fewer bytes than the header announces.
    #[error("partial frame")]
    Partial,
    /// The crc32 does not match.
    #[error("frame checksum mismatch")]
    ChecksumMismatch,
    /// A payload too short for its fields.
    #[error("payload of {0} bytes is too short")]
    ShortPayload(usize),
    /// The key length runs past the payload.
    #[error("key runs past the payload")]
    KeyOverrun,
    /// Unreadable flush markers.
    #[error("bad flush markers")]
    BadFlushMarkers,
    /// A kind this build does not know.
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
}

const KIND_LEGACY_PUT: u8 = 1;
const KIND_LEGACY_DELETE: u8 = 2;
const KIND_LEGACY_FLUSH: u8 = 3;
const KIND_CLIENT_PUT: u8 = 4;
const KIND_REPLICA_PUT: u8 = 5;
const KIND_REMOVE: u8 = 6;
const KIND_FLUSH: u8 = 7;
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

/// The segments on disk, shared between the commit pipeline (which adds),
/// the checkpointer (which removes those nothing needs any more) and the
/// change-stream readers (which look up where a sequence lives).
#[derive(Debug, Clone, Default)]
pub struct Segments {
    /// First sequence number of each segment, in order; the last is active.
    firsts: Arc<Mutex<BTreeMap<u64, PathBuf>>>,
}

impl Segments {
    /// Deletes every segment whose entries all have a sequence number at or
    /// below `through`, never the active one. Returns how many it removed.
    pub fn remove_through(&self, through: u64) -> io::Result<usize> {
        let doomed: Vec<(u64, PathBuf)> = {
            let firsts = self.firsts.lock().expect("segments lock");
            let starts: Vec<u64> = firsts.keys().copied().collect();
            starts
                .windows(2)
                .filter(|pair| pair[1] - 1 <= through)
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

    /// Each closed segment's first sequence and size in bytes, oldest first
    /// (the active segment is left out: it is never removed).
    pub fn closed(&self) -> Vec<(u64, u64, u64)> {
        let firsts = self.firsts.lock().expect("segments lock");
        let starts: Vec<(u64, PathBuf)> = firsts.iter().map(|(k, v)| (*k, v.clone())).collect();
        drop(firsts);
        starts
            .windows(2)
            .map(|pair| {
                let size = fs::metadata(&pair[0].1).map_or(0, |m| m.len());
                (pair[0].0, pair[1].0 - 1, size)
            })
            .collect()
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

    /// The first sequence number still on disk.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.firsts
            .lock()
            .expect("segments lock")
            .keys()
            .next()
            .copied()
    }

    /// The segment holding `seq`: its first sequence and path, if it is
    /// still on disk.
    pub fn holding(&self, seq: u64) -> Option<(u64, PathBuf)> {
        let firsts = self.firsts.lock().expect("segments lock");
        firsts
            .range(..=seq)
            .next_back()
            .map(|(first, path)| (*first, path.clone()))
    }

    /// The segment that starts at `seq`, if any.
    pub fn starting_at(&self, seq: u64) -> Option<PathBuf> {
        self.firsts
            .lock()
            .expect("segments lock")
            .get(&seq)
            .cloned()
    }

    fn add(&self, first: u64, path: PathBuf) {
        self.firsts
            .lock()
            .expect("segments lock")
            .insert(first, path);
    }
}

/// The appending side of the log, owned by the commit pipeline.
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
    /// The last sequence change-stream readers may read.
    published: watch::Sender<u64>,
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
            last_seq = last_seq.max(first.saturating_sub(1));
            segments.add(first, path);
        }
        let next_seq = last_seq + 1;
        let path = segment_path(dir, next_seq);
        // A segment named after the next sequence holds no frame yet (any
        // torn bytes were cut above): writing starts at its beginning.
        let active = open_segment(&path)?;
        let allocated = active.metadata()?.len();
        sync_dir(dir)?;
        segments.add(next_seq, path);
        let (published, _) = watch::channel(last_seq);
        Ok(Wal {
            dir: dir.to_path_buf(),
            active,
            active_len: 0,
            allocated,
            next_seq,
            segment_limit,
            segments,
            buffer: Vec::new(),
            unsynced: false,
            published,
        })
    }

    /// The shared segment list.
    pub fn segments(&self) -> Segments {
        self.segments.clone()
    }

    /// The sequence number the next appended change will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Where change-stream readers learn the last sequence they may read.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Lets change-stream readers read everything through `seq` (called once
    /// the entries are as durable as the sync mode promises).
    pub fn publish(&self, seq: u64) {
        self.published.send_if_modified(|published| {
            let newer = seq > *published;
            if newer {
                *published = seq;
            }
            newer
        });
    }

    /// Appends changes with consecutive sequence numbers (written, not yet
    /// synced) and returns the last sequence number used.
    pub fn append<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (&'a Change, Accounting, Provenance)>,
    ) -> Result<u64, WalError> {
        if self.active_len >= self.segment_limit {
            self.roll()?;
        }
        self.buffer.clear();
        for (change, accounting, provenance) in changes {
            encode_frame(
                &mut self.buffer,
                self.next_seq,
                change,
                accounting,
                provenance,
            );
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

fn encode_frame(
    out: &mut Vec<u8>,
    seq: u64,
    change: &Change,
    accounting: Accounting,
    provenance: Provenance,
) {
    let origin = provenance.origin;
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.extend_from_slice(&seq.to_le_bytes());
    let (kind, key, body): (u8, &[u8], &[u8]) = match (change, origin) {
        (Change::Put { key, record }, Origin::Replica) => (KIND_REPLICA_PUT, key, record),
        (Change::Put { key, record }, _) => (KIND_CLIENT_PUT, key, record),
        (Change::Remove { key }, _) => (KIND_REMOVE, key, &[]),
        (Change::Flush(_), _) => (KIND_FLUSH, &[], &[]),
    };
    out.push(kind);
    out.extend_from_slice(&accounting.items.to_le_bytes());
    out.extend_from_slice(&accounting.bytes.to_le_bytes());
    out.extend_from_slice(&accounting.tombstones.to_le_bytes());
    let previous = provenance.previous.unwrap_or_default();
    out.push(u8::from(provenance.previous.is_some()));
    out.extend_from_slice(&previous.timestamp.0.to_le_bytes());
    out.extend_from_slice(&previous.node.0.to_le_bytes());
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

fn decode_payload(payload: &[u8]) -> Result<LogEntry, FrameError> {
    let u64_at = |at: usize| -> Result<u64, FrameError> {
        payload
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or(FrameError::ShortPayload(payload.len()))
    };
    let seq = u64_at(0)?;
    let kind = *payload
        .get(8)
        .ok_or(FrameError::ShortPayload(payload.len()))?;
    let legacy = matches!(
        kind,
        KIND_LEGACY_PUT | KIND_LEGACY_DELETE | KIND_LEGACY_FLUSH
    );
    let accounting = Accounting {
        items: u64_at(9)? as i64,
        bytes: u64_at(17)? as i64,
        tombstones: if legacy { 0 } else { u64_at(25)? as i64 },
    };
    let previous = if legacy {
        None
    } else {
        let present = *payload
            .get(33)
            .ok_or(FrameError::ShortPayload(payload.len()))?;
        let version = Version {
            timestamp: Timestamp(u64_at(34)?),
            node: NodeId(u64_at(42)?),
        };
        (present == 1).then_some(version)
    };
    let key_at = if legacy { 25 } else { 50 };
    let key_len = payload
        .get(key_at..key_at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or(FrameError::ShortPayload(payload.len()))?;
    let key_start = key_at + 4;
    let key = payload
        .get(key_start..key_start + key_len)
        .ok_or(FrameError::KeyOverrun)?;
    let rest = &payload[key_start + key_len..];
    let key = Bytes::copy_from_slice(key);
    let put = |key| Change::Put {
        key,
        record: Bytes::copy_from_slice(rest),
    };
    let (change, origin) = match kind {
        KIND_LEGACY_PUT | KIND_CLIENT_PUT => (put(key), Origin::Client),
        KIND_REPLICA_PUT => (put(key), Origin::Replica),
        KIND_LEGACY_DELETE | KIND_REMOVE => (Change::Remove { key }, Origin::Housekeeping),
        KIND_LEGACY_FLUSH => (
            Change::Flush(FlushMarkers::decode_legacy(rest).ok_or(FrameError::BadFlushMarkers)?),
            Origin::Housekeeping,
        ),
        KIND_FLUSH => (
            Change::Flush(FlushMarkers::decode(rest).ok_or(FrameError::BadFlushMarkers)?),
            Origin::Housekeeping,
        ),
        other => return Err(FrameError::UnknownKind(other)),
    };
    Ok(LogEntry {
        seq,
        change,
        accounting,
        origin,
        previous,
    })
}

/// What a frame at some offset of a segment holds.
enum FrameRead {
    /// A frame, and the offset after it.
    Entry(LogEntry, usize),
    /// The zero-filled space after the last frame (or the end of the file).
    End,
    /// A bad frame.
    Bad(FrameError),
}

fn decode_frame_at(bytes: &[u8], offset: usize) -> FrameRead {
    if offset >= bytes.len() {
        return FrameRead::End;
    }
    let Some(header) = bytes.get(offset..offset + FRAME_HEADER) else {
        return FrameRead::Bad(FrameError::PartialHeader);
    };
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len == 0 && crc == 0 {
        return FrameRead::End;
    }
    if len > MAX_FRAME {
        return FrameRead::Bad(FrameError::ImplausibleLength(len));
    }
    let start = offset + FRAME_HEADER;
    let Some(payload) = bytes.get(start..start + len) else {
        return FrameRead::Bad(FrameError::Partial);
    };
    if crc32fast::hash(payload) != crc {
        return FrameRead::Bad(FrameError::ChecksumMismatch);
    }
    match decode_payload(payload) {
        Ok(entry) => FrameRead::Entry(entry, start + len),
        Err(err) => FrameRead::Bad(err),
    }
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
    let bad = loop {
        match decode_frame_at(&bytes, offset) {
            FrameRead::Entry(entry, next) => {
                each(entry);
                offset = next;
            }
            FrameRead::End => break None,
            FrameRead::Bad(reason) => break Some(reason),
        }
    };
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
mod tests;
