//! End-to-end tests: the real `bootstrap` and `payload-tools` binaries,
//! real processes, real files, and real HTTP servers on 127.0.0.1.
//!
//! Unix only for now: the tests use Unix calls throughout (modes, signals,
//! `pre_exec`, users). The Windows executables have their own suite,
//! `windows/`, run under Wine by `make test-windows`.
#![cfg(unix)]

mod background;
mod checks;
mod craft;
mod faults;
mod filemeta;
mod frame_policy;
mod harden_cache;
mod harden_cli;
mod harden_extract;
mod harden_run;
mod harden_trace;
mod harden_update;
mod hostile;
mod incremental;
mod install;
mod launch;
mod mirrors;
mod nginx;
mod pack;
mod prewarm;
mod publish;
mod ratio;
mod reports;
mod rollback;
mod security;
mod selftest;
mod server;
mod status;
mod support;
mod tls;
mod trust;
mod update;
mod windows_pe;
