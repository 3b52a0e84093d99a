//! The storage layer's errors, one enum per kind of failure, no strings.
//!
//! Every error displays as the text a client sees after `SERVER_ERROR `
//! (the server renders them), so messages are short and say what failed.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::config::EngineKind;
use crate::engine::EngineError;
use crate::record::CorruptRecord;
use crate::version::ClockSkew;
use crate::wal::WalError;

/// Why a store could not be opened or closed cleanly.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another mcstore (its LOCK file is held)")]
    Locked(PathBuf),
    /// The data directory path exists but is not a directory.
    #[error("data directory {0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// An I/O error on the data directory.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The node id file is unreadable.
    #[error("node id file {0} is corrupt (expected 16 hex digits)")]
    CorruptNodeId(PathBuf),
    /// The data directory was made with another engine.
    #[error("data directory {path} was made with the {found} engine, not {requested}: open it with engine {found}, or use another data directory")]
    EngineMismatch {
        /// The data directory.
        path: PathBuf,
        /// The engine it was made with.
        found: EngineKind,
        /// The engine it was opened with.
        requested: EngineKind,
    },
    /// The file naming the data directory's engine is unreadable.
    #[error("engine file {0} is corrupt (expected sled or fjall)")]
    CorruptEngineMarker(PathBuf),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A background thread could not be started.
    #[error("starting the {thread} thread: {source}")]
    Thread {
        /// Which thread.
        thread: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// Why a read failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The stored record failed its checksum (it is counted and logged).
    #[error("stored item is corrupt ({0})")]
    Corrupt(#[from] CorruptRecord),
    /// The engine failed.
    #[error("engine read failed ({0})")]
    Engine(#[from] EngineError),
}

/// Why a write was not done. Cloneable: one failure answers a whole batch.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The operation needs the old item, and its stored bytes are corrupt.
    #[error("stored item is corrupt ({0})")]
    Corrupt(CorruptRecord),
    /// Reading the old item failed.
    #[error("engine read failed: {0}")]
    EngineRead(Arc<EngineError>),
    /// Appending to the write-ahead log failed.
    #[error("write-ahead log append failed: {0}")]
    LogAppend(Arc<WalError>),
    /// `fdatasync` of the write-ahead log failed.
    #[error("write-ahead log sync failed: {0}")]
    LogSync(Arc<WalError>),
    /// Applying a durable batch to the engine failed.
    #[error("engine write failed: {0}")]
    EngineWrite(Arc<EngineError>),
    /// An earlier failure stopped the commit pipeline until restart.
    #[error("{0}; writes are refused until the node restarts")]
    Refusing(Box<WriteError>),
    /// A record from another node carries a timestamp too far ahead.
    #[error("{0}")]
    ClockSkew(ClockSkew),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Two write errors are equal when they say the same thing (the I/O errors
/// inside have no equality of their own); this lets outcomes be compared.
impl PartialEq for WriteError {
    fn eq(&self, other: &WriteError) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for WriteError {}
