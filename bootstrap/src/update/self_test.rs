//! The new build must start before it is installed: the updater runs the
//! verified download in the stub's self-test mode (`crate::self_test`).
//!
//! 1. Only a build that says its stub has the mode is run (its stub's
//!    self-test marker, `payload_tools::stub`, or its metadata's
//!    `self_test`, which `pack` writes): an older stub would run its app
//!    instead. A build without either is installed as before, traced.
//! 2. The download's writable handles are closed (Linux refuses to execute
//!    a file open for writing; Windows, to share it), and it is opened
//!    again, read-only, through the held folder; it must be the very file
//!    that was verified (device and inode, or volume and file index). That
//!    handle is what the install later renames and checks.
//! 3. It runs with a fresh random token in `ONEFILE_SELF_TEST`, the
//!    launcher's environment otherwise, stdin empty, stdout and stderr
//!    piped and read at most [`MAX_OUTPUT`] bytes each, for at most
//!    [`TIME_LIMIT`], then killed; it never outlives the launcher
//!    (`sys::command_for_held_file`: the held descriptor itself on Linux,
//!    by its checked path and with no console window on Windows;
//!    `sys::end_with_us`).
//! 4. It passes if it exits 0 and its first line is exactly
//!    `onefile-self-test <token> ok <name> <version>`, with the name and
//!    version in the build's own (verified) metadata. Anything else (cannot execute, a signal, a
//!    time-out, another line) refuses the build: the download is removed,
//!    and the release is held back as one that failed verification, so
//!    that it is not downloaded again at every launch.

use std::hash::{BuildHasher, RandomState};
use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use payload_tools::PackedFile;
use payload_tools::manifest::Release;
use payload_tools::stub::{SELF_TEST_VERSION, self_test_version_in_file};
use payload_tools::text::Escaped;

use super::download::{Download, Fetched};
use super::state::ResumeInfo;
use super::{RunningBuild, UpdateError, check, verify};
use crate::sys;
use crate::trace::{UPDATE, info};

/// How long the new build may take to answer: a stub reads a few KiB.
const TIME_LIMIT: Duration = Duration::from_secs(10);

/// Bytes of the new build's stdout and of its stderr kept (the answer is
/// one line; the rest is dropped unread).
const MAX_OUTPUT: usize = 4096;

/// After the build has exited or was killed, how long its output may take
/// to reach us: a child it left behind could hold the pipes open forever.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Runs the verified download `fetched` (open as `new`) in its self-test
/// mode. Returns its name and the build, now held read-only. When the
/// build fails, the download is discarded and the release `release_key`
/// is held back; when this machine kept the self-test from running for
/// now, the download is kept for the next launch ([`kept`]).
pub fn check(
    download: &Download<'_>,
    fetched: Fetched,
    new: PackedFile,
    release: &Release,
    build: &RunningBuild,
    release_key: u32,
) -> Result<(String, PackedFile), UpdateError> {
    let name = fetched.name.clone();
    let ino = sys::file_id(&fetched.file).map(|id| id.ino);
    let result = run(download, fetched, new);
    match result {
        Ok(new) => Ok((name, new)),
        Err(Failure::Refused(reason)) => {
            download.discard(&name);
            let wait = check::release_failed(build, release_key);
            Err(UpdateError::SelfTest { reason, wait })
        }
        Err(Failure::Later(reason)) => {
            let record = ino.map(|ino| ResumeInfo {
                url: release.url.clone(),
                crc32: release.crc32,
                size: release.size.unwrap_or(0),
                file: name.clone(),
                ino,
                validator: KEPT.into(),
            });
            if record.is_err() || record.and_then(|r| download.state.write(&r)).is_err() {
                download.discard(&name);
            }
            Err(UpdateError::SelfTestPostponed { reason })
        }
        Err(Failure::Local(e)) => {
            download.discard(&name);
            Err(e)
        }
    }
}

/// The resume record's validator for a complete, verified download kept
/// because its self-test could not run ([`kept`]). A server's validator
/// that happened to read the same only costs a verification that fails.
const KEPT: &str = "verified, awaiting its self-test";

/// The download of `release` an earlier launch verified but could not
/// self-test (this machine's fault), verified again: so that it is not
/// downloaded again. `None` (and it is forgotten) if there is none, or it
/// is not that build any more.
pub fn kept(
    download: &Download<'_>,
    release: &Release,
    build: &RunningBuild,
) -> Option<(Fetched, PackedFile)> {
    let info = download
        .state
        .record()
        .filter(|info| info.validator == KEPT)?;
    let opened = (info.crc32 == release.crc32
        && info.size == release.size.unwrap_or(0)
        && download.target.is_ours(&info.file))
    .then(|| download.target.dir().open_private(&info.file, false).ok())
    .flatten()
    .filter(|file| sys::file_id(file).is_ok_and(|id| id.ino == info.ino))
    .and_then(|file| Some((file.metadata().ok()?.len(), file)));
    let Some((len, file)) = opened else {
        download.forget();
        return None;
    };
    let fetched = Fetched {
        name: info.file,
        file,
        len,
        crc32: None,
        url: release.url.clone(),
    };
    match verify::check(&fetched, release, build, None, None) {
        Ok(new) => {
            info!(target: UPDATE, "Using the build verified by an earlier launch, which could not self-test it.");
            Some((fetched, new))
        }
        Err(e) => {
            info!(target: UPDATE, "The build kept by an earlier launch is not the one announced ({e}); discarded.");
            download.forget();
            None
        }
    }
}

/// Why the self-test did not pass.
enum Failure {
    /// The build failed it (it cannot be executed here, a signal, a
    /// time-out, another answer): it is refused and held back.
    Refused(String),
    /// This machine kept it from running for now (no process, memory or
    /// file descriptor to be had, the file still open for writing): the
    /// verified download is kept for the next launch, nothing held against
    /// the build.
    Later(String),
    /// The download cannot be run as verified (it cannot be reopened, or
    /// is another file now): discarded, nothing held against the build.
    Local(UpdateError),
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure::Refused(reason)
    }
}

/// Steps 1 to 4.
fn run(download: &Download<'_>, fetched: Fetched, new: PackedFile) -> Result<PackedFile, Failure> {
    let path = download.target.path_of(&fetched.name);
    let version = self_test_version_in_file(&new.file, new.trailer.payload_offset, &path)
        .map_err(|e| Failure::Local(UpdateError::Format(e)))?;
    let name = fetched.name.clone();
    let new = reopen_read_only(download, fetched, new)?;
    // Its metadata (under its CRC-32 and signature) says so too: a stub
    // cut short before its marker is still tested, and fails.
    let promised = new.metadata.self_test;
    if version != Some(SELF_TEST_VERSION) && promised != Some(SELF_TEST_VERSION) {
        info!(
            target: UPDATE,
            "The new build's stub has no self-test{}; installing it without one.",
            version
                .or(promised)
                .map_or(String::new(), |v| format!(" this updater knows (version {v})"))
        );
        return Ok(new);
    }
    let untestable = |e: std::io::Error| {
        info!(target: UPDATE, "Cannot run the new build's self-test here ({e}); installing it without one.");
    };
    let token = token();
    let var = (crate::self_test::VAR, token.as_str());
    let mut cmd = match sys::command_for_held_file(download.target.dir(), &name, &new.file, var) {
        Ok(cmd) => cmd,
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            untestable(e);
            return Ok(new);
        }
        Err(e) => return Err(Failure::Local(UpdateError::io("run", path)(e))),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = match sys::without_error_dialogs(|| spawn(&mut cmd)) {
        Ok(child) => child,
        Err(e) => {
            return match sys::spawn_failure(&e) {
                sys::SpawnFailure::Build => {
                    Err(Failure::Refused(format!("cannot execute it: {e}")))
                }
                sys::SpawnFailure::Later => Err(Failure::Later(format!("cannot start it: {e}"))),
                sys::SpawnFailure::Unsupported => {
                    untestable(e);
                    Ok(new)
                }
            };
        }
    };
    // The file's own name and version, which verification already compared
    // with what the manifest announces (by version order, not by spelling):
    // the self-test proves that this stub reads its own build.
    let expected = format!(
        "onefile-self-test {token} ok {} {}",
        new.metadata.name, new.metadata.version
    );
    judge(wait_for_answer(child)?, &expected)?;
    info!(target: UPDATE, "The new build passed its self-test.");
    Ok(new)
}

/// Step 2: closes the download's writable handles (`fetched` and `new`'s)
/// and opens it again read-only through the held folder; it must be the
/// file verified. Returns the build on that handle.
fn reopen_read_only(
    download: &Download<'_>,
    fetched: Fetched,
    new: PackedFile,
) -> Result<PackedFile, Failure> {
    let path = download.target.path_of(&fetched.name);
    let local = |action| {
        let path = path.clone();
        move |e| Failure::Local(UpdateError::io(action, path)(e))
    };
    let verified = sys::file_id(&fetched.file).map_err(local("read"))?;
    let PackedFile {
        path: shown,
        file: writable,
        len,
        trailer,
        metadata,
    } = new;
    drop(writable);
    drop(fetched.file);
    // Windows refuses the read-only handle while someone writes the file
    // (a sharing violation), as Linux refuses to execute it (ETXTBSY).
    let file = match download.target.dir().open_read(&fetched.name) {
        Ok(file) => file,
        Err(e) if sys::spawn_failure(&e) == sys::SpawnFailure::Later => {
            return Err(Failure::Later(format!("cannot open it again: {e}")));
        }
        Err(e) => return Err(local("open again")(e)),
    };
    let reopened = sys::file_id(&file).map_err(local("read"))?;
    if !reopened.same_file(&verified) {
        let replaced = std::io::Error::other("it is no longer the file that was verified");
        return Err(local("run")(replaced));
    }
    Ok(PackedFile {
        path: shown,
        file,
        len,
        trailer,
        metadata,
    })
}

/// Step 4: whether `answer` passes, `expected` being the line it must
/// start with. What the build wrote is escaped: it is not ours.
fn judge(answer: Answer, expected: &str) -> Result<(), String> {
    if !answer.status.success() {
        let text = String::from_utf8_lossy(&answer.stderr);
        let said = text.lines().next().unwrap_or("").trim();
        return Err(match said {
            "" => answer.status.to_string(),
            said => format!("{} ({})", answer.status, Escaped(said)),
        });
    }
    let line = answer.stdout.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let said = String::from_utf8_lossy(line);
    if said != expected {
        return Err(format!(
            "it answered '{}' instead of '{expected}'",
            Escaped(&said)
        ));
    }
    Ok(())
}

/// Starts `cmd`, again a few times while the system says the file is
/// open for writing: a process forked by another thread before our
/// writable handles were closed holds copies of them until it executes.
fn spawn(cmd: &mut std::process::Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            spawned => return spawned,
        }
    }
}

/// What the new build said, and how it ended.
struct Answer {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Waits at most [`TIME_LIMIT`] for `child` to exit (then kills it), and
/// collects at most [`MAX_OUTPUT`] bytes of each of its outputs.
fn wait_for_answer(mut child: Child) -> Result<Answer, Failure> {
    // Held until the child is done: should this process end first, the
    // child ends with it.
    let _tied = sys::end_with_us(&child);
    let stdout = child.stdout.take().map(collect);
    let stderr = child.stderr.take().map(collect);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < TIME_LIMIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Refused(format!(
                    "it did not answer within {} s; stopped",
                    TIME_LIMIT.as_secs()
                )));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Later(format!("cannot wait for it: {e}")));
            }
        }
    };
    let received = |output: Option<mpsc::Receiver<Vec<u8>>>| {
        output
            .and_then(|output| output.recv_timeout(OUTPUT_GRACE).ok())
            .unwrap_or_default()
    };
    Ok(Answer {
        status,
        stdout: received(stdout),
        stderr: received(stderr),
    })
}

/// Reads at most [`MAX_OUTPUT`] bytes of `pipe` on a thread of its own,
/// which is never waited for beyond [`OUTPUT_GRACE`]: what arrives.
fn collect(pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (send, receive) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("onefile-self-test".into())
        .spawn(move || {
            let mut kept = Vec::new();
            let _ = pipe.take(MAX_OUTPUT as u64).read_to_end(&mut kept);
            let _ = send.send(kept);
        });
    // Without the thread the sender is gone: nothing was read.
    drop(spawned);
    receive
}

/// A fresh token of 32 hex digits, from the standard library's random
/// hashing keys (the stub has no other source of randomness): not a
/// secret, only a sign that the answer comes from this run.
fn token() -> String {
    let random = RandomState::new();
    let (a, b) = (random.hash_one(1u8), random.hash_one(2u8));
    format!("{a:016x}{b:016x}")
}
