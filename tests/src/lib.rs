//! End-to-end tests live in `it/` (Unix) and `windows/` (the Windows
//! executables, under Wine); this library holds what both read the same
//! way: the launcher's update traces, and the traces of the background
//! updater a launch handed its update to.

use std::path::PathBuf;
use std::process::Output;

/// The `AUTO UPDATE: ` traces of `out`'s stderr, prefix removed.
pub fn update_traces(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("AUTO UPDATE: "))
        .map(str::to_owned)
        .collect()
}

/// The pid of the background updater the launch of `out` started, from its
/// trace.
pub fn background_updater(out: &Output) -> Option<u32> {
    update_traces(out).iter().find_map(|t| {
        t.strip_prefix("Started background updater ")?
            .strip_suffix('.')?
            .parse()
            .ok()
    })
}

/// Appends to `out`'s stderr the traces of its background updater `pid`
/// (which has ended), from the trace file the launcher named: an update
/// then reads the same whether the launcher finished it or handed it off.
pub fn append_background_traces(out: &mut Output, pid: u32) {
    let file = update_traces(out).iter().find_map(|t| {
        t.strip_prefix("Its traces go to '")?
            .strip_suffix("'.")
            .map(PathBuf::from)
    });
    let text = file
        .and_then(|file| std::fs::read_to_string(file).ok())
        .unwrap_or_default();
    let start = format!("AUTO UPDATE: Background updater {pid} started.");
    if let Some(at) = text.rfind(&start) {
        out.stderr.extend_from_slice(&text.as_bytes()[at..]);
    }
}
