//! Rules for the paths inside a payload, shared by `pack` (which refuses to
//! write what would be unsafe) and extraction (which refuses to read it).
//!
//! Lengths are bounded by what every unpack can create: a name of at most
//! 255 bytes (`NAME_MAX` on Linux and macOS, 255 units on Windows), a path
//! of at most 3,072 bytes, which leaves 1 KiB of `PATH_MAX` (4,096) for the
//! folder it is unpacked into. A check that accepted longer paths would
//! pass builds that no launcher can unpack.

/// Longest member path or symlink target, in bytes.
pub const MAX_PATH_LEN: usize = 3072;

/// Longest component of a member path, in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;

/// Checks a member path of the payload: relative, `/`-separated, with no
/// empty, `.` or `..` components. A trailing `/` (directories) is allowed.
/// Returns the path without that trailing `/`.
pub fn check_member_path(path: &str) -> Result<&str, &'static str> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err("empty path");
    }
    if trimmed.starts_with('/') {
        return Err("absolute path");
    }
    if trimmed.contains('\\') || trimmed.contains('\0') || trimmed.contains(':') && cfg!(windows) {
        return Err("path with a backslash, NUL or drive letter");
    }
    if trimmed.len() > MAX_PATH_LEN {
        return Err("path longer than 3072 bytes");
    }
    for part in trimmed.split('/') {
        match part {
            "" => return Err("empty path component"),
            "." => return Err("'.' path component"),
            ".." => return Err("'..' path component"),
            _ if part.len() > MAX_COMPONENT_LEN => return Err("a name longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(trimmed)
}

/// Checks that the symlink at member path `link` with target `target`
/// resolves inside the tree.
///
/// The rule is lexical and strict, so it holds however other links in the
/// tree point: the target is relative, any `..` come first and climb no
/// higher than the link's own directory, and no `..` follows a name (a
/// name may itself be a link, and `name/..` would then leave the tree).
pub fn check_symlink_target(link: &str, target: &str) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("empty symlink target");
    }
    if target.starts_with('/') || target.contains('\\') || target.contains('\0') {
        return Err("symlink target is absolute or has a backslash");
    }
    if target.len() > MAX_PATH_LEN {
        return Err("symlink target longer than 3072 bytes");
    }
    // `C:x` is relative on Unix but names a drive on Windows, where the
    // same tree may be unpacked.
    if let [drive, b':', ..] = target.as_bytes()
        && drive.is_ascii_alphabetic()
    {
        return Err("symlink target starts with a drive letter");
    }
    let depth = link.split('/').count() - 1;
    let mut climbs = 0;
    let mut seen_name = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if seen_name => return Err("symlink target has '..' after a name"),
            ".." => climbs += 1,
            _ => seen_name = true,
        }
    }
    if climbs > depth {
        return Err("symlink points outside the tree");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths() {
        assert_eq!(check_member_path("a/b/"), Ok("a/b"));
        for bad in [
            "",
            "/",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
        ] {
            assert!(check_member_path(bad).is_err(), "{bad:?}");
        }
        let long_name = "n".repeat(MAX_COMPONENT_LEN + 1);
        assert!(check_member_path(&long_name).is_err());
        assert!(check_member_path(&long_name[1..]).is_ok());
        let long_path = vec!["n".repeat(200); 16].join("/");
        assert!(long_path.len() > MAX_PATH_LEN);
        assert!(check_member_path(&long_path).is_err());
    }

    #[test]
    fn symlink_targets() {
        assert!(check_symlink_target("lib/libz.so", "libz.so.1").is_ok());
        assert!(check_symlink_target("bin/app", "../lib/app").is_ok());
        assert!(check_symlink_target("a/b/c", "../../x/y").is_ok());
        assert!(check_symlink_target("top", ".").is_ok());
        for (link, target) in [
            ("top", ".."),
            ("bin/app", "../../etc/passwd"),
            ("bin/app", "/usr/bin/env"),
            ("a", "b/.."),
            ("a/b", "x/../../.."),
            ("a", ""),
            ("bin/app", "C:/Windows/System32/cmd.exe"),
            ("bin/app", "c:x"),
        ] {
            assert!(
                check_symlink_target(link, target).is_err(),
                "{link} -> {target}"
            );
        }
    }
}
