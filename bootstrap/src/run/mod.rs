//! Running the app: in place of the launcher where nothing needs the
//! launcher afterwards (`exec`, Unix), or as a child whose exit status the
//! launcher takes on as its own. Platform code in `unix.rs` / `windows.rs`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// How the app ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppExit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (Unix).
    #[cfg_attr(not(unix), allow(dead_code, reason = "Windows has no signals"))]
    Signal(i32),
}
