//! `update.toml`, the manifest a build's update URL serves, and the URL
//! spec that locates it (see `docs/updates.md`).
//!
//! - [`UpdateManifest::parse`] reads a manifest: `url` and `crc32` are
//!   required, `size` and `version` are used when present, unknown keys are
//!   ignored so that newer publishers can add fields.
//! - [`UpdateManifest::to_toml`] writes one (`pack --auto-update-toml-file`,
//!   `payload-tools update-toml`).
//! - [`expand_url_spec`] fills in `{VERSION}`, `{NAME}`, `{OS}`, `{ARCH}`.
//! - [`check_url_spec`] and [`check_url`] refuse, at pack time, URLs that
//!   every launch would refuse or never reach.

use serde::{Deserialize, Serialize};

/// Largest manifest accepted, in bytes: a real one is a few hundred.
pub const MAX_MANIFEST_LEN: u64 = 64 * 1024;

/// The line that starts a manifest's own signatures: everything before it
/// is what they sign, and all that is read of a signed manifest's fields.
pub const SIGNATURE_SECTION: &str = "[manifest_signature]\n";

/// How long a signed manifest is used when its writer gives no lifetime:
/// a week, so that a daily re-signing job (`payload-tools refresh`) may
/// fail for days before installs stop updating.
pub const DEFAULT_LIFETIME_S: i64 = 7 * 86_400;

/// Rollout shares are in hundredths of a percent (basis points).
pub const ROLLOUT_SCALE: u32 = 10_000;

/// One build as a manifest offers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Where the new executable is downloaded from.
    pub url: String,
    /// CRC-32 of the whole new executable.
    pub crc32: u32,
    /// Its length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Its version, as in its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The minisign signature of the new executable (the whole `.minisig`
    /// text); required by builds that carry public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// More signatures of the same executable, by other keys (key
    /// rotation: installs that trust either key accept it). Read by stubs
    /// that know it; older ones read `signature` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
    /// More URLs of the same executable, tried in order after `url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
}

/// The contents of `update.toml`: the release every install is offered
/// (its fields at the top level, all that stubs before the fleet fields
/// read), and what a fleet needs besides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateManifest {
    pub url: String,
    pub crc32: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
    /// The app this manifest is for (a signed manifest must name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The platform its builds are for (`std::env::consts::OS` / `ARCH`
    /// names): an install refuses a manifest for another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The update URL specs (unexpanded) this manifest is published under:
    /// an install refuses one that is not published under its own spec
    /// (another channel's manifest served in its place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specs: Vec<String>,
    /// Goes up with every manifest the publisher writes: an install
    /// refuses one lower than the highest it has seen (replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// After this time the manifest is not used (freeze): an offset
    /// date-time such as `2026-12-01T00:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<toml::value::Datetime>,
    /// A newer release offered to a share of installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Where installs report what became of an update, in place of the URL
    /// their build was packed with (docs/updates.md, "Reports"); empty:
    /// no reports. Used only from a manifest the install trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// A release offered to a share of installs; the others are offered the
/// manifest's top-level release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    #[serde(flatten)]
    pub release: Release,
    /// The share of installs offered it, in percent (0 to 100; hundredths
    /// count).
    pub percent: f64,
    /// Drawn anew for each release, so that the same installs are not
    /// always the first.
    pub salt: String,
    /// No install starts this release any more.
    #[serde(default, skip_serializing_if = "is_false")]
    pub halted: bool,
    /// Offered to every install whatever the share (unless halted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub critical: bool,
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// A manifest's text split at [`SIGNATURE_SECTION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedText<'a> {
    /// What the signatures sign, and the only part read for fields.
    pub body: &'a str,
    /// The TOML of the signature section (`minisig = [...]`), when present.
    pub signatures: Option<&'a str>,
}

/// The signature section as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignatures {
    /// One `.minisig` text per signing key.
    pub minisig: Vec<String>,
}

/// Splits a manifest's text into what is signed and its signatures: at the
/// first line that is exactly [`SIGNATURE_SECTION`] (or the same ending in
/// `\r\n`: a file kept with Windows line endings). Nothing after it is
/// read as the manifest's fields.
pub fn split_signed(text: &str) -> SignedText<'_> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line == SIGNATURE_SECTION
            || line.strip_suffix("\r\n") == SIGNATURE_SECTION.strip_suffix('\n')
        {
            return SignedText {
                body: &text[..at],
                signatures: Some(&text[at + line.len()..]),
            };
        }
        at += line.len();
    }
    SignedText {
        body: text,
        signatures: None,
    }
}

/// The text of a signed manifest: `body` (the manifest's TOML, which its
/// signatures sign), then its signature section. `body` must end with a
/// line break ([`UpdateManifest::to_toml`]'s does): the section starts a
/// line, and a line break added here would not be what was signed, so
/// every install would refuse the result (a debug build panics instead).
pub fn with_signatures(body: &str, minisig: Vec<String>) -> String {
    debug_assert!(
        body.is_empty() || body.ends_with('\n'),
        "a signed manifest's body ends with a line break"
    );
    let section = toml::to_string(&ManifestSignatures { minisig }).unwrap_or_default();
    let newline = if body.ends_with('\n') || body.is_empty() {
        ""
    } else {
        "\n"
    };
    format!("{body}{newline}{SIGNATURE_SECTION}{section}")
}

/// The signatures of a manifest's signature section (empty when it has
/// none, or they do not parse).
pub fn signatures_of(split: &SignedText<'_>) -> Vec<String> {
    split
        .signatures
        .and_then(|text| toml::from_str::<ManifestSignatures>(text).ok())
        .map(|s| s.minisig)
        .unwrap_or_default()
}

/// The trusted comment a signature of a build carries, binding it to the
/// app's name and version (so a signature cannot be replayed for another
/// build or another app).
pub fn trusted_comment(name: &str, version: &str) -> String {
    format!("onefile app={name} version={version}")
}

/// The trusted comment of a manifest's signature: what a person reading
/// it with `minisign -V` sees (the signature covers the whole body anyway).
pub fn manifest_trusted_comment(app: &str, sequence: u64, expires: Option<i64>) -> String {
    match expires {
        Some(expires) => {
            format!("onefile manifest app={app} sequence={sequence} expires={expires}")
        }
        None => format!("onefile manifest app={app} sequence={sequence}"),
    }
}

/// The rollout bucket of an install for a release: a number below
/// [`ROLLOUT_SCALE`], the same for the same install and salt, independent
/// between salts. `install_id` never leaves the install.
pub fn rollout_bucket(install_id: &[u8], salt: &str) -> u32 {
    use blake2::Digest;
    let mut hasher = blake2::Blake2b512::new();
    hasher.update(b"onefile rollout\0");
    hasher.update(salt.as_bytes());
    hasher.update(b"\0");
    hasher.update(install_id);
    let hash = hasher.finalize();
    let first = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
    first % ROLLOUT_SCALE
}

impl Rollout {
    /// The share in basis points, bounded to 0..=ROLLOUT_SCALE (a share that
    /// is not a number is none).
    pub fn basis_points(&self) -> u32 {
        if self.percent.is_nan() {
            return 0;
        }
        (self.percent.clamp(0.0, 100.0) * 100.0).round() as u32
    }

    /// Whether an install in `bucket` is offered this release.
    pub fn offers(&self, bucket: u32) -> bool {
        !self.halted && (self.critical || bucket < self.basis_points())
    }
}

/// The seconds since the Unix epoch of an offset date-time (`None` for a
/// local or partial one, which names no instant).
pub fn unix_seconds(at: &toml::value::Datetime) -> Option<i64> {
    let (date, time, offset) = (at.date?, at.time?, at.offset?);
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0));
    Some(days * 86_400 + seconds - offset_minutes * 60)
}

/// The offset date-time (UTC, whole seconds) of seconds since the epoch.
pub fn datetime_from_unix(seconds: i64) -> toml::value::Datetime {
    // A TOML date has a four-digit year: beyond it, the last second it can
    // say (and before it, the first), never a wrong date.
    let first = days_from_civil(0, 1, 1) * 86_400;
    let last = days_from_civil(9999, 12, 31) * 86_400 + 86_399;
    let seconds = seconds.clamp(first, last);
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    toml::value::Datetime {
        date: Some(toml::value::Date {
            year: u16::try_from(year).unwrap_or(9999),
            month: month as u8,
            day: day as u8,
        }),
        time: Some(toml::value::Time {
            hour: (rest / 3600) as u8,
            minute: (rest / 60 % 60) as u8,
            second: Some((rest % 60) as u8),
            nanosecond: None,
        }),
        offset: Some(toml::value::Offset::Z),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl UpdateManifest {
    /// When the manifest stops being used, in seconds since the epoch:
    /// `Err` for an `expires` that names no instant.
    pub fn expires_at(&self) -> Result<Option<i64>, String> {
        match &self.expires {
            None => Ok(None),
            Some(at) => unix_seconds(at).map(Some).ok_or_else(|| {
                format!("'expires = {at}' names no instant: give a time and an offset (Z)")
            }),
        }
    }

    /// Parses a manifest's fields (of its signed body only, see
    /// [`split_signed`]); the error is one line saying what is wrong.
    pub fn parse(text: &str) -> Result<UpdateManifest, String> {
        let body = split_signed(text).body;
        let manifest: UpdateManifest =
            toml::from_str(body).map_err(|e| e.message().trim().to_owned())?;
        if manifest.url.trim().is_empty() {
            return Err("'url' is empty".into());
        }
        if let Some(rollout) = &manifest.rollout
            && rollout.release.url.trim().is_empty()
        {
            return Err("the rollout's 'url' is empty".into());
        }
        Ok(manifest)
    }

    /// The release at the top level: what every install is offered unless
    /// the rollout offers it another.
    pub fn offered(&self) -> Release {
        Release {
            url: self.url.clone(),
            crc32: self.crc32,
            size: self.size,
            version: self.version.clone(),
            signature: self.signature.clone(),
            signatures: self.signatures.clone(),
            mirrors: self.mirrors.clone(),
        }
    }

    /// A manifest offering `release` to every install, and nothing else.
    pub fn offering(release: Release) -> UpdateManifest {
        UpdateManifest {
            url: release.url,
            crc32: release.crc32,
            size: release.size,
            version: release.version,
            signature: release.signature,
            signatures: release.signatures,
            mirrors: release.mirrors,
            app: None,
            os: None,
            arch: None,
            specs: Vec::new(),
            sequence: None,
            expires: None,
            rollout: None,
            report: None,
        }
    }

    /// The TOML text of the manifest's fields (unsigned: signatures are
    /// appended after [`SIGNATURE_SECTION`]).
    pub fn to_toml(&self) -> String {
        // Plain strings, integers and one table always serialise.
        toml::to_string(self).unwrap_or_default()
    }
}

impl Release {
    /// Every signature of the executable: `signature`, then `signatures`.
    pub fn all_signatures(&self) -> impl Iterator<Item = &str> {
        self.signature
            .iter()
            .chain(self.signatures.iter())
            .map(String::as_str)
    }

    /// Every URL of the executable, in the order they are tried.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.mirrors.iter().map(String::as_str))
    }
}

/// Expands the placeholders of an update URL spec.
pub fn expand_url_spec(spec: &str, name: &str, version: &str) -> String {
    spec.replace("{VERSION}", version)
        .replace("{NAME}", name)
        .replace("{OS}", std::env::consts::OS)
        .replace("{ARCH}", std::env::consts::ARCH)
}

/// The placeholders an update URL spec may use.
pub const PLACEHOLDERS: [&str; 4] = ["{VERSION}", "{NAME}", "{OS}", "{ARCH}"];

/// Checks an update URL spec as `pack` receives it: only known
/// placeholders, and once expanded a URL that [`check_url`] accepts. The
/// error is one line saying what is wrong.
pub fn check_url_spec(
    spec: &str,
    name: &str,
    version: &str,
    allow_insecure_http: bool,
) -> Result<(), String> {
    let mut rest = spec;
    while let Some(open) = rest.find(['{', '}']) {
        let tail = &rest[open..];
        match PLACEHOLDERS.iter().find(|p| tail.starts_with(*p)) {
            Some(p) => rest = &tail[p.len()..],
            None => {
                // The brace and what follows, up to a closing brace (kept),
                // the next brace or the next '/'.
                let end = tail[1..]
                    .find(['{', '}', '/'])
                    .map_or(tail.len(), |i| i + 1);
                let end = end + usize::from(tail[end..].starts_with('}'));
                let shown = &tail[..end];
                return Err(format!(
                    "unknown placeholder '{shown}' (known: {})",
                    PLACEHOLDERS.join(", ")
                ));
            }
        }
    }
    check_url(&expand_url_spec(spec, name, version), allow_insecure_http)
}

/// Checks a URL the updater will request: `https://`, or `http://` to this
/// machine (or anywhere with `allow_insecure_http`), with a host. The same
/// policy as the launcher's (`bootstrap/src/update/http.rs`).
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("it has no scheme: write it as https://host/path".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "'{scheme}://' is not used: only https:// (and http:// to this machine)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if scheme == "http" && !allow_insecure_http && !is_loopback(host) {
        return Err(format!(
            "plain http:// to '{host}' would be refused at every launch: use https://, or pass --allow-insecure-http"
        ));
    }
    Ok(())
}

/// The longest report URL (`pack --report-url`, a manifest's `report`): the
/// query the updater appends stays well within what hosts accept.
pub const MAX_REPORT_URL_LEN: usize = 2048;

/// Checks a report URL: what [`check_url`] accepts, at most
/// [`MAX_REPORT_URL_LEN`] bytes, without user info (`user@`, which would
/// be sent to the host with every report) or a fragment (the query is
/// appended). The same check at pack time and in the updater.
pub fn check_report_url(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    if url.len() > MAX_REPORT_URL_LEN {
        return Err(format!(
            "it is longer than {MAX_REPORT_URL_LEN} bytes ({})",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err("it holds a space or a control character".into());
    }
    check_url(url, allow_insecure_http)?;
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("it has user info (user@host): reports carry no credentials".into());
    }
    if url.contains('#') {
        return Err("it has a fragment (#...): the report's query is appended to it".into());
    }
    Ok(())
}

/// 127.0.0.0/8, `::1` and `localhost`: where plain http is harmless.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The default download URL of a build: the folder of its expanded info
/// URL plus the executable's file name.
pub fn default_download_url(spec: &str, name: &str, version: &str, file_name: &str) -> String {
    let info = expand_url_spec(spec, name, version);
    let base = match info.rfind('/') {
        Some(i) => &info[..=i],
        None => "",
    };
    format!("{base}{file_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_minimal_and_ignore_unknown_keys() {
        let m = UpdateManifest::parse("url = \"http://x/a.bin\"\ncrc32 = 123\nfuture = true\n");
        assert_eq!(
            m,
            Ok(UpdateManifest::offering(Release {
                url: "http://x/a.bin".into(),
                crc32: 123,
                size: None,
                version: None,
                signature: None,
                signatures: vec![],
                mirrors: vec![],
            }))
        );
    }

    #[test]
    fn refuse_missing_or_wrong_types() {
        assert!(UpdateManifest::parse("url = \"x\"").is_err());
        assert!(UpdateManifest::parse("crc32 = 1").is_err());
        assert!(UpdateManifest::parse("url = 1\ncrc32 = 1").is_err());
        assert!(UpdateManifest::parse("url = \"x\"\ncrc32 = -1").is_err());
        assert!(UpdateManifest::parse("<html>").is_err());
        assert!(UpdateManifest::parse("").is_err());
    }

    #[test]
    fn round_trip() -> Result<(), toml::de::Error> {
        let release = |version: &str| Release {
            url: format!("https://example.org/{version}/app.bin"),
            crc32: 0xdead_beef,
            size: Some(12),
            version: Some(version.into()),
            signature: Some("untrusted comment: x\nAAAA\ntrusted comment: y\nBBBB\n".into()),
            signatures: vec!["untrusted comment: z\nCCCC\n".into()],
            mirrors: vec![format!("https://mirror.example.net/{version}/app.bin")],
        };
        let plain = UpdateManifest::offering(release("1.1"));
        assert_eq!(UpdateManifest::parse(&plain.to_toml()), Ok(plain));
        let fleet = UpdateManifest {
            app: Some("app".into()),
            sequence: Some(7),
            expires: Some(datetime_from_unix(1_800_000_000)),
            rollout: Some(Rollout {
                release: release("1.2"),
                percent: 12.5,
                salt: "9f2c".into(),
                halted: false,
                critical: true,
            }),
            ..UpdateManifest::offering(release("1.1"))
        };
        let text = fleet.to_toml();
        assert_eq!(UpdateManifest::parse(&text), Ok(fleet.clone()));
        // What an older stub reads of it: the top-level release.
        let old: toml::Table = toml::from_str(&text)?;
        assert_eq!(old.get("version").and_then(|v| v.as_str()), Some("1.1"));
        Ok(())
    }

    #[test]
    fn signed_text_splits_at_the_section_line_only() {
        let text = "url = \"x\"\ncrc32 = 1\n[manifest_signature]\nminisig = [\"s\"]\n";
        let split = split_signed(text);
        assert_eq!(split.body, "url = \"x\"\ncrc32 = 1\n");
        assert_eq!(split.signatures, Some("minisig = [\"s\"]\n"));
        // Not at a line start, or with more on the line: not the section.
        for unsigned in [
            "url = \"[manifest_signature]\n\"\ncrc32 = 1\n",
            "url = \"x\"\ncrc32 = 1\n[manifest_signature] # x\n",
        ] {
            assert_eq!(split_signed(unsigned).signatures, None, "{unsigned}");
        }
        // Fields after the section are not the manifest's.
        let smuggled = "url = \"x\"\ncrc32 = 1\n[manifest_signature]\n[rollout]\npercent = 1\n";
        assert_eq!(
            UpdateManifest::parse(smuggled).map(|m| m.rollout.is_none()),
            Ok(true)
        );
    }

    #[test]
    fn signatures_round_trip() {
        let body = UpdateManifest::offering(Release {
            url: "u".into(),
            crc32: 1,
            size: None,
            version: None,
            signature: None,
            signatures: vec![],
            mirrors: vec![],
        })
        .to_toml();
        let sigs = vec![
            "untrusted comment: a\nX\ntrusted comment: b\nY\n".to_owned(),
            "Z".into(),
        ];
        let text = with_signatures(&body, sigs.clone());
        let split = split_signed(&text);
        assert_eq!(split.body, body);
        assert_eq!(signatures_of(&split), sigs);
        assert_eq!(UpdateManifest::parse(&text).map(|m| m.crc32), Ok(1));
        // Kept with Windows line endings: split the same way, the body's
        // bytes exactly as they are.
        let crlf = text.replace('\n', "\r\n");
        let split = split_signed(&crlf);
        assert_eq!(split.body, body.replace('\n', "\r\n"));
        assert_eq!(signatures_of(&split).len(), 2);
    }

    /// A body without a final line break would get one its signatures do
    /// not cover: a writer's mistake, caught in debug builds.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "ends with a line break")]
    fn a_body_without_a_final_line_break_is_not_signed() {
        with_signatures("url = \"x\"\ncrc32 = 1", vec!["s".into()]);
    }

    #[test]
    fn buckets_are_stable_per_salt_and_spread() {
        let id = [7u8; 16];
        assert_eq!(rollout_bucket(&id, "a"), rollout_bucket(&id, "a"));
        let ids: Vec<[u8; 16]> = (0..2000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                id
            })
            .collect();
        let share = |salt: &str, bp: u32| {
            ids.iter()
                .filter(|id| rollout_bucket(id.as_slice(), salt) < bp)
                .count()
        };
        // 10 % of 2000 is 200; a fair hash lands well within 150..250.
        for salt in ["r1", "r2"] {
            let n = share(salt, 1000);
            assert!((150..250).contains(&n), "{salt}: {n}");
        }
        // Re-drawn per release: the first 10 % of r1 and of r2 mostly differ.
        let both = ids
            .iter()
            .filter(|id| rollout_bucket(id.as_slice(), "r1") < 1000)
            .filter(|id| rollout_bucket(id.as_slice(), "r2") < 1000)
            .count();
        assert!(both < 60, "{both}");
    }

    #[test]
    fn expiry_times() {
        for seconds in [0, 1_800_000_000, 951_782_400, 4_102_444_800, -86_400] {
            let at = datetime_from_unix(seconds);
            assert_eq!(unix_seconds(&at), Some(seconds), "{at}");
        }
        let parsed = |text: &str| {
            UpdateManifest::parse(&format!("url = \"u\"\ncrc32 = 1\nexpires = {text}\n"))
                .and_then(|m| m.expires_at())
        };
        assert_eq!(parsed("2027-01-15T08:00:00Z"), Ok(Some(1_800_000_000)));
        assert_eq!(parsed("2027-01-15T10:00:00+02:00"), Ok(Some(1_800_000_000)));
        assert!(parsed("2027-01-15T08:00:00").is_err());
        assert!(parsed("2027-01-15").is_err());
        assert!(parsed("\"tomorrow\"").is_err());
    }

    #[test]
    fn rollout_offers() {
        let rollout = |percent: f64, halted: bool, critical: bool| Rollout {
            release: Release {
                url: "u".into(),
                crc32: 0,
                size: None,
                version: None,
                signature: None,
                signatures: vec![],
                mirrors: vec![],
            },
            percent,
            salt: String::new(),
            halted,
            critical,
        };
        assert!(!rollout(0.0, false, false).offers(0));
        assert!(rollout(0.01, false, false).offers(0));
        assert!(!rollout(0.01, false, false).offers(1));
        assert!(rollout(100.0, false, false).offers(ROLLOUT_SCALE - 1));
        assert!(rollout(250.0, false, false).offers(ROLLOUT_SCALE - 1));
        assert!(!rollout(f64::NAN, false, false).offers(0));
        assert!(rollout(0.0, false, true).offers(9_999));
        assert!(!rollout(100.0, true, true).offers(0));
    }

    #[test]
    fn url_specs_that_cannot_work_are_refused() {
        let check = |spec: &str, insecure: bool| check_url_spec(spec, "app", "1.0", insecure);
        for good in [
            "https://example.org/{NAME}/{VERSION}/{OS}-{ARCH}/update.toml",
            "http://127.0.0.1:8000/{VERSION}/update.toml",
            "http://localhost/u.toml",
            "http://[::1]:9/u.toml",
            "HTTPS://user@example.org:443/u.toml",
        ] {
            assert_eq!(check(good, false), Ok(()), "{good}");
        }
        assert_eq!(check("http://example.org/u.toml", true), Ok(()));
        for (bad, says) in [
            ("example.org/{VERSION}/update.toml", "no scheme"),
            ("https://example.org/{VERSOIN}/u.toml", "'{VERSOIN}'"),
            ("https://example.org/{version}/u.toml", "'{version}'"),
            ("https://example.org/{VERSION/u.toml", "'{VERSION'"),
            ("https://example.org/}/u.toml", "'}'"),
            ("http://example.org/u.toml", "--allow-insecure-http"),
            ("http://192.0.2.1/u.toml", "'192.0.2.1'"),
            ("ftp://example.org/u.toml", "'ftp://'"),
            ("https:///u.toml", "no host"),
        ] {
            let err = check(bad, false).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn report_urls_are_bounded_and_carry_no_credentials() {
        let check = |url: &str| check_report_url(url, false);
        assert_eq!(check("https://example.org/report"), Ok(()));
        assert_eq!(check("https://example.org/r?channel=beta"), Ok(()));
        assert_eq!(check("http://127.0.0.1:9/r"), Ok(()));
        let long = format!("https://example.org/{}", "a".repeat(MAX_REPORT_URL_LEN));
        for (bad, says) in [
            (long.as_str(), "longer than"),
            ("https://user:pw@example.org/r", "user info"),
            ("https://example.org/r#x", "fragment"),
            ("https://example.org/a b", "space"),
            ("http://example.org/r", "--allow-insecure-http"),
            ("ftp://example.org/r", "'ftp://'"),
        ] {
            let err = check(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn spec_expansion() {
        assert_eq!(
            default_download_url("http://h:1/{VERSION}/update.toml", "A", "1.1", "A.bin"),
            "http://h:1/1.1/A.bin"
        );
        assert_eq!(
            expand_url_spec("{NAME}-{VERSION}-{OS}-{ARCH}", "a", "2"),
            format!("a-2-{}-{}", std::env::consts::OS, std::env::consts::ARCH)
        );
    }
}
