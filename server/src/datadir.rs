//! The data directory lock: one node per directory.

use std::fs::{self, File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::store::StoreError;

/// Holds `<data dir>/LOCK` with an exclusive `flock` while the node runs;
/// the kernel releases it when the process exits, however it exits.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates the directory if needed and takes its lock, or fails at once
    /// if another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, StoreError> {
        let io_error = |source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(io_error)?;
        let path = data_dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(StoreError::Locked(data_dir.to_path_buf()));
            }
            return Err(io_error(err));
        }
        Ok(DataDirLock { _file: file })
    }
}
