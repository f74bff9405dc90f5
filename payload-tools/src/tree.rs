//! Reading the input of `pack`: a directory tree or a single file, turned
//! into a sorted list of entries, with everything the format refuses
//! reported before a single byte is written.
//!
//! Each file keeps what apps rely on: its execute and write bits and its
//! modification time. A file with several names in the tree (hard links,
//! seen on Unix by device and inode) is stored once, at its first name in
//! payload order; its other names become [`EntryKind::HardLink`]s to it,
//! at most [`MAX_LINKS_PER_FILE`] of them (further names are stored as
//! copies).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::filetimes::table_time;
use crate::namespace::MAX_LINKS_PER_FILE;
use crate::paths::{check_member_path, check_symlink_target};
use crate::sys;

/// What one entry of the input is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
        executable: bool,
        /// No write bit at all (Unix), or the read-only attribute (Windows).
        read_only: bool,
        /// Modification time, whole seconds after 1970.
        mtime: u64,
    },
    Symlink {
        target: String,
    },
    /// Another name of the regular file stored at `target` (a member path
    /// earlier in payload order).
    HardLink {
        target: String,
    },
}

/// One entry of the input, with its `/`-separated path inside the payload.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    pub member: String,
    pub source: PathBuf,
    pub kind: EntryKind,
}

/// The scanned input.
#[derive(Debug)]
pub struct InputTree {
    /// Entries in payload order: depth-first, names sorted bytewise.
    pub entries: Vec<TreeEntry>,
    /// Set when the input was one file rather than a directory.
    pub single_file: Option<String>,
    /// Sum of the regular files' sizes (each file once, whatever its
    /// number of names).
    pub total_size: u64,
    /// First name and count of extra names of each file with several,
    /// by its identity (device, inode).
    seen: HashMap<(u64, u64), (String, usize)>,
}

impl InputTree {
    /// Scans `input`, a directory or a single file.
    pub fn scan(input: &Path) -> Result<InputTree> {
        let meta = fs::metadata(input).map_err(Error::io("cannot read", input))?;
        if meta.is_file() {
            let name = utf8_name(input, input.file_name())?;
            check_member_path(&name).map_err(|reason| Error::Input {
                path: input.into(),
                reason: format!("{reason}; rename it"),
            })?;
            return Ok(InputTree {
                total_size: meta.len(),
                entries: vec![TreeEntry {
                    member: name.clone(),
                    source: input.into(),
                    kind: EntryKind::File {
                        size: meta.len(),
                        executable: true,
                        read_only: meta.permissions().readonly(),
                        mtime: mtime_of(&meta),
                    },
                }],
                single_file: Some(name),
                seen: HashMap::new(),
            });
        }
        if !meta.is_dir() {
            return Err(Error::Input {
                path: input.into(),
                reason: "it is neither a directory nor a regular file".into(),
            });
        }
        let mut tree = InputTree {
            entries: Vec::new(),
            single_file: None,
            total_size: 0,
            seen: HashMap::new(),
        };
        tree.walk(input, "")?;
        Ok(tree)
    }

    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut children = Vec::new();
        for item in fs::read_dir(dir).map_err(Error::io("cannot list", dir))? {
            let item = item.map_err(Error::io("cannot list", dir))?;
            let path = item.path();
            let name = utf8_name(&path, Some(&item.file_name()))?;
            children.push((name, path));
        }
        children.sort();
        for (name, path) in children {
            let member = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            // Readers refuse what this refuses (a backslash, a name or path
            // too long to unpack anywhere): better now than in every launch.
            check_member_path(&member).map_err(|reason| Error::Input {
                path: path.clone(),
                reason: format!("{reason}; rename it"),
            })?;
            let meta = fs::symlink_metadata(&path).map_err(Error::io("cannot read", &path))?;
            let file_type = meta.file_type();
            if file_type.is_symlink() {
                let target = fs::read_link(&path).map_err(Error::io("cannot read link", &path))?;
                let target = target.to_str().ok_or_else(|| Error::Input {
                    path: path.clone(),
                    reason: "the symlink target is not UTF-8".into(),
                })?;
                check_symlink_target(&member, target).map_err(|reason| Error::Input {
                    path: path.clone(),
                    reason: format!(
                        "{reason} ('{target}'); a packed app may only link inside itself, copy the file in instead"
                    ),
                })?;
                self.entries.push(TreeEntry {
                    member,
                    source: path,
                    kind: EntryKind::Symlink {
                        target: target.to_owned(),
                    },
                });
            } else if file_type.is_dir() {
                self.entries.push(TreeEntry {
                    member: member.clone(),
                    source: path.clone(),
                    kind: EntryKind::Dir,
                });
                self.walk(&path, &member)?;
            } else if file_type.is_file() {
                if let Some(target) = self.earlier_name(&member, &meta) {
                    self.entries.push(TreeEntry {
                        member,
                        kind: EntryKind::HardLink { target },
                        source: path,
                    });
                    continue;
                }
                self.total_size += meta.len();
                self.entries.push(TreeEntry {
                    member,
                    kind: EntryKind::File {
                        size: meta.len(),
                        executable: sys::is_executable(&meta),
                        read_only: meta.permissions().readonly(),
                        mtime: mtime_of(&meta),
                    },
                    source: path,
                });
            } else {
                return Err(Error::Input {
                    path,
                    reason: "it is a device, socket or fifo; only files, directories and symlinks can be packed".into(),
                });
            }
        }
        Ok(())
    }

    /// The first name of the file at `member` if it has one earlier in the
    /// tree and may take another link; else remembers `member` as its
    /// first name.
    fn earlier_name(&mut self, member: &str, meta: &fs::Metadata) -> Option<String> {
        let id = sys::hard_link_identity(meta)?;
        match self.seen.get_mut(&id) {
            Some((first, links)) if *links < MAX_LINKS_PER_FILE => {
                *links += 1;
                Some(first.clone())
            }
            Some(_) => None,
            None => {
                self.seen.insert(id, (member.to_owned(), 0));
                None
            }
        }
    }

    /// Looks an entry up by its member path.
    pub fn find(&self, member: &str) -> Option<&TreeEntry> {
        self.entries.iter().find(|e| e.member == member)
    }
}

fn mtime_of(meta: &fs::Metadata) -> u64 {
    meta.modified().map_or(0, table_time)
}

fn utf8_name(path: &Path, name: Option<&std::ffi::OsStr>) -> Result<String> {
    name.and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::Input {
            path: path.into(),
            reason: "its name is not valid UTF-8; rename it".into(),
        })
}
