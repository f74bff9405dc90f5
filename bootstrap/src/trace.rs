//! Debug traces, on only when `AUTO_UPDATE_DEBUG` is set (to anything but
//! `0` or nothing): one line per event on stderr, `ONEFILE: ` for the
//! launcher and `AUTO UPDATE: ` for the updater. Off, the launcher prints
//! nothing of its own and the `log` macros cost one comparison each.

use std::io::Write;

/// `log` target of the updater's traces.
pub const UPDATE: &str = "onefile_update";

/// Turns traces on if the environment asks for them.
pub fn init() {
    let wanted = std::env::var_os("AUTO_UPDATE_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
    if !wanted {
        return;
    }
    env_logger::Builder::new()
        // Our own traces only: the HTTP client's are for its developers.
        .filter_level(log::LevelFilter::Off)
        .filter_module(env!("CARGO_CRATE_NAME"), log::LevelFilter::Info)
        .filter_module(UPDATE, log::LevelFilter::Info)
        .target(env_logger::Target::Stderr)
        // One write per line, so a trace never lands in the middle of a
        // line of the app's own output.
        .format(|buf, record| {
            let prefix = if record.target() == UPDATE {
                "AUTO UPDATE: "
            } else {
                "ONEFILE: "
            };
            writeln!(buf, "{prefix}{}", record.args())
        })
        .init();
}
