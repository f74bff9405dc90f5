//! `payload-tools`: pack, inspect, verify, unpack and their refusals; the
//! packed format's promises (deterministic, a plain .tar.zst inside, frames
//! cut at entries and stable from build to build).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use crate::craft::{Craft, TarCraft};
use crate::support::*;

/// A tree with nested folders, empty files and folders, exec bits, inner
/// symlinks and a large file.
fn rich_tree(s: &Scratch) -> std::path::PathBuf {
    let app = s.probe_app("app", "1.0");
    write_file(&app.join("lib/python3.11/os.py"), b"# os\n", false);
    write_file(&app.join("lib/python3.11/empty.py"), b"", false);
    write_file(&app.join("lib/libfoo.so.1"), &noise(200_000, 1), true);
    write_file(&app.join("share/big.dat"), &noise(9 << 20, 2), false);
    fs::create_dir_all(app.join("share/empty-dir")).expect("mkdir");
    symlink("libfoo.so.1", app.join("lib/libfoo.so")).expect("symlink");
    symlink("../lib/python3.11", app.join("bin/pylib")).expect("symlink");
    app
}

fn payload_bytes(exe: &Path) -> Vec<u8> {
    let info = inspect(exe);
    let off = info["payload_offset"].as_u64().expect("offset") as usize;
    let len = info["payload_len"].as_u64().expect("len") as usize;
    fs::read(exe).expect("read")[off..off + len].to_vec()
}

#[test]
fn packing_is_deterministic_whatever_the_thread_count() {
    let s = Scratch::new();
    let app = rich_tree(&s);
    let a = s.path("a.bin");
    let b = s.path("b.bin");
    let c = s.path("c.bin");
    pack(&app, &a, &["--version", "1.0"]);
    pack(&app, &b, &["--version", "1.0"]);
    pack(&app, &c, &["--version", "1.0", "--threads", "1"]);
    let a = fs::read(a).expect("read");
    assert!(a == fs::read(b).expect("read"), "two packs differ");
    assert!(
        a == fs::read(c).expect("read"),
        "thread count changed the output"
    );
}

#[test]
fn payload_is_a_plain_tar_zst() {
    let s = Scratch::new();
    let app = rich_tree(&s);
    let exe = s.path("app.bin");
    pack(&app, &exe, &[]);
    let payload = s.path("payload.tar.zst");
    fs::write(&payload, payload_bytes(&exe)).expect("write");
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | tar -tvf -", payload.display()))
        .output()
        .expect("zstd | tar");
    assert!(listing.status.success(), "{}", stderr(&listing));
    let text = stdout(&listing);
    for needle in [
        "bin/probe",
        "lib/libfoo.so -> libfoo.so.1",
        "share/empty-dir/",
        "share/big.dat",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(
        text.lines().all(|l| l.contains(" 0/0 ")),
        "owner normalised:\n{text}"
    );
}

#[test]
fn large_files_are_split_across_frames_of_their_own() {
    let s = Scratch::new();
    let app = rich_tree(&s);
    let exe = s.path("app.bin");
    pack(&app, &exe, &[]);
    let info = inspect(&exe);
    let frames = info["frame_index"].as_array().expect("frames");
    assert_eq!(info["frames"].as_u64(), Some(frames.len() as u64));
    let lens: Vec<u64> = frames
        .iter()
        .map(|f| f[1].as_u64().expect("tar_len"))
        .collect();
    // The 9 MiB file's entry: its 512-byte header in a frame of its own,
    // then its data in frames of at most 2 MiB that hold nothing else.
    let big = 9u64 << 20;
    let split = (0..lens.len()).any(|i| {
        let mut sum = 0;
        lens[i] == 512
            && lens[i + 1..]
                .iter()
                .take_while(|&&l| l <= 2 << 20)
                .any(|l| {
                    sum += l;
                    sum == big
                })
    });
    assert!(split, "{lens:?}");
}

#[test]
fn unchanged_files_keep_their_compressed_bytes() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    for i in 0..300 {
        write_file(
            &app.join(format!("data/f{i:03}")),
            &noise(100_000, i),
            false,
        );
    }
    let a = s.path("a.bin");
    pack(&app, &a, &[]);
    write_file(&app.join("data/f150"), &noise(123_456, 999), false);
    let b = s.path("b.bin");
    pack(&app, &b, &[]);
    let (fa, fb) = (frame_bytes(&a), frame_bytes(&b));
    assert!(fa.len() >= 8, "{} frames", fa.len());
    let shared = fb.iter().filter(|f| fa.contains(f)).count();
    assert!(
        shared + 2 >= fa.len(),
        "one changed file changed {} of {} frames",
        fa.len() - shared,
        fa.len()
    );
}

#[test]
fn inspect_verify_unpack_round_trip() {
    let s = Scratch::new();
    let app = rich_tree(&s);
    let exe = s.path("app.bin");
    pack(&app, &exe, &["--version", "4.2", "--name", "rich"]);
    let info = inspect(&exe);
    for key in [
        "format_version",
        "name",
        "version",
        "entry",
        "payload_offset",
        "payload_len",
        "payload_crc32",
        "unpacked_size",
        "frames",
    ] {
        assert!(!info[key].is_null(), "inspect --json lacks {key}");
    }
    assert_eq!(info["name"], "rich");
    assert_eq!(info["version"], "4.2");
    assert_eq!(info["entry"], "bin/probe");
    assert_eq!(info["format_version"], 1);
    assert_eq!(info["self_test"], 1, "the stub answers the self-test");
    assert_eq!(info["stub_self_test"], 1, "the stub's marker");
    let shown = tools(["inspect".as_ref(), exe.as_os_str()]);
    assert!(
        stdout(&shown).contains("self-test       protocol 1: an updater runs it"),
        "{}",
        stdout(&shown)
    );
    assert_eq!(
        info["payload_offset"].as_u64(),
        Some(fs::metadata(stub()).expect("stat").len())
    );

    let text = tools(["inspect".as_ref(), exe.as_os_str()]);
    assert!(
        stdout(&text).contains("entry           bin/probe"),
        "{}",
        stdout(&text)
    );

    let ok = tools(["verify".as_ref(), exe.as_os_str()]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("ok: "));

    let out_dir = s.path("unpacked");
    let unpacked = tools([
        "unpack".as_ref(),
        exe.as_os_str(),
        "-o".as_ref(),
        out_dir.as_os_str(),
    ]);
    assert!(unpacked.status.success(), "{}", stderr(&unpacked));
    assert_eq!(snapshot(&out_dir), snapshot(&app));

    let again = tools([
        "unpack".as_ref(),
        exe.as_os_str(),
        "-o".as_ref(),
        out_dir.as_os_str(),
    ]);
    assert!(!again.status.success(), "refuses a non-empty folder");
}

#[test]
fn verify_names_what_is_wrong() {
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let exe = s.path("app.bin");
    pack(&app, &exe, &[]);
    let info = inspect(&exe);
    let mut bytes = fs::read(&exe).expect("read");
    let last_payload_byte = (info["metadata_offset"].as_u64().expect("off") - 1) as usize;
    bytes[last_payload_byte] ^= 1;
    let bad = s.path("bad.bin");
    write_file(&bad, &bytes, true);
    let out = tools(["verify".as_ref(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.lines().next().is_some_and(|l| l.contains("payload")),
        "{err}"
    );

    let out = tools(["verify".as_ref(), stub().as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("carries no payload"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn single_file_input_is_its_own_entry() {
    let s = Scratch::new();
    let exe = s.path("tool.bin");
    let out = tools([
        "pack".as_ref(),
        probe().as_os_str(),
        "-o".as_ref(),
        exe.as_os_str(),
        "--stub".as_ref(),
        stub().as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = inspect(&exe);
    assert_eq!(info["entry"], "probe");
    assert_eq!(info["name"], "tool", "name defaults to the output's stem");
    assert_eq!(info["version"], "0.0.0");
    let run = s.run(&exe, ["print", "single"]);
    assert_eq!(stdout(&run), "single\n", "{}", stderr(&run));
}

#[test]
fn config_file_supplies_the_same_keys() {
    let s = Scratch::new();
    s.probe_app("app", "1.0");
    let config = s.path("onefile.toml");
    fs::write(
        &config,
        format!(
            "input = \"app\"\noutput = \"out/cfg.bin\"\nentry = \"bin/probe\"\nname = \"cfgapp\"\nversion = \"7.0\"\nlevel = 3\nstub = \"{}\"\n",
            stub().display()
        ),
    )
    .expect("write");
    let out = tools([
        "pack".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--version".as_ref(),
        "7.1".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = inspect(&s.path("out/cfg.bin"));
    assert_eq!(info["name"], "cfgapp");
    assert_eq!(info["version"], "7.1", "flags win over the config");

    fs::write(&config, "nmae = \"typo\"\n").expect("write");
    let out = tools(["pack".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nmae"), "{}", stderr(&out));
}

#[test]
fn output_gets_the_stubs_permissions_plus_exec() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let app = s.probe_app("app", "1.0");
    let my_stub = s.path("stub");
    fs::copy(stub(), &my_stub).expect("copy");
    fs::set_permissions(&my_stub, fs::Permissions::from_mode(0o640)).expect("chmod");
    let exe = s.path("app.bin");
    let out = tools([
        "pack".as_ref(),
        app.as_os_str(),
        "-o".as_ref(),
        exe.as_os_str(),
        "--stub".as_ref(),
        my_stub.as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::metadata(&exe).expect("stat").permissions().mode() & 0o777,
        0o751
    );
}

/// Every refusal: one line saying what is wrong, a failure exit, no output file.
#[test]
fn pack_refuses_what_it_cannot_pack_safely() {
    let s = Scratch::new();
    let base = s.probe_app("base", "1.0");
    let case = |name: &str, setup: &dyn Fn(&Path), extra: &[&str], expect: &str| {
        let app = s.path(name);
        let _ = fs::remove_dir_all(&app);
        Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(&app)
            .status()
            .expect("cp");
        setup(&app);
        let exe = s.path(&format!("{name}.bin"));
        let mut args: Vec<std::ffi::OsString> = vec![
            "pack".into(),
            app.clone().into(),
            "-o".into(),
            exe.clone().into(),
            "--stub".into(),
            stub().into(),
        ];
        args.extend(extra.iter().map(|a| a.into()));
        let out = tools(&args);
        // 1: refused; 2: a usage error caught by the argument parser.
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{name}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(
            err.lines().next().is_some_and(|l| l.contains(expect)),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"));
        assert!(!exe.exists(), "{name}: left an output");
    };
    let entry: &[&str] = &["--entry", "bin/probe"];
    case(
        "escape",
        &|a| symlink("../../etc/passwd", a.join("bin/x")).expect("ln"),
        entry,
        "outside",
    );
    case(
        "absolute",
        &|a| symlink("/etc/passwd", a.join("bin/x")).expect("ln"),
        entry,
        "absolute",
    );
    case(
        "fifo",
        &|a| {
            let p = std::ffi::CString::new(a.join("fifo").to_str().expect("utf8")).expect("c");
            // SAFETY: valid C string path.
            unsafe { libc::mkfifo(p.as_ptr(), 0o644) };
        },
        entry,
        "fifo",
    );
    case(
        "nonutf8",
        &|a| {
            use std::os::unix::ffi::OsStrExt;
            let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
            fs::write(a.join(name), b"x").expect("write");
        },
        entry,
        "UTF-8",
    );
    case(
        "noentry",
        &|_| {},
        &["--entry", "bin/nothing"],
        "does not exist",
    );
    case("noentrygiven", &|_| {}, &[], "--entry");
    case(
        "badname",
        &|_| {},
        &["--entry", "bin/probe", "--name", "../evil"],
        "name",
    );
    case(
        "badversion",
        &|_| {},
        &["--entry", "bin/probe", "--version", "1 0"],
        "version",
    );
    case("entrydir", &|_| {}, &["--entry", "bin"], "must be a file");
    case(
        "level",
        &|_| {},
        &["--entry", "bin/probe", "--level", "30"],
        "30",
    );

    let app = s.path("base");
    let inside = app.join("out.bin");
    let out = tools([
        "pack".as_ref(),
        app.as_os_str(),
        "-o".as_ref(),
        inside.as_os_str(),
        "--stub".as_ref(),
        stub().as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
    ]);
    assert!(
        stderr(&out).contains("inside the input"),
        "{}",
        stderr(&out)
    );

    let packed = s.path("packed.bin");
    pack(&app, &packed, &[]);
    let out = tools([
        "pack".as_ref(),
        app.as_os_str(),
        "-o".as_ref(),
        s.path("x.bin").as_os_str(),
        "--stub".as_ref(),
        packed.as_os_str(),
        "--entry".as_ref(),
        "bin/probe".as_ref(),
    ]);
    assert!(
        stderr(&out).contains("already carries a payload"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_entry_in_a_crafted_file_is_reported() {
    let s = Scratch::new();
    let exe = s.path("crafted.bin");
    Craft {
        name: "crafted".into(),
        version: "1".into(),
        entry: "bin/missing".into(),
        unpacked_size: 5,
        frames: vec![
            TarCraft::new()
                .file("bin/other", b"hello", 0o755)
                .finish(true),
        ],
        extra_metadata: String::new(),
    }
    .write(&stub(), &exe);
    let out = s.run(&exe, ["x"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(messages(&out)[0].contains("missing"), "{}", stderr(&out));
}

#[test]
fn newer_format_features_are_refused_by_name() {
    let s = Scratch::new();
    let exe = s.path("future.bin");
    Craft {
        name: "future".into(),
        version: "1".into(),
        entry: "bin/x".into(),
        unpacked_size: 5,
        frames: vec![TarCraft::new().file("bin/x", b"hello", 0o755).finish(true)],
        extra_metadata: "requires = [\"delta-frames-v9\"]\n".into(),
    }
    .write(&stub(), &exe);
    let out = s.run(&exe, ["x"]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
    assert!(
        messages(&out)[0].contains("delta-frames-v9"),
        "{}",
        stderr(&out)
    );
}
