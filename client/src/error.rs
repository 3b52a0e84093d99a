//! The client's errors: one enum, one variant per way a request can end
//! other than as asked, and the [`Result`] alias.

use std::io;

use thiserror::Error;

/// Why a request did not do what it asked.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The key holds no item (`NOT_FOUND`, `NF`): `delete`, `incr`,
    /// `decr`, `touch`, `cas` of a missing key.
    #[error("not found")]
    NotFound,
    /// A compare-and-swap lost: the item changed since its cas was read
    /// (`EXISTS`, `EX`).
    #[error("exists: the item's cas unique changed")]
    Exists,
    /// The condition of `add`, `replace`, `append` or `prepend` failed
    /// (`NOT_STORED`, `NS`).
    #[error("not stored")]
    NotStored,
    /// The server could not carry out a valid request (`SERVER_ERROR
    /// <message>`), or answered something this client does not expect.
    #[error("server error: {0}")]
    Server(String),
    /// The request was refused as malformed (`CLIENT_ERROR <message>`,
    /// `ERROR`), or the client refused to send it (a key the text protocol
    /// cannot carry, a value over the size limit).
    #[error("client error: {0}")]
    Client(String),
    /// The connection failed.
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        /// The server's address.
        addr: String,
        /// What failed.
        #[source]
        source: io::Error,
        /// The request had not been written when it failed, so it was not
        /// executed and may safely be sent elsewhere.
        unsent: bool,
    },
    /// No reply within the request timeout.
    #[error("timed out after {timeout_ms} ms waiting for {addr}")]
    Timeout {
        /// The server's address.
        addr: String,
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// No server can take the request: none is configured, every replica
    /// of the key is down, or no seed answered.
    #[error("no node available: {0}")]
    NoNodeAvailable(String),
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the server could not be reached or did not answer (worth
    /// trying another replica).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Timeout { .. } | Error::NoNodeAvailable(_)
        )
    }

    /// Whether the request certainly was not executed (so even a request
    /// that is not idempotent may be sent to another replica).
    pub(crate) fn was_unsent(&self) -> bool {
        matches!(self, Error::Io { unsent: true, .. })
    }

    pub(crate) fn io(addr: &str, source: io::Error, unsent: bool) -> Error {
        Error::Io {
            addr: addr.to_owned(),
            source,
            unsent,
        }
    }
}
