//! Unix: the check of the cache root's path, and folders held as
//! descriptors.
//!
//! The rules, for every folder from `/` down to the root, and every
//! symlink on the way:
//! - it belongs to us or to root (a folder's owner can rename anything in
//!   it; a symlink cannot be changed, only replaced, which its folder's
//!   rules cover);
//! - no other user may write to a folder: not every user (mode `o+w`), not
//!   a group with a member other than us and root (`g+w`; a group of one,
//!   the user's private group with a umask of 002, is fine). A sticky folder
//!   (`/tmp`) is the exception, except for the root itself: there only an
//!   entry's owner may rename or delete it, and the next folder or symlink,
//!   checked in turn, must be ours or root's.
//!
//! The root itself must be ours. POSIX ACLs are not inspected (sshd does not
//! either).
//!
//! The walk looks each folder up by its path, from the top down: that is
//! enough, because each folder is checked before anything below it is
//! looked up, and once a folder is known to be changeable only by us or
//! root, the next lookup through it cannot be redirected by anyone else.
//! (It is also what keeps a warm start fast: an `lstat` per folder costs
//! less than an `open` and a `close`.) The app's folder itself is then
//! opened once, checked on its descriptor, and used through it.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::DirError;
use super::accounts::Accounts;
use crate::sys::{FileId, euid};

/// Symlinks followed before giving up, as the kernel does.
const MAX_LINKS: u32 = 40;

/// A folder held open. Names below it are looked up from the descriptor,
/// so a rename of the folder itself, or of any folder above it, does not
/// change what they mean.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// Checks the cache root `path` (absolute) and every folder and symlink on
/// the way from `/` (see the module doc), creating missing folders (mode
/// 0700). Returns the root's physical path: the same folder, reached
/// without symlinks.
pub fn check_cache_root(path: &Path) -> Result<PathBuf, DirError> {
    let mut walk = Walk {
        // SAFETY: geteuid has no preconditions and cannot fail.
        me: unsafe { libc::geteuid() },
        here: PathBuf::new(),
        accounts: None,
    };
    match walk.run(path) {
        Ok(()) => Ok(walk.here),
        Err(Refusal::Io(source)) => Err(DirError::Io {
            path: walk.here,
            source,
        }),
        Err(Refusal::Unsafe(reason)) => Err(DirError::Unsafe {
            path: path.to_owned(),
            reason,
        }),
    }
}

struct Walk {
    me: libc::uid_t,
    /// The physical path of what the walk looks at (named in errors).
    here: PathBuf,
    /// `/etc/passwd` and `/etc/group`, read only if a message or a
    /// group-writable folder needs them.
    accounts: Option<Accounts>,
}

/// Why the walk stopped.
enum Refusal {
    Io(io::Error),
    Unsafe(String),
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Refusal {
        Refusal::Io(e)
    }
}

impl Walk {
    fn run(&mut self, root: &Path) -> Result<(), Refusal> {
        if !root.is_absolute() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput).into());
        }
        // Components still to walk, the next one last; an absolute path
        // (the root's, or a symlink's target) starts with "/".
        let mut pending = Vec::new();
        push_components(&mut pending, root);
        let mut links = 0;
        while let Some(name) = pending.pop() {
            let last = pending.is_empty();
            if name == ".." {
                // Back to a folder checked on the way down; checked again
                // only if it is the root.
                self.here.pop();
                if !last {
                    continue;
                }
            } else {
                // "/" replaces the whole path.
                self.here.push(&name);
            }
            let path = c_string(self.here.as_os_str())?;
            let st = match fstat_at(libc::AT_FDCWD, &path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match mkdir_at(libc::AT_FDCWD, &path, 0o700) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e.into()),
                        _ => fstat_at(libc::AT_FDCWD, &path)?,
                    }
                }
                st => st?,
            };
            let kind = st.st_mode & libc::S_IFMT;
            self.check(&st, last && kind != libc::S_IFLNK)?;
            if kind == libc::S_IFLNK && links < MAX_LINKS {
                links += 1;
                let target = read_link(&path)?;
                self.here.pop();
                push_components(&mut pending, &target);
            } else if kind != libc::S_IFDIR {
                let errno = match kind {
                    libc::S_IFLNK => libc::ELOOP,
                    _ => libc::ENOTDIR,
                };
                return Err(io::Error::from_raw_os_error(errno).into());
            }
        }
        Ok(())
    }

    /// Checks what `st` describes (at `here`): a folder or symlink on the
    /// way must be ours or root's, the root (`last`) ours; a folder no one
    /// else may write, unless sticky on the way.
    fn check(&mut self, st: &libc::stat, last: bool) -> Result<(), Refusal> {
        let (uid, mode) = (st.st_uid, st.st_mode);
        let link = mode & libc::S_IFMT == libc::S_IFLNK;
        let which = |here: &Path| match last {
            true => "it".to_owned(),
            false => format!("'{}'", here.display()),
        };
        let reason = if uid != self.me && (last || uid != 0) {
            let owner = self.accounts().describe_user(uid);
            let (what, could) = match link {
                true => ("a symlink ", "point it anywhere"),
                false => ("", "put anything there"),
            };
            let which = which(&self.here);
            format!("{which} is {what}owned by {owner}, who could {could}")
        } else if link || (!last && mode & 0o1000 != 0) {
            return Ok(());
        } else if mode & 0o002 != 0 {
            let which = which(&self.here);
            format!("every user may write to {which} (mode {:o})", mode & 0o7777)
        } else if mode & 0o020 != 0 {
            let me = self.me;
            let Some(writers) = self.accounts().group_others(st.st_gid, me) else {
                return Ok(());
            };
            let which = which(&self.here);
            format!("{writers} may write to {which} (mode {:o})", mode & 0o7777)
        } else {
            return Ok(());
        };
        Err(Refusal::Unsafe(reason))
    }

    fn accounts(&mut self) -> &Accounts {
        self.accounts.get_or_insert_with(Accounts::load)
    }
}

/// Pushes the components of `path` on `pending`, the first one on top
/// ("/" for the root, `..` kept, `.` dropped).
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let start = pending.len();
    for part in path.components() {
        match part {
            Component::RootDir => pending.push("/".into()),
            Component::Normal(name) => pending.push(name.to_owned()),
            Component::ParentDir => pending.push("..".into()),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    pending[start..].reverse();
}

/// Opens the folder `path` (not through a symlink), creating it (0700) if
/// missing. It must be ours, and writable by no one else: whoever can write
/// it can change the app we run. `shown` names it in errors.
pub fn open_private_dir(path: &Path, shown: &Path) -> Result<Dir, DirError> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let opened = c_string(path.as_os_str()).and_then(|c_path| {
        let open = || open_at(libc::AT_FDCWD, &c_path, flags, 0);
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match mkdir_at(libc::AT_FDCWD, &c_path, 0o700) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                    _ => open(),
                }
            }
            opened => opened,
        }
    });
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let reason = match opened.and_then(|fd| Ok((fstat(fd.as_raw_fd())?, fd))) {
        // A symlink, with O_NOFOLLOW: ELOOP, or ENOTDIR with O_DIRECTORY.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            "it is not a folder (a symlink?)".to_owned()
        }
        Err(source) => {
            return Err(DirError::Io {
                path: shown.to_owned(),
                source,
            });
        }
        Ok((st, _)) if st.st_uid != me => {
            format!("it belongs to user {}, not to us ({me})", st.st_uid)
        }
        Ok((st, _)) if st.st_mode & 0o022 != 0 => {
            let mode = st.st_mode & 0o7777;
            format!("other users may write to it (mode {mode:o})")
        }
        Ok((_, fd)) => return Ok(Dir { fd }),
    };
    Err(DirError::Unsafe {
        path: shown.to_owned(),
        reason,
    })
}

impl Dir {
    /// Opens the folder `path`, not through a symlink at its last
    /// component, without checking who owns it (the updater holds the
    /// executable's folder this way and decides about it from [`Dir::id`]).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let fd = open_at(libc::AT_FDCWD, &c_string(path.as_os_str())?, flags, 0)?;
        Ok(Dir { fd })
    }

    /// A second handle on the same folder (for the updater's thread).
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }

    /// Who the folder is.
    pub fn id(&self) -> io::Result<FileId> {
        fstat(self.fd.as_raw_fd()).map(FileId::from_stat)
    }

    /// Creates the file `name` inside: exclusively (never an existing file,
    /// nor through a link), private (0600 from the start), for reading and
    /// writing.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let fd = open_at(
            self.fd.as_raw_fd(),
            &c_string(OsStr::new(name))?,
            flags,
            0o600,
        )?;
        Ok(File::from(fd))
    }

    /// Opens the file `name` inside for reading and writing (created 0600
    /// if `create`), not through a link, and makes sure it is a private
    /// file of ours: a regular file that we own, that no one else may read
    /// or write, with no other name (a hard link would let its other names
    /// see what we write).
    pub fn open_private(&self, name: &str, create: bool) -> io::Result<File> {
        let flags = libc::O_RDWR | libc::O_NOFOLLOW | if create { libc::O_CREAT } else { 0 };
        let fd = open_at(
            self.fd.as_raw_fd(),
            &c_string(OsStr::new(name))?,
            flags,
            0o600,
        )?;
        let id = fstat(fd.as_raw_fd()).map(FileId::from_stat)?;
        if !id.is_file() || id.uid != euid() || id.nlink != 1 || id.mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not a private file of ours",
            ));
        }
        Ok(File::from(fd))
    }

    /// Who `name` inside is (a link itself, not what it points to); `None`
    /// if nothing has that name.
    pub fn stat(&self, name: &str) -> io::Result<Option<FileId>> {
        match fstat_at(self.fd.as_raw_fd(), &c_string(OsStr::new(name))?) {
            Ok(st) => Ok(Some(FileId::from_stat(st))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Swaps the names `a` and `b` inside in one atomic step (Linux).
    #[cfg(target_os = "linux")]
    pub fn exchange(&self, a: &str, b: &str) -> io::Result<()> {
        let (a, b) = (c_string(OsStr::new(a))?, c_string(OsStr::new(b))?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid C strings relative to an open folder; the raw
        // system call, so that it works whatever the C library offers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                fd,
                a.as_ptr(),
                fd,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Creates the folder `name` inside, mode 0700; fails if anything is
    /// already there.
    pub fn create_dir(&self, name: &str) -> io::Result<()> {
        mkdir_at(self.fd.as_raw_fd(), &c_string(OsStr::new(name))?, 0o700)
    }

    /// Opens the regular file `name` inside for reading and writing,
    /// creating it (mode 0600) if missing, never through a symlink.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let c_name = c_string(OsStr::new(name))?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW;
        let fd = open_at(self.fd.as_raw_fd(), &c_name, flags, 0o600)?;
        Ok(File::from(fd))
    }

    /// Opens the file `name` inside for reading only, never through a
    /// symlink (the updater runs its verified download through such a
    /// handle: Linux refuses to execute a file open for writing).
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        let c_name = c_string(OsStr::new(name))?;
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW;
        let fd = open_at(self.fd.as_raw_fd(), &c_name, flags, 0)?;
        Ok(File::from(fd))
    }

    /// Whether the open `file` is the one now named `name` inside.
    pub fn holds(&self, file: &File, name: &str) -> io::Result<bool> {
        let open = fstat(file.as_raw_fd())?;
        match fstat_at(self.fd.as_raw_fd(), &c_string(OsStr::new(name))?) {
            Ok(now) => Ok(open.st_dev == now.st_dev && open.st_ino == now.st_ino),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether something (a symlink counts, unfollowed) is at `rel` inside.
    pub fn exists(&self, rel: &Path) -> bool {
        c_string(rel.as_os_str()).is_ok_and(|c| fstat_at(self.fd.as_raw_fd(), &c).is_ok())
    }

    /// Renames `from` to `to`, both inside.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_string(OsStr::new(from))?, c_string(OsStr::new(to))?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: both names are NUL-terminated and outlive the call; the
        // descriptor is ours and open.
        check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) })
    }

    /// Renames `from` over the file `to`: at once here, where an open file
    /// can be replaced (`patience` is for Windows, where it cannot).
    pub fn replace(&self, from: &str, to: &str, _patience: Duration) -> io::Result<()> {
        self.rename(from, to)
    }

    /// Gives the file `from` inside a second name `to` inside (never
    /// following a link; fails if `to` exists).
    pub fn hard_link(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_string(OsStr::new(from))?, c_string(OsStr::new(to))?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: both names are NUL-terminated and outlive the call; the
        // descriptor is ours and open.
        check(unsafe { libc::linkat(fd, from.as_ptr(), fd, to.as_ptr(), 0) })
    }

    /// Removes the file (or link) `name` inside, never what a link points to.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let name = c_string(OsStr::new(name))?;
        // SAFETY: the name is NUL-terminated and outlives the call.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) })
    }

    /// Makes the renames inside durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: fsync on a descriptor we own.
        check(unsafe { libc::fsync(self.fd.as_raw_fd()) })
    }
}

fn c_string(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `openat` with `O_CLOEXEC` always added.
fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: the name is NUL-terminated and outlives the call.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn mkdir_at(dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: the name is NUL-terminated and outlives the call.
    check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) })
}

/// `fstatat` of `name` in `dir`, not following a final symlink.
fn fstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the name is NUL-terminated, st points to writable memory of
    // the right type.
    check(unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat returned 0, so it filled the struct.
    Ok(unsafe { st.assume_init() })
}

/// The target of the symlink `path`.
fn read_link(path: &CStr) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the path is NUL-terminated; buf is writable for its length.
    let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let Ok(n) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    // PATH_MAX bytes or more: cut short.
    if n >= buf.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st points to writable memory of the right type.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so it filled the struct.
    Ok(unsafe { st.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn components_keep_parents_and_drop_dots() {
        let mut pending = vec![OsString::from("rest")];
        push_components(&mut pending, Path::new("/a/./b/../c"));
        let order: Vec<_> = pending.iter().rev().map(|s| s.to_string_lossy()).collect();
        assert_eq!(order, ["/", "a", "b", "..", "c", "rest"]);
    }

    /// A fresh folder of our own under the system's temporary folder.
    fn scratch(name: &str) -> io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("onefile-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        Ok(dir)
    }

    #[test]
    fn the_root_is_reached_through_our_links_and_created() -> Result<(), Box<dyn std::error::Error>>
    {
        use std::os::unix::fs::symlink;
        let s = scratch("root")?;
        std::fs::create_dir(s.join("real"))?;
        symlink("real/../real", s.join("link"))?;
        let root =
            check_cache_root(&s.join("link/./new/..//new")).map_err(|e| format!("root: {e:?}"))?;
        assert_eq!(root, s.canonicalize()?.join("real/new"));
        let meta = std::fs::metadata(&root)?;
        assert_eq!(meta.mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&s)?;
        Ok(())
    }

    #[test]
    fn private_files_are_created_0600_and_never_through_a_link()
    -> Result<(), Box<dyn std::error::Error>> {
        let s = scratch("files")?;
        let app = open_private_dir(&s.join("app"), Path::new("app"))
            .map_err(|e| format!("app: {e:?}"))?;
        let file = app.open_file(".lock")?;
        assert_eq!(file.metadata()?.mode() & 0o777, 0o600);
        assert!(app.holds(&file, ".lock")?);
        std::os::unix::fs::symlink("/etc/passwd", s.join("app/link"))?;
        let refused = app.open_file("link").expect_err("followed a link");
        assert_eq!(refused.raw_os_error(), Some(libc::ELOOP));
        std::fs::remove_dir_all(&s)?;
        Ok(())
    }

    #[test]
    fn a_linked_or_shared_app_folder_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let s = scratch("app")?;
        std::os::unix::fs::symlink(&s, s.join("link"))?;
        let linked = open_private_dir(&s.join("link"), Path::new("link"));
        assert!(matches!(linked, Err(DirError::Unsafe { .. })), "{linked:?}");
        std::fs::create_dir(s.join("shared"))?;
        let shared_mode = std::fs::Permissions::from_mode(0o770);
        std::fs::set_permissions(s.join("shared"), shared_mode)?;
        let shared = open_private_dir(&s.join("shared"), Path::new("shared"));
        assert!(matches!(shared, Err(DirError::Unsafe { .. })), "{shared:?}");
        std::fs::remove_dir_all(&s)?;
        Ok(())
    }

    #[test]
    fn a_symlink_loop_ends_in_an_error() -> Result<(), Box<dyn std::error::Error>> {
        let s = scratch("loop")?;
        std::os::unix::fs::symlink("loop", s.join("loop"))?;
        let looped = check_cache_root(&s.join("loop"));
        assert!(
            matches!(&looped, Err(DirError::Io { source, .. }) if source.raw_os_error() == Some(libc::ELOOP)),
            "{looped:?}"
        );
        std::fs::remove_dir_all(&s)?;
        Ok(())
    }
}
