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
use std::path::Path;
use std::time::Duration;

use payload_tools::delta::END_REQUEST_LEN;
use payload_tools::packed::PackedFile;
use payload_tools::trailer::TRAILER_LEN;
use payload_tools::{Metadata, Trailer};
use ureq::Agent;

use super::{UpdateError, http, verify};

/// The tail is small: a server that takes longer is left alone.
const TAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// The trailer and metadata of the build at some URL, and its length.
#[derive(Debug)]
pub struct Layout {
    pub file_len: u64,
    pub trailer: Trailer,
    pub metadata: Metadata,
    /// The file's bytes from `trailer.metadata_offset` to its end: an
    /// incremental update writes them instead of fetching them again.
    pub tail: Vec<u8>,
    /// The server's validator of the file (a strong ETag, else
    /// Last-Modified): later range requests are made `If-Range` it, so
    /// that pieces of two different files are never mixed.
    pub validator: Option<String>,
}

/// Fetches and parses the end of the build at `url`. `None` when the server
/// does not answer with the range asked for, or what it sends is not the
/// end of a packed file of `expected_len` bytes (when known); an error when
/// the network failed (no connection, a timeout, a transfer cut short):
/// another mirror may do better than a whole download from this one.
pub fn fetch(
    agent: &Agent,
    url: &str,
    policy: http::Policy,
    expected_len: Option<u64>,
) -> Result<Option<Layout>, UpdateError> {
    let Some((file_len, tail, validator)) =
        fetch_range(agent, url, policy, END_REQUEST_LEN, expected_len)?
    else {
        return Ok(None);
    };
    if expected_len.is_some_and(|len| len != file_len) {
        return Ok(None);
    }
    let Some(trailer) = read_trailer(&tail, file_len, url) else {
        return Ok(None);
    };
    // Metadata larger than the first request (the trailer bounds it): one
    // more request for exactly the rest, from the same file.
    let wanted = file_len - trailer.metadata_offset;
    let tail = if wanted > tail.len() as u64 {
        match fetch_range(agent, url, policy, wanted, Some(file_len))? {
            Some((len, rest, again))
                if len == file_len && again == validator && validator.is_some() =>
            {
                rest
            }
            _ => return Ok(None),
        }
    } else {
        tail
    };
    Ok(layout_of(file_len, tail, validator, url))
}

fn read_trailer(tail: &[u8], file_len: u64, url: &str) -> Option<Trailer> {
    let block =
        <&[u8; TRAILER_LEN]>::try_from(tail.get(tail.len().checked_sub(TRAILER_LEN)?..)?).ok()?;
    Trailer::from_end_of(block, file_len, Path::new(url)).ok()?
}

fn layout_of(
    file_len: u64,
    mut tail: Vec<u8>,
    validator: Option<String>,
    url: &str,
) -> Option<Layout> {
    let (trailer, metadata) = PackedFile::read_tail(Path::new(url), file_len, &tail).ok()??;
    // The frame index must cover the payload exactly, as in every packed
    // file: everything planned from it (`super::incremental`) then lies
    // inside the file, in order.
    if metadata.frames_compressed_len() != trailer.payload_len {
        return None;
    }
    let keep_from = tail.len() - usize::try_from(file_len - trailer.metadata_offset).ok()?;
    tail.drain(..keep_from);
    Some(Layout {
        file_len,
        trailer,
        metadata,
        tail,
        validator,
    })
}

/// The first [`verify::STUB_HEADER_LEN`] bytes of the build `layout`
/// describes (its stub's headers, which name its platform), from the same
/// file when the server gave a validator. `None` on any failure.
pub fn fetch_start(
    agent: &Agent,
    url: &str,
    policy: http::Policy,
    layout: &Layout,
) -> Option<Vec<u8>> {
    let range = format!("bytes=0-{}", verify::STUB_HEADER_LEN - 1);
    let mut headers = vec![("Range", range.as_str())];
    if let Some(validator) = &layout.validator {
        headers.push(("If-Range", validator));
    }
    let (mut response, _) = http::get(agent, url, policy, &headers, Some(TAIL_TIMEOUT)).ok()?;
    if response.status().as_u16() != 206 {
        return None;
    }
    let mut start = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(verify::STUB_HEADER_LEN)
        .read_to_end(&mut start)
        .ok()?;
    Some(start)
}

/// The length of a file, its last bytes, and its validator.
type End = (u64, Vec<u8>, Option<String>);

/// The last `len` bytes of the file at `url`, its length and validator;
/// `None` for an answer that is not that range, an error for a network
/// failure.
fn fetch_range(
    agent: &Agent,
    url: &str,
    policy: http::Policy,
    len: u64,
    expected_len: Option<u64>,
) -> Result<Option<End>, UpdateError> {
    let range = format!("bytes=-{len}");
    let (mut response, _) =
        http::get(agent, url, policy, &[("Range", &range)], Some(TAIL_TIMEOUT))?;
    let status = response.status().as_u16();
    if status >= 400 {
        return Err(UpdateError::Status {
            url: url.to_owned(),
            status,
        });
    }
    if status != 206 {
        // Most likely the whole file follows: dropping the response closes
        // the connection without reading it.
        return Ok(None);
    }
    let Some((start, end, Some(file_len))) = http::content_range(&response) else {
        return Ok(None);
    };
    if end.checked_add(1) != Some(file_len) || expected_len.is_some_and(|l| l != file_len) {
        return Ok(None);
    }
    let validator = http::validator(&response);
    let mut tail = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(len + 1)
        .read_to_end(&mut tail)
        .map_err(|e| UpdateError::Download {
            url: url.to_owned(),
            reason: format!("the end of the build: {e}"),
        })?;
    if tail.len() as u64 != file_len - start || tail.len() as u64 > len {
        return Ok(None);
    }
    Ok(Some((file_len, tail, validator)))
}
