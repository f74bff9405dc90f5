//! Windows: who may change a folder or file of the cache, read from its
//! security descriptor through a held handle, and the private descriptor
//! given to what the launcher creates. The Windows form of the Unix rules
//! "ours, and writable by no one else" (docs/launcher.md, Windows).
//!
//! - [`check_private`] reads the owner and the DACL of an open handle
//!   (`GetSecurityInfo`, never by path) and accepts it only if the owner is
//!   us or a trusted account (SYSTEM, Administrators: they can take any
//!   file anyway, as root can on Unix) and no entry of the DACL lets anyone
//!   else write, add, delete, rename, or change the DACL or the owner. A
//!   NULL DACL (everyone may do everything) is refused. Inheritable entries
//!   count too: they would give others access to what we create inside.
//! - [`Private`] is the security descriptor of what the launcher creates:
//!   a protected DACL (nothing inherited from the parent) giving full
//!   control to us, SYSTEM and Administrators, inherited by everything
//!   created inside, as `%LOCALAPPDATA%` itself does.
//!
//! The DACL is parsed here, bounded by the sizes it declares, rather than
//! trusted entry by entry: an entry or SID that does not fit is refused.

use std::io;
use std::os::windows::io::RawHandle;

use windows_sys::Win32::Foundation::{ERROR_SUCCESS, HANDLE, HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{GetSecurityInfo, SE_FILE_OBJECT};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetLengthSid, GetTokenInformation,
    InitializeSecurityDescriptor, IsValidSid, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    PSID, SE_DACL_PROTECTED, SECURITY_ATTRIBUTES, SECURITY_DESCRIPTOR,
    SetSecurityDescriptorControl, SetSecurityDescriptorDacl, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// S-1-5-18, LocalSystem.
const SYSTEM: &[u8] = &[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0];
/// S-1-5-32-544, BUILTIN\Administrators.
const ADMINISTRATORS: &[u8] = &[1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 2, 0, 0];
/// S-1-3-0, CREATOR OWNER: stands for whoever creates an object inside.
/// Only others who may add entries could be that, which is refused anyway.
const CREATOR_OWNER: &[u8] = &[1, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0];
/// S-1-3-4, OWNER RIGHTS: the owner, who is checked.
const OWNER_RIGHTS: &[u8] = &[1, 1, 0, 0, 0, 0, 0, 3, 4, 0, 0, 0];

/// Access that lets its holder change what the folder holds, or who may:
/// write data (add a file), append (add a subfolder), delete a child,
/// delete or rename the object, change its DACL or owner, and the generic
/// rights that include writing.
const CHANGE: u32 = 0x0002 // FILE_WRITE_DATA, FILE_ADD_FILE
    | 0x0004 // FILE_APPEND_DATA, FILE_ADD_SUBDIRECTORY
    | 0x0040 // FILE_DELETE_CHILD
    | 0x0001_0000 // DELETE
    | 0x0004_0000 // WRITE_DAC
    | 0x0008_0000 // WRITE_OWNER
    | 0x1000_0000 // GENERIC_ALL
    | 0x4000_0000; // GENERIC_WRITE

/// FILE_ALL_ACCESS.
const FULL_CONTROL: u32 = 0x001F_01FF;
/// OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE.
const INHERITED_BY_ALL: u8 = 0x3;
const ACCESS_ALLOWED: u8 = 0;
/// The allowing entries with another layout (object, callback): not read,
/// so refused if present.
const OTHER_ALLOWING: [u8; 3] = [5, 9, 11];
const ACL_HEADER: usize = 8;
const ACE_HEADER: usize = 4;

/// The SID of the user this process runs as, as bytes.
pub fn current_user() -> io::Result<Vec<u8>> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of our own process; token receives a new
    // handle, closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // TOKEN_USER and the SID it points to (at most 68 bytes), 8-aligned.
    let mut buf = [0u64; 32];
    let mut len = 0u32;
    // SAFETY: buf is writable for the length given; the token is open.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buf.as_mut_ptr().cast(),
            size_of_val(&buf) as u32,
            &mut len,
        )
    };
    let result = if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: GetTokenInformation filled buf with a TOKEN_USER whose SID
        // points inside buf.
        let sid = unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid };
        sid_bytes(sid)
    };
    // SAFETY: the token handle is ours and closed once.
    unsafe { windows_sys::Win32::Foundation::CloseHandle(token) };
    result
}

/// Copies the SID at `sid`, checked valid, as bytes.
fn sid_bytes(sid: PSID) -> io::Result<Vec<u8>> {
    // SAFETY: IsValidSid only reads a SID's header and checks its fields.
    if sid.is_null() || unsafe { IsValidSid(sid) } == 0 {
        return Err(io::Error::other("invalid SID"));
    }
    // SAFETY: a valid SID is GetLengthSid bytes long.
    let len = unsafe { GetLengthSid(sid) } as usize;
    // SAFETY: as above: `len` bytes are readable at `sid`.
    Ok(unsafe { std::slice::from_raw_parts(sid.cast::<u8>(), len) }.to_vec())
}

/// Whether the object open as `handle` is private to `me` (see the module
/// doc); `Err` with the reason if not. `Ok(Err(_))` is a refusal, the
/// outer error a failure to read the descriptor.
pub fn check_private(handle: RawHandle, me: &[u8]) -> io::Result<Result<(), String>> {
    read_security(handle, DACL_SECURITY_INFORMATION, |owner, dacl| {
        judge(owner, dacl, me)
    })
}

/// Whether the object open as `handle` belongs to `me` (and no one else,
/// not even a trusted account: replacing a file of another account is
/// never what that account wants).
pub fn check_owner(handle: RawHandle, me: &[u8]) -> io::Result<Result<(), String>> {
    read_security(handle, 0, |owner, _| match owner == me {
        true => Ok(()),
        false => Err(format!("it belongs to {}, not to us", describe(owner))),
    })
}

/// Reads the owner (and `more`, e.g. the DACL) of the object open as
/// `handle` and gives them to `judge`; the DACL pointer is NULL unless
/// asked for, and valid only during the call.
fn read_security<R>(
    handle: RawHandle,
    more: u32,
    judge: impl FnOnce(&[u8], *const ACL) -> R,
) -> io::Result<R> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: the handle is open (with READ_CONTROL); the out pointers are
    // valid; the descriptor returned is freed below with LocalFree, and
    // owner and dacl point inside it.
    let rc = unsafe {
        GetSecurityInfo(
            handle,
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | more,
            &mut owner,
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if rc != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    let verdict = sid_bytes(owner).map(|owner| judge(&owner, dacl));
    // SAFETY: allocated by GetSecurityInfo for us, freed once; owner and
    // dacl are not used after.
    unsafe { LocalFree(descriptor as HLOCAL) };
    verdict
}

/// The verdict on an owner and a DACL (pointing into a live descriptor).
fn judge(owner: &[u8], dacl: *const ACL, me: &[u8]) -> Result<(), String> {
    if !is_trusted(owner, me) {
        return Err(format!("it belongs to {}, not to us", describe(owner)));
    }
    if dacl.is_null() {
        return Err("it has no access list (a NULL DACL: everyone may change it)".into());
    }
    // SAFETY: a DACL starts with its 8-byte header, whose AclSize is the
    // number of bytes the OS allocated for it.
    let size = usize::from(unsafe { (*dacl).AclSize });
    if size < ACL_HEADER {
        return Err("its access list is damaged".into());
    }
    // SAFETY: as above, `size` bytes are readable at `dacl`.
    let bytes = unsafe { std::slice::from_raw_parts(dacl.cast::<u8>(), size) };
    check_entries(bytes, me)
}

/// Reads every entry of the DACL `acl` (bytes, header included), bounded
/// by its own sizes.
fn check_entries(acl: &[u8], me: &[u8]) -> Result<(), String> {
    let damaged = || "its access list is damaged".to_owned();
    let count = u16::from_le_bytes([acl[4], acl[5]]);
    let mut at = ACL_HEADER;
    for _ in 0..count {
        let header = acl.get(at..at + ACE_HEADER).ok_or_else(damaged)?;
        let (kind, ace_size) = (
            header[0],
            usize::from(u16::from_le_bytes([header[2], header[3]])),
        );
        let ace = acl.get(at..at + ace_size).ok_or_else(damaged)?;
        at += ace_size;
        if OTHER_ALLOWING.contains(&kind) {
            return Err(format!(
                "its access list has an entry we do not read (type {kind})"
            ));
        }
        if kind != ACCESS_ALLOWED {
            // Denying entries only take access away; audit and label
            // entries grant none.
            continue;
        }
        let mask_bytes = ace.get(4..8).ok_or_else(damaged)?;
        let mask = u32::from_le_bytes([mask_bytes[0], mask_bytes[1], mask_bytes[2], mask_bytes[3]]);
        let sid = sid_in(&ace[8..]).ok_or_else(damaged)?;
        let trusted = is_trusted(sid, me) || sid == CREATOR_OWNER || sid == OWNER_RIGHTS;
        if mask & CHANGE != 0 && !trusted {
            return Err(format!(
                "{} may change it (access {mask:#x})",
                describe(sid)
            ));
        }
    }
    Ok(())
}

/// The SID at the start of `bytes`, if it fits: revision 1, at most 15
/// sub-authorities.
fn sid_in(bytes: &[u8]) -> Option<&[u8]> {
    let (&revision, &count) = (bytes.first()?, bytes.get(1)?);
    if revision != 1 || count > 15 {
        return None;
    }
    bytes.get(..8 + 4 * usize::from(count))
}

fn is_trusted(sid: &[u8], me: &[u8]) -> bool {
    sid == me || sid == SYSTEM || sid == ADMINISTRATORS
}

/// A SID as users read it: `S-1-1-0 (Everyone)` for the common ones,
/// else its string form.
fn describe(sid: &[u8]) -> String {
    let authority = sid
        .get(2..8)
        .map_or(0, |a| a.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)));
    let mut text = format!("S-1-{authority}");
    for sub in sid.get(8..).unwrap_or_default().chunks_exact(4) {
        text.push_str(&format!(
            "-{}",
            u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]])
        ));
    }
    let known = match text.as_str() {
        "S-1-1-0" => " (Everyone)",
        "S-1-5-11" => " (Authenticated Users)",
        "S-1-5-32-545" => " (Users)",
        "S-1-5-32-546" => " (Guests)",
        "S-1-5-7" => " (Anonymous)",
        "S-1-5-4" => " (Interactive)",
        _ => "",
    };
    format!("{text}{known}")
}

/// The security descriptor of what the launcher creates (module doc), to
/// pass to `CreateDirectoryW` or `CreateFileW`.
pub struct Private {
    descriptor: Box<SECURITY_DESCRIPTOR>,
    /// The DACL the descriptor points to; u32s for its alignment.
    _dacl: Vec<u32>,
    attributes: SECURITY_ATTRIBUTES,
}

impl std::fmt::Debug for Private {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Private")
    }
}

impl Private {
    pub fn new(me: &[u8]) -> io::Result<Private> {
        let bytes = private_dacl(me);
        let mut dacl = vec![0u32; bytes.len().div_ceil(4)];
        for (word, chunk) in dacl.iter_mut().zip(bytes.chunks(4)) {
            let mut le = [0u8; 4];
            le[..chunk.len()].copy_from_slice(chunk);
            *word = u32::from_le_bytes(le);
        }
        // SAFETY: SECURITY_DESCRIPTOR is plain data; all zeroes is valid
        // storage for InitializeSecurityDescriptor to fill.
        let mut descriptor: Box<SECURITY_DESCRIPTOR> = Box::new(unsafe { std::mem::zeroed() });
        let sd: PSECURITY_DESCRIPTOR = (&mut *descriptor as *mut SECURITY_DESCRIPTOR).cast();
        // SAFETY: sd points to an absolute descriptor we own; the DACL is a
        // well-formed ACL (private_dacl) that outlives it in the same
        // struct (a Vec's buffer does not move when the Vec does).
        let ok = unsafe {
            InitializeSecurityDescriptor(sd, 1) != 0
                && SetSecurityDescriptorDacl(sd, 1, dacl.as_ptr().cast(), 0) != 0
                && SetSecurityDescriptorControl(sd, SE_DACL_PROTECTED, SE_DACL_PROTECTED) != 0
        };
        if !ok {
            return Err(io::Error::last_os_error());
        }
        let attributes = SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: sd,
            bInheritHandle: 0,
        };
        Ok(Private {
            descriptor,
            _dacl: dacl,
            attributes,
        })
    }

    /// For `CreateDirectoryW` / `CreateFileW`; valid while `self` lives.
    pub fn attributes(&self) -> *const SECURITY_ATTRIBUTES {
        debug_assert!(std::ptr::eq(
            self.attributes
                .lpSecurityDescriptor
                .cast::<SECURITY_DESCRIPTOR>(),
            &*self.descriptor
        ));
        &self.attributes
    }
}

/// A DACL, as bytes: full control for `me`, SYSTEM and Administrators,
/// inherited by files and folders inside.
fn private_dacl(me: &[u8]) -> Vec<u8> {
    let sids = [me, SYSTEM, ADMINISTRATORS];
    let ace_len = |sid: &[u8]| (ACE_HEADER + 4 + sid.len()).next_multiple_of(4);
    let size = ACL_HEADER + sids.iter().map(|s| ace_len(s)).sum::<usize>();
    let mut acl = Vec::with_capacity(size);
    acl.extend_from_slice(&[2, 0]); // ACL_REVISION
    acl.extend_from_slice(&(size as u16).to_le_bytes());
    acl.extend_from_slice(&(sids.len() as u16).to_le_bytes());
    acl.extend_from_slice(&[0, 0]);
    for sid in sids {
        let len = ace_len(sid);
        acl.extend_from_slice(&[ACCESS_ALLOWED, INHERITED_BY_ALL]);
        acl.extend_from_slice(&(len as u16).to_le_bytes());
        acl.extend_from_slice(&FULL_CONTROL.to_le_bytes());
        acl.extend_from_slice(sid);
        acl.resize(acl.len() + len - (ACE_HEADER + 4 + sid.len()), 0);
    }
    acl
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &[u8] = &[
        1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0xe8, 3, 0, 0,
    ];
    const EVERYONE: &[u8] = &[1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    const USERS: &[u8] = &[1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x21, 2, 0, 0];

    /// Our private DACL plus one entry (`kind`, `flags`, `mask`, `sid`).
    fn with_entry(kind: u8, flags: u8, mask: u32, sid: &[u8]) -> Vec<u8> {
        let mut acl = private_dacl(ME);
        acl[4] += 1;
        let len = (ACE_HEADER + 4 + sid.len()) as u16;
        acl.extend_from_slice(&[kind, flags]);
        acl.extend_from_slice(&len.to_le_bytes());
        acl.extend_from_slice(&mask.to_le_bytes());
        acl.extend_from_slice(sid);
        let size = acl.len() as u16;
        acl[2..4].copy_from_slice(&size.to_le_bytes());
        acl
    }

    #[test]
    fn our_own_dacl_is_private() {
        assert_eq!(check_entries(&private_dacl(ME), ME), Ok(()));
        // Others may read and list.
        let read = with_entry(ACCESS_ALLOWED, 0, 0x0012_00A9, USERS);
        assert_eq!(check_entries(&read, ME), Ok(()));
        // A denying entry takes away; it never makes a folder unsafe.
        let deny = with_entry(1, 0, 0x1F_01FF, EVERYONE);
        assert_eq!(check_entries(&deny, ME), Ok(()));
    }

    #[test]
    fn any_change_by_others_is_refused() {
        for mask in [
            0x0002,      // add a file
            0x0004,      // add a folder
            0x0040,      // delete a child
            0x0001_0000, // delete or rename it
            0x0004_0000, // change the DACL
            0x0008_0000, // take ownership
            0x1000_0000, // generic all
            0x4000_0000, // generic write
        ] {
            let acl = with_entry(ACCESS_ALLOWED, 0, mask, EVERYONE);
            let refused = check_entries(&acl, ME).expect_err("refused");
            assert!(
                refused.contains("S-1-1-0 (Everyone)"),
                "{mask:#x}: {refused}"
            );
        }
        // Inherit-only: it would give others what we create inside.
        let inherited = with_entry(ACCESS_ALLOWED, 0x0B, 0x0002, USERS);
        let refused = check_entries(&inherited, ME).expect_err("inherited");
        assert!(refused.contains("S-1-5-32-545 (Users)"), "{refused}");
        // An allowing entry of a layout not read: refused, not guessed.
        let object = with_entry(5, 0, 0x0001, EVERYONE);
        assert!(check_entries(&object, ME).is_err());
    }

    #[test]
    fn a_damaged_dacl_is_refused_without_reading_past_it() {
        let mut acl = with_entry(ACCESS_ALLOWED, 0, 0x0001, EVERYONE);
        // One entry more than the bytes hold.
        acl[4] += 1;
        assert!(check_entries(&acl, ME).is_err());
        // An entry whose size runs past the end.
        let mut acl = private_dacl(ME);
        acl[ACL_HEADER + 2] = 0xff;
        assert!(check_entries(&acl, ME).is_err());
        // A SID that claims more sub-authorities than its entry holds.
        let mut acl = with_entry(ACCESS_ALLOWED, 0, 0x0001, EVERYONE);
        let last_sid = acl.len() - EVERYONE.len();
        acl[last_sid + 1] = 15;
        assert!(check_entries(&acl, ME).is_err());
    }

    #[test]
    fn sids_read_as_users_write_them() {
        assert_eq!(describe(EVERYONE), "S-1-1-0 (Everyone)");
        assert_eq!(describe(ME), "S-1-5-21-1-2-3-1000");
        assert!(is_trusted(SYSTEM, ME) && is_trusted(ADMINISTRATORS, ME));
        assert!(!is_trusted(USERS, ME));
    }
}
