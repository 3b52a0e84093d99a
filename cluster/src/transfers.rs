//! Durable progress of range transfers, so that a transfer interrupted by a
//! restart of either side resumes rather than starting over.
//!
//! One line per peer in `<data dir>/wal/transfers`: the placement the
//! transfer is for (a fingerprint of the routing and future rings), and
//! either `done` or the last key sent and acknowledged (hex). Written to a
//! temporary file, fsynced and renamed when a transfer is done, and while
//! one runs at most once per [`WRITE_INTERVAL`]: a restart resumes from the
//! last written key, so at most that much is sent again (and applied as
//! stale), and a transfer's batches do not each wait for an fsync on the
//! async runtime.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcstore_storage::datadir::write_file_durably;

/// Where a peer's transfer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferProgress {
    /// Everything the placement asks for was sent and acknowledged.
    Done,
    /// Sent and acknowledged up to this key (in key order).
    After(Bytes),
}

/// How often a running transfer's progress is written at most.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// The file in the log's directory that holds the progress.
const TRANSFERS_FILE: &str = "transfers";

/// Every peer's transfer progress, kept durably.
#[derive(Debug)]
pub struct Transfers {
    /// The log's directory, which holds the file.
    wal_dir: PathBuf,
    state: Mutex<BTreeMap<String, (u64, TransferProgress)>>,
    /// Held while the file is written (shippers of different peers share
    /// it), with the time of the last write.
    writing: Mutex<Option<Instant>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Transfers {
    /// Loads the progress kept in `wal_dir` (none if the file is missing;
    /// unreadable lines are skipped).
    pub fn load(wal_dir: &Path) -> io::Result<Transfers> {
        let path = wal_dir.join(TRANSFERS_FILE);
        let mut state = BTreeMap::new();
        match fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    let mut parts = line.splitn(3, ' ');
                    let parsed = (|| {
                        let placement = u64::from_str_radix(parts.next()?, 16).ok()?;
                        let progress = match parts.next()? {
                            "done" => TransferProgress::Done,
                            other => TransferProgress::After(Bytes::from(unhex(
                                other.strip_prefix("after:")?,
                            )?)),
                        };
                        Some((parts.next()?.to_string(), (placement, progress)))
                    })();
                    if let Some((peer, entry)) = parsed {
                        state.insert(peer, entry);
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        Ok(Transfers {
            wal_dir: wal_dir.to_path_buf(),
            state: Mutex::new(state),
            writing: Mutex::new(None),
        })
    }

    /// Where `peer`'s transfer for `placement` stands (`None`: not begun).
    pub fn get(&self, peer: &str, placement: u64) -> Option<TransferProgress> {
        self.state
            .lock()
            .expect("transfers lock")
            .get(peer)
            .filter(|(p, _)| *p == placement)
            .map(|(_, progress)| progress.clone())
    }

    /// The placement `peer`'s last finished transfer was for.
    pub fn done_placement(&self, peer: &str) -> Option<u64> {
        self.state
            .lock()
            .expect("transfers lock")
            .get(peer)
            .filter(|(_, progress)| *progress == TransferProgress::Done)
            .map(|(placement, _)| *placement)
    }

    /// Records `peer`'s progress: durably when it is done, and otherwise
    /// if the last write is [`WRITE_INTERVAL`] old.
    pub fn set(&self, peer: &str, placement: u64, progress: TransferProgress) -> io::Result<()> {
        let done = progress == TransferProgress::Done;
        self.state
            .lock()
            .expect("transfers lock")
            .insert(peer.to_string(), (placement, progress));
        let mut last_write = self.writing.lock().expect("transfers file lock");
        if !done && last_write.is_some_and(|at| at.elapsed() < WRITE_INTERVAL) {
            return Ok(());
        }
        // The text is taken under the file lock, so a newer one always
        // lands last.
        let text: String = self
            .state
            .lock()
            .expect("transfers lock")
            .iter()
            .map(|(peer, (placement, progress))| {
                let progress = match progress {
                    TransferProgress::Done => "done".to_string(),
                    TransferProgress::After(key) => format!("after:{}", hex(key)),
                };
                format!("{placement:016x} {progress} {peer}\n")
            })
            .collect();
        write_file_durably(&self.wal_dir, TRANSFERS_FILE, text.as_bytes())?;
        *last_write = Some(Instant::now());
        Ok(())
    }

    /// Forgets `peer` (it left the ring).
    pub fn forget(&self, peer: &str) {
        self.state.lock().expect("transfers lock").remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let transfers = Transfers::load(dir.path()).unwrap();
        assert_eq!(transfers.get("a:1", 7), None);
        transfers
            .set(
                "a:1",
                7,
                TransferProgress::After(Bytes::from_static(b"k\x00\xff")),
            )
            .unwrap();
        transfers.set("b:2", 9, TransferProgress::Done).unwrap();
        let reloaded = Transfers::load(dir.path()).unwrap();
        assert_eq!(
            reloaded.get("a:1", 7),
            Some(TransferProgress::After(Bytes::from_static(b"k\x00\xff")))
        );
        assert_eq!(
            reloaded.get("a:1", 8),
            None,
            "another placement starts over"
        );
        assert_eq!(reloaded.done_placement("b:2"), Some(9));
        assert_eq!(reloaded.done_placement("a:1"), None);
    }

    #[test]
    fn a_running_transfer_is_written_once_per_interval_and_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let transfers = Transfers::load(dir.path()).unwrap();
        let after = |key: &'static [u8]| TransferProgress::After(Bytes::from_static(key));
        transfers.set("a:1", 7, after(b"k1")).unwrap();
        transfers.set("a:1", 7, after(b"k2")).unwrap();
        assert_eq!(
            transfers.get("a:1", 7),
            Some(after(b"k2")),
            "kept in memory"
        );
        let reloaded = Transfers::load(dir.path()).unwrap();
        assert_eq!(
            reloaded.get("a:1", 7),
            Some(after(b"k1")),
            "not written yet"
        );
        transfers.set("b:2", 7, TransferProgress::Done).unwrap();
        let reloaded = Transfers::load(dir.path()).unwrap();
        assert_eq!(reloaded.get("a:1", 7), Some(after(b"k2")));
        assert_eq!(reloaded.done_placement("b:2"), Some(7));
    }
}
