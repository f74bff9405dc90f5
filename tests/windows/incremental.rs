//! Incremental updates on Windows: the new build is assembled beside the
//! running executable from the parts it holds and ranges of the rest
//! (positioned writes: the helpers read the file through cloned handles
//! that share its cursor), then installed like a download; a server that
//! lies about a range gets the whole build downloaded instead.

use crate::server::{Lie, Route};
use crate::support;
use crate::update::publish;

const ETAG: &str = "\"v11\"";

#[test]
fn an_update_from_a_server_with_ranges_fetches_only_what_changed() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let v11 = p.bytes("1.1").to_vec();
    p.serve(
        "1.1",
        Route::File {
            body: v11.clone(),
            etag: Some(ETAG.into()),
            ranges: true,
        },
    );
    let out = p.run(&["version"]);
    let traces = support::update_traces(&out);
    assert!(
        traces.iter().any(|t| t.starts_with("Assembled: ")),
        "{traces:#?}"
    );
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(p.installed(), v11);
    // Only bounded ranges besides the end, together far less than the build.
    let fetched: usize = p
        .ranges_asked()
        .iter()
        .filter_map(|r| r.strip_prefix("bytes="))
        .filter(|r| !r.starts_with('-'))
        .map(|r| {
            let (first, last) = r.split_once('-').expect("a bounded range");
            let (first, last): (usize, usize) = (
                first.parse().expect("first"),
                last.parse().expect("a bounded range"),
            );
            last + 1 - first
        })
        .sum();
    assert!(fetched < v11.len() / 4, "{fetched} of {}", v11.len());
    p.assert_later_start_runs("1.1");
}

#[test]
fn a_server_that_lies_about_a_range_gets_the_whole_build_downloaded() {
    let p = publish(&["1.0", "1.1"], &[]);
    p.announce("1.0", "1.1");
    let v11 = p.bytes("1.1").to_vec();
    p.serve(
        "1.1",
        Route::Lying {
            body: v11.clone(),
            etag: ETAG.into(),
            lie: Lie::WrongBytes,
        },
    );
    let out = p.run(&["version"]);
    let traces = support::update_traces(&out);
    assert!(
        traces
            .iter()
            .any(|t| t.starts_with("Incremental update failed") && t.contains("hash")),
        "{traces:#?}"
    );
    assert!(traces.contains(&"Updated.".to_owned()), "{traces:#?}");
    assert_eq!(p.installed(), v11);
    p.assert_later_start_runs("1.1");
}
