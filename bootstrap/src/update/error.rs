//! Why an update did not happen. The sidecar only ever traces these: a
//! failed update is never the app's problem.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("Cannot fetch '{url}': {reason}.")]
    Transport { url: String, reason: String },

    #[error("Refusing '{url}': {reason}.")]
    Insecure { url: String, reason: &'static str },

    #[error(
        "Download of '{url}' is not signed; this build installs only signed updates; discarded."
    )]
    Unsigned { url: String },

    #[error("Download of '{url}' has a bad signature ({reason}); discarded.")]
    BadSignature { url: String, reason: String },

    #[error(
        "Download of '{url}' is version '{found}', not newer than the running '{running}'; discarded."
    )]
    NotNewer {
        url: String,
        found: String,
        running: String,
    },

    #[error("Cannot fetch '{url}': HTTP status {status}.")]
    Status { url: String, status: u16 },

    #[error("Bad update info from '{url}': {reason}.")]
    Manifest { url: String, reason: String },

    #[error("Not using the update info from '{url}': {reason}.")]
    Untrusted {
        url: String,
        reason: String,
        /// Which kind of refusal, for a report.
        class: super::report::Reason,
    },

    #[error("Download of '{url}' failed: {reason}.")]
    Download { url: String, reason: String },

    #[error("Download of '{url}' is {actual} bytes, {expected} expected; discarded.")]
    Size {
        url: String,
        expected: u64,
        actual: u64,
    },

    #[error("CRC32 of '{url}' is {actual}, update info says {expected}; discarded.")]
    Crc {
        url: String,
        expected: u32,
        actual: u32,
    },

    #[error("Download of '{url}' is not a valid packed executable ({reason}); discarded.")]
    NotPacked { url: String, reason: String },

    #[error("Download of '{url}' is a build of '{found}', not of '{expected}'; discarded.")]
    OtherApp {
        url: String,
        found: String,
        expected: String,
    },

    #[error("Download of '{url}' is a build for {found}, not for {expected}; discarded.")]
    OtherPlatform {
        url: String,
        found: String,
        expected: String,
    },

    #[error("'{url}' serves the same build that failed verification on another mirror; skipped.")]
    SameWrongBuild { url: String },

    /// Refused, and held back for `wait` seconds (as one that failed
    /// verification on every mirror).
    #[error(
        "The new build failed its self-test: {reason}; discarded, and not downloaded again for {wait} s."
    )]
    SelfTest { reason: String, wait: u64 },

    #[error(
        "The new build's self-test could not run now: {reason}; the verified download is kept for the next launch."
    )]
    SelfTestPostponed { reason: String },

    #[error("Another instance is updating; skipping.")]
    Busy,

    #[error("The executable was already replaced by another instance; skipping.")]
    AlreadyReplaced,

    #[error("Cannot replace '{exe}': {reason}; skipping.")]
    NotReplaceable { exe: PathBuf, reason: String },

    #[error("Cannot replace '{exe}': {source}; the old executable is kept.")]
    Replace {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("Cannot {action} '{path}': {source}; not updating.")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The install's own record (`install_record`) cannot be used: a
    /// problem of this machine, not of any server (no other location is
    /// tried, no backoff).
    #[error("Cannot {action} '{path}': {source}; not checking for updates.")]
    Local {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{0}; not updating.")]
    Format(#[source] payload_tools::Error),
}

impl UpdateError {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> UpdateError {
        let path = path.into();
        move |source| UpdateError::Io {
            action,
            path,
            source,
        }
    }
}
