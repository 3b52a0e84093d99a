//! Change-stream cursors and log retention.
//!
//! A consumer of the change stream (a replica's shipper) registers a named
//! cursor: the last sequence it has consumed. Cursors are kept in
//! `<wal dir>/cursors` (written to a temporary file, fsynced and renamed at
//! each checkpoint), so after a restart a consumer resumes where its last
//! durable position says; a position that lags a little only means a few
//! entries are read again, which applying by version makes harmless.
//!
//! Log segments are kept until every cursor is past them, up to the
//! retention bound (`--wal-retention`): beyond it the oldest segments go
//! anyway, the cursors that still needed them are marked as fallen behind,
//! and their consumers are told so ([`super::stream::StreamError::CursorFellBehind`]):
//! they need a full resync, and the node goes on.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::stream::StreamError;
use super::Segments;
use crate::datadir::write_file_durably;

/// The longest cursor name kept.
pub const MAX_CURSOR_NAME: usize = 200;

/// One cursor's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorState {
    /// The last sequence the consumer has consumed.
    pub position: u64,
    /// The log no longer holds what the consumer needs next.
    pub fell_behind: bool,
}

/// The file in the log's directory that holds the cursors.
const CURSORS_FILE: &str = "cursors";

/// The registered cursors, persisted in one small file.
#[derive(Debug)]
pub struct Cursors {
    /// The log's directory, which holds the file.
    wal_dir: PathBuf,
    state: Mutex<Registry>,
    /// Held while the file is written: two writers at once would share the
    /// temporary file (one's rename then fails, or an older text lands
    /// last).
    writing: Mutex<()>,
}

#[derive(Debug, Default)]
struct Registry {
    cursors: BTreeMap<String, CursorState>,
    dirty: bool,
}

impl Cursors {
    /// Loads the cursors of the log in `wal_dir` (none if the file is
    /// missing; unreadable lines are skipped and logged).
    pub fn load(wal_dir: &Path) -> io::Result<Cursors> {
        let path = wal_dir.join(CURSORS_FILE);
        let mut registry = Registry::default();
        match fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    let mut parts = line.splitn(3, ' ');
                    let parsed = (|| {
                        let position = parts.next()?.parse().ok()?;
                        let fell_behind = parts.next()? == "1";
                        let name = parts.next()?.to_string();
                        Some((
                            name,
                            CursorState {
                                position,
                                fell_behind,
                            },
                        ))
                    })();
                    match parsed {
                        Some((name, state)) => {
                            registry.cursors.insert(name, state);
                        }
                        None => tracing::warn!(%line, "skipping an unreadable cursor line"),
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        Ok(Cursors {
            wal_dir: wal_dir.to_path_buf(),
            state: Mutex::new(registry),
            writing: Mutex::new(()),
        })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.state.lock().expect("cursors lock")
    }

    /// Registers `name` at `position` unless it exists; returns its state.
    pub fn register(&self, name: &str, position: u64) -> Result<CursorState, StreamError> {
        if name.is_empty() || name.len() > MAX_CURSOR_NAME || name.contains('\n') {
            return Err(StreamError::BadCursorName(name.to_string()));
        }
        let mut registry = self.registry();
        if let Some(state) = registry.cursors.get(name) {
            return Ok(*state);
        }
        let state = CursorState {
            position,
            fell_behind: false,
        };
        registry.cursors.insert(name.to_string(), state);
        registry.dirty = true;
        Ok(state)
    }

    /// The state of `name`.
    pub fn get(&self, name: &str) -> Option<CursorState> {
        self.registry().cursors.get(name).copied()
    }

    /// Moves `name` forward to `position` (never back).
    pub fn advance(&self, name: &str, position: u64) -> Result<(), StreamError> {
        let mut registry = self.registry();
        let state = registry
            .cursors
            .get_mut(name)
            .ok_or_else(|| StreamError::UnknownCursor(name.to_string()))?;
        if position > state.position {
            state.position = position;
            registry.dirty = true;
        }
        Ok(())
    }

    /// Moves `name` to `position` and clears its fallen-behind mark (after a
    /// full resync that covers everything up to `position`).
    pub fn reset(&self, name: &str, position: u64) -> Result<(), StreamError> {
        let mut registry = self.registry();
        let state = registry
            .cursors
            .get_mut(name)
            .ok_or_else(|| StreamError::UnknownCursor(name.to_string()))?;
        *state = CursorState {
            position,
            fell_behind: false,
        };
        registry.dirty = true;
        Ok(())
    }

    /// Forgets `name`.
    pub fn remove(&self, name: &str) {
        let mut registry = self.registry();
        if registry.cursors.remove(name).is_some() {
            registry.dirty = true;
        }
    }

    /// Every cursor, by name.
    pub fn snapshot(&self) -> Vec<(String, CursorState)> {
        self.registry()
            .cursors
            .iter()
            .map(|(name, state)| (name.clone(), *state))
            .collect()
    }

    /// The lowest position of the cursors still being served: segments
    /// wholly at or below it are needed by nobody.
    pub fn min_position(&self) -> Option<u64> {
        self.registry()
            .cursors
            .values()
            .filter(|state| !state.fell_behind)
            .map(|state| state.position)
            .min()
    }

    /// Marks every cursor that needs a sequence before `oldest_kept`.
    pub fn mark_behind(&self, oldest_kept: u64) -> Vec<String> {
        let mut registry = self.registry();
        let mut marked = Vec::new();
        for (name, state) in registry.cursors.iter_mut() {
            if !state.fell_behind && state.position + 1 < oldest_kept {
                state.fell_behind = true;
                marked.push(name.clone());
            }
        }
        if !marked.is_empty() {
            registry.dirty = true;
        }
        marked
    }

    /// Writes the cursors durably if they changed since the last write.
    pub fn persist(&self) -> io::Result<()> {
        let _writing = self.writing.lock().expect("cursors file lock");
        let text = {
            let mut registry = self.registry();
            if !registry.dirty {
                return Ok(());
            }
            registry.dirty = false;
            let mut text = String::new();
            for (name, state) in &registry.cursors {
                text.push_str(&format!(
                    "{} {} {name}\n",
                    state.position,
                    u8::from(state.fell_behind)
                ));
            }
            text
        };
        let result = write_file_durably(&self.wal_dir, CURSORS_FILE, text.as_bytes());
        if result.is_err() {
            self.registry().dirty = true;
        }
        result
    }
}

/// What one retention pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Retained {
    /// Segments removed.
    pub removed: usize,
    /// Cursors newly marked as fallen behind.
    pub fell_behind: Vec<String>,
}

/// Removes the segments nothing needs: every entry applied to a durable
/// engine checkpoint (`durable_seq`) and consumed by every cursor; then, if
/// the log still holds more than `limit_bytes`, the oldest durable segments
/// whatever the cursors need, marking those cursors.
pub fn retain(
    segments: &Segments,
    cursors: &Cursors,
    durable_seq: u64,
    limit_bytes: u64,
) -> io::Result<Retained> {
    let through = durable_seq.min(cursors.min_position().unwrap_or(u64::MAX));
    let mut removed = segments.remove_through(through)?;
    let mut total = segments.disk_bytes();
    for (_first, last, size) in segments.closed() {
        if total <= limit_bytes || last > durable_seq {
            break;
        }
        removed += segments.remove_through(last)?;
        total = total.saturating_sub(size);
    }
    let fell_behind = match segments.oldest_seq() {
        Some(oldest) => cursors.mark_behind(oldest),
        None => Vec::new(),
    };
    for name in &fell_behind {
        tracing::warn!(cursor = %name, "a change-stream cursor fell behind log retention; its consumer needs a full resync");
    }
    Ok(Retained {
        removed,
        fell_behind,
    })
}
