//! The release commands, `publish`, `rollout` and `refresh`, which keep a
//! site folder (`payload_tools::site`) for a static host:
//!
//! - `publish BUILD --site DIR`: checks the build (as `verify` does) and
//!   that installs of the site's builds would take it, copies it where its
//!   URL spec says, then writes every `update.toml`, then the site state,
//!   then deletes builds beyond `--keep`, in that order, so that a site
//!   caught at any moment only names builds that are there;
//! - `rollout --site DIR --percent P | --halt | --resume`: changes the
//!   latest release's share in place and rewrites every manifest;
//! - `rollout --site DIR --halt-if-rollbacks P --log LOG...`: counts the
//!   latest release's installs and rollbacks in the access logs
//!   (`crate::stats`) and halts it, as `--halt` does, when rollbacks
//!   exceed P% of installs; the exit status says which (docs/publishing.md);
//! - `refresh --site DIR --key KEY`: rewrites every manifest with a new
//!   sequence and expiry, nothing else.
//!
//! Every manifest write re-signs with the `--key`s given, under a sequence
//! above the site's last; a signed site is never re-signed without one of
//! its keys, nor written unsigned.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use minisign::SecretKey;
use payload_tools::duration::parse_duration;
use payload_tools::manifest::{self, DEFAULT_LIFETIME_S, datetime_from_unix, trusted_comment};
use payload_tools::metadata::UpdateSettings;
use payload_tools::site::{self, STATE_FORMAT, Site, SiteError, SiteRelease, SiteState};
use payload_tools::text::Escaped;
use payload_tools::version::is_newer;

use crate::Failure;
use crate::commands::verified;
use crate::signing;

/// `payload-tools publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The packed executable to publish.
    pub build: PathBuf,
    /// The site folder (created if needed), uploaded as-is to the host.
    #[arg(long, value_name = "DIR")]
    pub site: PathBuf,
    /// The URL the site's root is served at [default: the scheme and host
    /// of the build's update URL; remembered].
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Sign the build and every manifest with this minisign secret key;
    /// give it twice to sign with the old and the new key (rotation).
    #[arg(long = "key", value_name = "NAME.key")]
    pub keys: Vec<PathBuf>,
    /// Offer the build to this share of installs (0 to 100, hundredths
    /// allowed); the others are offered the stable release [default: 100].
    #[arg(long, value_name = "PERCENT")]
    pub rollout: Option<String>,
    /// Offer the build to every install whatever the rollout share.
    #[arg(long)]
    pub critical: bool,
    /// Another host serving this same folder (a base URL); repeat for more.
    /// Replaces the mirrors the site remembers; without it they are kept.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Keep the executables of the last N releases (builds a manifest still
    /// offers are always kept; update.toml files are never deleted).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub keep: usize,
    /// How long the manifests are valid [default for signed sites: 7d;
    /// unsigned: no expiry].
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// Publish a build whose update URL spec differs from the site's.
    #[arg(long)]
    pub force: bool,
    /// Sign even though installs of a published version trust none of the
    /// --key given: they stop updating for good.
    #[arg(long)]
    pub drop_key: bool,
    /// Have installs report updates, rollbacks, refusals and failures to this URL (written into
    /// every manifest as `report`, remembered by the site; overrides the URL builds were packed
    /// with) [default: the site's, if any].
    #[arg(long, value_name = "URL", conflicts_with = "no_report_url")]
    pub report_url: Option<String>,
    /// Forget the site's report URL: manifests name none (builds report to the URL they were
    /// packed with, if any).
    #[arg(long)]
    pub no_report_url: bool,
}

/// `payload-tools rollout`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).args(["percent", "halt", "resume", "critical", "not_critical", "halt_if_rollbacks"])))]
pub struct RolloutArgs {
    /// The site folder.
    #[arg(long, value_name = "DIR")]
    pub site: PathBuf,
    /// Offer the latest release to this share of installs (100 promotes it).
    #[arg(long, value_name = "PERCENT")]
    pub percent: Option<String>,
    /// Stop offering the latest release: installs are offered the stable one.
    #[arg(long)]
    pub halt: bool,
    /// Offer a halted release again, to the same share.
    #[arg(long)]
    pub resume: bool,
    /// Offer the latest release to every install whatever the share.
    #[arg(long)]
    pub critical: bool,
    /// Offer the latest release to its share only (clears --critical).
    #[arg(long)]
    pub not_critical: bool,
    /// Halt the latest release if its rollbacks in the --log files exceed
    /// this share of its installs there. Exit status: 0 not halted (or
    /// already halted), 3 halted now, 1 an error.
    #[arg(long, value_name = "PERCENT", requires = "logs")]
    pub halt_if_rollbacks: Option<String>,
    /// Access logs (nginx `combined`, plain or .gz) for --halt-if-rollbacks.
    #[arg(long = "log", value_name = "LOG", num_args = 1..)]
    pub logs: Vec<PathBuf>,
    /// Sign the manifests with this minisign secret key (repeatable).
    #[arg(long = "key", value_name = "NAME.key")]
    pub keys: Vec<PathBuf>,
    /// How long the manifests are valid [default for signed sites: 7d].
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// Sign even though installs of a published version trust none of the
    /// --key given: they stop updating for good.
    #[arg(long)]
    pub drop_key: bool,
}

/// `payload-tools refresh`.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The site folder.
    #[arg(long, value_name = "DIR")]
    pub site: PathBuf,
    /// Sign the manifests with this minisign secret key (repeatable).
    #[arg(long = "key", value_name = "NAME.key", required = true)]
    pub keys: Vec<PathBuf>,
    /// How long the manifests are valid [default: 7d].
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// Sign even though installs of a published version trust none of the
    /// --key given: they stop updating for good.
    #[arg(long)]
    pub drop_key: bool,
}

/// A secret key and what identifies it.
#[derive(Clone)]
struct Key {
    secret: SecretKey,
    /// The key id, hex (what the state remembers).
    id: String,
    /// The public key's base64 line (what builds trust).
    public: String,
}

pub fn publish(args: PublishArgs) -> Result<(), Failure> {
    let mut keys = load_keys(&args.keys)?;
    let expires_in = args.expires_in.as_deref().map(parse_expiry).transpose()?;
    let percent = match &args.rollout {
        Some(text) => parse_percent(text, "--rollout")?,
        None => 100.0,
    };
    let site = Site::open(&args.site)?;
    let _lock = site.lock()?;
    let stale = surveyed(&site)?;
    let old = SiteState::load(site.root())?;
    let (packed, _) = verified(&args.build).map_err(|f| Failure {
        message: format!("the build does not verify: {}", f.message),
        hint: Some("`payload-tools verify BUILD` shows why; publish an intact build".into()),
    })?;
    let m = &packed.metadata;
    let update = m.update.as_ref().ok_or_else(|| Failure {
        message: format!(
            "'{}' does not update itself: no install would read the site",
            args.build.display()
        ),
        hint: Some("pack it with --update-url-spec".into()),
    })?;
    let mut header = Vec::with_capacity(site::STUB_HEADER_LEN);
    (&packed.file)
        .take(site::STUB_HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(|e| format!("cannot read '{}': {e}", args.build.display()))?;
    let (os, arch) = site::platform_of_stub(&header)?;
    let url_specs = url_specs_of(update);

    if let Some(old) = &old {
        refuse_stranding(
            old, &m.name, &m.version, os, arch, &url_specs, &keys, args.force,
        )?;
    } else if percent < 100.0 {
        return Err(Failure {
            message: format!(
                "--rollout {percent} on the site's first release: installs outside the rollout would be offered nothing"
            ),
            hint: Some("publish the first release at 100% (leave --rollout out)".into()),
        });
    }
    refuse_untrusted_keys(update, &keys)?;

    let base_url = match (&args.base_url, &old) {
        (Some(url), _) => checked_base(url, update.allow_insecure_http, "--base-url")?,
        (None, Some(old)) => old.base_url.clone(),
        (None, None) => {
            let url = site::expand(&update.url_spec, &m.name, &m.version, os, arch);
            site::origin_of(&url)
                .ok_or_else(|| format!("the build's update URL '{url}' has no host"))?
        }
    };
    let mirrors = if args.mirrors.is_empty() {
        old.as_ref().map(|s| s.mirrors.clone()).unwrap_or_default()
    } else {
        args.mirrors
            .iter()
            .map(|url| checked_base(url, update.allow_insecure_http, "--mirror"))
            .collect::<Result<_, _>>()?
    };
    let file_name = args
        .build
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("'{}' has no usable file name", args.build.display()))?;
    let mut state = old.clone().unwrap_or_else(|| SiteState {
        format: STATE_FORMAT,
        app: m.name.clone(),
        os: os.into(),
        arch: arch.into(),
        base_url: String::new(),
        mirrors: vec![],
        url_specs: vec![],
        public_keys: vec![],
        allow_insecure_http: false,
        signing_keys: vec![],
        last_sequence: 0,
        releases: vec![],
        report_url: None,
    });
    if let Some(url) = &args.report_url {
        manifest::check_report_url(url, update.allow_insecure_http).map_err(|e| {
            format!(
                "--report-url '{}' cannot work: {e}",
                Escaped(&url.chars().take(100).collect::<String>())
            )
        })?;
        state.report_url = Some(url.clone());
    }
    if args.no_report_url {
        state.report_url = None;
    }
    state.base_url = base_url;
    state.mirrors = mirrors;
    state.url_specs = url_specs.clone();
    state.public_keys = update.public_keys.clone();
    state.allow_insecure_http = update.allow_insecure_http;
    let bases = state.bases();
    let under_base = |url: &str| {
        site::site_path(url, &bases).map_err(|e| Failure {
            message: e.to_string(),
            hint: Some("pass --base-url with the URL the site's root is served at".into()),
        })
    };
    let build_url = site::build_url(&update.url_spec, &m.name, &m.version, os, arch, file_name);
    let build_path = under_base(&build_url)?;
    under_base(&site::expand(
        &update.url_spec,
        &m.name,
        &m.version,
        os,
        arch,
    ))?;
    let now = signing::now_unix();
    let previously_offered = old
        .as_ref()
        .map(|o| o.offered_indexes())
        .unwrap_or_default();
    state.releases.push(SiteRelease {
        version: m.version.clone(),
        path: build_path.clone(),
        size: 0,
        crc32: 0,
        percent,
        halted: false,
        critical: args.critical,
        salt: new_salt()?,
        published_at: datetime_from_unix(now),
        kept: true,
        url_specs,
        signatures: vec![],
        public_keys: update.public_keys.clone(),
        signed_by: vec![],
    });
    order_keys(&state, &mut keys);
    if let Some(release) = state.releases.last_mut() {
        release.signed_by = keys.iter().map(|k| k.public.clone()).collect();
    }
    let deletions = state.builds_to_delete(args.keep.max(1), &previously_offered);
    for i in &deletions {
        // A deleted build's signatures are of no use any more.
        state.releases[*i].kept = false;
        state.releases[*i].signatures.clear();
    }
    // Everything this publish will write or delete is checked before the
    // first byte is written: a link, a folder in the way, two files at one
    // path or installs left with no key they trust stop it here.
    let manifests = preflight(&state, &keys, args.drop_key)?;
    site.file_path(&build_path, false)?;
    for path in &manifests {
        site.file_path(path, false)?;
    }
    site.file_path(site::STATE_FILE, false)?;
    for i in &deletions {
        site.file_path(&state.releases[*i].path, false)?;
    }
    state.to_toml()?;
    remove_stale(&stale);
    let secrets: Vec<&SecretKey> = keys.iter().map(|k| &k.secret).collect();
    let comment = trusted_comment(&m.name, &m.version);
    let written = site.write_build(&build_path, &packed.file, |file| {
        let mut signatures = Vec::with_capacity(secrets.len());
        for key in &secrets {
            std::io::Seek::rewind(file).map_err(|e| format!("cannot read the build: {e}"))?;
            let signature = minisign::sign(
                None,
                key,
                &mut *file,
                Some(&comment),
                Some("signature from payload-tools"),
            )
            .map_err(|e| format!("cannot sign the build: {e}"))?;
            signatures.push(signature.into_string());
        }
        Ok::<_, String>(signatures)
    })?;
    let (size, crc32, signatures) = written?;
    println_written(&site.root().join(&build_path));
    if let Some(release) = state.releases.last_mut() {
        release.size = size;
        release.crc32 = crc32;
        release.signatures = signatures;
    }
    // The build's own trust in the keys was checked above: a publish may
    // sign with a key the site's earlier manifests were not signed with.
    let summary = rewrite(&site, &mut state, &keys, expires_in, now, args.drop_key)?;
    for i in deletions {
        let path = site.remove_build(&state.releases[i].path, &manifests)?;
        eprintln!("deleted '{}'", path.display());
    }
    let offered = match state.stable_index() {
        Some(stable) if percent < 100.0 => format!(
            "to {percent}% of installs (the others: {})",
            state.releases[stable].version
        ),
        _ => "to every install".into(),
    };
    eprintln!("published {} {} {offered}, {summary}", m.name, m.version);
    Ok(())
}

/// What `rollout` did, for its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutOutcome {
    /// The change asked for, or, with `--halt-if-rollbacks`, nothing to do.
    Done,
    /// `--halt-if-rollbacks` halted the latest release.
    HaltedNow,
}

pub fn rollout(args: RolloutArgs) -> Result<RolloutOutcome, Failure> {
    let mut keys = load_keys(&args.keys)?;
    let expires_in = args.expires_in.as_deref().map(parse_expiry).transpose()?;
    let percent = args
        .percent
        .as_deref()
        .map(|text| parse_percent(text, "--percent"))
        .transpose()?;
    let halt_threshold = args
        .halt_if_rollbacks
        .as_deref()
        .map(|text| parse_percent(text, "--halt-if-rollbacks"))
        .transpose()?;
    if halt_threshold.is_none() && !args.logs.is_empty() {
        return Err(Failure {
            message: "--log is read only by --halt-if-rollbacks".into(),
            hint: Some(
                "payload-tools rollout --site DIR --halt-if-rollbacks 2 --log LOG...".into(),
            ),
        });
    }
    let site = Site::open(&args.site)?;
    let _lock = site.lock()?;
    let stale = surveyed(&site)?;
    let mut state = load_existing(&site)?;
    if halt_threshold.is_some() && !state.signing_keys.is_empty() && keys.is_empty() {
        // Found out now, not the day a halt is needed.
        return Err(Failure {
            message: format!(
                "the site's manifests are signed (key {}), and no --key is given: a halt could not be written",
                state.signing_keys.join(", ")
            ),
            hint: Some("pass --key with the site's secret key".into()),
        });
    }
    let halt_now = match halt_threshold {
        Some(threshold) => {
            if !rollbacks_exceed(&state, threshold, &args.logs)? {
                return Ok(RolloutOutcome::Done);
            }
            true
        }
        None => false,
    };
    let latest = state.releases.last_mut().ok_or(SiteError::Empty)?;
    let change = if halt_now {
        latest.halted = true;
        "halted".to_owned()
    } else if let Some(percent) = percent {
        latest.percent = percent;
        format!("offered to {percent}%")
    } else if args.halt {
        latest.halted = true;
        "halted".to_owned()
    } else if args.critical || args.not_critical {
        latest.critical = args.critical;
        if args.critical {
            "offered to every install (critical)".to_owned()
        } else {
            format!("offered to {}% (not critical)", latest.percent)
        }
    } else if latest.halted {
        latest.halted = false;
        format!("resumed at {}%", latest.percent)
    } else {
        return Err(Failure {
            message: format!(
                "{} is not halted: there is nothing to resume",
                latest.version
            ),
            hint: Some("`payload-tools rollout --percent P` changes its share".into()),
        });
    };
    let version = latest.version.clone();
    let still_halted = latest.halted && !args.halt;
    order_keys(&state, &mut keys);
    remove_stale(&stale);
    let summary = rewrite(
        &site,
        &mut state,
        &keys,
        expires_in,
        signing::now_unix(),
        args.drop_key,
    )?;
    eprintln!("{} {version} {change}, {summary}", state.app);
    if still_halted {
        eprintln!(
            "payload-tools: note: {version} stays halted: `payload-tools rollout --resume` offers it again"
        );
    }
    Ok(if halt_now {
        RolloutOutcome::HaltedNow
    } else {
        RolloutOutcome::Done
    })
}

/// Fewest rollbacks that halt a release, whatever its installs: reports
/// carry no identity, so a few forged ones must not halt a fresh release.
pub const MIN_ROLLBACKS_TO_HALT: u64 = 3;

/// Whether the latest release of `state` is to be halted now: its
/// rollbacks in `logs` are at least [`MIN_ROLLBACKS_TO_HALT`] and exceed
/// `threshold`% of its installs there, it is not halted already, and a
/// stable release is there to fall back to. Counts by the contract in two
/// plain counters (`stats::HaltCount`), never capped. Says what it saw in
/// one line on standard output either way.
fn rollbacks_exceed(state: &SiteState, threshold: f64, logs: &[PathBuf]) -> Result<bool, Failure> {
    let latest = state.latest().ok_or(SiteError::Empty)?;
    let count = crate::stats::HaltCount::read(logs, &state.app, &latest.version)?;
    let (installs, rollbacks) = (count.installs, count.rollbacks);
    // Counts of log lines: far below 2^52, exact as f64.
    let above = rollbacks as f64 * 100.0 > threshold * installs as f64;
    let exceeds = above && rollbacks >= MIN_ROLLBACKS_TO_HALT;
    let share = if installs == 0 {
        String::new()
    } else {
        format!(" ({:.1}%)", rollbacks as f64 * 100.0 / installs as f64)
    };
    let ignored = if count.ignored == 0 {
        String::new()
    } else {
        format!(
            ", {} report(s) ignored (not a GET by its updater)",
            count.ignored
        )
    };
    let seen = format!(
        "{} {}: {rollbacks} rollback(s) of {installs} install(s){share} in {} log line(s){ignored}",
        state.app, latest.version, count.lines
    );
    let verdict = match (exceeds, latest.halted, state.stable_index()) {
        (false, _, _) if above && rollbacks > 0 => format!(
            "above {threshold}%, but fewer than {MIN_ROLLBACKS_TO_HALT} rollbacks: not halted"
        ),
        (false, _, _) => format!("within {threshold}%: not halted"),
        (true, true, _) => format!("above {threshold}%: already halted"),
        (true, false, None) => format!(
            "above {threshold}%, but there is no earlier release at 100% to fall back to: not halted (publish a fixed build)"
        ),
        (true, false, Some(_)) => format!("above {threshold}%: halting it"),
    };
    println!("{seen}, {verdict}");
    Ok(exceeds && !latest.halted && state.stable_index().is_some())
}

pub fn refresh(args: RefreshArgs) -> Result<(), Failure> {
    let mut keys = load_keys(&args.keys)?;
    let expires_in = args.expires_in.as_deref().map(parse_expiry).transpose()?;
    let site = Site::open(&args.site)?;
    let _lock = site.lock()?;
    let stale = surveyed(&site)?;
    let mut state = load_existing(&site)?;
    order_keys(&state, &mut keys);
    remove_stale(&stale);
    let summary = rewrite(
        &site,
        &mut state,
        &keys,
        expires_in,
        signing::now_unix(),
        args.drop_key,
    )?;
    eprintln!("refreshed {}: {summary}", state.app);
    Ok(())
}

/// Writes every manifest of `state` (signed by `keys`, under a new
/// sequence), then the state; returns the summary of what was written.
/// A signed site is never written unsigned, and, unless `drop_key`, never
/// signed so that installs of a published version trust no signature.
fn rewrite(
    site: &Site,
    state: &mut SiteState,
    keys: &[Key],
    expires_in: Option<i64>,
    now: i64,
    drop_key: bool,
) -> Result<String, Failure> {
    if !state.signing_keys.is_empty() && keys.is_empty() {
        return Err(Failure {
            message: format!(
                "the site's manifests are signed (key {}), and no --key is given: its installs would refuse an unsigned manifest",
                state.signing_keys.join(", ")
            ),
            hint: Some("pass --key with the site's secret key".into()),
        });
    }
    let paths = preflight(state, keys, drop_key)?;
    let sequence = u64::try_from(now)
        .unwrap_or(0)
        .max(state.last_sequence.saturating_add(1));
    let expires = match (expires_in, keys.is_empty()) {
        (Some(lifetime), _) => Some(now.saturating_add(lifetime)),
        (None, false) => Some(now.saturating_add(DEFAULT_LIFETIME_S)),
        (None, true) => None,
    };
    let manifest = state.manifest(sequence, expires)?;
    let secrets: Vec<SecretKey> = keys.iter().map(|k| k.secret.clone()).collect();
    let text = if keys.is_empty() {
        manifest.to_toml()
    } else {
        signing::sign_manifest(&manifest, &secrets)?
    };
    for path in &paths {
        site.file_path(path, false)?;
    }
    let mut next = state.clone();
    next.last_sequence = sequence;
    next.signing_keys = keys.iter().map(|k| k.id.clone()).collect();
    next.to_toml()?;
    for path in &paths {
        println_written(&site.write_file(path, text.as_bytes())?);
    }
    state.last_sequence = sequence;
    state.signing_keys = keys.iter().map(|k| k.id.clone()).collect();
    println_written(&site.write_state(state)?);
    let expiry = match expires {
        Some(at) => format!("expires {}", datetime_from_unix(at)),
        None => "no expiry".into(),
    };
    let signed = match keys.len() {
        0 => "unsigned".to_owned(),
        n => format!("signed by {n} key(s)"),
    };
    Ok(format!(
        "{} manifest(s), sequence {sequence}, {expiry}, {signed}",
        paths.len()
    ))
}

/// The checks of a state about to be written, before anything is: a
/// manifest can be made, no installs are left with no key they trust, every
/// manifest path is under a base and no two files are one, every URL the
/// manifest names works, and the state can be read again. Returns the
/// manifests' site paths.
fn preflight(state: &SiteState, keys: &[Key], drop_key: bool) -> Result<Vec<String>, Failure> {
    refuse_stranded_installs(state, keys, drop_key)?;
    state.manifest(0, None).map_err(|e| match e {
        SiteError::NoStable { .. } => Failure {
            message: e.to_string(),
            hint: Some("only a release that follows one offered to everybody can be halted or held below 100%".into()),
        },
        other => other.into(),
    })?;
    let found = state.manifest_paths()?;
    for url in &found.elsewhere {
        eprintln!(
            "payload-tools: note: fallback manifest '{url}' is under no base URL of the site: not written here (publish it on its own host)"
        );
    }
    state.check_layout(&found.paths)?;
    for release in state.offered_indexes() {
        let offered = state.release_of(&state.releases[release]);
        for url in offered.urls() {
            manifest::check_url(url, state.allow_insecure_http).map_err(|e| Failure {
                message: format!("the manifest would name '{url}', which cannot work: {e}"),
                hint: Some("check --base-url and --mirror".into()),
            })?;
        }
    }
    state.to_toml()?;
    Ok(found.paths)
}

/// Refuses signing keys that leave installs of a published version (every
/// version's `update.toml` is written) unable to update: their build trusts
/// keys, and none of them signs the manifest, or none signed a build they
/// would be offered. `drop_key` strands them on purpose.
fn refuse_stranded_installs(
    state: &SiteState,
    keys: &[Key],
    drop_key: bool,
) -> Result<(), Failure> {
    if drop_key {
        return Ok(());
    }
    let hint = "sign with every key a published version trusts (--key old.key --key new.key) until you mean to leave its installs behind; then pass --drop-key";
    let offered = state.offered_indexes();
    for (index, release) in state.releases.iter().enumerate() {
        if release.public_keys.is_empty() {
            continue;
        }
        let trusted = |public: &String| release.public_keys.contains(public);
        if !keys.iter().any(|k| trusted(&k.public)) {
            return Err(Failure {
                message: format!(
                    "installs of {} trust none of the --key given: they would refuse every manifest from now on",
                    release.version
                ),
                hint: Some(hint.into()),
            });
        }
        for &newer in offered.iter().filter(|&&o| o > index) {
            let build = &state.releases[newer];
            if !build.signed_by.iter().any(trusted) {
                return Err(Failure {
                    message: format!(
                        "installs of {} trust none of the keys that signed the build of {} they would be offered: they would refuse it",
                        release.version, build.version
                    ),
                    hint: Some(hint.into()),
                });
            }
        }
    }
    Ok(())
}

/// Puts first the keys that the oldest releases trust: `signature` (the
/// first key's) is all that stubs older than `signatures` read.
fn order_keys(state: &SiteState, keys: &mut [Key]) {
    let before: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
    keys.sort_by_key(|k| {
        state
            .releases
            .iter()
            .position(|r| r.public_keys.contains(&k.public))
            .unwrap_or(usize::MAX)
    });
    if let Some(first) = keys.first()
        && before.first() != Some(&first.id)
    {
        eprintln!(
            "payload-tools: note: signing first with key {}, which the oldest published builds trust (older stubs read only the first signature)",
            first.id
        );
    }
}

/// Walks the site ([`Site::survey`]), noting files with other names;
/// returns the temporary files of killed writes.
fn surveyed(site: &Site) -> Result<Vec<PathBuf>, Failure> {
    let found = site.survey()?;
    for path in &found.hard_linked {
        eprintln!(
            "payload-tools: note: '{}' has other names (a hard link): a sync uploads its bytes, make sure they belong on the host",
            path.display()
        );
    }
    Ok(found.stale)
}

/// Deletes the temporary files of killed writes (the caller holds the
/// site's lock: no write of ours is under way).
fn remove_stale(stale: &[PathBuf]) {
    for path in stale {
        if std::fs::remove_file(path).is_ok() {
            eprintln!("deleted stale '{}'", path.display());
        }
    }
}

/// The refusals that keep installs from being stranded: another app,
/// another platform, a version not newer, another URL spec (unless
/// forced), a signed site published without a key.
#[allow(clippy::too_many_arguments)]
fn refuse_stranding(
    old: &SiteState,
    app: &str,
    version: &str,
    os: &str,
    arch: &str,
    url_specs: &[String],
    keys: &[Key],
    force: bool,
) -> Result<(), Failure> {
    if old.app != app {
        return Err(Failure {
            message: format!(
                "the build is of app '{app}', and the site publishes '{}'",
                old.app
            ),
            hint: Some("publish each app into a site of its own".into()),
        });
    }
    if (old.os.as_str(), old.arch.as_str()) != (os, arch) {
        return Err(Failure {
            message: format!(
                "the build is for {os}/{arch}, and the site's builds are for {}/{}",
                old.os, old.arch
            ),
            hint: Some(format!(
                "publish each platform into a site folder of its own (not inside this one), with --base-url at that platform's part of the URL (e.g. https://host/app/{os}/), synced to its own prefix"
            )),
        });
    }
    if let Some(latest) = old.latest()
        && !is_newer(version, &latest.version)
    {
        return Err(Failure {
            message: format!("version {version} is not newer than the site's latest, {}", latest.version),
            hint: Some("pack the build with a higher --version; to take a release back, use `payload-tools rollout --halt`".into()),
        });
    }
    if old.url_specs != url_specs && !force {
        return Err(Failure {
            message: format!(
                "the build's update URL spec ({}) differs from the site's ({}): installs of the site's builds would never see it",
                url_specs.join(", "),
                old.url_specs.join(", ")
            ),
            hint: Some(
                "pack it with the site's --update-url-spec, or pass --force if moving is intended"
                    .into(),
            ),
        });
    }
    if !old.signing_keys.is_empty() && keys.is_empty() {
        return Err(Failure {
            message: "the site's manifests are signed, and no --key is given: its installs would refuse an unsigned manifest".into(),
            hint: Some("pass --key with the site's secret key".into()),
        });
    }
    Ok(())
}

/// A build that trusts keys needs manifests signed by one of them.
fn refuse_untrusted_keys(update: &UpdateSettings, keys: &[Key]) -> Result<(), Failure> {
    if update.public_keys.is_empty() {
        return Ok(());
    }
    if keys.is_empty() {
        return Err(Failure {
            message: "the build trusts public keys, and no --key is given: its installs would refuse every manifest".into(),
            hint: Some("pass --key with the secret key of the public key it was packed with".into()),
        });
    }
    if !keys.iter().any(|k| update.public_keys.contains(&k.public)) {
        return Err(Failure {
            message: "none of the --key given matches a public key the build trusts: its installs would refuse every manifest".into(),
            hint: Some("pass the secret key of a --public-key the build was packed with".into()),
        });
    }
    Ok(())
}

/// The update URL specs a build's installs fetch: the main one, then its
/// fallbacks.
fn url_specs_of(update: &UpdateSettings) -> Vec<String> {
    // Those under a base of the site are written too.
    std::iter::once(&update.url_spec)
        .chain(&update.fallback_url_specs)
        .cloned()
        .collect()
}

fn load_existing(site: &Site) -> Result<SiteState, Failure> {
    SiteState::load(site.root())?.ok_or_else(|| Failure {
        message: format!(
            "'{}' has no site state ({})",
            site.root().display(),
            site::STATE_FILE
        ),
        hint: Some("publish a build into it first: payload-tools publish BUILD --site DIR".into()),
    })
}

fn load_keys(paths: &[PathBuf]) -> Result<Vec<Key>, Failure> {
    paths
        .iter()
        .map(|path| {
            let secret = signing::load_secret_key(path)?;
            let public = minisign::PublicKey::from_secret_key(&secret)
                .map_err(|e| format!("cannot use secret key '{}': {e}", path.display()))?;
            let id = public
                .keynum()
                .iter()
                .rev()
                .map(|b| format!("{b:02X}"))
                .collect();
            Ok(Key {
                secret,
                id,
                public: public.to_base64(),
            })
        })
        .collect()
}

/// A share in percent, 0 to 100, written with at most two decimals (what
/// installs' buckets resolve): nothing is rounded behind the user's back.
fn parse_percent(text: &str, flag: &str) -> Result<f64, Failure> {
    let digits = text.trim().trim_end_matches('%');
    let (whole, decimals) = digits.split_once('.').unwrap_or((digits, ""));
    let well_formed = !whole.is_empty()
        && whole.len() <= 3
        && whole.bytes().all(|b| b.is_ascii_digit())
        && decimals.len() <= 2
        && decimals.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && decimals.is_empty());
    let percent: f64 = if well_formed {
        digits.parse().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    if !(0.0..=100.0).contains(&percent) {
        return Err(Failure {
            message: format!(
                "{flag} '{text}' is not a share between 0 and 100 with at most two decimals"
            ),
            hint: Some("give a percentage such as 1, 10, 0.5, 0.01 or 100".into()),
        });
    }
    Ok(percent)
}

/// Longest `--expires-in`: a manifest that outlives it is hardly one that
/// expires (and a site that is never refreshed for a year has other
/// problems).
const MAX_LIFETIME_S: u64 = 366 * 86_400;

fn parse_expiry(text: &str) -> Result<i64, Failure> {
    let hint =
        || Some("give a lifetime from 1h to 366d, e.g. 7d, and refresh before it ends".into());
    let seconds = parse_duration(text).map_err(|e| Failure {
        message: format!("--expires-in: {e}"),
        hint: hint(),
    })?;
    if seconds == 0 {
        return Err(Failure {
            message: "--expires-in 0 would write manifests that are expired already".into(),
            hint: hint(),
        });
    }
    if seconds > MAX_LIFETIME_S {
        return Err(Failure {
            message: format!(
                "--expires-in '{text}' is longer than 366 days: the manifests would as good as never expire, and a frozen site would go unnoticed"
            ),
            hint: hint(),
        });
    }
    i64::try_from(seconds).map_err(|_| format!("--expires-in '{text}' is too long").into())
}

/// A base URL from the command line, checked as the updater checks URLs.
fn checked_base(url: &str, allow_insecure_http: bool, flag: &str) -> Result<String, Failure> {
    let base = site::normalize_base(url);
    manifest::check_url(url, allow_insecure_http)
        .and_then(|()| site::check_base(&base).map_err(str::to_owned))
        .map_err(|e| Failure {
            message: format!("{flag} '{url}' cannot work: {e}"),
            hint: Some("give the URL the site's folder is served at, e.g. https://cdn.example.org/releases/".into()),
        })?;
    Ok(base)
}

/// 16 bytes from the operating system's generator, hex.
fn new_salt() -> Result<String, Failure> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("cannot draw a random salt: {e}"))?;
    Ok(salt.iter().map(|b| format!("{b:02x}")).collect())
}

fn println_written(path: &Path) {
    eprintln!("wrote '{}'", path.display());
}

impl From<SiteError> for Failure {
    fn from(err: SiteError) -> Failure {
        let hint = match &err {
            SiteError::Link { .. } => Some(
                "a site is plain folders and files: replace the link with what it points to".into(),
            ),
            SiteError::InTheWay { .. } => Some("move it out of the site".into()),
            SiteError::Damaged { .. } => Some(format!(
                "restore {} from your last upload or version control",
                site::STATE_FILE
            )),
            SiteError::NotUnderBase { .. } => {
                Some("pass --base-url with the URL the site's root is served at".into())
            }
            SiteError::ManifestNotUnderBase { .. } => Some(
                "keep the old location served: pass its base as a --mirror (another host serving this folder), or keep --base-url".into(),
            ),
            SiteError::Collision { .. } => Some(
                "give the build file another name, or the update URL spec another file or folder".into(),
            ),
            SiteError::BadPath { .. } => Some(
                "name builds and folders with letters, digits, '-', '.', '_' and '~' only".into(),
            ),
            SiteError::TooLarge => Some("a site holds one app's releases: move other files out".into()),
            SiteError::Io { .. } | SiteError::Write(_) => Some(
                "what was written is complete and what is named is there; fix the cause and run the command again".into(),
            ),
            SiteError::UnknownPlatform { .. } => {
                Some("pack the build with a Linux or Windows bootstrap stub".into())
            }
            _ => None,
        };
        Failure {
            message: err.to_string(),
            hint,
        }
    }
}
