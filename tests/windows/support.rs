//! Helpers of the Windows tests: where the `.exe` files are, a fresh
//! folder per test, packing the probe and running the result. They mirror
//! `it/support.rs` (which is Unix-only for now) name for name, so the two
//! can become one.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The folder holding `bootstrap.exe` and `payload-tools.exe` of the same
/// build profile as this test (`make test-windows` builds them first), or
/// `$ONEFILE_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ONEFILE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let me = std::env::current_exe().expect("test executable path");
    // target/windows/<triple>/<profile>/deps/windows-<hash>.exe
    me.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}.exe"));
    assert!(
        path.is_file(),
        "{} is missing: run `make test-windows`",
        path.display()
    );
    path
}

pub fn stub() -> PathBuf {
    bin("bootstrap")
}

/// The native test app (see `tests/src/bin/probe.rs`), built for Windows.
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
                .prefix("onefile-win-")
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

    /// An app folder holding the probe as `bin/probe.exe` and `version.txt`.
    pub fn probe_app(&self, rel: &str, version: &str) -> PathBuf {
        let root = self.path(rel);
        fs::create_dir_all(root.join("bin")).expect("mkdir");
        fs::copy(probe(), root.join("bin/probe.exe")).expect("copy probe");
        fs::write(root.join("bin/version.txt"), format!("{version}\n")).expect("write");
        root
    }

    /// Runs a packed executable with this scratch's cache.
    pub fn run<I, S>(&self, exe: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        with_background_traces(
            self.command(exe)
                .args(args)
                .output()
                .expect("run packed executable"),
        )
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

/// Runs `payload-tools.exe` with `args`.
pub fn tools<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(bin("payload-tools"))
        .args(args)
        .output()
        .expect("run payload-tools.exe")
}

/// Packs `input` into `output` with `payload-tools.exe`, the probe-app
/// defaults plus `extra` flags; panics with its stderr if it fails.
pub fn pack(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let stub = stub();
    let mut args: Vec<&OsStr> = vec![
        "pack".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        "--stub".as_ref(),
        stub.as_os_str(),
    ];
    let has = |flag: &str| extra.contains(&flag);
    if !has("--entry") && input.is_dir() {
        args.extend([OsStr::new("--entry"), OsStr::new("bin/probe.exe")]);
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

/// The `ONEFILE: ` traces, prefix removed.
pub fn launch_traces(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter_map(|l| l.strip_prefix("ONEFILE: "))
        .map(str::to_owned)
        .collect()
}

pub use onefile_tests::update_traces;

/// Marks the calling test as skipped for `reason`, as `it/support.rs`
/// does: said on stderr and recorded in `$ONEFILE_SKIP_LOG`, which
/// `make test-windows` reads to count it as skipped, not passed.
pub fn skip(reason: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_owned();
    eprintln!("skipped: {reason}");
    if let Some(log) = std::env::var_os("ONEFILE_SKIP_LOG") {
        let line = format!("{test}: {reason}\n");
        if let Ok(mut file) = fs::OpenOptions::new().append(true).create(true).open(log) {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// Waits for the background updater the launch of `out` started (if it
/// started one: the app exited while the update still waited on the
/// network, which Wine's pace makes common) and appends its traces, from
/// its trace file, to `out`'s stderr: the launch's traces then tell the
/// whole update, as they did when the launcher finished it itself.
pub fn with_background_traces(mut out: Output) -> Output {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{
        OpenProcess, PROCESS_SYNCHRONIZE, WaitForSingleObject,
    };
    let Some(pid) = onefile_tests::background_updater(&out) else {
        return out;
    };
    // SAFETY: a process handle of our own, closed below.
    let process = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    if !process.is_null() {
        // SAFETY: a valid handle; the wait is bounded.
        unsafe {
            WaitForSingleObject(process, 180_000);
            CloseHandle(process);
        }
    }
    onefile_tests::append_background_traces(&mut out, pid);
    out
}
