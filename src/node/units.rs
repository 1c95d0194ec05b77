//! Replica → transient unit, as a pure function tested as data.

use std::path::PathBuf;
use std::time::Duration;

use crate::exec::probe::{Check, Probe};
use crate::exec::{Groups, PathRule, Policy};
use crate::spec::{self, ServiceSpec, SECRETS_DIR};
use crate::systemd::{ExecCommand, Prop, TransientUnit};

/// The slice every app runs in (a fleet-wide cap can be set on it).
pub const SLICE: &str = "narun.slice";
/// Glob matching every narun app unit.
pub const UNIT_GLOB: &str = "narun-app@*.service";

/// Restart policy, mapped onto systemd's `Restart=`/`StartLimit*=`.
#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    /// `always`, `on-failure` or `no`.
    pub policy: &'static str,
    pub delay: Duration,
    /// Restarts allowed within `window` before systemd gives up (unit failed).
    pub max: u32,
    pub window: Duration,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: "on-failure",
            delay: Duration::from_secs(1),
            max: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Network placement of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Host,
    /// Only a loopback interface.
    None,
    /// The host's network namespace, restricted to loopback addresses
    /// (`IPAddressDeny=any`, `IPAddressAllow=localhost`): Go's `nonet` with
    /// `localPorts`, whose ports the landlock policy narrows further.
    Loopback,
    /// An existing network namespace (`/run/netns/blue`).
    Namespace(String),
}

/// Which systemd runs the apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    /// The system manager: a dynamic or named user per app, the full
    /// sandbox, working directory `StateDirectory=narun-app/<app>`.
    System,
    /// A user's manager (`systemctl --user`, for `narun dev` without
    /// root): apps run as that user, the sandbox in a user namespace
    /// (`PrivateUsers=yes`), working directory `<apps_dir>/<app>`.
    User { apps_dir: PathBuf },
}

impl Manager {
    /// The app's working directory.
    pub fn workdir(&self, app: &str) -> PathBuf {
        match self {
            Manager::System => PathBuf::from(format!("/var/lib/{}", state_directory(app))),
            Manager::User { apps_dir } => apps_dir.join(app),
        }
    }

    /// Where the app finds its `secrets:` files, given the host directory
    /// the agent writes.
    pub fn secrets_dir(&self, host_dir: &std::path::Path) -> PathBuf {
        match self {
            Manager::System => PathBuf::from(SECRETS_DIR),
            Manager::User { .. } => host_dir.to_path_buf(),
        }
    }
}

/// Who the app runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A dynamic user per app (`DynamicUser=yes`, `User=narun-<app>`).
    Dynamic,
    /// A named account of the machine.
    Named(String),
}

/// Everything the renderer needs for one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub app: String,
    pub index: u32,
    pub node_id: String,
    pub node_os: String,
    pub node_arch: String,
    /// Content hash of what this replica runs (spec for this node + binary digest).
    pub hash: String,
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// Non-secret environment, in order.
    pub env: Vec<(String, String)>,
    pub nats_url: String,
    /// `NATS_CA` for the app: the CA bundle of a TLS NATS server.
    pub nats_ca: Option<String>,
    /// `NATS_CREDS` for the app: the path of its own creds file (under
    /// /run/secrets), when the node mints per-app identities.
    pub nats_creds: Option<String>,
    pub identity: Identity,
    pub memory_low_mb: Option<u64>,
    pub memory_max_mb: Option<u64>,
    pub cpu_cores: Option<f64>,
    pub tasks_max: Option<u64>,
    pub restart: Restart,
    pub stop_timeout: Duration,
    pub network: Network,
    /// systemd's major version, to use newer properties only where they exist.
    pub systemd_version: u32,
    /// Root-only file with the app's secret environment (`EnvironmentFiles=`):
    /// secrets never appear in unit properties.
    pub environment_file: Option<PathBuf>,
    /// Files exposed read-only in the working directory: (source on the
    /// host, path relative to the working directory).
    pub files: Vec<(PathBuf, String)>,
    /// `mode: landlock`: (wrapper binary, policy file) run before the app.
    pub landlock: Option<(PathBuf, PathBuf)>,
    /// Under the slot's next name (a surge during a rollout).
    pub next: bool,
    /// The app sends `READY=1`: `Type=notify`.
    pub notify: bool,
    /// A health check (`health.exec/tcp/http`): `narun-exec --probe` as
    /// `ExecStartPost=`, so the unit is active only once it passes.
    pub probe: Option<(PathBuf, Probe)>,
    /// Proxy mode (`http:`): the unit's main process is `narun bridge`,
    /// which runs the app (port in `PORT`) and serves its NATS service.
    pub bridge: Option<Bridge>,
    /// `narun-exec`, which carries args systemd cannot store verbatim
    /// ([`args_need_wrapper`]); unused when the args are plain.
    pub exec_wrapper: Option<PathBuf>,
    /// `secrets:` files: a root-only directory handed to the app's user by
    /// the privileged `ExecStartPre=+<helper> --own-secrets`, then bound
    /// read-only at `/run/secrets`.
    pub secret_files: Option<SecretFiles>,
    /// The system manager, or a user's.
    pub manager: Manager,
}

/// Proxy mode: the bridge binary (`narun`) and the app's port (0: the
/// bridge picks a free one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub binary: PathBuf,
    pub port: u16,
}

/// Where an app's `secrets:` files are and who hands them over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFiles {
    /// The directory the agent writes (root-only until the unit starts).
    pub dir: PathBuf,
    /// `narun-exec`.
    pub helper: PathBuf,
}

/// `narun-app@<app>.service` for replica 0, `narun-app@<app>:<i>.service` after.
pub fn unit_name(app: &str, index: u32) -> String {
    if index == 0 {
        format!("narun-app@{app}.service")
    } else {
        format!("narun-app@{app}:{index}.service")
    }
}

/// The other unit name of a replica's slot, for a surge during a rollout:
/// `narun-app@<app>.next.service`, `narun-app@<app>:<i>.next.service` (app
/// names have no `.`).
pub fn next_unit_name(app: &str, index: u32) -> String {
    if index == 0 {
        format!("narun-app@{app}.next.service")
    } else {
        format!("narun-app@{app}:{index}.next.service")
    }
}

/// The (app, replica index, is the next name) of a narun unit name.
pub fn parse_unit(name: &str) -> Option<(String, u32, bool)> {
    let inner = name.strip_prefix("narun-app@")?.strip_suffix(".service")?;
    let (inner, next) = match inner.strip_suffix(".next") {
        Some(i) => (i, true),
        None => (inner, false),
    };
    if inner.contains('.') {
        return None;
    }
    match inner.rsplit_once(':') {
        Some((app, idx)) => {
            let idx: u32 = idx.parse().ok()?;
            (idx > 0 && !app.is_empty()).then(|| (app.to_owned(), idx, next))
        }
        None => (!inner.is_empty()).then(|| (inner.to_owned(), 0, next)),
    }
}

/// Go-style instance id used in NATS messages: `<app>-<i>`.
pub fn instance_id(app: &str, index: u32) -> String {
    format!("{app}-{index}")
}

/// The (app, replica index) a narun unit name stands for (either name of
/// the slot).
pub fn parse_unit_name(name: &str) -> Option<(String, u32)> {
    parse_unit(name).map(|(app, index, _)| (app, index))
}

const HASH_OPEN: &str = " [spec ";

/// Unit description; carries the hash so an agent restart can adopt units.
pub fn description(app: &str, index: u32, hash: &str) -> String {
    format!("narun app {app} replica {index}{HASH_OPEN}{hash}]")
}

/// A unit's hash: the spec's node hash (what `narun deploy --wait` computes
/// from the spec and the binary's digest), then, when the app has inputs
/// the CLI cannot know (secret revisions, mounted files' digests, the NATS
/// identity's signing key), `+` and a hash of those. A change of either
/// replaces the replicas; statuses report [`spec_part`].
pub fn unit_hash(spec_hash: &str, inputs: &str) -> String {
    if inputs.is_empty() {
        return spec_hash.to_owned();
    }
    use sha2::Digest;
    let sum = sha2::Sha256::digest(inputs.as_bytes());
    let short: String = sum[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{spec_hash}+{short}")
}

/// The spec's part of a [`unit_hash`].
pub fn spec_part(hash: &str) -> &str {
    hash.split_once('+').map_or(hash, |(spec, _)| spec)
}

/// The hash recorded in a unit's description by [`description`].
pub fn hash_from_description(desc: &str) -> Option<&str> {
    let start = desc.rfind(HASH_OPEN)? + HASH_OPEN.len();
    desc[start..].strip_suffix(']')
}

/// The working directory of an app (systemd `StateDirectory=`, private to
/// the app's user, kept across restarts and upgrades).
pub fn state_directory(app: &str) -> String {
    format!("narun-app/{app}")
}

fn b(v: bool) -> Prop {
    Prop::Bool(v)
}
fn s(v: impl Into<String>) -> Prop {
    Prop::Str(v.into())
}
fn usec(d: Duration) -> Prop {
    Prop::U64(d.as_micros() as u64)
}

/// Render a replica as a transient unit.
pub fn render(r: &Replica) -> TransientUnit {
    let name = if r.next {
        next_unit_name(&r.app, r.index)
    } else {
        unit_name(&r.app, r.index)
    };
    let workdir = r.manager.workdir(&r.app).to_string_lossy().into_owned();
    let user_manager = matches!(r.manager, Manager::User { .. });
    let mut p: Vec<(&'static str, Prop)> = Vec::new();

    p.push(("Description", s(description(&r.app, r.index, &r.hash))));
    p.push(("Slice", s(SLICE)));
    let notify = r.notify || r.bridge.is_some();
    if notify {
        // READY=1 from the main process (the consumer library sends it once
        // its endpoint is subscribed; so does the bridge, once the app
        // listens).
        p.push(("Type", s("notify")));
        p.push(("NotifyAccess", s("main")));
    } else {
        p.push(("Type", s("exec")));
    }
    if notify || r.probe.is_some() {
        // The unit is active once ready. No start timeout: the agent judges
        // `progressDeadline` itself (a rollout rolls back), and an app
        // waiting for NATS (a node booting offline) keeps waiting instead of
        // being killed into its start limit.
        p.push(("TimeoutStartUSec", Prop::U64(u64::MAX)));
    }
    let binary = r.binary.to_string_lossy().into_owned();
    let mut exec = exec_command(r, binary);
    if let Some(b) = &r.bridge {
        // `narun bridge ... -- <the app's command>`: the bridge is the main
        // process, the app its child in the same unit.
        let bridge = b.binary.to_string_lossy().into_owned();
        let mut argv = vec![
            bridge.clone(),
            "bridge".to_owned(),
            "--service".to_owned(),
            r.app.clone(),
            "--port".to_owned(),
            b.port.to_string(),
            "--".to_owned(),
        ];
        argv.extend(exec.argv);
        exec = ExecCommand {
            path: bridge,
            argv,
            ignore_failure: false,
        };
    }
    if let Some(sf) = r.secret_files.as_ref().filter(|_| !user_manager) {
        let helper = sf.helper.to_string_lossy().into_owned();
        p.push((
            "ExecStartPreEx",
            Prop::ExecEx(vec![(
                ExecCommand {
                    path: helper.clone(),
                    argv: vec![
                        helper,
                        "--own-secrets".into(),
                        sf.dir.to_string_lossy().into_owned(),
                        user_name(r),
                    ],
                    ignore_failure: false,
                },
                // `+`: as root, outside the sandbox, once the user exists.
                vec!["privileged".into()],
            )]),
        ));
    }
    p.push(("ExecStart", Prop::Exec(vec![exec])));
    if let Some((wrapper, probe)) = &r.probe {
        // In the unit (its user, namespaces, sandbox); an exec check under
        // the app's Landlock policy too.
        let wrapper = wrapper.to_string_lossy().into_owned();
        let mut argv = vec![
            wrapper.clone(),
            "--probe".to_owned(),
            crate::exec::probe::encode(probe),
        ];
        if let Some((_, policy)) = &r.landlock {
            argv.extend(["--policy".to_owned(), policy.to_string_lossy().into_owned()]);
        }
        p.push((
            "ExecStartPost",
            Prop::Exec(vec![ExecCommand {
                path: wrapper,
                argv,
                ignore_failure: false,
            }]),
        ));
    }
    if user_manager {
        // Created by the agent; writable despite ProtectSystem=strict.
        p.push(("ReadWritePaths", Prop::Strs(vec![workdir.clone()])));
    } else {
        p.push(("StateDirectory", Prop::Strs(vec![state_directory(&r.app)])));
    }
    p.push(("WorkingDirectory", s(workdir.clone())));

    let mut env = vec![
        format!("NARUN_APP_NAME={}", r.app),
        format!("NARUN_INSTANCE_ID={}", instance_id(&r.app, r.index)),
        format!("NARUN_REPLICA_INDEX={}", r.index),
        format!("NARUN_NODE_ID={}", r.node_id),
        format!("NARUN_NODE_OS={}", r.node_os),
        format!("NARUN_NODE_ARCH={}", r.node_arch),
        format!("NARUN_INSTANCE_ROOT={workdir}"),
        format!("NATS_URL={}", r.nats_url),
    ];
    if let Some(ca) = &r.nats_ca {
        env.push(format!("NATS_CA={ca}"));
    }
    if let Some(creds) = &r.nats_creds {
        env.push(format!("NATS_CREDS={creds}"));
        // Its requests' replies come to an inbox only it may read.
        env.push(format!(
            "NATS_INBOX_PREFIX={}",
            crate::nats::jwt::app_inbox_prefix(&r.app)
        ));
    }
    if let Some(sf) = &r.secret_files {
        env.push(format!(
            "NARUN_SECRETS_DIR={}",
            r.manager.secrets_dir(&sf.dir).display()
        ));
    }
    env.extend(r.env.iter().map(|(k, v)| format!("{k}={v}")));
    p.push(("Environment", Prop::Strs(env)));
    if let Some(f) = &r.environment_file {
        p.push((
            "EnvironmentFiles",
            Prop::EnvFiles(vec![(f.to_string_lossy().into_owned(), false)]),
        ));
    }
    let mut binds: Vec<(String, String, bool, u64)> = r
        .files
        .iter()
        .map(|(src, rel)| {
            (
                src.to_string_lossy().into_owned(),
                format!("{workdir}/{rel}"),
                false,
                0,
            )
        })
        .collect();
    if let Some(sf) = r.secret_files.as_ref().filter(|_| !user_manager) {
        binds.push((
            sf.dir.to_string_lossy().into_owned(),
            SECRETS_DIR.into(),
            false,
            0,
        ));
    }
    if !binds.is_empty() {
        p.push(("BindReadOnlyPaths", Prop::Binds(binds)));
    }

    // Supervision: systemd restarts, kills and logs.
    // Proxy mode: SIGTERM to the bridge only (it drains, then stops the
    // app); whatever is left is killed at the stop timeout.
    p.push((
        "KillMode",
        s(if r.bridge.is_some() {
            "mixed"
        } else {
            "control-group"
        }),
    ));
    p.push(("TimeoutStopUSec", usec(r.stop_timeout)));
    p.push(("Restart", s(r.restart.policy)));
    if r.restart.policy == "no" {
        // `restart: never`: one run. The unit stays loaded after it exits
        // (`active (exited)`), so the agent sees it ran instead of finding
        // no unit and starting the replica again. (Not for `on-failure`:
        // a long-running app that exits 0 unexpectedly is started again by
        // the agent rather than left dead behind an active unit.)
        p.push(("RemainAfterExit", Prop::Bool(true)));
    }
    p.push(("RestartUSec", usec(r.restart.delay)));
    p.push(("StartLimitBurst", Prop::U32(r.restart.max)));
    p.push(("StartLimitIntervalUSec", usec(r.restart.window)));
    p.push(("StandardOutput", s("journal")));
    p.push(("StandardError", s("journal")));
    if r.systemd_version >= 240 {
        // No line is lost: journald's per-unit rate limit (10,000 lines per
        // 30 s by default) would drop a burst before narun sees it. The
        // journal's size limits still bound what it keeps.
        p.push(("LogRateLimitIntervalUSec", Prop::U64(0)));
    }
    p.push(("SyslogIdentifier", s(r.app.clone())));
    p.push((
        "LogExtraFields",
        Prop::Bytes(vec![
            format!("NARUN_APP={}", r.app).into_bytes(),
            format!("NARUN_INSTANCE={}", instance_id(&r.app, r.index)).into_bytes(),
            format!("NARUN_NODE={}", r.node_id).into_bytes(),
        ]),
    ));

    // Limits (cgroup v2 names only; systemd translates on hybrid hosts).
    p.push(("MemoryAccounting", b(true)));
    p.push(("CPUAccounting", b(true)));
    p.push(("TasksAccounting", b(true)));
    let mb = |m: u64| Prop::U64(m.saturating_mul(1024 * 1024));
    if let Some(m) = r.memory_low_mb {
        p.push(("MemoryLow", mb(m)));
    }
    if let Some(m) = r.memory_max_mb {
        p.push(("MemoryMax", mb(m)));
    }
    if let Some(c) = r.cpu_cores {
        p.push((
            "CPUQuotaPerSecUSec",
            Prop::U64((c * 1_000_000.0).round() as u64),
        ));
    }
    if let Some(t) = r.tasks_max {
        p.push(("TasksMax", Prop::U64(t)));
    }

    // Identity.
    match (&r.identity, user_manager) {
        // The user's own processes; the sandbox below needs a user namespace.
        (_, true) => p.push(("PrivateUsers", b(true))),
        (Identity::Dynamic, false) => {
            p.push(("DynamicUser", b(true)));
            p.push(("User", s(dynamic_user(&r.app))));
        }
        (Identity::Named(user), false) => p.push(("User", s(user.clone()))),
    }

    // Sandbox defaults.
    p.push(("NoNewPrivileges", b(true)));
    p.push(("ProtectSystem", s("strict")));
    // A user manager's apps live under the user's runtime directory.
    p.push((
        "ProtectHome",
        s(if user_manager { "read-only" } else { "yes" }),
    ));
    p.push(("PrivateTmp", b(true)));
    p.push(("PrivateDevices", b(true)));
    p.push(("PrivateIPC", b(true)));
    p.push(("ProtectKernelTunables", b(true)));
    p.push(("ProtectKernelModules", b(true)));
    p.push(("ProtectKernelLogs", b(true)));
    p.push(("ProtectControlGroups", b(true)));
    p.push(("ProtectClock", b(true)));
    p.push(("ProtectHostname", b(true)));
    p.push(("ProtectProc", s("invisible")));
    p.push(("RestrictSUIDSGID", b(true)));
    p.push(("LockPersonality", b(true)));
    p.push(("RestrictRealtime", b(true)));
    // The D-Bus value is the set of namespace types allowed: none.
    p.push(("RestrictNamespaces", Prop::U64(0)));
    p.push(("SystemCallArchitectures", Prop::Strs(vec!["native".into()])));
    p.push(("CapabilityBoundingSet", Prop::U64(0)));
    p.push(("AmbientCapabilities", Prop::U64(0)));
    p.push(("UMask", Prop::U32(0o077)));
    if r.systemd_version >= 257 {
        p.push(("PrivatePIDs", b(true)));
    }
    match &r.network {
        Network::Host => {}
        Network::None => p.push(("PrivateNetwork", b(true))),
        Network::Loopback => {
            // (address family, address, prefix length)
            let v4 = |a: [u8; 4], len| (2, a.to_vec(), len);
            let v6 = |a: [u8; 16], len| (10, a.to_vec(), len);
            let mut lo6 = [0u8; 16];
            lo6[15] = 1;
            p.push((
                "IPAddressDeny",
                Prop::IpAddrs(vec![v4([0; 4], 0), v6([0; 16], 0)]),
            ));
            p.push((
                "IPAddressAllow",
                Prop::IpAddrs(vec![v4([127, 0, 0, 0], 8), v6(lo6, 128)]),
            ));
        }
        Network::Namespace(path) => p.push(("NetworkNamespacePath", s(path.clone()))),
    }

    TransientUnit {
        name,
        properties: p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// Can systemd store `arg` verbatim? Over D-Bus it would take anything,
/// but it expands `$VAR`, `${VAR}` and `$$` when it execs (an arg
/// `$DBPASS` would put a secret into the world-readable /proc/PID/cmdline),
/// and systemd 252 writes `$`, `;`, quotes, backslashes and white space
/// into the transient unit file in a form it cannot read back (the app gets
/// other arguments after a daemon-reload). Only this alphabet is safe.
pub fn plain_arg(arg: &str) -> bool {
    !arg.is_empty()
        && arg.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'+' | b',' | b'@'
                )
        })
}

/// Do these args need `narun-exec --args` to reach the app as written?
pub fn args_need_wrapper(args: &[String]) -> bool {
    !args.iter().all(|a| plain_arg(a))
}

/// The `ExecStart=` of a replica: the app with its args exactly as written,
/// through `narun-exec` when Landlock or the args need it.
fn exec_command(r: &Replica, binary: String) -> ExecCommand {
    let carried = args_need_wrapper(&r.args);
    let wrapper = match (&r.landlock, &r.exec_wrapper) {
        (Some((w, _)), _) => Some(w),
        (None, Some(w)) if carried => Some(w),
        _ => None,
    };
    let Some(wrapper) = wrapper else {
        let mut argv = vec![binary.clone()];
        // Without a wrapper (not configured): at least no expansion, by
        // systemd's own `$$` escape (exact until a daemon-reload).
        argv.extend(r.args.iter().map(|a| a.replace('$', "$$")));
        return ExecCommand {
            path: binary,
            argv,
            ignore_failure: false,
        };
    };
    let wrapper = wrapper.to_string_lossy().into_owned();
    let mut argv = vec![wrapper.clone()];
    if let Some((_, policy)) = &r.landlock {
        argv.extend(["--policy".to_owned(), policy.to_string_lossy().into_owned()]);
    }
    if carried {
        argv.extend(["--args".to_owned(), crate::exec::encode_args(&r.args)]);
    }
    argv.extend(["--".to_owned(), binary]);
    if !carried {
        argv.extend(r.args.iter().cloned());
    }
    ExecCommand {
        path: wrapper,
        argv,
        ignore_failure: false,
    }
}

/// The health check of a spec (`health.exec/tcp/http`), for
/// `narun-exec --probe`.
pub fn probe(health: &spec::Health) -> Option<Probe> {
    let check = if !health.exec.is_empty() {
        Check::Exec(health.exec.clone())
    } else if let Some(port) = health.tcp {
        Check::Tcp(port)
    } else {
        let h = health.http.as_ref()?;
        Check::Http {
            port: h.port,
            path: if h.path.is_empty() {
                "/".into()
            } else {
                h.path.clone()
            },
        }
    };
    let ms = |d: Option<spec::SpecDuration>| {
        d.unwrap_or(spec::DEFAULT_CHECK_INTERVAL).0.as_millis() as u64
    };
    Some(Probe {
        check,
        interval_ms: ms(health.interval),
        timeout_ms: ms(health.timeout),
    })
}

/// The `User=` of a replica.
fn user_name(r: &Replica) -> String {
    match &r.identity {
        Identity::Dynamic => dynamic_user(&r.app),
        Identity::Named(u) => u.clone(),
    }
}

/// The landlock policy of an app, if it needs `narun-exec`: `mode:
/// landlock` (filesystem rules, plus the TCP ports of `nonet.localPorts`),
/// or any mode with `nonet.localPorts` (TCP connect limited to those ports,
/// binds to the metrics port and, in proxy mode, the app's `PORT`; best
/// effort, since the loopback restriction is systemd's). `binary` and `files` are the host paths the app needs.
pub fn landlock_policy(
    spec: &ServiceSpec,
    binary: &std::path::Path,
    files: &[PathBuf],
    manager: &Manager,
    secrets_host_dir: Option<&std::path::Path>,
) -> Option<Policy> {
    let ports = !spec.nonet.local_ports.is_empty();
    let (connect_tcp, bind_tcp) = if ports {
        let connect: Vec<u16> = spec
            .nonet
            .local_ports
            .iter()
            .filter(|p| p.protocol.is_empty() || p.protocol == "tcp")
            .map(|p| p.port)
            .collect();
        let bind: Vec<u16> = (spec.metrics.port != 0)
            .then_some(spec.metrics.port)
            .into_iter()
            .collect();
        (Some(connect), Some(bind))
    } else {
        (None, None)
    };
    // Proxy mode: the app listens on the port the bridge gives it in PORT.
    let bind_port_env = (ports && spec.http.is_some()).then(|| "PORT".to_owned());
    match spec.mode {
        spec::Mode::Landlock => {
            let l = &spec.landlock;
            let mut paths: Vec<PathRule> = l
                .paths
                .iter()
                .map(|p| PathRule {
                    path: p.path.clone().into(),
                    modes: p.modes.clone(),
                })
                .collect();
            paths.push(PathRule {
                path: binary.to_path_buf(),
                modes: "rx".into(),
            });
            paths.push(PathRule {
                path: manager.workdir(&spec.name),
                modes: "rwc".into(),
            });
            paths.extend(files.iter().map(|src| PathRule {
                path: src.clone(),
                modes: "r".into(),
            }));
            if let Some(dir) = secrets_host_dir {
                paths.push(PathRule {
                    path: manager.secrets_dir(dir),
                    modes: "r".into(),
                });
            }
            Some(Policy {
                filesystem: true,
                groups: Groups {
                    shared: l.shared,
                    stdio: l.stdio,
                    tty: l.tty,
                    tmp: l.tmp,
                    vminfo: l.vminfo,
                    dns: l.dns,
                    certs: l.certs,
                },
                paths,
                connect_tcp,
                bind_tcp,
                bind_port_env,
                best_effort: l.best_effort,
            })
        }
        spec::Mode::Exec if ports => Some(Policy {
            filesystem: false,
            connect_tcp,
            bind_tcp,
            bind_port_env,
            best_effort: true,
            ..Policy::default()
        }),
        spec::Mode::Exec => None,
    }
}

/// Dynamic user name of an app: one uid per app, shared by its replicas.
/// User names are at most 31 characters; long app names are shortened with
/// a hash suffix so two apps never share a uid.
pub fn dynamic_user(app: &str) -> String {
    let name = format!("narun-{}", app.to_ascii_lowercase().replace('.', "-"));
    if name.len() <= 31 {
        return name;
    }
    let h = fnv1a(app.as_bytes());
    format!("{}-{:08x}", &name[..22], h as u32)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// systemd's major version from `Manager.Version` ("252.38-1~deb12u1" → 252).
pub fn systemd_major(version: &str) -> u32 {
    version
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> Replica {
        Replica {
            app: "hello".into(),
            index: 0,
            node_id: "node-1".into(),
            node_os: "linux".into(),
            node_arch: "amd64".into(),
            hash: "abc123".into(),
            binary: "/var/lib/narun/binaries/x/hello".into(),
            args: vec!["--port".into(), "1".into()],
            env: vec![("GREETING".into(), "hi".into())],
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_ca: None,
            nats_creds: None,
            identity: Identity::Dynamic,
            memory_low_mb: Some(64),
            memory_max_mb: Some(128),
            cpu_cores: Some(0.5),
            tasks_max: Some(32),
            restart: Restart::default(),
            stop_timeout: Duration::from_secs(10),
            network: Network::Host,
            systemd_version: 252,
            environment_file: None,
            files: vec![],
            landlock: None,
            exec_wrapper: Some("/usr/libexec/narun/narun-exec".into()),
            next: false,
            notify: false,
            probe: None,
            bridge: None,
            secret_files: None,
            manager: Manager::System,
        }
    }

    #[test]
    fn unit_names_and_instance_ids() {
        assert_eq!(unit_name("hello", 0), "narun-app@hello.service");
        assert_eq!(unit_name("hello", 2), "narun-app@hello:2.service");
        assert_eq!(instance_id("hello", 2), "hello-2");
        assert_eq!(
            parse_unit_name("narun-app@hello:2.service"),
            Some(("hello".into(), 2))
        );
        assert_eq!(
            parse_unit_name("narun-app@hello.service"),
            Some(("hello".into(), 0))
        );
        assert_eq!(parse_unit_name("narun-app@hello:0.service"), None);
        assert_eq!(parse_unit_name("other@hello.service"), None);
        assert_eq!(parse_unit_name("narun-app@.service"), None);
    }

    #[test]
    fn unit_hashes_keep_the_spec_part_the_cli_knows() {
        assert_eq!(unit_hash("4c6df262310f2760", ""), "4c6df262310f2760");
        let h = unit_hash("4c6df262310f2760", ";secret:tok@3");
        assert!(
            h.starts_with("4c6df262310f2760+") && h.len() == 16 + 1 + 8,
            "{h}"
        );
        assert_ne!(h, unit_hash("4c6df262310f2760", ";secret:tok@4"));
        assert_eq!(spec_part(&h), "4c6df262310f2760");
        assert_eq!(spec_part("4c6df262310f2760"), "4c6df262310f2760");
        let d = description("a", 0, &h);
        assert_eq!(hash_from_description(&d), Some(h.as_str()));
    }

    #[test]
    fn description_round_trips_the_hash() {
        let d = description("hello", 1, "deadbeef");
        assert_eq!(d, "narun app hello replica 1 [spec deadbeef]");
        assert_eq!(hash_from_description(&d), Some("deadbeef"));
        assert_eq!(hash_from_description("something else"), None);
    }

    #[test]
    fn renders_the_documented_properties() {
        let u = render(&replica());
        assert_eq!(u.name, "narun-app@hello.service");
        let expect: &[(&str, Prop)] = &[
            ("Type", s("exec")),
            ("Slice", s("narun.slice")),
            ("KillMode", s("control-group")),
            ("Restart", s("on-failure")),
            ("RestartUSec", Prop::U64(1_000_000)),
            ("StartLimitBurst", Prop::U32(5)),
            ("StartLimitIntervalUSec", Prop::U64(60_000_000)),
            ("TimeoutStopUSec", Prop::U64(10_000_000)),
            ("StandardOutput", s("journal")),
            ("LogRateLimitIntervalUSec", Prop::U64(0)),
            ("SyslogIdentifier", s("hello")),
            ("MemoryLow", Prop::U64(64 << 20)),
            ("MemoryMax", Prop::U64(128 << 20)),
            ("CPUQuotaPerSecUSec", Prop::U64(500_000)),
            ("TasksMax", Prop::U64(32)),
            ("DynamicUser", b(true)),
            ("User", s("narun-hello")),
            ("NoNewPrivileges", b(true)),
            ("ProtectSystem", s("strict")),
            ("ProtectProc", s("invisible")),
            ("CapabilityBoundingSet", Prop::U64(0)),
            ("UMask", Prop::U32(0o077)),
            ("WorkingDirectory", s("/var/lib/narun-app/hello")),
        ];
        for (k, v) in expect {
            assert_eq!(u.get(k), Some(v), "{k}");
        }
        assert_eq!(u.get("RemainAfterExit"), None, "on-failure: no");
        let mut never = replica();
        never.restart.policy = "no";
        assert_eq!(
            render(&never).get("RemainAfterExit"),
            Some(&Prop::Bool(true)),
            "never: one run"
        );
        assert_eq!(
            u.get("ExecStart"),
            Some(&Prop::Exec(vec![ExecCommand {
                path: "/var/lib/narun/binaries/x/hello".into(),
                argv: vec![
                    "/var/lib/narun/binaries/x/hello".into(),
                    "--port".into(),
                    "1".into()
                ],
                ignore_failure: false,
            }]))
        );
        let Some(Prop::Strs(env)) = u.get("Environment") else {
            panic!("no env")
        };
        for want in [
            "NARUN_INSTANCE_ID=hello-0",
            "NARUN_REPLICA_INDEX=0",
            "NARUN_NODE_ID=node-1",
            "NATS_URL=nats://127.0.0.1:4222",
            "GREETING=hi",
        ] {
            assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
        }
        assert!(
            !env.iter().any(|e| e.starts_with("NARUN_MASTER")),
            "the agent's environment is not inherited"
        );
        assert!(
            !env.iter().any(|e| e.starts_with("NATS_CA=")),
            "no CA unless the agent has one"
        );
        let mut tls = replica();
        tls.nats_ca = Some("/etc/narun/nats-ca.pem".into());
        tls.nats_creds = Some("/run/secrets/nats.creds".into());
        let Some(Prop::Strs(env)) = render(&tls).get("Environment").cloned() else {
            panic!("no env")
        };
        for want in [
            "NATS_CA=/etc/narun/nats-ca.pem",
            "NATS_CREDS=/run/secrets/nats.creds",
            "NATS_INBOX_PREFIX=_INBOX_hello",
        ] {
            assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
        }
        assert_eq!(
            u.get("LogExtraFields"),
            Some(&Prop::Bytes(vec![
                b"NARUN_APP=hello".to_vec(),
                b"NARUN_INSTANCE=hello-0".to_vec(),
                b"NARUN_NODE=node-1".to_vec()
            ]))
        );
        assert_eq!(u.get("PrivatePIDs"), None, "252 has no PrivatePIDs");
        assert_eq!(u.get("PrivateNetwork"), None, "host network by default");
    }

    #[test]
    fn limits_are_omitted_when_unset_and_never_use_cgroup_v1_names() {
        let mut r = replica();
        r.memory_low_mb = None;
        r.memory_max_mb = None;
        r.cpu_cores = None;
        r.tasks_max = None;
        let u = render(&r);
        for k in ["MemoryLow", "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax"] {
            assert_eq!(u.get(k), None, "{k}");
        }
        for (k, _) in &render(&replica()).properties {
            assert!(
                !matches!(k.as_str(), "MemoryLimit" | "CPUShares" | "BlockIOWeight"),
                "{k}"
            );
        }
    }

    #[test]
    fn identity_network_and_new_systemd_properties() {
        let mut r = replica();
        r.identity = Identity::Named("www-data".into());
        r.network = Network::None;
        r.systemd_version = 257;
        r.index = 3;
        let u = render(&r);
        assert_eq!(u.name, "narun-app@hello:3.service");
        assert_eq!(u.get("DynamicUser"), None);
        assert_eq!(u.get("User"), Some(&s("www-data")));
        assert_eq!(u.get("PrivateNetwork"), Some(&b(true)));
        assert_eq!(u.get("PrivatePIDs"), Some(&b(true)));
        r.network = Network::Namespace("/run/netns/blue".into());
        assert_eq!(
            render(&r).get("NetworkNamespacePath"),
            Some(&s("/run/netns/blue"))
        );
    }

    #[test]
    fn secrets_files_and_the_landlock_wrapper() {
        let mut r = replica();
        r.environment_file = Some("/run/narun/secrets/narun-app@hello.service.env".into());
        r.files = vec![("/var/lib/narun/files/ab/cfg".into(), "conf/app.yaml".into())];
        r.landlock = Some((
            "/usr/libexec/narun/narun-exec".into(),
            "/var/lib/narun/policies/hello.json".into(),
        ));
        let u = render(&r);
        assert_eq!(
            u.get("EnvironmentFiles"),
            Some(&Prop::EnvFiles(vec![(
                "/run/narun/secrets/narun-app@hello.service.env".into(),
                false
            )]))
        );
        assert_eq!(
            u.get("BindReadOnlyPaths"),
            Some(&Prop::Binds(vec![(
                "/var/lib/narun/files/ab/cfg".into(),
                "/var/lib/narun-app/hello/conf/app.yaml".into(),
                false,
                0
            )]))
        );
        let Some(Prop::Exec(cmds)) = u.get("ExecStart") else {
            panic!("no ExecStart")
        };
        assert_eq!(cmds[0].path, "/usr/libexec/narun/narun-exec");
        assert_eq!(
            cmds[0].argv,
            [
                "/usr/libexec/narun/narun-exec",
                "--policy",
                "/var/lib/narun/policies/hello.json",
                "--",
                "/var/lib/narun/binaries/x/hello",
                "--port",
                "1"
            ]
        );
    }

    #[test]
    fn a_health_check_runs_as_exec_start_post_in_the_unit() {
        let plain = render(&replica());
        assert_eq!(plain.get("ExecStartPost"), None);
        assert_eq!(plain.get("TimeoutStartUSec"), None);
        let health: crate::spec::Health =
            serde_norway::from_str("{http: {port: 8080}, interval: 250ms}").unwrap();
        let probe = super::probe(&health).unwrap();
        assert_eq!(
            probe,
            Probe {
                check: Check::Http {
                    port: 8080,
                    path: "/".into()
                },
                interval_ms: 250,
                timeout_ms: 1000,
            }
        );
        for landlock in [None, Some(("/w".into(), "/p/hello.json".into()))] {
            let mut r = replica();
            r.probe = Some(("/usr/libexec/narun/narun-exec".into(), probe.clone()));
            r.landlock = landlock.clone();
            let u = render(&r);
            assert_eq!(u.get("Type"), Some(&s("exec")));
            assert_eq!(u.get("TimeoutStartUSec"), Some(&Prop::U64(u64::MAX)));
            let Some(Prop::Exec(post)) = u.get("ExecStartPost") else {
                panic!("no ExecStartPost")
            };
            let mut want = vec![
                "/usr/libexec/narun/narun-exec".to_owned(),
                "--probe".into(),
                crate::exec::probe::encode(&probe),
            ];
            if landlock.is_some() {
                want.extend(["--policy".into(), "/p/hello.json".into()]);
            }
            assert_eq!(post[0].argv, want);
            // systemd stores it verbatim: no `$`, `%`, quotes or spaces.
            assert!(post[0].argv.iter().all(|a| plain_arg(a)), "{want:?}");
        }
        let none: crate::spec::Health = serde_norway::from_str("{notify: true}").unwrap();
        assert_eq!(super::probe(&none), None);
    }

    #[test]
    fn both_names_of_a_slot_and_notify() {
        for (app, i) in [("hello", 0), ("hello", 3), ("a_b-c", 12)] {
            assert_eq!(parse_unit(&unit_name(app, i)), Some((app.into(), i, false)));
            assert_eq!(
                parse_unit(&next_unit_name(app, i)),
                Some((app.into(), i, true))
            );
        }
        assert_eq!(next_unit_name("hello", 0), "narun-app@hello.next.service");
        assert_eq!(next_unit_name("hello", 2), "narun-app@hello:2.next.service");
        for bad in [
            "narun-app@.next.service",
            "narun-app@a.b.service",
            "narun-app@a:0.next.service",
            "narun-app@a.next.next.service",
        ] {
            assert_eq!(parse_unit(bad), None, "{bad}");
        }
        let mut r = replica();
        r.next = true;
        r.notify = true;
        let u = render(&r);
        assert_eq!(u.name, "narun-app@hello.next.service");
        assert_eq!(u.get("Type"), Some(&s("notify")));
        assert_eq!(u.get("NotifyAccess"), Some(&s("main")));
        assert_eq!(u.get("TimeoutStartUSec"), Some(&Prop::U64(u64::MAX)));
        assert_eq!(
            u.get("Description"),
            render(&replica()).get("Description"),
            "same replica, same description"
        );
    }

    #[test]
    fn args_reach_the_app_as_written() {
        let exec = |r: &Replica| match render(r).get("ExecStart") {
            Some(Prop::Exec(c)) => c[0].clone(),
            other => panic!("ExecStart: {other:?}"),
        };
        let mut r = replica();
        // Plain args: on the command line, no wrapper.
        r.args = vec!["--port".into(), "8080".into(), "--db=a/b:c,d@e+f".into()];
        let c = exec(&r);
        assert_eq!(c.path, "/var/lib/narun/binaries/x/hello");
        assert_eq!(c.argv[1..], r.args);
        // Anything else: carried by narun-exec, decoded exactly.
        for odd in [
            "$FOO", "${FOO}", "$$", "%n", "%%", "a b", "\\", "'q'", "\"", ";", "", "é", "\n",
        ] {
            r.args = vec!["--x".into(), odd.into()];
            let c = exec(&r);
            assert_eq!(c.path, "/usr/libexec/narun/narun-exec", "{odd:?}");
            assert_eq!(c.argv[1], "--args");
            assert!(c.argv.iter().all(|a| plain_arg(a)), "{odd:?}: {:?}", c.argv);
            assert_eq!(crate::exec::decode_args(&c.argv[2]).unwrap(), r.args);
            assert_eq!(c.argv[3..], ["--", "/var/lib/narun/binaries/x/hello"]);
        }
        // With Landlock: one wrapper, both options.
        r.landlock = Some(("/usr/libexec/narun/narun-exec".into(), "/p.json".into()));
        let c = exec(&r);
        assert_eq!(c.argv[1..4], ["--policy", "/p.json", "--args"]);
        // No wrapper configured: systemd's own escape for `$`.
        r.landlock = None;
        r.exec_wrapper = None;
        r.args = vec!["$FOO".into(), "$$".into()];
        assert_eq!(exec(&r).argv[1..], ["$$FOO", "$$$$"]);
    }

    #[test]
    fn secret_files_are_handed_over_by_a_privileged_pre_command() {
        let mut r = replica();
        r.secret_files = Some(SecretFiles {
            dir: "/run/narun/files/hello".into(),
            helper: "/usr/libexec/narun/narun-exec".into(),
        });
        let u = render(&r);
        let Some(Prop::ExecEx(pre)) = u.get("ExecStartPreEx") else {
            panic!("no ExecStartPreEx")
        };
        assert_eq!(
            pre[0].0.argv,
            [
                "/usr/libexec/narun/narun-exec",
                "--own-secrets",
                "/run/narun/files/hello",
                "narun-hello"
            ]
        );
        assert_eq!(pre[0].1, ["privileged"]);
        assert_eq!(
            u.get("BindReadOnlyPaths"),
            Some(&Prop::Binds(vec![(
                "/run/narun/files/hello".into(),
                "/run/secrets".into(),
                false,
                0
            )]))
        );
        let Some(Prop::Strs(env)) = u.get("Environment") else {
            panic!()
        };
        assert!(env.contains(&"NARUN_SECRETS_DIR=/run/secrets".to_owned()));
        r.identity = Identity::Named("www-data".into());
        let Some(Prop::ExecEx(pre)) = render(&r).get("ExecStartPreEx").cloned() else {
            panic!()
        };
        assert_eq!(pre[0].0.argv[3], "www-data");
        assert_eq!(render(&replica()).get("ExecStartPreEx"), None);
    }

    #[test]
    fn loopback_network_is_two_ip_address_lists() {
        let mut r = replica();
        r.network = Network::Loopback;
        let u = render(&r);
        assert_eq!(u.get("PrivateNetwork"), None, "the host's loopback");
        let mut lo6 = vec![0u8; 16];
        lo6[15] = 1;
        assert_eq!(
            u.get("IPAddressDeny"),
            Some(&Prop::IpAddrs(vec![
                (2, vec![0; 4], 0),
                (10, vec![0; 16], 0)
            ]))
        );
        assert_eq!(
            u.get("IPAddressAllow"),
            Some(&Prop::IpAddrs(vec![
                (2, vec![127, 0, 0, 0], 8),
                (10, lo6, 128)
            ]))
        );
    }

    #[test]
    fn landlock_policy_per_spec() {
        let spec = |yaml: &str| {
            crate::spec::parse(&format!(
                "name: hello\ntag: v1\nnodes: [{{name: n1, replicas: 1}}]\n{yaml}"
            ))
            .unwrap()
        };
        let bin = std::path::Path::new("/var/lib/narun/binaries/x/hello");
        let sys = Manager::System;
        let dir = std::path::Path::new("/run/narun/files/hello");
        // exec mode, no ports: no wrapper at all.
        assert_eq!(landlock_policy(&spec(""), bin, &[], &sys, None), None);

        // landlock mode: groups, paths, the binary, the work dir, files,
        // /run/secrets; mandatory unless bestEffort.
        let p = landlock_policy(
            &spec("mode: landlock\nlandlock: {dns: true, paths: [{path: /etc/issue, modes: r}]}\nsecrets: [{name: tok}]\n"),
            bin,
            &["/var/lib/narun/files/ab".into()],
            &sys,
            Some(dir),
        )
        .unwrap();
        assert!(p.filesystem && p.groups.dns && !p.groups.tmp && !p.best_effort);
        let rules: Vec<(String, &str)> = p
            .paths
            .iter()
            .map(|r| (r.path.display().to_string(), r.modes.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                ("/etc/issue".to_owned(), "r"),
                (bin.display().to_string(), "rx"),
                ("/var/lib/narun-app/hello".to_owned(), "rwc"),
                ("/var/lib/narun/files/ab".to_owned(), "r"),
                ("/run/secrets".to_owned(), "r"),
            ]
        );
        assert_eq!((p.connect_tcp, p.bind_tcp), (None, None));
        let p = landlock_policy(
            &spec("mode: landlock\nlandlock: {bestEffort: true}\n"),
            bin,
            &[],
            &sys,
            None,
        );
        assert!(p.unwrap().best_effort);

        // nonet ports: TCP connect to those ports only (UDP is not
        // Landlock's), binds only to the metrics port.
        let ports = "nonet: {localPorts: [{port: 4222}, {port: 5053, protocol: udp}]}\n";
        let p = landlock_policy(
            &spec(&format!("{ports}metrics: {{port: 9464}}\n")),
            bin,
            &[],
            &sys,
            None,
        )
        .unwrap();
        assert!(!p.filesystem, "exec mode: the network only");
        assert!(
            p.best_effort,
            "older kernels keep the loopback restriction only"
        );
        assert_eq!(p.connect_tcp, Some(vec![4222]));
        assert_eq!(p.bind_tcp, Some(vec![9464]));
        let p = landlock_policy(
            &spec(&format!("mode: landlock\n{ports}")),
            bin,
            &[],
            &sys,
            None,
        )
        .unwrap();
        assert!(p.filesystem && !p.best_effort);
        assert_eq!(
            (p.connect_tcp, p.bind_tcp, p.bind_port_env),
            (Some(vec![4222]), Some(vec![]), None)
        );
        // Proxy mode: the app may also bind the port the bridge gives it.
        for mode in ["exec", "landlock"] {
            let p = landlock_policy(
                &spec(&format!(
                    "mode: {mode}
http: {{}}
{ports}"
                )),
                bin,
                &[],
                &sys,
                None,
            )
            .unwrap();
            assert_eq!(p.bind_port_env.as_deref(), Some("PORT"), "{mode}");
        }
        let p = landlock_policy(
            &spec(
                "mode: landlock
http: {}
",
            ),
            bin,
            &[],
            &sys,
            None,
        );
        assert_eq!(p.unwrap().bind_port_env, None, "binds are not restricted");
    }

    #[test]
    fn a_user_manager_gets_no_user_switch_and_a_user_namespace() {
        let mut r = replica();
        r.manager = Manager::User {
            apps_dir: "/run/user/1000/narun-dev-1/data/apps".into(),
        };
        r.secret_files = Some(SecretFiles {
            dir: "/run/user/1000/narun-dev-1/run/files/hello".into(),
            helper: "/usr/libexec/narun/narun-exec".into(),
        });
        let u = render(&r);
        for k in ["DynamicUser", "User", "StateDirectory", "ExecStartPreEx"] {
            assert_eq!(u.get(k), None, "{k}");
        }
        assert_eq!(u.get("PrivateUsers"), Some(&b(true)));
        assert_eq!(u.get("ProtectHome"), Some(&s("read-only")));
        let work = "/run/user/1000/narun-dev-1/data/apps/hello";
        assert_eq!(u.get("WorkingDirectory"), Some(&s(work)));
        assert_eq!(
            u.get("ReadWritePaths"),
            Some(&Prop::Strs(vec![work.into()]))
        );
        assert_eq!(u.get("BindReadOnlyPaths"), None, "no /run/secrets mount");
        let Some(Prop::Strs(env)) = u.get("Environment") else {
            panic!()
        };
        assert!(env
            .contains(&"NARUN_SECRETS_DIR=/run/user/1000/narun-dev-1/run/files/hello".to_owned()));
    }

    #[test]
    fn dynamic_users_are_valid_and_distinct() {
        assert_eq!(dynamic_user("hello"), "narun-hello");
        let a = dynamic_user("a-very-long-application-name-number-one");
        let b2 = dynamic_user("a-very-long-application-name-number-two");
        assert!(a.len() <= 31 && b2.len() <= 31);
        assert_ne!(a, b2);
    }

    #[test]
    fn parses_systemd_versions() {
        assert_eq!(systemd_major("252.38-1~deb12u1"), 252);
        assert_eq!(systemd_major("257"), 257);
        assert_eq!(systemd_major("v258.1"), 258);
        assert_eq!(systemd_major(""), 0);
    }
}
