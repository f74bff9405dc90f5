//! `payload-tools`: the command that packs, inspects, verifies and unpacks
//! onefile executables. This file is the one place that turns errors into
//! what the user reads: one `error:` line, maybe a `hint:` line, exit 1.

mod args;
mod commands;
mod diagnose;
mod progress;
mod publish;
mod signing;
mod stubs;

use std::process::ExitCode;

use clap::Parser;
use payload_tools::text::Escaped;

use args::{Cli, Command};

/// A failed command: what to print, and what the user can do about it.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    /// The same failure with `alias` in place of `held`: extraction runs
    /// through a held folder's `/proc/self/fd/N` path, which means nothing
    /// to the user.
    pub fn naming(mut self, held: &std::path::Path, alias: &std::path::Path) -> Failure {
        let (held, alias) = (held.to_string_lossy(), alias.to_string_lossy());
        if held != alias {
            self.message = self.message.replace(&*held, &alias);
        }
        self
    }
}

impl From<payload_tools::Error> for Failure {
    fn from(err: payload_tools::Error) -> Failure {
        use payload_tools::Error as E;
        let hint = match &err {
            E::Checksum { .. } | E::Truncated { .. } | E::Payload { .. } => {
                Some("the file is damaged: download or build it again".to_owned())
            }
            E::UnsupportedVersion { .. } | E::UnsupportedFeature { .. } => {
                Some("use a newer payload-tools".to_owned())
            }
            E::NotPrivate { .. } => Some(NOT_PRIVATE_HINT.to_owned()),
            E::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                Some("free some disk space and try again".to_owned())
            }
            _ => None,
        };
        Failure {
            message: err.to_string(),
            hint,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            hint: None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pack(args) => commands::pack(*args),
        Command::Inspect {
            exe,
            against: Some(old),
            json,
        } => commands::inspect_against(&exe, &old, json),
        Command::Inspect {
            exe,
            against: None,
            json,
        } => commands::inspect(&exe, json),
        Command::Verify { exe } => commands::verify(&exe),
        Command::Unpack { exe, output } => commands::unpack(&exe, &output),
        Command::UpdateToml {
            exe,
            url,
            output,
            key,
        } => commands::update_toml(&exe, &url, output.as_deref(), key.as_deref()),
        Command::Keygen { output } => commands::keygen(&output),
        Command::Sign { exe, key, output } => commands::sign(&exe, &key, output.as_deref()),
        Command::Publish(args) => publish::publish(*args),
        Command::Rollout(args) => publish::rollout(args),
        Command::Refresh(args) => publish::refresh(args),
        Command::Stubs => stubs::list(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("payload-tools: error: {}", Escaped(&failure.message));
            if let Some(hint) = failure.hint {
                eprintln!("payload-tools: hint: {}", Escaped(&hint));
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
const NOT_PRIVATE_HINT: &str = "anyone who can write a folder can swap files in it: keep keys in a folder only you can write (mkdir -m 700 ~/keys)";
#[cfg(windows)]
const NOT_PRIVATE_HINT: &str = "anyone who can write a folder can swap files in it: keep keys in a folder only you can change (the folder's Properties, Security tab: only you, SYSTEM and Administrators)";
