//! `narun-exec`: the landlock exec wrapper for `mode: landlock` apps, and
//! the carrier of args that systemd cannot store verbatim
//! ([`encode_args`]). The only module that touches landlock. No async
//! runtime: it reads a policy, restricts itself and execs the app.
//!
//! ```text
//! narun-exec --policy /var/lib/narun/policies/hello.json -- /path/to/app ARGS...
//! narun-exec --args ENCODED -- /path/to/app
//! narun-exec --own-secrets /run/narun/files/hello narun-hello
//! narun-exec --probe ENCODED [--policy FILE]   (a health check, see [`probe`])
//! ```
//!
//! The policy file is written by the node agent (root-owned, never holds
//! secrets). The second form is the privileged `ExecStartPre=+` of apps
//! with `secrets:` files ([`secrets`]). Exit codes (reported in the
//! instance status): [`EXIT_SETUP`] 120 bad arguments or policy,
//! [`EXIT_SECRETS`] 121 the secret files could not be handed to the app's
//! user, [`EXIT_LANDLOCK`] 122 the kernel cannot enforce the policy
//! (mandatory mode), [`EXIT_EXEC`] 123 the app could not be executed.

pub mod probe;
pub mod secrets;

use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};
use serde::{Deserialize, Serialize};

/// Bad arguments or an unreadable policy.
pub const EXIT_SETUP: i32 = 120;
/// `--own-secrets` failed.
pub const EXIT_SECRETS: i32 = 121;
/// Landlock could not be enforced and the policy requires it.
pub const EXIT_LANDLOCK: i32 = 122;
/// execve failed.
pub const EXIT_EXEC: i32 = 123;

/// The go-landlock path groups of the spec's `landlock:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Groups {
    pub shared: bool,
    pub stdio: bool,
    pub tty: bool,
    pub tmp: bool,
    pub vminfo: bool,
    pub dns: bool,
    pub certs: bool,
}

/// One allowed path with its modes (`r`, `w`, `x`, `c`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRule {
    pub path: PathBuf,
    pub modes: String,
}

/// What the app may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Restrict the filesystem to `groups` and `paths` (`mode: landlock`).
    /// False for a policy that only restricts the network.
    pub filesystem: bool,
    pub groups: Groups,
    /// The spec's `landlock.paths` plus what the agent adds: the binary
    /// (`rx`), the working directory (`rwc`), mounted files (`r`).
    pub paths: Vec<PathRule>,
    /// TCP ports the app may connect to (`nonet.localPorts`); `None`: any.
    /// Needs Landlock ABI 4 (Linux 6.7); older kernels skip it.
    pub connect_tcp: Option<Vec<u16>>,
    /// TCP ports the app may bind (its `metrics.port`); `None`: any.
    pub bind_tcp: Option<Vec<u16>>,
    /// Proxy mode: the app may also bind the TCP port named by this
    /// environment variable (`PORT`, which `narun bridge` sets for each
    /// generation). Only with `bind_tcp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_port_env: Option<String>,
    /// Run unconfined (with a warning) where the kernel has no Landlock,
    /// instead of refusing to start.
    pub best_effort: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            filesystem: true,
            groups: Groups::default(),
            paths: Vec::new(),
            connect_tcp: None,
            bind_tcp: None,
            bind_port_env: None,
            best_effort: false,
        }
    }
}

impl Policy {
    /// The policy with `bind_port_env` resolved through `lookup` (the
    /// environment): its port joins `bind_tcp`. A missing or invalid value
    /// is an error, not a silently narrower or wider policy.
    pub fn resolve_env(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Policy, String> {
        let Some(var) = self.bind_port_env.take() else {
            return Ok(self);
        };
        let Some(bind) = self.bind_tcp.as_mut() else {
            return Ok(self);
        };
        let value = lookup(&var).ok_or_else(|| format!("{var} is not set (bind_port_env)"))?;
        match value.trim().parse::<u16>() {
            Ok(port) if port > 0 => bind.push(port),
            _ => return Err(format!("{var}={value:?} is not a TCP port (bind_port_env)")),
        }
        Ok(self)
    }
}

/// The paths of a go-landlock group: (path, modes). Same lists as the Go
/// narun (§6.7 of the reference).
pub fn group_paths(groups: &Groups) -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    if groups.shared {
        v.extend([
            ("/dev/null", "rw"),
            ("/lib", "rx"),
            ("/lib64", "rx"),
            ("/usr/lib", "rx"),
            ("/usr/lib64", "rx"),
            ("/usr/libexec", "rx"),
            ("/usr/local/lib", "rx"),
            ("/usr/local/lib64", "rx"),
            ("/etc/ld.so.conf", "r"),
            ("/etc/ld.so.cache", "r"),
            ("/etc/ld.so.conf.d", "r"),
        ]);
    }
    if groups.stdio {
        v.extend([
            ("/dev/full", "rw"),
            ("/dev/zero", "r"),
            ("/dev/fd", "r"),
            ("/dev/stdin", "rw"),
            ("/dev/stdout", "rw"),
            ("/dev/urandom", "r"),
            ("/dev/log", "w"),
            ("/usr/share/locale", "r"),
            ("/proc/self/cmdline", "r"),
            ("/usr/share/zoneinfo", "r"),
            ("/usr/share/common-licenses", "r"),
            ("/proc/sys/kernel/ngroups_max", "r"),
            ("/proc/sys/kernel/cap_last_cap", "r"),
            ("/proc/sys/vm/overcommit_memory", "r"),
        ]);
    }
    if groups.tty {
        v.extend([
            ("/dev/tty", "rw"),
            ("/dev/console", "rw"),
            ("/etc/terminfo", "r"),
            ("/usr/lib/terminfo", "r"),
            ("/usr/share/terminfo", "r"),
        ]);
    }
    if groups.tmp {
        v.push(("/tmp", "rwc"));
    }
    if groups.vminfo {
        v.extend([
            ("/proc/stat", "r"),
            ("/proc/meminfo", "r"),
            ("/proc/cpuinfo", "r"),
            ("/proc/diskstats", "r"),
            ("/proc/self/maps", "r"),
            ("/proc/sys/kernel/version", "r"),
            ("/sys/devices/system/cpu", "r"),
        ]);
    }
    if groups.dns {
        v.extend([
            ("/etc/hosts", "r"),
            ("/etc/hostname", "r"),
            ("/etc/services", "r"),
            ("/etc/protocols", "r"),
            ("/etc/resolv.conf", "r"),
            ("/etc/nsswitch.conf", "r"),
        ]);
    }
    if groups.certs {
        v.extend([
            ("/etc/ssl/certs", "r"),
            ("/etc/pki/tls/certs", "r"),
            ("/etc/ssl/ca-bundle.pem", "r"),
            ("/etc/pki/tls/cacert.pem", "r"),
            ("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "r"),
            ("/etc/ssl/cert.pem", "r"),
        ]);
    }
    v
}

/// Landlock rights for `modes` on a file or a directory. `c` (create and
/// remove entries) only means something on directories.
pub fn rights(modes: &str, is_dir: bool, abi: ABI) -> Result<BitFlags<AccessFs>, String> {
    let mut r = BitFlags::<AccessFs>::empty();
    for m in modes.chars() {
        match m {
            'r' => {
                r |= AccessFs::ReadFile;
                if is_dir {
                    r |= AccessFs::ReadDir;
                }
            }
            'w' => r |= AccessFs::WriteFile | AccessFs::Truncate,
            'x' => r |= AccessFs::Execute,
            'c' if is_dir => {
                r |= AccessFs::MakeReg
                    | AccessFs::MakeDir
                    | AccessFs::MakeSym
                    | AccessFs::MakeSock
                    | AccessFs::MakeFifo
                    | AccessFs::RemoveFile
                    | AccessFs::RemoveDir
                    | AccessFs::Refer
            }
            'c' => {}
            other => return Err(format!("unknown landlock mode {other:?} in {modes:?}")),
        }
    }
    // Keep only what this ABI knows.
    Ok(r & AccessFs::from_all(abi))
}

/// Can a rule be added for this file (opened by path)? Not a socket:
/// `/dev/stdout` resolves to one when the output is the journal.
pub fn reopenable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    !meta.file_type().is_socket()
}

/// What to do after trying to restrict: go on, or refuse to run.
pub fn decide(status: &RulesetStatus, best_effort: bool) -> Result<(), &'static str> {
    match (status, best_effort) {
        (RulesetStatus::NotEnforced, false) => Err(
            "Landlock is not available on this kernel; refusing to run unconfined (set landlock best effort to allow)",
        ),
        _ => Ok(()),
    }
}

/// The ABI narun asks for (newer kernels enforce at least this; older ones
/// enforce what they can).
const TARGET_ABI: ABI = ABI::V5;

/// Restrict this process to `policy`. Must run before execve.
pub fn restrict(policy: &Policy) -> Result<RulesetStatus, String> {
    // (path, modes, from a group): a group's paths are best effort.
    let mut rules: Vec<(PathBuf, String, bool)> = Vec::new();
    if policy.filesystem {
        rules.extend(
            group_paths(&policy.groups)
                .into_iter()
                .map(|(p, m)| (PathBuf::from(p), m.to_owned(), true)),
        );
        rules.extend(
            policy
                .paths
                .iter()
                .map(|r| (r.path.clone(), r.modes.clone(), false)),
        );
    }
    let e = |e: landlock::RulesetError| format!("landlock ruleset: {e}");
    let mut attr = Ruleset::default().set_compatibility(CompatLevel::BestEffort);
    if policy.filesystem {
        attr = attr
            .handle_access(AccessFs::from_all(TARGET_ABI))
            .map_err(e)?;
    }
    if policy.connect_tcp.is_some() {
        attr = attr.handle_access(AccessNet::ConnectTcp).map_err(e)?;
    }
    if policy.bind_tcp.is_some() {
        attr = attr.handle_access(AccessNet::BindTcp).map_err(e)?;
    }
    let mut ruleset = attr.create().map_err(e)?;
    for (ports, access) in [
        (&policy.connect_tcp, AccessNet::ConnectTcp),
        (&policy.bind_tcp, AccessNet::BindTcp),
    ] {
        for port in ports.iter().flatten() {
            ruleset = ruleset
                .add_rule(NetPort::new(*port, access))
                .map_err(|e| format!("landlock rule for TCP port {port}: {e}"))?;
        }
    }
    for (path, modes, from_group) in rules {
        // Paths that do not exist on this machine are skipped, as in Go.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !reopenable(&meta) {
            // A socket (e.g. /dev/stdout under systemd: the journal's
            // stream) cannot be opened by path at all, so a rule has
            // nothing to allow; the open descriptor works regardless.
            continue;
        }
        let access = rights(&modes, meta.is_dir(), TARGET_ABI)?;
        if access.is_empty() {
            continue;
        }
        let fd = match PathFd::new(&path) {
            Ok(fd) => fd,
            // A group's path this machine cannot open is skipped; a path
            // the spec names must work.
            Err(_) if from_group => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("landlock rule for {}: {e}", path.display()))?;
    }
    // restrict_self also sets no_new_privs.
    let status = ruleset
        .restrict_self()
        .map_err(|e| format!("landlock restrict_self: {e}"))?;
    Ok(status.ruleset)
}

/// A parsed `narun-exec` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `--policy FILE`: restrict with Landlock first.
    pub policy: Option<PathBuf>,
    /// The program and its arguments (those of `--args` after the ones on
    /// the command line).
    pub command: Vec<String>,
}

/// Longest `--args` value (the kernel bounds argv anyway; this bounds the
/// decoding).
const MAX_ARGS_ENCODED: usize = 4 << 20;

/// Encode an app's args for `narun-exec --args`: base64url (no padding) of
/// a JSON array. systemd 252 writes ExecStart= arguments with `$`, `;`,
/// quotes or a backslash into the transient unit file in a form it cannot
/// read back: after a daemon-reload the app would get other arguments.
/// This alphabet survives the round trip.
pub fn encode_args(args: &[String]) -> String {
    use base64::Engine;
    let json = serde_json::to_vec(args).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The inverse of [`encode_args`].
pub fn decode_args(s: &str) -> Result<Vec<String>, String> {
    use base64::Engine;
    if s.len() > MAX_ARGS_ENCODED {
        return Err(format!("--args is longer than {MAX_ARGS_ENCODED} bytes"));
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("--args: not base64url: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("--args: not a JSON array of strings: {e}"))
}

/// Parse `[--policy FILE] [--args ENCODED] -- PROGRAM ARGS...` (at least
/// one of the options).
pub fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut policy = None;
    let mut extra = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--policy" => policy = Some(PathBuf::from(it.next().ok_or("--policy needs a FILE")?)),
            "--args" => extra = Some(decode_args(it.next().ok_or("--args needs a value")?)?),
            "--" => {
                let mut command: Vec<String> = it.cloned().collect();
                if command.is_empty() {
                    return Err("no program after --".into());
                }
                if policy.is_none() && extra.is_none() {
                    return Err("--policy FILE or --args is required".into());
                }
                command.extend(extra.unwrap_or_default());
                return Ok(Invocation { policy, command });
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Err("usage: narun-exec [--policy FILE] [--args ENCODED] -- PROGRAM [ARGS...]".into())
}

/// Read a policy file.
pub fn read_policy(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read policy {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid policy {}: {e}", path.display()))
}

/// The whole wrapper, in order: parse, read the policy, restrict (which sets
/// no_new_privs), decide, exec. Returns only on failure, with the exit code.
pub fn main(args: Vec<String>) -> i32 {
    use std::os::unix::process::CommandExt;
    let fail = |code: i32, msg: &str| {
        eprintln!("narun-exec: {msg}");
        code
    };
    if args.first().map(String::as_str) == Some("--own-secrets") {
        let [_, dir, user] = args.as_slice() else {
            return fail(EXIT_SETUP, "usage: narun-exec --own-secrets DIR USER");
        };
        return match secrets::resolve_user(user)
            .and_then(|(_, gid)| secrets::own(Path::new(dir), gid))
        {
            Ok(_) => 0,
            Err(e) => fail(EXIT_SECRETS, &format!("secret files: {e}")),
        };
    }
    if args.first().map(String::as_str) == Some("--probe") {
        let (encoded, policy) = match args.as_slice() {
            [_, e] => (e, None),
            [_, e, flag, p] if flag == "--policy" => (e, Some(Path::new(p))),
            _ => {
                return fail(
                    EXIT_SETUP,
                    "usage: narun-exec --probe ENCODED [--policy FILE]",
                )
            }
        };
        return match probe::decode(encoded) {
            Ok(p) => probe::run(&p, policy),
            Err(e) => fail(EXIT_SETUP, &e),
        };
    }
    let Invocation { policy, command } = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => return fail(EXIT_SETUP, &e),
    };
    if let Some(policy_path) = policy {
        let policy = match read_policy(&policy_path)
            .and_then(|p| p.resolve_env(|v| std::env::var(v).ok()))
        {
            Ok(p) => p,
            Err(e) => return fail(EXIT_SETUP, &e),
        };
        let status = match restrict(&policy) {
            Ok(s) => s,
            Err(e) if policy.best_effort => {
                eprintln!("narun-exec: {e}; running unconfined (best effort)");
                RulesetStatus::NotEnforced
            }
            Err(e) => return fail(EXIT_LANDLOCK, &e),
        };
        if let Err(e) = decide(&status, policy.best_effort) {
            return fail(EXIT_LANDLOCK, e);
        }
        if status == RulesetStatus::NotEnforced {
            eprintln!("narun-exec: Landlock unavailable; running unconfined (best effort)");
        }
    }
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    fail(EXIT_EXEC, &format!("cannot execute {}: {err}", command[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_rights_on_files_and_dirs() {
        let abi = ABI::V5;
        assert_eq!(
            rights("r", false, abi).unwrap(),
            BitFlags::from(AccessFs::ReadFile)
        );
        assert_eq!(
            rights("r", true, abi).unwrap(),
            AccessFs::ReadFile | AccessFs::ReadDir
        );
        assert_eq!(
            rights("rx", false, abi).unwrap(),
            AccessFs::ReadFile | AccessFs::Execute
        );
        assert!(rights("c", true, abi).unwrap().contains(AccessFs::MakeReg));
        assert!(rights("c", false, abi).unwrap().is_empty(), "c is for dirs");
        assert!(rights("w", false, ABI::V2)
            .unwrap()
            .contains(AccessFs::WriteFile));
        assert!(
            !rights("w", false, ABI::V2)
                .unwrap()
                .contains(AccessFs::Truncate),
            "Truncate needs ABI 3"
        );
        assert!(rights("rz", false, abi).is_err());
    }

    #[test]
    fn the_bridge_port_joins_the_bind_rules() {
        let proxy = Policy {
            bind_tcp: Some(vec![9464]),
            bind_port_env: Some("PORT".into()),
            ..Policy::default()
        };
        let env = |v: Option<&'static str>| {
            move |k: &str| (k == "PORT").then_some(v).flatten().map(String::from)
        };
        let p = proxy.clone().resolve_env(env(Some("8123"))).unwrap();
        assert_eq!(p.bind_tcp, Some(vec![9464, 8123]));
        assert_eq!(p.bind_port_env, None);
        for bad in [None, Some(""), Some("0"), Some("70000"), Some("80; 22")] {
            let e = proxy.clone().resolve_env(env(bad)).unwrap_err();
            assert!(e.contains("PORT"), "{e}");
        }
        // Binds unrestricted: nothing to add.
        let any = Policy {
            bind_port_env: Some("PORT".into()),
            ..Policy::default()
        };
        assert_eq!(any.resolve_env(env(None)).unwrap().bind_tcp, None);
        // Old policy files (no such key) still load.
        let old: Policy = serde_json::from_str(r#"{"bind_tcp":[1]}"#).unwrap();
        assert_eq!(old.bind_port_env, None);
    }

    #[test]
    fn groups_follow_go_landlock() {
        let none = group_paths(&Groups::default());
        assert!(none.is_empty());
        let g = Groups {
            dns: true,
            tmp: true,
            ..Groups::default()
        };
        let paths = group_paths(&g);
        assert!(paths.contains(&("/etc/resolv.conf", "r")));
        assert!(paths.contains(&("/tmp", "rwc")));
        assert!(!paths.iter().any(|(p, _)| *p == "/lib"));
    }

    #[test]
    fn mandatory_mode_refuses_an_unenforced_ruleset() {
        assert!(decide(&RulesetStatus::NotEnforced, false).is_err());
        assert!(decide(&RulesetStatus::NotEnforced, true).is_ok());
        assert!(decide(&RulesetStatus::PartiallyEnforced, false).is_ok());
        assert!(decide(&RulesetStatus::FullyEnforced, false).is_ok());
    }

    #[test]
    fn own_secrets_needs_a_directory_and_a_user() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(main(a(&["--own-secrets"])), EXIT_SETUP);
        assert_eq!(main(a(&["--own-secrets", "/nonexistent"])), EXIT_SETUP);
        assert_eq!(
            main(a(&["--own-secrets", "/nonexistent", "root"])),
            EXIT_SECRETS
        );
        assert_eq!(
            main(a(&["--own-secrets", "/tmp", "narun-no-such-user"])),
            EXIT_SECRETS
        );
    }

    #[test]
    fn arguments() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_args(&a(&["--policy", "/p.json", "--", "/bin/app", "-x"])).unwrap(),
            Invocation {
                policy: Some("/p.json".into()),
                command: a(&["/bin/app", "-x"])
            }
        );
        let literal = a(&[
            "$FOO", "${FOO}", "$$", "%n", "a b", "\\", "'q'", "\"", ";", "é", "",
        ]);
        let enc = encode_args(&literal);
        assert!(
            enc.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{enc}"
        );
        assert_eq!(
            parse_args(&a(&["--args", &enc, "--", "/bin/app"])).unwrap(),
            Invocation {
                policy: None,
                command: [a(&["/bin/app"]), literal.clone()].concat()
            }
        );
        let both = parse_args(&a(&["--policy", "/p", "--args", &enc, "--", "/bin/app"])).unwrap();
        assert_eq!(both.policy, Some("/p".into()));
        assert_eq!(both.command[1..], literal);
        assert!(parse_args(&a(&["--", "/bin/app"])).is_err());
        assert!(parse_args(&a(&["--policy", "/p"])).is_err());
        assert!(parse_args(&a(&["--policy", "/p", "--"])).is_err());
        assert!(parse_args(&a(&["--policy"])).is_err());
        assert!(parse_args(&a(&["--args", "!!", "--", "/bin/app"])).is_err());
        assert!(
            parse_args(&a(&["--args", "e30", "--", "/bin/app"])).is_err(),
            "{{}}"
        );
        assert_eq!(main(a(&["--args", "!!", "--", "/bin/true"])), EXIT_SETUP);
    }
}
