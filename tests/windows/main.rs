//! End-to-end tests of the Windows executables, `bootstrap.exe` and
//! `payload-tools.exe`: compiled for Windows, they run on Windows with
//! `cargo test`, and here under Wine with `make test-windows`
//! (`scripts/test-windows.sh`, which also packs a file from Linux for
//! [`smoke`]). Elsewhere this test binary is empty. What Wine shows and
//! what it cannot is in docs/windows.md.
//!
//! This is the start of the Windows suite: tests that hold on both systems
//! belong in `it/` once it builds for Windows; these are the ones that need
//! a Windows process to see the result (exit codes beyond 8 bits, Windows
//! command lines, replacing a running executable).
#![cfg(windows)]

mod background;
mod cache;
mod checks;
mod cross;
mod filemeta;
mod gui;
mod incremental;
mod prewarm;
mod process;
mod reports;
mod rollback;
mod selftest;
// The Linux suite's server, faults and all; not every fault is used here.
#[allow(dead_code)]
#[path = "../it/server.rs"]
mod server;
mod smoke;
mod status;
mod support;
mod tools;
mod trust;
mod update;
