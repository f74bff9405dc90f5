//! The namespace of an unpacked tree: every path a payload creates and what
//! it is, in one map that a real unpack and a check (`verify`, the updater)
//! both fill, entry by entry, from every frame and thread. It owns the rules
//! that relate entries to each other:
//!
//! - a path is created once (a folder may be listed again);
//! - a path is a file, a folder or a symlink, never two of them: a file
//!   below a file, or a file where other entries make a folder, is refused;
//! - nothing is created below a symlink, so nothing is written through one;
//! - a hard link names a regular file that comes before it in the payload
//!   (never a folder, a symlink or another hard link, never itself or a
//!   later entry), and a file has at most [`MAX_LINKS_PER_FILE`] of them
//!   ([`Namespace::check_hard_link`], once every frame is read);
//! - the app's entry resolves, following symlinks inside the tree (at most
//!   40, as the kernel would), to a regular file with an execute bit.
//!
//! Frames are decoded in parallel, so entries arrive in any order: each rule
//! is checked whichever of two conflicting entries comes first. The outcome
//! never depends on the order, only the wording of the refusal may.
//!
//! The map is bounded ([`MAX_NAMESPACE_BYTES`]), so a payload of countless
//! deep, distinct paths is refused instead of filling memory.

use std::collections::HashMap;

use crate::error::EntryProblem;

/// Largest memory the map may take, counted as each path's and symlink
/// target's bytes plus `NODE_COST` per path. A real app of a million
/// files with 100-byte paths needs about 200 MiB; one of 100,000 files,
/// about 20 MiB.
pub const MAX_NAMESPACE_BYTES: usize = 256 << 20;

/// What one path costs in the map besides its bytes: the table slot, the
/// allocation, and the table's spare capacity.
const NODE_COST: usize = 96;

/// Symlinks followed to resolve the entry, as Linux's `MAXSYMLINKS`.
const MAX_LINK_HOPS: usize = 40;

/// Most hard links to one file: NTFS allows 1,024 names per file, ext4
/// 65,000, so a payload that any cache can hold has at most 1,023 links
/// to a file besides its own name.
pub const MAX_LINKS_PER_FILE: usize = 1023;
// Spelled out in `LinkProblem::TooMany`'s message.
const _: () = assert!(MAX_LINKS_PER_FILE == 1023);

/// Where an entry is in the payload: frames in order, entries in order
/// within a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub frame: u32,
    pub index: u32,
}

/// What a path of the tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A folder, listed as such or holding other entries.
    Dir,
    /// A regular file; `executable` when any execute bit is set; `links`,
    /// the hard links to it checked so far.
    File {
        executable: bool,
        at: Position,
        links: u16,
    },
    /// A symlink with its target (relative, checked to stay inside).
    Symlink(Box<str>),
    /// Another name of the regular file at its target (a member path),
    /// checked by [`Namespace::check_hard_link`].
    HardLink(Box<str>),
}

/// Why a hard link is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkProblem {
    Missing,
    NotAFile,
    Later,
    TooMany,
}

impl std::fmt::Display for LinkProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkProblem::Missing => "its hard-link target is not in the payload",
            LinkProblem::NotAFile => "its hard-link target is not a regular file",
            LinkProblem::Later => "its hard-link target does not come before it",
            LinkProblem::TooMany => "its hard-link target has more than 1023 links",
        })
    }
}

/// Why an entry does not fit the tree built so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The same file or symlink appears twice.
    Twice,
    /// One path would be a file and a folder.
    FileAndFolder,
    /// Above this entry is `ancestor`, which is a file.
    BelowFile { ancestor: String },
    /// This entry would be created through the symlink `ancestor`.
    BelowSymlink { ancestor: String },
    /// A symlink at a path that other entries make a folder: they would be
    /// created through it.
    SymlinkOverFolder,
    /// The map would outgrow [`MAX_NAMESPACE_BYTES`].
    TooLarge,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conflict::Twice => write!(f, "it appears twice"),
            Conflict::FileAndFolder => write!(f, "it is a file and a folder"),
            Conflict::BelowFile { ancestor } => {
                write!(f, "'{ancestor}' above it is a file and a folder")
            }
            Conflict::BelowSymlink { ancestor } => {
                write!(f, "it would be created through a symlink ('{ancestor}')")
            }
            Conflict::SymlinkOverFolder => write!(
                f,
                "it is a symlink and a folder: the entries below it would be created through a symlink"
            ),
            Conflict::TooLarge => write!(
                f,
                "the payload's paths need more than {} MiB to check",
                MAX_NAMESPACE_BYTES >> 20
            ),
        }
    }
}

/// Every path of one payload. Wrap it in a mutex to share it between the
/// threads that decode frames.
#[derive(Debug)]
pub struct Namespace {
    nodes: HashMap<Box<str>, Node>,
    used: usize,
    budget: usize,
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace::with_budget(MAX_NAMESPACE_BYTES)
    }
}

impl Namespace {
    /// An empty namespace of at most `budget` bytes (see
    /// [`MAX_NAMESPACE_BYTES`]).
    pub fn with_budget(budget: usize) -> Namespace {
        Namespace {
            nodes: HashMap::new(),
            used: 0,
            budget,
        }
    }

    /// Adds the entry at `path` (a member path checked by
    /// [`crate::paths::check_member_path`]), and the folders above it, or
    /// says why it does not fit.
    pub fn add(&mut self, path: &str, node: Node) -> Result<(), Conflict> {
        if let Some(existing) = self.nodes.get(path) {
            return match (existing, &node) {
                (Node::Dir, Node::Dir) => Ok(()),
                (Node::Dir, Node::File { .. } | Node::HardLink(_))
                | (Node::File { .. } | Node::HardLink(_), Node::Dir) => {
                    Err(Conflict::FileAndFolder)
                }
                (Node::Dir, Node::Symlink(_)) | (Node::Symlink(_), Node::Dir) => {
                    Err(Conflict::SymlinkOverFolder)
                }
                _ => Err(Conflict::Twice),
            };
        }
        // Deepest first, up to the first folder already known: every path
        // in the map has all its ancestors in it, as folders, so the walk
        // stops there and costs one lookup for most entries.
        let mut missing = Vec::new();
        let mut at = path;
        while let Some((parent, _)) = at.rsplit_once('/') {
            match self.nodes.get(parent) {
                Some(Node::Dir) => break,
                Some(Node::File { .. } | Node::HardLink(_)) => {
                    return Err(Conflict::BelowFile {
                        ancestor: parent.to_owned(),
                    });
                }
                Some(Node::Symlink(_)) => {
                    return Err(Conflict::BelowSymlink {
                        ancestor: parent.to_owned(),
                    });
                }
                None => missing.push(parent),
            }
            at = parent;
        }
        let target_len = match &node {
            Node::Symlink(target) | Node::HardLink(target) => target.len(),
            _ => 0,
        };
        let cost = missing.iter().map(|p| p.len() + NODE_COST).sum::<usize>()
            + path.len()
            + target_len
            + NODE_COST;
        if self.used.saturating_add(cost) > self.budget {
            return Err(Conflict::TooLarge);
        }
        self.used += cost;
        for parent in missing {
            self.nodes.insert(parent.into(), Node::Dir);
        }
        self.nodes.insert(path.into(), node);
        Ok(())
    }

    /// Checks the hard link `path` at `at` to `target` once every entry is
    /// in the map. Links are checked in payload order, so that the refusal
    /// of a file with too many links names the same link every time.
    pub fn check_hard_link(&mut self, target: &str, at: Position) -> Result<(), LinkProblem> {
        match self.nodes.get_mut(target) {
            None => Err(LinkProblem::Missing),
            Some(Node::File {
                at: file_at, links, ..
            }) if *file_at < at => {
                if usize::from(*links) >= MAX_LINKS_PER_FILE {
                    return Err(LinkProblem::TooMany);
                }
                *links += 1;
                Ok(())
            }
            Some(Node::File { .. }) => Err(LinkProblem::Later),
            Some(_) => Err(LinkProblem::NotAFile),
        }
    }

    /// Checks that `entry` (a path checked by
    /// [`crate::metadata::check_entry_path`]) is a regular file with an
    /// execute bit, following symlinks inside the tree. Targets were checked
    /// lexically to stay inside, and each is resolved from the real folder
    /// that holds its link, so resolution never leaves the tree.
    pub fn check_entry(&self, entry: &str) -> Result<(), EntryProblem> {
        // Components still to walk, the next one last.
        let mut todo: Vec<&str> = entry.rsplit('/').collect();
        // The real folder reached so far ("" is the top of the tree).
        let mut at = String::new();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match part {
                "" | "." => continue,
                ".." => {
                    match at.rfind('/') {
                        Some(slash) => at.truncate(slash),
                        None if !at.is_empty() => at.clear(),
                        // Unreachable for checked targets; refuse anyway.
                        None => return Err(EntryProblem::Missing),
                    }
                    continue;
                }
                _ => {}
            }
            let path = if at.is_empty() {
                part.to_owned()
            } else {
                format!("{at}/{part}")
            };
            let node = match self.nodes.get(path.as_str()) {
                // Checked: a hard link's target is a regular file.
                Some(Node::HardLink(target)) => self.nodes.get(&**target),
                node => node,
            };
            match node {
                None => return Err(EntryProblem::Missing),
                Some(Node::Dir) => at = path,
                Some(Node::File { executable, .. }) => {
                    return match (todo.is_empty(), executable) {
                        // A file used as a folder (even `file/.`): the
                        // kernel finds nothing there either.
                        (false, _) => Err(EntryProblem::Missing),
                        (true, true) => Ok(()),
                        (true, false) => Err(EntryProblem::NotExecutable),
                    };
                }
                Some(Node::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(EntryProblem::TooManyLinks);
                    }
                    // The target replaces the link's name, from the link's
                    // own folder (`at`).
                    todo.extend(target.rsplit('/'));
                }
                Some(Node::HardLink(_)) => return Err(EntryProblem::Missing),
            }
        }
        Err(EntryProblem::Folder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(executable: bool) -> Node {
        Node::File {
            executable,
            at: Position { frame: 0, index: 0 },
            links: 0,
        }
    }

    fn link(target: &str) -> Node {
        Node::Symlink(target.into())
    }

    /// Adds `entries` in order; the first conflict, with its index.
    fn build(entries: &[(&str, Node)]) -> Result<Namespace, (usize, Conflict)> {
        let mut ns = Namespace::default();
        for (i, (path, node)) in entries.iter().enumerate() {
            ns.add(path, node.clone()).map_err(|c| (i, c))?;
        }
        Ok(ns)
    }

    /// Both orders of two entries give the same outcome.
    fn both_orders(a: (&str, Node), b: (&str, Node)) -> bool {
        let one = build(&[a.clone(), b.clone()]).is_ok();
        let other = build(&[b, a]).is_ok();
        assert_eq!(one, other, "the order changed the outcome");
        one
    }

    #[test]
    fn a_real_tree_fits() -> Result<(), Box<dyn std::error::Error>> {
        let ns = build(&[
            ("bin", Node::Dir),
            ("bin/app", file(true)),
            ("lib", Node::Dir),
            ("lib/libz.so.1", file(false)),
            ("lib/libz.so", link("libz.so.1")),
            ("lib", Node::Dir),
        ])
        .map_err(|(i, c)| format!("entry {i} does not fit: {c:?}"))?;
        assert_eq!(ns.check_entry("bin/app"), Ok(()));
        Ok(())
    }

    #[test]
    fn folders_are_implied_by_their_contents() {
        let ns = build(&[("a/b/c", file(true)), ("a", Node::Dir)]);
        assert!(ns.is_ok());
        assert!(both_orders(("a/b/c", file(true)), ("a/b", Node::Dir)));
    }

    #[test]
    fn every_conflict_is_refused_in_either_order() {
        let cases = [
            (("x", file(false)), ("x", file(true))),
            (("x", link("y")), ("x", link("z"))),
            (("x", link("y")), ("x", file(false))),
            (("x", file(false)), ("x", Node::Dir)),
            (("x", file(false)), ("x/y", file(false))),
            (("x", file(false)), ("x/y/z", Node::Dir)),
            (("x", link("d")), ("x/y", file(false))),
            (("x", link("d")), ("x/y/z", link("w"))),
            (("x", link("d")), ("x", Node::Dir)),
        ];
        for (a, b) in cases {
            assert!(!both_orders(a.clone(), b.clone()), "{a:?} then {b:?}");
        }
    }

    #[test]
    fn conflicts_are_named() {
        let err = |entries: &[(&str, Node)]| build(entries).err().map(|(_, c)| c);
        assert_eq!(
            err(&[("x", file(false)), ("x", file(false))]),
            Some(Conflict::Twice)
        );
        assert_eq!(
            err(&[("x", file(false)), ("x/y", file(false))]),
            Some(Conflict::BelowFile {
                ancestor: "x".into()
            })
        );
        assert_eq!(
            err(&[("x/y", file(false)), ("x", file(false))]),
            Some(Conflict::FileAndFolder)
        );
        assert_eq!(
            err(&[("l", link("d")), ("l/f", file(false))]),
            Some(Conflict::BelowSymlink {
                ancestor: "l".into()
            })
        );
        assert_eq!(
            err(&[("l/f", file(false)), ("l", link("d"))]),
            Some(Conflict::SymlinkOverFolder)
        );
    }

    #[test]
    fn the_entry_must_be_an_executable_file() -> Result<(), Box<dyn std::error::Error>> {
        let ns = build(&[
            ("bin/app", file(true)),
            ("bin/data", file(false)),
            ("bin/up", link("../libexec/app")),
            ("bin/dot", link(".")),
            ("libexec/app", file(true)),
            ("top", link("bin")),
            ("loop", link("loop")),
            ("ping", link("pong")),
            ("pong", link("ping")),
            ("dangling", link("nowhere")),
            ("to-data", link("bin/data")),
            ("file-dot", link("bin/app/.")),
        ])
        .map_err(|(i, c)| format!("entry {i} does not fit: {c:?}"))?;
        for ok in [
            "bin/app",
            "bin/up",
            "top/app",
            "top/up",
            "bin/dot/app",
            "libexec/app",
        ] {
            assert_eq!(ns.check_entry(ok), Ok(()), "{ok}");
        }
        for (bad, problem) in [
            ("bin/missing", EntryProblem::Missing),
            ("nothing/app", EntryProblem::Missing),
            ("bin/app/x", EntryProblem::Missing),
            ("file-dot", EntryProblem::Missing),
            ("dangling", EntryProblem::Missing),
            ("bin", EntryProblem::Folder),
            ("top", EntryProblem::Folder),
            ("bin/dot", EntryProblem::Folder),
            ("bin/data", EntryProblem::NotExecutable),
            ("to-data", EntryProblem::NotExecutable),
            ("loop", EntryProblem::TooManyLinks),
            ("ping", EntryProblem::TooManyLinks),
        ] {
            assert_eq!(ns.check_entry(bad), Err(problem), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn memory_is_bounded() -> Result<(), Box<dyn std::error::Error>> {
        let mut ns = Namespace::with_budget(64 * 1024);
        // Deep, distinct paths: each brings dozens of new folders.
        let mut refused = None;
        for i in 0..1000 {
            let path = format!("{i}/{}", vec!["d"; 100].join("/"));
            if let Err(c) = ns.add(&path, file(false)) {
                refused = Some((i, c));
                break;
            }
        }
        let (i, conflict) = refused.ok_or("not refused before the end")?;
        assert_eq!(conflict, Conflict::TooLarge);
        assert!(i < 10, "refused only after {i} entries");
        assert!(ns.used <= 64 * 1024);
        Ok(())
    }
}
