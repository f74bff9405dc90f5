//! Hardening of the `payload-tools` command and of a new user's first
//! steps (issue 10): secrets never readable by others, `unpack` in shared
//! folders, stubs that are stubs, clear refusals of what cannot work,
//! `--argv0`, traces that say what they count, and `make` that installs
//! nothing behind the user's back.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A scratch folder that another user may enter (scratch folders are 0700).
fn open_scratch() -> Scratch {
    let s = Scratch::new();
    chmod(s.dir.path(), 0o755);
    s
}

/// A user id that is neither us nor the test's other user: a third party.
const THIRD_PARTY: u32 = 65534;

fn give_to_third_party(path: &Path) {
    std::os::unix::fs::lchown(path, Some(THIRD_PARTY), Some(THIRD_PARTY)).expect("chown");
}

// ---- 1. keygen: the secret key is never readable by anyone else ----------

/// How many key pairs the watcher races against. The old code (temporary
/// file created 0644, then chmod-ed) lost 18 to 30 of 30 keys to it.
const KEYGEN_RUNS: usize = 30;

#[test]
fn keygen_secret_key_is_never_readable_by_another_user() {
    let Some(other) = OtherUser::get() else {
        return;
    };
    let s = open_scratch();
    let keys = s.path("keys");
    fs::create_dir(&keys).expect("mkdir");
    chmod(&keys, 0o755);
    let stop = s.path("stop");
    let mut snoop = other
        .command(env!("CARGO_BIN_EXE_snoop"))
        .arg(&keys)
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start snoop");
    let mut lines = BufReader::new(snoop.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("ready"),
        "the watcher did not start"
    );
    for i in 0..KEYGEN_RUNS {
        let base = keys.join(format!("k{i}"));
        let out = tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mode = fs::metadata(keys.join(format!("k{i}.key")))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the secret key's mode");
    }
    fs::write(&stop, b"").expect("stop");
    let report: Vec<String> = lines.map_while(Result::ok).collect();
    snoop.wait().expect("snoop");
    let stolen = report.iter().filter(|l| l.starts_with("stolen ")).count();
    let opened_public = report
        .iter()
        .filter(|l| l.starts_with("opened ") && l.contains(".pub"))
        .count();
    // The watcher must have been fast enough to open the public keys'
    // files as they appeared; else it proves nothing about the secret ones.
    assert!(
        opened_public > 0,
        "the watcher opened no file at all: {report:?}"
    );
    assert_eq!(
        stolen, 0,
        "another user read {stolen} of {KEYGEN_RUNS} secret keys: {report:?}"
    );
}

#[test]
fn keygen_refuses_a_folder_others_can_write() {
    let s = Scratch::new();
    for (name, mode) in [("world", 0o777), ("sticky", 0o1777), ("group", 0o775)] {
        let dir = s.path(name);
        fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, mode);
        let out = tools([
            "keygen".as_ref(),
            "-o".as_ref(),
            dir.join("release").as_os_str(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines.len() == 2
                && lines[0].contains("not a private folder")
                && lines[1].starts_with("payload-tools: hint:"),
            "{name}: {err}"
        );
        assert_eq!(
            fs::read_dir(&dir).expect("ls").count(),
            0,
            "{name}: wrote something"
        );
    }
}

// ---- 3. unpack into a folder others can write ---------------------------

/// An app whose files all live below `keys/`, as a victim might unpack.
fn keys_app(s: &Scratch) -> PathBuf {
    let app = s.path("keysapp");
    write_file(&app.join("keys/authorized_keys"), b"packed key\n", false);
    write_file(&app.join("keys/run"), b"#!/bin/sh\n", true);
    let exe = s.path("keys.bin");
    pack(&app, &exe, &["--entry", "keys/run", "--name", "keys"]);
    exe
}

/// Runs `payload-tools unpack EXE -o OUT` as `user` from a process whose
/// id is known beforehand: `plant(pid)` runs first, as an attacker who
/// guessed it would (the old code staged into `.<out>.tmp-<pid>`).
fn unpack_as(
    user: &OtherUser,
    exe: &Path,
    out: &Path,
    plant: impl FnOnce(u32),
) -> std::process::Output {
    let mut child = user
        .command("sh")
        .arg("-c")
        .arg(r#"echo $$; read _; exec "$0" "$@""#)
        .arg(bin("payload-tools"))
        .args([
            "unpack".as_ref(),
            exe.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start unpack");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut pid = String::new();
    stdout.read_line(&mut pid).expect("pid");
    plant(pid.trim().parse().expect("pid"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    child.wait_with_output().expect("unpack")
}

#[test]
fn unpack_in_a_shared_folder_never_follows_what_others_planted() {
    let Some(victim) = OtherUser::get() else {
        return;
    };
    let s = open_scratch();
    let exe = keys_app(&s);
    let home = s.path("home");
    let ssh = home.join(".ssh");
    fs::create_dir_all(&ssh).expect("mkdir");
    for dir in [&home, &ssh] {
        chmod(dir, 0o700);
        victim.chown(dir);
    }
    let shared = s.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o1777);

    // A third party plants the old staging name: a folder the victim cannot
    // empty or remove (sticky), holding `keys -> ~victim/.ssh`.
    let out = shared.join("out");
    let mut planted_name = String::new();
    let run = unpack_as(&victim, &exe, &out, |pid| {
        planted_name = format!(".out.tmp-{pid}");
        let planted = shared.join(&planted_name);
        fs::create_dir(&planted).expect("plant");
        symlink(&ssh, planted.join("keys")).expect("plant link");
        chmod(&planted, 0o755);
        give_to_third_party(&planted.join("keys"));
        give_to_third_party(&planted);
    });
    assert!(
        !ssh.join("authorized_keys").exists(),
        "unpack wrote into the victim's ~/.ssh through a planted link: {}",
        stderr(&run)
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let meta = fs::symlink_metadata(&out).expect("out");
    assert!(meta.is_dir(), "out is a real folder");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        victim.uid,
        "out is the victim's own folder, not the planted one"
    );
    assert_eq!(
        fs::read(out.join("keys/authorized_keys")).expect("unpacked"),
        b"packed key\n"
    );

    // A link planted at the output's own name is refused, not followed.
    let out2 = shared.join("out2");
    symlink(&ssh, &out2).expect("plant");
    give_to_third_party(&out2);
    let run = unpack_as(&victim, &exe, &out2, |_| {});
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        fs::read_dir(&ssh).expect("ls").next().is_none(),
        "nothing reaches ~/.ssh"
    );
    let leftovers: Vec<String> = fs::read_dir(&shared)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out") && *n != planted_name)
        .collect();
    assert!(leftovers.is_empty(), "left {leftovers:?}");
}

/// Item 3, one level up: a link that another user planted in a shared folder
/// without the sticky bit, on the way to the output, would lead the victim's
/// unpack into the victim's own files: refused, nothing written.
#[test]
fn unpack_never_follows_a_link_another_user_planted_above_the_output() {
    let Some(victim) = OtherUser::get() else {
        return;
    };
    let s = open_scratch();
    let exe = keys_app(&s);
    let config = s.path("home/.config");
    fs::create_dir_all(&config).expect("mkdir");
    for dir in [&s.path("home"), &config] {
        chmod(dir, 0o700);
        victim.chown(dir);
    }
    let open = s.path("open");
    fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    give_to_third_party(&open);
    symlink(&config, open.join("sub")).expect("plant link");
    give_to_third_party(&open.join("sub"));
    let run = unpack_as(&victim, &exe, &open.join("sub/systemd"), |_| {});
    assert_refused(&run, "will not unpack into");
    assert!(
        fs::read_dir(&config).expect("ls").next().is_none(),
        "nothing reaches ~/.config"
    );
}

// ---- 19. only a onefile stub is accepted as a stub ----------------------

/// Asserts a refusal: exit 1, and the first stderr line says `expect`.
fn assert_refused(out: &std::process::Output, expect: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .next()
            .is_some_and(|l| l.starts_with("payload-tools: error: ") && l.contains(expect)),
        "expected {expect:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn pack_and_verify_refuse_a_program_that_is_not_a_stub() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let ls = Path::new("/bin/ls");
    for not_a_stub in [ls.to_owned(), bin("payload-tools")] {
        let exe = s.path("ls.bin");
        let out = tools([
            "pack".as_ref(),
            app.as_os_str(),
            "-o".as_ref(),
            exe.as_os_str(),
            "--entry".as_ref(),
            "bin/probe".as_ref(),
            "--stub".as_ref(),
            not_a_stub.as_os_str(),
        ]);
        assert_refused(&out, "not a onefile stub");
        assert!(!exe.exists(), "{}: wrote an output", not_a_stub.display());
    }

    // A file made by hand with `ls` in front of a valid payload.
    let crafted = s.path("crafted.bin");
    crate::craft::Craft {
        name: "crafted".into(),
        version: "1".into(),
        entry: "bin/x".into(),
        unpacked_size: 5,
        frames: vec![
            crate::craft::TarCraft::new()
                .file("bin/x", b"hello", 0o755)
                .finish(true),
        ],
        extra_metadata: String::new(),
    }
    .write(ls, &crafted);
    let out = tools(["verify".as_ref(), crafted.as_os_str()]);
    assert_refused(&out, "does not start with a onefile stub");

    // The same payload behind the real stub is intact.
    crate::craft::Craft {
        name: "crafted".into(),
        version: "1".into(),
        entry: "bin/x".into(),
        unpacked_size: 5,
        frames: vec![
            crate::craft::TarCraft::new()
                .file("bin/x", b"hello", 0o755)
                .finish(true),
        ],
        extra_metadata: String::new(),
    }
    .write(&stub(), &crafted);
    let out = tools(["verify".as_ref(), crafted.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

// ---- 17, 18, 20. pack refuses what cannot work --------------------------

/// `payload-tools pack APP -o OUT --stub STUB --entry bin/probe EXTRA...`.
fn pack_args(app: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let stub = stub();
    let mut args = vec![
        "pack".as_ref(),
        app.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--stub".as_ref(),
        stub.as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    tools(&args)
}

#[test]
fn updating_builds_need_a_name_that_does_not_follow_the_file_name() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let out = s.path("myapp-1.0.bin");
    let spec = [
        "--version",
        "1.0",
        "--update-url-spec",
        "https://example.org/{VERSION}/u.toml",
    ];
    let refused = pack_args(&app, &out, &spec);
    assert_refused(&refused, "needs --name");
    assert!(
        stderr(&refused).contains("myapp-1.0"),
        "{}",
        stderr(&refused)
    );
    assert!(!out.exists());
    let mut named = spec.to_vec();
    named.extend(["--name", "myapp"]);
    let ok = pack_args(&app, &out, &named);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // Without updates the file name is a fine default.
    let ok = pack_args(&app, &s.path("plain-1.0.bin"), &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn pack_refuses_update_urls_that_can_never_work() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let out = s.path("a.bin");
    for (spec, expect) in [
        ("example.org/{VERSION}/update.toml", "no scheme"),
        ("https://example.org/{VERSOIN}/update.toml", "'{VERSOIN}'"),
        (
            "http://example.org/{VERSION}/update.toml",
            "--allow-insecure-http",
        ),
    ] {
        let refused = pack_args(&app, &out, &["--name", "a", "--update-url-spec", spec]);
        assert_refused(&refused, expect);
        assert!(!out.exists(), "{spec}: wrote an output");
    }
    let ok = pack_args(
        &app,
        &out,
        &[
            "--name",
            "a",
            "--allow-insecure-http",
            "--update-url-spec",
            "http://example.org/{VERSION}/update.toml",
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let refused = pack_args(
        &app,
        &s.path("b.bin"),
        &[
            "--name",
            "b",
            "--update-url-spec",
            "https://example.org/{VERSION}/update.toml",
            "--auto-update-toml-file",
            s.path("u.toml").to_str().expect("utf8"),
            "--download-url",
            "example.org/b.bin",
        ],
    );
    assert_refused(&refused, "--download-url");
}

#[test]
fn pack_and_the_key_flags_say_what_is_wrong() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let keys = s.path("release");
    let made = tools(["keygen".as_ref(), "-o".as_ref(), keys.as_os_str()]);
    assert!(made.status.success(), "{}", stderr(&made));
    let (secret, public) = (s.path("release.key"), s.path("release.pub"));
    let toml = s.path("site/update.toml");
    let toml = toml.to_str().expect("utf8");
    let spec = "https://example.org/{VERSION}/update.toml";
    let base = ["--name", "a", "--update-url-spec", spec];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }

    let out = pack_args(
        &app,
        &s.path("a.bin"),
        &with(
            &base,
            &[
                "--auto-update-toml-file",
                toml,
                "--key",
                public.to_str().expect("utf8"),
            ],
        ),
    );
    assert_refused(&out, "is a public key");
    let out = pack_args(
        &app,
        &s.path("a.bin"),
        &with(&base, &["--public-key", secret.to_str().expect("utf8")]),
    );
    assert_refused(&out, "is a secret key");
    let out = tools([
        "sign".as_ref(),
        stub().as_os_str(),
        "--key".as_ref(),
        public.as_os_str(),
    ]);
    assert!(
        !stderr(&out).contains("fill whole buffer"),
        "{}",
        stderr(&out)
    );

    // --key without an update.toml to sign would silently sign nothing.
    let out = pack_args(
        &app,
        &s.path("a.bin"),
        &with(
            &base,
            &[
                "--public-key",
                public.to_str().expect("utf8"),
                "--key",
                secret.to_str().expect("utf8"),
            ],
        ),
    );
    assert_refused(&out, "nothing would be signed");
    assert!(!s.path("a.bin").exists());
}

#[test]
fn appended_bytes_are_named_as_such() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("app.bin");
    pack(&app, &exe, &[]);
    let mut bytes = fs::read(&exe).expect("read");
    let packed_len = bytes.len();
    bytes.extend_from_slice(b"appended by a download tool\n");
    let longer = s.path("longer.bin");
    write_file(&longer, &bytes, true);
    for command in ["verify", "inspect"] {
        let out = tools([command.as_ref(), longer.as_os_str()]);
        assert_refused(&out, "28 bytes appended");
        let err = stderr(&out);
        assert!(!err.contains("truncated"), "{command}: {err}");
        assert!(
            err.contains(&format!("truncate -s {packed_len}")),
            "{command}: {err}"
        );
    }
    // A download cut short is not called appended.
    let cut = s.path("cut.bin");
    write_file(&cut, &bytes[..packed_len / 2], true);
    let out = tools(["verify".as_ref(), cut.as_os_str()]);
    assert_refused(&out, "carries no payload");
    assert!(!stderr(&out).contains("appended"), "{}", stderr(&out));
}

#[test]
fn pack_never_writes_over_its_input_or_stub() {
    let s = Scratch::new();
    let program = s.path("tool");
    fs::copy(probe(), &program).expect("copy");
    let before = fs::read(&program).expect("read");
    let out = tools([
        "pack".as_ref(),
        program.as_os_str(),
        "-o".as_ref(),
        program.as_os_str(),
        "--stub".as_ref(),
        stub().as_os_str(),
    ]);
    assert_refused(&out, "input program itself");
    assert_eq!(
        fs::read(&program).expect("read"),
        before,
        "the input was replaced"
    );

    let my_stub = s.path("bootstrap");
    fs::copy(stub(), &my_stub).expect("copy");
    let out = tools([
        "pack".as_ref(),
        probe().as_os_str(),
        "-o".as_ref(),
        my_stub.as_os_str(),
        "--stub".as_ref(),
        my_stub.as_os_str(),
    ]);
    assert_refused(&out, "the stub itself");
    assert_eq!(
        fs::read(&my_stub).expect("read"),
        fs::read(stub()).expect("read")
    );
}

// ---- 22. --argv0 entry: interpreters that find their tree from argv[0] --

/// Copies this machine's Python interpreter into `root` as a relocatable
/// tree: `python/bin/pythonX.Y`, its stdlib landmark `os.py`, `encodings`
/// (needed at startup), `lib-dynload`, and a module of the app's own,
/// `onefile_probe`, which exists only in the tree. Prints the entry.
const COPY_PYTHON: &str = r#"
import os, shutil, sys, sysconfig
root = sys.argv[1]
ver = "python%d.%d" % sys.version_info[:2]
stdlib = sysconfig.get_path("stdlib")
os.makedirs(root + "/python/bin")
shutil.copy2(os.path.realpath(sys.executable), root + "/python/bin/" + ver)
lib = root + "/python/lib/" + ver
os.makedirs(lib + "/lib-dynload")
shutil.copy2(stdlib + "/os.py", lib)
shutil.copytree(stdlib + "/encodings", lib + "/encodings",
                ignore=shutil.ignore_patterns("__pycache__"))
with open(lib + "/onefile_probe.py", "w") as f:
    f.write("print('probe imported')\n")
print("python/bin/" + ver)
"#;

#[test]
fn argv0_entry_lets_an_interpreter_find_its_own_tree() {
    let s = Scratch::new();
    let app = s.path("pyapp");
    let made = match Command::new("python3")
        .arg("-c")
        .arg(COPY_PYTHON)
        .arg(&app)
        .output()
    {
        Ok(out) => out,
        Err(_) => return skip("needs python3 to copy a real interpreter"),
    };
    assert!(made.status.success(), "{}", stderr(&made));
    let entry = stdout(&made).trim().to_owned();
    let run = |which: &str| {
        let exe = s.path(&format!("py-{which}.bin"));
        pack(
            &app,
            &exe,
            &[
                "--entry",
                &entry,
                "--name",
                "py",
                "--version",
                which,
                "--argv0",
                which,
            ],
        );
        s.command(&exe)
            .args(["-c", "import sys, onefile_probe; print(sys.prefix)"])
            .env_remove("PYTHONHOME")
            .env_remove("PYTHONPATH")
            .output()
            .expect("run")
    };

    // As the packed file's path, argv[0] leads the interpreter elsewhere:
    // its own tree, with the app's module, is not found.
    let packed = run("packed");
    assert!(!packed.status.success(), "{}", stdout(&packed));
    assert!(
        stderr(&packed).contains("No module named 'onefile_probe'"),
        "{}",
        stderr(&packed)
    );

    let entry_run = run("entry");
    assert!(entry_run.status.success(), "{}", stderr(&entry_run));
    let text = stdout(&entry_run);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"probe imported"), "{text}");
    assert!(
        lines
            .get(1)
            .is_some_and(|prefix| Path::new(prefix).starts_with(s.cache().join("py"))),
        "sys.prefix is the unpacked tree: {text}"
    );
    assert_eq!(inspect(&s.path("py-entry.bin"))["argv0"], "entry");
}

// ---- 23. traces say what they count; no colour codes off a terminal -----

/// The project's sources (scripts, demo): `$ONEFILE_SRC_DIR`, else this
/// checkout.
fn src_dir() -> PathBuf {
    std::env::var_os("ONEFILE_SRC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

#[test]
fn the_launch_trace_names_compressed_and_unpacked_sizes() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("app.bin");
    pack(&app, &exe, &[]);
    let info = inspect(&exe);
    let out = s.run(&exe, ["print", "x"]);
    let running = stderr(&out)
        .lines()
        .find(|l| l.starts_with("ONEFILE: Running"))
        .map(str::to_owned)
        .unwrap_or_default();
    let compressed = info["payload_len"].as_u64().expect("payload_len");
    let unpacked = info["unpacked_size"].as_u64().expect("unpacked_size");
    assert!(
        running.contains(&format!("compressed payload of {compressed} bytes"))
            && running.contains(&format!("{unpacked} bytes unpacked")),
        "{running}"
    );
}

#[test]
fn demo_and_cli_print_no_escape_codes_into_a_pipe() {
    let s = Scratch::new();
    if Command::new("python3").arg("-V").output().is_err() {
        return skip("the demo needs python3");
    }
    let demo = Command::new("bash")
        .arg(src_dir().join("demo/demo.sh"))
        .current_dir(s.dir.path())
        .env("BIN_DIR", bin_dir())
        .env("DEMO_DIR", "demo-work")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run the demo");
    let (out, err) = (stdout(&demo), stderr(&demo));
    assert!(demo.status.success(), "{out}\n{err}");
    assert!(
        out.contains("This is version 1.1"),
        "the demo updated: {out}"
    );
    assert!(
        !out.contains('\x1b') && !err.contains('\x1b'),
        "escape codes in a pipe: {out:?}"
    );
    for args in [
        &["--help"][..],
        &["pack", "--no-such-flag"],
        &["pack", "--help"],
    ] {
        let out = tools(args);
        assert!(
            !stdout(&out).contains('\x1b') && !stderr(&out).contains('\x1b'),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

// ---- 21. make installs nothing behind the user's back -------------------

/// A copy of the project's make files, and a PATH on which `cargo` and
/// `cc` exist (as no-ops), `make`, `bash` and a few base tools are real,
/// `apt-get`, `sudo` and `rustup` only record that they were called, and
/// everything else a command needs is missing.
struct BareMachine {
    src: PathBuf,
    path: PathBuf,
    calls: PathBuf,
}

impl BareMachine {
    fn new(s: &Scratch) -> Option<BareMachine> {
        let (make, bash) = (Path::new("/usr/bin/make"), Path::new("/bin/bash"));
        if !make.exists() || !bash.exists() {
            skip("needs /usr/bin/make and /bin/bash");
            return None;
        }
        let src = s.path("src");
        fs::create_dir(&src).expect("mkdir");
        let copied = Command::new("cp")
            .arg("-r")
            .args(["Makefile", "scripts", "demo"].map(|f| src_dir().join(f)))
            .arg(&src)
            .status()
            .expect("cp");
        assert!(copied.success());
        let path = s.path("bin");
        fs::create_dir(&path).expect("mkdir");
        let calls = s.path("calls.log");
        for tool in ["cargo", "cc"] {
            write_file(&path.join(tool), b"#!/bin/sh\nexit 0\n", true);
        }
        for tool in ["apt-get", "sudo", "rustup"] {
            let script = format!("#!/bin/sh\necho \"{tool} $*\" >>'{}'\n", calls.display());
            write_file(&path.join(tool), script.as_bytes(), true);
        }
        symlink(make, path.join("make")).expect("ln");
        symlink(bash, path.join("bash")).expect("ln");
        // Base tools every machine has (the old script asked `id` who it ran as).
        for tool in ["id", "cat", "mkdir", "rm"] {
            if let Some(real) = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
            {
                symlink(real, path.join(tool)).expect("ln");
            }
        }
        Some(BareMachine { src, path, calls })
    }

    fn make(&self, cmd: Command, target: &[&str]) -> (std::process::Output, String) {
        let mut cmd = cmd;
        // CARGO (set by cargo test) would make the Makefile use the real one.
        cmd.arg("-C")
            .arg(&self.src)
            .args(target)
            .env("PATH", &self.path)
            .env_remove("CARGO");
        let out = cmd.output().expect("make");
        let calls = fs::read_to_string(&self.calls).unwrap_or_default();
        let _ = fs::remove_file(&self.calls);
        (out, calls)
    }
}

#[test]
fn make_lists_what_is_missing_and_installs_nothing_unasked() {
    let s = open_scratch();
    let Some(machine) = BareMachine::new(&s) else {
        return;
    };
    let check_demo = |out: &std::process::Output, calls: &str, who: &str| {
        let text = format!("{}{}", stdout(out), stderr(out));
        assert!(!out.status.success(), "{who}: make demo went on: {text}");
        assert!(calls.is_empty(), "{who}: make demo ran {calls:?}: {text}");
        assert!(
            text.contains("python3") && text.contains("serves the demo's updates"),
            "{who}: the list names python3 and why: {text}"
        );
        assert!(
            !text.contains("minisign") && !text.contains("nginx"),
            "{who}: the demo does not need them: {text}"
        );
    };
    // As root: a check, no installation.
    let (out, calls) = machine.make(Command::new("make"), &["demo"]);
    check_demo(&out, &calls, "root");
    let (out, calls) = machine.make(Command::new("make"), &["test"]);
    let text = stderr(&out);
    assert!(
        !out.status.success() && calls.is_empty(),
        "{calls:?} {text}"
    );
    for tool in ["zstd", "gzip", "curl"] {
        assert!(text.contains(tool), "make test lists {tool}: {text}");
    }

    // A user who is not root gets the same list.
    if let Some(user) = OtherUser::get() {
        let (out, calls) = machine.make(user.command("make"), &["demo"]);
        check_demo(&out, &calls, "another user");
    }

    // Asked to, as root: only what the demo needs, each named with why.
    let (out, calls) = machine.make(Command::new("make"), &["deps", "FOR=demo"]);
    assert!(
        calls.lines().any(|l| l.starts_with("apt-get install")),
        "{calls:?}"
    );
    for line in calls.lines().filter(|l| l.starts_with("apt-get install")) {
        let packages: Vec<&str> = line
            .split_whitespace()
            .filter(|w| !w.starts_with('-'))
            .skip(2)
            .collect();
        assert_eq!(packages, ["python3"], "{line}");
    }
    assert!(
        stdout(&out).contains("serves the demo's updates"),
        "says why: {}",
        stdout(&out)
    );
}
