//! A plain HTTP/1.1 file server on 127.0.0.1 (a free port, a thread),
//! serving a folder: 200 with the whole file, or 404. No ranges, no
//! faults: those are `it/server.rs`'s, which is Unix-only for now.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

pub struct FileServer {
    pub port: u16,
}

impl FileServer {
    /// Serves the files below `root` until the test process ends.
    pub fn start(root: &Path) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let root = root.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                std::thread::spawn(move || answer(stream, &root));
            }
        });
        FileServer { port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

fn answer(mut stream: TcpStream, root: &Path) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // The headers: read to the blank line, not needed.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let file: PathBuf = root.join(path.trim_start_matches('/'));
    let head_only = request.starts_with("HEAD ");
    let response = match std::fs::read(&file) {
        Ok(body) if !path.contains("..") => (200, body),
        _ => (404, Vec::new()),
    };
    let (status, body) = response;
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if !head_only {
        let _ = stream.write_all(&body);
    }
}
