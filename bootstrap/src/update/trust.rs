//! Whether a fetched `update.toml` is used, and which of its releases this
//! install is offered.

use payload_tools::manifest::{Release, UpdateManifest};

use super::check::Answer;
use super::{RunningBuild, UpdateError};

/// Parses the manifest the host served.
pub fn accept(_build: &RunningBuild, answer: &Answer) -> Result<UpdateManifest, UpdateError> {
    UpdateManifest::parse(&answer.text).map_err(|reason| UpdateError::Manifest {
        url: answer.url.clone(),
        reason,
    })
}

/// The release this install is offered.
pub fn choose(_build: &RunningBuild, manifest: &UpdateManifest) -> Release {
    manifest.offered()
}
