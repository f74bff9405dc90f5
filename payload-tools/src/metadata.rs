//! The TOML metadata block: what the app is called, which build it is, how
//! to run it, how the payload is cut into frames, and how it updates itself.
//!
//! - [`Metadata::to_toml`] writes it (`pack`), [`Metadata::parse`] reads
//!   and validates it (every reader).
//! - Unknown keys are ignored, so older stubs read newer metadata; a key
//!   that must not be ignored is announced in `requires` instead, and a
//!   reader that does not know a name listed there refuses the file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::PartHash;
use crate::error::{Error, Result};
use crate::members::{END_OF_ARCHIVE_LEN, MAX_MEMBER_OVERHEAD};

/// Most frames a payload may have. The metadata's size limit
/// ([`crate::trailer::MAX_METADATA_LEN`]) holds the index of all of them,
/// and with their hashes (`frame_hashes`, about 42 bytes a frame in all)
/// about 6,000; `pack` plans for at most about 3,000
/// ([`crate::frames::FramePolicy`]) and refuses to write a file whose
/// metadata does not fit.
pub const MAX_FRAMES: usize = 8192;

/// Most entries a payload may have: the check of an unpack holds every
/// path in memory ([`crate::namespace`]). Large real apps have a few
/// hundred thousand files.
pub const MAX_ENTRIES: u64 = 1 << 20;

/// Metadata schema versions. Version 1 is the only one so far; an unknown
/// number is reported as "made by a newer payload-tools", not misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum FormatVersion {
    V1,
}

impl TryFrom<u32> for FormatVersion {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        match v {
            1 => Ok(FormatVersion::V1),
            other => Err(format!("unknown format_version {other}")),
        }
    }
}

impl From<FormatVersion> for u32 {
    fn from(v: FormatVersion) -> u32 {
        match v {
            FormatVersion::V1 => 1,
        }
    }
}

/// Format features a reader must understand to handle the file safely.
pub const KNOWN_REQUIREMENTS: &[&str] = &[
    REQUIRES_SIGNED_UPDATES,
    REQUIRES_SPLIT_FILES,
    REQUIRES_HARD_LINKS,
    REQUIRES_ZSTD_DICTIONARY,
];

/// Named in `requires` when the build carries public keys: a stub that did
/// not know about signatures would otherwise install unsigned updates.
pub const REQUIRES_SIGNED_UPDATES: &str = "signed-updates";

/// Named in `requires` when a file's entry continues into the next frame
/// (`continued_frames` is not empty): an older reader would take each frame
/// for a tar stream of its own and refuse, or misread, the rest of the file.
pub const REQUIRES_SPLIT_FILES: &str = "split-files";

/// Named in `requires` when the payload holds hard-link entries (tar type
/// `1`): older readers refuse those entries with a less helpful message.
pub const REQUIRES_HARD_LINKS: &str = "hard-links";

/// Named in `requires` when the payload's first part is a zstd dictionary
/// that every other frame needs (`crate::dictionary`): a stub that did not
/// know about it could decode none of them.
pub const REQUIRES_ZSTD_DICTIONARY: &str = "zstd-dictionary";

/// The metadata block, field for field as in `docs/format.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: FormatVersion,
    /// Names of format features without which the file must not be used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// The app's name: a safe file name, used for the cache directory.
    pub name: String,
    /// The build's version: a safe file name, used for the cache directory.
    pub version: String,
    /// Path of the program to run, relative to the unpacked tree, `/`-separated.
    pub entry: String,
    /// What the app is given as `argv[0]`. Not in `requires`: every stub
    /// that `pack` accepts (one with the stub marker) honours it, and an
    /// older build that reads it while checking an update does not run it.
    #[serde(default, skip_serializing_if = "Argv0::is_packed")]
    pub argv0: Argv0,
    /// Total bytes of regular-file contents in the payload.
    pub unpacked_size: u64,
    /// Number of entries (files, directories, symlinks) in the payload.
    pub entry_count: u64,
    /// The payload's zstd frames, in order.
    pub frames: Vec<Frame>,
    /// The hash of the stub part (`0..payload_offset`) as written: an
    /// updater whose own stub has it copies the stub instead of fetching
    /// it. Absent in builds made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stub_hash: Option<PartHash>,
    /// The hash of each compressed frame, in the order of `frames`: an
    /// updater copies the frames its own executable holds and fetches the
    /// rest. Empty in builds made before it existed.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "crate::digest::packed_list"
    )]
    pub frame_hashes: Vec<PartHash>,
    /// Indexes of the frames that continue the previous frame's last entry
    /// (a large file split inside), increasing, from 1: such a frame and
    /// those before it, back to one that is not listed, are decoded as one
    /// tar stream. When not empty, `requires` names `split-files`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continued_frames: Vec<u64>,
    /// The regular files' modification times ([`crate::filetimes`]), out
    /// of the tar headers so that frames do not change with them. Absent
    /// in builds made before it existed (their files unpack with the time
    /// of the unpacking); readers that predate it ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_times: Option<String>,
    /// The self-test protocol version the stub answers
    /// (`stub::SELF_TEST_VERSION`), recorded by `pack` when the stub holds
    /// the self-test marker: an updater then runs the build's self-test
    /// even if the marker cannot be found in its stub (cut short before
    /// it), and refuses a build that fails it. Absent in builds made
    /// before it existed or with a stub without the mode; readers that
    /// predate it ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_test: Option<u16>,
    /// Self-update settings; absent when the build does not update itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateSettings>,
}

/// What a launched app sees as `argv[0]`. Read as a plain string: serde's
/// enum support would cost the stub a few KiB for two words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Argv0 {
    /// The packed file's name, as the user started it: what the app would
    /// see if it were the packed file (the default).
    #[default]
    Packed,
    /// The entry's real path in the cache: for programs that find their
    /// own files from `argv[0]`, such as a relocatable CPython.
    Entry,
}

impl Argv0 {
    pub fn is_packed(&self) -> bool {
        *self == Argv0::Packed
    }
}

impl TryFrom<String> for Argv0 {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "packed" => Ok(Argv0::Packed),
            "entry" => Ok(Argv0::Entry),
            other => Err(format!("argv0 is 'packed' or 'entry', not '{other}'")),
        }
    }
}

/// One independent zstd frame of the payload, holding whole tar entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u64; 2]", into = "[u64; 2]")]
pub struct Frame {
    /// Length of the compressed frame in the file.
    pub compressed_len: u64,
    /// Length of the tar bytes it decompresses to.
    pub tar_len: u64,
}

impl From<[u64; 2]> for Frame {
    fn from([compressed_len, tar_len]: [u64; 2]) -> Self {
        Frame {
            compressed_len,
            tar_len,
        }
    }
}

impl From<Frame> for [u64; 2] {
    fn from(f: Frame) -> Self {
        [f.compressed_len, f.tar_len]
    }
}

/// How a build finds and installs its successors (see `docs/updates.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateSettings {
    /// URL of `update.toml`, with `{VERSION}`, `{NAME}`, `{OS}`, `{ARCH}`
    /// expanded at run time.
    pub url_spec: String,
    /// How long the launcher may wait after the app exits for an update
    /// under way, in milliseconds, before it hands the rest to a background
    /// updater (the stub waits at most 25 ms for a host that has not
    /// answered, whatever this says).
    #[serde(default = "default_exit_wait_ms")]
    pub exit_wait_ms: u64,
    /// minisign public keys (base64 of the key line): when present, only a
    /// build signed by one of them is installed. Two allow key rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
    /// Accept a build whose version is not newer (channel switching).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_downgrade: bool,
    /// Accept plain `http://` to hosts other than loopback.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_insecure_http: bool,
    /// Largest download accepted when `update.toml` gives no `size`.
    #[serde(
        default = "default_max_download",
        skip_serializing_if = "is_default_max_download"
    )]
    pub max_download_size: u64,
    /// More `update.toml` URL specs, tried in order when the one before
    /// cannot be reached or answers an error; at most
    /// [`MAX_FALLBACK_URL_SPECS`] are used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_url_specs: Vec<String>,
    /// Seconds between two checks for updates; 0 checks at every launch.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub check_interval_s: u64,
    /// How long a newly installed build must run before it counts as
    /// healthy, in milliseconds (docs/updates.md, "Probation and
    /// rollback"); exiting without a crash, or the app saying so, counts
    /// sooner.
    #[serde(
        default = "default_healthy_after_ms",
        skip_serializing_if = "is_default_healthy_after_ms"
    )]
    pub healthy_after_ms: u64,
    /// Exit codes that count as a failed start of a build on probation,
    /// besides crashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy_exit_codes: Vec<i32>,
    /// Failed starts in a row after which a build on probation is rolled
    /// back to the one before it; 0 never rolls back.
    #[serde(
        default = "default_rollback_after",
        skip_serializing_if = "is_default_rollback_after"
    )]
    pub rollback_after: u32,
    /// The exit code by which the app asks to be restarted on the updated
    /// build (docs/updates.md, "Restart to update").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_exit_code: Option<i32>,
    /// Where the updater reports what became of an update (docs/updates.md,
    /// "Reports"): checked like the update URL, at most
    /// [`crate::manifest::MAX_REPORT_URL_LEN`] bytes. None: no reports,
    /// unless a trusted `update.toml` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_url: Option<String>,
}

/// Default of [`UpdateSettings::healthy_after_ms`].
pub const DEFAULT_HEALTHY_AFTER_MS: u64 = 5_000;
/// The longest probation a build may ask for (one hour).
pub const MAX_HEALTHY_AFTER_MS: u64 = 3_600_000;
/// Default of [`UpdateSettings::rollback_after`].
pub const DEFAULT_ROLLBACK_AFTER: u32 = 3;
/// The most failed starts a build may allow before its rollback.
pub const MAX_ROLLBACK_AFTER: u32 = 100;
/// The most `unhealthy_exit_codes` a build may list.
pub const MAX_UNHEALTHY_EXIT_CODES: usize = 32;

fn default_healthy_after_ms() -> u64 {
    DEFAULT_HEALTHY_AFTER_MS
}

fn is_default_healthy_after_ms(v: &u64) -> bool {
    *v == DEFAULT_HEALTHY_AFTER_MS
}

fn default_rollback_after() -> u32 {
    DEFAULT_ROLLBACK_AFTER
}

fn is_default_rollback_after(v: &u32) -> bool {
    *v == DEFAULT_ROLLBACK_AFTER
}

/// The longest check interval (30 days): a longer one is refused when
/// packing and taken as this by the stub.
pub const MAX_CHECK_INTERVAL_S: u64 = 30 * 24 * 3600;

/// Fallback `update.toml` locations a build may name (more are ignored).
pub const MAX_FALLBACK_URL_SPECS: usize = 8;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Default of [`UpdateSettings::max_download_size`]: 4 GiB.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 4 << 30;

fn default_max_download() -> u64 {
    DEFAULT_MAX_DOWNLOAD
}

fn is_default_max_download(v: &u64) -> bool {
    *v == DEFAULT_MAX_DOWNLOAD
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Default of [`UpdateSettings::exit_wait_ms`].
pub const DEFAULT_EXIT_WAIT_MS: u64 = 5_000;

fn default_exit_wait_ms() -> u64 {
    DEFAULT_EXIT_WAIT_MS
}

impl Metadata {
    /// Parses and validates a metadata block read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Metadata> {
        let meta: Metadata = match toml::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                // Tell "newer format" apart from "damaged" when we can.
                if let Ok(table) = text.parse::<toml::Table>()
                    && let Some(v) = table.get("format_version").and_then(|v| v.as_integer())
                    && v != 1
                {
                    return Err(Error::UnsupportedVersion {
                        path: path.into(),
                        found: u32::try_from(v).unwrap_or(u32::MAX),
                        supported: 1,
                    });
                }
                return Err(Error::Metadata {
                    path: path.into(),
                    reason: e.message().to_owned(),
                });
            }
        };
        for feature in &meta.requires {
            if !KNOWN_REQUIREMENTS.contains(&feature.as_str()) {
                return Err(Error::UnsupportedFeature {
                    path: path.into(),
                    feature: feature.clone(),
                });
            }
        }
        let bad = |reason: String| Error::Metadata {
            path: path.into(),
            reason,
        };
        check_safe_name("name", &meta.name).map_err(|e| bad(e.to_string()))?;
        check_safe_name("version", &meta.version).map_err(|e| bad(e.to_string()))?;
        check_entry_path(&meta.entry).map_err(|e| bad(e.to_string()))?;
        meta.check_sizes().map_err(bad)?;
        Ok(meta)
    }

    /// The declared sizes bound all later work: the frame count, the entry
    /// count, and the tar bytes the frames decode to, which cannot exceed
    /// the file data plus what each entry's header and names can take. A
    /// payload that would decode to more is refused here, before a byte of
    /// it is decompressed.
    fn check_sizes(&self) -> Result<(), String> {
        let frames = self.frames.len();
        if frames == 0 {
            return Err("no frames".into());
        }
        if frames > MAX_FRAMES {
            return Err(format!(
                "{frames} frames, more than the {MAX_FRAMES} a payload may have"
            ));
        }
        if !self.frame_hashes.is_empty() && self.frame_hashes.len() != frames {
            return Err(format!(
                "{} frame hashes for {frames} frames",
                self.frame_hashes.len()
            ));
        }
        if self.has_dictionary() {
            // The dictionary part, then at least one frame of tar.
            if frames < 2 || self.frames[0].tar_len != 0 {
                return Err("its first frame must be the dictionary, followed by frames".into());
            }
            crate::dictionary::check_part_len(self.frames[0].compressed_len)?;
        }
        // A continued frame follows a frame of tar: neither the first frame
        // of tar nor the dictionary part before it is ever continued.
        let first = self.first_tar_frame() as u64;
        let mut previous = first;
        for &index in &self.continued_frames {
            if index <= previous || index >= frames as u64 {
                return Err(format!(
                    "continued_frames must be increasing frame indexes from {} to {}, not {index} after {previous}",
                    first + 1,
                    frames - 1
                ));
            }
            previous = index;
        }
        if !self.continued_frames.is_empty()
            && !self.requires.iter().any(|r| r == REQUIRES_SPLIT_FILES)
        {
            return Err(format!(
                "continued_frames without '{REQUIRES_SPLIT_FILES}' in requires"
            ));
        }
        let entries = self.entry_count;
        if entries == 0 || entries > MAX_ENTRIES {
            return Err(format!(
                "entry_count {entries} is not between 1 and {MAX_ENTRIES}"
            ));
        }
        let tar_len = self
            .frames
            .iter()
            .try_fold(0u64, |acc, f| acc.checked_add(f.tar_len));
        let most = entries
            .saturating_mul(MAX_MEMBER_OVERHEAD)
            .saturating_add(self.unpacked_size)
            .saturating_add(END_OF_ARCHIVE_LEN);
        match tar_len {
            Some(len) if len <= most => Ok(()),
            _ => Err(format!(
                "its frames decode to more than the {most} tar bytes that {entries} entries with {} bytes of files can take",
                self.unpacked_size
            )),
        }
    }

    /// Whether the payload's first part is a dictionary (docs/format.md,
    /// "Dictionary").
    pub fn has_dictionary(&self) -> bool {
        self.requires.iter().any(|r| r == REQUIRES_ZSTD_DICTIONARY)
    }

    /// The TOML text of this metadata, as `pack` writes it.
    pub fn to_toml(&self) -> String {
        // Serialising plain strings, integers and arrays cannot fail; an
        // empty string would only make the reader refuse the file.
        toml::to_string(self).unwrap_or_default()
    }

    /// The index of the first frame of tar: 1 after a dictionary part, else 0.
    pub fn first_tar_frame(&self) -> usize {
        usize::from(self.has_dictionary())
    }

    /// The frames of tar in runs that decode as one tar stream each, in
    /// order (the dictionary part is in none): a run starts at every frame
    /// not listed in `continued_frames` (which [`Metadata::parse`] checked).
    pub fn frame_runs(&self) -> Vec<std::ops::Range<usize>> {
        let mut runs = Vec::new();
        let mut continued = self.continued_frames.iter().peekable();
        let mut start = self.first_tar_frame();
        for index in start + 1..self.frames.len() {
            if continued.next_if(|&&c| c == index as u64).is_none() {
                runs.push(start..index);
                start = index;
            }
        }
        if start < self.frames.len() {
            runs.push(start..self.frames.len());
        }
        runs
    }

    /// Sum of the frames' compressed lengths: must equal the payload length.
    pub fn frames_compressed_len(&self) -> u64 {
        self.frames
            .iter()
            .fold(0u64, |acc, f| acc.saturating_add(f.compressed_len))
    }
}

/// Longest name or version accepted.
pub const MAX_NAME_LEN: usize = 100;

/// A name or version becomes a directory name in the cache: it must be
/// one safe path component on every platform.
pub fn check_safe_name(what: &'static str, value: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidValue {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(invalid("it must be 1 to 100 characters long"));
    }
    if value.starts_with('.') || value.starts_with('-') {
        return Err(invalid("it must not start with '.' or '-'"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    {
        return Err(invalid(
            "use only letters, digits and . _ - + (it names a cache directory)",
        ));
    }
    Ok(())
}

/// The entry is a relative `/`-separated path with no `.`, `..` or empty
/// components.
pub fn check_entry_path(entry: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidValue {
        what: "entry",
        value: entry.to_owned(),
        reason,
    };
    if entry.is_empty() {
        return Err(invalid("it is empty"));
    }
    if entry.contains('\\') || entry.contains('\0') {
        return Err(invalid("use '/' as the separator"));
    }
    for part in entry.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(invalid(
                "it must be a relative path inside the app, without '.', '..' or '//'",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            format_version: FormatVersion::V1,
            requires: vec![],
            name: "myapp".into(),
            version: "1.0".into(),
            entry: "bin/myapp".into(),
            argv0: Argv0::Packed,
            unpacked_size: 42,
            entry_count: 3,
            frames: vec![Frame {
                compressed_len: 10,
                tar_len: 2048,
            }],
            stub_hash: Some(PartHash::of(b"stub")),
            frame_hashes: vec![PartHash::of(b"frame")],
            continued_frames: vec![],
            file_times: None,
            self_test: None,
            update: None,
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let text = m.to_toml();
        assert_eq!(Metadata::parse(&text, Path::new("x")).ok(), Some(m));
    }

    #[test]
    fn argv0_is_written_only_when_not_the_default() {
        let m = sample();
        assert!(!m.to_toml().contains("argv0"));
        let m = Metadata {
            argv0: Argv0::Entry,
            ..sample()
        };
        let text = m.to_toml();
        assert!(text.contains("argv0 = \"entry\""), "{text}");
        assert_eq!(Metadata::parse(&text, Path::new("x")).ok(), Some(m));
        let bad = text.replace("\"entry\"", "\"elsewhere\"");
        assert!(Metadata::parse(&bad, Path::new("x")).is_err());
    }

    #[test]
    fn the_self_test_is_written_only_when_the_stub_has_it() {
        let m = sample();
        assert!(!m.to_toml().contains("self_test"));
        let m = Metadata {
            self_test: Some(1),
            ..sample()
        };
        let text = m.to_toml();
        assert!(text.contains("self_test = 1"), "{text}");
        assert_eq!(Metadata::parse(&text, Path::new("x")).ok(), Some(m));
    }

    #[test]
    fn unknown_keys_are_ignored_but_unknown_requirements_are_not() {
        let text = format!("{}\nfuture_key = 1\n", sample().to_toml());
        assert!(Metadata::parse(&text, Path::new("x")).is_ok());
        let text = format!("requires = [\"delta-v9\"]\n{}", sample().to_toml());
        assert!(matches!(
            Metadata::parse(&text, Path::new("x")),
            Err(Error::UnsupportedFeature { .. })
        ));
    }

    #[test]
    fn newer_format_version_is_named() {
        let text = sample()
            .to_toml()
            .replace("format_version = 1", "format_version = 7");
        assert!(matches!(
            Metadata::parse(&text, Path::new("x")),
            Err(Error::UnsupportedVersion { found: 7, .. })
        ));
    }

    #[test]
    fn declared_sizes_are_bounded() {
        let parse = |m: &Metadata| Metadata::parse(&m.to_toml(), Path::new("x"));
        let refused = |m: &Metadata, part: &str| match parse(m) {
            Err(Error::Metadata { reason, .. }) => assert!(reason.contains(part), "{reason}"),
            other => panic!("expected a refusal naming {part:?}: {other:?}"),
        };
        let mut m = sample();
        m.frame_hashes.push(PartHash::of(b"one too many"));
        refused(&m, "2 frame hashes for 1 frames");

        let mut m = sample();
        m.frame_hashes.clear();
        m.frames = vec![
            Frame {
                compressed_len: 9,
                tar_len: 0
            };
            MAX_FRAMES + 1
        ];
        refused(&m, "8193 frames");
        m.frames.truncate(MAX_FRAMES);
        assert!(parse(&m).is_ok());

        let mut m = sample();
        m.entry_count = 0;
        refused(&m, "entry_count 0");
        m.entry_count = MAX_ENTRIES + 1;
        refused(&m, "entry_count");

        // The sample's 3 entries and 42 bytes of files: at most this many
        // tar bytes, however long their names.
        let most = 3 * MAX_MEMBER_OVERHEAD + 42 + END_OF_ARCHIVE_LEN;
        let mut m = sample();
        m.frames[0].tar_len = most;
        assert!(parse(&m).is_ok());
        m.frames[0].tar_len = most + 1;
        refused(&m, "more than the");
        m.frame_hashes.clear();
        m.frames = vec![
            Frame {
                compressed_len: 1,
                tar_len: u64::MAX
            };
            2
        ];
        refused(&m, "more than the");
    }

    #[test]
    fn continued_frames_are_checked_and_make_runs() {
        let parse = |m: &Metadata| Metadata::parse(&m.to_toml(), Path::new("x"));
        let mut m = sample();
        m.frame_hashes.clear();
        m.frames = vec![
            Frame {
                compressed_len: 1,
                tar_len: 512
            };
            5
        ];
        m.entry_count = 5;
        assert_eq!(m.frame_runs(), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        m.continued_frames = vec![1, 2, 4];
        match parse(&m) {
            Err(Error::Metadata { reason, .. }) => assert!(reason.contains("requires"), "{reason}"),
            other => panic!("{other:?}"),
        }
        m.requires = vec![REQUIRES_SPLIT_FILES.into()];
        assert_eq!(
            parse(&m).ok().map(|m| m.frame_runs()),
            Some(vec![0..3, 3..5])
        );
        for bad in [vec![0], vec![2, 2], vec![3, 1], vec![5]] {
            m.continued_frames = bad;
            assert!(parse(&m).is_err(), "{:?}", m.continued_frames);
        }
    }

    #[test]
    fn frame_hashes_are_one_base64_string_and_six_thousand_frames_fit() {
        let text = sample().to_toml();
        assert!(
            text.contains(&format!(
                "frame_hashes = \"{}\"",
                "oPZqm8Z1CsOHyvdnZJiw4g=="
            )),
            "{text}"
        );
        for bad in ["\"not base64!\"", "\"AAAA\""] {
            let broken = text.replace("\"oPZqm8Z1CsOHyvdnZJiw4g==\"", bad);
            assert!(Metadata::parse(&broken, Path::new("x")).is_err(), "{bad}");
        }
        let mut m = sample();
        m.unpacked_size = 1 << 40;
        m.entry_count = MAX_ENTRIES;
        m.frames = vec![
            Frame {
                compressed_len: 1_048_576,
                tar_len: 2_097_152,
            };
            6000
        ];
        m.frame_hashes = (0..6000u32)
            .map(|i| PartHash::of(&i.to_le_bytes()))
            .collect();
        let text = m.to_toml();
        assert!(
            (text.len() as u64) < crate::trailer::MAX_METADATA_LEN,
            "{} bytes",
            text.len()
        );
        assert_eq!(Metadata::parse(&text, Path::new("x")).ok(), Some(m));
    }

    #[test]
    fn names_must_be_safe_file_names() {
        for bad in ["", ".hidden", "-x", "a/b", "a b", "..", "é"] {
            assert!(check_safe_name("name", bad).is_err(), "{bad:?}");
        }
        for good in ["myapp", "My_App-2", "1.0.0-beta+7"] {
            assert!(check_safe_name("name", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn entry_paths_stay_inside() {
        for bad in ["", "/bin/x", "../x", "a/../b", "a//b", "./a", "a\\b"] {
            assert!(check_entry_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_entry_path("bin/app").is_ok());
    }
}
