//! What can stop a launch, with the exit code and the hint the user sees
//! for each. `main` is the only place that prints these.

use std::io;
use std::path::PathBuf;

/// Exit codes of the launcher's own failures (the app's own exit codes pass
/// through unchanged). Documented in `docs/launcher.md`.
pub mod exit_code {
    /// The file carries no payload: a bare stub, or a truncated download.
    pub const NO_PAYLOAD: u8 = 121;
    /// The file is damaged: a checksum or a length does not match.
    pub const DAMAGED: u8 = 122;
    /// The cache cannot be used: not creatable, not writable, unsafe.
    pub const CACHE: u8 = 123;
    /// The disk (or a quota, or a file-size limit) filled up while unpacking.
    pub const DISK_FULL: u8 = 124;
    /// Any other failure of the launcher itself.
    pub const INTERNAL: u8 = 125;
    /// The entry exists but cannot be executed.
    pub const CANNOT_EXECUTE: u8 = 126;
    /// The entry does not exist in the unpacked app.
    pub const ENTRY_MISSING: u8 = 127;
}

/// A failure of the launcher itself.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot find its own executable: {0}")]
    SelfPath(#[source] io::Error),

    #[error("'{0}' carries no app: it is a bare stub, or the download was cut short")]
    NoPayload(PathBuf),

    #[error(transparent)]
    Format(payload_tools::Error),

    #[error("no usable cache folder: {0}")]
    NoCacheRoot(&'static str),

    #[error("cannot use the cache folder '{path}': {reason}")]
    Cache { path: PathBuf, reason: String },

    /// Another user could change the cache, or a folder above it.
    #[error("cannot use the cache folder '{path}': {reason}")]
    UnsafeCache { path: PathBuf, reason: String },

    #[error("the disk is full while unpacking into '{path}' (the app needs {needed} bytes)")]
    DiskFull { path: PathBuf, needed: u64 },

    #[error("cannot unpack into '{path}': {source}")]
    Unpack {
        path: PathBuf,
        #[source]
        source: payload_tools::Error,
    },

    #[error("the app's program '{0}' is missing from the payload")]
    EntryMissing(PathBuf),

    #[error("cannot run '{path}': {source}")]
    CannotExecute {
        path: PathBuf,
        #[source]
        source: io::Error,
        noexec_mount: bool,
    },

    #[error("cannot wait for the app: {0}")]
    Wait(#[source] io::Error),

    #[error("cannot start the app again after its restart request: {0}")]
    Restart(#[source] io::Error),
}

impl LaunchError {
    pub fn exit_code(&self) -> u8 {
        use exit_code::*;
        match self {
            LaunchError::NoPayload(_) => NO_PAYLOAD,
            // Found by the payload check before anything runs; the codes a
            // shell would give for a missing or unusable program.
            LaunchError::Format(payload_tools::Error::Entry { problem, .. }) => match problem {
                payload_tools::EntryProblem::Missing => ENTRY_MISSING,
                _ => CANNOT_EXECUTE,
            },
            LaunchError::Format(_) => DAMAGED,
            LaunchError::NoCacheRoot(_)
            | LaunchError::Cache { .. }
            | LaunchError::UnsafeCache { .. } => CACHE,
            LaunchError::DiskFull { .. } => DISK_FULL,
            LaunchError::Unpack { source, .. } => match source {
                payload_tools::Error::Io { .. } => CACHE,
                _ => DAMAGED,
            },
            LaunchError::EntryMissing(_) => ENTRY_MISSING,
            LaunchError::CannotExecute { .. } => CANNOT_EXECUTE,
            LaunchError::SelfPath(_) | LaunchError::Wait(_) | LaunchError::Restart(_) => INTERNAL,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        let set_cache = "set ONEFILE_CACHE_DIR to a writable folder on a local disk";
        Some(match self {
            LaunchError::NoPayload(_) | LaunchError::Format(_) | LaunchError::EntryMissing(_) => {
                "download the app again".into()
            }
            LaunchError::Unpack {
                source: payload_tools::Error::Io { .. },
                ..
            } => set_cache.into(),
            LaunchError::Unpack { .. } => "the file is damaged: download the app again".into(),
            LaunchError::NoCacheRoot(_) | LaunchError::Cache { .. } => set_cache.into(),
            LaunchError::UnsafeCache { .. } => crate::sys::UNSAFE_CACHE_HINT.into(),
            LaunchError::DiskFull { .. } => {
                format!("free some disk space, or {set_cache}")
            }
            LaunchError::CannotExecute {
                noexec_mount: true, ..
            } => format!("the cache is on a filesystem mounted 'noexec': {set_cache} elsewhere"),
            _ => return None,
        })
    }
}

impl From<payload_tools::Error> for LaunchError {
    fn from(err: payload_tools::Error) -> Self {
        LaunchError::Format(err)
    }
}
