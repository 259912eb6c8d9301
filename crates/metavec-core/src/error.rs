//! The one error type of the engine, grouped by what the caller does next.

use std::path::PathBuf;

/// Result alias used throughout metavec-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure metavec-core reports. The gRPC layer maps each variant to one status code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed; the message names the field and the bad value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A collection (or another named object) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The object to create exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request is well formed but the current state refuses it.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A size or count limit was hit (also: disk full).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// Bytes on disk are not what was written: checksum, magic, version or structure mismatch.
    #[error("corruption in {path} at offset {offset}: {message}")]
    Corruption {
        path: PathBuf,
        offset: u64,
        message: String,
    },
    /// An operating-system I/O error, with the path it concerns.
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A durable write failed earlier (fsync); the collection refuses writes until it is reopened.
    #[error("writer poisoned: {0}")]
    Poisoned(String),
    /// The catalogue store (sled) failed.
    #[error("catalogue error: {0}")]
    Catalog(String),
}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        msg: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            message: msg.into(),
        }
    }

    /// Wraps an io error with its path; ENOSPC becomes `ResourceExhausted` so callers can back off.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(28) {
            return Error::ResourceExhausted(format!(
                "disk full writing {}: {source}",
                path.display()
            ));
        }
        Error::Io { path, source }
    }
}

/// Attaches a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
