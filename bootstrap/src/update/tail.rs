//! The end of a build, fetched before the build itself: one `Range` request
//! for its last bytes, which hold the trailer and the metadata. With them
//! the updater refuses a build of another app or an older version without
//! downloading it, and checks the payload while it downloads instead of
//! after.
//!
//! Everything here is an optimisation: a server without range support, an
//! answer that does not parse, or any failure only means the build is
//! downloaded and then checked as a whole. Nothing learnt from the tail is
//! trusted for the install: the checks of the finished download decide.

use std::io::Read;
use std::time::Duration;

use payload_tools::packed::PackedFile;
use payload_tools::{Metadata, Trailer};
use ureq::Agent;

use super::http;

/// Bytes asked for: the trailer and metadata of real builds (a few KiB;
/// the frame index has one line per 8 MiB of payload) with room to spare.
const TAIL_LEN: u64 = 64 * 1024;
/// The tail is small: a server that takes longer is left alone.
const TAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// The trailer and metadata of the build at some URL, and its length.
#[derive(Debug)]
pub struct Layout {
    pub file_len: u64,
    pub trailer: Trailer,
    pub metadata: Metadata,
}

/// Fetches and parses the end of the build at `url`. `None` when the server
/// does not answer with the range asked for, or what it sends is not the
/// end of a packed file of `expected_len` bytes (when known).
pub fn fetch(
    agent: &Agent,
    url: &str,
    policy: http::Policy,
    expected_len: Option<u64>,
) -> Option<Layout> {
    let range = format!("bytes=-{TAIL_LEN}");
    let (mut response, _) =
        http::get(agent, url, policy, &[("Range", &range)], Some(TAIL_TIMEOUT)).ok()?;
    if response.status().as_u16() != 206 {
        // Most likely the whole file follows: dropping the response closes
        // the connection without reading it.
        return None;
    }
    let (start, end, Some(file_len)) = http::content_range(&response)? else {
        return None;
    };
    if end.checked_add(1) != Some(file_len) || expected_len.is_some_and(|len| len != file_len) {
        return None;
    }
    let mut tail = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(TAIL_LEN + 1)
        .read_to_end(&mut tail)
        .ok()?;
    if tail.len() as u64 != file_len - start {
        return None;
    }
    let (trailer, metadata) =
        PackedFile::read_tail(std::path::Path::new(url), file_len, &tail).ok()??;
    Some(Layout {
        file_len,
        trailer,
        metadata,
    })
}
