//! `user` and `group` of a task: resolved to ids (names through the system's user database,
//! numbers as they are) before anything starts, and at each spawn, since accounts can change.
//! The child drops to them (supplementary groups, gid, uid) before its `execve`.
use std::ffi::CString;

/// What the child switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups: the user's (from the group database), or only `gid` when a group
    /// was given.
    pub groups: Vec<libc::gid_t>,
}

/// The ids for `user`/`group`, or `None` when neither is set. Errors name the field.
pub fn resolve(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Ids>, (&'static str, String)> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let (uid, user_gid, name) = match user {
        Some(u) => {
            let (uid, gid, name) =
                lookup_user(u).ok_or(("user", format!("no user named {u:?} on this machine")))?;
            (uid, Some(gid), Some(name))
        }
        None => (euid, None, None),
    };
    let gid = match group {
        Some(g) => {
            lookup_group(g).ok_or(("group", format!("no group named {g:?} on this machine")))?
        }
        None => match user_gid {
            Some(g) => g,
            // SAFETY: getegid has no preconditions.
            None => unsafe { libc::getegid() },
        },
    };
    if euid != 0 && uid != euid {
        return Err((
            "user",
            format!(
                "switching to another user needs a supervisor running as root (it runs as uid {euid})"
            ),
        ));
    }
    let groups = match (&name, group) {
        (Some(n), None) => group_list(n, gid),
        _ => vec![gid],
    };
    Ok(Some(Ids { uid, gid, groups }))
}

fn lookup_user(u: &str) -> Option<(libc::uid_t, libc::gid_t, CString)> {
    let name = CString::new(u).ok()?;
    let mut pw: libc::passwd = unsafe_zeroed();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid pointers to a passwd, a buffer of the given length and the out pointer.
    let r = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if r == 0 && !out.is_null() {
        return Some((pw.pw_uid, pw.pw_gid, name));
    }
    let uid: libc::uid_t = u.parse().ok()?;
    // SAFETY: as above.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r == 0 && !out.is_null() {
        // SAFETY: pw_name points into `buf`, NUL-terminated, while `buf` lives.
        let n = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }.to_owned();
        Some((uid, pw.pw_gid, n))
    } else {
        // A bare number without an entry: that uid, with a group of the same number.
        Some((uid, uid, CString::default()))
    }
}

fn lookup_group(g: &str) -> Option<libc::gid_t> {
    let name = CString::new(g).ok()?;
    let mut gr: libc::group = unsafe_zeroed();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: valid pointers to a group, a buffer of the given length and the out pointer.
    let r = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if r == 0 && !out.is_null() {
        return Some(gr.gr_gid);
    }
    g.parse().ok()
}

/// The user's supplementary groups (as `initgroups` would set them), with `gid` first.
fn group_list(name: &CString, gid: libc::gid_t) -> Vec<libc::gid_t> {
    if name.as_bytes().is_empty() {
        return vec![gid];
    }
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let before = n;
        // SAFETY: `groups` holds `n` entries; getgrouplist writes at most that many and sets
        // `n` to how many there are.
        let r = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if r >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if n <= before {
            return vec![gid];
        }
    }
}

fn unsafe_zeroed<T>() -> T {
    // SAFETY: only used for the plain C structs passwd and group, for which all-zero bytes
    // (null pointers, zero ids) are valid values.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve_and_unknown_ones_name_the_field() {
        assert_eq!(resolve(None, None), Ok(None));
        let root = resolve(Some("root"), None).unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(resolve(Some("0"), None).unwrap().unwrap().uid, 0);
        let e = resolve(Some("no-such-user-timeservice"), None).unwrap_err();
        assert_eq!(e.0, "user");
        assert!(e.1.contains("no user named"));
        let e = resolve(None, Some("no-such-group-timeservice")).unwrap_err();
        assert_eq!(e.0, "group");
    }
}
