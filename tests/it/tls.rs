//! Self-update over real HTTPS: nginx with TLS on 127.0.0.1, certificates
//! made for each test by the `openssl` command in its scratch folder, and
//! the test's CA trusted through `SSL_CERT_FILE` only. On Linux the
//! updater's platform verifier takes its roots from `rustls-native-certs`,
//! which reads `SSL_CERT_FILE` / `SSL_CERT_DIR` when set *instead of* the
//! system store; nothing here touches the system trust store.
//!
//! - `update.toml`, the build's end (`Range: bytes=-N`) and the download;
//! - a download cut short by the server, resumed over https;
//! - redirects: https to http refused (for `update.toml` and for the
//!   download), https to https followed;
//! - a certificate for another name, an expired one, one from an unknown
//!   CA and one from a CA posing under the trusted CA's name: refused,
//!   traced, nothing installed, while the same publication behind a good
//!   certificate installs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::nginx::{self, Config, Logged, Nginx, Tls};
use crate::server::{Route, Server};
use crate::support::*;

const NAME: &str = "TlsUpdateTest";
const BIN: &str = "TlsUpdateTest.bin";

/// A certificate authority made for one test, by the `openssl` command.
struct Ca {
    dir: PathBuf,
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
enum Validity {
    /// From now, for two days.
    Current,
    /// Only in January 2020.
    Expired,
}

impl Ca {
    /// A new CA called `name` in `dir`. `None` when `openssl` is missing.
    fn new(dir: &Path, name: &str) -> Option<Ca> {
        let present = Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            return None;
        }
        fs::create_dir_all(dir).expect("mkdir");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        // `openssl ca`, unlike `openssl x509`, can date a certificate in
        // the past; it keeps its records in these files.
        fs::write(dir.join("index.txt"), "").expect("write");
        fs::write(dir.join("serial"), "1000\n").expect("write");
        fs::write(
            dir.join("ca.cnf"),
            "[ca]\ndefault_ca = here\n\
             [here]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
             default_md = sha256\npolicy = any\nunique_subject = no\n\
             [any]\ncommonName = supplied\n",
        )
        .expect("write");
        Some(Ca {
            dir: dir.to_owned(),
        })
    }

    /// The CA's certificate (PEM), what `SSL_CERT_FILE` points to.
    fn pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate `leaf` for the names `san` (`IP:127.0.0.1`,
    /// `DNS:example.org`), signed by this CA.
    fn issue(&self, leaf: &str, san: &str, validity: Validity) -> Tls {
        let key = format!("{leaf}.key");
        let csr = format!("{leaf}.csr");
        let ext = format!("{leaf}.ext");
        let cert = format!("{leaf}.pem");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={leaf}"),
            ],
        );
        fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName = {san}\nbasicConstraints = CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
            ),
        )
        .expect("write");
        let mut args = vec![
            "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in",
            &csr, "-out", &cert, "-notext", "-extfile", &ext,
        ];
        match validity {
            Validity::Current => args.extend(["-days", "2"]),
            Validity::Expired => args.extend([
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200131000000Z",
            ]),
        }
        openssl(&self.dir, &args);
        Tls {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        stderr(&out)
    );
}

/// The test's CA and a certificate for 127.0.0.1 signed by it. `None`
/// (the test is skipped) without `openssl`.
fn trusted(s: &Scratch) -> Option<(Ca, Tls)> {
    let Some(ca) = Ca::new(&s.path("pki/ca"), "onefile test CA") else {
        skip("the openssl command is not installed (make deps installs it)");
        return None;
    };
    let tls = ca.issue("server", "IP:127.0.0.1", Validity::Current);
    Some((ca, tls))
}

/// nginx over TLS serving `root`, or `None` (the test is skipped).
fn https(s: &Scratch, work: &str, root: &Path, config: Config) -> Option<Nginx> {
    if let Some(reason) = nginx::unavailable(true) {
        skip(reason);
        return None;
    }
    fs::create_dir_all(root).expect("mkdir");
    Nginx::start_with(root, &s.path(work), &config)
}

fn serving(tls: &Tls) -> Config {
    Config {
        tls: Some(tls.clone()),
        ..Config::default()
    }
}

/// Packs `version` of the probe app (plus `prepare`'s files) with the
/// update URL spec `spec` into `out`, and returns its bytes.
fn build(s: &Scratch, version: &str, spec: &str, out: &Path, prepare: impl Fn(&Path)) -> Vec<u8> {
    let app = s.probe_app(&format!("app-{version}"), version);
    prepare(&app);
    pack(
        &app,
        out,
        &[
            "--name",
            NAME,
            "--version",
            version,
            "--update-url-spec",
            spec,
        ],
    );
    fs::read(out).expect("read")
}

/// Writes at `toml` the `update.toml` that announces `exe`, downloaded
/// from `url`.
fn announce(exe: &Path, url: &str, toml: &Path) {
    fs::create_dir_all(toml.parent().expect("parent")).expect("mkdir");
    let out = tools([
        "update-toml".as_ref(),
        exe.as_os_str(),
        "--url".as_ref(),
        url.as_ref(),
        "-o".as_ref(),
        toml.as_os_str(),
    ]);
    assert!(out.status.success(), "update-toml: {}", stderr(&out));
}

/// A command for the packed `exe` that trusts `ca` (through
/// `SSL_CERT_FILE`) and no other root, or the system's store when `None`.
fn command(s: &Scratch, exe: &Path, ca: Option<&Path>) -> Command {
    let mut cmd = s.command(exe);
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    cmd
}

fn run(s: &Scratch, exe: &Path, ca: Option<&Path>, args: &[&str]) -> Output {
    with_background_traces(command(s, exe, ca).args(args).output().expect("run"))
}

/// The run printed the trace `Cannot fetch '<url>': <reason>.` with a
/// reason containing `reason`, and installed nothing.
fn assert_refused(out: &Output, url: &str, reason: &str) {
    assert_eq!(stdout(out), "1.0\n", "the app ran: {}", stderr(out));
    let traces = update_traces(out);
    let prefix = format!("Cannot fetch '{url}': ");
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with(&prefix) && t.contains(reason)),
        "no trace {prefix:?} with {reason:?}:\n{}",
        stderr(out)
    );
    assert!(!traces.iter().any(|t| t == "Updated."), "{traces:#?}");
}

/// `exe` is still `bytes`, alone in its folder but for the build an
/// update replaced, kept for a rollback while the new one is on probation.
fn assert_untouched(exe: &Path, bytes: &[u8]) {
    assert!(fs::read(exe).expect("read") == bytes, "executable changed");
    let dir = exe.parent().expect("dir");
    let previous = dir.join(format!(".{BIN}.previous"));
    for entry in fs::read_dir(dir).expect("list").flatten() {
        if entry.path() == previous {
            assert!(fs::read(&previous).expect("read") != bytes, "{previous:?}");
            continue;
        }
        assert_eq!(entry.path(), exe, "stray file");
    }
}

/// The first run trusts only the system's store, which does not know the
/// test's CA: refused, nothing installed, nginx served nothing; so is a run
/// whose `SSL_CERT_FILE` cannot be read. The same run trusting the CA
/// fetches `update.toml`, the end of 1.1 (a 206 for `bytes=-N`, with which
/// the payload is checked while it downloads) and 1.1 itself, all over
/// https, and installs it; the next launch finds 1.1 current.
#[test]
fn update_toml_the_end_and_the_download_over_https() {
    let s = Scratch::new();
    let Some((ca, tls)) = trusted(&s) else { return };
    let site = s.path("site");
    let Some(nginx) = https(&s, "nginx", &site, serving(&tls)) else {
        return;
    };
    let spec = nginx.url("/{VERSION}/update.toml");
    let v10 = build(&s, "1.0", &spec, &site.join(format!("1.0/{BIN}")), |_| {});
    let v11 = build(&s, "1.1", &spec, &site.join(format!("1.1/{BIN}")), |_| {});
    let url11 = nginx.url(&format!("/1.1/{BIN}"));
    for at in ["1.0", "1.1"] {
        announce(
            &site.join(format!("1.1/{BIN}")),
            &url11,
            &site.join(format!("{at}/update.toml")),
        );
    }
    let exe = s.path(&format!("user/{BIN}"));
    write_file(&exe, &v10, true);
    let info = nginx.url("/1.0/update.toml");

    let out = run(&s, &exe, None, &["version"]);
    assert_refused(&out, &info, "UnknownIssuer");
    assert_untouched(&exe, &v10);
    assert_eq!(nginx.requests(), [], "no request got past the handshake");
    // The failed check backs off: the next launch stands for one after it.
    let_time_pass(&s.cache());
    // A trust file that cannot be read leaves no root at all: refused too,
    // with no fall back to the system's store.
    let out = run(&s, &exe, Some(&s.path("missing.pem")), &["version"]);
    assert_refused(&out, &info, "No CA certificates were loaded");
    assert_untouched(&exe, &v10);
    let_time_pass(&s.cache());

    // The app runs until the update is ready: the launcher does it all,
    // none of it is handed off (and fetched again) at the app's exit, which
    // the request log below would show.
    let seen = s.path("status-seen");
    let out = run(
        &s,
        &exe,
        Some(&ca.pem()),
        &["watch-status", seen.to_str().expect("utf8"), "120"],
    );
    let traces = update_traces(&out);
    for want in [
        format!("Expanded info URL to '{info}'."),
        format!("URL to check '{url11}'."),
        "Checked the payload while it downloaded.".to_owned(),
        "Updated.".to_owned(),
    ] {
        assert!(traces.contains(&want), "no {want:?}:\n{}", stderr(&out));
    }
    assert!(fs::read(&exe).expect("read") == v11, "1.1 installed");
    let toml_len = fs::metadata(site.join("1.0/update.toml"))
        .expect("stat")
        .len();
    let requests = nginx.requests();
    let path11 = format!("/1.1/{BIN}");
    assert_eq!(
        requests[0],
        Logged {
            path: "/1.0/update.toml".into(),
            status: 200,
            sent: toml_len,
            range: None
        }
    );
    assert!(
        requests[1].path == path11
            && requests[1].status == 206
            && requests[1]
                .range
                .as_deref()
                .is_some_and(|r| r.starts_with("bytes=-")),
        "the end of the build: {requests:#?}"
    );
    // Then what changed, by ranges over https: less than the whole build.
    let rest = &requests[2..];
    assert!(
        !rest.is_empty()
            && rest.iter().all(|r| r.path == path11
                && r.status == 206
                && r.range
                    .as_deref()
                    .is_some_and(|r| !r.starts_with("bytes=-"))),
        "{requests:#?}"
    );
    let sent: u64 = rest.iter().map(|r| r.sent).sum();
    assert!(sent < v11.len() as u64 / 2, "{sent} of {}", v11.len());

    let out = run(&s, &exe, Some(&ca.pem()), &["version"]);
    assert_eq!(stdout(&out), "1.1\n");
    assert!(
        update_traces(&out).contains(&format!("CRC32 {url11} matches already.")),
        "{}",
        stderr(&out)
    );
    assert_untouched(&exe, &v11);
}

/// nginx is killed while it sends what changed in 1.1 (slowly: everything
/// but the end of a build is rate limited); the partial build is kept, with
/// nginx's ETag. nginx restarted on the same port, the next launch
/// assembles the rest from the start of the part the kept bytes end in,
/// with ranges and `If-Range`, over https, and installs.
#[test]
fn a_download_cut_short_resumes_over_https() {
    let s = Scratch::new();
    let Some((ca, tls)) = trusted(&s) else { return };
    let site = s.path("site");
    let limited = Config {
        // Everything but the end of a build, which the updater fetches first.
        http: "map $http_range $onefile_rate { '~^bytes=-' 0; default 256k; }".into(),
        server: "limit_rate $onefile_rate;".into(),
        ..serving(&tls)
    };
    let Some(nginx) = https(&s, "nginx", &site, limited.clone()) else {
        return;
    };
    let spec = nginx.url("/{VERSION}/update.toml");
    let v10 = build(&s, "1.0", &spec, &site.join(format!("1.0/{BIN}")), |_| {});
    // Incompressible, so that the build takes seconds at the rate limit.
    let v11 = build(&s, "1.1", &spec, &site.join(format!("1.1/{BIN}")), |app| {
        write_file(&app.join("blob"), &noise(3 << 20, 11), false);
    });
    let url11 = nginx.url(&format!("/1.1/{BIN}"));
    announce(
        &site.join(format!("1.1/{BIN}")),
        &url11,
        &site.join("1.0/update.toml"),
    );
    let exe = s.path(&format!("user/{BIN}"));
    write_file(&exe, &v10, true);

    // The app runs for 4 s; nginx dies once some of 1.1 is on disk.
    let child = command(&s, &exe, Some(&ca.pem()))
        .args(["version", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while partial_len(&exe) < 256 * 1024 {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = nginx.port;
    nginx.kill();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stdout(&out), "1.0\n");
    let traces = update_traces(&out);
    assert!(
        traces.iter().any(|t| {
            t.starts_with(&format!(
                "Incremental update failed: Download of '{url11}' failed: "
            )) && t.contains("(kept for resuming).")
        }),
        "{}",
        stderr(&out)
    );
    assert!(fs::read(&exe).expect("read") == v10, "executable changed");
    let kept = partial_len(&exe);
    assert!(kept > 0 && kept < v11.len() as u64, "kept {kept} bytes");

    let nginx = https(
        &s,
        "nginx",
        &site,
        Config {
            port: Some(port),
            ..serving(&tls)
        },
    )
    .expect("nginx again");
    // The app lives until the update is done: the resume is the launcher's.
    let seen = s.path("status-seen");
    let seen = seen.to_str().expect("utf8");
    let out = run(&s, &exe, Some(&ca.pem()), &["watch-status", seen, "60"]);
    let traces = update_traces(&out);
    let resumed_at = traces
        .iter()
        .find_map(|t| t.strip_prefix("Resuming the incremental update at byte "))
        .and_then(|t| t.strip_suffix('.'))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no resume:\n{}", stderr(&out)));
    assert!(resumed_at >= 256 * 1024, "resumed at {resumed_at}");
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_untouched(&exe, &v11);
    let requests = nginx.requests();
    assert!(
        requests.iter().any(|r| r.status == 206
            && r.range
                .as_deref()
                .is_some_and(|r| r.starts_with(&format!("bytes={resumed_at}-")))),
        "a range from {resumed_at} in {requests:#?}"
    );
    assert!(
        requests.iter().all(|r| r.range.as_deref().is_none_or(|r| {
            r.starts_with("bytes=-")
                || r.strip_prefix("bytes=")
                    .and_then(|r| r.split('-').next()?.parse::<u64>().ok())
                    .is_some_and(|start| start >= resumed_at)
        })),
        "nothing before {resumed_at} fetched again: {requests:#?}"
    );
}

/// Bytes of a partial download next to `exe`: the largest file there but
/// the executable (whatever the updater names it).
fn partial_len(exe: &Path) -> u64 {
    fs::read_dir(exe.parent().expect("dir"))
        .expect("list")
        .flatten()
        .filter(|e| e.path() != exe)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// An https server redirecting to http on 127.0.0.1 (where plain http is
/// otherwise allowed, and a server is ready with the real `update.toml`
/// and build) is refused, for `update.toml` and for the download, and
/// traced; the plain server sees no request. The same redirects to https
/// are followed and install.
#[test]
fn a_redirect_from_https_to_http_is_refused() {
    let s = Scratch::new();
    let Some((ca, tls)) = trusted(&s) else { return };
    let site = s.path("site");
    let plain = Server::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let redirects = Config {
        server: format!(
            "location ~ ^/to-http/(.*)$ {{ return 302 http://127.0.0.1:{http}/$1; }}\n\
             location ~ ^/to-https/(.*)$ {{ return 302 https://127.0.0.1:{port}/$1; }}",
            http = plain.port
        ),
        port: Some(port),
        ..serving(&tls)
    };
    let Some(nginx) = https(&s, "nginx", &site, redirects) else {
        return;
    };
    let v11 = build(
        &s,
        "1.1",
        &nginx.url("/c/{VERSION}/update.toml"),
        &site.join(format!("1.1/{BIN}")),
        |_| {},
    );
    let direct = nginx.url(&format!("/1.1/{BIN}"));
    let toml = |at: &str, url: &str| {
        let path = site.join(format!("{at}/1.0/update.toml"));
        announce(&site.join(format!("1.1/{BIN}")), url, &path);
        fs::read(path).expect("read")
    };
    // What plain http would deliver, were the redirect followed.
    plain.route("/a/1.0/update.toml", Route::file(toml("a", &direct)));
    plain.route(&format!("/1.1/{BIN}"), Route::file(v11.clone()));
    toml("b", &nginx.url(&format!("/to-http/1.1/{BIN}")));
    toml("c", &nginx.url(&format!("/to-https/1.1/{BIN}")));

    let user = |name: &str, spec: &str| {
        let exe = s.path(&format!("{name}/{BIN}"));
        let bytes = build(
            &s,
            "1.0",
            spec,
            &s.path(&format!("build-{name}.bin")),
            |_| {},
        );
        write_file(&exe, &bytes, true);
        (exe, bytes)
    };
    let refused = |exe: &Path, url: &str| {
        let out = run(&s, exe, Some(&ca.pem()), &["version"]);
        assert_eq!(stdout(&out), "1.0\n");
        let want = format!("Refusing '{url}': a redirect from https to http is refused.");
        assert!(
            update_traces(&out).contains(&want),
            "no {want:?}:\n{}",
            stderr(&out)
        );
    };

    // update.toml
    let (exe, bytes) = user("user-a", &nginx.url("/to-http/a/{VERSION}/update.toml"));
    refused(&exe, &plain.url("/a/1.0/update.toml"));
    assert_untouched(&exe, &bytes);
    // The download (and its end, fetched first).
    let (exe, bytes) = user("user-b", &nginx.url("/b/{VERSION}/update.toml"));
    refused(&exe, &plain.url(&format!("/1.1/{BIN}")));
    assert_untouched(&exe, &bytes);
    assert!(
        plain.requests().is_empty(),
        "plain http was used: {:#?}",
        plain.requests()
    );
    let redirected = nginx
        .requests()
        .iter()
        .filter(|r| r.status == 302 && r.path.starts_with("/to-http/"))
        .count();
    assert!(redirected >= 2, "{:#?}", nginx.requests());

    // The same redirects, to https.
    let (exe, _) = user("user-c", &nginx.url("/to-https/c/{VERSION}/update.toml"));
    let out = run(&s, &exe, Some(&ca.pem()), &["version"]);
    assert_updated(&out);
    assert_untouched(&exe, &v11);
}

/// Serves a published 1.1 behind a good certificate and behind `bad`, and
/// checks that the bad one is refused with `reason` in the trace, both for
/// `update.toml` and for the download, with nothing installed, while the
/// good one installs.
fn refuses_certificate(bad: impl FnOnce(&Scratch, &Ca) -> Tls, reason: &str) {
    let s = Scratch::new();
    let Some((ca, tls)) = trusted(&s) else { return };
    let bad_tls = bad(&s, &ca);
    let site = s.path("site");
    let Some(good) = https(&s, "nginx-good", &site, serving(&tls)) else {
        return;
    };
    let bad = https(&s, "nginx-bad", &site, serving(&bad_tls)).expect("nginx");
    let v11 = build(
        &s,
        "1.1",
        &good.url("/ok/{VERSION}/update.toml"),
        &site.join(format!("1.1/{BIN}")),
        |_| {},
    );
    let new = site.join(format!("1.1/{BIN}"));
    let path11 = format!("/1.1/{BIN}");
    announce(&new, &good.url(&path11), &site.join("ok/1.0/update.toml"));
    announce(&new, &bad.url(&path11), &site.join("bad/1.0/update.toml"));

    let user = |name: &str, spec: &str| {
        let exe = s.path(&format!("{name}/{BIN}"));
        let bytes = build(
            &s,
            "1.0",
            spec,
            &s.path(&format!("build-{name}.bin")),
            |_| {},
        );
        write_file(&exe, &bytes, true);
        (exe, bytes)
    };
    // update.toml from the bad server.
    let (exe, bytes) = user("user-a", &bad.url("/ok/{VERSION}/update.toml"));
    let out = run(&s, &exe, Some(&ca.pem()), &["version"]);
    assert_refused(&out, &bad.url("/ok/1.0/update.toml"), reason);
    assert_untouched(&exe, &bytes);
    // The download from the bad server.
    let (exe, bytes) = user("user-b", &good.url("/bad/{VERSION}/update.toml"));
    let out = run(&s, &exe, Some(&ca.pem()), &["version"]);
    assert_refused(&out, &bad.url(&path11), reason);
    assert_untouched(&exe, &bytes);
    assert_eq!(bad.requests(), [], "no request got past the handshake");
    // The same from the good server.
    let (exe, _) = user("user-c", &good.url("/ok/{VERSION}/update.toml"));
    let out = run(&s, &exe, Some(&ca.pem()), &["version"]);
    assert_updated(&out);
    assert_untouched(&exe, &v11);
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    refuses_certificate(
        |_, ca| ca.issue("other-name", "DNS:updates.example.org", Validity::Current),
        "certificate not valid for name \"127.0.0.1\"",
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    refuses_certificate(
        |_, ca| ca.issue("expired", "IP:127.0.0.1", Validity::Expired),
        "certificate expired",
    );
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused() {
    refuses_certificate(
        |s, _| {
            let rogue = Ca::new(&s.path("pki/rogue"), "another CA").expect("openssl");
            rogue.issue("server", "IP:127.0.0.1", Validity::Current)
        },
        "UnknownIssuer",
    );
}

/// A CA that takes the trusted one's very name, with a key of its own.
#[test]
fn a_certificate_from_a_ca_posing_as_the_trusted_one_is_refused() {
    refuses_certificate(
        |s, _| {
            let rogue = Ca::new(&s.path("pki/rogue"), "onefile test CA").expect("openssl");
            rogue.issue("server", "IP:127.0.0.1", Validity::Current)
        },
        "BadSignature",
    );
}

/// The release workflow over real HTTPS: 1.0 and then 1.1 published with
/// `payload-tools publish --key` into an empty site that nginx serves over
/// TLS; a 1.0 install, trusting only the test's CA, checks the signed
/// manifest, fetches 1.1 and installs it, and is 1.1 at the next launch.
#[test]
fn a_published_site_over_https_takes_an_install_from_1_0_to_1_1() {
    let s = Scratch::new();
    let Some((ca, tls)) = trusted(&s) else { return };
    let site = s.path("site");
    let Some(nginx) = https(&s, "nginx", &site, serving(&tls)) else {
        return;
    };
    let keys = s.path("keys");
    fs::create_dir_all(&keys).expect("mkdir");
    let key = keys.join("release");
    let out = tools(["keygen".as_ref(), "-o".as_ref(), key.as_os_str()]);
    assert!(out.status.success(), "keygen: {}", stderr(&out));
    let (secret, public) = (keys.join("release.key"), keys.join("release.pub"));
    let spec = nginx.url("/{VERSION}/update.toml");
    let publish = |version: &str| {
        let app = s.probe_app(&format!("app-{version}"), version);
        let build = s.path(&format!("dist/{version}/{BIN}"));
        let out = pack(
            &app,
            &build,
            &[
                "--name",
                NAME,
                "--version",
                version,
                "--update-url-spec",
                &spec,
                "--public-key",
                public.to_str().expect("utf8"),
            ],
        );
        assert!(out.status.success(), "pack: {}", stderr(&out));
        let out = tools([
            "publish".as_ref(),
            build.as_os_str(),
            "--site".as_ref(),
            site.as_os_str(),
            "--key".as_ref(),
            secret.as_os_str(),
        ]);
        assert!(out.status.success(), "publish: {}", stderr(&out));
        fs::read(&build).expect("read")
    };
    let v10 = publish("1.0");
    let exe = s.path(&format!("user/{BIN}"));
    write_file(&exe, &v10, true);
    let out = run(&s, &exe, Some(&ca.pem()), &["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    assert!(
        update_traces(&out)
            .iter()
            .any(|t| t.ends_with("matches already.")),
        "{}",
        stderr(&out)
    );
    let v11 = publish("1.1");
    let out = run(&s, &exe, Some(&ca.pem()), &["version"]);
    assert_eq!(stdout(&out), "1.0\n", "{}", stderr(&out));
    assert_updated(&out);
    assert!(fs::read(&exe).expect("read") == v11, "1.1 installed");
    let out = run(&s, &exe, Some(&ca.pem()), &["version"]);
    assert_eq!(stdout(&out), "1.1\n", "{}", stderr(&out));
    // Every request went over TLS to the published paths.
    let paths: Vec<String> = nginx.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.contains(&"/1.0/update.toml".to_owned()), "{paths:?}");
    assert!(paths.contains(&format!("/1.1/{BIN}")), "{paths:?}");
}
