//! nginx as the tests' static server, as users deploy it behind a CDN: real
//! ETags and Range support, over plain HTTP or TLS. One instance per test,
//! in the foreground, on a free port of 127.0.0.1, with its configuration,
//! logs and temporary files in the test's scratch folder.
//!
//! Tests may add directives (redirects, rate limits) and restart it on the
//! same port; the access log records each request's path, status, bytes
//! sent and `Range` header ([`Nginx::requests`]), and its `User-Agent`
//! ([`Nginx::user_agents`]); a second log ([`Nginx::combined`]) has the
//! same requests in nginx's default `combined` format, as hosts keep it
//! (what `payload-tools stats` reads).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the distribution puts nginx.
const NGINX: [&str; 2] = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"];

/// The certificate chain (PEM) and key nginx serves over TLS.
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to run nginx beyond serving `root`.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<Tls>,
    /// Directives added to the `http` block (e.g. a `map`).
    pub http: String,
    /// Directives added to the `server` block (e.g. `location`s).
    pub server: String,
    /// Listen on this port instead of a free one.
    pub port: Option<u16>,
}

/// One request as nginx logged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub path: String,
    pub status: u16,
    pub sent: u64,
    /// The `Range` header, `None` without one.
    pub range: Option<String>,
}

#[derive(Debug)]
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    /// The access log in nginx's `combined` format.
    pub combined: PathBuf,
    scheme: &'static str,
}

/// Why nginx cannot serve here (over TLS when `tls`), or `None` when it can:
/// the reason a test gives for skipping.
pub fn unavailable(tls: bool) -> Option<&'static str> {
    let Some(nginx) = NGINX.into_iter().find(|p| Path::new(p).exists()) else {
        return Some("nginx is not installed (make deps installs nginx-light)");
    };
    if !tls {
        return None;
    }
    // `nginx -V` lists its configure arguments on stderr.
    let modules = Command::new(nginx)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    (!modules.contains("http_ssl_module"))
        .then_some("this nginx has no ssl module (Debian's nginx-light has it)")
}

impl Nginx {
    /// Plain HTTP serving `root`, with its files in `work`. `None` when
    /// nginx is not installed (the caller skips).
    pub fn start(root: &Path, work: &Path) -> Option<Nginx> {
        Nginx::start_with(root, work, &Config::default())
    }

    /// nginx serving `root` as `config` says. `None` when nginx is not
    /// installed; panics, with nginx's error log, when it does not start.
    pub fn start_with(root: &Path, work: &Path, config: &Config) -> Option<Nginx> {
        let nginx = NGINX.into_iter().find(|p| Path::new(p).exists())?;
        let port = match config.port {
            Some(port) => port,
            None => free_port(),
        };
        fs::create_dir_all(work.join("logs")).expect("nginx work folder");
        let log = work.join("logs/access.log");
        let combined = work.join("logs/combined.log");
        let error_log = work.join("logs/error.log");
        let (listen, tls) = match &config.tls {
            Some(tls) => (
                format!("127.0.0.1:{port} ssl"),
                format!(
                    "ssl_certificate {}; ssl_certificate_key {};",
                    tls.cert.display(),
                    tls.key.display()
                ),
            ),
            None => (format!("127.0.0.1:{port}"), String::new()),
        };
        let conf = work.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off; master_process off; pid {work}/nginx.pid; error_log {error_log};\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ log_format onefile '\"$request\" $status $body_bytes_sent \"$http_range\" \"$http_user_agent\"';\n\
                   access_log {log} onefile; access_log {combined} combined; client_body_temp_path {work}/tmp;\n\
                   proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp; uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;\n\
                   {http}\n\
                   server {{ listen {listen}; {tls} root {root};\n\
                     {server}\n\
                   }} }}\n",
                work = work.display(),
                error_log = error_log.display(),
                log = log.display(),
                combined = combined.display(),
                root = root.display(),
                http = config.http,
                server = config.server,
            ),
        )
        .expect("write nginx.conf");
        let mut child = Command::new(nginx)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(work)
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nginx did not start ({exited:?}):\n{}",
                    fs::read_to_string(&error_log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx {
            child,
            port,
            log,
            combined,
            scheme: if config.tls.is_some() {
                "https"
            } else {
                "http"
            },
        })
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// Ends nginx at once (SIGKILL): connections in progress are cut.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The `User-Agent` of each request served so far, in the order of
    /// [`Nginx::requests`] (`None` without one).
    pub fn user_agents(&self) -> Vec<Option<String>> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| parse_log_line(line).is_some())
            .map(|line| {
                let agent = line.rsplit('"').nth(1)?;
                (agent != "-").then(|| agent.to_owned())
            })
            .collect()
    }

    /// The requests served so far (nginx logs a request when it ends).
    pub fn requests(&self) -> Vec<Logged> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(parse_log_line)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// `"GET /path HTTP/1.1" 206 1234 "bytes=-65536" "agent"` (`"-"`: no range,
/// no agent).
fn parse_log_line(line: &str) -> Option<Logged> {
    let mut parts = line.split('"');
    let _ = parts.next()?;
    let path = parts.next()?.split_whitespace().nth(1)?.to_owned();
    let mut numbers = parts.next()?.split_whitespace();
    let status = numbers.next()?.parse().ok()?;
    let sent = numbers.next()?.parse().ok()?;
    let range = parts.next().filter(|r| *r != "-").map(str::to_owned);
    Some(Logged {
        path,
        status,
        sent,
        range,
    })
}
