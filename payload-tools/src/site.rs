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
/// The version of the state file's layout this code reads and writes.
pub const STATE_FORMAT: u32 = 1;
/// Largest state file read: thousands of releases fit in far less.
pub const MAX_STATE_LEN: u64 = 4 << 20;
/// Most releases a site records.
pub const MAX_RELEASES: usize = 10_000;
/// Longest site path accepted, in bytes.
const MAX_PATH_LEN: usize = 1024;
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
    /// Its signatures (`signature` = the first).
    #[serde(default)]
    pub signatures: Vec<String>,
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
            if !base.ends_with('/') || !base.contains("://") {
                return Err(format!("base URL '{base}' is not a URL ending with '/'"));
            }
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

    /// The state's TOML text.
    pub fn to_toml(&self) -> Result<String, SiteError> {
        toml::to_string(self).map_err(|e| SiteError::Damaged {
            path: PathBuf::from(STATE_FILE),
            reason: e.to_string(),
        })
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
    /// last `keep`, except the offered ones and the stable one.
    pub fn builds_to_delete(&self, keep: usize) -> Vec<usize> {
        let offered = self.offered_indexes();
        let first_kept = self.releases.len().saturating_sub(keep);
        (0..first_kept)
            .filter(|i| self.releases[*i].kept && !offered.contains(i))
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
        Ok(manifest)
    }

    /// Every `update.toml` installs fetch, as site paths: each release's
    /// URL specs expanded with its version, those under a base of the
    /// site (a fallback elsewhere is another host's business), once each.
    pub fn manifest_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = Vec::new();
        for release in &self.releases {
            for spec in &release.url_specs {
                let url = expand(spec, &self.app, &release.version, &self.os, &self.arch);
                if let Ok(path) = site_path(&url, &self.bases())
                    && !paths.contains(&path)
                {
                    paths.push(path);
                }
            }
        }
        paths
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

/// A site path: `/`-separated names, none empty, `.` or `..`, and no
/// character a URL or another system would read differently.
fn check_relative(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err("it is empty or too long");
    }
    if path.contains(['?', '#', '%', '\\', ':', '\0']) {
        return Err("it has a query, an escape or a character kept out of site paths (?#%\\:)");
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
/// first bytes) runs on: ELF is Linux, PE is Windows, the architecture
/// from the header; every offset is checked before it is read.
pub fn platform_of_stub(header: &[u8]) -> Result<(&'static str, &'static str), SiteError> {
    let unknown = |reason: String| SiteError::UnknownPlatform { reason };
    let u16_at = |at: usize, big: bool| -> Option<u16> {
        let bytes = [*header.get(at)?, *header.get(at + 1)?];
        Some(if big {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        })
    };
    if header.starts_with(b"\x7fELF") {
        let big = header.get(5) == Some(&2);
        let machine =
            u16_at(18, big).ok_or_else(|| unknown("its ELF header is cut short".into()))?;
        let arch = match machine {
            0x3e => "x86_64",
            0xb7 => "aarch64",
            0x03 => "x86",
            0x28 => "arm",
            0xf3 => "riscv64",
            other => return Err(unknown(format!("ELF machine {other:#x}"))),
        };
        return Ok(("linux", arch));
    }
    if header.starts_with(b"MZ") {
        let at = header
            .get(0x3c..0x40)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| unknown("its MS-DOS header is cut short".into()))?;
        if header.get(at..at.saturating_add(4)) != Some(b"PE\0\0") {
            return Err(unknown("no PE signature where its header says".into()));
        }
        let machine =
            u16_at(at + 4, false).ok_or_else(|| unknown("its COFF header is cut short".into()))?;
        let arch = match machine {
            0x8664 => "x86_64",
            0xaa64 => "aarch64",
            0x014c => "x86",
            other => return Err(unknown(format!("PE machine {other:#x}"))),
        };
        return Ok(("windows", arch));
    }
    Err(unknown("it is neither ELF nor PE".into()))
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
        crate::persist::write_atomically(&target, bytes, 0o644)?;
        Ok(target)
    }

    /// Writes the state file.
    pub fn write_state(&self, state: &SiteState) -> Result<PathBuf, SiteError> {
        self.write_file(STATE_FILE, state.to_toml()?.as_bytes())
    }

    /// Deletes the build at site path `rel` (gone already is fine).
    pub fn remove_build(&self, rel: &str) -> Result<PathBuf, SiteError> {
        let path = self.file_path(rel, false)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
            Err(e) => Err(io_error("delete", &path)(e)),
        }
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
        assert_eq!(s.builds_to_delete(1), vec![1]);
        assert_eq!(
            s.manifest_paths(),
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
        fs::write(dir.path().join(STATE_FILE), bad.to_toml()?)?;
        let err = SiteState::load(dir.path()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("damaged")));
        fs::write(dir.path().join(STATE_FILE), "format = [")?;
        assert!(SiteState::load(dir.path()).is_err());
        Ok(())
    }
}
