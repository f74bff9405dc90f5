//! The one error type of the library. Every variant names the file, the
//! offset or the value involved, so a caller can print it as one line that
//! says what went wrong without adding context of its own.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading, writing, packing or
/// unpacking a packed executable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call on a file failed.
    #[error("{action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file is shorter than its trailer says, or a length field points
    /// outside the file.
    #[error("'{path}' is truncated or damaged: {what}")]
    Truncated { path: PathBuf, what: String },

    /// A checksum does not match the bytes it covers.
    #[error("bad CRC-32 of {part} in '{path}' (expected {expected:08x}, got {actual:08x})")]
    Checksum {
        path: PathBuf,
        part: &'static str,
        expected: u32,
        actual: u32,
    },

    /// A well-formed trailer or metadata of a format version this build
    /// does not know.
    #[error(
        "'{path}' uses packed-file format version {found}, this build reads only version {supported}"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The metadata asks for a feature this build does not implement, and
    /// ignoring it would be unsafe.
    #[error("'{path}' needs the format feature '{feature}', which this build does not have")]
    UnsupportedFeature { path: PathBuf, feature: String },

    /// The metadata block is not valid TOML of the expected shape, or its
    /// values break a rule of the format.
    #[error("bad metadata in '{path}': {reason}")]
    Metadata { path: PathBuf, reason: String },

    /// The compressed payload does not decode, or decodes to something that
    /// is not the tar stream the metadata describes.
    #[error("bad payload in '{path}': {reason}")]
    Payload { path: PathBuf, reason: String },

    /// A payload entry that extraction refuses (absolute path, `..`,
    /// escaping symlink, device node, ...).
    #[error("unsafe entry '{entry}' in '{path}': {reason}")]
    UnsafeEntry {
        path: PathBuf,
        entry: String,
        reason: String,
    },

    /// The metadata's `entry` is not a regular executable file of the
    /// payload, so the app could never start.
    #[error("the app's program '{entry}' in '{path}' {problem}")]
    Entry {
        path: PathBuf,
        entry: String,
        problem: EntryProblem,
    },

    /// An input tree that `pack` refuses.
    #[error("cannot pack '{path}': {reason}")]
    Input { path: PathBuf, reason: String },

    /// A folder others can write, where something private was to be
    /// written (a secret key).
    #[error("'{path}' is not a private folder: {reason}")]
    NotPrivate { path: PathBuf, reason: String },

    /// A name, version or entry given to `pack` that breaks a rule.
    #[error("invalid {what} '{value}': {reason}")]
    InvalidValue {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Why the metadata's `entry` cannot be run. Launchers tell a missing
/// program (exit 127) from one that cannot be executed (exit 126).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("is missing from the payload")]
    Missing,
    #[error("is a folder, not a file")]
    Folder,
    #[error("has no execute permission")]
    NotExecutable,
    #[error("goes through more than 40 symlinks")]
    TooManyLinks,
}

impl Error {
    /// Wraps an IO error with what was being done to which file.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// The IO error underneath, if this is one; callers use it to tell a
    /// full disk or a read-only folder from other failures.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// The raw OS error number underneath, if any (`ENOSPC`, `EROFS`, ...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
