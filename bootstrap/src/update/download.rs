//! Downloading a build next to the executable, resumably.
//!
//! The download goes to `.<exe name>.download` in the executable's folder
//! (so the final rename stays on one filesystem and is atomic), with its
//! resume information in `.<exe name>.download.toml`: the URL, the
//! announced CRC-32 and the server's validator (ETag or Last-Modified). A
//! later launch that finds both, for the same URL and CRC, asks for the
//! rest with `Range` + `If-Range`; a server that answers 200 instead sends
//! the whole file again, and the download restarts from zero.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::info;
use payload_tools::manifest::UpdateManifest;
use payload_tools::rangeio::Arrival;
use serde::Deserialize;
use ureq::Agent;

use super::{UpdateError, http};
use crate::sys;
use crate::trace::UPDATE;

/// A download that brings fewer bytes than this per window is abandoned
/// (an average of 1 KiB/s over 30 s).
const MIN_BYTES_PER_WINDOW: u64 = 30 * 1024;
const SLOW_WINDOW: Duration = Duration::from_secs(30);

/// A finished download, open for reading.
#[derive(Debug)]
pub struct Fetched {
    pub file: File,
    pub len: u64,
    /// The CRC-32 of the whole file, when the download computed it.
    pub crc32: Option<u32>,
    pub url: String,
}

/// Bytes a checker of the download is woken for.
const CHECK_BATCH: u64 = 4 << 20;

/// How far a download has come, shared with a checker that reads the file
/// while it grows ([`Arrival`]).
#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ProgressState {
    /// The download, for readers to take handles of their own on.
    file: Option<File>,
    len: u64,
    ended: bool,
}

impl Progress {
    fn state(&self) -> MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, file: Option<File>, len: u64) {
        let mut state = self.state();
        state.file = file;
        state.len = len;
        self.changed.notify_all();
    }

    fn advance(&self, len: u64) {
        let mut state = self.state();
        // Waking the checker for every read from the network costs more
        // than its work: it is woken once per batch.
        let wake = len / CHECK_BATCH != state.len / CHECK_BATCH;
        state.len = len;
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }

    /// No more bytes will come, whether the download finished or failed.
    pub fn end(&self) {
        self.state().ended = true;
        self.changed.notify_all();
    }

    /// Waits for the download to start and returns a handle of its own on
    /// it; `None` if it ended first.
    pub fn file(&self) -> Option<File> {
        let mut state = self.state();
        loop {
            if let Some(file) = &state.file {
                return file.try_clone().ok();
            }
            if state.ended {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Arrival for Progress {
    fn wait_beyond(&self, offset: u64) -> io::Result<u64> {
        let mut state = self.state();
        loop {
            if state.len > offset {
                return Ok(state.len);
            }
            if state.ended {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the download stopped",
                ));
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Bytes handed to the disk at a time by [`write_back`], and how far
/// behind the download.
const WRITEBACK_CHUNK: u64 = 4 << 20;
const WRITEBACK_LAG: u64 = 8 << 20;

/// Hands the download to the disk while it runs, so that the sync after it
/// has little left to do; returns when the download ends. The ranges lag
/// behind the bytes being written: writing back pages the download was
/// still filling slowed it down more than the early writeback saved.
pub fn write_back(progress: &Progress) {
    let Some(file) = progress.file() else {
        return;
    };
    let mut next = 0;
    while progress
        .wait_beyond(next + WRITEBACK_LAG + WRITEBACK_CHUNK - 1)
        .is_ok()
    {
        sys::start_writeback(&file, next, WRITEBACK_CHUNK);
        next += WRITEBACK_CHUNK;
    }
}

/// The download files of one executable.
#[derive(Debug)]
pub struct Download {
    data: PathBuf,
    resume_info: PathBuf,
}

#[derive(Debug, Deserialize, PartialEq)]
struct ResumeInfo {
    url: String,
    crc32: u32,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    last_modified: Option<String>,
}

impl ResumeInfo {
    /// Written by hand: the stub carries a TOML parser anyway, but a TOML
    /// serialiser only for these four keys would cost more bytes than this.
    fn to_toml(&self) -> String {
        let mut out = format!("url = {}\ncrc32 = {}\n", toml_string(&self.url), self.crc32);
        for (key, value) in [("etag", &self.etag), ("last_modified", &self.last_modified)] {
            if let Some(value) = value {
                out.push_str(&format!("{key} = {}\n", toml_string(value)));
            }
        }
        out
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Download {
    pub fn beside(exe: &Path) -> Download {
        let name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Download {
            data: exe.with_file_name(format!(".{name}.download")),
            resume_info: exe.with_file_name(format!(".{name}.download.toml")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.data
    }

    /// Removes the download and its resume information.
    pub fn discard(&self) {
        let _ = fs::remove_file(&self.data);
        self.forget_resume_info();
    }

    pub fn forget_resume_info(&self) {
        let _ = fs::remove_file(&self.resume_info);
    }

    /// Downloads `manifest.url`, resuming an earlier partial download of
    /// the same build where the server allows it. The CRC-32 of the file is
    /// computed on the way when `hash` (otherwise a checker reading the
    /// file as it arrives does that work, off the download's thread).
    pub fn fetch(
        &self,
        agent: &Agent,
        manifest: &UpdateManifest,
        policy: http::Policy,
        max_len: u64,
        progress: &Progress,
        hash: bool,
    ) -> Result<Fetched, UpdateError> {
        let url = manifest.url.as_str();
        let cap = manifest.size.unwrap_or(max_len);
        let resume = self.resumable(manifest);
        let range;
        let mut headers = Vec::new();
        if let Some((have, validator)) = &resume {
            info!(target: UPDATE, "Resuming download at byte {have}.");
            range = format!("bytes={have}-");
            headers.push(("Range", range.as_str()));
            headers.push(("If-Range", validator.as_str()));
        }
        let (mut response, _) = http::get(agent, url, policy, &headers, None)?;
        let status = response.status().as_u16();
        let start = match (status, &resume) {
            (206, Some((have, _)))
                if http::content_range(&response).map(|(first, _, _)| first) == Some(*have) =>
            {
                *have
            }
            (200, _) => {
                if resume.is_some() {
                    info!(target: UPDATE, "The server sent the whole file; downloading from the start.");
                }
                0
            }
            (206, _) => {
                self.discard();
                return Err(UpdateError::Download {
                    url: url.to_owned(),
                    reason: "the server answered a range that was not asked for".into(),
                });
            }
            (status, _) => {
                return Err(UpdateError::Status {
                    url: url.to_owned(),
                    status,
                });
            }
        };

        let mut file = self.open_data(start)?;
        let mut crc = crc32fast::Hasher::new();
        if start > 0 && hash {
            hash_existing(&mut file, start, &mut crc)
                .map_err(UpdateError::io("cannot read", &self.data))?;
        } else {
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let info = ResumeInfo {
                url: url.to_owned(),
                crc32: manifest.crc32,
                etag: header("etag").filter(|e| !e.starts_with("W/")),
                last_modified: header("last-modified"),
            };
            // Without a validator a resumed download could mix two files:
            // such a download restarts from zero instead.
            if info.etag.is_some() || info.last_modified.is_some() {
                // Written in place, not through a temporary file: a kill
                // mid-write leaves text that does not parse (or lacks a
                // validator), and the next attempt simply starts over.
                let text = info.to_toml();
                fs::write(&self.resume_info, text)
                    .map_err(UpdateError::io("write", &self.resume_info))?;
            } else {
                self.forget_resume_info();
            }
        }

        let mut len = start;
        progress.begin(file.try_clone().ok(), len);
        let mut body = response
            .body_mut()
            .with_config()
            .limit(cap.saturating_sub(start).saturating_add(1))
            .reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut window = (Instant::now(), len);
        loop {
            // Slow retrieval: a server that keeps a trickle going never
            // trips the read timeout, so the rate is checked too.
            if window.0.elapsed() >= SLOW_WINDOW {
                if len - window.1 < MIN_BYTES_PER_WINDOW {
                    return Err(UpdateError::Download {
                        url: url.to_owned(),
                        reason: format!(
                            "slower than {} bytes in {} s after {len} bytes (kept for resuming)",
                            MIN_BYTES_PER_WINDOW,
                            SLOW_WINDOW.as_secs()
                        ),
                    });
                }
                window = (Instant::now(), len);
            }
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Kept only if a later launch can resume it safely.
                    let kept = self.resume_info.exists();
                    drop(file);
                    if !kept {
                        self.discard();
                    }
                    return Err(UpdateError::Download {
                        url: url.to_owned(),
                        reason: format!(
                            "{e} after {len} bytes ({})",
                            if kept {
                                "kept for resuming"
                            } else {
                                "discarded"
                            }
                        ),
                    });
                }
            };
            if len + n as u64 > cap {
                drop(file);
                self.discard();
                return Err(UpdateError::Size {
                    url: url.to_owned(),
                    expected: cap,
                    actual: len + n as u64,
                });
            }
            if let Err(e) = file.write_all(&buf[..n]) {
                drop(file);
                self.discard();
                return Err(UpdateError::io("write", &self.data)(e));
            }
            if hash {
                crc.update(&buf[..n]);
            }
            len += n as u64;
            progress.advance(len);
        }
        // Synced by the caller, alongside the verification.
        Ok(Fetched {
            file,
            len,
            crc32: hash.then(|| crc.finalize()),
            url: url.to_owned(),
        })
    }

    /// The length and validator of a partial download of this very build.
    fn resumable(&self, manifest: &UpdateManifest) -> Option<(u64, String)> {
        let text = fs::read_to_string(&self.resume_info).ok()?;
        let info: ResumeInfo = toml::from_str(&text).ok()?;
        if info.url != manifest.url || info.crc32 != manifest.crc32 {
            self.discard();
            return None;
        }
        let have = fs::metadata(&self.data).ok()?.len();
        if have == 0 || manifest.size.is_some_and(|size| have >= size) {
            return None;
        }
        info.etag.or(info.last_modified).map(|v| (have, v))
    }

    fn open_data(&self, start: u64) -> Result<File, UpdateError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        set_private_mode(&mut options);
        let mut file = options
            .open(&self.data)
            .map_err(UpdateError::io("create", &self.data))?;
        file.set_len(start)
            .map_err(UpdateError::io("truncate", &self.data))?;
        file.seek(SeekFrom::Start(start))
            .map_err(UpdateError::io("seek in", &self.data))?;
        Ok(file)
    }
}

#[cfg(unix)]
fn set_private_mode(options: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(0o600);
}

#[cfg(not(unix))]
fn set_private_mode(_options: &mut OpenOptions) {}

fn hash_existing(file: &mut File, len: u64, crc: &mut crc32fast::Hasher) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut limited = (&mut *file).take(len);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = limited.read(&mut buf)?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
    }
    file.seek(SeekFrom::Start(len))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_info_round_trips_through_toml() -> Result<(), toml::de::Error> {
        let info = ResumeInfo {
            url: "https://h/a b?x=\"1\"&y=\\".into(),
            crc32: 4_000_000_000,
            etag: Some("W/\"tab\there\u{7f}\"".into()),
            last_modified: None,
        };
        let parsed: ResumeInfo = toml::from_str(&info.to_toml())?;
        assert_eq!(parsed, info);
        Ok(())
    }
}
