//! `probe`: the app the end-to-end tests pack. A real native program (not a
//! script, whose interpreter would hide `argv[0]`) that reports what it was
//! given and behaves as told: `probe COMMAND [ARGS]`.
//!
//! - `args`: prints argv, one per line, `argv[0]` first
//! - `env NAME...`: prints `NAME=value` (or `NAME unset`)
//! - `cwd`: prints the working directory
//! - `cat`: copies stdin to stdout
//! - `exit N`: exits with code N
//! - `print TEXT [SECONDS]`: prints TEXT, then sleeps
//! - `die SIGNAL`: kills itself with SIGNAL
//! - `wait-signal PIDFILE`: writes its pid, waits for INT/TERM/HUP/QUIT,
//!   prints `got N` and exits 0
//! - `sleep SECONDS [PIDFILE]`: writes its pid, sleeps, ignoring SIGTERM
//! - `version [SECONDS]`: sleeps, then prints `version.txt` from next to
//!   the program

use std::io::{Read, Write};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

static GOT: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(sig: libc::c_int) {
    GOT.store(sig, Ordering::SeqCst);
}

fn write_pid(path: Option<&String>) {
    if let Some(path) = path {
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, std::process::id().to_string()).expect("write pid");
        std::fs::rename(&tmp, path).expect("publish pid");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let command = args.get(1).map(String::as_str).unwrap_or("args");
    let rest = &args[args.len().min(2)..];
    let mut out = std::io::stdout().lock();
    match command {
        "args" => {
            for a in &args {
                writeln!(out, "{a}").expect("stdout");
            }
        }
        "env" => {
            for name in rest {
                match std::env::var(name) {
                    Ok(v) => writeln!(out, "{name}={v}"),
                    Err(_) => writeln!(out, "{name} unset"),
                }
                .expect("stdout");
            }
        }
        "cwd" => {
            let cwd = std::env::current_dir().expect("cwd");
            writeln!(out, "{}", cwd.display()).expect("stdout");
        }
        "cat" => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input).expect("stdin");
            out.write_all(&input).expect("stdout");
        }
        "exit" => std::process::exit(rest[0].parse().expect("exit code")),
        "print" => {
            writeln!(out, "{}", rest[0]).expect("stdout");
            out.flush().expect("stdout");
            if let Some(secs) = rest.get(1) {
                std::thread::sleep(Duration::from_secs_f64(secs.parse().expect("seconds")));
            }
        }
        "die" => {
            let sig: i32 = rest[0].parse().expect("signal");
            // SAFETY: resetting a disposition and raising a signal.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        "wait-signal" => {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                // SAFETY: the handler only stores to an atomic.
                unsafe {
                    libc::signal(sig, record as *const () as libc::sighandler_t);
                }
            }
            write_pid(rest.first());
            for _ in 0..1000 {
                let sig = GOT.load(Ordering::SeqCst);
                if sig != 0 {
                    writeln!(out, "got {sig}").expect("stdout");
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            std::process::exit(3);
        }
        "sleep" => {
            // SAFETY: ignoring a signal.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
            }
            write_pid(rest.get(1));
            std::thread::sleep(Duration::from_secs_f64(rest[0].parse().expect("seconds")));
        }
        "version" => {
            if let Some(secs) = rest.first() {
                std::thread::sleep(Duration::from_secs_f64(secs.parse().expect("seconds")));
            }
            let me = std::env::current_exe().expect("exe");
            let text =
                std::fs::read_to_string(me.with_file_name("version.txt")).expect("version.txt");
            write!(out, "{text}").expect("stdout");
        }
        other => {
            eprintln!("probe: unknown command {other}");
            std::process::exit(2);
        }
    }
}
