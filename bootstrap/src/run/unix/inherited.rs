//! What the launcher was started with that the app must get back as if it
//! had been started directly, and what the launcher changes for its own
//! life meanwhile.
//!
//! - Closed stdio: a descriptor 0, 1 or 2 that was closed at start is
//!   filled with `/dev/null` (close-on-exec) for the launcher's life, so
//!   none of the launcher's own files can land on it; the app gets it
//!   closed again, because exec closes it.
//! - SIGPIPE: Rust's runtime ignores it before `main`, and std resets it
//!   to the default in every program it starts; the app gets the
//!   disposition the launcher inherited.
//! - SIGXFSZ: ignored by the launcher, so that going past a file-size
//!   limit (`ulimit -f`) while unpacking or downloading is an `EFBIG` error
//!   it reports (exit 124) or traces, not its death (and, through the
//!   parent-death signal, the app's); the app gets the inherited one.
//! - The signal mask: std empties it in every program it starts; the app
//!   gets the launcher's (see [`mask`] and [`restore_in_app`]).
//!
//! [`record`] runs before Rust's runtime starts (an ELF `.init_array`
//! entry; `__mod_init_func` on Apple systems): only then is the inherited
//! SIGPIPE disposition still visible, and only then are the closed
//! descriptors still free. It costs three system calls.

use std::sync::atomic::{AtomicU8, Ordering};

/// Bits 0-2: descriptor 0/1/2 was closed at start. Bit 3: SIGPIPE was
/// ignored. Bit 4: SIGXFSZ was ignored.
static STARTED_WITH: AtomicU8 = AtomicU8::new(0);
const PIPE_IGNORED: u8 = 1 << 3;
const XFSZ_IGNORED: u8 = 1 << 4;

// SAFETY: `record` only makes system calls and stores to an atomic; it
// needs nothing of Rust's runtime, which is not started yet when it runs.
#[used]
#[cfg_attr(not(target_vendor = "apple"), unsafe(link_section = ".init_array"))]
#[cfg_attr(
    target_vendor = "apple",
    unsafe(link_section = "__DATA,__mod_init_func")
)]
static RECORD_AT_START: extern "C" fn() = record;

/// Records the inherited state, fills closed stdio, ignores SIGXFSZ.
extern "C" fn record() {
    let mut flags = 0;
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll on a local array of three pollfd; a zero timeout.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } >= 0;
    for (bit, pfd) in fds.iter().enumerate() {
        if !polled || pfd.revents & libc::POLLNVAL == 0 {
            continue;
        }
        // open returns the lowest free descriptor, which is this one: the
        // lower ones are open by now. Close-on-exec: the app gets it
        // closed, as it was given to us.
        // SAFETY: a NUL-terminated path and plain flags.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd == pfd.fd {
            flags |= 1 << bit;
        } else if fd >= 0 {
            // SAFETY: closing the descriptor just opened.
            unsafe { libc::close(fd) };
        }
        // Not reopened (no /dev/null): std's runtime then stops the
        // launcher, as it always did, rather than run on with a hole.
    }
    if is_ignored(libc::SIGPIPE, None) {
        flags |= PIPE_IGNORED;
    }
    if is_ignored(libc::SIGXFSZ, Some(libc::SIG_IGN)) {
        flags |= XFSZ_IGNORED;
    }
    STARTED_WITH.store(flags, Ordering::SeqCst);
}

/// Whether `sig` is ignored; sets it to `new` first if given (and returns
/// what it was).
fn is_ignored(sig: libc::c_int, new: Option<libc::sighandler_t>) -> bool {
    // SAFETY: sigaction with zeroed, then filled, structs we own; the new
    // action is either absent (a query) or a plain disposition.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        let mut action: libc::sigaction = std::mem::zeroed();
        let new_ptr = match new {
            Some(handler) => {
                action.sa_sigaction = handler;
                libc::sigemptyset(&mut action.sa_mask);
                &action as *const libc::sigaction
            }
            None => std::ptr::null(),
        };
        libc::sigaction(sig, new_ptr, &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The calling thread's signal mask: on the launcher's main thread, the
/// inherited one (the launcher only changes it for moments, and restores
/// it).
pub fn mask() -> libc::sigset_t {
    // SAFETY: a query (null new set) into a zeroed set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
        set
    }
}

/// Gives the process about to exec the app the signal state the launcher
/// was started with: SIGPIPE and SIGXFSZ dispositions, and `mask`.
/// Async-signal-safe: runs between fork and exec.
pub fn restore_in_app(mask: &libc::sigset_t) -> std::io::Result<()> {
    let flags = STARTED_WITH.load(Ordering::SeqCst);
    for (sig, bit) in [(libc::SIGPIPE, PIPE_IGNORED), (libc::SIGXFSZ, XFSZ_IGNORED)] {
        let handler = if flags & bit != 0 {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        // SAFETY: signal() with a plain disposition is async-signal-safe.
        if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: a valid set; pthread_sigmask is async-signal-safe.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constructor_ran() {
        // This test binary carries the constructor too: it ran, and left
        // SIGXFSZ ignored.
        assert!(is_ignored(libc::SIGXFSZ, None));
    }
}
