//! The data directory: its lock (one node per directory), the node's id and
//! the engine it was made with.
//!
//! Layout: `LOCK` (held with `flock` while the node runs), `NODE_ID` (16 hex
//! digits, made once), `ENGINE` (`sled` or `fjall`, written once, before the
//! engine's first file), `sled/` or `fjall/` (the engine), `wal/` (the log
//! segments and the change-stream cursors).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::config::EngineKind;
use crate::error::StoreError;
use crate::version::NodeId;

/// Holds `<data dir>/LOCK` with an exclusive `flock` while the node runs;
/// the kernel releases it when the process exits, however it exits.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

fn io_error(data_dir: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    }
}

impl DataDirLock {
    /// Creates the directory if needed and takes its lock, or fails at once
    /// if another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, StoreError> {
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(StoreError::NotADirectory(data_dir.to_path_buf()));
        }
        fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
        let path = data_dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(data_dir))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(StoreError::Locked(data_dir.to_path_buf()));
            }
            return Err(io_error(data_dir)(err));
        }
        Ok(DataDirLock { _file: file })
    }
}

/// The node's id: read from `<data dir>/NODE_ID`, or made (random, never 0)
/// and written durably (file and directory fsynced) on first start.
pub fn node_id(data_dir: &Path) -> Result<NodeId, StoreError> {
    let path = data_dir.join("NODE_ID");
    match fs::read_to_string(&path) {
        Ok(text) => u64::from_str_radix(text.trim(), 16)
            .ok()
            .filter(|&id| id != 0)
            .map(NodeId)
            .ok_or(StoreError::CorruptNodeId(path)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let id = random_nonzero_u64().map_err(io_error(data_dir))?;
            write_file_durably(data_dir, "NODE_ID", format!("{id:016x}\n").as_bytes())
                .map_err(io_error(data_dir))?;
            Ok(NodeId(id))
        }
        Err(err) => Err(io_error(data_dir)(err)),
    }
}

/// Checks that the data directory was made with `requested`, or records
/// that it is being made with it. `<data dir>/ENGINE` names the engine; a
/// directory of an earlier release has none, and its engine is the
/// subdirectory it holds (`sled/`). A directory holding neither is new:
/// `ENGINE` is written durably before the engine creates anything.
pub fn check_engine(data_dir: &Path, requested: EngineKind) -> Result<(), StoreError> {
    let path = data_dir.join("ENGINE");
    let found = match fs::read_to_string(&path) {
        Ok(text) => Some(
            text.trim()
                .parse::<EngineKind>()
                .map_err(|_| StoreError::CorruptEngineMarker(path.clone()))?,
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => EngineKind::ALL
            .into_iter()
            .find(|kind| data_dir.join(kind.name()).exists()),
        Err(err) => return Err(io_error(data_dir)(err)),
    };
    match found {
        Some(found) if found != requested => Err(StoreError::EngineMismatch {
            path: data_dir.to_path_buf(),
            found,
            requested,
        }),
        Some(_) if path.exists() => Ok(()),
        _ => write_file_durably(data_dir, "ENGINE", format!("{requested}\n").as_bytes())
            .map_err(io_error(data_dir)),
    }
}

/// Replaces `dir/name` with `contents` durably: a temporary file is written
/// and fsynced, renamed over the old one, and the directory fsynced. A crash
/// leaves the old file or the new one, never a torn one. Callers that write
/// one name from several threads serialize the calls.
pub fn write_file_durably(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Removes `dir/name` durably (the directory is fsynced); a file that is
/// not there is not an error.
pub fn remove_file_durably(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => File::open(dir)?.sync_all(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

fn random_nonzero_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    loop {
        File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let id = u64::from_le_bytes(bytes);
        if id != 0 {
            return Ok(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_id(dir.path()).unwrap();
        assert_ne!(first, NodeId(0));
        assert_eq!(node_id(dir.path()).unwrap(), first);
        fs::write(dir.path().join("NODE_ID"), "not hex\n").unwrap();
        assert!(matches!(
            node_id(dir.path()),
            Err(StoreError::CorruptNodeId(_))
        ));
    }

    #[test]
    fn a_directory_remembers_its_engine() {
        let dir = tempfile::tempdir().unwrap();
        check_engine(dir.path(), EngineKind::Fjall).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("ENGINE")).unwrap(),
            "fjall\n"
        );
        check_engine(dir.path(), EngineKind::Fjall).unwrap();
        let err = check_engine(dir.path(), EngineKind::Sled).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::EngineMismatch {
                    found: EngineKind::Fjall,
                    requested: EngineKind::Sled,
                    ..
                }
            ),
            "{err}"
        );
        fs::write(dir.path().join("ENGINE"), "rocksdb\n").unwrap();
        assert!(matches!(
            check_engine(dir.path(), EngineKind::Fjall),
            Err(StoreError::CorruptEngineMarker(_))
        ));
    }

    #[test]
    fn a_directory_of_an_earlier_release_is_a_sled_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sled")).unwrap();
        assert!(matches!(
            check_engine(dir.path(), EngineKind::Fjall),
            Err(StoreError::EngineMismatch {
                found: EngineKind::Sled,
                ..
            })
        ));
        assert!(!dir.path().join("ENGINE").exists());
        check_engine(dir.path(), EngineKind::Sled).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("ENGINE")).unwrap(),
            "sled\n"
        );
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("afile");
        fs::write(&file, "x").unwrap();
        let err = DataDirLock::acquire(&file).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "data directory {} exists and is not a directory",
                file.display()
            )
        );
    }
}
