//! `snoop DIR STOPFILE`: a hostile local user watching a folder, for the
//! tests of files that must never be readable by others, even for an
//! instant. It asks inotify for every file created or renamed into `DIR`
//! and opens each one for reading at once, keeping the descriptor: a
//! descriptor opened while a file was briefly readable still reads what is
//! written later. It runs until `STOPFILE` exists, then reads every kept
//! descriptor and prints, one line each:
//!
//! - `ready` once it watches (on stdout, before anything else);
//! - `opened NAME BYTES` for every file it could open and what it read;
//! - `stolen NAME` for every one whose bytes hold a secret key.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("snoop needs Linux's inotify");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn main() {
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;

    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(stop)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: snoop DIR STOPFILE");
        std::process::exit(2);
    };
    let c_dir = std::ffi::CString::new(dir.as_str()).expect("dir");
    // SAFETY: plain syscalls on a descriptor we own and a valid C string.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    assert!(fd >= 0, "inotify_init1");
    // SAFETY: as above.
    let watch =
        unsafe { libc::inotify_add_watch(fd, c_dir.as_ptr(), libc::IN_CREATE | libc::IN_MOVED_TO) };
    assert!(watch >= 0, "inotify_add_watch {dir}");
    println!("ready");
    std::io::stdout().flush().expect("stdout");

    let mut kept: Vec<(String, std::fs::File)> = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 20) };
        // SAFETY: reads into our buffer, at most its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            if std::path::Path::new(stop).exists() {
                break;
            }
            continue;
        }
        let mut at = 0usize;
        let n = n as usize;
        let header = std::mem::size_of::<libc::inotify_event>();
        while at + header <= n {
            // SAFETY: the kernel wrote whole events; read_unaligned copes
            // with the byte buffer's alignment.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            let name_bytes = &buf[at + header..at + header + event.len as usize];
            let name_len = name_bytes
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_bytes.len());
            let name = std::ffi::OsStr::from_bytes(&name_bytes[..name_len]);
            let path = std::path::Path::new(dir).join(name);
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(file) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
            {
                kept.push((name.to_string_lossy().into_owned(), file));
            }
            at += header + event.len as usize;
        }
    }
    for (name, mut file) in kept {
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        println!("opened {name} {}", bytes.len());
        if String::from_utf8_lossy(&bytes).contains("secret key") {
            println!("stolen {name}");
        }
    }
}
