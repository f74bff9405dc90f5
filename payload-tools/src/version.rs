//! Ordering of build versions, so an updater can tell "newer" from "older
//! or the same" without the publisher having to use strict semver.
//!
//! The rule (also in `docs/updates.md`):
//! - Build metadata after `+` is ignored.
//! - The rest splits at the first `-` into a release and a pre-release.
//! - Releases compare part by part, splitting at `.`; two numeric parts
//!   compare as numbers, anything else as text; a missing part counts as 0
//!   (`1.0` equals `1.0.0`).
//! - With equal releases, a version without pre-release is newer than one
//!   with (`1.0` > `1.0-rc.1`); two pre-releases compare like releases.

use std::cmp::Ordering;

/// Compares two version strings by the rule above.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a_rel, a_pre) = split(a);
    let (b_rel, b_pre) = split(b);
    compare_dotted(a_rel, b_rel).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_dotted(x, y),
    })
}

/// Whether `candidate` is strictly newer than `running`.
pub fn is_newer(candidate: &str, running: &str) -> bool {
    compare_versions(candidate, running) == Ordering::Greater
}

fn split(v: &str) -> (&str, Option<&str>) {
    let v = v.split_once('+').map_or(v, |(core, _)| core);
    let v = v.strip_prefix('v').unwrap_or(v);
    match v.split_once('-') {
        Some((rel, pre)) => (rel, Some(pre)),
        None => (v, None),
    }
}

fn compare_dotted(a: &str, b: &str) -> Ordering {
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        let ord = match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (Some(x), None) => compare_part(x, "0"),
            (None, Some(y)) => compare_part("0", y),
            (Some(x), Some(y)) => compare_part(x, y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

fn compare_part(x: &str, y: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if numeric(x) && numeric(y) {
        let x = x.trim_start_matches('0');
        let y = y.trim_start_matches('0');
        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
    } else {
        x.cmp(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering() {
        let ascending = [
            "0.9",
            "1.0-alpha",
            "1.0-alpha.2",
            "1.0-beta",
            "1.0-rc.1",
            "1.0",
            "1.0.1",
            "1.1",
            "1.2",
            "1.10",
            "2.0",
            "10.0",
        ];
        for pair in ascending.windows(2) {
            assert!(is_newer(pair[1], pair[0]), "{} > {}", pair[1], pair[0]);
            assert!(!is_newer(pair[0], pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn equal_forms() {
        assert_eq!(compare_versions("1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0+build.7", "1.0"), Ordering::Equal);
        assert_eq!(compare_versions("v2", "2"), Ordering::Equal);
        assert!(!is_newer("1.0", "1.0"));
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        assert!(is_newer(
            "1.99999999999999999999999",
            "1.9999999999999999999999"
        ));
    }
}
