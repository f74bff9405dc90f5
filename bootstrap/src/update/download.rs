//! Downloading a build next to the executable, resumably.
//!
//! The download goes into a file of its own in the executable's folder (so
//! the final rename stays on one filesystem and is atomic), created
//! exclusively and privately ([`Target::new_download`]): no other instance
//! or user shares it or plants anything at its name. Its resume record is
//! kept in the updater's private file ([`State`]): the build (announced
//! CRC-32 and size), the URL and its server's validator (ETag or
//! Last-Modified), and the download's name and inode. A later attempt that
//! finds both, for the same build, and the very file the record names
//! (ours, by inode), asks for the rest with `Range`, and `If-Range` the
//! validator when it asks the same URL; a server that answers 200 instead
//! sends the whole file again, and the download restarts from zero. Another
//! URL (a mirror) continues without `If-Range`: its validator would not be
//! the first server's, and the whole result is verified (size, CRC-32,
//! signature, payload) before use, a failed one discarded, not resumed.
//!
//! What is written is bounded: the download stops at the cap (the announced
//! `size`, never more than the build's `--max-download-size`), and a
//! partial download is kept for resuming only if it has a validator and
//! what is missing of it fits on the disk.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::trace::info;
use payload_tools::manifest::Release;
use payload_tools::rangeio::Arrival;
use ureq::Agent;

use super::install::Target;
use super::state::{ResumeInfo, State};
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
    /// Its name in the executable's folder.
    pub name: String,
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
    /// The announced size of the build, for the app's status file.
    total: Option<u64>,
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

    /// The progress of a build of `total` bytes (when announced); also
    /// told to the app (`status`).
    pub fn of(total: Option<u64>) -> Progress {
        Progress {
            total,
            ..Progress::default()
        }
    }

    fn tell(&self, done: u64) {
        let total = self.total;
        super::status::report(super::status::Report::Downloading { done, total });
    }

    pub fn begin(&self, file: Option<File>, len: u64) {
        let mut state = self.state();
        state.file = file;
        state.len = len;
        self.changed.notify_all();
        drop(state);
        self.tell(len);
    }

    pub fn advance(&self, len: u64) {
        self.tell(len);
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

/// The downloads of one executable.
#[derive(Debug)]
pub struct Download<'a> {
    pub target: &'a Target,
    pub state: &'a State,
}

/// A partial download of the announced build, to be continued.
#[derive(Debug)]
pub struct Partial {
    pub name: String,
    pub file: File,
    pub have: u64,
    /// The validator to send with `If-Range`: `None` when the partial came
    /// from another URL than the one asked now.
    pub validator: Option<String>,
}

impl Download<'_> {
    /// Removes the download `name` and its resume record.
    pub fn discard(&self, name: &str) {
        self.target.remove(name);
        self.state.clear();
    }

    /// Removes the partial download the resume record names, and the record.
    pub fn forget(&self) {
        if let Some(info) = self.state.record()
            && self.target.is_ours(&info.file)
        {
            self.target.remove(&info.file);
        }
        self.state.clear();
    }

    /// Downloads `release.url`, resuming an earlier partial download of
    /// the same build where the server allows it. At most `max_len` bytes
    /// (or the announced size, if smaller) are accepted. The CRC-32 of the
    /// file is computed on the way when `hash` (otherwise a checker reading
    /// the file as it arrives does that work, off the download's thread).
    pub fn fetch(
        &self,
        agent: &Agent,
        release: &Release,
        policy: http::Policy,
        max_len: u64,
        progress: &Progress,
        hash: bool,
    ) -> Result<Fetched, UpdateError> {
        let url = release.url.as_str();
        // The unsigned `size` may lower the build's own cap, never raise it:
        // a build announced larger than the cap is not even downloaded.
        if let Some(size) = release.size
            && size > max_len
        {
            return Err(UpdateError::Size {
                url: url.to_owned(),
                expected: max_len,
                actual: size,
            });
        }
        let cap = release.size.unwrap_or(max_len);
        let resume = self.resumable(release, cap);
        let range;
        let mut headers = Vec::new();
        if let Some(partial) = &resume {
            info!(target: UPDATE, "Resuming download at byte {}.", partial.have);
            range = format!("bytes={}-", partial.have);
            headers.push(("Range", range.as_str()));
            if let Some(validator) = &partial.validator {
                headers.push(("If-Range", validator.as_str()));
            }
        }
        let (mut response, _) = http::get(agent, url, policy, &headers, None)?;
        let status = response.status().as_u16();
        let start = match (status, &resume) {
            (206, Some(partial))
                if http::content_range(&response).map(|(first, _, _)| first)
                    == Some(partial.have) =>
            {
                partial.have
            }
            (200, _) => {
                if resume.is_some() {
                    info!(target: UPDATE, "The server sent the whole file; downloading from the start.");
                }
                0
            }
            (206, _) => {
                self.forget();
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

        // Restarting reuses the partial file: it is ours.
        let (name, mut file) = match resume {
            Some(partial) => (partial.name, partial.file),
            None => self.target.new_download()?,
        };
        let path = self.target.path_of(&name);
        let prepared = file
            .set_len(start)
            .and_then(|()| file.seek(SeekFrom::Start(start)).map(drop));
        if let Err(e) = prepared {
            self.discard(&name);
            return Err(UpdateError::io("truncate", &path)(e));
        }
        let mut crc = crc32fast::Hasher::new();
        let mut recorded = start > 0;
        if start > 0 && hash {
            hash_existing(&mut file, start, &mut crc).map_err(UpdateError::io("read", &path))?;
        } else if start == 0 {
            let validator = http::validator(&response);
            // Without a validator a resumed download could mix two files:
            // such a download restarts from zero instead.
            recorded = validator.is_some();
            match validator {
                Some(validator) => {
                    let info = ResumeInfo {
                        url: url.to_owned(),
                        crc32: release.crc32,
                        size: release.size.unwrap_or(0),
                        file: name.clone(),
                        ino: sys::file_id(&file).map_or(0, |id| id.ino),
                        validator,
                    };
                    self.state
                        .write(&info)
                        .map_err(UpdateError::io("write", &path))?;
                }
                None => self.state.clear(),
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
        let mut pace = Pace::new(len);
        loop {
            let n = match pace.check(len).and_then(|()| body.read(&mut buf)) {
                Ok(0) => break,
                Ok(n) => {
                    super::background::progress();
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kept = recorded && worth_keeping(&file, len, cap);
                    drop(file);
                    if !kept {
                        self.discard(&name);
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
                self.discard(&name);
                return Err(UpdateError::Size {
                    url: url.to_owned(),
                    expected: cap,
                    actual: len + n as u64,
                });
            }
            // At its offset, not at the file's cursor, on Windows: there
            // the helpers' positioned reads move the cursor their cloned
            // handles share with this one.
            if let Err(e) = sys::append_at(&file, &buf[..n], len) {
                drop(file);
                self.discard(&name);
                return Err(UpdateError::io("write", &path)(e));
            }
            if hash {
                crc.update(&buf[..n]);
            }
            len += n as u64;
            progress.advance(len);
        }
        // Synced by the caller, alongside the verification.
        Ok(Fetched {
            name,
            file,
            len,
            crc32: hash.then(|| crc.finalize()),
            url: url.to_owned(),
        })
    }

    /// The partial download of this very build that the resume record
    /// names, if it is still the file we made and worth continuing;
    /// otherwise the record and its file are forgotten.
    pub fn resumable(&self, release: &Release, cap: u64) -> Option<Partial> {
        let info = self.state.record()?;
        let partial = self.partial(&info, release, cap);
        if partial.is_none() {
            self.forget();
        }
        partial
    }

    fn partial(&self, info: &ResumeInfo, release: &Release, cap: u64) -> Option<Partial> {
        if info.crc32 != release.crc32
            || info.size != release.size.unwrap_or(0)
            || !self.target.is_ours(&info.file)
        {
            return None;
        }
        let file = self.target.dir().open_private(&info.file, false).ok()?;
        if sys::file_id(&file).ok()?.ino != info.ino {
            return None;
        }
        let have = file.metadata().ok()?.len();
        if have == 0 || have >= cap || sys::free_space(&file).is_some_and(|free| free < cap - have)
        {
            return None;
        }
        Some(Partial {
            name: info.file.clone(),
            file,
            have,
            validator: (info.url == release.url).then(|| info.validator.clone()),
        })
    }
}

/// Whether a partial download of `len` of `cap` bytes is kept for a later
/// launch to resume (its resume record written): only if what is missing
/// of it fits on the disk. A junk download that filled the disk is not
/// kept to fill it again.
pub fn worth_keeping(file: &File, len: u64, cap: u64) -> bool {
    len < cap && sys::free_space(file).is_none_or(|free| free >= cap - len)
}

/// Slow retrieval: a server that keeps a trickle going never trips the read
/// timeout, so the rate is checked too.
#[derive(Debug)]
pub struct Pace {
    window_start: Instant,
    len_at_start: u64,
}

impl Pace {
    pub fn new(len: u64) -> Pace {
        Pace {
            window_start: Instant::now(),
            len_at_start: len,
        }
    }

    /// An error once a window passed with too few bytes, `len` being the
    /// bytes received so far.
    pub fn check(&mut self, len: u64) -> io::Result<()> {
        if self.window_start.elapsed() < SLOW_WINDOW {
            return Ok(());
        }
        if len - self.len_at_start >= MIN_BYTES_PER_WINDOW {
            *self = Pace::new(len);
            return Ok(());
        }
        Err(io::Error::other(format!(
            "slower than {MIN_BYTES_PER_WINDOW} bytes in {} s",
            SLOW_WINDOW.as_secs()
        )))
    }
}

pub fn hash_existing(file: &mut File, len: u64, crc: &mut crc32fast::Hasher) -> io::Result<()> {
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
