//! Operating-system calls the format code needs, one implementation per
//! platform with the same function names, so callers never see a `cfg`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
pub mod acl;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
