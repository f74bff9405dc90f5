//! Why a file that carries no readable payload carries none: the reader
//! looks only at the last 64 bytes (it never scans), so here, on the error
//! path only, the command looks further to tell the user which case it is:
//!
//! - bytes were appended after a complete packed file (a trailer is found
//!   earlier in the file, and it describes exactly the bytes before it);
//! - a onefile stub with no app after it (a bare stub, or a download cut
//!   short: the stub marker is there, no trailer is);
//! - some other file.

use std::fs::File;
use std::path::Path;

use payload_tools::rangeio::read_exact_at;
use payload_tools::stub;
use payload_tools::trailer::{Magic, TRAILER_LEN, Trailer};

use crate::Failure;

/// How far from the end a trailer is looked for: appended data beyond
/// this is reported as "not a packed file we can read".
const SEARCH_LEN: u64 = 16 << 20;

/// The failure to report for `exe`, which does not end with a trailer.
pub fn no_payload(exe: &Path) -> Failure {
    let shown = exe.display();
    let Ok(file) = File::open(exe) else {
        return format!("'{shown}' carries no payload").into();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    if let Some(end) = earlier_trailer_end(&file, len, exe) {
        let extra = len - end;
        return Failure {
            message: format!(
                "'{shown}' has {extra} bytes appended after the end of its packed data"
            ),
            hint: Some(format!(
                "something was added to the file after it was packed; remove it (truncate -s {end} '{shown}') or get the file again"
            )),
        };
    }
    if stub::find_in_file(&file, len, exe).ok().flatten().is_some() {
        return Failure {
            message: format!("'{shown}' carries no payload: it is a onefile stub with no app after it"),
            hint: Some(
                "a bare stub, or a download cut short: download it again, or pack an app with it (payload-tools pack APP --stub ...)"
                    .into(),
            ),
        };
    }
    Failure {
        message: format!("'{shown}' carries no payload: it is not a onefile packed executable"),
        hint: Some("payload-tools pack makes one".into()),
    }
}

/// The end of a valid trailer found before the end of the file: the length
/// the file had when it was packed.
fn earlier_trailer_end(file: &File, len: u64, path: &Path) -> Option<u64> {
    let start = len.saturating_sub(SEARCH_LEN);
    let mut tail = vec![0u8; usize::try_from(len - start).ok()?];
    read_exact_at(file, &mut tail, start, path).ok()?;
    let magic = Magic::ONEFILE.0;
    // The last candidate first: the packed data ends at the last trailer.
    let mut end = tail.len();
    while let Some(at) = tail[..end].windows(magic.len()).rposition(|w| w == magic) {
        let block_end = at + magic.len();
        if let Some(block) = block_end
            .checked_sub(TRAILER_LEN)
            .and_then(|b| <&[u8; TRAILER_LEN]>::try_from(&tail[b..block_end]).ok())
        {
            let packed_len = start + block_end as u64;
            if packed_len < len
                && matches!(Trailer::from_end_of(block, packed_len, path), Ok(Some(_)))
            {
                return Some(packed_len);
            }
        }
        end = at + magic.len() - 1;
    }
    None
}
