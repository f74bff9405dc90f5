//! The subcommands, each turning its arguments into library calls and its
//! results into output: data on stdout, a summary on stderr.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use payload_tools::delta::{self, Plan};
use payload_tools::digest::PartHasher;
use payload_tools::extract::{Sink, extract};
use payload_tools::manifest::{self, Release, UpdateManifest, default_download_url};
use payload_tools::metadata::{
    Argv0, DEFAULT_EXIT_WAIT_MS, DEFAULT_HEALTHY_AFTER_MS, DEFAULT_MAX_DOWNLOAD,
    DEFAULT_ROLLBACK_AFTER, MAX_CHECK_INTERVAL_S, MAX_FALLBACK_URL_SPECS, MAX_HEALTHY_AFTER_MS,
    MAX_ROLLBACK_AFTER, MAX_UNHEALTHY_EXIT_CODES, UpdateSettings,
};
use payload_tools::pack::{DEFAULT_LEVEL, DictionaryOptions, PackOptions};
use payload_tools::persist::{parent_dir, write_atomically};
use payload_tools::rangeio::{file_crc32, read_exact_at};
use payload_tools::stub;
use payload_tools::sys::Dir;
use payload_tools::text::Escaped;
use payload_tools::trailer::FORMAT_VERSION;
use payload_tools::{PackedFile, persist};

use crate::Failure;
use crate::args::{ConfigFile, PackArgs};
use crate::diagnose;
use crate::progress::Bar;
use crate::signing;

/// The longest `--update-url-spec` accepted.
const MAX_URL_SPEC_LEN: usize = 2048;

pub fn pack(args: PackArgs) -> Result<(), Failure> {
    let args = match &args.config {
        Some(path) => {
            let config = ConfigFile::load(path)?;
            args.merge(config)
        }
        None => args,
    };
    check_update_flags(&args)?;
    let recovery = recovery_settings(&args)?;
    let input = args.input.ok_or_else(|| Failure {
        message: "no input given".into(),
        hint: Some("payload-tools pack <FOLDER or PROGRAM> -o <OUTPUT>".into()),
    })?;
    let output = args.output.ok_or_else(|| Failure {
        message: "no output given".into(),
        hint: Some("add -o <OUTPUT>, the packed executable to write".into()),
    })?;
    let stub = crate::stubs::for_pack(args.stub, args.target.as_deref())?;
    let name = match args.name {
        Some(n) => n,
        None => output
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "cannot derive a name from '{}'; pass --name",
                    output.display()
                )
            })?,
    };
    let version = args.app_version.unwrap_or_else(|| "0.0.0".into());
    for spec in &args.update_url_spec {
        manifest::check_url_spec(spec, &name, &version, args.allow_insecure_http)
            .map_err(|e| format!("--update-url-spec '{spec}' cannot work: {e}"))?;
    }
    for (i, spec) in args.update_url_spec.iter().enumerate() {
        // The stub keeps a location and its validators in a record of at
        // most 8 KiB: a longer spec would not leave room for them.
        if spec.len() > MAX_URL_SPEC_LEN {
            return Err(format!(
                "--update-url-spec is longer than {MAX_URL_SPEC_LEN} bytes ({})",
                spec.len()
            )
            .into());
        }
        if args.update_url_spec[..i].contains(spec) {
            return Err(format!("--update-url-spec '{spec}' is given twice").into());
        }
    }
    if args.update_url_spec.len() > 1 + MAX_FALLBACK_URL_SPECS {
        return Err(format!(
            "give at most {} --update-url-spec (one and {MAX_FALLBACK_URL_SPECS} fallbacks)",
            1 + MAX_FALLBACK_URL_SPECS
        )
        .into());
    }
    let check_interval_s = args
        .update_check_interval
        .as_deref()
        .map(|text| {
            payload_tools::duration::parse_duration(text)
                .map_err(|e| format!("--update-check-interval '{text}': {e}"))
        })
        .transpose()?
        .unwrap_or(0);
    if check_interval_s > MAX_CHECK_INTERVAL_S {
        return Err(format!(
            "--update-check-interval is longer than {} days; a build checks at least that often",
            MAX_CHECK_INTERVAL_S / 86_400
        )
        .into());
    }
    if check_interval_s > 0 && args.update_url_spec.is_empty() {
        return Err("--update-check-interval needs --update-url-spec"
            .to_owned()
            .into());
    }
    if let Some(url) = &args.download_url {
        manifest::check_url(url, args.allow_insecure_http)
            .map_err(|e| format!("--download-url '{url}' cannot work: {e}"))?;
    }
    if let Some(url) = &args.report_url {
        if args.update_url_spec.is_empty() {
            return Err("--report-url needs --update-url-spec".to_owned().into());
        }
        manifest::check_report_url(url, args.allow_insecure_http).map_err(|e| {
            format!(
                "--report-url '{}' cannot work: {e}",
                Escaped(&url.chars().take(100).collect::<String>())
            )
        })?;
    }
    let exit_wait_ms = match args.update_exit_wait {
        Some(secs) if !(0.0..=3600.0).contains(&secs) => {
            return Err(
                format!("--update-exit-wait {secs} is out of range (0 to 3600 seconds)").into(),
            );
        }
        Some(secs) => (secs * 1000.0).round() as u64,
        None => DEFAULT_EXIT_WAIT_MS,
    };
    let public_keys = args
        .public_keys
        .iter()
        .map(|p| signing::load_public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    if public_keys.len() > 2 {
        return Err(
            "give at most two --public-key (the current key and the next one)"
                .to_owned()
                .into(),
        );
    }
    let secret_key = args
        .key
        .as_deref()
        .map(signing::load_secret_key)
        .transpose()?;
    let update = args.update_url_spec.first().map(|url_spec| UpdateSettings {
        url_spec: url_spec.clone(),
        fallback_url_specs: args.update_url_spec[1..].to_vec(),
        check_interval_s,
        exit_wait_ms,
        public_keys: public_keys.clone(),
        allow_downgrade: args.allow_downgrade,
        allow_insecure_http: args.allow_insecure_http,
        max_download_size: args.max_download_size.unwrap_or(DEFAULT_MAX_DOWNLOAD),
        healthy_after_ms: recovery.healthy_after_ms,
        unhealthy_exit_codes: recovery.unhealthy_exit_codes.clone(),
        rollback_after: recovery.rollback_after,
        restart_exit_code: recovery.restart_exit_code,
        report_url: args.report_url.clone(),
    });
    if update.is_none() && recovery.given {
        return Err(Failure {
            message: "--healthy-after, --unhealthy-exit-code, --rollback-after and --restart-exit-code only matter for builds that update themselves".into(),
            hint: Some("add --update-url-spec".into()),
        });
    }
    if update.is_none() && !public_keys.is_empty() {
        return Err(Failure {
            message: "--public-key only matters for builds that update themselves".into(),
            hint: Some("add --update-url-spec".into()),
        });
    }
    if args.auto_update_toml_file.is_some() && update.is_none() && args.download_url.is_none() {
        return Err(Failure {
            message: "--auto-update-toml-file needs to know the download URL".into(),
            hint: Some("add --update-url-spec (or --download-url)".into()),
        });
    }
    let threads = match args.threads {
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
    };
    let opts = PackOptions {
        input,
        output: output.clone(),
        stub: stub.path,
        stub_bytes: stub.bytes,
        entry: args.entry,
        name,
        version,
        argv0: args.argv0.map(Into::into).unwrap_or_default(),
        level: args.level.unwrap_or(DEFAULT_LEVEL),
        threads,
        update,
        windows_subsystem: args.windows_subsystem.map(Into::into).unwrap_or_default(),
        dictionary: DictionaryOptions {
            enabled: !args.no_dictionary,
            previous: args.previous,
        },
    };
    let had_previous = opts.dictionary.previous.is_some();
    let out_dir = parent_dir(&output);
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create '{}': {e}", out_dir.display()))?;
    let report = payload_tools::pack::pack(&opts, &mut Bar::new())?;
    let m = &report.metadata;
    if m.update.as_ref().is_some_and(|u| u.public_keys.is_empty()) {
        eprintln!(
            "payload-tools: warning: updates of this build are checked for corruption only, not authenticated: anyone who can answer its update URL can replace it; add --public-key"
        );
    }
    if report.file_times_left_out {
        eprintln!(
            "payload-tools: warning: the files' modification times did not fit in the metadata and were left out: the app's files will carry the time they are unpacked"
        );
    }
    eprintln!(
        "packed {} {} ({} entries, {} bytes) into '{}': {} bytes, {} frame(s)",
        m.name,
        m.version,
        m.entry_count,
        m.unpacked_size,
        output.display(),
        report.file_len,
        m.frames.len()
    );
    if let Some(d) = report.dictionary {
        eprintln!(
            "frames share a zstd dictionary of {} bytes ({})",
            d.len,
            if d.kept_previous {
                "the previous build's"
            } else {
                "trained from this app"
            }
        );
        // A fresh dictionary changes every frame: an update to this build
        // fetches all of it, unless it keeps the previous build's.
        if !d.kept_previous && report.metadata.update.is_some() && !had_previous {
            eprintln!(
                "hint: when this build replaces another, pack it with --previous OLD.bin: it keeps OLD's dictionary, so updates fetch only what changed"
            );
        }
    }
    if let Some(toml_path) = args.auto_update_toml_file {
        let file_name = output
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("'{}' has no usable file name", output.display()))?;
        let url = match (&args.download_url, args.update_url_spec.first()) {
            (Some(url), _) => url.clone(),
            (None, Some(spec)) => default_download_url(spec, &m.name, &m.version, file_name),
            (None, None) => unreachable!("checked above"),
        };
        warn_if_unsigned(m, secret_key.is_some());
        let signature = secret_key
            .as_ref()
            .map(|key| signing::sign_file(&output, key, &m.name, &m.version))
            .transpose()?;
        let manifest = UpdateManifest::offering(Release {
            url,
            crc32: report.file_crc32,
            size: Some(report.file_len),
            version: Some(m.version.clone()),
            signature,
            signatures: vec![],
            mirrors: vec![],
        });
        write_manifest(manifest, secret_key.as_ref(), m, &output, Some(&toml_path))?;
    }
    Ok(())
}

/// Update flags that would make a build whose updates silently never work.
/// The probation, rollback and restart settings of `pack`, checked.
struct Recovery {
    healthy_after_ms: u64,
    unhealthy_exit_codes: Vec<i32>,
    rollback_after: u32,
    restart_exit_code: Option<i32>,
    /// Whether any of them was given.
    given: bool,
}

fn recovery_settings(args: &PackArgs) -> Result<Recovery, Failure> {
    let healthy_after_ms = match args.healthy_after.as_deref() {
        None => DEFAULT_HEALTHY_AFTER_MS,
        Some(text) => payload_tools::duration::parse_duration(text)
            .map_err(|e| format!("--healthy-after '{text}': {e}"))?
            .saturating_mul(1000),
    };
    if healthy_after_ms > MAX_HEALTHY_AFTER_MS {
        return Err(format!(
            "--healthy-after is longer than {} minutes; a build on probation must prove itself sooner",
            MAX_HEALTHY_AFTER_MS / 60_000
        )
        .into());
    }
    let codes = &args.unhealthy_exit_code;
    if codes.len() > MAX_UNHEALTHY_EXIT_CODES {
        return Err(
            format!("give at most {MAX_UNHEALTHY_EXIT_CODES} --unhealthy-exit-code").into(),
        );
    }
    for &code in codes {
        check_exit_code("--unhealthy-exit-code", code)?;
    }
    let rollback_after = args.rollback_after.unwrap_or(DEFAULT_ROLLBACK_AFTER);
    if rollback_after > MAX_ROLLBACK_AFTER {
        return Err(format!("--rollback-after is at most {MAX_ROLLBACK_AFTER}").into());
    }
    if let Some(code) = args.restart_exit_code {
        check_exit_code("--restart-exit-code", code)?;
        if codes.contains(&code) {
            return Err(
                format!("--restart-exit-code {code} is also an --unhealthy-exit-code").into(),
            );
        }
    }
    Ok(Recovery {
        healthy_after_ms,
        unhealthy_exit_codes: codes.clone(),
        rollback_after,
        restart_exit_code: args.restart_exit_code,
        given: args.healthy_after.is_some()
            || !codes.is_empty()
            || args.rollback_after.is_some()
            || args.restart_exit_code.is_some(),
    })
}

/// An exit code a build names must be one an app can exit with everywhere:
/// Unix passes on only the low 8 bits (256 arrives as 0, -1 as 255), and 0
/// is a success.
fn check_exit_code(flag: &str, code: i32) -> Result<(), String> {
    match code {
        0 => Err(format!("{flag} 0: exit code 0 is a success")),
        1..=255 => Ok(()),
        _ => Err(format!(
            "{flag} {code}: an exit code is from 1 to 255 (Unix passes on only the low 8 bits)"
        )),
    }
}

fn check_update_flags(args: &PackArgs) -> Result<(), Failure> {
    if !args.update_url_spec.is_empty() && args.name.is_none() {
        let output = args.output.as_deref().unwrap_or(Path::new(""));
        let stem = output.file_stem().unwrap_or_default().to_string_lossy();
        return Err(Failure {
            message: format!(
                "a build that updates itself needs --name: the default, the output's name '{stem}', would change with the file name (myapp-1.0.bin, myapp-1.1.bin), and a build of another name is another app, whose updates are never installed"
            ),
            hint: Some(
                "add --name with the app's name, the same for every version (e.g. --name myapp)"
                    .into(),
            ),
        });
    }
    if args.key.is_some() && args.auto_update_toml_file.is_none() {
        return Err(Failure {
            message: "--key signs the update.toml that --auto-update-toml-file writes, and none is written: nothing would be signed".into(),
            hint: Some(
                "add --auto-update-toml-file FILE, or sign later: payload-tools update-toml EXE --url URL --key KEY"
                    .into(),
            ),
        });
    }
    Ok(())
}

fn open_packed(exe: &Path) -> Result<PackedFile, Failure> {
    PackedFile::open(exe)?.ok_or_else(|| diagnose::no_payload(exe))
}

pub fn inspect(exe: &Path, json: bool) -> Result<(), Failure> {
    let packed = open_packed(exe)?;
    let (file_len, file_crc) = file_crc32(&packed.file, exe)?;
    let t = &packed.trailer;
    let m = &packed.metadata;
    // The updater runs the self-test if either the metadata or the stub's
    // marker names the protocol it knows (docs/updates.md, "Older stubs").
    let stub_self_test = stub::self_test_version_in_file(&packed.file, t.payload_offset, exe)?;
    if json {
        let value = serde_json::json!({
            "format_version": u32::from(m.format_version),
            "name": m.name,
            "version": m.version,
            "entry": m.entry,
            "argv0": m.argv0,
            "file_len": file_len,
            "file_crc32": file_crc,
            "payload_offset": t.payload_offset,
            "payload_len": t.payload_len,
            "payload_crc32": t.payload_crc32,
            "metadata_offset": t.metadata_offset,
            "metadata_len": t.metadata_len,
            "metadata_crc32": t.metadata_crc32,
            "unpacked_size": m.unpacked_size,
            "entry_count": m.entry_count,
            "frames": m.frames.len(),
            "frame_index": m.frames.iter().map(|f| [f.compressed_len, f.tar_len]).collect::<Vec<_>>(),
            "frame_hashes": m.frame_hashes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "requires": m.requires,
            "self_test": m.self_test,
            "stub_self_test": stub_self_test,
            "update": m.update.as_ref().map(|u| serde_json::json!({
                "url_spec": u.url_spec,
                "exit_wait_ms": u.exit_wait_ms,
                "public_keys": u.public_keys,
                "allow_downgrade": u.allow_downgrade,
                "allow_insecure_http": u.allow_insecure_http,
                "max_download_size": u.max_download_size,
                "fallback_url_specs": u.fallback_url_specs,
                "check_interval_s": u.check_interval_s,
                "healthy_after_ms": u.healthy_after_ms,
                "unhealthy_exit_codes": u.unhealthy_exit_codes,
                "rollback_after": u.rollback_after,
                "restart_exit_code": u.restart_exit_code,
                "report_url": u.report_url,
            })),
        });
        println!("{value:#}");
        return Ok(());
    }
    println!("format version  {}", u32::from(m.format_version));
    println!("name            {}", m.name);
    println!("version         {}", m.version);
    println!("entry           {}", Escaped(&m.entry));
    if m.argv0 == Argv0::Entry {
        println!("argv[0]         the entry's path in the cache");
    }
    println!("file            {file_len} bytes, CRC-32 {file_crc:08x}");
    println!("stub            {} bytes", t.payload_offset);
    println!(
        "payload         offset {}, {} bytes, CRC-32 {:08x}, {} frame(s)",
        t.payload_offset,
        t.payload_len,
        t.payload_crc32,
        m.frames.len()
    );
    println!(
        "metadata        offset {}, {} bytes, CRC-32 {:08x}",
        t.metadata_offset, t.metadata_len, t.metadata_crc32
    );
    println!(
        "unpacked        {} bytes in {} entries",
        m.unpacked_size, m.entry_count
    );
    let known = Some(stub::SELF_TEST_VERSION);
    match (m.self_test, stub_self_test) {
        (promised, marker) if promised == known || marker == known => println!(
            "self-test       protocol {}: an updater runs it before installing this build",
            stub::SELF_TEST_VERSION
        ),
        (None, None) => println!("self-test       none: an updater installs this build untested"),
        (promised, marker) => println!(
            "self-test       protocol {}, newer than this version knows: its updater installs this build untested",
            promised.or(marker).unwrap_or_default()
        ),
    }
    match &m.update {
        Some(u) => {
            println!(
                "updates         from {} (waits up to {} ms after exit)",
                u.url_spec, u.exit_wait_ms
            );
            if u.public_keys.is_empty() {
                println!("signatures      none: updates are not authenticated");
            }
            for key in &u.public_keys {
                println!("signed by       {key}");
            }
            let rollback = match u.rollback_after {
                0 => "never rolled back".to_owned(),
                k => format!("rolled back after {k} failed starts"),
            };
            println!(
                "probation       healthy after {} ms; {rollback}",
                u.healthy_after_ms
            );
            if !u.unhealthy_exit_codes.is_empty() {
                println!("unhealthy exits {:?}", u.unhealthy_exit_codes);
            }
            if let Some(code) = u.restart_exit_code {
                println!("restart code    {code}");
            }
            if let Some(url) = &u.report_url {
                println!("reports to      {}", Escaped(url));
            }
        }
        None => println!("updates         off"),
    }
    Ok(())
}

/// What an update from the build `old` to `exe` fetches, as the updater
/// does it ([`payload_tools::delta`]): the parts of `old` are named by
/// their bytes (hashed here when its metadata does not name them), so the
/// figures are exact.
pub fn inspect_against(exe: &Path, old: &Path, json: bool) -> Result<(), Failure> {
    let new = open_packed(exe)?;
    let old_build = open_packed(old)?;
    let mut old_parts = delta::parts(&old_build.trailer, &old_build.metadata);
    let mut buf = vec![0u8; 1 << 20];
    for part in &mut old_parts {
        if part.hash.is_some() {
            continue;
        }
        let mut hasher = PartHasher::default();
        let mut at = part.offset;
        while at < part.end() {
            let n = (part.end() - at).min(buf.len() as u64) as usize;
            read_exact_at(&old_build.file, &mut buf[..n], at, old)?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        part.hash = Some(hasher.finish());
    }
    let plan = Plan::new(&new.trailer, &new.metadata, &old_parts);
    let cost = plan.cost();
    let percent = cost.fetched_bytes as f64 * 100.0 / cost.file_len.max(1) as f64;
    if json {
        let value = serde_json::json!({
            "old_version": old_build.metadata.version,
            "new_version": new.metadata.version,
            "incremental": cost.incremental,
            "file_len": cost.file_len,
            "fetched_bytes": cost.fetched_bytes,
            "fetched_percent": (percent * 100.0).round() / 100.0,
            "requests": cost.requests,
            "parts": cost.parts,
            "copied_parts": cost.copied_parts,
            "copied_bytes": cost.copied_bytes,
        });
        println!("{value:#}");
        return Ok(());
    }
    println!(
        "update          {} {} -> {}",
        new.metadata.name,
        Escaped(&old_build.metadata.version),
        Escaped(&new.metadata.version)
    );
    if cost.incremental {
        println!(
            "copies          {} of {} parts, {} bytes, from the installed build",
            cost.copied_parts, cost.parts, cost.copied_bytes
        );
    } else {
        println!("copies          nothing: the whole build is downloaded");
    }
    println!(
        "fetches         {} of {} bytes ({percent:.1}%) in {} requests, the build's end included",
        cost.fetched_bytes, cost.file_len, cost.requests
    );
    Ok(())
}

pub fn verify(exe: &Path) -> Result<(), Failure> {
    let (packed, report) = verified(exe)?;
    println!(
        "ok: '{}' is intact ({} {}, {} entries, {} bytes in {} frame(s))",
        exe.display(),
        packed.metadata.name,
        packed.metadata.version,
        report.entries,
        report.bytes,
        report.frames
    );
    Ok(())
}

/// The packed file at `exe`, opened once and checked as `verify` checks
/// it (its stub, every checksum, a full unpack to nowhere); the caller
/// uses the same open file.
pub fn verified(
    exe: &Path,
) -> Result<(PackedFile, payload_tools::extract::ExtractReport), Failure> {
    let packed = open_packed(exe)?;
    let stub_len = packed.trailer.payload_offset;
    match stub::find_in_file(&packed.file, stub_len, exe)? {
        Some(FORMAT_VERSION) => {}
        Some(other) => {
            return Err(Failure {
                message: format!(
                    "the stub of '{}' reads packed-file format {other}, but its payload is format {FORMAT_VERSION}",
                    exe.display()
                ),
                hint: Some("pack it again with one build's payload-tools and bootstrap".into()),
            });
        }
        None => {
            return Err(Failure {
                message: format!(
                    "'{}' does not start with a onefile stub: its first {stub_len} bytes are another program, which is what would run",
                    exe.display()
                ),
                hint: Some("pack it again with the 'bootstrap' stub".into()),
            });
        }
    }
    let report = extract(&packed, Sink::Discard, cores())?;
    Ok((packed, report))
}

/// Unpacks into `output`, which may sit in a folder other users can write
/// (a sticky `/tmp`): nothing they plant there is followed or reused.
///
/// 1. `output` must not exist, or be an empty folder (never a link).
/// 2. Its parent is opened and held; a fresh folder with a random name is
///    created in it exclusively, mode 0700, and held (checked to be ours).
/// 3. The payload is extracted into the held folder (on Linux through
///    `/proc/self/fd`, so even a rename of the folder cannot redirect it).
/// 4. The folder gets the usual mode (0777 minus umask) and is renamed to
///    `output` inside the held parent.
pub fn unpack(exe: &Path, output: &Path) -> Result<(), Failure> {
    let packed = open_packed(exe)?;
    let umask = payload_tools::sys::umask();
    let name = output
        .file_name()
        .ok_or_else(|| format!("'{}' names no folder to create", output.display()))?;
    match std::fs::symlink_metadata(output) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot use '{}': {e}", output.display()).into()),
        Ok(meta) if meta.is_dir() && is_empty_dir(output) => {}
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(Failure {
                message: format!("'{}' is a symbolic link", output.display()),
                hint: Some("unpack into a folder that does not exist yet".into()),
            });
        }
        Ok(_) => {
            return Err(format!("'{}' exists and is not an empty folder", output.display()).into());
        }
    }
    let parent = parent_dir(output);
    let absolute = std::path::absolute(parent)
        .map_err(|e| format!("cannot use '{}': {e}", parent.display()))?;
    payload_tools::sys::check_path_owned(&absolute).map_err(|reason| Failure {
        message: format!("will not unpack into '{}': {reason}", output.display()),
        hint: Some("unpack into a folder that only you (or root) can change".into()),
    })?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create '{}': {e}", parent.display()))?;
    let parent =
        Dir::open(parent).map_err(|e| format!("cannot open '{}': {e}", parent.display()))?;
    let (staging_name, staging) = create_staging(&parent, name)?;
    let staging_path = parent.path().join(&staging_name);
    let root = staging.held_path();
    let done = extract(&packed, Sink::Disk(&root), cores())
        .map_err(|e| Failure::from(e).naming(&root, &staging_path))
        .and_then(|report| {
            staging
                .set_mode(0o777 & !umask)
                .and_then(|()| parent.rename(&staging_name, name))
                .map_err(|e| format!("cannot rename into '{}': {e}", output.display()).into())
                .map(|()| report)
        });
    let report = match done {
        Ok(report) => report,
        Err(failure) => {
            // Only ever the folder we made: if something else now has its
            // name, it is left alone.
            if staging.is_at(&staging_path) {
                let _ = std::fs::remove_dir_all(&staging_path);
            }
            return Err(failure);
        }
    };
    eprintln!(
        "unpacked {} entries ({} bytes) into '{}'; run {}",
        report.entries,
        report.bytes,
        output.display(),
        output.join(&packed.metadata.entry).display()
    );
    Ok(())
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

/// A fresh private folder beside the output, `.<name>.tmp-<pid>-<random>`.
fn create_staging(parent: &Dir, name: &OsStr) -> Result<(OsString, Dir), Failure> {
    let mut attempts = 0;
    loop {
        let staging_name = persist::temp_name(Some(name));
        match parent.create_private_dir(&staging_name) {
            Ok(dir) => return Ok((staging_name, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 16 => {
                attempts += 1;
            }
            Err(e) => {
                return Err(format!(
                    "cannot create a private folder in '{}': {e}",
                    parent.path().display()
                )
                .into());
            }
        }
    }
}

pub fn update_toml(
    exe: &Path,
    url: &str,
    output: Option<&Path>,
    key: Option<&Path>,
) -> Result<(), Failure> {
    let packed = open_packed(exe)?;
    warn_if_unsigned(&packed.metadata, key.is_some());
    let (len, crc) = file_crc32(&packed.file, exe)?;
    let m = &packed.metadata;
    let secret_key = key.map(signing::load_secret_key).transpose()?;
    let signature = secret_key
        .as_ref()
        .map(|key| signing::sign_file(exe, key, &m.name, &m.version))
        .transpose()?;
    let manifest = UpdateManifest::offering(Release {
        url: url.to_owned(),
        crc32: crc,
        size: Some(len),
        version: Some(m.version.clone()),
        signature,
        signatures: vec![],
        mirrors: vec![],
    });
    write_manifest(manifest, secret_key.as_ref(), m, exe, output)
}

pub fn keygen(base: &Path) -> Result<(), Failure> {
    let (secret, public) = signing::keygen(base)?;
    eprintln!(
        "wrote '{}' (secret: keep it out of the repository) and '{}' (public: pack --public-key)",
        secret.display(),
        public.display()
    );
    Ok(())
}

pub fn sign(exe: &Path, key: &Path, output: Option<&Path>) -> Result<(), Failure> {
    let packed = open_packed(exe)?;
    let m = &packed.metadata;
    let signature = signing::sign_file(exe, &signing::load_secret_key(key)?, &m.name, &m.version)?;
    let default_out = {
        let mut name = exe.as_os_str().to_owned();
        name.push(".minisig");
        PathBuf::from(name)
    };
    let out = output.unwrap_or(&default_out);
    write_atomically(out, signature.as_bytes(), 0o644)?;
    eprintln!("wrote '{}'", out.display());
    Ok(())
}

/// Writes `manifest` to `output` (standard output without one). With a
/// key, the manifest itself is signed too: it then names `app`, a sequence
/// (the time now, so that later manifests of the app have higher ones) and
/// an expiry ([`manifest::DEFAULT_LIFETIME_S`] from now), and the platform
/// and URL specs of `build` (at `build_path`) it is published for.
fn write_manifest(
    mut manifest: UpdateManifest,
    key: Option<&minisign::SecretKey>,
    build: &payload_tools::Metadata,
    build_path: &Path,
    output: Option<&Path>,
) -> Result<(), Failure> {
    let text = match key {
        None => manifest.to_toml(),
        Some(key) => {
            let now = signing::now_unix();
            let (os, arch) = platform_of(build_path)?;
            manifest.app = Some(build.name.clone());
            manifest.os = Some(os.into());
            manifest.arch = Some(arch.into());
            if let Some(update) = &build.update {
                manifest.specs = std::iter::once(&update.url_spec)
                    .chain(&update.fallback_url_specs)
                    .cloned()
                    .collect();
            }
            manifest.sequence = Some(u64::try_from(now).unwrap_or(0));
            manifest.expires = Some(manifest::datetime_from_unix(
                now.saturating_add(manifest::DEFAULT_LIFETIME_S),
            ));
            signing::sign_manifest(&manifest, std::slice::from_ref(key))?
        }
    };
    match output {
        None => print!("{text}"),
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create '{}': {e}", dir.display()))?;
            }
            write_atomically(path, text.as_bytes(), 0o644)?;
            eprintln!("wrote '{}' (crc32 = {})", path.display(), manifest.crc32);
        }
    }
    Ok(())
}

/// The OS and architecture the stub of the build at `path` runs on.
fn platform_of(path: &Path) -> Result<(&'static str, &'static str), Failure> {
    use std::io::Read;
    let mut header = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .and_then(|file| file.take(4096).read_to_end(&mut header))
        .map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    payload_tools::site::platform_of_stub(&header)
        .map_err(|e| format!("'{}': {e}", path.display()).into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A manifest without a signature for a build that trusts keys is one its
/// users will refuse: say so while it can still be fixed.
fn warn_if_unsigned(metadata: &payload_tools::Metadata, signed: bool) {
    let keyed = metadata
        .update
        .as_ref()
        .is_some_and(|u| !u.public_keys.is_empty());
    if keyed && !signed {
        eprintln!(
            "payload-tools: warning: '{}' trusts public keys but this update.toml carries no signature: its users will refuse it; add --key",
            metadata.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::check_exit_code;

    #[test]
    fn exit_codes_a_build_names_are_from_1_to_255() {
        for code in [1, 75, 255] {
            assert_eq!(check_exit_code("--restart-exit-code", code), Ok(()));
        }
        for code in [0, -1, 256, 300, i32::MIN, i32::MAX] {
            let err = check_exit_code("--restart-exit-code", code).expect_err("refused");
            assert!(
                err.starts_with(&format!("--restart-exit-code {code}: ")),
                "{err}"
            );
        }
    }
}
