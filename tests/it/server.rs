//! A real HTTP/1.1 server on 127.0.0.1, started per test on a free port,
//! serving routes from memory, with the faults a real network produces:
//! statuses, redirects, stalls, bodies cut short, ranges honoured or not.
//! It records every request so tests can check what the updater asked for.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers one path.
#[derive(Clone, Debug)]
pub enum Route {
    /// 200 with the body; with `ranges`, a `Range: bytes=N-` whose
    /// `If-Range` matches the ETag gets 206 and the rest, and a
    /// `Range: bytes=-N` gets 206 and the last N bytes.
    File {
        body: Vec<u8>,
        etag: Option<String>,
        ranges: bool,
    },
    /// This status with an empty body.
    Status(u16),
    /// 302 to this location.
    Redirect(String),
    /// Reads the request and never answers.
    Stall,
    /// Announces the whole body (Content-Length, ETag), sends `send` bytes
    /// of it, and closes the connection.
    CutShort {
        body: Vec<u8>,
        etag: Option<String>,
        send: usize,
    },
    /// Like `CutShort`, but ends the connection with a reset (RST).
    Reset { body: Vec<u8>, send: usize },
    /// Sends `send` bytes of the announced body, then nothing, ever.
    StallAfter { body: Vec<u8>, send: usize },
    /// Sends the body `chunk` bytes at a time, `delay_ms` apart.
    Drip {
        body: Vec<u8>,
        chunk: usize,
        delay_ms: u64,
    },
    /// Like `File` with ranges, except that a request for the end of the
    /// file (`Range: bytes=-N`) is answered from `tail_of`, another file:
    /// a server whose files change between two requests.
    Split { tail_of: Vec<u8>, body: Vec<u8> },
    /// 200 with `Content-Encoding: gzip` (the body given is already gzipped).
    Gzipped(Vec<u8>),
    /// Like `File` with ranges and an ETag, but a request for a bounded
    /// range (`Range: bytes=A-B`, what an incremental update asks for) is
    /// answered with `lie`; the end of the file and `bytes=N-` honestly.
    Lying {
        body: Vec<u8>,
        etag: String,
        lie: Lie,
    },
    /// Answers each request with the next route; the last one stays. A
    /// request for the end of a file (`Range: bytes=-N`) gets the current
    /// route without moving on.
    Sequence(Vec<Route>),
    /// This status with these headers (e.g. `Retry-After`) and an empty body.
    StatusWith {
        status: u16,
        headers: Vec<(&'static str, String)>,
    },
    /// Reads the request and closes the connection without an answer: a
    /// network failure that, unlike a stall, shows at once.
    Hangup,
    /// This status with an empty body, answered `delay_ms` after the
    /// request came: a far host.
    Late { status: u16, delay_ms: u64 },
}

/// How a [`Route::Lying`] server answers a bounded range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// 206 with the right headers and other bytes (each one flipped).
    WrongBytes,
    /// 206 with the bytes one further on, and a `Content-Range` that says so.
    WrongRange,
    /// 200 with the whole file, as servers without range support do.
    WholeFile,
    /// 206 with the right headers, half the bytes, then the connection
    /// closes: a transfer cut short, not a lie.
    CutShort,
}

impl Route {
    pub fn file(body: Vec<u8>) -> Route {
        Route::File {
            body,
            etag: None,
            ranges: false,
        }
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `If-None-Match` header.
    pub if_none_match: Option<String>,
}

impl Request {
    /// Whether this is the updater's look at the end of a build (its
    /// trailer and metadata) rather than a download.
    pub fn is_tail(&self) -> bool {
        self.range
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=-"))
    }
}

struct Inner {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Request>>,
    stop: AtomicBool,
}

pub struct Server {
    pub port: u16,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        let inner = Arc::new(Inner {
            routes: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&inner);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = handle(&conn, stream);
                });
            }
        });
        Server {
            port,
            inner,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn route(&self, path: &str, route: Route) {
        self.inner
            .routes
            .lock()
            .expect("routes")
            .insert(path.to_owned(), route);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.log.lock().expect("log").clone()
    }

    /// Where each request after the first `skip` began its range (`N` of
    /// `bytes=N-` or `bytes=N-M`), the builds' ends (`bytes=-N`) and
    /// requests without a range left out.
    pub fn range_starts_after(&self, skip: usize) -> Vec<u64> {
        self.requests()
            .into_iter()
            .skip(skip)
            .filter(|r| !r.is_tail())
            .filter_map(|r| {
                r.range?
                    .strip_prefix("bytes=")?
                    .split('-')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(inner: &Inner, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 || head.len() > 65536 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let mut headers = HashMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let range = headers.get("range").cloned();
    inner.log.lock().expect("log").push(Request {
        path: path.clone(),
        range: range.clone(),
        user_agent: headers.get("user-agent").cloned(),
        if_none_match: headers.get("if-none-match").cloned(),
    });
    // The updater's look at the end of a build (`bytes=-N`) is not an
    // attempt: it does not move a sequence on.
    let is_tail = inner
        .log
        .lock()
        .expect("log")
        .last()
        .is_some_and(Request::is_tail);
    let route = {
        let mut routes = inner.routes.lock().expect("routes");
        match routes.get_mut(&path) {
            Some(Route::Sequence(seq)) if seq.len() > 1 && !is_tail => Some(seq.remove(0)),
            Some(Route::Sequence(seq)) => seq.first().cloned(),
            Some(r) => Some(r.clone()),
            None => None,
        }
    };
    answer(inner, &mut stream, route, range, &headers)
}

/// Answers one request for `route` (`None`: there is none).
fn answer(
    inner: &Inner,
    stream: &mut TcpStream,
    route: Option<Route>,
    range: Option<String>,
    headers: &HashMap<String, String>,
) -> std::io::Result<()> {
    match route {
        None => respond(stream, 404, &[], b""),
        Some(Route::Status(code)) => respond(stream, code, &[], b""),
        Some(Route::StatusWith { status, headers }) => respond(stream, status, &headers, b""),
        Some(Route::Redirect(to)) => respond(stream, 302, &[("Location", to)], b""),
        Some(Route::Stall) => {
            while !inner.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        Some(Route::CutShort { body, etag, send }) => {
            let mut extra = vec![];
            if let Some(e) = etag {
                extra.push(("ETag", e));
            }
            write_head(stream, 200, &extra, body.len())?;
            stream.write_all(&body[..send.min(body.len())])?;
            stream.flush()
        }
        Some(Route::File { body, etag, ranges }) => {
            let mut extra = vec![];
            if let Some(e) = &etag {
                extra.push(("ETag", e.clone()));
            }
            let start = range
                .as_deref()
                .filter(|_| ranges)
                .filter(|_| {
                    headers
                        .get("if-range")
                        .is_none_or(|v| Some(v) == etag.as_ref())
                })
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| match r.strip_prefix('-') {
                    // `bytes=-N`: the last N bytes.
                    Some(n) => n
                        .parse::<usize>()
                        .ok()
                        .map(|n| (body.len().saturating_sub(n), body.len())),
                    None => parse_range(r, body.len()),
                })
                .filter(|&(n, _)| n < body.len());
            match start {
                Some((n, end)) => {
                    extra.push((
                        "Content-Range",
                        format!("bytes {n}-{}/{}", end - 1, body.len()),
                    ));
                    respond(stream, 206, &extra, &body[n..end])
                }
                None => respond(stream, 200, &extra, &body),
            }
        }
        Some(Route::Lying { body, etag, lie }) => {
            let bounded = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .filter(|r| !r.starts_with('-') && !r.ends_with('-'))
                .and_then(|r| parse_range(r, body.len()));
            let Some((start, end)) = bounded else {
                let honest = Route::File {
                    body,
                    etag: Some(etag),
                    ranges: true,
                };
                return answer(inner, stream, Some(honest), range, headers);
            };
            let head = |first: usize, last: usize| {
                vec![
                    ("ETag", etag.clone()),
                    (
                        "Content-Range",
                        format!("bytes {first}-{last}/{}", body.len()),
                    ),
                ]
            };
            match lie {
                Lie::WrongBytes => {
                    let flipped: Vec<u8> = body[start..end].iter().map(|b| !b).collect();
                    respond(stream, 206, &head(start, end - 1), &flipped)
                }
                Lie::WrongRange => {
                    let (first, last) = ((start + 1).min(body.len() - 1), end.min(body.len() - 1));
                    respond(stream, 206, &head(first, last), &body[first..=last])
                }
                Lie::WholeFile => respond(stream, 200, &[("ETag", etag.clone())], &body),
                Lie::CutShort => {
                    write_head(stream, 206, &head(start, end - 1), end - start)?;
                    stream.write_all(&body[start..start + (end - start) / 2])?;
                    stream.flush()
                }
            }
        }
        Some(Route::Split { tail_of, body }) => {
            let wanted = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes=-"))
                .and_then(|n| n.parse::<usize>().ok());
            match wanted {
                Some(n) => {
                    let start = tail_of.len().saturating_sub(n);
                    let extra = [(
                        "Content-Range",
                        format!("bytes {start}-{}/{}", tail_of.len() - 1, tail_of.len()),
                    )];
                    respond(stream, 206, &extra, &tail_of[start..])
                }
                None => respond(stream, 200, &[], &body),
            }
        }
        Some(Route::Reset { body, send }) => {
            write_head(stream, 200, &[], body.len())?;
            stream.write_all(&body[..send.min(body.len())])?;
            reset_on_close(stream);
            Ok(())
        }
        Some(Route::StallAfter { body, send }) => {
            write_head(stream, 200, &[], body.len())?;
            stream.write_all(&body[..send.min(body.len())])?;
            stream.flush()?;
            while !inner.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        Some(Route::Drip {
            body,
            chunk,
            delay_ms,
        }) => {
            write_head(stream, 200, &[], body.len())?;
            for piece in body.chunks(chunk.max(1)) {
                if inner.stop.load(Ordering::SeqCst) {
                    break;
                }
                stream.write_all(piece)?;
                stream.flush()?;
                std::thread::sleep(Duration::from_millis(delay_ms));
            }
            Ok(())
        }
        Some(Route::Gzipped(body)) => respond(
            stream,
            200,
            &[("Content-Encoding", "gzip".to_owned())],
            &body,
        ),
        Some(Route::Sequence(_)) => respond(stream, 500, &[], b""),
        Some(Route::Hangup) => Ok(()),
        Some(Route::Late { status, delay_ms }) => {
            std::thread::sleep(Duration::from_millis(delay_ms));
            respond(stream, status, &[], b"")
        }
    }
}

/// `A-B` (inclusive, as HTTP writes it) or `A-` of a body of `len` bytes,
/// as the half-open byte range it asks for, cut at the body's end.
fn parse_range(spec: &str, len: usize) -> Option<(usize, usize)> {
    let (first, last) = spec.split_once('-')?;
    let first = first.parse::<usize>().ok()?;
    let end = match last {
        "" => len,
        last => last.parse::<usize>().ok()?.saturating_add(1).min(len),
    };
    (first < end).then_some((first, end))
}

/// Linger 0: closing `stream` sends RST instead of FIN.
#[cfg(unix)]
fn reset_on_close(stream: &TcpStream) {
    let raw = std::os::fd::AsRawFd::as_raw_fd(stream);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid option value.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Linger 0: closing `stream` sends RST instead of FIN.
#[cfg(windows)]
fn reset_on_close(stream: &TcpStream) {
    use windows_sys::Win32::Networking::WinSock::{LINGER, SO_LINGER, SOL_SOCKET, setsockopt};
    let raw = std::os::windows::io::AsRawSocket::as_raw_socket(stream) as usize;
    let linger = LINGER {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid option value.
    unsafe {
        setsockopt(
            raw,
            SOL_SOCKET,
            SO_LINGER,
            (&linger as *const LINGER).cast(),
            std::mem::size_of::<LINGER>() as i32,
        );
    }
}

fn write_head(
    stream: &mut TcpStream,
    status: u16,
    extra: &[(&str, String)],
    len: usize,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {len}\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n"
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    extra: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    write_head(stream, status, extra, body.len())?;
    stream.write_all(body)?;
    stream.flush()
}
