//! Who is in a group, and the names of users and groups for messages, from
//! `/etc/passwd` and `/etc/group`.
//!
//! Read only when a folder on the cache path is group-writable, or to word
//! a refusal: never on an ordinary warm start. Groups known only to a
//! directory service (LDAP, NIS) are not in `/etc/group`; their members
//! cannot be listed cheaply, so such a group counts as having others.

use std::fs::File;
use std::io::Read;

/// The two files, as read (empty if unreadable).
#[derive(Debug)]
pub struct Accounts {
    passwd: String,
    group: String,
}

impl Accounts {
    pub fn load() -> Accounts {
        Accounts {
            passwd: read("/etc/passwd"),
            group: read("/etc/group"),
        }
    }

    /// `None` if no user other than `me` and root is in group `gid`, as a
    /// member or by their primary group; else who is, for a message.
    pub fn group_others(&self, gid: u32, me: u32) -> Option<String> {
        let Some(group) = find(&self.group, 2, gid) else {
            return Some(format!(
                "group {gid} (not in /etc/group: its members cannot be checked)"
            ));
        };
        // A group number may appear on more than one line: all count.
        let members: Vec<&str> = self
            .group
            .split('\n')
            .filter(|l| number(l, 2) == Some(gid))
            .flat_map(|l| field(l, 3).split(','))
            .filter(|n| !n.is_empty())
            .collect();
        let mut others = String::new();
        let mut add = |name: &str, uid: Option<u32>| {
            if uid != Some(me) && uid != Some(0) {
                if !others.is_empty() {
                    others.push_str(", ");
                }
                others.push_str(name);
            }
        };
        for name in &members {
            add(name, self.user_id(name));
        }
        for user in self.passwd.split('\n') {
            let name = field(user, 0);
            if number(user, 3) == Some(gid) && !members.contains(&name) {
                add(name, number(user, 2));
            }
        }
        if others.is_empty() {
            return None;
        }
        let name = field(group, 0);
        Some(format!(
            "group {name} ({gid}), whose members include {others},"
        ))
    }

    /// "user 1001 (alice)", or "user 1001" when it has no name here.
    pub fn describe_user(&self, uid: u32) -> String {
        match find(&self.passwd, 2, uid) {
            Some(user) => format!("user {uid} ({})", field(user, 0)),
            None => format!("user {uid}"),
        }
    }

    fn user_id(&self, name: &str) -> Option<u32> {
        let user = self.passwd.split('\n').find(|l| field(l, 0) == name)?;
        number(user, 2)
    }
}

/// The file's text; a comment field in another encoding must not make
/// the names around it unreadable. One `read` of up to 16 KiB, then the rest
/// (one more `read` for a file that fits),
/// up to [`MAX_ACCOUNTS_LEN`]: a longer file reads as empty, so that every
/// group counts as having other members (refusing is the safe mistake; a
/// file cut short could hide a member).
fn read(path: &str) -> String {
    const FIRST: usize = 16 << 10;
    let mut bytes = vec![0; FIRST];
    let Ok(file) = File::open(path) else {
        return String::new();
    };
    let n = (&file).read(&mut bytes).unwrap_or(0);
    bytes.truncate(n);
    // A short read is not the end of the file: read on until it is.
    if n > 0 {
        let limit = MAX_ACCOUNTS_LEN - FIRST as u64 + 1;
        if (&file).take(limit).read_to_end(&mut bytes).is_err()
            || bytes.len() as u64 > MAX_ACCOUNTS_LEN
        {
            return String::new();
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Largest `/etc/passwd` or `/etc/group` read: far above a machine's local
/// accounts (directory services keep theirs elsewhere).
const MAX_ACCOUNTS_LEN: u64 = 8 << 20;

/// The first line of `text` whose field `i` is the number `value`.
fn find(text: &str, i: usize, value: u32) -> Option<&str> {
    text.split('\n').find(|l| number(l, i) == Some(value))
}

/// Field `i` of a colon-separated line.
fn field(line: &str, i: usize) -> &str {
    line.split(':').nth(i).unwrap_or("")
}

fn number(line: &str, i: usize) -> Option<u32> {
    field(line, i).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        Accounts {
            passwd: "root:x:0:0::/root:/bin/sh\n\
                     me:x:1000:1000::/home/me:/bin/sh\n\
                     bob:x:1001:1001::/home/bob:/bin/sh\n\
                     carol:x:1002:100::/home/carol:/bin/sh\n"
                .into(),
            group: "root:x:0:\nme:x:1000:\nbob:x:1001:\nusers:x:100:me\n\
                    staff:x:50:me,root\nwheel:x:10:me,bob,ghost\n"
                .into(),
        }
    }

    #[test]
    fn a_group_of_one_has_no_others() {
        let a = accounts();
        assert_eq!(a.group_others(1000, 1000), None);
        assert_eq!(a.group_others(50, 1000), None, "root is trusted");
    }

    #[test]
    fn members_and_primary_groups_are_others() -> Result<(), Box<dyn std::error::Error>> {
        let a = accounts();
        let by_primary = a.group_others(100, 1000).ok_or("no others: carol")?;
        assert!(by_primary.contains("carol"), "{by_primary}");
        let listed = a.group_others(10, 1000).ok_or("no others: bob, ghost")?;
        assert!(listed.contains("include bob, ghost,"), "{listed}");
        assert!(a.group_others(1001, 1000).is_some(), "bob's own group");
        Ok(())
    }

    #[test]
    fn every_line_of_a_group_number_counts() -> Result<(), Box<dyn std::error::Error>> {
        let mut a = accounts();
        a.group.push_str("me2:x:1000:bob\n");
        let hidden = a
            .group_others(1000, 1000)
            .ok_or("no others: bob on a second line")?;
        assert!(hidden.contains("bob"), "{hidden}");
        Ok(())
    }

    #[test]
    fn an_unknown_group_cannot_be_trusted() {
        let a = accounts();
        assert!(a.group_others(4242, 1000).is_some());
        assert_eq!(a.describe_user(1001), "user 1001 (bob)");
        assert_eq!(a.describe_user(7), "user 7");
    }
}
