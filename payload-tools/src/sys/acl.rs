//! Windows: who may change a folder or file, read from its security
//! descriptor through a held handle, and the private descriptor given to
//! what we create. The Windows form of the Unix rules "ours, and writable
//! by no one else", shared by the stub's cache (docs/launcher.md, Windows)
//! and the CLI's `keygen` and `unpack` (docs/security.md, items 1 and 3).
//!
//! - [`check_private`] reads the owner and the DACL of an open handle
//!   (`GetSecurityInfo`, never by path) and accepts it only if the owner is
//!   us or a trusted account (SYSTEM, Administrators: they can take any
//!   file anyway, as root can on Unix) and no entry of the DACL lets anyone
//!   else write, add, delete, rename, change attributes or extended
//!   attributes, or change the DACL or the owner. A NULL DACL (everyone may
//!   do everything) is refused. Inheritable entries count too: they would
//!   give others access to what we create inside.
//! - Entries are read from an allow-list of types: the allowing ones whose
//!   layout is read here (plain, callback, object, callback object) are
//!   checked; the denying ones only take access away and are skipped; any
//!   other type (compound, or one this code does not know) is refused as
//!   an access rule this check cannot read, never guessed.
//! - [`Private`] is the security descriptor of what we create: a protected
//!   DACL (nothing inherited from the parent) giving full control to us,
//!   SYSTEM and Administrators, inherited by everything created inside, as
//!   `%LOCALAPPDATA%` itself does.
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
/// write data (add a file), append (add a subfolder), write extended
/// attributes or attributes (a read-only or hidden flag, times), delete a
/// child, delete or rename the object, change its DACL or owner, and the
/// generic rights that include writing.
const CHANGE: u32 = 0x0002 // FILE_WRITE_DATA, FILE_ADD_FILE
    | 0x0004 // FILE_APPEND_DATA, FILE_ADD_SUBDIRECTORY
    | 0x0010 // FILE_WRITE_EA
    | 0x0100 // FILE_WRITE_ATTRIBUTES
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
/// ACCESS_ALLOWED_CALLBACK: the layout of ACCESS_ALLOWED, then condition
/// data; counted as granting whatever its condition.
const ACCESS_ALLOWED_CALLBACK: u8 = 9;
/// ACCESS_ALLOWED_OBJECT and ACCESS_ALLOWED_CALLBACK_OBJECT: the mask, a
/// flags word saying which of two GUIDs follow, then the SID.
const ACCESS_ALLOWED_OBJECT: [u8; 2] = [5, 11];
/// ACCESS_DENIED, _OBJECT, _CALLBACK, _CALLBACK_OBJECT: they only take
/// access away.
const ACCESS_DENIED: [u8; 4] = [1, 6, 10, 12];
/// INHERIT_ONLY_ACE: the entry is only for what is created inside.
const INHERIT_ONLY: u8 = 0x8;
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

/// Whether the object open as `handle` belongs to `me` or a trusted
/// account (SYSTEM, Administrators): the check of a link on a path.
pub fn check_owner_trusted(handle: RawHandle, me: &[u8]) -> io::Result<Result<(), String>> {
    read_security(handle, 0, |owner, _| match is_trusted(owner, me) {
        true => Ok(()),
        false => Err(format!("it belongs to {}", describe(owner))),
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
    check_entries(dacl_bytes(dacl)?, me, CHANGE, true)
}

/// Access that lets its holder swap the entries of a folder on a path:
/// rename or delete the folder itself or what it holds, or give itself
/// that right. Adding entries is not enough: what we create is created
/// exclusively.
const SWAP: u32 = 0x0040 // FILE_DELETE_CHILD
    | 0x0001_0000 // DELETE
    | 0x0004_0000 // WRITE_DAC
    | 0x0008_0000 // WRITE_OWNER
    | 0x1000_0000; // GENERIC_ALL

/// Whether no one but `me` (and SYSTEM and Administrators) may rename,
/// delete or replace the object open as `handle` or what it holds: the
/// check of a folder on the way to a path we are about to use (the Windows
/// form of Unix's "no folder every user may write without the sticky bit").
/// Entries that only apply to what is created inside do not count, nor
/// does the owner (`C:\` belongs to TrustedInstaller); a NULL DACL does.
pub fn check_unswappable(handle: RawHandle, me: &[u8]) -> io::Result<Result<(), String>> {
    read_security(handle, DACL_SECURITY_INFORMATION, |_, dacl| {
        dacl_bytes(dacl).and_then(|bytes| check_entries(bytes, me, SWAP, false))
    })
}

/// The DACL at `dacl` (inside a live descriptor) as bytes; NULL refused.
fn dacl_bytes<'a>(dacl: *const ACL) -> Result<&'a [u8], String> {
    if dacl.is_null() {
        return Err("it has no access list (a NULL DACL: everyone may change it)".into());
    }
    // SAFETY: a DACL starts with its 8-byte header, whose AclSize is the
    // number of bytes the OS allocated for it.
    let size = usize::from(unsafe { (*dacl).AclSize });
    if size < ACL_HEADER {
        return Err("its access list is damaged".into());
    }
    // SAFETY: as above, `size` bytes are readable at `dacl`, for as long as
    // the descriptor lives (the caller's closure).
    Ok(unsafe { std::slice::from_raw_parts(dacl.cast::<u8>(), size) })
}

/// Reads every entry of the DACL `acl` (bytes, header included), bounded
/// by its own sizes, and refuses one that lets someone else than `me` or a
/// trusted account have any of `rights`; entries only for what is created
/// inside count if `inherit_only_counts`.
fn check_entries(
    acl: &[u8],
    me: &[u8],
    rights: u32,
    inherit_only_counts: bool,
) -> Result<(), String> {
    let damaged = || "its access list is damaged".to_owned();
    let count = u16::from_le_bytes([acl[4], acl[5]]);
    let mut at = ACL_HEADER;
    for _ in 0..count {
        let header = acl.get(at..at + ACE_HEADER).ok_or_else(damaged)?;
        let (kind, flags, ace_size) = (
            header[0],
            header[1],
            usize::from(u16::from_le_bytes([header[2], header[3]])),
        );
        if ace_size < ACE_HEADER + 4 {
            return Err(damaged());
        }
        let ace = acl.get(at..at + ace_size).ok_or_else(damaged)?;
        at += ace_size;
        let sid_at = match kind {
            ACCESS_ALLOWED | ACCESS_ALLOWED_CALLBACK => 8,
            k if ACCESS_ALLOWED_OBJECT.contains(&k) => {
                let object_flags = ace.get(8..12).ok_or_else(damaged)?;
                // ACE_OBJECT_TYPE_PRESENT, ACE_INHERITED_OBJECT_TYPE_PRESENT:
                // a GUID each.
                12 + 16 * usize::from(object_flags[0] & 1)
                    + 16 * usize::from(object_flags[0] >> 1 & 1)
            }
            k if ACCESS_DENIED.contains(&k) => continue,
            _ => {
                return Err(format!(
                    "its access list has an access rule this check cannot read (type {kind})"
                ));
            }
        };
        if flags & INHERIT_ONLY != 0 && !inherit_only_counts {
            continue;
        }
        let mask = u32::from_le_bytes([ace[4], ace[5], ace[6], ace[7]]);
        let sid = sid_in(ace.get(sid_at..).ok_or_else(damaged)?).ok_or_else(damaged)?;
        let trusted = is_trusted(sid, me) || sid == CREATOR_OWNER || sid == OWNER_RIGHTS;
        if mask & rights != 0 && !trusted {
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

    fn check_entries_private(acl: &[u8], me: &[u8]) -> Result<(), String> {
        check_entries(acl, me, CHANGE, true)
    }

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
        assert_eq!(check_entries_private(&private_dacl(ME), ME), Ok(()));
        // Others may read and list.
        let read = with_entry(ACCESS_ALLOWED, 0, 0x0012_00A9, USERS);
        assert_eq!(check_entries_private(&read, ME), Ok(()));
        // A denying entry takes away; it never makes a folder unsafe.
        let deny = with_entry(1, 0, 0x1F_01FF, EVERYONE);
        assert_eq!(check_entries_private(&deny, ME), Ok(()));
    }

    #[test]
    fn any_change_by_others_is_refused() {
        for mask in [
            0x0002,      // add a file
            0x0004,      // add a folder
            0x0010,      // write extended attributes
            0x0100,      // write attributes
            0x0040,      // delete a child
            0x0001_0000, // delete or rename it
            0x0004_0000, // change the DACL
            0x0008_0000, // take ownership
            0x1000_0000, // generic all
            0x4000_0000, // generic write
        ] {
            let acl = with_entry(ACCESS_ALLOWED, 0, mask, EVERYONE);
            let refused = check_entries_private(&acl, ME).expect_err("refused");
            assert!(
                refused.contains("S-1-1-0 (Everyone)"),
                "{mask:#x}: {refused}"
            );
        }
        // Inherit-only: it would give others what we create inside.
        let inherited = with_entry(ACCESS_ALLOWED, 0x0B, 0x0002, USERS);
        let refused = check_entries_private(&inherited, ME).expect_err("inherited");
        assert!(refused.contains("S-1-5-32-545 (Users)"), "{refused}");
    }

    /// An object entry (types 5 and 11): mask, flags, the GUIDs the flags
    /// announce, then the SID.
    fn object_entry(kind: u8, object_flags: u8, mask: u32, sid: &[u8]) -> Vec<u8> {
        let guids = 16 * object_flags.count_ones() as usize;
        let mut body = Vec::new();
        body.extend_from_slice(&[object_flags, 0, 0, 0]);
        body.extend_from_slice(&vec![0xAB; guids]);
        body.extend_from_slice(sid);
        // with_entry appends `body` where a plain entry has its SID.
        with_entry(kind, 0, mask, &body)
    }

    #[test]
    fn access_rules_are_read_from_an_allow_list_of_types() {
        // Allowing entries of every layout read here grant what they say.
        for kind in [ACCESS_ALLOWED, ACCESS_ALLOWED_CALLBACK] {
            let write = with_entry(kind, 0, 0x0002, EVERYONE);
            let refused = check_entries_private(&write, ME).expect_err("type {kind}");
            assert!(refused.contains("S-1-1-0 (Everyone)"), "{kind}: {refused}");
            let read = with_entry(kind, 0, 0x0012_00A9, EVERYONE);
            assert_eq!(check_entries_private(&read, ME), Ok(()), "{kind}");
        }
        for kind in ACCESS_ALLOWED_OBJECT {
            for object_flags in [0, 1, 2, 3] {
                let write = object_entry(kind, object_flags, 0x0002, USERS);
                let refused = check_entries_private(&write, ME).expect_err("object");
                assert!(
                    refused.contains("S-1-5-32-545 (Users)"),
                    "{kind}/{object_flags}: {refused}"
                );
                let read = object_entry(kind, object_flags, 0x0012_00A9, USERS);
                assert_eq!(check_entries_private(&read, ME), Ok(()));
            }
        }
        // Denying entries of every layout only take access away.
        for kind in ACCESS_DENIED {
            let deny = with_entry(kind, 0, 0x001F_01FF, EVERYONE);
            assert_eq!(check_entries_private(&deny, ME), Ok(()), "{kind}");
        }
        // A compound entry (type 4), audit and alarm entries, a label, and
        // types no one has defined yet: refused, never skipped.
        for kind in [
            4, 2, 3, 7, 8, 13, 14, 15, 16, 0x11, 0x12, 0x13, 0x14, 0x15, 0x42, 0xFF,
        ] {
            let entry = with_entry(kind, 0, 0x0001, EVERYONE);
            let refused = check_entries_private(&entry, ME).expect_err("refused");
            assert!(
                refused.contains("an access rule this check cannot read"),
                "{kind}: {refused}"
            );
        }
    }

    #[test]
    fn a_folder_on_a_path_is_refused_only_if_others_may_swap_what_it_holds() {
        let swap = |acl: &[u8]| check_entries(acl, ME, SWAP, false);
        // Others may add entries (C:\ lets Authenticated Users create
        // folders), or write what is there: no swap.
        let add = with_entry(ACCESS_ALLOWED, 0, 0x0012_01BF, USERS);
        assert_eq!(swap(&add), Ok(()));
        // Entries only for what is created inside describe other objects.
        let inherit_only = with_entry(ACCESS_ALLOWED, 0x0B, 0x001F_01FF, USERS);
        assert_eq!(swap(&inherit_only), Ok(()));
        // Deleting (renaming) it, deleting its children, or taking the
        // right to: refused.
        for mask in [0x0040, 0x0001_0000, 0x0004_0000, 0x0008_0000, 0x1000_0000] {
            let acl = with_entry(ACCESS_ALLOWED, 0, mask, EVERYONE);
            assert!(swap(&acl).is_err(), "{mask:#x}");
        }
        // Our own folders pass; so does "Modify" given to us alone.
        assert_eq!(swap(&private_dacl(ME)), Ok(()));
    }

    #[test]
    fn a_damaged_dacl_is_refused_without_reading_past_it() {
        let mut acl = with_entry(ACCESS_ALLOWED, 0, 0x0001, EVERYONE);
        // One entry more than the bytes hold.
        acl[4] += 1;
        assert!(check_entries_private(&acl, ME).is_err());
        // An entry whose size runs past the end.
        let mut acl = private_dacl(ME);
        acl[ACL_HEADER + 2] = 0xff;
        assert!(check_entries_private(&acl, ME).is_err());
        // A SID that claims more sub-authorities than its entry holds.
        let mut acl = with_entry(ACCESS_ALLOWED, 0, 0x0001, EVERYONE);
        let last_sid = acl.len() - EVERYONE.len();
        acl[last_sid + 1] = 15;
        assert!(check_entries_private(&acl, ME).is_err());
    }

    #[test]
    fn sids_read_as_users_write_them() {
        assert_eq!(describe(EVERYONE), "S-1-1-0 (Everyone)");
        assert_eq!(describe(ME), "S-1-5-21-1-2-3-1000");
        assert!(is_trusted(SYSTEM, ME) && is_trusted(ADMINISTRATORS, ME));
        assert!(!is_trusted(USERS, ME));
    }
}
