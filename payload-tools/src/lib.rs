//! The onefile packed-executable format.
//!
//! A packed executable is `[stub][payload][metadata][trailer]` (byte-exact
//! description in `docs/format.md`). This crate owns every piece of it:
//!
//! - [`trailer`]: the fixed-size trailer at the end of the file;
//! - [`metadata`]: the TOML block describing the app and its frames;
//! - [`packed`]: opening a packed file and checking both;
//! - [`pack`]: writing one from an app and a stub;
//! - [`extract`]: unpacking (or only checking) the payload, safely, with
//!   [`members`] (one tar member's rules) and [`namespace`] (the rules
//!   between members, the same for a check and a real unpack);
//! - [`manifest`]: `update.toml` and the update URL spec;
//! - [`version`]: which of two versions is newer;
//! - [`site`]: a release site, the folder `payload-tools publish` keeps
//!   for a static host;
//! - [`pe`]: the subsystem field of a Windows program's header, which
//!   `pack` sets in the packed file's copy of a Windows stub;
//! - [`filetimes`]: the files' modification times, kept out of the
//!   frames in a table of their own;
//! - [`delta`]: what an update from one build to another fetches and what
//!   it copies from the old build;
//! - [`dictionary`]: the zstd dictionary a payload's frames may share,
//!   stored once as its first part;
//! - [`digest`]: the hash naming the stub and each frame, for updates
//!   that fetch only what changed;
//! - [`stub`]: the marker that tells a onefile stub from other programs;
//! - [`stub_check`]: what a stub's bytes say (format, self-test, target),
//!   shared with the build script that embeds stubs into `payload-tools`;
//! - [`text`]: text from files and servers, escaped for printing;
//! - [`frames`], [`tree`], [`paths`], [`persist`]: the pieces those use.
//!
//! The stub depends on this crate with default features off, which leaves
//! out everything only the `payload-tools` command needs.

pub mod delta;
pub mod dictionary;
pub mod digest;
pub mod duration;
pub mod error;
pub mod extract;
pub mod filetimes;
pub mod frames;
pub mod manifest;
pub mod members;
pub mod metadata;
pub mod namespace;
pub mod pack;
pub mod packed;
pub mod paths;
pub mod pe;
pub mod persist;
pub mod rangeio;
#[cfg(feature = "cli")]
pub mod site;
pub mod stub;
pub mod stub_check;
pub mod sys;
pub mod text;
pub mod trailer;
pub mod tree;
pub mod version;

pub use error::{EntryProblem, Error, Result};
pub use metadata::Metadata;
pub use packed::PackedFile;
pub use trailer::Trailer;
