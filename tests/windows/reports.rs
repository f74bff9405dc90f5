//! Reports on Windows (issue 15): the same updater sends them, with the
//! Windows User-Agent; `it/reports.rs` covers every event on Linux.

use crate::server::Server;
use crate::support;
use crate::update::publish;

#[test]
fn an_update_sends_one_updated_report_with_the_windows_user_agent() {
    let host = Server::start();
    let url = host.url("/report");
    let p = publish(&["1.0", "1.1"], &["--report-url", &url]);
    p.announce("1.0", "1.1");
    let out =
        p.s.command(&p.exe)
            .env("ONEFILE_UPDATE", "now")
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", support::stderr(&out));
    let reports: Vec<_> = host
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/report"))
        .collect();
    assert_eq!(reports.len(), 1, "{}", support::stderr(&out));
    let path = &reports[0].path;
    assert!(
        path.starts_with("/report?app=") && path.ends_with("&from=1.0&to=1.1&event=updated"),
        "{path}"
    );
    let agent = reports[0].user_agent.clone().unwrap_or_default();
    assert!(agent.ends_with("/1.0 (windows; x86_64)"), "{agent}");
}
