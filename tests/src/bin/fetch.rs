//! `fetch URL FILE`: the baseline of the Windows update benchmark
//! (bench/windows.py). It does the job of an update the plainest way: GETs
//! `http://127.0.0.1:PORT/PATH` over HTTP/1.1, writes the body to a new
//! file beside FILE, flushes it to disk (`FlushFileBuffers` on Windows,
//! `fsync` elsewhere) and renames it over FILE. No checks, no resume: what
//! an update costs beyond this is what its safety costs.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, file] = &args[..] else {
        eprintln!("usage: fetch http://127.0.0.1:PORT/PATH FILE");
        return ExitCode::from(2);
    };
    match fetch(url, Path::new(file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fetch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fetch(url: &str, file: &Path) -> io::Result<()> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let stream = TcpStream::connect(host)?;
    let mut writer = stream.try_clone()?;
    write!(
        writer,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(bad(&format!("the server answered {}", status.trim_end())));
    }
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<u64>().ok();
        }
    }
    let length = length.ok_or_else(|| bad("no Content-Length"))?;
    let temp: PathBuf = file.with_extension("fetching");
    let mut out = File::options().write(true).create_new(true).open(&temp)?;
    let copied = io::copy(&mut reader.take(length), &mut out)?;
    if copied != length {
        let _ = fs::remove_file(&temp);
        return Err(bad("the download was cut short"));
    }
    out.sync_all()?;
    drop(out);
    fs::rename(&temp, file)
}
