//! The library's one error type.
//!
//! Rules, as in the rest of the crate:
//! - every fallible `pub fn` returns [`crate::Result`];
//! - an [`Error`] carries a [`ErrorKind`] a caller can match on, a message that says what the
//!   user can do (lowercase, no trailing period), the path, URL or id it concerns, and the source;
//! - `anyhow` is for binaries only.

use std::fmt;
use std::path::Path;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file, backup, resource or tool does not exist.
    NotFound,
    /// Something with that name exists already.
    AlreadyExists,
    /// The OS or a store refused access.
    PermissionDenied,
    /// A server or store could not be reached.
    Connect,
    /// A parameter, config option or argument is not acceptable.
    InvalidInput,
    /// Data does not match its checksum, or an archive is damaged or hostile.
    Integrity,
    /// An external command or data source failed.
    SourceFailed,
    /// Another operation holds the lock.
    Busy,
    /// Anything else.
    Other,
}

/// The library's error: a kind, a message, what it concerns, and the underlying cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: None,
            source: None,
        }
    }

    /// An [`ErrorKind::InvalidInput`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// An error for an I/O failure on `path`, its kind taken from the I/O error.
    pub fn io(message: impl Into<String>, path: &Path, source: std::io::Error) -> Self {
        let kind = match source.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::ConnectionRefused => ErrorKind::Connect,
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => ErrorKind::Other,
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                ErrorKind::Integrity
            }
            _ => ErrorKind::Other,
        };
        Error::new(kind, message)
            .with_path(path)
            .with_source(source)
    }

    /// Names the path this error concerns.
    pub fn with_path(mut self, path: &Path) -> Self {
        self.context = Some(path.display().to_string());
        self
    }

    /// Names the URL, id or other thing this error concerns.
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The path, URL or id this error concerns, if any.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(c) => write!(f, "{}: {}", self.message, c),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Joins an error and all its sources into one line: `a: b: c`, skipping a source whose text
/// the previous message already ends with.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// Shorthand used across the crate for "this path" errors.
pub(crate) trait IoContext<T> {
    /// Maps an I/O error to [`Error`] with a message and the path.
    fn at(self, message: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, message: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(message, path, e))
    }
}
