//! `narun-exec --own-secrets DIR USER`: lets an app read its `secrets:`
//! files. systemd runs it as the privileged `ExecStartPre=+` of the app's
//! unit, after it has allocated the app's (possibly dynamic) user and
//! before the app starts; the app then sees DIR read-only at
//! `/run/secrets` (a bind mount).
//!
//! DIR stays root's: it becomes `root:<app group>` mode 2750 and its files
//! `root:<app group>` 0440. The setgid bit makes files the agent writes
//! later (a changed secret) inherit the app's group, so the agent, which
//! runs without capabilities, never needs to chown; the app can read but
//! not change or remove them; nobody else can enter DIR.
//!
//! Nothing here reads the secrets: it changes groups and modes, never
//! following a symlink.

use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The uid and primary gid of `user` (a name, possibly a systemd dynamic
/// user resolved through nss-systemd, or a numeric uid).
pub fn resolve_user(user: &str) -> Result<(u32, u32), String> {
    use nix::unistd::{Uid, User};
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    };
    match found {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) if user.parse::<u32>().is_ok() => {
            let uid: u32 = user.parse().unwrap_or_default();
            Ok((uid, uid))
        }
        Ok(None) => Err(format!(
            "user {user:?} not found (a systemd dynamic user needs nss-systemd: libnss-systemd and `systemd` in /etc/nsswitch.conf)"
        )),
        Err(e) => Err(format!("cannot look up user {user:?}: {e}")),
    }
}

fn open_nofollow(path: &Path, dir: bool) -> Result<File, String> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    let mut flags = libc::O_NOFOLLOW;
    if dir {
        flags |= libc::O_DIRECTORY;
    }
    o.custom_flags(flags);
    o.open(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Give DIR and every regular file in it to group `gid`: files 0440, the
/// directory 2750 (owner unchanged). Anything else in DIR (a symlink, a
/// subdirectory) is an error: the agent only ever writes plain files there.
pub fn own(dir: &Path, gid: u32) -> Result<usize, String> {
    let d = open_nofollow(dir, true)?;
    let mut n = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !kind.is_file() {
            return Err(format!("{}: not a regular file", path.display()));
        }
        let f = open_nofollow(&path, false)?;
        std::os::unix::fs::fchown(&f, None, Some(gid))
            .and_then(|_| f.set_permissions(std::fs::Permissions::from_mode(0o440)))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        n += 1;
    }
    std::os::unix::fs::fchown(&d, None, Some(gid))
        .and_then(|_| d.set_permissions(std::fs::Permissions::from_mode(0o2750)))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn root_and_numeric_users_resolve() {
        assert_eq!(resolve_user("root").unwrap(), (0, 0));
        assert_eq!(resolve_user("0").unwrap(), (0, 0));
        // A numeric uid without a passwd entry is still usable.
        assert_eq!(resolve_user("4000000").unwrap(), (4000000, 4000000));
        let e = resolve_user("narun-no-such-user").unwrap_err();
        assert!(e.contains("not found"), "{e}");
    }

    #[test]
    fn files_and_dir_get_owner_and_modes_and_symlinks_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("s");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("token"), "x").unwrap();
        let me = std::fs::metadata(&dir).unwrap();
        assert_eq!(own(&dir, me.gid()).unwrap(), 1);
        let f = std::fs::metadata(dir.join("token")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o440);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o2750);
        // A file written later inherits the directory's group.
        std::fs::write(dir.join("later"), "y").unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("later")).unwrap().gid(),
            me.gid()
        );

        std::os::unix::fs::symlink("/etc/shadow", dir.join("evil")).unwrap();
        let e = own(&dir, me.gid()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(own(&t.path().join("missing"), 0).is_err());
    }
}
