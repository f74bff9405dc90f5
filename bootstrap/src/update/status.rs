//! What the app is told about updates: a small file, named to the app by
//! `ONEFILE_UPDATE_STATUS`, that the sidecar rewrites as it works (format:
//! docs/updates.md, "The app knows about its updates").
//!
//! - [`open`] (the launcher, before the app starts): creates the launch's
//!   files in the app's private cache folder, through the held folder:
//!   `.status-<pid>-<nonce>.lock`, created exclusively and locked for as
//!   long as the launcher lives, then the status file `.status-<pid>-<nonce>`
//!   with the first state (`checking`, or `rolled-back` when the launcher
//!   says the launcher that rolled back started this one).
//! - [`report`] (the sidecar): each state is one line of JSON written into
//!   a new private file `.status-….new`, created exclusively, never through
//!   a link, then renamed over the status file: a reader sees the old line
//!   or the new one, never a mix. Progress is rewritten at most every
//!   [`PROGRESS_EVERY`]. On Windows a reader holding the file open makes
//!   the rename fail for a moment: it is retried briefly, then that one
//!   state is skipped (the updater never waits on the app).
//! - [`StatusFile`] dropped (the launcher exits): the files are removed;
//!   nothing is written after that.
//! - [`remove_stale`] (the sidecar, at its start): the files of launchers
//!   that died without removing theirs (their lock is free), a bounded
//!   number per launch.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::sys;
use crate::trace::info;

/// The variable that names the status file to the app.
pub const VARIABLE: &str = "ONEFILE_UPDATE_STATUS";

/// Progress is rewritten at most this often.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How long a state waits for the app to let go of the file it replaces
/// (Windows refuses to rename over a file being read) before it is
/// skipped: briefly, as progress comes again.
const STATUS_REPLACE_PATIENCE: Duration = Duration::from_millis(50);

/// Strings (versions, a server's error text) are cut to this many
/// characters: the file stays small whatever a server sends.
const MAX_STRING_CHARS: usize = 300;

/// Launches whose stale files are removed per launch, and folder entries
/// looked at to find them (live launches are passed over, uncounted).
const MAX_STALE_REMOVED: usize = 16;
const MAX_ENTRIES_SCANNED: usize = 4096;

/// One state of the updater, as the app reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report<'a> {
    /// Looking for an update.
    Checking,
    /// No check was due: nothing more happens in this launch.
    NotDue,
    /// Bytes of the new build in place so far, of `total` when announced.
    Downloading { done: u64, total: Option<u64> },
    /// `version` is downloaded and verified: it is installed when the app
    /// exits (at once if it exits with `restart_exit_code`).
    Ready {
        version: &'a str,
        restart_exit_code: Option<i32>,
    },
    /// The running build (`version`) is the one to run.
    UpToDate { version: &'a str },
    /// This launch installs nothing, for `reason`.
    Failed { reason: &'a str },
    /// The launcher restored `to` after `from` failed to start.
    RolledBack { from: &'a str, to: &'a str },
}

impl Report<'_> {
    fn state(&self) -> &'static str {
        match self {
            Report::Checking => "checking",
            Report::NotDue => "not-due",
            Report::Downloading { .. } => "downloading",
            Report::Ready { .. } => "ready",
            Report::UpToDate { .. } => "up-to-date",
            Report::Failed { .. } => "failed",
            Report::RolledBack { .. } => "rolled-back",
        }
    }
}

/// The status file of this launch; removed when dropped.
#[derive(Debug)]
pub struct StatusFile(());

impl Drop for StatusFile {
    fn drop(&mut self) {
        if let Some(writer) = current().take() {
            writer.remove();
        }
    }
}

/// The launch's writer: one per process.
#[derive(Debug)]
struct Writer {
    dir: sys::Dir,
    folder: PathBuf,
    /// `.status-<pid>-<nonce>`.
    name: String,
    sequence: u64,
    last_progress: Option<Instant>,
    /// Locked while this launcher lives: a free lock marks a dead one.
    _alive: std::fs::File,
}

static CURRENT: Mutex<Option<Writer>> = Mutex::new(None);

/// The last state reported is `downloading` or `ready` (whether or not
/// this launch has a status file): an install may follow.
static INSTALL_COMING: AtomicBool = AtomicBool::new(false);

/// Whether the updater last reported a build downloading or ready: then an
/// install may follow the app's exit, and a restart waits for it.
pub fn install_coming() -> bool {
    INSTALL_COMING.load(Ordering::SeqCst)
}

fn current() -> MutexGuard<'static, Option<Writer>> {
    CURRENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates this launch's status file in the app's cache `folder` (held
/// open, and its path) and names it to the app in `cmd`. The first state
/// is `rolled-back` from `rolled_back_from` to `version` when the launcher
/// that rolled back started this one, else `checking`. Without a folder,
/// or if the file cannot be made, the app gets no variable: updates go on
/// all the same.
pub fn open(
    cmd: &mut Command,
    folder: std::io::Result<(sys::Dir, PathBuf)>,
    version: &str,
    rolled_back_from: Option<&str>,
) -> Option<StatusFile> {
    let (dir, folder) = folder.ok()?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(".status-{}-{nonce:08x}", std::process::id());
    let alive = match dir.create_new(&format!("{name}.lock")) {
        Ok(file) => file,
        Err(e) => {
            info!("No status file for the app: cannot create its lock ({e}).");
            return None;
        }
    };
    // A cleaner may take the new lock for a dead launcher's before we
    // lock it, and remove it: then it is not ours to use.
    let lock_name = format!("{name}.lock");
    let locked = alive.try_lock().is_ok() && dir.holds(&alive, &lock_name).unwrap_or(false);
    if !locked {
        info!("No status file for the app: its lock was taken.");
        return None;
    }
    let path = folder.join(&name);
    let mut writer = Writer {
        dir,
        folder,
        name,
        sequence: 0,
        last_progress: None,
        _alive: alive,
    };
    let first = match rolled_back_from {
        Some(from) if !from.is_empty() => Report::RolledBack { from, to: version },
        _ => Report::Checking,
    };
    if !writer.write(&first) {
        writer.remove();
        return None;
    }
    info!("Status file for the app: '{}'.", path.display());
    *current() = Some(writer);
    cmd.env(VARIABLE, &path);
    Some(StatusFile(()))
}

/// Tells the app `report`, if this launch has a status file. Progress is
/// skipped when the last was written less than [`PROGRESS_EVERY`] ago.
pub fn report(report: Report<'_>) {
    INSTALL_COMING.store(
        matches!(report, Report::Downloading { .. } | Report::Ready { .. }),
        Ordering::SeqCst,
    );
    let mut current = current();
    let Some(writer) = current.as_mut() else {
        return;
    };
    if let Report::Downloading { .. } = report {
        let now = Instant::now();
        match writer.last_progress {
            Some(last) if now.duration_since(last) < PROGRESS_EVERY => return,
            Some(_) => {}
            None => info!(
                "Telling the app: downloading (at most every {} ms).",
                PROGRESS_EVERY.as_millis()
            ),
        }
        writer.last_progress = Some(now);
    } else {
        writer.last_progress = None;
        info!("Telling the app: {}.", report.state());
    }
    writer.write(&report);
}

/// Removes the files of launchers that died without removing theirs:
/// those whose lock no one holds, or that have lost their lock (removed by
/// a launcher that could not remove its status file: on Windows, while
/// the app still held it open). At most [`MAX_STALE_REMOVED`] launches'
/// files per call.
pub fn remove_stale() {
    let (dir, folder, own) = {
        let current = current();
        let Some(writer) = current.as_ref() else {
            return;
        };
        let Ok(dir) = writer.dir.try_clone() else {
            return;
        };
        (dir, writer.folder.clone(), writer.name.clone())
    };
    let Ok(listing) = std::fs::read_dir(&folder) else {
        return;
    };
    // Every launch's files are looked at once; only the launches whose
    // files are removed count against the bound, so live launchers listed
    // first never shield dead ones.
    let mut seen: Vec<String> = Vec::new();
    let mut removed = 0;
    for item in listing.take(MAX_ENTRIES_SCANNED).flatten() {
        let file_name = item.file_name();
        let Some(name) = file_name.to_str().filter(|n| n.starts_with(".status-")) else {
            continue;
        };
        let launch = name
            .strip_suffix(".lock")
            .or_else(|| name.strip_suffix(".new"))
            .unwrap_or(name);
        if launch == own || seen.iter().any(|l| l == launch) {
            continue;
        }
        seen.push(launch.to_owned());
        let lock_name = format!("{launch}.lock");
        // Held: its launcher is alive. A lost lock is made again, free.
        let Ok(Some(lock)) = sys::try_lock_file(&dir, &lock_name) else {
            continue;
        };
        let _ = dir.remove_file(launch);
        let _ = dir.remove_file(&format!("{launch}.new"));
        let _ = dir.remove_file(&lock_name);
        drop(lock);
        info!("Removed the status file of a launcher that is gone: '{launch}'.");
        removed += 1;
        if removed == MAX_STALE_REMOVED {
            break;
        }
    }
}

impl Writer {
    /// Writes `report` as the next state; returns whether the app can read
    /// it now.
    fn write(&mut self, report: &Report<'_>) -> bool {
        self.sequence += 1;
        let line = encode(self.sequence, report);
        let new = format!("{}.new", self.name);
        // A `.new` left by a failed write of ours.
        let _ = self.dir.remove_file(&new);
        let written = self
            .dir
            .create_new(&new)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(e) = written {
            info!("Cannot write the status file: {e}.");
            let _ = self.dir.remove_file(&new);
            return false;
        }
        match self.dir.replace(&new, &self.name, STATUS_REPLACE_PATIENCE) {
            Ok(()) => true,
            Err(e) => {
                info!("Cannot replace the status file ({e}); state skipped.");
                let _ = self.dir.remove_file(&new);
                false
            }
        }
    }

    /// Removes the launch's files, the lock last: until then no other
    /// launcher takes them for a dead one's.
    fn remove(self) {
        let _ = self.dir.remove_file(&self.name);
        let _ = self.dir.remove_file(&format!("{}.new", self.name));
        let _ = self.dir.remove_file(&format!("{}.lock", self.name));
    }
}

/// One state as one line of JSON.
fn encode(sequence: u64, report: &Report<'_>) -> String {
    let mut out = format!("{{\"sequence\":{sequence},\"state\":\"{}\"", report.state());
    match *report {
        Report::Checking | Report::NotDue => {}
        Report::Downloading { done, total } => {
            let _ = write!(out, ",\"done\":{done}");
            if let Some(total) = total {
                let _ = write!(out, ",\"total\":{total}");
            }
        }
        Report::Ready {
            version,
            restart_exit_code,
        } => {
            string_field(&mut out, "version", version);
            if let Some(code) = restart_exit_code {
                let _ = write!(out, ",\"restart_exit_code\":{code}");
            }
        }
        Report::UpToDate { version } => string_field(&mut out, "version", version),
        Report::Failed { reason } => string_field(&mut out, "reason", reason),
        Report::RolledBack { from, to } => {
            string_field(&mut out, "from", from);
            string_field(&mut out, "to", to);
        }
    }
    out.push_str("}\n");
    out
}

/// Appends `,"key":"value"`, `value` cut to [`MAX_STRING_CHARS`] and
/// escaped as JSON wants: quotes, backslashes and every control character.
fn string_field(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, ",\"{key}\":\"");
    for c in value.chars().take(MAX_STRING_CHARS) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_one_line_of_json() {
        let cases = [
            (Report::Checking, r#"{"sequence":1,"state":"checking"}"#),
            (Report::NotDue, r#"{"sequence":1,"state":"not-due"}"#),
            (
                Report::Downloading {
                    done: 1200,
                    total: Some(1904749),
                },
                r#"{"sequence":1,"state":"downloading","done":1200,"total":1904749}"#,
            ),
            (
                Report::Downloading {
                    done: 5,
                    total: None,
                },
                r#"{"sequence":1,"state":"downloading","done":5}"#,
            ),
            (
                Report::Ready {
                    version: "1.1",
                    restart_exit_code: Some(75),
                },
                r#"{"sequence":1,"state":"ready","version":"1.1","restart_exit_code":75}"#,
            ),
            (
                Report::UpToDate { version: "1.0" },
                r#"{"sequence":1,"state":"up-to-date","version":"1.0"}"#,
            ),
            (
                Report::RolledBack {
                    from: "1.1",
                    to: "1.0",
                },
                r#"{"sequence":1,"state":"rolled-back","from":"1.1","to":"1.0"}"#,
            ),
        ];
        for (report, json) in cases {
            assert_eq!(encode(1, &report), format!("{json}\n"));
        }
    }

    #[test]
    fn strings_are_escaped_and_bounded() {
        let reason = "a \"quoted\" C:\\path\nforged\u{1b}[31m\u{7f}\u{85} é";
        assert_eq!(
            encode(7, &Report::Failed { reason }),
            "{\"sequence\":7,\"state\":\"failed\",\"reason\":\
             \"a \\\"quoted\\\" C:\\\\path\\nforged\\u001b[31m\\u007f\\u0085 é\"}\n"
        );
        let long = "x".repeat(10_000);
        let line = encode(1, &Report::Failed { reason: &long });
        assert_eq!(line.matches('x').count(), MAX_STRING_CHARS);
    }
}
