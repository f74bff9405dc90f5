//! End-to-end tests: the real `bootstrap` and `payload-tools` binaries,
//! real processes, real files, and real HTTP servers on 127.0.0.1.

mod craft;
mod faults;
mod harden_cache;
mod harden_cli;
mod harden_extract;
mod harden_run;
mod harden_trace;
mod harden_update;
mod hostile;
mod launch;
mod nginx;
mod pack;
mod security;
mod server;
mod support;
mod tls;
mod update;
mod windows_pe;
