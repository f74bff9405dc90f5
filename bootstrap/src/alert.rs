//! The launcher's error where no one would read stderr: a launcher packed
//! with the GUI subsystem (`pack --windows-subsystem`) and started from
//! Explorer has no standard handles at all, so a damaged file would fail
//! without a word. There, the same lines also go to a message box.
//!
//! `user32.dll` is loaded only on this path, from `system32`: importing it
//! would load it (and what it pulls in) at every launch, for an error
//! that almost never happens. On other systems, and wherever stderr
//! exists, this does nothing.

use crate::error::LaunchError;

/// Shows `err` and its hint in a message box titled `program` if this
/// process has no standard error to read them from.
#[cfg(windows)]
pub fn if_stderr_is_missing(program: &str, err: &LaunchError) {
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE};
    use windows_sys::Win32::System::LibraryLoader::{
        GetProcAddress, LOAD_LIBRARY_SEARCH_SYSTEM32, LoadLibraryExW,
    };

    /// `MessageBoxW`'s signature, with `MB_OK | MB_ICONERROR` as its style.
    type MessageBoxW =
        unsafe extern "system" fn(*mut core::ffi::c_void, *const u16, *const u16, u32) -> i32;
    const MB_ICONERROR: u32 = 0x10;

    // SAFETY: no arguments; the handle is only compared.
    let stderr = unsafe { GetStdHandle(STD_ERROR_HANDLE) };
    if !stderr.is_null() && stderr != INVALID_HANDLE_VALUE {
        return;
    }
    let wide = |s: &str| s.encode_utf16().chain([0]).collect::<Vec<u16>>();
    // Escaped as on stderr: names from the packed file or the command
    // line may hold control or bidi characters.
    let escaped = |s: &str| payload_tools::text::Escaped(s).to_string();
    let text = match err.hint() {
        Some(hint) => format!("{}\n\n{}", escaped(&err.to_string()), escaped(&hint)),
        None => escaped(&err.to_string()),
    };
    let (title, text, dll) = (wide(&escaped(program)), wide(&text), wide("user32.dll"));
    // SAFETY: NUL-terminated strings that outlive the calls; a null module
    // or function is checked; the function pointer is transmuted to
    // MessageBoxW's documented signature.
    unsafe {
        let user32 = LoadLibraryExW(
            dll.as_ptr(),
            std::ptr::null_mut(),
            LOAD_LIBRARY_SEARCH_SYSTEM32,
        );
        if user32.is_null() {
            return;
        }
        let Some(function) = GetProcAddress(user32, c"MessageBoxW".as_ptr().cast()) else {
            return;
        };
        let message_box: MessageBoxW = std::mem::transmute(function);
        message_box(
            std::ptr::null_mut(),
            text.as_ptr(),
            title.as_ptr(),
            MB_ICONERROR,
        );
    }
}

/// Unix programs always have somewhere to write: nothing to do.
#[cfg(not(windows))]
pub fn if_stderr_is_missing(_program: &str, _err: &LaunchError) {}
