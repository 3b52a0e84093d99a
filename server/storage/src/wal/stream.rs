//! The change stream: a reader that follows the write-ahead log.
//!
//! A [`ChangeReader`] starts after a sequence number and yields every entry
//! of the log after it, in order, exactly once, as soon as the entry is as
//! durable as the node's sync mode promises (`--sync always`: after its
//! `fdatasync`; `periodic` and `none`: once written, which is when the
//! client was answered). When it has read everything published it waits,
//! without polling, on the pipeline's publication of new sequences.
//!
//! It reads the segment files directly (positional reads of whole frames,
//! checked with their crc32), so it never holds up the commit pipeline. A
//! reader that wants a sequence whose segment was already removed (log
//! retention) gets [`StreamError::FellBehind`]: it needs a full resync.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use thiserror::Error;
use tokio::sync::watch;

use super::{decode_payload, FrameError, LogEntry, Segments, FRAME_HEADER, MAX_FRAME};

/// Why the change stream cannot go on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The log no longer holds the next sequence: a full resync is needed.
    #[error("the change stream no longer holds sequence {wanted} (the oldest kept is {oldest}); a full resync is needed")]
    FellBehind {
        /// The sequence the reader needed.
        wanted: u64,
        /// The oldest sequence still on disk.
        oldest: u64,
    },
    /// The named cursor fell behind log retention: a full resync is needed.
    #[error("cursor {0} fell behind log retention; a full resync is needed")]
    CursorFellBehind(String),
    /// No cursor has this name.
    #[error("no change-stream cursor named {0}")]
    UnknownCursor(String),
    /// A cursor name that cannot be kept (empty, too long, a newline).
    #[error("bad change-stream cursor name {0:?}")]
    BadCursorName(String),
    /// Reading a segment failed.
    #[error("reading log segment {path}: {source}")]
    Io {
        /// The segment.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A frame failed its checks.
    #[error("log segment {path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: FrameError,
    },
    /// The node is shutting down: nothing more will be published.
    #[error("the node is shutting down")]
    Closed,
}

struct OpenSegment {
    file: File,
    path: PathBuf,
    offset: u64,
}

/// Follows the log; see the module documentation.
pub struct ChangeReader {
    segments: Segments,
    published: watch::Receiver<u64>,
    next_seq: u64,
    current: Option<OpenSegment>,
}

impl ChangeReader {
    /// A reader that yields the entries after `after_seq`.
    pub fn new(segments: Segments, published: watch::Receiver<u64>, after_seq: u64) -> Self {
        ChangeReader {
            segments,
            published,
            next_seq: after_seq + 1,
            current: None,
        }
    }

    /// The last sequence this reader yielded (or started after).
    pub fn position(&self) -> u64 {
        self.next_seq - 1
    }

    /// The last sequence published so far.
    pub fn published(&self) -> u64 {
        *self.published.borrow()
    }

    /// The next entry, waiting for one to be published.
    pub async fn next(&mut self) -> Result<LogEntry, StreamError> {
        loop {
            if let Some(entry) = self.try_next()? {
                return Ok(entry);
            }
            if self.published.changed().await.is_err() && self.next_seq > self.published() {
                return Err(StreamError::Closed);
            }
        }
    }

    /// The next entry if one is published, without waiting.
    pub fn try_next(&mut self) -> Result<Option<LogEntry>, StreamError> {
        if self.next_seq > *self.published.borrow_and_update() {
            return Ok(None);
        }
        loop {
            let segment = match self.current.take() {
                Some(segment) => segment,
                None => self.open_holding(self.next_seq)?,
            };
            let mut segment = segment;
            match read_frame(&segment)? {
                Some((entry, next_offset)) => {
                    segment.offset = next_offset;
                    self.current = Some(segment);
                    if entry.seq < self.next_seq {
                        continue;
                    }
                    if entry.seq > self.next_seq {
                        return Err(StreamError::FellBehind {
                            wanted: self.next_seq,
                            oldest: entry.seq,
                        });
                    }
                    self.next_seq += 1;
                    return Ok(Some(entry));
                }
                None => {
                    // This segment's frames end here: the next one starts
                    // exactly at the sequence wanted.
                    let Some(path) = self.segments.starting_at(self.next_seq) else {
                        return Err(self.fell_behind());
                    };
                    if path == segment.path {
                        return Err(self.fell_behind());
                    }
                    self.current = Some(self.open(path)?);
                }
            }
        }
    }

    fn fell_behind(&self) -> StreamError {
        StreamError::FellBehind {
            wanted: self.next_seq,
            oldest: self.segments.oldest_seq().unwrap_or(self.next_seq),
        }
    }

    fn open_holding(&self, seq: u64) -> Result<OpenSegment, StreamError> {
        match self.segments.holding(seq) {
            Some((_, path)) => self.open(path),
            None => Err(self.fell_behind()),
        }
    }

    /// Opens a segment; one removed meanwhile means the reader fell behind.
    fn open(&self, path: PathBuf) -> Result<OpenSegment, StreamError> {
        open(path.clone()).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                self.fell_behind()
            } else {
                StreamError::Io { path, source }
            }
        })
    }
}

fn open(path: PathBuf) -> io::Result<OpenSegment> {
    let file = File::open(&path)?;
    Ok(OpenSegment {
        file,
        path,
        offset: 0,
    })
}

/// Reads the frame at the segment's offset: the entry and the offset after
/// it, or `None` at the end of the segment's frames.
fn read_frame(segment: &OpenSegment) -> Result<Option<(LogEntry, u64)>, StreamError> {
    let io_error = |source| StreamError::Io {
        path: segment.path.clone(),
        source,
    };
    let corrupt = |reason| StreamError::Corrupt {
        path: segment.path.clone(),
        offset: segment.offset,
        reason,
    };
    let mut header = [0u8; FRAME_HEADER];
    let read = read_at_most(&segment.file, &mut header, segment.offset).map_err(io_error)?;
    if read < FRAME_HEADER || header == [0; FRAME_HEADER] {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > MAX_FRAME {
        return Err(corrupt(FrameError::ImplausibleLength(len)));
    }
    let mut payload = vec![0u8; len];
    let read = read_at_most(
        &segment.file,
        &mut payload,
        segment.offset + FRAME_HEADER as u64,
    )
    .map_err(io_error)?;
    if read < len {
        return Err(corrupt(FrameError::Partial));
    }
    if crc32fast::hash(&payload) != crc {
        return Err(corrupt(FrameError::ChecksumMismatch));
    }
    let entry = decode_payload(&payload).map_err(corrupt)?;
    Ok(Some((entry, segment.offset + (FRAME_HEADER + len) as u64)))
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
