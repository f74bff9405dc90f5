//! The schedule of update checks on Windows: the record in the app's cache
//! folder is written under a new name and renamed over the old one, which
//! Windows allows only with the right sharing; between checks the updater
//! makes no request, and a check that is due again replaces the record.

use std::fs;

use crate::support;
use crate::update::publish;

/// The lines of the check record of the probe app in `cache`.
fn record(cache: &std::path::Path) -> Vec<String> {
    fs::read_to_string(cache.join("probeapp").join(".update-check"))
        .expect("a check record")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn between_checks_no_request_and_a_due_check_replaces_the_record() {
    let p = publish(&["1.0", "1.1"], &["--update-check-interval", "1h"]);
    let asked = |p: &crate::update::Published| p.manifest_requests("1.0");
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n", "{}", support::stderr(&out));
    // Twice when the launcher handed a slow answer to the background
    // updater, which checks again.
    let after_first = asked(&p);
    assert!((1..=2).contains(&after_first), "{}", support::stderr(&out));
    let first = record(&p.s.cache());
    let (checked, due): (u64, u64) = (first[2].parse().expect("n"), first[3].parse().expect("n"));
    assert_eq!(due - checked, 3600, "{first:#?}");

    p.announce("1.0", "1.1");
    let out = p.run(&["version"]);
    assert_eq!(support::stdout(&out), "1.0\n");
    assert_eq!(asked(&p), after_first, "no request within the hour");
    assert!(
        support::update_traces(&out)
            .iter()
            .any(|t| t.starts_with("Checked ") && t.contains("the next check is due in")),
        "{}",
        support::stderr(&out)
    );

    // Due again (the time stands for an hour later): the check runs, and
    // its record is renamed over the one there.
    let mut due_now = first.clone();
    due_now[3] = due_now[2].clone();
    let path = p.s.cache().join("probeapp").join(".update-check");
    fs::write(&path, due_now.join("\n") + "\n").expect("rewrite the record");
    let out = p.run(&["version"]);
    assert!(asked(&p) > after_first, "{}", support::stderr(&out));
    assert!(
        support::update_traces(&out).iter().any(|t| t == "Updated."),
        "{}",
        support::stderr(&out)
    );
    let second = record(&p.s.cache());
    let due: u64 = second[3].parse().expect("n");
    assert!(due >= checked + 3600, "{second:#?}");
    let leftovers: Vec<_> = fs::read_dir(p.s.cache().join("probeapp"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".update-check."))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new(), "temporary records left");
}
