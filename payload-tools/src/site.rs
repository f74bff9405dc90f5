//! A release site: the folder that `payload-tools publish` fills and a
//! static host serves as-is (`docs/publishing.md`).
//!
//! This module owns the site's state and every file written into it:
//! - [`SiteState`]: `onefile-site.toml` at the site's root, the app, its
//!   update settings, the releases (kept builds and deleted ones), the last
//!   sequence, the mirrors and the ids of the keys that signed it; read
//!   with bounds ([`SiteState::load`]), since a site is often a CI
//!   workspace that others can write;
//! - [`SiteState::manifest`]: the one `update.toml` every install of the
//!   app is offered (the stable release on top, a rollout in `[rollout]`),
//!   and [`SiteState::manifest_paths`], every place it is written to (the
//!   folder of every version ever published, or one per channel);
//! - [`site_path`]: where a URL lives in the folder (the URL minus the
//!   longest base it starts with), and [`platform_of_stub`]: the `{OS}` and
//!   `{ARCH}` a build's stub runs on, which expand its URL spec;
//! - [`Site`]: the folder itself, with all-or-nothing writes that never
//!   follow a link ([`Site::write_build`], [`Site::write_file`]) and
//!   [`Site::remove_build`].
//!
//! Nothing here prints or signs: the command (`publish.rs`) does.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{Release, Rollout, UpdateManifest, datetime_from_unix};
use crate::persist::TempSibling;

/// The state file, at the site's root.
pub const STATE_FILE: &str = "onefile-site.toml";
/// The lock file, at the site's root: one command writes a site at a time.
pub const LOCK_FILE: &str = ".onefile-site.lock";
/// The version of the state file's layout this code reads and writes.
pub const STATE_FORMAT: u32 = 1;
/// Largest state file read: thousands of releases fit in far less.
pub const MAX_STATE_LEN: u64 = 4 << 20;
/// Most releases a site records.
pub const MAX_RELEASES: usize = 10_000;
/// Longest site path accepted, in bytes.
const MAX_PATH_LEN: usize = 1024;
/// Most folders and files a site's walk for links looks at.
const MAX_SITE_ENTRIES: usize = 1_000_000;
/// Highest sequence a state may hold: signed manifests carry it as a TOML
/// integer (`i64`), and it is never more than a year ahead of the clock.
const MAX_SEQUENCE_AHEAD_S: i64 = 366 * 86_400;
/// How much of a build is read to tell its stub's platform.
pub const STUB_HEADER_LEN: usize = 64 * 1024;

/// What can go wrong with a site.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("cannot {action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::Error),
    #[error("'{path}' is a symbolic link: a site's folders and files are never followed out of it")]
    Link { path: PathBuf },
    #[error("'{path}' is in the way: it is not a {expected}")]
    InTheWay {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("the site state '{path}' is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("'{url}' is under no base URL of the site ({bases})")]
    NotUnderBase { url: String, bases: String },
    #[error(
        "installs of {version} fetch '{url}', which is under no base URL of the site ({bases}): they would never see a new release"
    )]
    ManifestNotUnderBase {
        version: String,
        url: String,
        bases: String,
    },
    #[error("'{path}' would be both {first} and {second}")]
    Collision {
        path: String,
        first: String,
        second: String,
    },
    #[error("the site has more than {MAX_SITE_ENTRIES} folders and files")]
    TooLarge,
    #[error("'{url}' cannot name a file of the site: {reason}")]
    BadPath { url: String, reason: &'static str },
    #[error("cannot tell which platform the build's stub is for: {reason}")]
    UnknownPlatform { reason: String },
    #[error("the site has no release yet")]
    Empty,
    #[error(
        "no release before {version} reached 100% without a halt: installs would be offered nothing instead"
    )]
    NoStable { version: String },
}

/// `onefile-site.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// The app every build of the site is.
    pub app: String,
    /// The platform the site's builds are for (`{OS}`, `{ARCH}`).
    pub os: String,
    pub arch: String,
    /// The URL of the site's root (ends with `/`).
    pub base_url: String,
    /// More hosts serving this same folder (each ends with `/`).
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// The update settings of the latest build that installs depend on:
    /// its URL specs (the main one first), public keys, and whether it
    /// accepts plain http.
    pub url_specs: Vec<String>,
    #[serde(default)]
    pub public_keys: Vec<String>,
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// The ids (hex) of the keys that signed the manifests; empty: unsigned.
    #[serde(default)]
    pub signing_keys: Vec<String>,
    /// The sequence of the manifests last written.
    #[serde(default)]
    pub last_sequence: u64,
    /// Where installs report what became of an update, written into every
    /// manifest as `report` (`publish --report-url`, `--no-report-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_url: Option<String>,
    /// Every release, oldest first.
    #[serde(default, rename = "release")]
    pub releases: Vec<SiteRelease>,
}

/// One published build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRelease {
    pub version: String,
    /// Where the build is in the site (relative, `/`-separated).
    pub path: String,
    pub size: u64,
    pub crc32: u32,
    /// The share of installs offered it, in percent with hundredths.
    pub percent: f64,
    #[serde(default)]
    pub halted: bool,
    #[serde(default)]
    pub critical: bool,
    /// 16 random bytes, hex: its installs' rollout buckets.
    pub salt: String,
    pub published_at: toml::value::Datetime,
    /// Whether the build's file is still in the site (`--keep`).
    pub kept: bool,
    /// The URL specs its installs fetch `update.toml` from.
    pub url_specs: Vec<String>,
    /// Its signatures (`signature` = the first); dropped with its build.
    #[serde(default)]
    pub signatures: Vec<String>,
    /// The public keys (base64) its build trusts: what its installs check
    /// manifests and builds with.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// The public keys (base64) whose signatures its build carries, in the
    /// order of `signatures`.
    #[serde(default)]
    pub signed_by: Vec<String>,
}

impl SiteState {
    /// Reads the state of the site at `root`: `Ok(None)` for a site that
    /// has none yet, an error naming the file for one that is damaged.
    pub fn load(root: &Path) -> Result<Option<SiteState>, SiteError> {
        let path = root.join(STATE_FILE);
        let file = match open_no_link(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let damaged = |reason: String| SiteError::Damaged {
            path: path.clone(),
            reason,
        };
        let mut text = String::new();
        file.take(MAX_STATE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| damaged(e.to_string()))?;
        if text.len() as u64 > MAX_STATE_LEN {
            return Err(damaged(format!("it is larger than {MAX_STATE_LEN} bytes")));
        }
        let state: SiteState =
            toml::from_str(&text).map_err(|e| damaged(e.message().trim().to_owned()))?;
        state.check().map_err(damaged)?;
        Ok(Some(state))
    }

    /// What a state must be for its paths and shares to be used.
    fn check(&self) -> Result<(), String> {
        if self.format != STATE_FORMAT {
            return Err(format!(
                "format {} (this payload-tools reads {STATE_FORMAT})",
                self.format
            ));
        }
        if self.app.is_empty() || self.url_specs.is_empty() {
            return Err("it names no app or no URL spec".into());
        }
        if self.releases.len() > MAX_RELEASES {
            return Err(format!("more than {MAX_RELEASES} releases"));
        }
        for base in std::iter::once(&self.base_url).chain(&self.mirrors) {
            check_base(base).map_err(|reason| format!("base URL '{base}': {reason}"))?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let highest = now.saturating_add(MAX_SEQUENCE_AHEAD_S);
        if i64::try_from(self.last_sequence).map_or(true, |s| s > highest) {
            return Err(format!(
                "last_sequence {} is more than a year ahead of the clock",
                self.last_sequence
            ));
        }
        for release in &self.releases {
            check_relative(&release.path).map_err(|reason| {
                format!("release {}: '{}': {reason}", release.version, release.path)
            })?;
            if !(0.0..=100.0).contains(&release.percent) {
                return Err(format!(
                    "release {}: percent out of 0..100",
                    release.version
                ));
            }
            if release.version.is_empty() || release.url_specs.is_empty() {
                return Err("a release names no version or no URL spec".into());
            }
        }
        Ok(())
    }

    /// The state's TOML text, within the bounds [`SiteState::load`] reads.
    pub fn to_toml(&self) -> Result<String, SiteError> {
        let damaged = |reason: String| SiteError::Damaged {
            path: PathBuf::from(STATE_FILE),
            reason: format!("it would not be readable again: {reason}"),
        };
        self.check().map_err(damaged)?;
        let text = toml::to_string(self).map_err(|e| damaged(e.to_string()))?;
        if text.len() as u64 > MAX_STATE_LEN {
            return Err(damaged(format!(
                "it would be larger than {MAX_STATE_LEN} bytes"
            )));
        }
        Ok(text)
    }

    /// The newest release.
    pub fn latest(&self) -> Option<&SiteRelease> {
        self.releases.last()
    }

    /// The index of the stable release: the newest before the latest that
    /// reached 100% and was not halted (what installs outside a rollout,
    /// or all of them after a halt, are offered).
    pub fn stable_index(&self) -> Option<usize> {
        let before_latest = self.releases.len().checked_sub(1)?;
        self.releases[..before_latest]
            .iter()
            .rposition(|r| r.percent >= 100.0 && !r.halted)
    }

    /// Whether the latest release is offered to every install on its own
    /// (then it is the top-level release and there is no `[rollout]`).
    fn latest_is_everyones(&self) -> bool {
        self.latest()
            .is_some_and(|r| r.percent >= 100.0 && !r.halted)
    }

    /// The builds the manifest offers (the latest, and the stable release
    /// under a rollout): never deleted.
    pub fn offered_indexes(&self) -> Vec<usize> {
        let mut offered: Vec<usize> = self.releases.len().checked_sub(1).into_iter().collect();
        offered.extend(self.stable_index());
        offered
    }

    /// Releases whose builds go with `--keep keep`: kept ones beyond the
    /// last `keep`, except the offered ones (the latest and the stable
    /// one) and `also_offered` (what the manifests before this change
    /// offered: copies cached at a CDN and resumed downloads still ask).
    pub fn builds_to_delete(&self, keep: usize, also_offered: &[usize]) -> Vec<usize> {
        let offered = self.offered_indexes();
        let first_kept = self.releases.len().saturating_sub(keep);
        (0..first_kept)
            .filter(|i| self.releases[*i].kept && !offered.contains(i) && !also_offered.contains(i))
            .collect()
    }

    /// The release `r` as manifests name it: its URL on the site's base,
    /// and on every mirror.
    pub fn release_of(&self, r: &SiteRelease) -> Release {
        let url = format!("{}{}", self.base_url, r.path);
        let mirrors = self
            .mirrors
            .iter()
            .map(|m| format!("{m}{}", r.path))
            .filter(|m| *m != url)
            .collect();
        let mut signatures = r.signatures.clone();
        let signature = (!signatures.is_empty()).then(|| signatures.remove(0));
        Release {
            url,
            crc32: r.crc32,
            size: Some(r.size),
            version: Some(r.version.clone()),
            signature,
            signatures,
            mirrors,
        }
    }

    /// The manifest every install is offered, with `sequence` and (when
    /// given) `expires`, unsigned.
    pub fn manifest(
        &self,
        sequence: u64,
        expires: Option<i64>,
    ) -> Result<UpdateManifest, SiteError> {
        let latest = self.latest().ok_or(SiteError::Empty)?;
        let mut manifest = if self.latest_is_everyones() {
            UpdateManifest::offering(self.release_of(latest))
        } else {
            let stable = self
                .stable_index()
                .map(|i| &self.releases[i])
                .ok_or_else(|| SiteError::NoStable {
                    version: latest.version.clone(),
                })?;
            UpdateManifest {
                rollout: Some(Rollout {
                    release: self.release_of(latest),
                    percent: latest.percent,
                    salt: latest.salt.clone(),
                    halted: latest.halted,
                    critical: latest.critical,
                }),
                ..UpdateManifest::offering(self.release_of(stable))
            }
        };
        manifest.app = Some(self.app.clone());
        manifest.os = Some(self.os.clone());
        manifest.arch = Some(self.arch.clone());
        for release in &self.releases {
            for spec in &release.url_specs {
                if !manifest.specs.contains(spec) {
                    manifest.specs.push(spec.clone());
                }
            }
        }
        manifest.sequence = Some(sequence);
        manifest.expires = expires.map(datetime_from_unix);
        manifest.report = self.report_url.clone();
        Ok(manifest)
    }

    /// Every `update.toml` installs fetch, as site paths: each release's
    /// URL specs expanded with its version, once each. A release's main
    /// spec must be under a base of the site (else its installs would never
    /// hear of a new release); a fallback elsewhere is another host's
    /// business, and is returned in [`ManifestPaths::elsewhere`].
    pub fn manifest_paths(&self) -> Result<ManifestPaths, SiteError> {
        let bases = self.bases();
        let mut found = ManifestPaths::default();
        let mut seen = std::collections::HashSet::new();
        for release in &self.releases {
            for (i, spec) in release.url_specs.iter().enumerate() {
                let url = expand(spec, &self.app, &release.version, &self.os, &self.arch);
                match site_path(&url, &bases) {
                    Ok(path) => {
                        if seen.insert(path.clone()) {
                            found.paths.push(path);
                        }
                    }
                    Err(SiteError::NotUnderBase { .. }) if i > 0 => {
                        if !found.elsewhere.contains(&url) {
                            found.elsewhere.push(url);
                        }
                    }
                    Err(SiteError::NotUnderBase { .. }) => {
                        return Err(SiteError::ManifestNotUnderBase {
                            version: release.version.clone(),
                            url,
                            bases: bases.join(", "),
                        });
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        Ok(found)
    }

    /// Refuses a layout in which two of the site's files are one, or one is
    /// a folder of another: a build named like a manifest, a manifest at the
    /// state file, two releases' builds at one path.
    pub fn check_layout(&self, manifest_paths: &[String]) -> Result<(), SiteError> {
        let mut named: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
        let mut entries: Vec<(&str, String)> = vec![
            (STATE_FILE, "the site state".to_owned()),
            (LOCK_FILE, "the site lock".to_owned()),
        ];
        entries.extend(
            manifest_paths
                .iter()
                .map(|p| (p.as_str(), "a manifest".to_owned())),
        );
        entries.extend(
            self.releases
                .iter()
                .map(|r| (r.path.as_str(), format!("the build of {}", r.version))),
        );
        for (path, what) in &entries {
            if let Some(first) = named.insert(path, what.clone()) {
                return Err(SiteError::Collision {
                    path: (*path).to_owned(),
                    first,
                    second: what.clone(),
                });
            }
        }
        for (path, what) in &entries {
            let mut folder = *path;
            while let Some(at) = folder.rfind('/') {
                folder = &folder[..at];
                if let Some(first) = named.get(folder) {
                    return Err(SiteError::Collision {
                        path: folder.to_owned(),
                        first: first.clone(),
                        second: format!("a folder of {what}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The site's base URLs: its own, then the mirrors.
    pub fn bases(&self) -> Vec<String> {
        std::iter::once(self.base_url.clone())
            .chain(self.mirrors.iter().cloned())
            .collect()
    }
}

/// Expands an update URL spec for a build of `app` `version` on `os`/`arch`
/// (the build's platform, not this machine's).
pub fn expand(spec: &str, app: &str, version: &str, os: &str, arch: &str) -> String {
    spec.replace("{VERSION}", version)
        .replace("{NAME}", app)
        .replace("{OS}", os)
        .replace("{ARCH}", arch)
}

/// Where a build of `version` goes: where its URL spec's folder says, or,
/// when that folder is the same for every version (a channel's spec), in a
/// subfolder named for the version next to the manifest, so that builds
/// never overwrite each other.
pub fn build_url(spec: &str, app: &str, version: &str, os: &str, arch: &str, file: &str) -> String {
    let platform_spec = spec.replace("{OS}", os).replace("{ARCH}", arch);
    let url = crate::manifest::default_download_url(&platform_spec, app, version, file);
    let other = crate::manifest::default_download_url(&platform_spec, app, "\0other", file);
    if url != other {
        return url;
    }
    let folder_of = |u: &str| u.rfind('/').map_or(String::new(), |i| u[..=i].to_owned());
    format!("{}{version}/{file}", folder_of(&url))
}

/// A base URL: a URL ending with `/`, of printable ASCII with no space,
/// query, fragment or escape (its files' URLs are it and a site path).
pub fn check_base(base: &str) -> Result<(), &'static str> {
    if !base.ends_with('/') || !base.contains("://") {
        return Err("it is not a URL ending with '/'");
    }
    if !base
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"?#%\"\\<>^`{|}".contains(&b))
    {
        return Err("it has a space, a query, an escape or a character outside printable ASCII");
    }
    Ok(())
}

/// The scheme and host of `url`, with a `/`: the default base of a site.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}/"))
}

/// A base URL as the site keeps it: with one trailing `/`.
pub fn normalize_base(url: &str) -> String {
    format!("{}/", url.trim_end_matches('/'))
}

/// The path in the site of `url`: the URL minus the longest of `bases` it
/// starts with.
pub fn site_path(url: &str, bases: &[String]) -> Result<String, SiteError> {
    let rest = bases
        .iter()
        .filter(|b| url.starts_with(b.as_str()))
        .max_by_key(|b| b.len())
        .map(|b| &url[b.len()..])
        .ok_or_else(|| SiteError::NotUnderBase {
            url: url.to_owned(),
            bases: bases.join(", "),
        })?;
    check_relative(rest).map_err(|reason| SiteError::BadPath {
        url: url.to_owned(),
        reason,
    })?;
    Ok(rest.to_owned())
}

/// The site paths of every `update.toml` installs fetch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ManifestPaths {
    /// Under a base of the site: written.
    pub paths: Vec<String>,
    /// Fallback manifest URLs under no base: another host's, not written.
    pub elsewhere: Vec<String>,
}

/// A site path: `/`-separated names, none empty, `.` or `..`, made only of
/// characters a URL carries as they are (letters, digits, `-._~`), so that
/// the URL a manifest names is the file's path, and every system reads it
/// the same way.
fn check_relative(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err("it is empty or too long");
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
    {
        return Err(
            "it has a character other than ASCII letters, digits, '-', '.', '_', '~' and '/', which a URL would not carry as it is",
        );
    }
    if path
        .split('/')
        .any(|name| name.is_empty() || name == "." || name == "..")
    {
        return Err("it has an empty, '.' or '..' name");
    }
    Ok(())
}

/// The `{OS}` and `{ARCH}` the stub at the start of `header` (a build's
/// first bytes) runs on (see [`crate::stub::platform_of_header`]).
pub fn platform_of_stub(header: &[u8]) -> Result<(&'static str, &'static str), SiteError> {
    crate::stub::platform_of_header(header).map_err(|reason| SiteError::UnknownPlatform { reason })
}

/// The site's folder. Every path into it is checked on the way: no name
/// on it may be a link (a site is often a CI workspace: nothing there is
/// followed out of it), and folders are created as needed.
#[derive(Debug)]
pub struct Site {
    root: PathBuf,
}

impl Site {
    /// The site at `root`, which may not be a link (nor anything but a
    /// folder, if it exists).
    pub fn open(root: &Path) -> Result<Site, SiteError> {
        match fs::symlink_metadata(root) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(SiteError::Link {
                    path: root.to_owned(),
                });
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(SiteError::InTheWay {
                    path: root.to_owned(),
                    expected: "folder",
                });
            }
            // A site that does not exist yet is created by its first write.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("read", root)(e)),
        }
        Ok(Site {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file at site path `rel`, after checking that nothing on the way
    /// is a link or in the way; creates its folders when `create`.
    pub fn file_path(&self, rel: &str, create: bool) -> Result<PathBuf, SiteError> {
        self.file_path_creating(rel, create, &mut Vec::new())
    }

    /// [`Site::file_path`], noting in `created` the folders it created.
    fn file_path_creating(
        &self,
        rel: &str,
        create: bool,
        created: &mut Vec<PathBuf>,
    ) -> Result<PathBuf, SiteError> {
        check_relative(rel).map_err(|reason| SiteError::BadPath {
            url: rel.to_owned(),
            reason,
        })?;
        if create && !self.root.exists() {
            fs::create_dir_all(&self.root).map_err(io_error("create", &self.root))?;
            created.push(self.root.clone());
        }
        let mut path = self.root.clone();
        let names: Vec<&str> = rel.split('/').collect();
        let (file, folders) = names.split_last().ok_or(SiteError::Empty)?;
        for name in folders {
            path.push(name);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(SiteError::Link { path });
                }
                Ok(meta) if !meta.is_dir() => {
                    return Err(SiteError::InTheWay {
                        path,
                        expected: "folder",
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(io_error("create", &path))?;
                    created.push(path.clone());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("read", &path)(e)),
            }
        }
        path.push(file);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(SiteError::Link { path }),
            Ok(meta) if !meta.is_file() => Err(SiteError::InTheWay {
                path,
                expected: "file",
            }),
            Ok(_) => Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
            Err(e) => Err(io_error("read", &path)(e)),
        }
    }

    /// Copies the build `source` (read from its start) to site path `rel`,
    /// all-or-nothing: into a temporary file created exclusively beside it,
    /// which `sign` reads (the bytes signed are the bytes published), then
    /// synced and renamed. Returns the build's size and CRC-32, and what
    /// `sign` returned.
    pub fn write_build<T, E>(
        &self,
        rel: &str,
        source: &File,
        sign: impl FnOnce(&mut File) -> Result<T, E>,
    ) -> Result<Result<(u64, u32, T), E>, SiteError> {
        let mut created = Vec::new();
        let written = self
            .file_path_creating(rel, true, &mut created)
            .and_then(|target| copy_and_persist(&target, source, sign));
        if !matches!(written, Ok(Ok(_))) {
            // A failed publish leaves the site as it was: no empty folders.
            for folder in created.iter().rev() {
                let _ = fs::remove_dir(folder);
            }
        }
        written
    }

    /// Writes `bytes` to site path `rel`, all-or-nothing.
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> Result<PathBuf, SiteError> {
        let target = self.file_path(rel, true)?;
        // Each rewrite a later second: a host's validators change with it.
        crate::persist::write_atomically_newer(&target, bytes, 0o644)?;
        Ok(target)
    }

    /// Writes the state file.
    pub fn write_state(&self, state: &SiteState) -> Result<PathBuf, SiteError> {
        self.write_file(STATE_FILE, state.to_toml()?.as_bytes())
    }

    /// Takes the site's lock (creating the site's folder and the lock file
    /// as needed), waiting for another command that holds it: `publish`,
    /// `rollout` and `refresh` read the state only once they hold it, so
    /// that no two of them write from the same state.
    pub fn lock(&self) -> Result<SiteLock, SiteError> {
        let created_root = match fs::symlink_metadata(&self.root) {
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.root).map_err(io_error("create", &self.root))?;
                true
            }
            Err(e) => return Err(io_error("read", &self.root)(e)),
        };
        let path = self.root.join(LOCK_FILE);
        loop {
            let file = open_lock_file(&path).map_err(io_error("open", &path))?;
            file.lock().map_err(io_error("lock", &path))?;
            // A refused first publish removes its lock file: whoever waited
            // on that one locks the file now at its name instead.
            if is_same_file(&file, &path) {
                return Ok(SiteLock {
                    file,
                    path,
                    created_root: created_root.then(|| self.root.clone()),
                });
            }
        }
    }

    /// Refuses a site with a link anywhere in it (a host's sync would
    /// upload what it points to), walking all of it before anything is
    /// written; returns what else the walk found.
    pub fn survey(&self) -> Result<Survey, SiteError> {
        let mut found = Survey::default();
        if fs::symlink_metadata(&self.root).is_err() {
            return Ok(found);
        }
        let mut folders = vec![self.root.clone()];
        let mut seen = 0usize;
        while let Some(folder) = folders.pop() {
            for entry in fs::read_dir(&folder).map_err(io_error("list", &folder))? {
                let entry = entry.map_err(io_error("list", &folder))?;
                seen += 1;
                if seen > MAX_SITE_ENTRIES {
                    return Err(SiteError::TooLarge);
                }
                let path = entry.path();
                let kind = entry.file_type().map_err(io_error("read", &path))?;
                if kind.is_symlink() {
                    return Err(SiteError::Link { path });
                }
                if kind.is_dir() {
                    folders.push(path);
                } else if kind.is_file() && is_temporary_name(&entry.file_name()) {
                    found.stale.push(path);
                } else if kind.is_file() && has_other_names(&path) {
                    found.hard_linked.push(path);
                }
            }
        }
        Ok(found)
    }

    /// Deletes the build at site path `rel` (gone already is fine), never
    /// one of `manifests`.
    pub fn remove_build(&self, rel: &str, manifests: &[String]) -> Result<PathBuf, SiteError> {
        if manifests.iter().any(|m| m == rel) {
            return Err(SiteError::Collision {
                path: rel.to_owned(),
                first: "a build to delete".into(),
                second: "a manifest".into(),
            });
        }
        let path = self.file_path(rel, false)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
            Err(e) => Err(io_error("delete", &path)(e)),
        }
    }
}

/// What [`Site::survey`] found besides links.
#[derive(Debug, Default)]
pub struct Survey {
    /// Temporary files of writes that were killed
    /// (`.<name>.tmp-<pid>-<16 hex>`): only a command holding the lock may
    /// delete them.
    pub stale: Vec<PathBuf>,
    /// Files with more than one name: the same bytes as a file elsewhere,
    /// which a sync uploads (a hard link is not refused, since a copy made
    /// by `cp -l` or a deduplicating CI cache is one too).
    pub hard_linked: Vec<PathBuf>,
}

/// Whether the file at `path` has other names (hard links).
fn has_other_names(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(path).is_ok_and(|m| m.nlink() > 1)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// The site's lock, held until dropped. A site folder the lock created
/// and nothing else was written into goes with it (a refused first publish
/// leaves nothing behind).
#[derive(Debug)]
pub struct SiteLock {
    file: File,
    path: PathBuf,
    created_root: Option<PathBuf>,
}

impl Drop for SiteLock {
    fn drop(&mut self) {
        let Some(root) = &self.created_root else {
            return;
        };
        let only_the_lock = fs::read_dir(root).is_ok_and(|entries| entries.count() == 1);
        if only_the_lock {
            // Still locked: a waiter sees the file gone and starts again.
            let _ = fs::remove_file(&self.path);
            let _ = fs::remove_dir(root);
        }
        let _ = self.file.unlock();
    }
}

/// Whether `name` is one `persist::temp_name` makes:
/// `.<name>.tmp-<pid>-<16 hex digits>`.
fn is_temporary_name(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some((head, tail)) = name.rsplit_once(".tmp-") else {
        return false;
    };
    let Some((pid, random)) = tail.split_once('-') else {
        return false;
    };
    head.len() > 1
        && head.starts_with('.')
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 16
        && random.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Opens (creating) the lock file, never through a link.
fn open_lock_file(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o644).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io::Error::other("it is a symbolic link"));
    }
    options.open(path)
}

/// Whether `file` is (still) the file at `path`.
fn is_same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::symlink_metadata(path)) {
            (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        fs::symlink_metadata(path).is_ok()
    }
}

/// The copy of [`Site::write_build`]: `source` into a temporary sibling of
/// `target`, signed by `sign`, synced and renamed.
fn copy_and_persist<T, E>(
    target: &Path,
    source: &File,
    sign: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<Result<(u64, u32, T), E>, SiteError> {
    // Executable, as `pack` wrote it: a copy fetched from the site with a
    // tool that keeps modes (rsync, a file share) runs as it is.
    let mut tmp = TempSibling::create(target, 0o755)?;
    let tmp_path = tmp.path().to_owned();
    let mut reader = source;
    reader
        .seek(io::SeekFrom::Start(0))
        .map_err(io_error("read", &tmp_path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(io_error("read the build for", &tmp_path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.file()
            .write_all(&buf[..n])
            .map_err(io_error("write", &tmp_path))?;
        size += n as u64;
    }
    let mut copy = tmp
        .file()
        .try_clone()
        .map_err(io_error("read", &tmp_path))?;
    copy.seek(io::SeekFrom::Start(0))
        .map_err(io_error("read", &tmp_path))?;
    let signed = match sign(&mut copy) {
        Ok(signed) => signed,
        Err(e) => return Ok(Err(e)),
    };
    tmp.persist(target)?;
    Ok(Ok((size, hasher.finalize(), signed)))
}

/// Opens a file for reading, refusing a link.
fn open_no_link(path: &Path) -> io::Result<File> {
    if fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(io::Error::other("it is a symbolic link"));
    }
    File::open(path)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SiteError {
    let path = path.to_owned();
    move |source| SiteError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str, percent: f64, halted: bool) -> SiteRelease {
        SiteRelease {
            version: version.into(),
            path: format!("{version}/app.bin"),
            size: 1,
            crc32: 2,
            percent,
            halted,
            critical: false,
            salt: "00".into(),
            published_at: datetime_from_unix(0),
            kept: true,
            url_specs: vec!["https://h/{VERSION}/update.toml".into()],
            signatures: vec![],
            public_keys: vec![],
            signed_by: vec![],
        }
    }

    fn state(releases: Vec<SiteRelease>) -> SiteState {
        SiteState {
            format: STATE_FORMAT,
            app: "app".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            base_url: "https://h/".into(),
            mirrors: vec!["https://m/".into()],
            url_specs: vec!["https://h/{VERSION}/update.toml".into()],
            public_keys: vec![],
            allow_insecure_http: false,
            signing_keys: vec![],
            last_sequence: 0,
            report_url: None,
            releases,
        }
    }

    #[test]
    fn a_rollout_keeps_the_stable_release_on_top() -> Result<(), SiteError> {
        let s = state(vec![
            release("1.0", 100.0, false),
            release("1.1", 100.0, true),
            release("1.2", 10.0, false),
        ]);
        let m = s.manifest(5, None)?;
        assert_eq!(m.version.as_deref(), Some("1.0"));
        assert_eq!(m.mirrors, vec!["https://m/1.0/app.bin".to_owned()]);
        let rollout = m
            .rollout
            .as_ref()
            .map(|r| (r.release.url.as_str(), r.percent));
        assert_eq!(rollout, Some(("https://h/1.2/app.bin", 10.0)));
        assert_eq!(s.offered_indexes(), vec![2, 0]);
        assert_eq!(s.builds_to_delete(1, &[]), vec![1]);
        assert_eq!(s.builds_to_delete(1, &[1]), Vec::<usize>::new());
        assert_eq!(
            s.manifest_paths()?.paths,
            vec!["1.0/update.toml", "1.1/update.toml", "1.2/update.toml"]
        );
        let everyone = state(vec![
            release("1.0", 100.0, false),
            release("1.1", 100.0, false),
        ]);
        assert!(everyone.manifest(1, None)?.rollout.is_none());
        Ok(())
    }

    #[test]
    fn dates_beyond_a_four_digit_year_saturate() {
        assert_eq!(
            datetime_from_unix(i64::MAX).to_string(),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            datetime_from_unix(i64::MIN).to_string(),
            "0000-01-01T00:00:00Z"
        );
    }

    #[test]
    fn layouts_where_two_files_are_one_are_refused() -> Result<(), SiteError> {
        let mut s = state(vec![release("1.0", 100.0, false)]);
        let paths = s.manifest_paths()?.paths;
        s.check_layout(&paths)?;
        s.releases[0].path = "1.0/update.toml".into();
        assert!(s.check_layout(&paths).is_err());
        s.releases[0].path = "1.0/update.toml/app.bin".into();
        assert!(s.check_layout(&paths).is_err());
        assert!(s.check_layout(&[STATE_FILE.to_owned()]).is_err());
        Ok(())
    }

    #[test]
    fn paths_and_urls() {
        let bases = vec!["https://h/".to_owned(), "https://h/cdn/x/".to_owned()];
        assert_eq!(
            site_path("https://h/cdn/x/a/b", &bases).ok(),
            Some("a/b".into())
        );
        for bad in [
            "https://other/a",
            "https://h/a/../b",
            "https://h/a//b",
            "https://h/a?x",
            "https://h/my app.bin",
            "https://h/caf\u{e9}.bin",
            "https://h/a\tb",
        ] {
            assert!(site_path(bad, &bases).is_err(), "{bad}");
        }
        assert_eq!(
            build_url(
                "https://h/stable/update.toml",
                "a",
                "1.2",
                "linux",
                "x86_64",
                "a.bin"
            ),
            "https://h/stable/1.2/a.bin"
        );
        assert_eq!(
            build_url(
                "https://h/{OS}/{VERSION}/u.toml",
                "a",
                "1.2",
                "windows",
                "x86",
                "a.exe"
            ),
            "https://h/windows/1.2/a.exe"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8/x/y").as_deref(),
            Some("http://127.0.0.1:8/")
        );
    }

    #[test]
    fn platforms_of_stub_headers() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[5] = 1;
        elf[18] = 0xb7;
        assert_eq!(platform_of_stub(&elf).ok(), Some(("linux", "aarch64")));
        let mut pe = vec![0u8; 0x100];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        assert_eq!(platform_of_stub(&pe).ok(), Some(("windows", "x86_64")));
        pe[0x3c] = 0xff;
        assert!(platform_of_stub(&pe).is_err());
        assert!(platform_of_stub(b"MZ").is_err());
        assert!(platform_of_stub(b"#!/bin/sh").is_err());
    }

    #[test]
    fn damaged_states_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert!(SiteState::load(dir.path())?.is_none());
        let mut bad = state(vec![release("1.0", 100.0, false)]);
        bad.releases[0].path = "../outside".into();
        assert!(bad.to_toml().is_err(), "never written");
        fs::write(
            dir.path().join(STATE_FILE),
            toml::to_string(&bad).map_err(io::Error::other)?,
        )?;
        let err = SiteState::load(dir.path()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("damaged")));
        fs::write(dir.path().join(STATE_FILE), "format = [")?;
        assert!(SiteState::load(dir.path()).is_err());
        Ok(())
    }
}
