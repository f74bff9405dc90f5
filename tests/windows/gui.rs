//! GUI apps: `pack --windows-subsystem auto` (the default) gives the
//! packed file's copy of the stub the GUI subsystem when the entry is a
//! GUI program, so Windows opens no console window for it; `console` and
//! `gui` force one or the other. The stub file itself never changes, and
//! the patched file verifies, runs and passes its exit code.

use std::io::Read;
use std::path::{Path, PathBuf};

use payload_tools::pe::{self, SUBSYSTEM_CONSOLE, SUBSYSTEM_GUI};

use crate::support::{self, Scratch};

/// The PE subsystem of the program at `path`.
fn subsystem_of(path: &Path) -> u16 {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .expect("open")
        .take(pe::MAX_HEADER_LEN as u64)
        .read_to_end(&mut head)
        .expect("read");
    pe::read_subsystem(&head)
        .expect("a readable PE header")
        .expect("a Windows program")
}

/// The probe app, its program turned into a GUI program when `gui`.
fn probe_app(s: &Scratch, gui: bool) -> PathBuf {
    let app = s.probe_app("app", "1.0");
    if gui {
        let probe = app.join("bin/probe.exe");
        let mut bytes = std::fs::read(&probe).expect("read probe");
        let old = pe::set_subsystem(&mut bytes, SUBSYSTEM_GUI).expect("patch the probe");
        assert_eq!(old, Some(SUBSYSTEM_CONSOLE));
        std::fs::write(&probe, bytes).expect("write probe");
    }
    app
}

#[test]
fn a_gui_entry_makes_a_gui_packed_file_that_runs() {
    let s = Scratch::new();
    let app = probe_app(&s, true);
    let exe = s.path("guiapp.exe");
    support::pack(&app, &exe, &[]);
    assert_eq!(subsystem_of(&exe), SUBSYSTEM_GUI);
    assert_eq!(
        subsystem_of(&support::stub()),
        SUBSYSTEM_CONSOLE,
        "the stub file is left alone"
    );

    let out = s.run(&exe, ["exit", "7"]);
    assert_eq!(out.status.code(), Some(7), "{}", support::stderr(&out));
    let out = s.run(&exe, ["args", "two words"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    assert!(
        support::stdout(&out).ends_with("args\ntwo words\n"),
        "{}",
        support::stdout(&out)
    );
    for command in ["verify", "inspect"] {
        let checked = support::tools([command.as_ref(), exe.as_os_str()]);
        assert!(
            checked.status.success(),
            "{command}: {}",
            support::stderr(&checked)
        );
    }
}

#[test]
fn a_console_entry_keeps_the_console_subsystem() {
    let s = Scratch::new();
    let app = probe_app(&s, false);
    let exe = s.path("consoleapp.exe");
    support::pack(&app, &exe, &["--windows-subsystem", "auto"]);
    assert_eq!(subsystem_of(&exe), SUBSYSTEM_CONSOLE);
}

#[test]
fn the_flag_forces_either_subsystem() {
    let s = Scratch::new();
    let gui_app = probe_app(&s, true);
    let exe = s.path("forced-console.exe");
    support::pack(&gui_app, &exe, &["--windows-subsystem", "console"]);
    assert_eq!(subsystem_of(&exe), SUBSYSTEM_CONSOLE);
    let out = s.run(&exe, ["exit", "5"]);
    assert_eq!(out.status.code(), Some(5), "{}", support::stderr(&out));

    let s = Scratch::new();
    let console_app = probe_app(&s, false);
    let exe = s.path("forced-gui.exe");
    support::pack(&console_app, &exe, &["--windows-subsystem", "gui"]);
    assert_eq!(subsystem_of(&exe), SUBSYSTEM_GUI);
}
