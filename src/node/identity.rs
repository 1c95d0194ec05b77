//! Which account a replica runs as: the spec's `user:` resolved in this
//! node's user database, root refused in every spelling.
//!
//! The CLI can only check spellings (`0`, `00`, ` 0` are refused there
//! too); what a name means is the node's business: a name that maps to uid
//! 0, or whose primary or supplementary groups include gid 0, is root by
//! another name. The decision is [`identity`], a pure function over a
//! [`UserDb`]; [`Nss`] is the real database (glibc NSS, as systemd itself
//! resolves `User=`).

use crate::node::units::Identity;
use crate::spec::{parse_user, UserRef};

/// An account as the user database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Supplementary groups (`initgroups`, as systemd sets them).
    pub groups: Vec<u32>,
}

/// A user database.
pub trait UserDb {
    fn by_name(&self, name: &str) -> Result<Option<Account>, String>;
    fn by_uid(&self, uid: u32) -> Result<Option<Account>, String>;
}

/// The message for a root app on a node that does not allow them (kept
/// stable: the docs and operators' alerts quote it).
pub const ROOT_REFUSED: &str = "user: root is not allowed on this node (allow_root_apps is off)";

/// The identity of an app's replicas: a dynamic user when `user` is empty,
/// else the named account, which must exist and must not be root (uid 0,
/// primary group 0, or a member of group 0) unless `allow_root`.
pub fn identity(user: &str, allow_root: bool, db: &dyn UserDb) -> Result<Identity, String> {
    if user.is_empty() {
        return Ok(Identity::Dynamic);
    }
    let r = parse_user(user).map_err(|e| format!("user: {e}"))?;
    if r.is_root() && !allow_root {
        return Err(ROOT_REFUSED.into());
    }
    let found = match &r {
        UserRef::Name(n) => db.by_name(n),
        UserRef::Uid(u) => db.by_uid(*u),
    }
    .map_err(|e| format!("user: {user:?}: cannot look it up on this node: {e}"))?;
    let Some(acc) = found else {
        return Err(format!("user: {user:?} does not exist on this node"));
    };
    if !allow_root {
        let why = if acc.uid == 0 {
            Some("is uid 0 (root)".to_owned())
        } else if acc.gid == 0 {
            Some("has primary group 0 (root)".to_owned())
        } else if acc.groups.contains(&0) {
            Some("is a member of group 0 (root)".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(format!(
                "user: {user:?} {why} on this node: refused (allow_root_apps is off)"
            ));
        }
    }
    Ok(Identity::Named(r.to_string()))
}

/// The node's user database through glibc NSS (`/etc/passwd`, LDAP, nss-systemd...).
pub struct Nss;

impl Nss {
    fn account(u: nix::unistd::User) -> Result<Account, String> {
        let name = std::ffi::CString::new(u.name.as_bytes()).map_err(|e| e.to_string())?;
        let groups = nix::unistd::getgrouplist(&name, u.gid)
            .map_err(|e| format!("getgrouplist: {e}"))?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        Ok(Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            groups,
        })
    }
}

impl UserDb for Nss {
    fn by_name(&self, name: &str) -> Result<Option<Account>, String> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Self::account(u).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn by_uid(&self, uid: u32) -> Result<Option<Account>, String> {
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => Self::account(u).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user database as a table.
    struct Table(Vec<Account>);

    impl UserDb for Table {
        fn by_name(&self, name: &str) -> Result<Option<Account>, String> {
            Ok(self.0.iter().find(|a| a.name == name).cloned())
        }
        fn by_uid(&self, uid: u32) -> Result<Option<Account>, String> {
            Ok(self.0.iter().find(|a| a.uid == uid).cloned())
        }
    }

    fn acc(name: &str, uid: u32, gid: u32, groups: &[u32]) -> Account {
        Account {
            name: name.into(),
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn root_in_every_spelling_is_refused_unless_allowed() {
        let db = Table(vec![
            acc("root", 0, 0, &[0]),
            acc("toor", 0, 0, &[0]),
            acc("wheelie", 1001, 0, &[0]),
            acc("adm1", 1002, 1002, &[1002, 4, 0]),
            acc("www-data", 33, 33, &[33]),
            acc("akh", 1000, 1000, &[1000, 27]),
        ]);
        let named = |u: &str| Ok(Identity::Named(u.into()));
        // (user, allow_root, result or error fragment)
        let cases: &[(&str, bool, Result<Identity, &str>)] = &[
            ("", false, Ok(Identity::Dynamic)),
            ("www-data", false, named("www-data")),
            ("33", false, named("33")),
            ("akh", false, named("akh")),
            ("root", false, Err(ROOT_REFUSED)),
            ("0", false, Err(ROOT_REFUSED)),
            ("00", false, Err("leading zero")),
            (" 0", false, Err("not a valid user")),
            ("0 ", false, Err("not a valid user")),
            ("+0", false, Err("not a valid user")),
            ("toor", false, Err("\"toor\" is uid 0 (root)")),
            ("wheelie", false, Err("primary group 0")),
            ("1001", false, Err("primary group 0")),
            ("adm1", false, Err("member of group 0")),
            ("nobody-here", false, Err("does not exist on this node")),
            ("4242", false, Err("does not exist on this node")),
            ("root", true, named("root")),
            ("toor", true, named("toor")),
            ("adm1", true, named("adm1")),
            ("00", true, Err("leading zero")),
        ];
        for (user, allow, want) in cases {
            let got = identity(user, *allow, &db);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{user:?} allow={allow}"),
                (Err(frag), Err(e)) => {
                    assert!(e.contains(frag), "{user:?} allow={allow}: {e}")
                }
                _ => panic!("{user:?} allow={allow}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_real_user_database_knows_root() {
        let root = Nss.by_name("root").unwrap().expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(Nss.by_uid(0).unwrap().unwrap().name, "root");
        assert!(identity("root", false, &Nss).is_err());
        assert!(identity("0", false, &Nss).is_err());
        let e = identity("no-such-user-xyz", false, &Nss).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }
}
