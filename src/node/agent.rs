//! The agent loop: NATS (specs, binaries, heartbeats, status) on one side,
//! systemd (through [`UnitManager`]) on the other. The agent never forks
//! apps; systemd starts, restarts, kills and logs them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, Mutex};
use zeroize::Zeroizing;

use super::binaries::{BinaryCache, Fetched};
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
    /// NATS URL handed to apps (`NATS_URL`); default: the agent's first URL.
    pub app_nats_url: String,
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
    /// Admin web UI listener (`None`: off).
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Prometheus `/metrics` and `/discovery` listener (`None`: off).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Apps run in a user's service manager (`narun dev` without root),
    /// not the system's.
    pub user_manager: bool,
}

/// Secrets and files resolved for one app.
struct Prepared {
    /// Content of the secret environment file, if the app has secrets.
    env: Option<Zeroizing<String>>,
    /// `secrets:` files: (file name under /run/secrets, content).
    secret_files: Vec<(String, Zeroizing<Vec<u8>>)>,
    /// Mounted files: (cached source, path relative to the working dir).
    files: Vec<(PathBuf, String)>,
    /// What, besides the spec and binary, the replicas' hash covers:
    /// secret revisions and file digests (a change restarts the app).
    extra: String,
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

/// The buckets the agent uses (created on first use with the Go settings).
#[derive(Clone)]
struct Buckets {
    app_configs: async_nats::jetstream::kv::Store,
    node_states: async_nats::jetstream::kv::Store,
}

impl Buckets {
    async fn open(nats: &async_nats::Client) -> Result<Self, store::StoreError> {
        let js = store::jetstream(nats)?;
        let b = Buckets {
            app_configs: store::ensure_kv(&js, store::APP_CONFIGS).await?,
            node_states: store::ensure_kv(&js, store::NODE_STATES).await?,
        };
        store::ensure_object_store(&js, store::APP_BINARIES).await?;
        store::ensure_logs_stream(&js).await?;
        store::ensure_status_stream(&js).await?;
        Ok(b)
    }
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

enum Event {
    Spec {
        key: String,
        yaml: Option<Vec<u8>>,
    },
    Fetched {
        app: String,
        tag: String,
        result: Result<Fetched, String>,
    },
    SyncDone,
    /// A secret or a shared file changed: apps using it restart.
    Changed(String),
    /// An object of `app-binaries` was written (or deleted).
    Binary(String),
}

/// Shared agent state.
struct Agent<M: UnitManager> {
    cfg: NodeConfig,
    systemd: M,
    systemd_version: u32,
    systemd_version_string: String,
    started: time::OffsetDateTime,
    os: &'static str,
    arch: &'static str,
    cache: BinaryCache,
    files: BinaryCache,
    master_key: Option<store::MasterKey>,
    /// Secret environment waiting to be written for a unit about to start.
    pending_env: Mutex<HashMap<String, Zeroizing<String>>>,
    apps: Mutex<BTreeMap<String, App>>,
    /// Last status published per key (a unit name, or an instance id).
    published: Mutex<HashMap<String, InstanceStatus>>,
    /// Units (name, spec hash) seen ready: their later restarts are
    /// systemd's business, not a failed rollout.
    was_ready: Mutex<BTreeSet<(String, String)>>,
    /// Per replica slot: a spec hash whose rollout failed there, and why.
    rolled_back: Mutex<BTreeMap<(String, u32), (String, String)>>,
    /// What "ready" means per app (from its spec and binary).
    readiness: Mutex<BTreeMap<String, Readiness>>,
    /// A rollout or a start is in progress: reconcile at every status tick.
    settling: std::sync::atomic::AtomicBool,
    nats: async_nats::Client,
    events: mpsc::UnboundedSender<Event>,
    snapshot: tokio::sync::watch::Sender<NodeSnapshot>,
    /// Ask the heartbeat task for an immediate heartbeat.
    heartbeat_now: tokio::sync::Notify,
    /// Concurrent binary downloads.
    fetch_permits: Arc<tokio::sync::Semaphore>,
    /// Status sweeps so far, and what the last one read per unit.
    sweeps: std::sync::atomic::AtomicU64,
    sweep_cache: Mutex<SweepCache>,
    /// Background tasks, aborted when the agent stops (so an embedding
    /// process, e.g. `narun dev`, is left with nothing running).
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
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
pub async fn run<M: UnitManager>(
    cfg: NodeConfig,
    systemd: M,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    prepare_data_dir(&cfg.data_dir, cfg.user_manager)?;
    let version = systemd.version().await?;
    let systemd_version = units::systemd_major(&version);
    tracing::info!(node = %cfg.node_id, systemd = %version, "node agent starting");
    let nats = nats_conn::connect(&cfg.nats).await?;
    let (os, arch) = go_os_arch();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let master_key = match &cfg.master_key_file {
        Some(path) => Some(
            store::MasterKey::from_file(path).map_err(|e| NodeError::DataDir {
                path: path.clone(),
                message: format!("master key: {e}"),
            })?,
        ),
        None => None,
    };
    prepare_runtime_dir(&cfg.runtime_dir)?;
    let agent = Arc::new(Agent {
        cache: BinaryCache::new(cfg.data_dir.join("binaries")),
        files: BinaryCache::files(cfg.data_dir.join("files")),
        master_key,
        pending_env: Mutex::new(HashMap::new()),
        cfg,
        systemd,
        systemd_version,
        systemd_version_string: version.clone(),
        started: time::OffsetDateTime::now_utc(),
        os,
        arch,
        apps: Mutex::new(BTreeMap::new()),
        published: Mutex::new(HashMap::new()),
        was_ready: Mutex::new(BTreeSet::new()),
        rolled_back: Mutex::new(BTreeMap::new()),
        readiness: Mutex::new(BTreeMap::new()),
        settling: std::sync::atomic::AtomicBool::new(false),
        nats,
        events: tx,
        snapshot: tokio::sync::watch::Sender::new(NodeSnapshot::default()),
        heartbeat_now: tokio::sync::Notify::new(),
        fetch_permits: Arc::new(tokio::sync::Semaphore::new(4)),
        sweeps: std::sync::atomic::AtomicU64::new(0),
        sweep_cache: Mutex::new(HashMap::new()),
        tasks: std::sync::Mutex::new(Vec::new()),
    });
    // The admin UI and metrics read snapshots; they never lock the agent.
    if let Some(addr) = agent.cfg.admin_addr {
        agent.spawn(super::admin::serve(
            addr,
            agent.snapshot.subscribe(),
            agent.cfg.journalctl.clone(),
        ));
    }
    if let Some(addr) = agent.cfg.metrics_addr {
        agent.spawn(super::metrics::serve(addr, agent.snapshot.subscribe()));
    }

    // Offline first: what was applied last time, from the data dir. Units
    // that already run with the same hash are adopted, nothing restarts.
    // NATS side: wait for a connection in the background, then register,
    // heartbeat and watch specs (the node is visible to the fleet while a
    // large restore is still starting units).
    let nats_agent = agent.clone();
    agent.spawn(async move { nats_agent.nats_loop().await });

    let restored = agent.restore_from_cache().await;
    if restored > 0 {
        tracing::info!(apps = restored, "restored specs from the local cache");
        agent.reconcile().await;
    }

    let mut ready = false;
    if restored > 0 {
        crate::sd::ready("restored from cache; waiting for NATS");
        ready = true;
    }
    crate::sd::spawn_watchdog();
    let mut status_tick = tokio::time::interval(agent.cfg.status_interval);
    // Failed fetches (object not uploaded yet, NATS trouble) are retried.
    let mut retry_tick = tokio::time::interval(Duration::from_secs(30));
    retry_tick.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(ev) = rx.recv() => {
                let mut reconcile = agent.handle_event(ev).await;
                // Coalesce a burst of events into one reconcile.
                while let Ok(ev) = rx.try_recv() {
                    reconcile |= agent.handle_event(ev).await;
                }
                if reconcile {
                    agent.reconcile().await;
                    agent.publish_status().await;
                    if !ready {
                        crate::sd::ready(&agent.status_line().await);
                        ready = true;
                    }
                }
            }
            _ = retry_tick.tick() => {
                if agent.clear_fetch_errors().await {
                    agent.reconcile().await;
                }
            }
            _ = status_tick.tick() => {
                if agent.settling.load(std::sync::atomic::Ordering::Relaxed) {
                    agent.reconcile().await;
                }
                agent.publish_status().await;
                crate::sd::status(&agent.status_line().await);
            }
        }
    }
    crate::sd::stopping("stopping the agent; apps keep running");
    for task in agent
        .tasks
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default()
    {
        task.abort();
    }
    agent.deregister().await;
    Ok(())
}

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

impl<M: UnitManager> Agent<M> {
    /// Spawn a background task that ends with the agent.
    fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::spawn(fut).abort_handle();
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(handle);
        }
    }

    fn node(&self) -> &str {
        &self.cfg.node_id
    }

    /// Load `<data>/specs/*.yaml` (the last specs this node applied).
    async fn restore_from_cache(&self) -> usize {
        let dir = self.cfg.data_dir.join("specs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let mut apps = self.apps.lock().await;
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

    /// Connect, register, heartbeat, and feed spec changes to the loop.
    async fn nats_loop(self: Arc<Self>) {
        nats_conn::wait_connected(&self.nats).await;
        let buckets = loop {
            match Buckets::open(&self.nats).await {
                Ok(b) => break b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the narun buckets; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        };
        if let Err(e) = self.check_unique(&buckets).await {
            tracing::error!(error = %e, "refusing to run");
            eprintln!("narun node: {e}");
            // EX_CONFIG: a configuration error systemd should not retry.
            std::process::exit(78);
        }
        if !self.cfg.journalctl.is_empty() {
            self.spawn(super::logs::forward(
                self.nats.clone(),
                self.node().to_owned(),
                self.cfg.journalctl.clone(),
            ));
        }
        // Secret and file updates restart the apps that use them.
        let watch_self = self.clone();
        self.spawn(async move { watch_self.watch_secrets_and_files().await });
        let hb = self.clone();
        let hb_buckets = buckets.clone();
        self.spawn(async move {
            let mut tick = tokio::time::interval(store::HEARTBEAT_INTERVAL);
            loop {
                // Every interval, and at once when the instances changed or
                // NATS came back, so `narun nodes list` is current.
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = hb.heartbeat_now.notified() => {}
                }
                hb.heartbeat(&hb_buckets, store::NODE_RUNNING).await;
            }
        });
        loop {
            if let Err(e) = self.watch_specs(&buckets).await {
                tracing::warn!(error = %e, "spec watch ended; restarting it");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_secrets_and_files(&self) {
        loop {
            let run = async {
                let js = store::jetstream(&self.nats).map_err(|e| e.to_string())?;
                let secrets = store::ensure_kv(&js, store::SECRETS)
                    .await
                    .map_err(|e| e.to_string())?;
                let files = store::ensure_object_store(&js, store::FILES)
                    .await
                    .map_err(|e| e.to_string())?;
                let binaries = store::ensure_object_store(&js, store::APP_BINARIES)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut s = secrets.watch_all().await.map_err(|e| e.to_string())?;
                let mut f = files.watch().await.map_err(|e| e.to_string())?;
                let mut b = binaries.watch().await.map_err(|e| e.to_string())?;
                loop {
                    let what = tokio::select! {
                        // A new upload under an existing tag (R5), by
                        // `narun deploy` or the Go CLI: the apps running
                        // that object look it up again.
                        e = b.next() => match e {
                            Some(Ok(i)) => {
                                let _ = self.events.send(Event::Binary(i.name));
                                continue;
                            }
                            _ => return Err("binary watch ended".into()),
                        },
                        e = s.next() => match e {
                            Some(Ok(e)) => format!("secret {}", e.key),
                            _ => return Err::<(), String>("secret watch ended".into()),
                        },
                        e = f.next() => match e {
                            Some(Ok(i)) => format!("file {}", i.name),
                            _ => return Err("file watch ended".into()),
                        },
                    };
                    let _ = self.events.send(Event::Changed(what));
                }
            };
            if let Err(e) = run.await {
                tracing::warn!(error = %e, "secret/file watch ended; restarting it");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn watch_specs(&self, buckets: &Buckets) -> Result<(), String> {
        let kv = &buckets.app_configs;
        let mut watch = kv
            .watch_with_history(">")
            .await
            .map_err(|e| e.to_string())?;
        // An empty bucket replays nothing: the initial sync is then done at once.
        let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
        let mut any = false;
        while let Some(k) = keys.next().await {
            if k.is_ok() {
                any = true;
                break;
            }
        }
        let mut synced = !any;
        let mut seen = BTreeSet::new();
        if synced {
            let _ = self.events.send(Event::SyncDone);
        }
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| e.to_string())?;
            seen.insert(entry.key.clone());
            let yaml = match entry.operation {
                async_nats::jetstream::kv::Operation::Put => Some(entry.value.to_vec()),
                _ => None,
            };
            let _ = self.events.send(Event::Spec {
                key: entry.key.clone(),
                yaml,
            });
            if !synced && entry.delta == 0 {
                synced = true;
                // Apps cached locally but gone from NATS are deleted.
                let cached: Vec<String> = self.apps.lock().await.keys().cloned().collect();
                for app in cached.into_iter().filter(|a| !seen.contains(a)) {
                    let _ = self.events.send(Event::Spec {
                        key: app,
                        yaml: None,
                    });
                }
                let _ = self.events.send(Event::SyncDone);
            }
        }
        Err("watch stream closed".into())
    }

    /// Refuse to run beside another live agent with the same node id (R26).
    async fn check_unique(&self, buckets: &Buckets) -> Result<(), NodeError> {
        let Ok(Some(raw)) = buckets.node_states.get(self.node()).await else {
            return Ok(());
        };
        let Ok(state) = serde_json::from_slice::<store::NodeState>(&raw) else {
            return Ok(());
        };
        if state.status != store::NODE_RUNNING {
            return Ok(());
        }
        // The key exists, so it was written within the TTL. It is ours if it
        // comes from this machine and its agent process is gone (a restart).
        let mine = machine_id();
        let other_alive = match state.machine_id.as_deref() {
            Some(m) if m != mine => true,
            _ => state
                .agent_pid
                .is_some_and(|pid| pid != std::process::id() && is_narun_process(pid)),
        };
        if other_alive {
            return Err(NodeError::DuplicateNode {
                node_id: self.node().to_owned(),
                machine: state.machine_id.unwrap_or_default(),
                last_seen: state.last_seen.to_string(),
            });
        }
        Ok(())
    }

    async fn heartbeat(&self, buckets: &Buckets, status: &str) {
        let managed = self
            .systemd
            .list(units::UNIT_GLOB)
            .await
            .map(|l| {
                let mut ids: Vec<String> = l
                    .iter()
                    .filter_map(|u| units::parse_unit_name(&u.name))
                    .map(|(a, i)| units::instance_id(&a, i))
                    .collect();
                ids.sort();
                ids
            })
            .unwrap_or_default();
        let state = store::NodeState {
            node_id: self.node().to_owned(),
            last_seen: time::OffsetDateTime::now_utc(),
            version: crate::VERSION.to_owned(),
            start_time: self.started,
            managed_instances: managed,
            status: status.to_owned(),
            os: self.os.to_owned(),
            arch: self.arch.to_owned(),
            labels: self.cfg.labels.clone(),
            machine_id: Some(machine_id()),
            systemd_version: Some(self.systemd_version_string.clone()),
            agent_pid: Some(std::process::id()),
        };
        match serde_json::to_vec(&state) {
            Ok(json) => {
                if let Err(e) = buckets.node_states.put(self.node(), json.into()).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the node state"),
        }
    }

    async fn deregister(&self) {
        if self.nats.connection_state() != async_nats::connection::State::Connected {
            return;
        }
        if let Ok(b) = Buckets::open(&self.nats).await {
            self.heartbeat(&b, store::NODE_SHUTTING_DOWN).await;
            let _ = b.node_states.delete(self.node()).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.nats.flush()).await;
    }

    /// Apply one event to the state; true when a reconcile is due.
    async fn handle_event(&self, ev: Event) -> bool {
        match ev {
            Event::SyncDone => true,
            Event::Changed(what) => {
                tracing::info!(%what, "secret or file changed");
                true
            }
            Event::Binary(object) => {
                let mut apps = self.apps.lock().await;
                let mut any = false;
                for app in apps.values_mut() {
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
                self.apps.lock().await.remove(&key);
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
                let mut apps = self.apps.lock().await;
                let app = apps.entry(key.clone()).or_default();
                match parsed {
                    Err(e) => {
                        // Keep the previous version running (R7) and say why.
                        tracing::error!(app = %key, error = %e, "invalid spec; keeping the running version");
                        app.spec_error = Some(e.clone());
                        drop(apps);
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
                let mut apps = self.apps.lock().await;
                let Some(a) = apps.get_mut(&app) else {
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
                    }
                    Err(e) => {
                        tracing::error!(app = %app, error = %e, "binary fetch failed");
                        a.fetch_error = Some(e.clone());
                        drop(apps);
                        self.publish_app_error(&app, &format!("Binary fetch failed: {e}"))
                            .await;
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Forget failed fetches so the next reconcile tries again.
    async fn clear_fetch_errors(&self) -> bool {
        let mut apps = self.apps.lock().await;
        let mut any = false;
        for app in apps.values_mut() {
            any |= app.fetch_error.take().is_some();
        }
        any
    }

    /// Compute desired replicas, start fetches, plan and apply.
    async fn reconcile(&self) {
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
            let mut apps = self.apps.lock().await;
            for (name, app) in apps.iter_mut() {
                let Some(spec) = &app.spec else { continue };
                let replicas = spec.replicas_for(self.node(), &self.cfg.labels, self.arch);
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
            if spec.secrets.is_empty() {
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
                    if !spec.secrets.is_empty() {
                        if let Err(e) = self.sync_secret_files(&name, &prepared.secret_files) {
                            hold.insert(name.clone());
                            self.publish_app_error(&name, &e).await;
                            continue;
                        }
                    }
                    if let Some(env) = &prepared.env {
                        let mut pending = self.pending_env.lock().await;
                        for u in &d {
                            pending.insert(u.unit.name.clone(), env.clone());
                            pending.insert(u.next.name.clone(), env.clone());
                        }
                    }
                    self.readiness.lock().await.insert(
                        name.clone(),
                        Readiness {
                            notify: spec.health.notify.unwrap_or(bin.notify),
                            stable: spec.stable_period(),
                            deadline: spec.progress_deadline(),
                        },
                    );
                    if !spec.restart_on_secret_change {
                        let units: Vec<String> = d
                            .iter()
                            .flat_map(|u| [u.unit.name.clone(), u.next.name.clone()])
                            .collect();
                        self.refresh_env_files(&units).await;
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
            let mut rb = self.rolled_back.lock().await;
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
        self.settling
            .store(settling, std::sync::atomic::Ordering::Relaxed);
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
        tracing::info!(actions = actions.len(), "applying reconcile plan");
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
        futures_util::stream::iter(starts.iter())
            .for_each_concurrent(MAX_CONCURRENT_STARTS, |a| self.apply(a, &Survivor::None))
            .await;
        self.heartbeat_now.notify_one();
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
        let apps = self.apps.lock().await;
        for (name, app) in apps.iter() {
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
        let settled = apps.values().all(|a| {
            a.binary.is_some()
                || a.spec
                    .as_ref()
                    .is_none_or(|s| s.replicas_for(self.node(), &self.cfg.labels, self.arch) == 0)
        });
        if settled && units_known {
            self.cache.gc(&keep);
        }
    }

    /// The service manager the apps run in.
    fn manager(&self) -> units::Manager {
        if self.cfg.user_manager {
            units::Manager::User {
                apps_dir: self.cfg.data_dir.join("apps"),
            }
        } else {
            units::Manager::System
        }
    }

    fn replicas(
        &self,
        spec: &ServiceSpec,
        bin: &Fetched,
        n: u32,
        prepared: &Prepared,
    ) -> Result<Vec<Desired>, String> {
        let manager = self.manager();
        if self.cfg.user_manager && !spec.user.is_empty() {
            return Err(format!(
                "user: {} needs the system service manager; this node runs apps in a user's manager",
                spec.user
            ));
        }
        let identity =
            super::identity::identity(&spec.user, self.cfg.allow_root_apps, &super::identity::Nss)?;
        let network = match (spec.network(), spec.network_namespace_path.as_str()) {
            (_, path) if !path.is_empty() => Network::Namespace(path.to_owned()),
            (spec::Network::None, _) if !spec.nonet.local_ports.is_empty() => Network::Loopback,
            (spec::Network::None, _) => Network::None,
            _ => Network::Host,
        };
        let files: Vec<PathBuf> = prepared.files.iter().map(|(p, _)| p.clone()).collect();
        let secrets_host_dir = self.secret_files_dir(&spec.name);
        let landlock =
            match units::landlock_policy(spec, &bin.path, &files, &manager, &secrets_host_dir) {
                Some(policy) => Some(self.write_policy(&spec.name, &policy)?),
                None => None,
            };
        let exec_wrapper = if units::args_need_wrapper(&spec.args) {
            Some(self.exec_wrapper("args with characters systemd cannot store verbatim")?)
        } else {
            None
        };
        let secret_files = if spec.secrets.is_empty() {
            None
        } else {
            Some(units::SecretFiles {
                dir: secrets_host_dir,
                // A user's manager needs no hand-over: the files are its own.
                helper: if self.cfg.user_manager {
                    self.cfg.exec_wrapper.clone()
                } else {
                    self.exec_wrapper("secrets")?
                },
            })
        };
        let digests = format!("{}{}", bin.digest, prepared.extra);
        let hash = spec.node_hash(self.node(), &self.cfg.labels, self.arch, &digests);
        let env: Vec<(String, String)> = spec
            .env
            .iter()
            .filter(|e| e.value_from_secret.is_empty())
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        let nonzero = |v: u64| (v > 0).then_some(v);
        Ok((0..n)
            .map(|index| {
                let r = Replica {
                    app: spec.name.clone(),
                    index,
                    node_id: self.node().to_owned(),
                    node_os: self.os.into(),
                    node_arch: self.arch.into(),
                    hash: hash.clone(),
                    binary: bin.path.clone(),
                    args: spec.args.clone(),
                    env: env.clone(),
                    nats_url: self.cfg.app_nats_url.clone(),
                    identity: identity.clone(),
                    memory_low_mb: nonzero(spec.memory_mb),
                    memory_max_mb: nonzero(spec.memory_max_mb),
                    cpu_cores: (spec.cpu_cores > 0.0).then_some(spec.cpu_cores),
                    tasks_max: spec.tasks_max.map(u64::from),
                    restart: Restart {
                        policy: match spec.restart.policy {
                            spec::RestartPolicy::Always => "always",
                            spec::RestartPolicy::OnFailure => "on-failure",
                            spec::RestartPolicy::Never => "no",
                        },
                        delay: spec.restart.delay.0,
                        max: spec.restart.max_restarts,
                        window: spec.restart.window.0,
                    },
                    stop_timeout: spec.stop_timeout.0,
                    network: network.clone(),
                    systemd_version: self.systemd_version,
                    environment_file: prepared
                        .env
                        .as_ref()
                        .map(|_| self.env_file(&units::unit_name(&spec.name, index))),
                    next: false,
                    notify: spec.health.notify.unwrap_or(bin.notify),
                    files: prepared.files.clone(),
                    landlock: landlock.clone(),
                    exec_wrapper: exec_wrapper.clone(),
                    secret_files: secret_files.clone(),
                    manager: manager.clone(),
                };
                let next = Replica {
                    next: true,
                    environment_file: r
                        .environment_file
                        .as_ref()
                        .map(|_| self.env_file(&units::next_unit_name(&spec.name, index))),
                    ..r.clone()
                };
                Desired {
                    app: spec.name.clone(),
                    index,
                    hash: hash.clone(),
                    unit: units::render(&r),
                    next: units::render(&next),
                }
            })
            .collect())
    }

    /// The exec wrapper, which `what` needs.
    fn exec_wrapper(&self, what: &str) -> Result<PathBuf, String> {
        let wrapper = &self.cfg.exec_wrapper;
        if !wrapper.is_file() {
            return Err(format!(
                "{what} needs the exec wrapper at {} (narun-exec); it is missing",
                wrapper.display()
            ));
        }
        Ok(wrapper.clone())
    }

    /// Write an app's landlock policy (root-owned, 0644, no secrets) and
    /// return (wrapper, policy path).
    fn write_policy(
        &self,
        app: &str,
        policy: &crate::exec::Policy,
    ) -> Result<(PathBuf, PathBuf), String> {
        let what = if policy.filesystem {
            "mode: landlock"
        } else {
            "nonet.localPorts"
        };
        let wrapper = self.exec_wrapper(what)?;
        let dir = self.cfg.data_dir.join("policies");
        let path = dir.join(format!("{app}.json"));
        let json = serde_json::to_vec_pretty(policy).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, json))
            .map_err(|e| format!("cannot write the landlock policy {}: {e}", path.display()))?;
        Ok((wrapper, path))
    }

    /// The root-only directory holding an app's `secrets:` files (bound at
    /// /run/secrets in its units).
    fn secret_files_dir(&self, app: &str) -> PathBuf {
        self.cfg.runtime_dir.join("files").join(app)
    }

    /// Bring an app's secret files up to date: new or changed content is
    /// written atomically (0440; in the setgid directory `narun-exec
    /// --own-secrets` prepared, a new file takes the app's group, so no
    /// capability is needed); files no longer in the spec are removed.
    /// Running instances see the change at once.
    fn sync_secret_files(
        &self,
        app: &str,
        files: &[(String, Zeroizing<Vec<u8>>)],
    ) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.secret_files_dir(app);
        let fail = |e: std::io::Error| format!("secret files of {app}: {e}");
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(fail)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
        for (name, content) in files {
            let path = dir.join(name);
            let same = std::fs::read(&path)
                .map(|old| Zeroizing::new(old).as_slice() == content.as_slice())
                .unwrap_or(false);
            if !same {
                write_private_file(&path, content, 0o440).map_err(fail)?;
            }
        }
        for entry in std::fs::read_dir(&dir).map_err(fail)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !files.iter().any(|(n, _)| *n == name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Where the secret environment of `unit` is written.
    fn env_file(&self, unit: &str) -> PathBuf {
        self.cfg
            .runtime_dir
            .join("secrets")
            .join(format!("{unit}.env"))
    }

    /// Resolve an app's secrets and mounted files.
    async fn prepare(&self, spec: &ServiceSpec) -> Result<Prepared, String> {
        let mut extra = String::new();
        let mut env = Zeroizing::new(String::new());
        // Every secret the app uses, once: env[].valueFromSecret, secrets[].
        let mut names: Vec<&str> = spec
            .env
            .iter()
            .filter(|e| !e.value_from_secret.is_empty())
            .map(|e| e.value_from_secret.as_str())
            .chain(spec.secrets.iter().map(|s| s.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut plain: HashMap<&str, Zeroizing<Vec<u8>>> = HashMap::new();
        if let Some(first) = names.first() {
            let key = self.master_key.as_ref().ok_or_else(|| {
                format!(
                    "Failed to resolve secret '{first}': node has no master key configured (--master-key-file)"
                )
            })?;
            let js = store::jetstream(&self.nats).map_err(|e| e.to_string())?;
            let kv = store::open_kv(&js, store::SECRETS)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "Failed to resolve secrets: KV bucket '{}' does not exist",
                        store::SECRETS
                    )
                })?;
            for name in names {
                let fail = |why: String| format!("Failed to resolve secret '{name}': {why}");
                let entry = kv
                    .entry(name)
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
                    .ok_or_else(|| fail(format!("not found in KV store '{}'", store::SECRETS)))?;
                let stored: store::StoredSecret = serde_json::from_slice(&entry.value)
                    .map_err(|e| fail(format!("unreadable stored secret: {e}")))?;
                let value = stored
                    .open(key, name)
                    .map_err(|e| fail(format!("decryption failed (wrong master key?): {e}")))?;
                // A changed secret restarts the app unless it opted out.
                if spec.restart_on_secret_change {
                    extra.push_str(&format!(";secret:{name}@{}", entry.revision));
                }
                plain.insert(name, Zeroizing::new(value.to_vec()));
            }
        }
        for var in spec.env.iter().filter(|e| !e.value_from_secret.is_empty()) {
            let name = &var.value_from_secret;
            let fail = |why: &str| format!("Failed to resolve secret '{name}': {why}");
            let value = std::str::from_utf8(&plain[name.as_str()])
                .map_err(|_| fail("the value is not UTF-8 text (use `secrets:` for a file)"))?;
            if value.contains('\0') {
                return Err(fail("the value contains a NUL byte"));
            }
            env.push_str(&env_file_line(&var.name, value));
        }
        let secret_files = spec
            .secrets
            .iter()
            .map(|s| (s.file_name(), plain[s.name.as_str()].clone()))
            .collect();
        let mut files = Vec::new();
        for m in &spec.mounts {
            let object = &m.source.object_store;
            let f = self
                .files
                .fetch_object(&self.nats, object)
                .await
                .map_err(|e| format!("Failed to process mount {}: file '{object}': {e}", m.path))?;
            extra.push_str(&format!(";file:{object}={}", f.digest));
            files.push((f.path, m.path.clone()));
        }
        Ok(Prepared {
            env: (!env.is_empty()).then_some(env),
            secret_files,
            files,
            extra,
        })
    }

    /// Write a unit's secret environment file (0600, root) before it starts.
    async fn write_env_file(&self, unit: &str) -> Result<(), String> {
        let Some(content) = self.pending_env.lock().await.remove(unit) else {
            return Ok(());
        };
        write_private_file(&self.env_file(unit), content.as_bytes(), 0o600)
            .map_err(|e| format!("cannot write the secret environment of {unit}: {e}"))
    }

    /// For an app that keeps running when its secrets change: bring the
    /// secret environment files of its existing units up to date, for
    /// their next restart.
    async fn refresh_env_files(&self, units: &[String]) {
        let pending = self.pending_env.lock().await;
        for unit in units {
            let path = self.env_file(unit);
            let Some(content) = pending.get(unit) else {
                continue;
            };
            let Ok(old) = std::fs::read(&path).map(Zeroizing::new) else {
                continue; // not started yet: written at its start
            };
            if old.as_slice() != content.as_bytes() {
                if let Err(e) = write_private_file(&path, content.as_bytes(), 0o600) {
                    tracing::error!(unit = %unit, error = %e, "cannot update the secret environment");
                }
            }
        }
    }

    fn remove_env_file(&self, unit: &str) {
        let _ = std::fs::remove_file(self.env_file(unit));
    }

    fn spawn_fetch(&self, app: String, tag: String) {
        let cache = self.cache.clone();
        let nats = self.nats.clone();
        let events = self.events.clone();
        let (os, arch) = (self.os, self.arch);
        let permits = self.fetch_permits.clone();
        tokio::spawn(async move {
            // A few downloads at a time: bounded memory and bandwidth; a slow
            // download never blocks heartbeats or the reconcile loop.
            let _permit = permits.acquire_owned().await;
            let result = cache.fetch(&nats, &app, &tag, os, arch).await;
            let _ = events.send(Event::Fetched { app, tag, result });
        });
    }

    async fn apply(&self, action: &Action, survivor: &Survivor) {
        let name = action.unit_name().to_owned();
        let Some((app, index)) = units::parse_unit_name(&name) else {
            return;
        };
        let id = units::instance_id(&app, index);
        let result = match action {
            Action::Stop(n) => self.stop_unit(&app, &id, n, survivor).await,
            Action::Start(u) => {
                let hash = units::hash_from_description(match u.get("Description") {
                    Some(crate::systemd::Prop::Str(d)) => d,
                    _ => "",
                })
                .unwrap_or_default()
                .to_owned();
                self.publish(
                    &app,
                    &name,
                    InstanceStatus::starting(&id, "Starting process").with_hash(&hash),
                )
                .await;
                self.start(u).await
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
                    .lock()
                    .await
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

    /// Stop a unit. When the other generation of the replica keeps running
    /// (or stops after this one), the replica is not reported stopping:
    /// the survivor's status is published again instead.
    async fn stop_unit(
        &self,
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
            {
                let mut published = self.published.lock().await;
                published.remove(unit);
                published.remove(s);
            }
            self.sweep_cache.lock().await.remove(s);
        } else if report && r.is_ok() {
            self.publish(app, unit, InstanceStatus::stopped(id, None))
                .await;
        } else {
            self.published.lock().await.remove(unit);
        }
        r.map_err(|e| e.to_string())
    }

    /// Start a unit: forget a previous failure, write its secrets, start it.
    /// A `Type=notify` unit's start lasts until it is ready: the agent does
    /// not wait for it (its health shows in the next reconciles).
    async fn start(&self, unit: &crate::systemd::TransientUnit) -> Result<(), String> {
        let _ = self.systemd.reset_failed(&unit.name).await;
        self.write_env_file(&unit.name).await?;
        let notify =
            matches!(unit.get("Type"), Some(crate::systemd::Prop::Str(t)) if t == "notify");
        let r = if notify {
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
    async fn observe(&self, actual: &[crate::systemd::UnitState]) -> Vec<Observed> {
        let readiness = self.readiness.lock().await.clone();
        let now_usec = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default();
        let mut was_ready = self.was_ready.lock().await;
        super::rollout::observe(&self.systemd, actual, &readiness, &mut was_ready, now_usec).await
    }

    /// Publish a status message if it differs from the last one under `key`
    /// (a unit name: the two generations of a replica are told apart).
    async fn publish(&self, app: &str, key: &str, status: InstanceStatus) {
        {
            let mut published = self.published.lock().await;
            if published.get(key) == Some(&status) {
                return;
            }
            published.insert(key.to_owned(), status.clone());
        }
        let update = status.to_update(self.node());
        if let Ok(json) = serde_json::to_vec(&update) {
            let _ = self
                .nats
                .publish(store::status_subject(app, self.node()), json.into())
                .await;
        }
    }

    async fn publish_app_error(&self, app: &str, error: &str) {
        let n = {
            let apps = self.apps.lock().await;
            apps.get(app)
                .and_then(|a| a.spec.as_ref())
                .map(|s| s.replicas_for(self.node(), &self.cfg.labels, self.arch))
                .unwrap_or(1)
                .max(1)
        };
        for i in 0..n {
            let id = units::instance_id(app, i);
            self.publish(app, &id, InstanceStatus::failed(&id, error))
                .await;
        }
    }

    /// Read every narun unit's state from systemd and publish changes.
    async fn publish_status(&self) {
        let Ok(list) = self.systemd.list(units::UNIT_GLOB).await else {
            return;
        };
        let mut live = BTreeSet::new();
        let mut live_units = BTreeSet::new();
        let mut replicas: BTreeMap<String, Vec<ReplicaSnapshot>> = BTreeMap::new();
        // Unchanged units are not asked again (the list carries their state);
        // every tenth sweep refreshes all (restarts, memory, CPU).
        let sweep = self
            .sweeps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let full_sweep = sweep % 10 == 0;
        let readiness = self.readiness.lock().await.clone();
        let rolled_back = self.rolled_back.lock().await.clone();
        let now_usec = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default();
        // Per slot, its units (two during a rollout) and whether each is
        // up (active or starting).
        let is_up = |state: &str| matches!(state, "active" | "activating" | "reloading");
        let mut slots: BTreeMap<(String, u32), Vec<(String, bool)>> = BTreeMap::new();
        for u in &list {
            if let Some(slot) = units::parse_unit_name(&u.name) {
                slots
                    .entry(slot)
                    .or_default()
                    .push((u.name.clone(), is_up(&u.active_state)));
            }
        }
        let mut sweep_cache = self.sweep_cache.lock().await;
        for u in list {
            let Some((app, index)) = units::parse_unit_name(&u.name) else {
                continue;
            };
            let id = units::instance_id(&app, index);
            live.insert(id.clone());
            live_units.insert(u.name.clone());
            let hash = units::hash_from_description(&u.description).unwrap_or_default();
            let was_ready = self
                .was_ready
                .lock()
                .await
                .contains(&(u.name.clone(), hash.to_owned()));
            let key = (
                u.active_state.clone(),
                u.sub_state.clone(),
                hash.to_owned(),
                was_ready,
            );
            // A unit not known ready yet is read every time (its readiness
            // changes with time alone).
            if !full_sweep && was_ready {
                if let Some((k, snap, status)) = sweep_cache.get(&u.name) {
                    if *k == key {
                        replicas.entry(app.clone()).or_default().push(snap.clone());
                        let status = status.clone();
                        self.publish(&app, &u.name, status).await;
                        continue;
                    }
                }
            }
            let Ok(Some(details)) = self.systemd.details(&u.name).await else {
                continue;
            };
            let mut status = derive_status(&id, &details).with_hash(hash);
            // The other generation of this replica, if any (a rollout).
            let others: Vec<&(String, bool)> = slots
                .get(&(app.clone(), index))
                .map(|v| v.iter().filter(|(n, _)| *n != u.name).collect())
                .unwrap_or_default();
            if !was_ready {
                // "running" means ready: until then it is starting, and a
                // replica that failed to get there says why.
                let r = readiness
                    .get(&app)
                    .copied()
                    .unwrap_or_else(super::rollout::default_readiness);
                match health(&details, &r, now_usec, false) {
                    Health::Ready => {
                        self.was_ready
                            .lock()
                            .await
                            .insert((u.name.clone(), hash.to_owned()));
                    }
                    Health::Pending => {
                        status = InstanceStatus {
                            pid: status.pid,
                            ..InstanceStatus::starting(
                                &id,
                                if r.notify {
                                    "waiting for READY=1"
                                } else {
                                    "waiting until it has run for the stable period"
                                },
                            )
                            .with_hash(hash)
                        };
                    }
                    Health::Failed(why) => {
                        // The other generation keeps serving: the plan
                        // rolls this one back.
                        let why = if !others.is_empty() {
                            rolled_back_reason(&why)
                        } else {
                            why
                        };
                        status = InstanceStatus {
                            pid: status.pid,
                            exit_code: status.exit_code,
                            restarts: status.restarts,
                            ..InstanceStatus::failed(&id, &why).with_hash(hash)
                        };
                    }
                }
            }
            // The last rollback of this replica, on the version that kept
            // serving (`narun apps info`).
            if let Some((bad, why)) = rolled_back.get(&(app.clone(), index)) {
                if bad != hash && status.status == "running" {
                    status.error = Some(format!("rolled back from {bad}: {why}"));
                }
            }
            let snap = ReplicaSnapshot {
                index,
                instance_id: id.clone(),
                unit: u.name.clone(),
                active_state: details.active_state.clone(),
                sub_state: details.sub_state.clone(),
                status: status.status.to_owned(),
                pid: details.main_pid,
                active_since_unix: if details.active_state == "active" {
                    (details.active_enter_usec / 1_000_000) as i64
                } else {
                    0
                },
                restarts: details.n_restarts,
                last_exit_code: status.exit_code,
                memory_current_bytes: details.memory_current,
                cpu_usage_seconds: details.cpu_usage_nsec.map(|n| n as f64 / 1e9),
                spec_hash: hash.to_owned(),
            };
            replicas.entry(app.clone()).or_default().push(snap.clone());
            sweep_cache.insert(u.name.clone(), (key, snap, status.clone()));
            // A generation that served and is going away while the other
            // one of its slot is up was replaced: the replica did not stop.
            let replaced =
                was_ready && !is_up(&details.active_state) && others.iter().any(|(_, up)| *up);
            if !replaced {
                self.publish(&app, &u.name, status).await;
            }
        }
        sweep_cache.retain(|unit, _| live_units.contains(unit));
        drop(sweep_cache);
        self.update_snapshot(replicas).await;
        // Secret files of units that are gone.
        if let Ok(entries) = std::fs::read_dir(self.cfg.runtime_dir.join("secrets")) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let Some(unit) = file.strip_suffix(".env") else {
                    continue;
                };
                let live_unit = units::parse_unit_name(unit)
                    .is_some_and(|(a, i)| live.contains(&units::instance_id(&a, i)));
                let pending = self.pending_env.lock().await.contains_key(unit);
                if !live_unit && !pending {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // Secret file directories of apps with no unit and no such spec.
        if let Ok(entries) = std::fs::read_dir(self.cfg.runtime_dir.join("files")) {
            let apps = self.apps.lock().await;
            for e in entries.flatten() {
                let app = e.file_name().to_string_lossy().into_owned();
                let wanted = apps
                    .get(&app)
                    .and_then(|a| a.spec.as_ref())
                    .is_some_and(|s| !s.secrets.is_empty());
                let running = live
                    .iter()
                    .any(|id| spec::split_instance_id(id).is_some_and(|(a, _)| a == app));
                if !wanted && !running {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        // Instances whose unit vanished on its own (e.g. stopped by hand).
        let gone: Vec<(String, InstanceStatus)> = {
            let published = self.published.lock().await;
            published
                .iter()
                .filter(|(_, s)| !live.contains(&s.instance_id) && s.is_active())
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect()
        };
        for (key, s) in gone {
            if let Some((app, _)) = spec::split_instance_id(&s.instance_id) {
                let app = app.to_owned();
                self.publish(&app, &key, InstanceStatus::stopped(&s.instance_id, None))
                    .await;
            }
        }
    }

    /// Rebuild the node snapshot (admin UI, metrics) from the app state
    /// and the replicas just read from systemd.
    async fn update_snapshot(&self, mut replicas: BTreeMap<String, Vec<ReplicaSnapshot>>) {
        let apps = self.apps.lock().await;
        let mut names: BTreeSet<String> = apps.keys().cloned().collect();
        names.extend(replicas.keys().cloned());
        let snapshot_apps = names
            .into_iter()
            .map(|name| {
                let app = apps.get(&name);
                let spec = app.and_then(|a| a.spec.as_ref());
                let mut reps = replicas.remove(&name).unwrap_or_default();
                reps.sort_by_key(|r| r.index);
                AppSnapshot {
                    tag: spec.map(|s| s.tag.clone()).unwrap_or_default(),
                    mode: spec.map(|s| s.mode.as_str().to_owned()).unwrap_or_default(),
                    desired: spec
                        .map(|s| s.replicas_for(self.node(), &self.cfg.labels, self.arch))
                        .unwrap_or(0),
                    error: app.and_then(|a| a.spec_error.clone().or(a.fetch_error.clone())),
                    metrics_port: spec.map(|s| s.metrics.port).unwrap_or(0),
                    metrics_path: spec
                        .map(|s| s.metrics_path().to_owned())
                        .unwrap_or_default(),
                    replicas: reps,
                    name,
                }
            })
            .collect();
        let snap = NodeSnapshot {
            node_id: self.node().to_owned(),
            version: crate::VERSION.to_owned(),
            started_unix: self.started.unix_timestamp(),
            nats_connected: self.nats.connection_state()
                == async_nats::connection::State::Connected,
            nats_url: self.cfg.nats.urls.join(","),
            systemd_version: self.systemd_version_string.clone(),
            os: self.os.to_owned(),
            arch: self.arch.to_owned(),
            labels: self
                .cfg
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            apps: snapshot_apps,
        };
        self.snapshot.send_replace(snap);
    }

    async fn status_line(&self) -> String {
        let apps = self.apps.lock().await.len();
        let running = self
            .published
            .lock()
            .await
            .values()
            .filter(|s| s.status == "running")
            .count();
        format!("{apps} apps, {running} replicas running")
    }
}

/// Write `content` to `path` atomically (a temp file renamed over it),
/// created with `mode`, synced.
fn write_private_file(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let written = (|| {
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// One `EnvironmentFile=` line: `NAME="value"` with the characters
/// systemd's parser treats specially escaped.
pub fn env_file_line(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 4);
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"\n");
    out
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

/// Is `pid` a live narun process?
fn is_narun_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() == "narun")
        .unwrap_or(false)
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
