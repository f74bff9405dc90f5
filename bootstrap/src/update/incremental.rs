//! Incremental updates: the new build is assembled next to the executable
//! from the parts the running executable already holds and the parts
//! fetched from the server, so that a release that changed one file costs
//! about that file, from any installed version, on any static host that
//! serves ranges.
//!
//! The plan ([`payload_tools::delta`]) comes from the new build's end,
//! fetched first ([`super::tail`]): its metadata names the stub and every
//! frame by a hash. The file is then written in order, part by part, like
//! a download (so the helpers that write it out, check its payload and
//! hash it for the signature work unchanged, and an interrupted assembly
//! resumes like an interrupted download):
//!
//! - a part the running executable holds is read from it (through the
//!   descriptor the launcher opened), hashed, and copied only if the hash
//!   is the published one; otherwise it is fetched ("repaired");
//! - the other parts are fetched with plain single-range `GET`s, `If-Range`
//!   the validator of the end fetched first; every fetched part must hash
//!   to its published value as it arrives;
//! - the end is written from what was fetched first.
//!
//! The assembled file then passes exactly the checks of a full download
//! (size, CRC-32, signature, identity, payload). Any failure here is
//! traced and the caller downloads the whole build instead: a server that
//! lies (another range, another status, other bytes) gets the partial
//! file discarded; one that stops gets it kept for resuming when it is
//! worth it, and the whole download resumes from it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use crate::trace::info;
use payload_tools::PackedFile;
use payload_tools::delta::{self, MAX_REQUESTS, Plan, Source, Step};
use payload_tools::digest::PartHasher;
use payload_tools::manifest::Release;
use payload_tools::rangeio::read_exact_at;
use ureq::Agent;

use super::download::{Download, Fetched, Pace, Progress, hash_existing, worth_keeping};
use super::state::ResumeInfo;
use super::tail::Layout;
use super::{UpdateError, http};
use crate::sys;
use crate::trace::UPDATE;

/// Bytes read or received at a time.
const CHUNK: usize = 256 * 1024;

/// The plan for assembling the announced build from the running one, if
/// there is one worth following (traced either way).
pub fn plan(layout: &Layout, own: &PackedFile) -> Option<Plan> {
    let meta = &layout.metadata;
    // Checked by `tail::fetch` already; everything below relies on it.
    if meta.frames_compressed_len() != layout.trailer.payload_len {
        return None;
    }
    if meta.frame_hashes.is_empty() && meta.stub_hash.is_none() {
        info!(target: UPDATE, "The new build names no parts; downloading it whole.");
        return None;
    }
    let plan = Plan::new(
        &layout.trailer,
        meta,
        &delta::parts(&own.trailer, &own.metadata),
    );
    let (copied, parts) = plan.copied_parts();
    if !plan.is_worth_it() {
        info!(
            target: UPDATE,
            "Incremental update not worth it ({copied} of {parts} parts in the running build, {} of {} bytes to fetch); downloading the whole build.",
            plan.fetched_bytes() + (plan.file_len - plan.tail_start),
            plan.file_len
        );
        return None;
    }
    info!(
        target: UPDATE,
        "Incremental update: {copied} of {parts} parts from the running build, {} of {} bytes to fetch in {} requests.",
        plan.fetched_bytes(),
        plan.file_len,
        plan.requests.len()
    );
    Some(plan)
}

/// Why an assembly stopped.
enum Failure {
    /// The server stopped answering: what was written may be resumed.
    Interrupted(String),
    /// The server answered what was not asked for, or a byte is wrong:
    /// nothing written is kept.
    Refused(String),
    /// Writing the download failed.
    Disk(io::Error),
}

/// Where the assembled bytes go, in order.
struct Output<'a> {
    file: &'a File,
    len: u64,
    /// The announced length: nothing is written beyond it.
    cap: u64,
    crc: Option<crc32fast::Hasher>,
    progress: &'a Progress,
}

impl Output<'_> {
    /// Writes `bytes` at `at` (at or beyond `len`) without announcing them:
    /// neither the CRC-32 nor the helpers see them until [`Output::announce`].
    /// Returns where the next bytes go.
    fn write_unannounced(&mut self, bytes: &[u8], at: u64) -> Result<u64, Failure> {
        let end = at.saturating_add(bytes.len() as u64);
        if end > self.cap {
            return Err(Failure::Refused(format!(
                "the parts add up to more than the {} bytes announced",
                self.cap
            )));
        }
        sys::append_at(self.file, bytes, at).map_err(Failure::Disk)?;
        Ok(end)
    }

    /// The bytes written up to `end` are good: counted, and shown to the
    /// helpers. `crc` is theirs.
    fn announce(&mut self, end: u64, crc: &crc32fast::Hasher) {
        if let Some(total) = &mut self.crc {
            total.combine(crc);
        }
        self.len = end;
        self.progress.advance(end);
    }

    /// Drops what was written beyond `len`, unannounced, and writes from
    /// `len` again.
    fn roll_back(&mut self, len: u64) -> Result<(), Failure> {
        let mut file = self.file;
        file.set_len(len)
            .and_then(|()| file.seek(SeekFrom::Start(len)).map(drop))
            .map_err(Failure::Disk)
    }

    /// Writes `bytes` at `len` and announces them at once.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let end = self.write_unannounced(bytes, self.len)?;
        if let Some(crc) = &mut self.crc {
            crc.update(bytes);
        }
        self.len = end;
        self.progress.advance(end);
        Ok(())
    }
}

/// What an assembly did, for its trace.
#[derive(Default)]
struct Counts {
    copied_parts: usize,
    copied_bytes: u64,
    repaired_parts: usize,
    fetched_bytes: u64,
    requests: usize,
}

/// Everything one assembly works with.
struct Assembly<'a> {
    agent: &'a Agent,
    url: &'a str,
    policy: http::Policy,
    layout: &'a Layout,
    own: &'a PackedFile,
    buf: Vec<u8>,
    counts: Counts,
}

impl Download<'_> {
    /// Assembles the build `release` announces, whose end is `layout`,
    /// following `plan`, resuming an earlier partial download of it. At
    /// most `max_len` bytes. The CRC-32 of the file is computed on the way
    /// when `hash`. The caller falls back to a whole download on error.
    #[allow(clippy::too_many_arguments)]
    pub fn assemble(
        &self,
        agent: &Agent,
        release: &Release,
        policy: http::Policy,
        max_len: u64,
        layout: &Layout,
        plan: &Plan,
        own: &PackedFile,
        progress: &Progress,
        hash: bool,
    ) -> Result<Fetched, UpdateError> {
        let url = release.url.as_str();
        let cap = layout.file_len;
        if cap > max_len {
            return Err(UpdateError::Size {
                url: url.to_owned(),
                expected: max_len,
                actual: cap,
            });
        }
        // A partial download of another file at the same URL (the server's
        // validator changed) is not continued; one from another mirror is
        // (its parts are those of the same build, and the whole is verified).
        let resume = match self.resumable(release, cap) {
            Some(partial)
                if partial.validator.is_none() || layout.validator == partial.validator =>
            {
                Some(partial)
            }
            Some(_) => {
                self.forget();
                None
            }
            None => None,
        };
        let (name, mut file, have) = match resume {
            Some(partial) => (partial.name, partial.file, partial.have),
            None => {
                let (name, file) = self.target.new_download()?;
                (name, file, 0)
            }
        };
        let path = self.target.path_of(&name);
        // Parts are written whole: a resumed one starts over.
        let restart = restart_point(plan, have);
        let mut crc = hash.then(crc32fast::Hasher::new);
        let prepared = file
            .set_len(restart)
            .and_then(|()| match &mut crc {
                Some(crc) if restart > 0 => hash_existing(&mut file, restart, crc),
                _ => Ok(()),
            })
            .and_then(|()| file.seek(SeekFrom::Start(restart)).map(drop));
        if let Err(e) = prepared {
            self.discard(&name);
            return Err(UpdateError::io("prepare", &path)(e));
        }
        let recorded = if restart > 0 {
            info!(target: UPDATE, "Resuming the incremental update at byte {restart}.");
            true
        } else if let Some(validator) = &layout.validator {
            let info = ResumeInfo {
                url: url.to_owned(),
                crc32: release.crc32,
                size: release.size.unwrap_or(0),
                file: name.clone(),
                ino: sys::file_id(&file).map_or(0, |id| id.ino),
                validator: validator.clone(),
            };
            self.state
                .write(&info)
                .map_err(UpdateError::io("write", &path))?;
            true
        } else {
            // Without a validator, pieces of two files could be mixed
            // across launches: such an assembly is not resumed.
            self.state.clear();
            false
        };

        progress.begin(file.try_clone().ok(), restart);
        let mut out = Output {
            file: &file,
            len: restart,
            cap,
            crc,
            progress,
        };
        let mut assembly = Assembly {
            agent,
            url,
            policy,
            layout,
            own,
            buf: vec![0u8; CHUNK],
            counts: Counts::default(),
        };
        let result = assembly.run(plan, &mut out);
        let (len, crc) = (out.len, out.crc.take());
        match result {
            Ok(()) => {
                let c = &assembly.counts;
                info!(
                    target: UPDATE,
                    "Assembled: {} parts ({} bytes) copied from the running build, {} repaired, {} bytes fetched in {} requests.",
                    c.copied_parts,
                    c.copied_bytes,
                    c.repaired_parts,
                    c.fetched_bytes,
                    c.requests
                );
                Ok(Fetched {
                    name,
                    file,
                    len,
                    crc32: crc.map(|crc| crc.finalize()),
                    url: url.to_owned(),
                })
            }
            Err(Failure::Interrupted(reason)) => {
                let kept = recorded && worth_keeping(&file, len, cap);
                drop(file);
                if !kept {
                    self.discard(&name);
                }
                Err(UpdateError::Download {
                    url: url.to_owned(),
                    reason: format!(
                        "{reason} after {len} bytes ({})",
                        if kept {
                            "kept for resuming"
                        } else {
                            "discarded"
                        }
                    ),
                })
            }
            Err(Failure::Refused(reason)) => {
                drop(file);
                self.discard(&name);
                Err(UpdateError::Download {
                    url: url.to_owned(),
                    reason: format!("{reason}; discarded"),
                })
            }
            Err(Failure::Disk(e)) => {
                drop(file);
                self.discard(&name);
                Err(UpdateError::io("write", path)(e))
            }
        }
    }
}

/// Where an assembly that has `have` bytes starts: at the start of the
/// part that holds byte `have`, or of the end.
fn restart_point(plan: &Plan, have: u64) -> u64 {
    if have >= plan.tail_start {
        return plan.tail_start;
    }
    plan.steps
        .iter()
        .find(|step| step.part.end() > have)
        .map_or(0, |step| step.part.offset)
}

impl Assembly<'_> {
    fn run(&mut self, plan: &Plan, out: &mut Output<'_>) -> Result<(), Failure> {
        let steps = &plan.steps;
        let mut i = steps
            .iter()
            .position(|step| step.part.offset >= out.len)
            .unwrap_or(steps.len());
        while i < steps.len() {
            let step = steps[i];
            match step.source {
                Source::Old { offset } => {
                    if !self.copy_own_part(offset, &step, out)? {
                        info!(
                            target: UPDATE,
                            "The running build's part at byte {offset} does not match its hash; fetching it."
                        );
                        self.counts.repaired_parts += 1;
                        self.fetch(&steps[i..=i], out)?;
                    }
                    i += 1;
                }
                Source::Fetch => {
                    let request = plan
                        .requests
                        .iter()
                        .find(|r| r.start <= step.part.offset && step.part.offset < r.end)
                        .ok_or_else(|| Failure::Refused("the plan has a gap".into()))?;
                    let end = i + steps[i..]
                        .iter()
                        .take_while(|s| s.part.end() <= request.end)
                        .count();
                    if end == i {
                        return Err(Failure::Refused("the plan does not advance".into()));
                    }
                    self.fetch(&steps[i..end], out)?;
                    i = end;
                }
            }
        }
        let skip = usize::try_from(out.len.saturating_sub(plan.tail_start)).unwrap_or(0);
        out.write(self.layout.tail.get(skip..).unwrap_or_default())
    }

    /// Copies `step`'s part from the running executable at `offset`, in
    /// one pass: written as read, announced (to the CRC-32 and to the
    /// helpers reading the download as it grows) only once its hash
    /// holds. `false` when it does not, or cannot be read: then nothing of
    /// it stays written, and it is fetched instead.
    fn copy_own_part(
        &mut self,
        offset: u64,
        step: &Step,
        out: &mut Output<'_>,
    ) -> Result<bool, Failure> {
        let start = out.len;
        let mut hasher = PartHasher::default();
        let mut crc = crc32fast::Hasher::new();
        let mut written = start;
        let copied = self.read_own(offset, step.part.len, |bytes| {
            hasher.update(bytes);
            crc.update(bytes);
            written = out.write_unannounced(bytes, written)?;
            Ok(())
        });
        match copied {
            Ok(()) if step.part.hash == Some(hasher.finish()) => {
                out.announce(written, &crc);
                self.counts.copied_parts += 1;
                self.counts.copied_bytes += step.part.len;
                Ok(true)
            }
            Ok(()) | Err(OwnRead::Failed) => {
                out.roll_back(start)?;
                Ok(false)
            }
            Err(OwnRead::Write(failure)) => Err(failure),
        }
    }

    fn read_own(
        &mut self,
        offset: u64,
        len: u64,
        mut each: impl FnMut(&[u8]) -> Result<(), Failure>,
    ) -> Result<(), OwnRead> {
        let end = offset.checked_add(len).filter(|&end| end <= self.own.len);
        let Some(end) = end else {
            // The part lies beyond its end.
            return Err(OwnRead::Failed);
        };
        let mut at = offset;
        while at < end {
            let n = (end - at).min(self.buf.len() as u64) as usize;
            read_exact_at(&self.own.file, &mut self.buf[..n], at, &self.own.path)
                .map_err(|_| OwnRead::Failed)?;
            each(&self.buf[..n]).map_err(OwnRead::Write)?;
            super::background::progress();
            at += n as u64;
        }
        Ok(())
    }

    /// Fetches the consecutive `steps` with one range request, checking
    /// each part's hash as it completes.
    fn fetch(&mut self, steps: &[Step], out: &mut Output<'_>) -> Result<(), Failure> {
        let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
            return Ok(());
        };
        let (start, end) = (first.part.offset, last.part.end());
        self.counts.requests += 1;
        if self.counts.requests > MAX_REQUESTS {
            return Err(Failure::Refused(format!(
                "more than {MAX_REQUESTS} range requests would be needed"
            )));
        }
        let range = format!("bytes={start}-{}", end - 1);
        let mut headers = vec![("Range", range.as_str())];
        if let Some(validator) = &self.layout.validator {
            headers.push(("If-Range", validator.as_str()));
        }
        let (mut response, _) = http::get(self.agent, self.url, self.policy, &headers, None)
            .map_err(|e| match e {
                UpdateError::Transport { reason, .. } => Failure::Interrupted(reason),
                other => Failure::Refused(other.to_string()),
            })?;
        let status = response.status().as_u16();
        match status {
            206 => {}
            // Busy or failing for now: what was assembled is still good.
            429 | 500..=599 => {
                return Err(Failure::Interrupted(format!(
                    "the server answered a range request with HTTP status {status}"
                )));
            }
            _ => {
                return Err(Failure::Refused(format!(
                    "the server answered a range request with HTTP status {status}"
                )));
            }
        }
        if http::content_range(&response) != Some((start, end - 1, Some(self.layout.file_len))) {
            return Err(Failure::Refused(
                "the server answered with another range than the one asked for".into(),
            ));
        }
        let mut body = response
            .body_mut()
            .with_config()
            .limit(end - start + 1)
            .reader();
        let mut pace = Pace::new(0);
        let mut received = 0u64;
        let mut parts = steps.iter();
        let mut part = parts.next();
        let mut hasher = PartHasher::default();
        loop {
            let n = match pace.check(received).and_then(|()| body.read(&mut self.buf)) {
                Ok(0) => break,
                Ok(n) => {
                    super::background::progress();
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Interrupted(e.to_string())),
            };
            received += n as u64;
            let mut rest = &self.buf[..n];
            while !rest.is_empty() {
                let Some(step) = part else {
                    return Err(Failure::Refused(
                        "the server sent more bytes than the range asked for".into(),
                    ));
                };
                let take = rest.len().min((step.part.end() - out.len) as usize);
                hasher.update(&rest[..take]);
                out.write(&rest[..take])?;
                rest = &rest[take..];
                if out.len == step.part.end() {
                    if step.part.hash.is_some_and(|hash| hash != hasher.finish()) {
                        return Err(Failure::Refused(format!(
                            "the bytes fetched for the part at byte {} do not match its hash",
                            step.part.offset
                        )));
                    }
                    hasher = PartHasher::default();
                    part = parts.next();
                }
            }
        }
        self.counts.fetched_bytes += received;
        if out.len != end {
            return Err(Failure::Interrupted(format!(
                "the server sent {received} of the {} bytes asked for",
                end - start
            )));
        }
        Ok(())
    }
}

/// Why reading a part of the running executable stopped.
enum OwnRead {
    /// The running executable could not be read there.
    Failed,
    Write(Failure),
}
