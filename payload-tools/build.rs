//! Embeds release stubs into the `payload-tools` command, so that it packs
//! without `--stub` and without a `bootstrap` next to it (README, "Install";
//! docs/architecture.md, "Where the stub comes from"). Only the command
//! gets them (the `cli` feature): the stub links this crate's library
//! without it, and this script then does nothing.
//!
//! - `ONEFILE_EMBED_STUBS=DIR`: the stubs in DIR, `bootstrap` (Linux
//!   x86_64) and `bootstrap.exe` (Windows x86_64), whichever are there.
//!   `make build` and `make wheel` give the release stubs `make stub` and
//!   `make windows` built (std built for size), so nothing is compiled
//!   twice. `ONEFILE_EMBED_STUBS=` (empty) embeds nothing.
//! - Unset, in a release build for the machine it runs on (what `cargo
//!   install --path payload-tools` is): the host's stub, built here by a
//!   `cargo build --release -p bootstrap` of this workspace into OUT_DIR,
//!   with the workspace's release profile and rustup's std (`make stub`
//!   builds std for size, which needs a nightly flag: about 400 KB more
//!   here). One install line, no setting.
//!   The nested build gets none of the outer build's flags (no RUSTFLAGS,
//!   `build.rustflags`, `target-cpu=native` of a `~/.cargo/config.toml`,
//!   no `CARGO_PROFILE_*`): the workspace's `[profile.release]` settings
//!   are passed to it explicitly, so the stub every packed file carries is
//!   built the same on every machine.
//! - Unset otherwise (development builds, `make test`): nothing. The tests
//!   use the `bootstrap` built next to `payload-tools`.
//!
//! When nothing is embedded for the command's own target, the reason goes
//! into it (`ONEFILE_NO_STUB_WHY`): `pack` and `payload-tools stubs` say it
//! where the user sees it, and a release build also says it as a cargo
//! warning.
//!
//! Each stub is checked before it goes in (`src/stub_check.rs`, which this
//! script compiles too): the stub marker of this crate's format version,
//! the self-test marker, and a header for the target its file name claims;
//! anything else fails the build with one line saying why. It goes in
//! compressed (zstd level 19: about half the size, docs/benchmarks.md), and
//! the command unpacks it when it packs.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[path = "src/stub_check.rs"]
#[allow(dead_code)]
mod stub_check;

/// The file names a folder given in `ONEFILE_EMBED_STUBS` may hold, and the
/// target each stands for.
const STUB_FILES: [(&str, &str); 2] = [
    ("bootstrap", "x86_64-unknown-linux-gnu"),
    ("bootstrap.exe", "x86_64-pc-windows-gnu"),
];

/// The marker prefixes, in the clear (docs/format.md, "The stub"): this
/// script is no part of `payload-tools`, which holds them only masked.
const STUB_PREFIX: &[u8] = b"ONEFILE-STUB\0";
const SELF_TEST_PREFIX: &[u8] = b"ONEFILE-SELF-TEST\0";

/// zstd level for the embedded stubs: the slowest, done once per build.
const LEVEL: i32 = 19;

/// What a build embeds: stubs, or none and why (said by the command).
enum Found {
    Stubs(Vec<Stub>),
    None(String),
}

/// One stub to embed.
struct Stub {
    target: &'static str,
    path: PathBuf,
    origin: &'static str,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: payload-tools: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let target = var("TARGET")?;
    // The command's own target: the default of `pack --target`.
    println!("cargo::rustc-env=ONEFILE_BUILT_FOR={target}");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/stub_check.rs");
    let generated = out_dir.join("embedded_stubs.rs");
    if env::var_os("CARGO_FEATURE_CLI").is_none() {
        return write(&generated, "");
    }
    println!("cargo::rerun-if-env-changed=ONEFILE_EMBED_STUBS");
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let release = var("PROFILE")? == "release";
    let found = match env::var_os("ONEFILE_EMBED_STUBS") {
        Some(dir) if dir.is_empty() => {
            Found::None("it was built with ONEFILE_EMBED_STUBS= (empty: embed none)".to_owned())
        }
        Some(dir) => Found::Stubs(given_in(Path::new(&dir))?),
        None => built_here(&manifest_dir, &out_dir, &target, release)?,
    };
    let (stubs, why_none) = match found {
        Found::Stubs(stubs) => {
            let own = stub_check::canonical_target(&target);
            let why = if stubs.iter().any(|s| Some(s.target) == own) {
                String::new()
            } else {
                format!("the folder ONEFILE_EMBED_STUBS named holds no stub for {target}")
            };
            (stubs, why)
        }
        Found::None(why) => (Vec::new(), why),
    };
    if release && !why_none.is_empty() {
        // Cargo shows this only for a package built from a path; the
        // command itself says it too (stubs.rs), wherever it came from.
        println!("cargo::warning=no stub embedded for {target}: {why_none}; pack will need --stub");
    }
    // Always set, empty when the own stub is in: stubs.rs reads it with
    // env!, which needs it defined.
    println!("cargo::rustc-env=ONEFILE_NO_STUB_WHY={why_none}");
    println!("cargo::rerun-if-changed=src/trailer.rs");
    println!("cargo::rerun-if-changed=src/stub.rs");
    let markers = stub_check::Markers {
        stub_prefix: STUB_PREFIX,
        format_version: const_u16(&manifest_dir.join("src/trailer.rs"), "FORMAT_VERSION")?,
        self_test_prefix: SELF_TEST_PREFIX,
        self_test_version: const_u16(&manifest_dir.join("src/stub.rs"), "SELF_TEST_VERSION")?,
    };
    let mut code = String::new();
    for stub in &stubs {
        let bytes = fs::read(&stub.path)
            .map_err(|e| format!("cannot read stub '{}': {e}", stub.path.display()))?;
        stub_check::examine(&bytes, stub.target, &markers).map_err(|e| {
            format!(
                "'{}' cannot be embedded as the stub for {}: {e}",
                stub.path.display(),
                stub.target
            )
        })?;
        let compressed = zstd::bulk::compress(&bytes, LEVEL)
            .map_err(|e| format!("cannot compress '{}': {e}", stub.path.display()))?;
        let packed = out_dir.join(format!("{}.bootstrap.zst", stub.target));
        write_bytes(&packed, &compressed)?;
        let packed = packed
            .to_str()
            .ok_or_else(|| format!("OUT_DIR '{}' is not UTF-8", out_dir.display()))?;
        let _ = writeln!(
            code,
            "    Embedded {{ target: {:?}, len: {}, origin: {:?}, compressed: include_bytes!({packed:?}) }},",
            stub.target,
            bytes.len(),
            stub.origin,
        );
    }
    write(
        &generated,
        &format!("pub static EMBEDDED: &[Embedded] = &[\n{code}];\n"),
    )
}

/// The stubs in the folder `ONEFILE_EMBED_STUBS` names: at least one.
fn given_in(dir: &Path) -> Result<Vec<Stub>, String> {
    // The folder, not each name: cargo takes a watched file that does not
    // exist as changed (rebuilding every time), and scans a folder, so a
    // stub added later is noticed. Give it a folder of stubs only.
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut stubs = Vec::new();
    for (name, target) in STUB_FILES {
        let path = dir.join(name);
        if path.is_file() {
            stubs.push(Stub {
                target,
                path,
                origin: "given to the build: ONEFILE_EMBED_STUBS",
            });
        }
    }
    if stubs.is_empty() {
        return Err(format!(
            "ONEFILE_EMBED_STUBS names '{}', which holds neither 'bootstrap' nor 'bootstrap.exe' (make stub, make windows build them; empty embeds none)",
            dir.display()
        ));
    }
    Ok(stubs)
}

/// The host's stub, built by cargo from this workspace when this is a
/// release build for the machine it runs on; none otherwise, and why.
fn built_here(
    manifest_dir: &Path,
    out_dir: &Path,
    target: &str,
    release: bool,
) -> Result<Found, String> {
    if !release {
        return Ok(Found::None(
            "it is a development build, which uses the bootstrap built next to it".to_owned(),
        ));
    }
    let Some(stub_target) = stub_check::canonical_target(target) else {
        return Ok(Found::None(format!(
            "the project builds no stub for {target}"
        )));
    };
    let host = var("HOST")?;
    if host != target {
        return Ok(Found::None(format!(
            "it was built on {host} for {target}, and builds a stub only for the machine it runs on (ONEFILE_EMBED_STUBS gives others)"
        )));
    }
    let workspace = manifest_dir.join("..");
    let bootstrap = workspace.join("bootstrap").join("Cargo.toml");
    if !bootstrap.is_file() {
        return Ok(Found::None(
            "the bootstrap crate's sources were not next to payload-tools' (only a checkout has them)"
                .to_owned(),
        ));
    }
    // Everything the stub's build reads: its sources, the lock file, and
    // the manifests and cargo settings that say how it is built.
    for watched in [
        "bootstrap/src",
        "bootstrap/Cargo.toml",
        "payload-tools/src",
        "payload-tools/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
    ] {
        let path = workspace.join(watched);
        if path.exists() {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
    let workspace_manifest = workspace.join("Cargo.toml");
    let profile = release_profile(&workspace_manifest)?;
    let target_dir = out_dir.join("stub-build");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--manifest-path")
        .arg(&workspace_manifest)
        .args(["-p", "bootstrap", "--target", target])
        .arg("--target-dir")
        .arg(&target_dir);
    for setting in &profile {
        command.arg("--config").arg(setting);
    }
    // The stub's own build of this crate must not embed anything.
    command.env("ONEFILE_EMBED_STUBS", "");
    // None of the outer build's flags: cargo takes CARGO_ENCODED_RUSTFLAGS
    // first, and empty means none, over RUSTFLAGS and every config file.
    command.env("CARGO_ENCODED_RUSTFLAGS", "");
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name == "RUSTFLAGS"
            || name == "CARGO_BUILD_RUSTFLAGS"
            || name == "CARGO_TARGET_DIR"
            || name == "CARGO_BUILD_TARGET_DIR"
            || name.starts_with("CARGO_PROFILE_")
            || (name.starts_with("CARGO_TARGET_") && name.ends_with("_RUSTFLAGS"))
        {
            command.env_remove(name);
        }
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build the stub: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the stub (cargo build -p bootstrap --release) failed: {status}"
        ));
    }
    let exe = if target.contains("windows") {
        "bootstrap.exe"
    } else {
        "bootstrap"
    };
    Ok(Found::Stubs(vec![Stub {
        target: stub_target,
        path: target_dir.join(target).join("release").join(exe),
        origin: "built with the package (cargo, release profile)",
    }]))
}

/// The workspace's `[profile.release]` settings (and its per-package
/// ones) as `--config` arguments: given explicitly, they win over a
/// `[profile.release]` in the user's cargo configuration, so the stub gets
/// the size settings the workspace gives it and no others. Read from the
/// manifest rather than copied here, so they cannot drift apart.
fn release_profile(manifest: &Path) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read '{}': {e}", manifest.display()))?;
    let mut settings = Vec::new();
    let mut table: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = (header == "profile.release" || header.starts_with("profile.release."))
                .then(|| header.to_owned());
            continue;
        }
        if let (Some(table), Some((key, value))) = (&table, line.split_once('=')) {
            settings.push(format!("{table}.{}={}", key.trim(), value.trim()));
        }
    }
    if settings.is_empty() {
        return Err(format!(
            "no [profile.release] settings in '{}'",
            manifest.display()
        ));
    }
    Ok(settings)
}

/// The value of `pub const NAME: u16 = N;` in a source file of this crate:
/// the versions the embedded stubs must carry, read from where they are
/// defined rather than copied here.
fn const_u16(file: &Path, name: &str) -> Result<u16, String> {
    let text =
        fs::read_to_string(file).map_err(|e| format!("cannot read '{}': {e}", file.display()))?;
    let start = format!("pub const {name}: u16 = ");
    text.lines()
        .find_map(|line| line.strip_prefix(&start)?.strip_suffix(';')?.parse().ok())
        .ok_or_else(|| format!("no '{start}N;' line in '{}'", file.display()))
}

fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    write_bytes(path, text.as_bytes())
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), String> {
    // Unchanged content is not rewritten: cargo would rebuild the command.
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(path, bytes).map_err(|e| format!("cannot write '{}': {e}", path.display()))
}
