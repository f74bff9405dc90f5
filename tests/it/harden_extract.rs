//! Extraction and format bounds (issue 10, items 5, 6, 14 and 16): the
//! payload check of `verify` and of the updater refuses exactly what a real
//! unpack refuses, the app's entry must be a regular executable file, a
//! clash inside the payload is a damaged build (not a cache problem), and
//! what the metadata declares bounds the work: decompression stops at the
//! declared lengths, and the metadata itself is bounded before it is read.
//!
//! Work is measured in bytes, never with timers: the bytes `payload-tools`
//! read from files (`rchar` of `/proc/<pid>/io`, taken before the process is
//! reaped) and its peak memory (`ru_maxrss` from `wait4`).

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tar::EntryType;

use crate::craft::{Craft, Part, TarBytes, TarCraft, header_block, zstd_frame};
use crate::server::Route;
use crate::support::*;
use crate::update::{NAME, Published, expect_failure, publish};

fn app() -> TarCraft {
    TarCraft::new()
        .dir("bin/")
        .file("bin/app", b"#!/bin/sh\necho intact!\n", 0o755)
}

fn craft(name: &str, entry: &str, unpacked_size: u64, frames: Vec<TarBytes>) -> Craft {
    Craft {
        name: name.into(),
        version: "1".into(),
        entry: entry.into(),
        unpacked_size,
        frames,
        extra_metadata: String::new(),
    }
}

/// Bytes `payload-tools verify` reads of an intact small build with the
/// same stub: finding the stub's marker reads part of the stub, a cost
/// every verify pays whatever the payload.
fn verify_reads_of_an_intact_build(s: &Scratch) -> u64 {
    let exe = s.path("intact.bin");
    craft("intact", "bin/app", 23, vec![app().finish(true)]).write(&stub(), &exe);
    let (out, read) = tools_counting_reads(&["verify".as_ref(), exe.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    read
}

/// `payload-tools` with `args`, and the bytes it read from files.
fn tools_counting_reads(args: &[&OsStr]) -> (Output, u64) {
    let mut child = Command::new(bin("payload-tools"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn payload-tools");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).expect("read pipe");
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let pid = child.id();
    // Wait without reaping: the counters of /proc/<pid>/io stay readable.
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing only into `info`.
    let waited =
        unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
    assert_eq!(waited, 0, "waitid: {}", std::io::Error::last_os_error());
    let io = fs::read_to_string(format!("/proc/{pid}/io")).expect("read /proc/<pid>/io");
    let rchar = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar");
    let output = Output {
        status: child.wait().expect("wait"),
        stdout: out.join().expect("stdout thread"),
        stderr: err.join().expect("stderr thread"),
    };
    (output, rchar)
}

/// `payload-tools` with `args` under `/usr/bin/time`, and its peak resident
/// memory in KiB (`time` forks it from its own small image; a child of this
/// big test process would inherit the test's peak). `None` when `time` is
/// not installed, with the test recorded as skipped.
fn tools_peak_rss(args: &[&OsStr]) -> Option<(Output, u64)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        skip("/usr/bin/time is not installed (Debian package 'time')");
        return None;
    }
    let mut out = Command::new(time)
        .args(["-f", "peak-rss-kib %M"])
        .arg(bin("payload-tools"))
        .args(args)
        .output()
        .expect("run /usr/bin/time");
    let text = stderr(&out);
    let (rest, last) = text
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", text.trim_end()));
    let kib = last
        .strip_prefix("peak-rss-kib ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no figure from time: {text}"));
    // What the command itself wrote, without time's own lines.
    out.stderr = rest
        .lines()
        .filter(|l| !l.starts_with("Command exited with"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes();
    Some((out, kib))
}

fn verify(exe: &Path) -> Output {
    tools(["verify".as_ref(), exe.as_os_str()])
}

/// `unpack` of `exe` into a fresh folder: refused, and nothing left.
fn assert_unpack_refuses(s: &Scratch, exe: &Path) {
    let out_dir = s.path("unpacked");
    let out = tools([
        "unpack".as_ref(),
        exe.as_os_str(),
        "-o".as_ref(),
        out_dir.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "unpack: {}", stderr(&out));
    assert!(!out_dir.exists(), "unpack left '{}'", out_dir.display());
}

/// One build that a real unpack cannot use: `verify`, `unpack` and a launch
/// all refuse it, naming `expect`; the launch exits `code`.
struct Broken {
    what: &'static str,
    entry: &'static str,
    frames: Vec<TarBytes>,
    expect: &'static str,
    code: i32,
}

fn broken_builds() -> Vec<Broken> {
    let link = |t: TarCraft, path: &str, target: &str| t.link(EntryType::Symlink, path, target);
    vec![
        Broken {
            what: "a duplicate file",
            entry: "bin/app",
            frames: vec![app().file("bin/app", b"again", 0o755).finish(true)],
            expect: "twice",
            code: 122,
        },
        Broken {
            what: "a duplicate file in another frame",
            entry: "bin/app",
            frames: vec![
                app().finish(false),
                TarCraft::new()
                    .file("bin/app", b"again", 0o755)
                    .finish(true),
            ],
            expect: "twice",
            code: 122,
        },
        Broken {
            what: "a file below a symlink",
            entry: "bin/app",
            frames: vec![
                link(app().dir("data/"), "lnk", "data")
                    .file("lnk/file", b"x", 0o644)
                    .finish(true),
            ],
            expect: "through a symlink",
            code: 122,
        },
        Broken {
            what: "a file below a symlink of a later frame",
            entry: "bin/app",
            frames: vec![
                app()
                    .dir("data/")
                    .file("lnk/file", b"x", 0o644)
                    .finish(false),
                link(TarCraft::new(), "lnk", "data").finish(true),
            ],
            expect: "through a symlink",
            code: 122,
        },
        Broken {
            what: "a file and a folder at one path",
            entry: "bin/app",
            frames: vec![
                app()
                    .file("lib", b"x", 0o644)
                    .file("lib/inner", b"y", 0o644)
                    .finish(true),
            ],
            expect: "a file and a folder",
            code: 122,
        },
        Broken {
            what: "a folder, then a file at its path, in another frame",
            entry: "bin/app",
            frames: vec![
                app().dir("lib/").finish(false),
                TarCraft::new().file("lib", b"x", 0o644).finish(true),
            ],
            expect: "a file and a folder",
            code: 122,
        },
        Broken {
            what: "a missing entry",
            entry: "bin/missing",
            frames: vec![app().finish(true)],
            expect: "is missing",
            code: 127,
        },
        Broken {
            what: "an entry that is a folder",
            entry: "bin",
            frames: vec![app().finish(true)],
            expect: "is a folder",
            code: 126,
        },
        Broken {
            what: "an entry without an execute bit",
            entry: "bin/app",
            frames: vec![
                TarCraft::new()
                    .file("bin/app", b"#!/bin/sh\n", 0o644)
                    .finish(true),
            ],
            expect: "no execute permission",
            code: 126,
        },
        Broken {
            what: "an entry linking to a file without an execute bit",
            entry: "bin/run",
            frames: vec![link(app().file("bin/data", b"x", 0o644), "bin/run", "data").finish(true)],
            expect: "no execute permission",
            code: 126,
        },
        Broken {
            what: "an entry in a symlink loop",
            entry: "bin/run",
            frames: vec![link(link(app(), "bin/run", "loop"), "bin/loop", "run").finish(true)],
            expect: "more than 40 symlinks",
            code: 126,
        },
    ]
}

/// Item 6: `verify` (the same check as the updater's) refuses every build a
/// real unpack or launch refuses, with the same reason.
#[test]
fn verify_refuses_what_a_real_unpack_refuses() {
    for case in broken_builds() {
        let s = Scratch::new();
        let exe = s.path("broken.bin");
        craft("broken", case.entry, 1 << 20, case.frames).write(&stub(), &exe);
        let out = verify(&exe);
        assert_eq!(
            out.status.code(),
            Some(1),
            "verify passed {}: {}{}",
            case.what,
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(case.expect),
            "{}: expected {:?} in {}",
            case.what,
            case.expect,
            stderr(&out)
        );
        assert_unpack_refuses(&s, &exe);
        let out = s.run(&exe, ["x"]);
        assert_eq!(
            out.status.code(),
            Some(case.code),
            "{}: {}",
            case.what,
            stderr(&out)
        );
        assert!(
            messages(&out)[0].contains(case.expect),
            "{}: {:?}",
            case.what,
            messages(&out)
        );
    }
}

/// Item 16: a file and a folder at one path is a damaged build (122, "download
/// again"), whichever comes first, not a cache problem (123).
#[test]
fn a_file_and_a_folder_at_one_path_is_a_damaged_build() {
    let orders = [
        vec![app().file("x", b"f", 0o644).dir("x/").finish(true)],
        vec![app().dir("x/").file("x", b"f", 0o644).finish(true)],
        vec![
            app().file("x/inner", b"f", 0o644).finish(false),
            TarCraft::new().file("x", b"f", 0o644).finish(true),
        ],
    ];
    for frames in orders {
        let s = Scratch::new();
        let exe = s.path("clash.bin");
        craft("clash", "bin/app", 1 << 20, frames).write(&stub(), &exe);
        let out = s.run(&exe, ["x"]);
        assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
        let msgs = messages(&out);
        assert!(msgs[0].contains("a file and a folder"), "{msgs:?}");
        assert!(!stderr(&out).contains("ONEFILE_CACHE_DIR"), "{msgs:?}");
        assert!(stderr(&out).contains("download the app again"), "{msgs:?}");
    }
}

/// Item 6, the decision for symlinked entries: links inside the tree are
/// followed, so an entry linking to the real program runs.
#[test]
fn an_entry_linking_inside_the_tree_runs() {
    let s = Scratch::new();
    let exe = s.path("linked.bin");
    let probe_bytes = fs::read(probe()).expect("probe");
    craft(
        "linked",
        "bin/probe",
        probe_bytes.len() as u64,
        vec![
            TarCraft::new()
                .dir("libexec/")
                .file("libexec/probe", &probe_bytes, 0o755)
                .dir("bin/")
                .link(EntryType::Symlink, "bin/probe", "../libexec/probe")
                .finish(true),
        ],
    )
    .write(&stub(), &exe);
    let out = verify(&exe);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.run(&exe, ["print", "ok"]);
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
}

/// Serves a crafted 1.1 with `frames` where 1.0 looks for updates.
fn announce_broken(p: &Published, entry: &str, frames: Vec<TarBytes>) {
    let exe = p.s.path(&format!("broken/{NAME}.bin"));
    Craft {
        name: NAME.into(),
        version: "1.1".into(),
        entry: entry.into(),
        unpacked_size: 1 << 20,
        frames,
        extra_metadata: String::new(),
    }
    .write(&stub(), &exe);
    let url = p.server.url(&format!("/1.1/{NAME}.bin"));
    let toml = p.s.path("broken/update.toml");
    let out = tools([
        "update-toml".as_ref(),
        exe.as_os_str(),
        "--url".as_ref(),
        url.as_ref(),
        "-o".as_ref(),
        toml.as_os_str(),
    ]);
    assert!(out.status.success(), "update-toml: {}", stderr(&out));
    p.server.route(
        &format!("/1.1/{NAME}.bin"),
        Route::file(fs::read(&exe).expect("read")),
    );
    p.server.route(
        "/1.0/update.toml",
        Route::file(fs::read(&toml).expect("read")),
    );
}

/// Item 6: an update that passes size, CRC, name and version but could not
/// be unpacked (or run) is not installed: the app keeps running 1.0 and can
/// still update itself later.
#[test]
fn an_update_that_could_not_unpack_is_not_installed() {
    let p = publish(&[]);
    let probe = |mode| {
        TarCraft::new()
            .dir("bin/")
            .file("bin/probe", b"#!/bin/sh\n", mode)
    };
    let cases: Vec<(&str, Vec<TarBytes>, &str)> = vec![
        (
            "bin/probe",
            vec![probe(0o755).file("bin/probe", b"again", 0o755).finish(true)],
            "twice",
        ),
        (
            "bin/probe",
            vec![
                probe(0o755)
                    .file("lib", b"x", 0o644)
                    .dir("lib/")
                    .finish(true),
            ],
            "a file and a folder",
        ),
        (
            "bin/probe",
            vec![
                probe(0o755)
                    .link(EntryType::Symlink, "lnk", "bin")
                    .file("lnk/other", b"x", 0o755)
                    .finish(true),
            ],
            "through a symlink",
        ),
        ("bin/missing", vec![probe(0o755).finish(true)], "is missing"),
        ("bin/probe", vec![probe(0o644).finish(true)], "no execute"),
    ];
    for (entry, frames, reason) in cases {
        announce_broken(&p, entry, frames);
        // The trace reads "... is not a valid packed executable (<reason>)".
        expect_failure(&p, reason);
    }
    // The good 1.1 still installs afterwards.
    p.server
        .route(&format!("/1.1/{NAME}.bin"), Route::file(p.v11.clone()));
    p.announce_11();
    assert_updated(&p.run(&["version"]));
}

/// Item 14: a build declaring 23 bytes whose folder entry has a 4 GiB size
/// field (4 GiB of zeros follow it: 128 KiB of file) is refused from its
/// metadata, before a byte of it is decompressed.
#[test]
fn a_folder_with_a_4_gib_size_field_is_refused_undecoded() {
    const HUGE: u64 = 4 << 30;
    let s = Scratch::new();
    let exe = s.path("bomb.bin");
    let head = header_block(EntryType::Directory, "d/", HUGE, 0o755);
    let rest = app().finish(true);
    let frame = zstd_frame(&[Part::Bytes(&head), Part::Zeros(HUGE), Part::Bytes(&rest)]);
    let tar_len = head.len() as u64 + HUGE + rest.len() as u64;
    craft("bomb", "bin/app", 23, Vec::new()).write_compressed(
        &stub(),
        &exe,
        &[(frame, tar_len)],
        3,
    );
    let (out, read) = tools_counting_reads(&["verify".as_ref(), exe.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("more than"), "{}", stderr(&out));
    // The trailer and metadata, not the payload (128 KiB).
    eprintln!("verify read {read} bytes");
    assert!(read < 64 << 10, "verify read {read} bytes");
    let out = s.run(&exe, ["x"]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
}

/// Item 14: a folder entry that carries data (its size field says 8 MiB,
/// 8 MiB of noise follow, and the metadata's sizes allow it) is refused at
/// its header: the 8 MiB are not read, let alone decoded.
#[test]
fn a_folder_carrying_data_is_refused_at_its_header() {
    const DATA: usize = 8 << 20;
    let s = Scratch::new();
    let exe = s.path("dirdata.bin");
    let frames = vec![
        app()
            .with_data(EntryType::Directory, "d/", &noise(DATA, 7))
            .finish(true),
    ];
    craft("dirdata", "bin/app", DATA as u64 + 23, frames).write(&stub(), &exe);
    let (out, read) = tools_counting_reads(&["verify".as_ref(), exe.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("a folder with 8388608 bytes of data"),
        "{}",
        stderr(&out)
    );
    eprintln!("verify read {read} bytes of a 8 MiB frame");
    let intact = verify_reads_of_an_intact_build(&s);
    assert!(
        read < intact + (1 << 20),
        "verify read {read} bytes of a 8 MiB frame ({intact} for an intact build)"
    );
    let out = s.run(&exe, ["x"]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
}

/// Item 14: a frame that decodes to 8 MiB more than its index entry says is
/// refused after the declared bytes and one zstd block, not after decoding
/// everything and comparing lengths.
#[test]
fn data_beyond_the_declared_length_is_not_decoded() {
    let s = Scratch::new();
    let exe = s.path("longer.bin");
    let tar = app().finish(true);
    let mut decoded = tar.clone();
    decoded.extend_from_slice(&noise(8 << 20, 11));
    let frame = zstd::bulk::compress(&decoded, 3).expect("compress");
    craft("longer", "bin/app", 23, Vec::new()).write_compressed(
        &stub(),
        &exe,
        &[(frame, tar.len() as u64)],
        2,
    );
    let (out, read) = tools_counting_reads(&["verify".as_ref(), exe.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    eprintln!("verify read {read} bytes of a 8 MiB frame");
    let intact = verify_reads_of_an_intact_build(&s);
    assert!(
        read < intact + (1 << 20),
        "verify read {read} bytes of a 8 MiB frame ({intact} for an intact build)"
    );
    assert!(stderr(&out).contains("more than the"), "{}", stderr(&out));
}

/// Item 14: entries hidden after the end of the tar stream, inside the
/// declared length, are refused (a reader of the tar stream never sees
/// them, so nothing may be there).
#[test]
fn entries_hidden_after_the_end_of_the_tar_stream_are_refused() {
    let s = Scratch::new();
    let exe = s.path("hidden.bin");
    let mut tar = app().finish(true);
    tar.extend_from_slice(&TarCraft::new().file("hidden", b"x", 0o755).finish(true));
    craft("hidden", "bin/app", 1 << 20, vec![tar]).write(&stub(), &exe);
    let out = verify(&exe);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("after the end of its tar stream"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&exe, ["x"]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
}

/// A packed file of a valid app whose metadata carries `junk` (an ignored
/// key) to make it `metadata_len` bytes long.
fn with_metadata_of(s: &Scratch, name: &str, metadata_len: usize) -> std::path::PathBuf {
    let exe = s.path(&format!("{name}.bin"));
    let mut c = craft(name, "bin/app", 23, vec![app().finish(true)]);
    // The worst shape for the TOML parser measured: small integers.
    let head_len = 300;
    let items = metadata_len.saturating_sub(head_len + 10) / 2;
    c.extra_metadata = format!("junk = [{}]\n", "1,".repeat(items));
    c.write(&stub(), &exe);
    exe
}

/// Item 5: a 16 MiB metadata block (1.2 GB of memory to parse before) is
/// refused from the trailer, before it is read, by `inspect`, `verify` and
/// the launcher.
#[test]
fn a_16_mib_metadata_block_is_refused_unread() {
    let s = Scratch::new();
    let exe = with_metadata_of(&s, "bigmeta", 16 << 20);
    let (out, read) = tools_counting_reads(&["inspect".as_ref(), exe.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));
    assert!(read < 64 << 10, "inspect read {read} bytes");
    let Some((out, rss_kib)) = tools_peak_rss(&["inspect".as_ref(), exe.as_os_str()]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    eprintln!("inspect of 16 MiB of metadata: peak RSS {rss_kib} KiB");
    assert!(rss_kib < 16 << 10, "inspect used {rss_kib} KiB");
    let out = s.run(&exe, ["x"]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));
    let out = verify(&exe);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

/// Item 5: at the limit (256 KiB, the worst shape for the parser), the
/// metadata is read and parsed in bounded memory.
#[test]
fn metadata_at_the_limit_parses_in_bounded_memory() {
    let s = Scratch::new();
    let limit = 256 << 10;
    let exe = with_metadata_of(&s, "atlimit", limit);
    let Some((out, rss_kib)) = tools_peak_rss(&["inspect".as_ref(), exe.as_os_str()]) else {
        return;
    };
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("inspect of {limit} bytes of metadata: peak RSS {rss_kib} KiB");
    assert!(rss_kib < 48 << 10, "inspect used {rss_kib} KiB");
    let over = with_metadata_of(&s, "overlimit", limit + 1024);
    let out = tools(["inspect".as_ref(), over.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));
}

/// Item 5: the frame count and the entry count are bounded by the format.
#[test]
fn frame_and_entry_counts_are_bounded() {
    let s = Scratch::new();
    // 8,193 empty frames: a frame index a real build never needs.
    let frames: Vec<(Vec<u8>, u64)> = (0..8193).map(|_| (zstd_frame(&[]), 0)).collect();
    let exe = s.path("frames.bin");
    craft("frames", "bin/app", 23, Vec::new()).write_compressed(&stub(), &exe, &frames, 1);
    let out = tools(["inspect".as_ref(), exe.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("8193 frames"), "{}", stderr(&out));
    let out = s.run(&exe, ["x"]);
    assert_eq!(out.status.code(), Some(122), "{}", stderr(&out));

    for count in [0, (1 << 20) + 1] {
        let exe = s.path(&format!("entries-{count}.bin"));
        let tar = app().finish(true);
        let frame = zstd::bulk::compress(&tar, 3).expect("compress");
        craft("entries", "bin/app", 23, Vec::new()).write_compressed(
            &stub(),
            &exe,
            &[(frame, tar.len() as u64)],
            count,
        );
        let out = tools(["inspect".as_ref(), exe.as_os_str()]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(stderr(&out).contains("entry_count"), "{}", stderr(&out));
    }
}

/// Item 5: more entries than the metadata declares are refused while
/// unpacking (the count bounds the memory of the check).
#[test]
fn more_entries_than_declared_are_refused() {
    let s = Scratch::new();
    let exe = s.path("count.bin");
    let tar = app().file("extra", b"x", 0o644).finish(true);
    let frame = zstd::bulk::compress(&tar, 3).expect("compress");
    craft("count", "bin/app", 1 << 20, Vec::new()).write_compressed(
        &stub(),
        &exe,
        &[(frame, tar.len() as u64)],
        2,
    );
    let out = verify(&exe);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("more than the 2 entries"),
        "{}",
        stderr(&out)
    );
}

/// `pack` never writes a build that readers refuse: an entry linking to a
/// file without an execute bit, or a name no reader accepts.
#[test]
fn pack_refuses_what_readers_would_refuse() {
    use std::os::unix::fs::symlink;
    let s = Scratch::new();
    let app = s.path("app");
    fs::create_dir_all(app.join("bin")).expect("mkdir");
    fs::write(app.join("bin/data"), b"#!/bin/sh\n").expect("write");
    symlink("data", app.join("bin/run")).expect("symlink");
    let out_file = s.path("out.bin");
    let stub = stub();
    let try_pack = |entry: &str| {
        tools([
            "pack".as_ref(),
            app.as_os_str(),
            "--entry".as_ref(),
            entry.as_ref(),
            "--name".as_ref(),
            "refused".as_ref(),
            "--stub".as_ref(),
            stub.as_os_str(),
            "-o".as_ref(),
            out_file.as_os_str(),
        ])
    };
    let out = try_pack("bin/run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("without execute permission"),
        "{}",
        stderr(&out)
    );
    assert!(!out_file.exists());

    fs::remove_file(app.join("bin/run")).expect("rm");
    fs::write(app.join("bin/back\\slash"), b"x").expect("write");
    let out = try_pack("bin/data");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("backslash"), "{}", stderr(&out));
    assert!(!out_file.exists());
}
