//! `payload-tools publish`, `rollout` and `refresh` against real site
//! folders: installs served by nginx from the site update themselves
//! (signed and not, from two versions behind), every refusal leaves the
//! site as it was, `--keep` never deletes an offered build or an
//! `update.toml`, rollouts re-sign with a higher sequence, and a publish
//! that fails halfway through its build leaves nothing behind.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::nginx::{Config, Nginx};
use crate::support::*;

const APP: &str = "probeapp";

/// A site folder, the port its host will listen on (it is in the builds'
/// URL spec), and keys.
struct Site {
    s: Scratch,
    port: u16,
    dir: PathBuf,
}

impl Site {
    fn new() -> Site {
        let s = Scratch::new();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = s.path("site");
        Site { s, port, dir }
    }

    fn spec(&self) -> String {
        format!("http://127.0.0.1:{}/{{VERSION}}/update.toml", self.port)
    }

    /// Packs `version` with the site's URL spec and `extra` flags.
    fn build(&self, version: &str, extra: &[&str]) -> PathBuf {
        let app = self.s.probe_app(&format!("app-{version}"), version);
        let out = self.s.path(&format!("builds/{version}/{APP}.bin"));
        let spec = self.spec();
        let mut args = vec!["--version", version, "--update-url-spec", &spec];
        args.extend_from_slice(extra);
        pack(&app, &out, &args);
        out
    }

    fn keygen(&self, name: &str) -> (String, String) {
        let base = self.s.path(name);
        let out = tools(["keygen".as_ref(), "-o".as_ref(), base.as_os_str()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let path = |suffix: &str| format!("{}.{suffix}", base.display());
        (path("key"), path("pub"))
    }

    /// Runs `payload-tools <command> --site DIR <args>`.
    fn tool(&self, command: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("payload-tools"));
        cmd.arg(command).arg("--site").arg(&self.dir).args(args);
        cmd.output().expect("run payload-tools")
    }

    fn publish(&self, build: &Path, args: &[&str]) -> Output {
        let mut all = vec![build.to_str().expect("utf8")];
        all.extend_from_slice(args);
        self.tool("publish", &all)
    }

    fn publish_ok(&self, build: &Path, args: &[&str]) -> Output {
        let out = self.publish(build, args);
        assert!(out.status.success(), "publish failed: {}", stderr(&out));
        out
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn has(&self, rel: &str) -> bool {
        self.dir.join(rel).is_file()
    }

    /// nginx serving the site on its port; `None`: the test skips.
    fn serve(&self) -> Option<Nginx> {
        let config = Config {
            port: Some(self.port),
            ..Config::default()
        };
        let nginx = Nginx::start_with(&self.dir, &self.s.path("nginx"), &config);
        if nginx.is_none() {
            skip("nginx is not installed");
        }
        nginx
    }

    /// A user's copy of the site's build of `version`.
    fn install(&self, version: &str) -> PathBuf {
        let exe = self.s.path(&format!("user/{APP}.bin"));
        let bytes = fs::read(self.dir.join(format!("{version}/{APP}.bin"))).expect("read");
        write_file(&exe, &bytes, true);
        exe
    }

    fn version_of(&self, exe: &Path) -> String {
        let out = self
            .s
            .command(exe)
            .arg("version")
            .env("AUTO_UPDATE_DISABLE", "1")
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    }
}

/// A manifest's `key = value` line's value (first match, top level first).
fn value_of(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .map(|v| v.trim_matches('"').to_owned())
}

/// The manifest's top-level `version` (the first `version =` line).
fn top_version(text: &str) -> Option<String> {
    value_of(text, "version")
}

fn sequence_of(text: &str) -> u64 {
    value_of(text, "sequence")
        .and_then(|s| s.parse().ok())
        .expect("a sequence")
}

/// The files of the site, with their bytes' CRC.
fn site_files(dir: &Path) -> Vec<(String, u32)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                files.push((format!("{rel}/"), 0));
                stack.push(path);
            } else {
                files.push((rel, crc32fast::hash(&fs::read(&path).unwrap_or_default())));
            }
        }
    }
    files.sort();
    files
}

/// Every manifest signature of `text` verifies against `public` (a
/// minisign `.pub` file), over the body's exact bytes, and names the
/// manifest's app and sequence in its trusted comment.
fn assert_signed_by(text: &str, public: &str) {
    let (body, signature) = assert_verifies(text, public);
    let comment = signature.trusted_comment().expect("trusted comment");
    assert!(
        comment.contains(&format!("app={APP} sequence={}", sequence_of(&body))),
        "{comment}"
    );
}

/// The manifest signature of `text` verifies against `public` (a minisign
/// `.pub` file) over the body's exact bytes; returns the body and the
/// signature.
pub fn assert_verifies(text: &str, public: &str) -> (String, minisign::SignatureBox) {
    let (body, section) = text
        .split_once("\n[manifest_signature]\n")
        .expect("a signature section");
    let body = format!("{body}\n");
    let key = minisign::PublicKeyBox::from_string(&fs::read_to_string(public).expect("pub"))
        .and_then(|b| b.into_public_key())
        .expect("public key");
    let signature = section
        .split("\"\"\"")
        .nth(1)
        .expect("one minisig")
        .trim_start_matches('\n');
    let signature = minisign::SignatureBox::from_string(signature).expect("a minisig");
    minisign::verify(
        &key,
        &signature,
        std::io::Cursor::new(body.as_bytes()),
        true,
        false,
        false,
    )
    .expect("the manifest's signature verifies");
    (body, signature)
}

fn update_across_the_site(signed: bool) {
    let site = Site::new();
    let (secret, public) = site.keygen("release");
    let pack_keys: &[&str] = if signed {
        &["--public-key", &public]
    } else {
        &[]
    };
    let publish_keys: &[&str] = if signed { &["--key", &secret] } else { &[] };
    site.publish_ok(&site.build("1.0", pack_keys), publish_keys);
    site.publish_ok(&site.build("1.1", pack_keys), publish_keys);
    let manifest = site.read("1.0/update.toml");
    assert_eq!(top_version(&manifest).as_deref(), Some("1.1"));
    if signed {
        assert_signed_by(&manifest, &public);
    } else {
        assert!(!manifest.contains("[manifest_signature]"));
        assert_eq!(value_of(&manifest, "app").as_deref(), Some(APP));
        assert!(value_of(&manifest, "expires").is_none());
    }
    let Some(_nginx) = site.serve() else { return };
    let exe = site.install("1.0");
    let out = site.s.run(&exe, ["version"]);
    assert_updated(&out);
    assert_eq!(site.version_of(&exe), "1.1");
}

/// The same with Python's `http.server` as the host (no ranges, no ETag:
/// the whole build is downloaded), as `make demo` serves a site.
#[test]
fn a_site_served_by_python_s_http_server_takes_an_install_to_1_1() {
    let site = Site::new();
    let (secret, public) = site.keygen("release");
    site.publish_ok(
        &site.build("1.0", &["--public-key", &public]),
        &["--key", &secret],
    );
    let exe = site.install("1.0");
    site.publish_ok(
        &site.build("1.1", &["--public-key", &public]),
        &["--key", &secret],
    );
    let Some(_server) = crate::checks::PythonServer::start_at(&site.dir, site.port) else {
        skip("python3 cannot serve here");
        return;
    };
    let out = site.s.run(&exe, ["version"]);
    assert_updated(&out);
    assert_eq!(site.version_of(&exe), "1.1");
}

#[test]
fn an_install_of_1_0_updates_to_1_1_published_after_it() {
    update_across_the_site(false);
}

#[test]
fn a_signed_install_of_1_0_updates_to_1_1_published_after_it() {
    update_across_the_site(true);
}

#[test]
fn an_install_two_versions_behind_finds_the_latest_in_its_own_folder() {
    let site = Site::new();
    for version in ["1.0", "1.1", "1.2"] {
        site.publish_ok(&site.build(version, &[]), &[]);
    }
    for version in ["1.0", "1.1", "1.2"] {
        let manifest = site.read(&format!("{version}/update.toml"));
        assert_eq!(top_version(&manifest).as_deref(), Some("1.2"), "{version}");
    }
    let Some(nginx) = site.serve() else { return };
    let exe = site.install("1.0");
    assert_updated(&site.s.run(&exe, ["version"]));
    assert_eq!(site.version_of(&exe), "1.2");
    let asked: Vec<String> = nginx.requests().into_iter().map(|r| r.path).collect();
    assert!(asked.contains(&"/1.0/update.toml".to_owned()), "{asked:?}");
}

#[test]
fn a_channel_spec_keeps_each_version_in_a_folder_of_its_own() {
    let site = Site::new();
    let spec = format!("http://127.0.0.1:{}/stable/update.toml", site.port);
    for version in ["1.0", "1.1"] {
        let app = site.s.probe_app(&format!("app-{version}"), version);
        let out = site.s.path(&format!("builds/{version}/{APP}.bin"));
        pack(
            &app,
            &out,
            &["--version", version, "--update-url-spec", &spec],
        );
        site.publish_ok(&out, &[]);
    }
    assert!(site.has(&format!("stable/1.0/{APP}.bin")));
    assert!(site.has(&format!("stable/1.1/{APP}.bin")));
    let manifest = site.read("stable/update.toml");
    assert_eq!(
        value_of(&manifest, "url"),
        Some(format!(
            "http://127.0.0.1:{}/stable/1.1/{APP}.bin",
            site.port
        ))
    );
}

/// Runs a publish that must fail: one `error:` line, a `hint:` line, and
/// the site exactly as it was.
fn assert_refused(site: &Site, out: &Output, says: &str) {
    assert!(!out.status.success(), "not refused ({says})");
    let err = stderr(out);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(says), "wanted '{says}' in: {err}");
    assert!(err.contains("hint:"), "no hint: {err}");
    let _ = site;
}

#[test]
fn every_refusal_says_why_and_leaves_the_site_as_it_was() {
    let site = Site::new();
    let (secret, public) = site.keygen("release");
    let (other_secret, _) = site.keygen("other");
    let v10 = site.build("1.0", &["--public-key", &public]);
    // The first release goes to everybody.
    let out = site.publish(&v10, &["--key", &secret, "--rollout", "10"]);
    assert_refused(&site, &out, "first release");
    assert!(
        !site.dir.exists(),
        "a refused first publish creates nothing"
    );
    site.publish_ok(&v10, &["--key", &secret]);
    let before = site_files(&site.dir);

    let v11 = site.build("1.1", &["--public-key", &public]);
    let other_app = {
        let app = site.s.probe_app("app-other", "2.0");
        let out = site.s.path("builds/other/other.bin");
        let spec = site.spec();
        pack(
            &app,
            &out,
            &[
                "--name",
                "otherapp",
                "--version",
                "2.0",
                "--update-url-spec",
                &spec,
            ],
        );
        out
    };
    let moved = {
        let app = site.s.probe_app("app-moved", "1.1");
        let out = site.s.path(&format!("builds/moved/{APP}.bin"));
        let spec = format!("http://127.0.0.1:{}/v2/{{VERSION}}/update.toml", site.port);
        pack(
            &app,
            &out,
            &[
                "--version",
                "1.1",
                "--update-url-spec",
                &spec,
                "--public-key",
                &public,
            ],
        );
        out
    };
    let unkeyed = site.build("1.2", &[]);
    let damaged = site.s.path(&format!("builds/damaged/{APP}.bin"));
    let mut bytes = fs::read(&v11).expect("read");
    let middle = bytes.len() - 4096;
    bytes[middle] ^= 0xff;
    write_file(&damaged, &bytes, true);
    let cases: Vec<(&Path, Vec<&str>, &str)> = vec![
        (&other_app, vec!["--key", &secret], "'otherapp'"),
        (&v10, vec!["--key", &secret], "not newer"),
        (&moved, vec!["--key", &secret], "URL spec"),
        (&v11, vec![], "no --key"),
        (&v11, vec!["--key", &other_secret], "none of the --key"),
        (&unkeyed, vec![], "signed"),
        (&damaged, vec!["--key", &secret], "does not verify"),
        (
            &v11,
            vec!["--key", &secret, "--rollout", "101"],
            "--rollout",
        ),
        (
            &v11,
            vec!["--key", &secret, "--base-url", "http://127.0.0.1:1/"],
            "under no base",
        ),
    ];
    for (build, args, says) in cases {
        let out = site.publish(build, &args);
        assert_refused(&site, &out, says);
        assert_eq!(site_files(&site.dir), before, "after: {says}");
    }
    // Links: a site is never followed out of itself.
    let elsewhere = site.s.path("elsewhere");
    fs::create_dir_all(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, site.dir.join("1.1")).expect("symlink");
    let out = site.publish(&v11, &["--key", &secret]);
    assert_refused(&site, &out, "symbolic link");
    assert_eq!(fs::read_dir(&elsewhere).expect("list").count(), 0);
    fs::remove_file(site.dir.join("1.1")).expect("unlink");
    let linked = Site {
        s: Scratch::new(),
        port: site.port,
        dir: site.s.path("linked-site"),
    };
    std::os::unix::fs::symlink(&site.dir, &linked.dir).expect("symlink");
    let out = linked.publish(&v11, &["--key", &secret]);
    assert_refused(&linked, &out, "symbolic link");
    assert_eq!(site_files(&site.dir), before);
    // --force moves the site to the new spec.
    site.publish_ok(&moved, &["--key", &secret, "--force"]);
    assert!(site.has(&format!("v2/1.1/{APP}.bin")));
    assert!(site.has("v2/1.1/update.toml"));
    assert_eq!(
        top_version(&site.read("1.0/update.toml")).as_deref(),
        Some("1.1")
    );
}

#[test]
fn keep_never_deletes_an_offered_build_or_an_update_toml() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &["--keep", "1"]);
    site.publish_ok(&site.build("1.1", &[]), &["--keep", "1"]);
    // 1.0 stays: were 1.1 halted, 1.0 is what installs are offered.
    assert!(site.has(&format!("1.0/{APP}.bin")));
    site.publish_ok(&site.build("1.2", &[]), &["--keep", "1", "--rollout", "5"]);
    site.publish_ok(&site.build("1.3", &[]), &["--keep", "1", "--rollout", "5"]);
    let kept = |versions: &[&'static str]| -> Vec<&'static str> {
        versions
            .iter()
            .copied()
            .filter(|v| site.has(&format!("{v}/{APP}.bin")))
            .collect()
    };
    // 1.3 is the rollout, 1.1 the stable release: both offered; 1.2 was
    // offered by the manifests just replaced (cached at a CDN, resumed
    // downloads): kept for one more publish.
    assert_eq!(kept(&["1.0", "1.1", "1.2", "1.3"]), ["1.1", "1.2", "1.3"]);
    site.publish_ok(&site.build("1.4", &[]), &["--keep", "1", "--rollout", "5"]);
    assert_eq!(
        kept(&["1.0", "1.1", "1.2", "1.3", "1.4"]),
        ["1.1", "1.3", "1.4"]
    );
    for version in ["1.0", "1.1", "1.2", "1.3", "1.4"] {
        let manifest = site.read(&format!("{version}/update.toml"));
        assert_eq!(top_version(&manifest).as_deref(), Some("1.1"), "{version}");
        assert!(manifest.contains(&format!("/1.4/{APP}.bin")), "{manifest}");
    }
    // A deleted build's signatures are not kept in the state.
    let state = site.read("onefile-site.toml");
    assert!(!state.contains("signatures = [\"untrusted"), "{state}");
}

#[test]
fn rollout_and_refresh_rewrite_and_re_sign_every_manifest() {
    let site = Site::new();
    let (secret, public) = site.keygen("release");
    let (other, _) = site.keygen("other");
    let keyed = ["--public-key", public.as_str()];
    site.publish_ok(&site.build("1.0", &keyed), &["--key", &secret]);
    site.publish_ok(
        &site.build("1.1", &keyed),
        &[
            "--key",
            &secret,
            "--rollout",
            "1",
            "--mirror",
            "http://127.0.0.1:1/m/",
        ],
    );
    let first = site.read("1.1/update.toml");
    assert_eq!(top_version(&first).as_deref(), Some("1.0"));
    assert!(
        first.contains("[rollout]") && first.contains("percent = 1.0"),
        "{first}"
    );
    assert!(first.contains("\"http://127.0.0.1:1/m/1.0/"), "{first}");
    let salt = value_of(&first, "salt");

    let mut last = sequence_of(&first);
    let mut step = |args: &[&str], check: &dyn Fn(&str)| {
        let out = site.tool("rollout", args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        for version in ["1.0", "1.1"] {
            let text = site.read(&format!("{version}/update.toml"));
            assert!(sequence_of(&text) > last, "{args:?}: the sequence goes up");
            assert_signed_by(&text, &public);
            check(&text);
        }
        last = sequence_of(&site.read("1.0/update.toml"));
    };
    step(&["--percent", "10", "--key", &secret], &|text| {
        assert!(text.contains("percent = 10.0"), "{text}");
        assert_eq!(value_of(text, "salt"), salt, "the same installs stay in");
    });
    step(&["--percent", "100", "--key", &secret], &|text| {
        assert_eq!(top_version(text).as_deref(), Some("1.1"));
        assert!(!text.contains("[rollout]"), "{text}");
    });
    step(&["--halt", "--key", &secret], &|text| {
        assert_eq!(top_version(text).as_deref(), Some("1.0"));
        assert!(
            text.contains("[rollout]") && text.contains("halted = true"),
            "{text}"
        );
    });
    step(&["--resume", "--key", &secret], &|text| {
        assert_eq!(top_version(text).as_deref(), Some("1.1"));
        assert!(!text.contains("halted"), "{text}");
    });
    // Refusals: a signed site is never re-signed by a stranger, nor
    // unsigned; a release not halted is not resumed.
    let before = site_files(&site.dir);
    for (args, says) in [
        (vec!["--percent", "50"], "no --key is given"),
        (
            vec!["--percent", "50", "--key", other.as_str()],
            "trust none of the --key given",
        ),
        (vec!["--resume", "--key", secret.as_str()], "not halted"),
    ] {
        let out = site.tool("rollout", &args);
        assert_refused(&site, &out, says);
        assert_eq!(site_files(&site.dir), before);
    }
    let body = |text: &str| -> String {
        text.split("[manifest_signature]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("sequence") && !l.starts_with("expires"))
            .collect()
    };
    let before = site.read("1.0/update.toml");
    let out = site.tool("refresh", &["--key", &secret, "--expires-in", "2d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = site.read("1.0/update.toml");
    assert!(sequence_of(&after) > sequence_of(&before));
    assert_ne!(value_of(&after, "expires"), value_of(&before, "expires"));
    assert_eq!(body(&after), body(&before), "nothing else changes");
    assert_signed_by(&after, &public);
}

#[test]
fn a_publish_leaves_no_temporary_file_and_a_failed_one_leaves_the_site_as_it_was() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let before = site_files(&site.dir);
    assert!(
        before.iter().all(|(name, _)| !name.contains(".tmp-")),
        "{before:?}"
    );
    let v11 = site.build("1.1", &[]);
    // The build's copy fails halfway through (a full disk).
    let mut cmd = Command::new(bin("payload-tools"));
    cmd.arg("publish").arg(&v11).arg("--site").arg(&site.dir);
    limit_file_size(&mut cmd, fs::metadata(&v11).expect("size").len() / 2);
    let out = cmd.output().expect("run");
    assert!(!out.status.success(), "{}", stderr(&out));
    assert_eq!(site_files(&site.dir), before, "{}", stderr(&out));
    // A manifest path held by a folder: refused before anything is written.
    fs::create_dir_all(site.dir.join("1.1/update.toml")).expect("mkdir");
    let before = site_files(&site.dir);
    let out = site.publish(&v11, &[]);
    assert_refused(&site, &out, "in the way");
    assert_eq!(site_files(&site.dir), before);
}

#[test]
fn mirrors_are_remembered_until_replaced_and_keys_rotate_in_one_release() {
    let site = Site::new();
    let (old_secret, old_public) = site.keygen("old");
    let (new_secret, new_public) = site.keygen("new");
    let mirror = |n: u16| format!("http://127.0.0.1:{n}/");
    let v10 = site.build("1.0", &["--public-key", &old_public]);
    site.publish_ok(&v10, &["--key", &old_secret, "--mirror", &mirror(1)]);
    // 1.1 trusts both keys and is signed by both.
    let v11 = site.build(
        "1.1",
        &["--public-key", &old_public, "--public-key", &new_public],
    );
    site.publish_ok(&v11, &["--key", &old_secret, "--key", &new_secret]);
    let text = site.read("1.0/update.toml");
    assert!(
        text.contains(&format!("\"{}1.1/{APP}.bin\"", mirror(1))),
        "{text}"
    );
    assert!(text.contains("signatures = ["), "{text}");
    assert_eq!(text.matches("trusted comment: onefile manifest").count(), 2);
    assert_signed_by(&text, &old_public);
    // 1.2 trusts the new key alone (1.0's installs still need the old
    // one); --mirror replaces the list.
    let v12 = site.build("1.2", &["--public-key", &new_public]);
    site.publish_ok(
        &v12,
        &[
            "--key",
            &old_secret,
            "--key",
            &new_secret,
            "--mirror",
            &mirror(2),
            "--rollout",
            "50",
            "--critical",
        ],
    );
    let text = site.read("1.0/update.toml");
    assert!(!text.contains(&mirror(1)), "{text}");
    assert!(
        text.contains(&format!("\"{}1.2/{APP}.bin\"", mirror(2))),
        "{text}"
    );
    assert!(text.contains("critical = true"), "{text}");
    assert_signed_by(&text, &old_public);
    // The critical flag is cleared as it was set.
    let out = site.tool(
        "rollout",
        &["--not-critical", "--key", &old_secret, "--key", &new_secret],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!site.read("1.0/update.toml").contains("critical = true"));
    let out = site.tool("refresh", &["--key", &old_secret]);
    assert_refused(&site, &out, "installs of 1.2 trust none of the --key given");
}

#[test]
fn a_damaged_or_hostile_site_state_is_refused_and_nothing_is_written() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let v11 = site.build("1.1", &[]);
    let state = site.dir.join("onefile-site.toml");
    let good = fs::read_to_string(&state).expect("state");
    let outside = site.s.path("outside.bin");
    write_file(&outside, b"not the site's", false);
    for bad in [
        "format = [".to_owned(),
        good.replace("path = \"1.0/", "path = \"../outside.bin/../1.0/"),
        good.replace("percent = 100.0", "percent = nan"),
        good.replace("format = 1", "format = 2"),
        format!("{good}\nunknown = 1\n"),
        "x".repeat(5 << 20),
    ] {
        fs::write(&state, &bad).expect("write");
        let before = site_files(&site.dir);
        let out = site.publish(&v11, &["--keep", "1"]);
        assert_refused(&site, &out, "is damaged");
        assert_eq!(site_files(&site.dir), before);
        let out = site.tool("rollout", &["--percent", "5"]);
        assert_refused(&site, &out, "is damaged");
    }
    assert!(outside.is_file());
}

/// The releases the site's state records, in order.
fn state_versions(site: &Site) -> Vec<String> {
    site.read("onefile-site.toml")
        .lines()
        .filter(|l| l.starts_with("version = "))
        .map(|l| {
            l.trim_start_matches("version = ")
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

#[test]
fn two_publishes_at_once_lose_no_release_and_share_no_sequence() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let builds: Vec<PathBuf> = ["1.1", "1.2"].iter().map(|v| site.build(v, &[])).collect();
    let children: Vec<_> = builds
        .iter()
        .map(|build| {
            Command::new(bin("payload-tools"))
                .arg("publish")
                .arg(build)
                .arg("--site")
                .arg(&site.dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn publish")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let published: Vec<&str> = ["1.1", "1.2"]
        .into_iter()
        .zip(&outs)
        .filter(|(_, out)| out.status.success())
        .map(|(v, _)| v)
        .collect();
    // One after the other: 1.1 then 1.2 (both), or 1.2 then 1.1 (refused:
    // not newer). Never both from the same state.
    let mut want = vec!["1.0".to_owned()];
    want.extend(published.iter().map(|v| (*v).to_owned()));
    assert_eq!(
        state_versions(&site),
        want,
        "{}\n{}",
        stderr(&outs[0]),
        stderr(&outs[1])
    );
    for (version, out) in ["1.1", "1.2"].into_iter().zip(&outs) {
        if !out.status.success() {
            assert!(stderr(out).contains("not newer"), "{}", stderr(out));
            assert!(!site.has(&format!("{version}/update.toml")));
        }
    }
    for version in &want {
        let manifest = site.read(&format!("{version}/update.toml"));
        assert_eq!(top_version(&manifest).as_deref(), Some("1.2"), "{version}");
    }
    if published.len() == 2 {
        let sequence_of_run = |out: &Output| -> String {
            let err = stderr(out);
            let at = err.find("sequence ").expect("a sequence");
            err[at..].split(',').next().unwrap_or_default().to_owned()
        };
        assert_ne!(sequence_of_run(&outs[0]), sequence_of_run(&outs[1]));
    }
}

/// The top-level `signature` of a manifest (the build signature older
/// stubs read), as minisign text.
fn top_signature(text: &str) -> String {
    let at = text.find("\nsignature = ").expect("a signature") + "\nsignature = ".len();
    let rest = &text[at..];
    for quote in ["\"\"\"", "'''"] {
        if let Some(inner) = rest.strip_prefix(quote) {
            let end = inner.find(quote).expect("closed");
            return inner[..end].trim_start_matches('\n').to_owned();
        }
    }
    let inner = rest.strip_prefix('"').expect("a string");
    let end = inner.find('"').expect("closed");
    inner[..end].replace("\\n", "\n")
}

#[test]
fn a_1_0_install_still_updates_after_a_key_rotation_done_the_documented_way() {
    let site = Site::new();
    let (old_secret, old_public) = site.keygen("old");
    let (new_secret, new_public) = site.keygen("new");
    let both = ["--public-key", &old_public, "--public-key", &new_public];
    site.publish_ok(
        &site.build("1.0", &["--public-key", &old_public]),
        &["--key", &old_secret],
    );
    site.publish_ok(
        &site.build("1.1", &both),
        &["--key", &old_secret, "--key", &new_secret],
    );
    let v12 = site.build("1.2", &["--public-key", &new_public]);
    // The stranding way: 1.2 signed by the new key alone, which no
    // install of 1.0 trusts.
    let before = site_files(&site.dir);
    let out = site.publish(&v12, &["--key", &new_secret]);
    assert_refused(&site, &out, "installs of 1.0 trust none of the --key given");
    assert_eq!(site_files(&site.dir), before);
    // The documented way: both keys, in any order; the one 1.0 trusts
    // signs first (`signature`, all that older stubs read).
    site.publish_ok(&v12, &["--key", &new_secret, "--key", &old_secret]);
    let manifest = site.read("1.0/update.toml");
    assert_eq!(top_version(&manifest).as_deref(), Some("1.2"));
    assert_signed_by(&manifest, &old_public);
    let key = minisign::PublicKeyBox::from_string(&fs::read_to_string(&old_public).expect("pub"))
        .and_then(|b| b.into_public_key())
        .expect("public key");
    let signature =
        minisign::SignatureBox::from_string(&top_signature(&manifest)).expect("a minisig");
    let build = fs::File::open(site.dir.join(format!("1.2/{APP}.bin"))).expect("open");
    minisign::verify(&key, &signature, build, true, false, false)
        .expect("`signature` is by the key 1.0 trusts");
    // Dropping the old key later strands 1.0: refused, in one step or two.
    for keys in [
        vec!["--key", new_secret.as_str()],
        vec!["--key", new_secret.as_str(), "--key", new_secret.as_str()],
    ] {
        let out = site.tool("refresh", &keys);
        assert_refused(&site, &out, "installs of 1.0 trust none");
    }
    let (rogue, _) = site.keygen("rogue");
    let out = site.tool(
        "refresh",
        &["--key", &old_secret, "--key", &new_secret, "--key", &rogue],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = site.tool("refresh", &["--key", &rogue]);
    assert_refused(&site, &out, "trust none of the --key given");
    let Some(_nginx) = site.serve() else { return };
    let exe = site.install("1.0");
    assert_updated(&site.s.run(&exe, ["version"]));
    assert_eq!(site.version_of(&exe), "1.2");
    // On purpose, with --drop-key.
    let out = site.tool("refresh", &["--key", &new_secret, "--drop-key"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn links_anywhere_in_the_site_are_refused_before_anything_is_written() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let v11 = site.build("1.1", &[]);
    let secret_dir = site.s.path("private");
    fs::create_dir_all(&secret_dir).expect("mkdir");
    write_file(&secret_dir.join("passwd"), b"root:x:0:0", false);
    for (link, target) in [
        ("leak", secret_dir.clone()),
        ("1.0/passwd.txt", secret_dir.join("passwd")),
    ] {
        std::os::unix::fs::symlink(&target, site.dir.join(link)).expect("symlink");
        let before = site_files(&site.dir);
        let out = site.publish(&v11, &[]);
        assert_refused(&site, &out, "symbolic link");
        assert_eq!(site_files(&site.dir), before);
        let out = site.tool("rollout", &["--percent", "100"]);
        assert_refused(&site, &out, "symbolic link");
        fs::remove_file(site.dir.join(link)).expect("unlink");
    }
    // A hard link is the same bytes under another name: said, not refused.
    fs::hard_link(secret_dir.join("passwd"), site.dir.join("1.0/passwd.txt")).expect("link");
    let out = site.publish_ok(&v11, &[]);
    assert!(
        stderr(&out).contains("passwd.txt' has other names"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_build_name_a_url_would_not_carry_as_it_is_is_refused() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let before = site_files(&site.dir);
    let v11 = site.build("1.1", &[]);
    for name in ["my app.bin", "caf\u{e9}.bin", "a\tb.bin"] {
        let renamed = site.s.path(&format!("odd/{name}"));
        fs::create_dir_all(renamed.parent().expect("parent")).expect("mkdir");
        fs::copy(&v11, &renamed).expect("copy");
        let out = site.publish(&renamed, &[]);
        assert_refused(&site, &out, "a URL would not carry");
        assert_eq!(site_files(&site.dir), before);
    }
    // A base URL with a space is refused too.
    let out = site.publish(&v11, &["--base-url", "http://127.0.0.1:1/a b/"]);
    assert_refused(&site, &out, "--base-url");
}

#[test]
fn moving_to_a_base_that_no_longer_serves_old_versions_manifests_is_refused() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let app = site.s.probe_app("app-moved", "1.1");
    let moved = site.s.path(&format!("builds/moved/{APP}.bin"));
    let spec = format!("http://localhost:{}/{{VERSION}}/update.toml", site.port);
    pack(
        &app,
        &moved,
        &["--version", "1.1", "--update-url-spec", &spec],
    );
    let base = format!("http://localhost:{}/", site.port);
    let before = site_files(&site.dir);
    let out = site.publish(&moved, &["--force", "--base-url", &base]);
    assert_refused(&site, &out, "installs of 1.0 fetch");
    assert_eq!(site_files(&site.dir), before);
    // The old base kept as a mirror (another host serving this folder):
    // 1.0's manifest is still written.
    let old = format!("http://127.0.0.1:{}/", site.port);
    site.publish_ok(&moved, &["--force", "--base-url", &base, "--mirror", &old]);
    assert_eq!(
        top_version(&site.read("1.0/update.toml")).as_deref(),
        Some("1.1")
    );
}

#[test]
fn two_files_of_the_site_at_one_path_are_refused() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let before = site_files(&site.dir);
    let v11 = site.build("1.1", &[]);
    let named = site.s.path("named/update.toml");
    fs::create_dir_all(named.parent().expect("parent")).expect("mkdir");
    fs::copy(&v11, &named).expect("copy");
    let out = site.publish(&named, &[]);
    assert_refused(&site, &out, "would be both");
    assert_eq!(site_files(&site.dir), before);
    // A channel spec whose manifest is the state file.
    let other = Site::new();
    let spec = format!("http://127.0.0.1:{}/onefile-site.toml", other.port);
    let app = other.s.probe_app("app", "1.0");
    let out_path = other.s.path(&format!("builds/{APP}.bin"));
    pack(
        &app,
        &out_path,
        &["--version", "1.0", "--update-url-spec", &spec],
    );
    let out = other.publish(&out_path, &[]);
    assert_refused(&other, &out, "would be both");
    assert!(!other.dir.exists());
}

#[test]
fn lifetimes_sequences_and_shares_are_taken_as_given_or_refused() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    site.publish_ok(&site.build("1.1", &[]), &["--rollout", "1"]);
    let before = site_files(&site.dir);
    for (args, says) in [
        (vec!["--percent", "99.996"], "at most two decimals"),
        (vec!["--percent", "0.001"], "at most two decimals"),
        (vec!["--percent=-0"], "at most two decimals"),
        (vec!["--percent", "1e1"], "at most two decimals"),
        (
            vec!["--percent", "5", "--expires-in", "0"],
            "expired already",
        ),
        (
            vec!["--percent", "5", "--expires-in", "99999999999d"],
            "--expires-in",
        ),
        (vec!["--percent", "5", "--expires-in", "400d"], "366 days"),
    ] {
        let out = site.tool("rollout", &args);
        assert_refused(&site, &out, says);
        assert_eq!(site_files(&site.dir), before);
    }
    let out = site.tool("rollout", &["--percent", "12.5", "--expires-in", "366d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(site.read("1.0/update.toml").contains("percent = 12.5"));
    // A hand-edited sequence beyond what a TOML integer or the clock allow.
    let state = site.dir.join("onefile-site.toml");
    let text = fs::read_to_string(&state).expect("state");
    let line = text
        .lines()
        .find(|l| l.starts_with("last_sequence = "))
        .expect("a sequence")
        .to_owned();
    for huge in ["9223372036854775807", "18446744073709551615"] {
        fs::write(
            &state,
            text.replace(&line, &format!("last_sequence = {huge}")),
        )
        .expect("write");
        let out = site.tool("rollout", &["--percent", "20"]);
        assert_refused(&site, &out, "is damaged");
    }
}

#[test]
fn each_release_draws_its_own_salt() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    site.publish_ok(&site.build("1.1", &[]), &["--rollout", "5"]);
    let first = value_of(&site.read("1.0/update.toml"), "salt").expect("a salt");
    site.publish_ok(&site.build("1.2", &[]), &["--rollout", "5"]);
    let second = value_of(&site.read("1.0/update.toml"), "salt").expect("a salt");
    assert_eq!(first.len(), 32);
    assert_ne!(first, second);
}

#[test]
fn a_killed_publish_s_temporary_file_goes_at_the_next_publish() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let stale = site
        .dir
        .join(format!("1.0/.{APP}.bin.tmp-4242-0123456789abcdef"));
    let other = site.dir.join("1.0/.notes.tmp-keep");
    write_file(&stale, b"half a build", true);
    write_file(&other, b"not ours", false);
    site.publish_ok(&site.build("1.1", &[]), &[]);
    assert!(!stale.exists(), "stale temporary file deleted");
    assert!(other.exists(), "a file of another naming is left alone");
}

#[test]
fn a_state_the_loader_would_refuse_is_never_written() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let state = site.dir.join("onefile-site.toml");
    let text = fs::read_to_string(&state).expect("state");
    let (head, first) = text.split_once("[[release]]").expect("a release");
    // Padding releases (old, builds deleted) up to just under the limit.
    let padding = first
        .replace("version = \"1.0\"", "version = \"0.0.N\"")
        .replace("path = \"1.0/", "path = \"0.0.N/")
        .replace("kept = true", "kept = false");
    let pad_spec = format!(
        "url_specs = [\"http://127.0.0.1:{}/{}/update.toml\"]",
        site.port,
        "p".repeat(900)
    );
    let padding = padding
        .lines()
        .map(|l| {
            if l.starts_with("url_specs") {
                pad_spec.as_str()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut text = head.to_owned();
    let limit = 4 << 20;
    let mut n = 0;
    while text.len() + padding.len() + first.len() + 64 < limit {
        n += 1;
        text.push_str("[[release]]");
        text.push_str(&padding.replace("0.0.N", &format!("0.0.{n}")));
        text.push('\n');
    }
    text.push_str("[[release]]");
    text.push_str(first);
    fs::write(&state, &text).expect("write");
    let before = site_files(&site.dir);
    let out = site.publish(&site.build("1.1", &[]), &[]);
    assert_refused(&site, &out, "would be larger than");
    assert_eq!(site_files(&site.dir), before);
}

#[test]
fn rollouts_at_0_and_100_percent_and_a_halt_reach_a_real_install() {
    let site = Site::new();
    let (secret, public) = site.keygen("release");
    let keyed = ["--public-key", public.as_str()];
    let key = ["--key", secret.as_str()];
    site.publish_ok(&site.build("1.0", &keyed), &key);
    site.publish_ok(
        &site.build("1.1", &keyed),
        &["--key", &secret, "--rollout", "0"],
    );
    let Some(nginx) = site.serve() else { return };
    let exe = site.install("1.0");
    let rollout = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&key);
        let out = site.tool("rollout", &all);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let fetched = |path: &str| nginx.requests().iter().any(|r| r.path == path);
    // 0%: the install reads its manifest and stays.
    let out = site.s.run(&exe, ["version"]);
    assert!(fetched("/1.0/update.toml"), "{}", stderr(&out));
    assert!(!fetched(&format!("/1.1/{APP}.bin")), "{}", stderr(&out));
    assert_eq!(site.version_of(&exe), "1.0");
    // 100%: it moves.
    rollout(&["--percent", "100"]);
    assert_updated(&site.s.run(&exe, ["version"]));
    assert_eq!(site.version_of(&exe), "1.1");
    // 1.2 at 100%, halted before the install checks: it stays on 1.1.
    site.publish_ok(&site.build("1.2", &keyed), &key);
    rollout(&["--halt"]);
    let out = site.s.run(&exe, ["version"]);
    assert!(!fetched(&format!("/1.2/{APP}.bin")), "{}", stderr(&out));
    assert_eq!(site.version_of(&exe), "1.1");
    // Resumed: it moves.
    rollout(&["--resume"]);
    assert_updated(&site.s.run(&exe, ["version"]));
    assert_eq!(site.version_of(&exe), "1.2");
}

/// A host that derives its validators from a file's time in seconds and
/// its size (nginx: `ETag`, `Last-Modified`) must see every rewrite of a
/// manifest as a change, or it answers `304` to installs that settled on
/// the one before: each rewrite is dated a later second than the last,
/// however quickly they follow each other.
#[test]
fn every_rewrite_of_a_manifest_is_dated_a_later_second() {
    let site = Site::new();
    site.publish_ok(&site.build("1.0", &[]), &[]);
    let b11 = site.build("1.1", &[]);
    let seconds = |site: &Site| {
        fs::metadata(site.dir.join("1.0/update.toml"))
            .and_then(|m| m.modified())
            .expect("mtime")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    };
    let mut last = seconds(&site);
    site.publish_ok(&b11, &["--rollout", "10"]);
    for args in [
        &["--percent", "20"][..],
        &["--percent", "30"],
        &["--halt"],
        &["--resume"],
    ] {
        let now = seconds(&site);
        assert!(now > last, "{args:?}: {now} after {last}");
        last = now;
        let out = site.tool("rollout", args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert!(seconds(&site) > last);
}
