//! The agent loop: NATS (specs, binaries, heartbeats, status) on one side,
//! systemd (through [`UnitManager`]) on the other. The agent never forks
//! apps; systemd starts, restarts, kills and logs them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::binaries::{BinaryCache, Fetched};
use super::fleet::{self, Fleet, NatsFleet};
use super::reconcile::{health, plan, Action, Desired, Health, Observed, Readiness};
use super::snapshot::{AppSnapshot, NodeSnapshot, ReplicaSnapshot};
use super::status::{derive_status, InstanceStatus};
use super::units::{self, Network, Replica, Restart};
use crate::nats::{self as nats_conn, NatsOptions};
use crate::spec::{self, ServiceSpec};
use crate::store;
use crate::systemd::{SystemdError, UnitManager};

/// Units started at once during a reconcile.
const MAX_CONCURRENT_STARTS: usize = 16;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub nats: NatsOptions,
    /// NATS URL handed to apps (`NATS_URL`); default: the agent's URLs.
    pub app_nats_url: String,
    /// CA bundle handed to apps (`NATS_CA`); default: the agent's.
    pub app_tls_ca: Option<PathBuf>,
    /// Mint each app its own NATS user with this account signing key
    /// (None: apps get no credentials).
    pub app_identity: Option<std::sync::Arc<crate::nats::jwt::Issuer>>,
    /// Allow `user: root` in specs.
    pub allow_root_apps: bool,
    /// How often unit states are polled for status (signals trigger sooner).
    pub status_interval: Duration,
    /// The `journalctl` command (with any prefix) used to follow app logs;
    /// empty disables log forwarding.
    pub journalctl: Vec<String>,
    /// Root-only runtime files (secret environment files): `/run/narun`.
    /// It must be visible to systemd (same mount namespace).
    pub runtime_dir: PathBuf,
    /// The cluster master key for `valueFromSecret` (base64, 32 bytes).
    pub master_key_file: Option<PathBuf>,
    /// The landlock exec wrapper for `mode: landlock`.
    pub exec_wrapper: PathBuf,
    /// The `narun` binary that runs `narun bridge` for proxy-mode apps
    /// (`http:`); app users must be able to execute it.
    pub bridge_binary: PathBuf,
    /// Admin web UI listener (`None`: off).
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Prometheus `/metrics` and `/discovery` listener (`None`: off).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Apps run in a user's service manager (`narun dev` without root),
    /// not the system's.
    pub user_manager: bool,
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error(transparent)]
    Nats(#[from] nats_conn::NatsConfigError),
    #[error("another agent with node id {node_id:?} is alive (machine {machine}, last seen {last_seen}); refusing to start")]
    DuplicateNode {
        node_id: String,
        machine: String,
        last_seen: String,
    },
    #[error("NATS: {0}")]
    Store(String),
}

/// Where the packages install `narun-exec`.
pub const INSTALLED_EXEC_WRAPPER: &str = "/usr/libexec/narun/narun-exec";

/// The installed `narun-exec`, else the one beside the running binary (a
/// build tree or an unpacked tarball), else the installed path (whose
/// absence the apps that need it report).
pub fn default_exec_wrapper() -> PathBuf {
    let installed = PathBuf::from(INSTALLED_EXEC_WRAPPER);
    if installed.is_file() {
        return installed;
    }
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("narun-exec"))
        .filter(|p| p.is_file())
        .unwrap_or(installed)
}

/// The `narun` binary for `narun bridge`: the installed one, else the
/// `narun` beside this binary (this one, or `narun-node`'s sibling).
pub fn default_bridge_binary() -> PathBuf {
    let installed = PathBuf::from("/usr/bin/narun");
    if installed.is_file() {
        return installed;
    }
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("narun"))
        .filter(|p| p.is_file())
        .unwrap_or(installed)
}

/// Go names for this machine's OS and arch.
pub fn go_os_arch() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "riscv64" => "riscv64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    };
    ("linux", arch)
}

/// What the agent knows about one app.
#[derive(Debug, Default)]
struct App {
    /// Last valid spec (kept when a bad one arrives, R7).
    spec: Option<ServiceSpec>,
    /// Why the latest spec was rejected, if it was.
    spec_error: Option<String>,
    /// Binary for the current spec on this node.
    binary: Option<Fetched>,
    fetch_error: Option<String>,
    fetching: bool,
    /// Look the object up again (every spec write: a new upload under the
    /// same tag must be noticed, R5).
    recheck: bool,
}

/// What the loop reacts to, besides its timers.
pub enum Event {
    /// A spec was written (`Some`) or deleted (`None`) in NATS.
    Spec { key: String, yaml: Option<Vec<u8>> },
    /// A binary download finished.
    Fetched {
        app: String,
        tag: String,
        result: Result<Fetched, String>,
    },
    /// The replay of every spec is over. `Some`: the apps NATS has (a
    /// cached app not among them was deleted while the agent was away).
    Synced { apps: Option<BTreeSet<String>> },
    /// A secret or a shared file changed: apps using it restart.
    Changed(String),
    /// An object of `app-binaries` was written (or deleted).
    Binary(String),
    /// The agent must not run (another live agent has this node id).
    Fatal(NodeError),
}

/// What the loop does next, besides reacting to events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Publish unit states (and reconcile while a rollout settles).
    Status,
    /// Try failed downloads again.
    Retry,
}

/// The agent: the state the loop owns, and how it reacts. Every systemd
/// call goes through `M`, every NATS one through `F`; the loop ([`run`])
/// and the tests feed it the same events and ticks.
pub struct Agent<M: UnitManager, F: Fleet> {
    cfg: NodeConfig,
    systemd: M,
    fleet: F,
    systemd_version: u32,
    systemd_version_string: String,
    started: time::OffsetDateTime,
    os: &'static str,
    arch: &'static str,
    cache: BinaryCache,
    master_key: Option<store::MasterKey>,
    /// Secret environment waiting to be written for a unit about to start.
    pending_env: HashMap<String, Zeroizing<String>>,
    apps: BTreeMap<String, App>,
    /// Last status published per key (a unit name, or an instance id).
    published: HashMap<String, InstanceStatus>,
    /// Units (name, spec hash) seen ready: their later restarts are
    /// systemd's business, not a failed rollout.
    was_ready: BTreeSet<(String, String)>,
    /// Per replica slot: a spec hash whose rollout failed there, and why.
    rolled_back: BTreeMap<(String, u32), (String, String)>,
    /// What "ready" means per app (from its spec and binary).
    readiness: BTreeMap<String, Readiness>,
    /// A rollout or a start is in progress: reconcile at every status tick.
    settling: bool,
    /// Where finished downloads are reported.
    events: mpsc::UnboundedSender<Event>,
    /// Downloads in progress (they end with the agent).
    fetches: tokio::task::JoinSet<()>,
    /// Concurrent binary downloads.
    fetch_permits: Arc<tokio::sync::Semaphore>,
    snapshot: tokio::sync::watch::Sender<NodeSnapshot>,
    /// Status sweeps so far, and what the last one read per unit.
    sweeps: u64,
    sweep_cache: SweepCache,
}

/// The other generation of a replica whose unit is being stopped.
enum Survivor {
    /// None: the replica stops.
    None,
    /// It keeps running (the stopped unit was replaced).
    Runs(String),
    /// It stops too, after this one (it reports the replica stopped).
    StopsLater,
}

/// Per unit: (active state, sub state, hash) when last read, its snapshot
/// row and status.
type SweepCache = HashMap<
    String,
    (
        (String, String, String, bool),
        ReplicaSnapshot,
        InstanceStatus,
    ),
>;

/// Run the agent until `shutdown` resolves. Apps keep running afterwards.
/// An error means the agent must not run (bad data dir, no systemd, another
/// agent with this node id); it returns, it never exits the process.
pub async fn run<M: UnitManager>(
    cfg: NodeConfig,
    systemd: M,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    prepare_data_dir(&cfg.data_dir, cfg.user_manager)?;
    prepare_runtime_dir(&cfg.runtime_dir)?;
    let version = systemd.version().await?;
    tracing::info!(node = %cfg.node_id, systemd = %version, "node agent starting");
    let (nats, disconnects) = nats_conn::connect_counting_disconnects(&cfg.nats).await?;
    let fleet = NatsFleet::new(
        nats.clone(),
        cfg.node_id.clone(),
        go_os_arch(),
        BinaryCache::new(cfg.data_dir.join("binaries")),
        BinaryCache::files(cfg.data_dir.join("files")),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut agent = Agent::new(cfg, systemd, version, fleet, tx.clone())?;
    let me = agent.identity();
    // Everything spawned here ends with the agent (so an embedding process,
    // e.g. `narun dev`, is left with nothing running).
    let mut tasks = tokio::task::JoinSet::new();
    // The admin UI and metrics read snapshots; they never reach the loop.
    // Bound before READY=1 (a port 0 is logged as the port taken); an
    // address that cannot be bound is logged, the agent runs without it.
    let bind = |addr: Option<std::net::SocketAddr>, what: &'static str| async move {
        match addr {
            Some(addr) => super::admin::bind(addr, what).await,
            None => None,
        }
    };
    if let Some(l) = bind(agent.cfg.admin_addr, "admin UI").await {
        tasks.spawn(super::admin::serve(
            l,
            agent.snapshot.subscribe(),
            agent.cfg.journalctl.clone(),
        ));
    }
    if let Some(l) = bind(agent.cfg.metrics_addr, "metrics").await {
        tasks.spawn(super::metrics::serve(l, agent.snapshot.subscribe()));
    }
    // NATS side: wait for a connection in the background, then register,
    // heartbeat and watch specs (the node is visible to the fleet while a
    // large restore is still starting units).
    let logs = (!agent.cfg.journalctl.is_empty()).then(|| super::logs::Forwarder {
        nats: agent.cfg.nats.clone(),
        node_id: me.node_id.clone(),
        journalctl: agent.cfg.journalctl.clone(),
        cursor_file: agent.cfg.data_dir.join("journal.cursor"),
        since: me.started,
    });
    tasks.spawn(fleet::serve(
        nats.clone(),
        disconnects,
        me.clone(),
        logs,
        tx,
        agent.snapshot.subscribe(),
    ));

    // Offline first: what was applied last time, from the data dir. Units
    // that already run with the same hash are adopted, nothing restarts.
    let restored = agent.restore_from_cache();
    let mut ready = false;
    if restored > 0 {
        tracing::info!(apps = restored, "restored specs from the local cache");
        agent.reconcile().await;
        crate::sd::ready("restored from cache; waiting for NATS");
        ready = true;
    }
    crate::sd::spawn_watchdog();
    let mut status_tick = tokio::time::interval(agent.cfg.status_interval);
    let mut retry_tick = tokio::time::interval(RETRY_INTERVAL);
    retry_tick.tick().await;
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            Some(ev) = rx.recv() => {
                // A burst of events is one step (one reconcile).
                let mut batch = vec![ev];
                while let Ok(ev) = rx.try_recv() {
                    batch.push(ev);
                }
                match agent.on_events(batch).await {
                    Err(e) => break Err(e),
                    Ok(true) if !ready => {
                        crate::sd::ready(&agent.status_line());
                        ready = true;
                    }
                    Ok(_) => {}
                }
            }
            _ = retry_tick.tick() => agent.on_tick(Tick::Retry).await,
            _ = status_tick.tick() => {
                agent.on_tick(Tick::Status).await;
                crate::sd::status(&agent.status_line());
            }
        }
    };
    crate::sd::stopping("stopping the agent; apps keep running");
    tasks.shutdown().await;
    let snapshot = agent.snapshot.borrow().clone();
    drop(agent);
    if result.is_ok() {
        fleet::deregister(&nats, &me, &snapshot).await;
    }
    result
}

/// Failed downloads (object not uploaded yet, NATS trouble) are retried
/// this often.
const RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// The runtime dir holds secrets: root-only (0700).
fn prepare_runtime_dir(dir: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .and_then(|_| std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| NodeError::DataDir {
            path: dir.to_owned(),
            message: format!("runtime dir: {e}"),
        })
}

/// Create the data dir and check apps can use it: reachable by app users
/// (binaries are executed from it by dynamic users). `user_manager`: apps
/// run as the agent's own user, so other users need no access.
pub fn prepare_data_dir(dir: &Path, user_manager: bool) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |m: String| NodeError::DataDir {
        path: dir.to_owned(),
        message: m,
    };
    if !dir.is_absolute() {
        return Err(err("must be an absolute path".into()));
    }
    if dir.starts_with("/tmp") || dir.starts_with("/var/tmp") {
        return Err(err(
            "apps run with a private /tmp (DynamicUser/PrivateTmp) and cannot execute binaries from it; use a directory such as /var/lib/narun".into(),
        ));
    }
    std::fs::create_dir_all(dir.join("binaries"))
        .and_then(|_| std::fs::create_dir_all(dir.join("specs")))
        .map_err(|e| err(format!("cannot create: {e}")))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    let _ = std::fs::set_permissions(dir.join("binaries"), std::fs::Permissions::from_mode(0o755));
    let _ = std::fs::set_permissions(dir.join("specs"), std::fs::Permissions::from_mode(0o700));
    // Every ancestor must be traversable by other users (the apps').
    for a in dir.ancestors().filter(|_| !user_manager) {
        if let Ok(m) = std::fs::metadata(a) {
            if m.permissions().mode() & 0o001 == 0 {
                return Err(err(format!(
                    "{} is not traversable by app users (mode {:o}); chmod o+x it or choose another data dir",
                    a.display(),
                    m.permissions().mode() & 0o777
                )));
            }
        }
    }
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"").map_err(|e| err(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

impl<M: UnitManager, F: Fleet> Agent<M, F> {
    /// An agent with no apps yet. `events` is where it reports finished
    /// downloads (the loop's own channel).
    pub fn new(
        cfg: NodeConfig,
        systemd: M,
        systemd_version: String,
        fleet: F,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Self, NodeError> {
        let master_key = match &cfg.master_key_file {
            Some(path) => {
                Some(
                    store::MasterKey::from_file(path).map_err(|e| NodeError::DataDir {
                        path: path.clone(),
                        message: format!("master key: {e}"),
                    })?,
                )
            }
            None => None,
        };
        let (os, arch) = go_os_arch();
        Ok(Agent {
            cache: BinaryCache::new(cfg.data_dir.join("binaries")),
            master_key,
            pending_env: HashMap::new(),
            systemd_version: units::systemd_major(&systemd_version),
            systemd_version_string: systemd_version,
            cfg,
            systemd,
            fleet,
            started: time::OffsetDateTime::now_utc(),
            os,
            arch,
            apps: BTreeMap::new(),
            published: HashMap::new(),
            was_ready: BTreeSet::new(),
            rolled_back: BTreeMap::new(),
            readiness: BTreeMap::new(),
            settling: false,
            events,
            fetches: tokio::task::JoinSet::new(),
            fetch_permits: Arc::new(tokio::sync::Semaphore::new(4)),
            snapshot: tokio::sync::watch::Sender::new(NodeSnapshot::default()),
            sweeps: 0,
            sweep_cache: HashMap::new(),
        })
    }

    /// Who this node is, for its heartbeats.
    fn identity(&self) -> fleet::Identity {
        fleet::Identity {
            node_id: self.cfg.node_id.clone(),
            os: self.os,
            arch: self.arch,
            labels: self.cfg.labels.clone(),
            systemd_version: self.systemd_version_string.clone(),
            started: self.started,
            app_identity: self.cfg.app_identity.as_ref().map(|i| i.signing_key()),
        }
    }

    /// One step of the loop: apply a burst of events, then (if any of them
    /// asks for it) reconcile and publish. `Ok(true)`: it reconciled.
    pub async fn on_events(&mut self, batch: Vec<Event>) -> Result<bool, NodeError> {
        let mut reconcile = false;
        for ev in batch {
            if let Event::Fatal(e) = ev {
                tracing::error!(error = %e, "refusing to run");
                return Err(e);
            }
            reconcile |= self.handle_event(ev).await;
        }
        if reconcile {
            self.reconcile().await;
            self.publish_status().await;
        }
        Ok(reconcile)
    }

    /// A timer fired.
    pub async fn on_tick(&mut self, tick: Tick) {
        match tick {
            Tick::Retry => {
                if self.clear_fetch_errors() {
                    self.reconcile().await;
                }
            }
            Tick::Status => {
                if self.settling {
                    self.reconcile().await;
                }
                self.publish_status().await;
            }
        }
    }

    fn node(&self) -> &str {
        &self.cfg.node_id
    }

    /// Load `<data>/specs/*.yaml` (the last specs this node applied).
    fn restore_from_cache(&mut self) -> usize {
        let dir = self.cfg.data_dir.join("specs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let apps = &mut self.apps;
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("yaml") {
                continue;
            }
            let Ok(yaml) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(spec) = parse_stored(&yaml) else {
                tracing::warn!(path = %path.display(), "ignoring an unreadable cached spec");
                continue;
            };
            let digest = std::fs::read_to_string(path.with_extension("digest")).unwrap_or_default();
            let binary =
                self.cache
                    .cached(&spec.name, &spec.tag, self.os, self.arch, digest.trim());
            apps.insert(
                spec.name.clone(),
                App {
                    spec: Some(spec),
                    binary,
                    ..App::default()
                },
            );
        }
        apps.len()
    }

    fn save_to_cache(&self, app: &str, yaml: Option<(&[u8], &str)>) {
        let base = self.cfg.data_dir.join("specs").join(app);
        match yaml {
            Some((y, digest)) => {
                let _ = std::fs::write(base.with_extension("yaml"), y);
                let _ = std::fs::write(base.with_extension("digest"), digest);
            }
            None => {
                let _ = std::fs::remove_file(base.with_extension("yaml"));
                let _ = std::fs::remove_file(base.with_extension("digest"));
            }
        }
    }

    /// Apply one event to the state; true when a reconcile is due.
    async fn handle_event(&mut self, ev: Event) -> bool {
        match ev {
            Event::Fatal(_) => false,
            Event::Synced { apps: None } => true,
            Event::Synced {
                apps: Some(in_nats),
            } => {
                // Apps cached locally but gone from NATS were deleted.
                let gone: Vec<String> = self
                    .apps
                    .keys()
                    .filter(|a| !in_nats.contains(*a))
                    .cloned()
                    .collect();
                for app in gone {
                    tracing::info!(app = %app, "spec deleted while the agent was away");
                    self.apps.remove(&app);
                    self.save_to_cache(&app, None);
                }
                true
            }
            Event::Changed(what) => {
                tracing::info!(%what, "secret or file changed");
                true
            }
            Event::Binary(object) => {
                let mut any = false;
                for app in self.apps.values_mut() {
                    let Some(spec) = &app.spec else { continue };
                    if store::binary::object_name(&spec.name, &spec.tag, self.os, self.arch)
                        == object
                    {
                        tracing::info!(app = %spec.name, %object, "binary object changed; looking it up again");
                        app.recheck = true;
                        app.fetch_error = None;
                        any = true;
                    }
                }
                any
            }
            Event::Spec { key, yaml: None } => {
                tracing::info!(app = %key, "spec deleted");
                self.apps.remove(&key);
                self.save_to_cache(&key, None);
                true
            }
            Event::Spec {
                key,
                yaml: Some(yaml),
            } => {
                let parsed = std::str::from_utf8(&yaml)
                    .map_err(|_| "spec is not UTF-8".to_owned())
                    .and_then(|y| parse_stored(y).map_err(|e| e.to_string()))
                    .and_then(|s| {
                        if s.name == key {
                            Ok(s)
                        } else {
                            Err(format!(
                                "name: {:?} does not match the KV key {key:?}",
                                s.name
                            ))
                        }
                    });
                let app = self.apps.entry(key.clone()).or_default();
                match parsed {
                    Err(e) => {
                        // Keep the previous version running (R7) and say why.
                        tracing::error!(app = %key, error = %e, "invalid spec; keeping the running version");
                        app.spec_error = Some(e.clone());
                        self.publish_app_error(&key, &format!("invalid spec: {e}"))
                            .await;
                        false
                    }
                    Ok(new) => {
                        app.spec_error = None;
                        let changed_binary = app.spec.as_ref().is_none_or(|old| old.tag != new.tag);
                        if changed_binary {
                            app.binary = None;
                        }
                        app.spec = Some(new);
                        // Always re-check the object: a new upload under the
                        // same tag must restart (R5).
                        app.fetch_error = None;
                        app.recheck = true;
                        true
                    }
                }
            }
            Event::Fetched { app, tag, result } => {
                let Some(a) = self.apps.get_mut(&app) else {
                    return false;
                };
                a.fetching = false;
                if a.spec.as_ref().map(|s| s.tag.as_str()) != Some(tag.as_str()) {
                    return true; // superseded; the reconcile refetches
                }
                match result {
                    Ok(f) => {
                        a.binary = Some(f);
                        a.fetch_error = None;
                        true
                    }
                    Err(e) => {
                        tracing::error!(app = %app, error = %e, "binary fetch failed");
                        a.fetch_error = Some(e.clone());
                        self.publish_app_error(&app, &format!("Binary fetch failed: {e}"))
                            .await;
                        false
                    }
                }
            }
        }
    }

    /// Forget failed fetches so the next reconcile tries again.
    fn clear_fetch_errors(&mut self) -> bool {
        let mut any = false;
        for app in self.apps.values_mut() {
            any |= app.fetch_error.take().is_some();
        }
        any
    }

    /// Compute desired replicas, start fetches, plan and apply.
    async fn reconcile(&mut self) {
        let actual = match self.systemd.list(units::UNIT_GLOB).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot list units; reconcile skipped");
                return;
            }
        };
        let mut desired = Vec::new();
        let mut hold = BTreeSet::new();
        let mut to_fetch = Vec::new();
        let mut ready = Vec::new();
        {
            let (node, labels, arch) = (&self.cfg.node_id, &self.cfg.labels, self.arch);
            for (name, app) in self.apps.iter_mut() {
                let Some(spec) = &app.spec else { continue };
                let replicas = spec.replicas_for(node, labels, arch);
                if replicas == 0 {
                    continue;
                }
                if (app.binary.is_none() || app.recheck)
                    && !app.fetching
                    && app.fetch_error.is_none()
                {
                    app.fetching = true;
                    app.recheck = false;
                    to_fetch.push((name.clone(), spec.tag.clone()));
                }
                let Some(bin) = &app.binary else {
                    // Not fetched yet (or failed): whatever runs keeps running.
                    hold.insert(name.clone());
                    continue;
                };
                ready.push((spec.clone(), bin.clone(), replicas));
            }
        }
        // Apps whose spec has no `secrets:` (any files dir left is stale).
        let mut no_secret_files = Vec::new();
        for (spec, bin, replicas) in ready {
            let name = spec.name.clone();
            let has_secret_files = self.has_secret_files(&spec);
            if !has_secret_files {
                no_secret_files.push(name.clone());
            }
            let prepared = match self.prepare(&spec).await {
                Ok(p) => p,
                Err(e) => {
                    // Secrets or files unavailable: whatever runs keeps running.
                    hold.insert(name.clone());
                    self.publish_app_error(&name, &e).await;
                    continue;
                }
            };
            match self.replicas(&spec, &bin, replicas, &prepared) {
                Ok(mut d) => {
                    if let units::Manager::User { .. } = self.manager() {
                        let dir = self.manager().workdir(&name);
                        if let Err(e) = std::fs::create_dir_all(&dir) {
                            hold.insert(name.clone());
                            self.publish_app_error(&name, &format!("{}: {e}", dir.display()))
                                .await;
                            continue;
                        }
                    }
                    if has_secret_files {
                        if let Err(e) = self.sync_secret_files(&name, &prepared.secret_files) {
                            hold.insert(name.clone());
                            self.publish_app_error(&name, &e).await;
                            continue;
                        }
                    }
                    if let Some(env) = &prepared.env {
                        for u in &d {
                            self.pending_env.insert(u.unit.name.clone(), env.clone());
                            self.pending_env.insert(u.next.name.clone(), env.clone());
                        }
                    }
                    self.readiness.insert(
                        name.clone(),
                        Readiness {
                            // The bridge of proxy mode sends READY=1.
                            notify: spec.health.notify.unwrap_or(bin.notify) || spec.http.is_some(),
                            check: spec.health.has_check(),
                            stable: spec.stable_period(),
                            deadline: spec.progress_deadline(),
                        },
                    );
                    if !spec.restart_on_secret_change {
                        let units: Vec<String> = d
                            .iter()
                            .flat_map(|u| [u.unit.name.clone(), u.next.name.clone()])
                            .collect();
                        self.refresh_env_files(&units);
                    }
                    desired.append(&mut d)
                }
                Err(e) => {
                    hold.insert(name.clone());
                    self.publish_app_error(&name, &e).await;
                }
            }
        }
        for (app, tag) in to_fetch {
            self.spawn_fetch(app, tag);
        }

        let observed = self.observe(&actual).await;
        let rolled_back: BTreeMap<(String, u32), String> = {
            let rb = &mut self.rolled_back;
            // A slot's failed hash matters until the spec moves on.
            rb.retain(|(app, index), (hash, _)| {
                desired
                    .iter()
                    .any(|d| &d.app == app && d.index == *index && &d.hash == hash)
            });
            rb.iter()
                .map(|(k, (h, _))| (k.clone(), h.clone()))
                .collect()
        };
        let actions = plan(&desired, &observed, &hold, &rolled_back);
        // While a replica is not ready yet or a slot has two generations,
        // reconcile again at every status tick.
        let settling = observed.iter().any(|o| o.health == Health::Pending)
            || !actions.is_empty()
            || observed.iter().any(|o| o.next);
        self.settling = settling;
        // `secrets:` removed from a spec: once its units all run the new
        // spec (nothing left to do for the app), no unit binds the files.
        for app in no_secret_files {
            let settled = !hold.contains(&app)
                && !actions
                    .iter()
                    .any(|a| units::parse_unit_name(a.unit_name()).is_some_and(|(a, _)| a == app));
            let dir = self.secret_files_dir(&app);
            if settled && dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        if actions.is_empty() {
            return;
        }
        // What, by name: a plan that repeats shows in the log.
        let what: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Start(u) => format!("start {}", u.name),
                Action::Stop(n) => format!("stop {n}"),
                Action::RollBack { unit, reason, .. } => format!("roll back {unit}: {reason}"),
            })
            .collect();
        tracing::info!(actions = ?what, "applying reconcile plan");
        // Stops one at a time; starts concurrently, since systemd's sandbox
        // set-up, not the agent, is the per-unit cost.
        let (starts, others): (Vec<Action>, Vec<Action>) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::Start(_)));
        // A stopped generation whose slot keeps another one was replaced:
        // the survivor's status is the last word for the replica. (Two
        // units of a slot both stopping: the later one reports.)
        for (k, action) in others.iter().enumerate() {
            let later: BTreeSet<&str> = others[k + 1..].iter().map(|a| a.unit_name()).collect();
            let earlier: BTreeSet<&str> = others[..k].iter().map(|a| a.unit_name()).collect();
            let other = units::parse_unit(action.unit_name()).and_then(|(app, index, next)| {
                observed
                    .iter()
                    .find(|o| o.app == app && o.index == index && o.next != next)
                    .filter(|o| !earlier.contains(o.name.as_str()))
            });
            let survivor = match other {
                Some(o) if later.contains(o.name.as_str()) => Survivor::StopsLater,
                Some(o) => Survivor::Runs(o.name.clone()),
                None => Survivor::None,
            };
            self.apply(action, &survivor).await;
        }
        // A start of the version another unit of the slot already serves
        // (the move back to the main name) is not news for the replica.
        let quiet: BTreeSet<String> = starts
            .iter()
            .filter_map(|a| match a {
                Action::Start(u) => Some(u),
                _ => None,
            })
            .filter(|u| {
                let hash = units::hash_from_description(match u.get("Description") {
                    Some(crate::systemd::Prop::Str(d)) => d,
                    _ => "",
                });
                units::parse_unit(&u.name).is_some_and(|(app, index, next)| {
                    observed.iter().any(|o| {
                        o.app == app
                            && o.index == index
                            && o.next != next
                            && o.health == Health::Ready
                            && o.hash.as_deref() == hash
                    })
                })
            })
            .map(|u| u.name.clone())
            .collect();
        self.start_all(&starts, &quiet).await;
        // Remember what was applied, for offline restarts, and drop cached
        // binaries nothing uses any more: neither the current specs nor a
        // unit still loaded (an old generation may have to start again).
        let mut keep = BTreeSet::new();
        let mut units_known = false;
        if let Ok(list) = self.systemd.list(units::UNIT_GLOB).await {
            units_known = true;
            for u in list {
                match self.systemd.details(&u.name).await {
                    Ok(Some(d)) => keep.extend(self.cache.digests_in(&d.exec_start_args)),
                    Ok(None) => {}
                    Err(_) => units_known = false,
                }
            }
        }
        for (name, app) in self.apps.iter() {
            if let (Some(spec), Some(bin)) = (&app.spec, &app.binary) {
                if let Ok(y) = serde_norway::to_string(spec) {
                    self.save_to_cache(name, Some((y.as_bytes(), &bin.digest)));
                }
                if let Some(hex) = super::binaries::digest_hex(&bin.digest) {
                    keep.insert(hex);
                }
            }
        }
        // Only when every app has its binary: a held app's running units
        // still execute (and systemd may restart) the previous one.
        let settled = self.apps.values().all(|a| {
            a.binary.is_some()
                || a.spec
                    .as_ref()
                    .is_none_or(|s| s.replicas_for(self.node(), &self.cfg.labels, self.arch) == 0)
        });
        if settled && units_known {
            self.cache.gc(&keep);
        }
    }

    /// Download an app's binary in the background ([`Event::Fetched`]
    /// when done). A few downloads at a time: bounded memory and bandwidth;
    /// a slow download never blocks heartbeats or the loop.
    fn spawn_fetch(&mut self, app: String, tag: String) {
        let fleet = self.fleet.clone();
        let events = self.events.clone();
        let permits = self.fetch_permits.clone();
        // Finished downloads are reaped here (the set stays bounded).
        while self.fetches.try_join_next().is_some() {}
        self.fetches.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = fleet.binary(&app, &tag).await;
            let _ = events.send(Event::Fetched { app, tag, result });
        });
    }

    /// Stop or roll back one unit (starts go through [`Self::start_all`]).
    async fn apply(&mut self, action: &Action, survivor: &Survivor) {
        let name = action.unit_name().to_owned();
        let Some((app, index)) = units::parse_unit_name(&name) else {
            return;
        };
        let id = units::instance_id(&app, index);
        let result = match action {
            Action::Stop(n) => self.stop_unit(&app, &id, n, survivor).await,
            Action::Start(_) => {
                self.start_all(std::slice::from_ref(action), &BTreeSet::new())
                    .await;
                return;
            }
            Action::RollBack {
                app: a,
                index: i,
                hash,
                unit,
                reason,
            } => {
                tracing::warn!(app = %a, replica = i, %reason, "new version failed; rolling back");
                self.rolled_back
                    .insert((a.clone(), *i), (hash.clone(), reason.clone()));
                // For `narun deploy --wait` and `apps info`: the new
                // version failed, and why.
                self.publish(
                    &app,
                    &format!("{id} rollout"),
                    InstanceStatus::failed(&id, &rolled_back_reason(reason)).with_hash(hash),
                )
                .await;
                self.stop_unit(&app, &id, unit, survivor).await
            }
        };
        if let Err(e) = result {
            tracing::error!(unit = %name, error = %e, "systemd action failed");
            self.publish(&app, &name, InstanceStatus::failed(&id, &e))
                .await;
        }
    }

    /// Start units: each is reported starting, its secrets written, then
    /// all start concurrently (systemd's sandbox set-up, not the agent, is
    /// the per-unit cost); a failed start is reported with its reason.
    async fn start_all(&mut self, starts: &[Action], quiet: &BTreeSet<String>) {
        let mut jobs = Vec::new();
        for action in starts {
            let Action::Start(u) = action else { continue };
            let Some((app, index)) = units::parse_unit_name(&u.name) else {
                continue;
            };
            let id = units::instance_id(&app, index);
            let hash = units::hash_from_description(match u.get("Description") {
                Some(crate::systemd::Prop::Str(d)) => d,
                _ => "",
            })
            .unwrap_or_default()
            .to_owned();
            if !quiet.contains(&u.name) {
                self.publish(
                    &app,
                    &u.name,
                    InstanceStatus::starting(&id, "Starting process").with_hash(&hash),
                )
                .await;
            }
            let env = self.pending_env.remove(&u.name);
            jobs.push((app, id, u, env));
        }
        let this = &*self;
        let mut jobs = jobs.into_iter();
        let mut running = futures_util::stream::FuturesUnordered::new();
        let mut results = Vec::new();
        loop {
            while running.len() < MAX_CONCURRENT_STARTS {
                let Some((app, id, unit, env)) = jobs.next() else {
                    break;
                };
                running.push(async move {
                    let r = this.start(unit, env).await;
                    (app, id, unit.name.clone(), r)
                });
            }
            match running.next().await {
                Some(r) => results.push(r),
                None => break,
            }
        }
        drop(running);
        for (app, id, name, r) in results {
            if let Err(e) = r {
                tracing::error!(unit = %name, error = %e, "systemd action failed");
                self.publish(&app, &name, InstanceStatus::failed(&id, &e))
                    .await;
            }
        }
    }

    /// Stop a unit. When the other generation of the replica keeps running
    /// (or stops after this one), the replica is not reported stopping:
    /// the survivor's status is published again instead.
    async fn stop_unit(
        &mut self,
        app: &str,
        id: &str,
        unit: &str,
        survivor: &Survivor,
    ) -> Result<(), String> {
        let report = matches!(survivor, Survivor::None);
        if report {
            self.publish(app, unit, InstanceStatus::stopping(id)).await;
        }
        let r = self.systemd.stop(unit).await;
        let _ = self.systemd.reset_failed(unit).await;
        self.remove_env_file(unit);
        if let Survivor::Runs(s) = survivor {
            self.published.remove(unit);
            self.published.remove(s);
            self.sweep_cache.remove(s);
        } else if report && r.is_ok() {
            self.publish(app, unit, InstanceStatus::stopped(id, None))
                .await;
        } else {
            self.published.remove(unit);
        }
        r.map_err(|e| e.to_string())
    }

    /// Start a unit: forget a previous failure, write its secrets, start it.
    /// A `Type=notify` unit's start, or one with a health check, lasts until
    /// it is ready: the agent does not wait for it (its health shows in the
    /// next reconciles).
    async fn start(
        &self,
        unit: &crate::systemd::TransientUnit,
        env: Option<Zeroizing<String>>,
    ) -> Result<(), String> {
        let _ = self.systemd.reset_failed(&unit.name).await;
        if let Some(content) = env {
            self.write_env_file(&unit.name, &content)?;
        }
        // A start that lasts until the app is ready (READY=1, a health
        // check) is not waited for: its progress shows in the unit state.
        let until_ready = matches!(unit.get("Type"), Some(crate::systemd::Prop::Str(t)) if t == "notify")
            || unit.get("ExecStartPost").is_some();
        let r = if until_ready {
            self.systemd.start_transient_queued(unit).await
        } else {
            self.systemd.start_transient(unit).await
        };
        match r {
            // The unit exists and its process ran, then failed (a binary
            // that exits at once can end its own start job): its state
            // says why, and the next reconcile rolls it back or reports it
            // failed with the exit code instead of the job result.
            Err(SystemdError::Job { unit, result }) => {
                tracing::warn!(%unit, %result, "start job failed; the unit's state tells why");
                Ok(())
            }
            r => r.map_err(|e| e.to_string()),
        }
    }

    /// The units of `actual` as the plan sees them, with their health.
    /// Units known ready and active need no D-Bus round trip.
    async fn observe(&mut self, actual: &[crate::systemd::UnitState]) -> Vec<Observed> {
        super::rollout::observe(
            &self.systemd,
            actual,
            &self.readiness,
            &mut self.was_ready,
            self.systemd.now_usec(),
        )
        .await
    }
}

/// Parse a stored spec leniently: unknown keys (the Go CLI stores files
/// unvalidated, e.g. `CPUCores`) are warnings, logged, not errors.
fn parse_stored(yaml: &str) -> Result<ServiceSpec, spec::SpecErrors> {
    let parsed = spec::parse_detailed(yaml, spec::Strictness::Lenient)?;
    for w in &parsed.warnings {
        tracing::warn!(app = %parsed.spec.name, warning = %w, "spec warning");
    }
    Ok(parsed.spec)
}

/// This machine's id (`/etc/machine-id`), to tell a restarted agent from a
/// second one.
pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The status error of a new version that was rolled back.
fn rolled_back_reason(why: &str) -> String {
    format!("rolled back: {why}")
}

mod replicas;
mod report;
mod secrets;
#[cfg(test)]
mod tests;

pub use secrets::env_file_line;
