//! The command line: clap definitions, and merging `--config onefile.toml`
//! with the flags (flags win).

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// Build, inspect and check onefile packed executables.
///
/// A packed executable is a small launcher (the `bootstrap` stub) followed by
/// your app, compressed. Users run it like any program: it unpacks itself
/// once into a per-user cache and starts your app.
#[derive(Debug, Parser)]
#[command(name = "payload-tools", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pack an app (a folder or a single program) into one executable.
    ///
    /// Example: payload-tools pack dist/myapp/ --entry bin/myapp --name myapp --version 1.0 -o myapp.bin
    Pack(Box<PackArgs>),
    /// Show what a packed executable contains.
    ///
    /// With --against OLD: what an installed OLD would fetch to update to
    /// this build (bytes and requests), before it is published.
    Inspect {
        /// The packed executable.
        exe: PathBuf,
        /// An earlier build: show the cost of an update from it to EXE.
        #[arg(long, value_name = "OLD")]
        against: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check every checksum and that the payload unpacks; exit 0 if intact.
    Verify {
        /// The packed executable.
        exe: PathBuf,
    },
    /// Unpack the app's files into a new folder, as the launcher would.
    Unpack {
        /// The packed executable.
        exe: PathBuf,
        /// Folder to create (must not exist, or be empty).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write the update.toml that announces an existing packed executable.
    UpdateToml {
        /// The packed executable being published.
        exe: PathBuf,
        /// URL the executable will be downloaded from.
        #[arg(long)]
        url: String,
        /// Where to write update.toml (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Also sign the executable with this minisign secret key and put the
        /// signature into update.toml.
        #[arg(long, value_name = "NAME.key")]
        key: Option<PathBuf>,
    },
    /// Create a signing key pair: NAME.key (secret, keep it in your CI's
    /// secrets) and NAME.pub (public, give it to `pack --public-key`).
    Keygen {
        /// Base name of the two files.
        #[arg(short, long, value_name = "NAME")]
        output: PathBuf,
    },
    /// Publish a build into a site folder for a static host: the build, every
    /// update.toml its installs fetch, signed with --key (docs/publishing.md).
    Publish(Box<crate::publish::PublishArgs>),
    /// Change the share of installs offered a site's latest release, halt or
    /// resume it; re-signs every manifest.
    Rollout(crate::publish::RolloutArgs),
    /// Re-sign every manifest of a site with a new sequence and expiry (a daily CI job).
    Refresh(crate::publish::RefreshArgs),
    /// List the stubs this payload-tools packs with: target, version, size
    /// and hash of each it carries, and the development stub used instead.
    Stubs,
    /// Sign a packed executable: writes EXE.minisig (checkable with `minisign -V`).
    Sign {
        /// The packed executable.
        exe: PathBuf,
        /// The minisign secret key.
        #[arg(long, value_name = "NAME.key")]
        key: PathBuf,
        /// Where to write the signature [default: EXE.minisig].
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The app: a folder (packed whole) or a single program.
    pub input: Option<PathBuf>,
    /// The packed executable to write.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The launcher stub [default: a 'bootstrap' binary next to
    /// payload-tools for its own target, else the stub it carries for
    /// --target: see 'payload-tools stubs'].
    #[arg(long)]
    pub stub: Option<PathBuf>,
    /// The platform the packed file runs on: x86_64-unknown-linux-gnu, or
    /// x86_64-pc-windows-gnu (also named x86_64-pc-windows-msvc or windows)
    /// [default: the one payload-tools runs on].
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// Program to run, relative to the folder, e.g. bin/myapp [default: the file named like --name].
    #[arg(long)]
    pub entry: Option<String>,
    /// App name, used for the cache folder [default: the output's file stem].
    #[arg(long)]
    pub name: Option<String>,
    /// Version of this build [default: 0.0.0].
    #[arg(long = "version", value_name = "VERSION")]
    pub app_version: Option<String>,
    /// What the app sees as argv[0]: 'packed', the packed file as it was
    /// started (default), or 'entry', the entry's real path in the cache,
    /// for programs that find their own files from argv[0] (e.g. a
    /// relocatable CPython packed with --entry bin/python3.11).
    #[arg(long, value_enum, value_name = "WHICH")]
    pub argv0: Option<Argv0Flag>,
    /// With a Windows stub: 'console' (Windows opens a console window when
    /// the packed file is not started from one), 'gui' (no console: for
    /// GUI apps), or 'auto' (default): 'gui' if the entry is a Windows GUI
    /// program, else 'console'. Other stubs: only 'auto', which does nothing.
    #[arg(long, value_enum, value_name = "WHICH")]
    pub windows_subsystem: Option<SubsystemFlag>,
    /// zstd compression level, 1 (fastest) to 19 (smallest) [default: 9].
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: Option<i32>,
    /// Compression threads [default: one per core].
    #[arg(long)]
    pub threads: Option<u32>,
    /// The build this one replaces (the packed file last published): its
    /// zstd dictionary is kept while it still compresses this app within
    /// 3% of a fresh one, so unchanged files keep identical frames and
    /// updates fetch only what changed.
    #[arg(long, value_name = "OLD.bin")]
    pub previous: Option<PathBuf>,
    /// Compress every frame on its own, without a shared zstd dictionary
    /// (by default one is trained from the app when it pays); the build
    /// then stays readable by stubs that predate dictionaries.
    #[arg(long, conflicts_with = "previous")]
    pub no_dictionary: bool,
    /// Read these settings from a TOML file (same keys as the flags, with _ for -).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// URL of the update.toml to check at each launch; turns self-update on.
    /// {VERSION}, {NAME}, {OS} and {ARCH} are expanded at run time. Give it
    /// again for fallback locations, tried in order when one fails.
    #[arg(long)]
    pub update_url_spec: Vec<String>,
    /// Time between two checks for updates, e.g. 1h or 1d [default: 0, at
    /// every launch].
    #[arg(long, value_name = "DURATION")]
    pub update_check_interval: Option<String>,
    /// Also write the update.toml that announces this build, here.
    #[arg(long)]
    pub auto_update_toml_file: Option<PathBuf>,
    /// URL this build will be downloaded from, for --auto-update-toml-file
    /// [default: the folder of the expanded --update-url-spec plus the output's file name].
    #[arg(long)]
    pub download_url: Option<String>,
    /// Seconds the launcher may wait, after the app exits, for an update under way before it hands
    /// the rest to a background updater (a host that has not answered is waited for 25 ms at most)
    /// [default: 5].
    #[arg(long)]
    pub update_exit_wait: Option<f64>,
    /// A newly installed build is on probation until the app has run this
    /// long, exited without crashing, or touched $ONEFILE_HEALTH_FILE
    /// [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub healthy_after: Option<String>,
    /// An exit code (1 to 255) that counts as a failed start of a build on
    /// probation, like a crash does; give it again for more.
    #[arg(long, value_name = "CODE")]
    pub unhealthy_exit_code: Vec<i32>,
    /// Failed starts in a row after which a newly installed build is rolled
    /// back to the one before it; 0 never rolls back [default: 3].
    #[arg(long, value_name = "K")]
    pub rollback_after: Option<u32>,
    /// The exit code (1 to 255) by which the app asks to be restarted on
    /// the updated build (or the same one if no update is ready).
    #[arg(long, value_name = "CODE")]
    pub restart_exit_code: Option<i32>,
    /// Install only updates signed by this minisign public key (NAME.pub);
    /// give it twice to roll keys over. Without it, updates are checked for
    /// corruption only, not authenticated.
    #[arg(long = "public-key", value_name = "NAME.pub")]
    pub public_keys: Vec<PathBuf>,
    /// Sign this build with this minisign secret key: the signature goes into
    /// the --auto-update-toml-file.
    #[arg(long, value_name = "NAME.key")]
    pub key: Option<PathBuf>,
    /// Let updates install a build whose version is not newer (channel switching).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Let updates use plain http:// to hosts other than this machine.
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Largest update download accepted when update.toml gives no size, in bytes [default: 4 GiB].
    #[arg(long, value_name = "BYTES")]
    pub max_download_size: Option<u64>,
    /// Report each update, rollback, refusal and failure with one GET of this URL (app, versions,
    /// event, reason; nothing else); a signed update.toml's `report` takes its place [default: no
    /// reports].
    #[arg(long, value_name = "URL")]
    pub report_url: Option<String>,
}

/// `--argv0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Argv0Flag {
    Packed,
    Entry,
}

impl From<Argv0Flag> for payload_tools::metadata::Argv0 {
    fn from(flag: Argv0Flag) -> Self {
        match flag {
            Argv0Flag::Packed => Self::Packed,
            Argv0Flag::Entry => Self::Entry,
        }
    }
}

/// `--windows-subsystem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubsystemFlag {
    Auto,
    Console,
    Gui,
}

impl From<SubsystemFlag> for payload_tools::pack::WindowsSubsystem {
    fn from(flag: SubsystemFlag) -> Self {
        match flag {
            SubsystemFlag::Auto => Self::Auto,
            SubsystemFlag::Console => Self::Console,
            SubsystemFlag::Gui => Self::Gui,
        }
    }
}

/// `update_url_spec` in a config file: one spec, or the first and its
/// fallbacks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum UrlSpecs {
    One(String),
    Many(Vec<String>),
}

/// `onefile.toml`: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub stub: Option<PathBuf>,
    pub target: Option<String>,
    pub entry: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    pub argv0: Option<Argv0Flag>,
    pub windows_subsystem: Option<SubsystemFlag>,
    pub level: Option<i32>,
    pub threads: Option<u32>,
    pub update_url_spec: Option<UrlSpecs>,
    pub update_check_interval: Option<String>,
    pub auto_update_toml_file: Option<PathBuf>,
    pub download_url: Option<String>,
    pub update_exit_wait: Option<f64>,
    pub healthy_after: Option<String>,
    #[serde(default)]
    pub unhealthy_exit_codes: Vec<i32>,
    pub rollback_after: Option<u32>,
    pub restart_exit_code: Option<i32>,
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub allow_downgrade: bool,
    #[serde(default)]
    pub allow_insecure_http: bool,
    pub max_download_size: Option<u64>,
    pub report_url: Option<String>,
}

impl ConfigFile {
    /// Reads a config file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config '{}': {e}", path.display()))?;
        let mut config: ConfigFile = toml::from_str(&text)
            .map_err(|e| format!("bad config '{}': {}", path.display(), e.message()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.input,
            &mut config.output,
            &mut config.stub,
            &mut config.auto_update_toml_file,
            &mut config.key,
        ]
        .into_iter()
        .flatten()
        .chain(config.public_keys.iter_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }
}

impl PackArgs {
    /// Fills every flag not given on the command line from the config.
    pub fn merge(mut self, config: ConfigFile) -> PackArgs {
        self.input = self.input.or(config.input);
        self.output = self.output.or(config.output);
        self.stub = self.stub.or(config.stub);
        self.target = self.target.or(config.target);
        self.entry = self.entry.or(config.entry);
        self.name = self.name.or(config.name);
        self.app_version = self.app_version.or(config.version);
        self.argv0 = self.argv0.or(config.argv0);
        self.windows_subsystem = self.windows_subsystem.or(config.windows_subsystem);
        self.level = self.level.or(config.level);
        self.threads = self.threads.or(config.threads);
        if self.update_url_spec.is_empty() {
            match config.update_url_spec {
                Some(UrlSpecs::One(spec)) => self.update_url_spec.push(spec),
                Some(UrlSpecs::Many(specs)) => self.update_url_spec = specs,
                None => {}
            }
        }
        self.update_check_interval = self.update_check_interval.or(config.update_check_interval);
        self.auto_update_toml_file = self.auto_update_toml_file.or(config.auto_update_toml_file);
        self.download_url = self.download_url.or(config.download_url);
        self.update_exit_wait = self.update_exit_wait.or(config.update_exit_wait);
        self.healthy_after = self.healthy_after.or(config.healthy_after);
        if self.unhealthy_exit_code.is_empty() {
            self.unhealthy_exit_code = config.unhealthy_exit_codes;
        }
        self.rollback_after = self.rollback_after.or(config.rollback_after);
        self.restart_exit_code = self.restart_exit_code.or(config.restart_exit_code);
        if self.public_keys.is_empty() {
            self.public_keys = config.public_keys;
        }
        self.key = self.key.or(config.key);
        self.allow_downgrade |= config.allow_downgrade;
        self.allow_insecure_http |= config.allow_insecure_http;
        self.max_download_size = self.max_download_size.or(config.max_download_size);
        self.report_url = self.report_url.or(config.report_url);
        self
    }
}
