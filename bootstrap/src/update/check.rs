//! Asking the host for `update.toml`: which URL, and whether to ask at all.
//!
//! The info URL is the build's update URL spec, expanded for this build.

use payload_tools::manifest::expand_url_spec;
use ureq::Agent;

use super::{RunningBuild, UpdateError, http};
use crate::trace::{UPDATE, info};

/// The manifest's text as the host served it, and the URL it came from.
#[derive(Debug)]
pub struct Answer {
    pub url: String,
    pub text: String,
}

/// Fetches the manifest; `None` when there is nothing to look at.
pub fn fetch(
    build: &RunningBuild,
    agent: &Agent,
    policy: http::Policy,
) -> Result<Option<Answer>, UpdateError> {
    let url = expand_url_spec(&build.settings.url_spec, &build.name, &build.version);
    info!(target: UPDATE, "Expanded info URL to '{url}'.");
    let text = http::fetch_manifest(agent, &url, policy)?;
    Ok(Some(Answer { url, text }))
}
