//! Helpers shared by the end-to-end tests: where the binaries are, a fresh
//! directory per test, building app trees, packing them and running the
//! result as a user would.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The folder holding `bootstrap` and `payload-tools` of the same build
/// profile as this test (`make test` builds them first), or
/// `$ONEFILE_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ONEFILE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let me = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/it-<hash>
    me.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p bootstrap -p payload-tools` (make test does)",
        path.display()
    );
    path
}

pub fn stub() -> PathBuf {
    bin("bootstrap")
}

/// The native test app (see `tests/src/bin/probe.rs`).
pub fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_probe"))
}

/// A scratch folder for one test, with a private cache folder inside.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("onefile-it-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// An app folder holding the probe as `bin/probe` and `version.txt`.
    pub fn probe_app(&self, rel: &str, version: &str) -> PathBuf {
        let root = self.path(rel);
        fs::create_dir_all(root.join("bin")).expect("mkdir");
        fs::copy(probe(), root.join("bin/probe")).expect("copy probe");
        fs::write(root.join("bin/version.txt"), format!("{version}\n")).expect("write");
        root
    }

    /// Runs a packed executable with this scratch's cache.
    pub fn run<I, S>(&self, exe: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        with_background_traces(self.run_leaving_background(exe, args))
    }

    /// Like [`Scratch::run`], without waiting for a background updater the
    /// launch started.
    pub fn run_leaving_background<I, S>(&self, exe: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(exe)
            .args(args)
            .output()
            .expect("run packed executable")
    }

    /// Starts a packed executable with its output discarded (for tests that
    /// kill it).
    pub fn spawn_quiet<const N: usize>(&self, exe: &Path, args: [&str; N]) -> std::process::Child {
        self.command(exe)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    }

    /// Starts a packed executable with its output piped (for tests that
    /// signal it, then read what it said with `wait_with_output`).
    pub fn spawn_piped(&self, exe: &Path, args: &[&str]) -> std::process::Child {
        self.command(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    }

    /// A command for a packed executable with this scratch's cache and
    /// traces on.
    pub fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new(exe);
        cmd.env("ONEFILE_CACHE_DIR", self.cache())
            .env("AUTO_UPDATE_DEBUG", "1")
            .env_remove("AUTO_UPDATE_DISABLE")
            .stdin(Stdio::null());
        cmd
    }
}

/// Runs `payload-tools` with `args`.
pub fn tools<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(bin("payload-tools"))
        .args(args)
        .output()
        .expect("run payload-tools")
}

/// Packs `input` into `output` with the probe-app defaults plus `extra`
/// flags; panics with payload-tools' stderr if it fails.
pub fn pack(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![
        "pack".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        "--stub".as_ref(),
    ];
    let stub = stub();
    args.push(stub.as_os_str());
    let has = |flag: &str| extra.contains(&flag);
    if !has("--entry") && input.is_dir() {
        args.extend([OsStr::new("--entry"), OsStr::new("bin/probe")]);
    }
    if !has("--name") {
        args.extend([OsStr::new("--name"), OsStr::new("probeapp")]);
    }
    args.extend(extra.iter().map(OsStr::new));
    let out = tools(&args);
    assert!(out.status.success(), "pack failed: {}", stderr(&out));
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Lines of stderr that are not traces.
pub fn messages(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| !l.starts_with("ONEFILE: ") && !l.starts_with("AUTO UPDATE: "))
        .map(str::to_owned)
        .collect()
}

/// Asserts that this run installed an update, showing its stderr if not.
pub fn assert_updated(out: &Output) {
    assert!(
        update_traces(out).iter().any(|t| t == "Updated."),
        "no update installed:\n{}",
        stderr(out)
    );
}

pub use onefile_tests::{background_updater, update_traces};

/// Writes a file. An executable is written by `cp` from a staging file:
/// had this (multi-threaded) test process opened it for writing, a child
/// forked meanwhile by another test could still hold that descriptor when
/// the file is run, and Linux would refuse with "text file busy".
pub fn write_file(path: &Path, bytes: &[u8], executable: bool) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    let mode = if executable { 0o755 } else { 0o644 };
    if !executable {
        fs::write(path, bytes).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
        return;
    }
    let staging = path.with_extension("staging");
    fs::write(&staging, bytes).expect("write");
    let _ = fs::remove_file(path);
    let copied = Command::new("cp")
        .arg(&staging)
        .arg(path)
        .status()
        .expect("cp");
    assert!(copied.success());
    fs::remove_file(&staging).expect("remove staging");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough to
/// make frames and sizes realistic.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Files (relative path, kind, content or target, exec bit) below `root`,
/// sorted: the comparable picture of a tree.
pub fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for item in fs::read_dir(dir).expect("read_dir") {
        let path = item.expect("entry").path();
        let rel = path
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).expect("stat");
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).expect("readlink");
            out.push((rel, format!("link -> {}", target.display())));
        } else if meta.is_dir() {
            out.push((rel, "dir".into()));
            walk(root, &path, out);
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            let crc = crc32fast::hash(&fs::read(&path).expect("read"));
            out.push((rel, format!("file {} {crc:08x} exec={exec}", meta.len())));
        }
    }
}

/// `payload-tools inspect --json`.
pub fn inspect(exe: &Path) -> serde_json::Value {
    let out = tools(["inspect".as_ref(), "--json".as_ref(), exe.as_os_str()]);
    assert!(out.status.success(), "inspect failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("inspect --json output is JSON")
}

/// Puts a small tmpfs holding a copy of `dir`'s files over `dir`, read-only
/// when `read_only`. Returns false, saying the test is skipped, where
/// mounting is not allowed.
pub fn remount(dir: &Path, read_only: bool, size_kib: u64) -> bool {
    let mounted = mount_copy(dir, read_only, size_kib);
    if !mounted {
        let kind = if read_only { "read-only" } else { "small" };
        skip(&format!(
            "cannot mount a {kind} filesystem here (needs root)"
        ));
    }
    mounted
}

fn mount_copy(dir: &Path, read_only: bool, size_kib: u64) -> bool {
    let saved = dir.with_extension("saved");
    let _ = fs::remove_dir_all(&saved);
    if Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&saved)
        .status()
        .is_err()
    {
        return false;
    }
    let mount = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let target = dir.to_str().expect("utf8");
    if !mount(&[
        "-t",
        "tmpfs",
        "-o",
        &format!("size={size_kib}k"),
        "tmpfs",
        target,
    ]) {
        return false;
    }
    let copied = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cp -a '{}'/. '{}'/",
            saved.display(),
            dir.display()
        ))
        .status()
        .is_ok_and(|s| s.success());
    if !copied || (read_only && !mount(&["-o", "remount,ro", target])) {
        let _ = Command::new("umount").arg(dir).status();
        return false;
    }
    true
}

/// Undoes [`remount`].
pub fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

/// Limits the files `cmd` may write to `bytes` (`RLIMIT_FSIZE`), with
/// SIGXFSZ ignored so that a write past it fails with EFBIG: a full disk
/// that needs no mount.
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit and signal are async-signal-safe; they run in the
    // child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

/// Marks the calling test as skipped for `reason`: says so on stderr and
/// records it in `$ONEFILE_SKIP_LOG`, which `make test` (scripts/test.sh)
/// reads to count the test as skipped instead of passed. The test returns
/// right after calling this.
pub fn skip(reason: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_owned();
    eprintln!("skipped: {reason}");
    if let Some(log) = std::env::var_os("ONEFILE_SKIP_LOG") {
        // One write per line, appended: tests run in parallel threads.
        let line = format!("{test}: {reason}\n");
        if let Ok(mut file) = fs::OpenOptions::new().append(true).create(true).open(log) {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// A second, unprivileged local user for tests of what another user can do
/// to us (or we to them).
#[derive(Clone, Copy, Debug)]
pub struct OtherUser {
    pub uid: u32,
    pub gid: u32,
}

/// Name of the user the tests create when they run as root.
pub const OTHER_USER: &str = "onefile-other";

impl OtherUser {
    /// The other user, created (once) when the tests run as root. `None`,
    /// with the test recorded as skipped, where no user can be created.
    pub fn get() -> Option<OtherUser> {
        static USER: std::sync::OnceLock<Result<OtherUser, String>> = std::sync::OnceLock::new();
        match USER.get_or_init(create_other_user) {
            Ok(user) => Some(*user),
            Err(reason) => {
                skip(reason);
                None
            }
        }
    }

    /// A command run as this user (the tests must be root to use it).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        cmd.uid(self.uid).gid(self.gid);
        cmd.env("HOME", "/nonexistent");
        cmd
    }

    /// Gives `path` to this user.
    pub fn chown(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).expect("chown");
    }
}

fn create_other_user() -> Result<OtherUser, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs a second local user, which only root can create".into());
    }
    let lookup = || -> Option<OtherUser> {
        let out = Command::new("id").arg("-u").arg(OTHER_USER).output().ok()?;
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let out = Command::new("id").arg("-g").arg(OTHER_USER).output().ok()?;
        let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        Some(OtherUser { uid, gid })
    };
    if let Some(user) = lookup() {
        return Ok(user);
    }
    let made = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .arg(OTHER_USER)
        .output();
    match made {
        Ok(out) if out.status.success() || lookup().is_some() => {
            lookup().ok_or_else(|| format!("created {OTHER_USER} but cannot look it up"))
        }
        Ok(out) => Err(format!(
            "useradd {OTHER_USER} failed: {}",
            stderr(&out).trim()
        )),
        Err(e) => Err(format!("cannot run useradd: {e}")),
    }
}

/// The compressed frames of the packed file `exe`, in order, by its frame
/// index (`payload-tools inspect --json`).
pub fn frame_bytes(exe: &Path) -> Vec<Vec<u8>> {
    let info = inspect(exe);
    let bytes = fs::read(exe).expect("read");
    let mut at = info["payload_offset"].as_u64().expect("payload_offset") as usize;
    info["frame_index"]
        .as_array()
        .expect("frame_index")
        .iter()
        .map(|f| {
            let len = f[0].as_u64().expect("compressed_len") as usize;
            at += len;
            bytes[at - len..at].to_vec()
        })
        .collect()
}

// --- Checks: the schedule of update checks ---

/// Makes every app's next update check due in the cache root `cache`, as
/// once the interval or the backoff has passed: each schedule record
/// (`.update-check`, see `bootstrap/src/update/schedule.rs`) says the next
/// check is due when the last one ran, and no release is held back; the
/// rest (failures, validators, locations, mirrors) is kept.
pub fn let_time_pass(cache: &Path) {
    for app in fs::read_dir(cache).into_iter().flatten().flatten() {
        let path = app.path().join(".update-check");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() < 17 {
            let _ = fs::remove_file(&path);
            continue;
        }
        lines[3] = lines[2].clone();
        lines[14] = "0".into();
        fs::write(&path, lines.join("\n") + "\n").expect("rewrite the record");
    }
}

/// The update-check schedule record of the app `name` in the cache root
/// `cache`, if there is one.
pub fn check_record(cache: &Path, name: &str) -> Option<String> {
    fs::read_to_string(cache.join(name).join(".update-check")).ok()
}

// Signed manifests (issue 13): a build with keys uses only update info
// signed by one of them, naming its app, a sequence and an expiry.

/// `body`, a hand-written manifest, as a build trusting the secret key
/// file `key` (as `payload-tools keygen` writes it) and packed with the
/// update URL spec `spec` accepts it: naming `app`, this platform, `spec`,
/// the time now as its sequence and an expiry a day on, signed.
pub fn signed_manifest(body: &str, app: &str, spec: &str, key: &Path) -> String {
    use payload_tools::manifest::{datetime_from_unix, manifest_trusted_comment, with_signatures};
    let text = fs::read_to_string(key).expect("read secret key");
    let secret = minisign::SecretKeyBox::from_string(&text)
        .and_then(|b| b.into_unencrypted_secret_key())
        .expect("an unencrypted minisign secret key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let expires = now as i64 + 86_400;
    // Top-level keys first: a body ending in a table stays as it was.
    let body = format!(
        "app = \"{app}\"\nos = \"{}\"\narch = \"{}\"\nspecs = [\"{spec}\"]\nsequence = {now}\nexpires = {}\n{body}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        datetime_from_unix(expires)
    );
    let comment = manifest_trusted_comment(app, now, Some(expires));
    let signature = minisign::sign(None, &secret, body.as_bytes(), Some(&comment), None)
        .expect("sign")
        .into_string();
    with_signatures(&body, vec![signature])
}

// ---- The background updater ----

/// Whether `pid` runs (a zombie counts as ended).
pub fn process_runs(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            != Some("Z")
    })
}

/// Waits until the background updater the launch of `out` started (if
/// any) has ended; panics after `bound`.
pub fn wait_for_background_updater(out: &Output, bound: std::time::Duration) {
    let Some(pid) = background_updater(out) else {
        return;
    };
    let started = std::time::Instant::now();
    while process_runs(pid) {
        assert!(
            started.elapsed() < bound,
            "background updater {pid} still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Kills the background updater the launch of `out` started (if any) and
/// waits until it has ended: for tests whose next step must not meet it.
pub fn stop_background_updater(out: &Output) {
    if let Some(pid) = background_updater(out) {
        // SAFETY: a signal to a process this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        wait_for_background_updater(out, std::time::Duration::from_secs(10));
    }
}

/// The background updaters at work for the cache folder `cache` (found by
/// their environment: `ONEFILE_UPDATE=background` and that cache), for
/// launches without traces.
pub fn background_updaters_of(cache: &Path) -> Vec<u32> {
    let wanted_cache = format!("ONEFILE_CACHE_DIR={}", cache.display()).into_bytes();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if vars.contains(&&b"ONEFILE_UPDATE=background"[..])
            && vars.contains(&wanted_cache.as_slice())
            && process_runs(pid)
        {
            found.push(pid);
        }
    }
    found
}

/// `out` once the background updater its launch started (if any) has
/// ended, with that updater's traces (from the trace file the launcher
/// named) after the launcher's: an update reads the same whether the
/// launcher finished it or handed it off.
pub fn with_background_traces(mut out: Output) -> Output {
    let Some(pid) = background_updater(&out) else {
        return out;
    };
    wait_for_background_updater(&out, std::time::Duration::from_secs(180));
    onefile_tests::append_background_traces(&mut out, pid);
    out
}

/// Runs `exe` with an app that lives until the updater reports a final
/// state (the status file's `ready`, `up-to-date`, `failed`, `not-due`; 120
/// s at most): the network work is done before the app exits, so the
/// launcher hands nothing off, however loaded the machine.
pub fn run_until_ready(s: &Scratch, exe: &Path) -> Output {
    let seen = s.path("status-seen");
    s.run(exe, ["watch-status", seen.to_str().expect("utf8"), "120"])
}
