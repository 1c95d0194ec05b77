//! `narun dev`: the whole system in one command, and nothing left behind
//! after Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// `narun dev`'s announcements, read until it says it is running; on a
/// timeout, panics with them, its log and `context()`. Returns them and the
/// lines that follow.
fn until_running(
    child: &mut std::process::Child,
    log: &std::path::Path,
    context: impl Fn() -> String,
) -> (Vec<String>, std::sync::mpsc::Receiver<String>) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Keeps reading after we return: narun dev must never write to a
    // closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| {
                panic!(
                    "narun dev did not come up:\n{}\n{}\n{}",
                    lines.join("\n"),
                    std::fs::read_to_string(log).unwrap_or_default(),
                    context()
                )
            });
        let running = line.contains("running. Try:");
        lines.push(line);
        if running {
            return (lines, rx);
        }
    }
}

/// Root-mode `narun dev`s deploy the same demo apps, whose state
/// directories (`/var/lib/private/narun-app/hello`) are the host's: one at a
/// time.
static ROOT_DEV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn root_dev_lock() -> tokio::sync::MutexGuard<'static, ()> {
    ROOT_DEV.blocking_lock()
}

/// The gateway's HTTP port, from narun dev's "gateway on http://…" line
/// (the tests pass `--http-port 0`: no port is guessed before it binds).
fn announced_http_port(lines: &[String]) -> u16 {
    lines
        .iter()
        .find_map(|l| l.split("gateway on http://127.0.0.1:").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no gateway port announced:\n{}", lines.join("\n")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narun_dev_serves_the_demo_and_ctrl_c_leaves_nothing_behind() {
    let _one_at_a_time = ROOT_DEV.lock().await;
    let log = tempfile::NamedTempFile::new().unwrap();
    // Port 0: narun dev binds any free port and announces it.
    let mut child = Command::new(narun_binary())
        .args(["dev", "--http-port", "0"])
        .arg("--demo-binary")
        .arg(example_binary("hello"))
        .args(["--grpc-port", "0"])
        .arg("--demo-grpc-binary")
        .arg(example_binary("grpc-hello"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start narun dev");
    let pid = child.id();
    let (lines, _rest) = until_running(&mut child, log.path(), String::new);
    let after = |marker: &str, end: char| {
        lines
            .iter()
            .find_map(|l| l.split(marker).nth(1))
            .and_then(|rest| rest.split(end).next())
            .and_then(|p| p.trim().parse::<u32>().ok())
    };
    let systemd_pid = after("private systemd (pid ", ')');
    let nats_port = after("narun dev: NATS at nats://127.0.0.1:", ' ').map(|p| p as u16);
    let grpc_port = after("gRPC on 127.0.0.1:", ' ').map(|p| p as u16);
    let port = announced_http_port(&lines);
    let all = lines.join("\n");
    assert!(
        all.contains("Hello, NATS User! (processed by POST)"),
        "{all}"
    );
    // The curl line it printed works.
    let r = http(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "POST",
        "/hello/",
        &[],
        r#"{"name":"again"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["message"], "Hello, again! (processed by POST)");
    // The proxy-mode demo: a plain HTTP server behind narun bridge.
    assert!(
        all.contains("plain-http (an HTTP server without the narun library"),
        "{all}"
    );
    let r = http(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "GET",
        "/plain/",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with("hello from plain-http"),
        "{}",
        r.text()
    );
    // The grpcurl line it printed names a working gRPC route.
    assert!(all.contains("hello.v1.Greeter/SayHello"), "{all}");
    let grpc_port = grpc_port.expect("gRPC port announced");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let reply = narun_hello_proto::v1::greeter_client::GreeterClient::new(channel)
        .say_hello(narun_hello_proto::v1::HelloRequest {
            name: "NATS User".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "Hello, NATS User!");

    // Ctrl-C.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    // Nothing left: its systemd (and every app with it), its NATS, its files.
    if let Some(p) = systemd_pid {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "private systemd {p} still running"
        );
    }
    let nats_port = nats_port.expect("NATS port announced");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_err(),
        "NATS still listening"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "gateway still listening"
    );
    assert!(
        !std::path::Path::new(&format!("/var/lib/narun-dev-{pid}")).exists(),
        "work dir left behind"
    );
    let leftovers = Command::new("pgrep")
        .args(["-f", "narun-app@hello"])
        .output()
        .unwrap();
    assert!(leftovers.stdout.is_empty());
}

/// `narun dev` as a user without root: the apps run in that user's systemd
/// user manager, as that user, in a user namespace; Ctrl-C leaves nothing.
/// The user is `nobody`, with its user manager started in a private
/// systemd (logind is not running there, so the drop-in sets what
/// pam_systemd would: XDG_RUNTIME_DIR; and no sandboxed system service has
/// run there yet, so /run/systemd/unit-root, which a user manager's
/// sandboxes need and cannot create, is made as a booted host has it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narun_dev_without_root_uses_the_user_manager() {
    use common::systemd::{PrivateSystemd, VarLibDir};
    use std::os::unix::process::CommandExt;
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let up = sd.nsenter(
        "sh",
        &[
            "-c",
            "mkdir -p /run/systemd/system/user@.service.d /run/systemd/unit-root && \
             printf '[Service]\\nEnvironment=XDG_RUNTIME_DIR=/run/user/%%i\\n' \
               > /run/systemd/system/user@.service.d/narun-test.conf && \
             systemctl daemon-reload && systemctl start user@65534.service",
        ],
    );
    assert!(up.status.success(), "nobody's user manager: {up:?}");
    // The binaries where nobody can read them.
    let bin = VarLibDir::new("narun-dev-user");
    for (from, to) in [
        (narun_binary(), "narun"),
        (narun_binary().with_file_name("narun-exec"), "narun-exec"),
        (example_binary("hello"), "hello"),
        // Found beside narun, as the packages install it.
        (example_binary("plain-http"), "narun-plain-http"),
    ] {
        std::fs::copy(&from, bin.0.join(to)).unwrap();
    }
    let as_nobody = |program: &str| {
        let mut c = Command::new("nsenter");
        c.args(["-t", &sd.pid.to_string(), "-m", "-p"])
            .args([
                "setpriv",
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
            ])
            .args([
                "env",
                "XDG_RUNTIME_DIR=/run/user/65534",
                "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/65534/bus",
                program,
            ]);
        c
    };
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = as_nobody(bin.0.join("narun").to_str().unwrap())
        .args([
            "dev",
            "--nats-url",
            &nats.url(),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ])
        .arg("--demo-binary")
        .arg(bin.0.join("hello"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .process_group(0)
        .spawn()
        .expect("start narun dev as nobody");
    let pgid = child.id() as i32;
    let (lines, _rest) = until_running(&mut child, log.path(), || {
        format!(
            "systemd's journal:\n{}",
            sd.journal(&["--no-pager", "-n", "60", "-o", "cat"])
        )
    });
    let port = announced_http_port(&lines);
    let all = lines.join("\n");
    assert!(all.contains("systemd user manager"), "{all}");
    assert!(all.contains("Hello, NATS User!"), "{all}");
    let r = http(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "POST",
        "/hello/",
        &[],
        r#"{"name":"user"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["message"], "Hello, user! (processed by POST)");
    // Proxy mode in the user manager: the bridge and the plain HTTP server
    // run as nobody, in its user namespace.
    assert!(
        all.contains("plain-http (an HTTP server without the narun library"),
        "{all}"
    );
    let r = http(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "GET",
        "/plain/",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with("hello from plain-http"),
        "{}",
        r.text()
    );

    // The unit is nobody's, in its user manager, in a user namespace.
    let show = as_nobody("systemctl")
        .args([
            "--user",
            "show",
            "narun-app@hello.service",
            "-p",
            "ActiveState",
            "-p",
            "MainPID",
            "-p",
            "PrivateUsers",
        ])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(show.contains("ActiveState=active"), "{show}");
    assert!(show.contains("PrivateUsers=yes"), "{show}");
    let main_pid = show
        .lines()
        .find_map(|l| l.strip_prefix("MainPID="))
        .unwrap()
        .to_owned();
    let status = sd.nsenter("cat", &[&format!("/proc/{main_pid}/status")]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );

    // Ctrl-C (to narun itself, under nsenter and setpriv): nothing left in
    // the user manager or the runtime dir.
    let found = Command::new("pgrep")
        .args(["-g", &pgid.to_string(), "-u", "65534", "-x", "narun"])
        .output()
        .unwrap();
    let narun_pid: i32 = String::from_utf8_lossy(&found.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("narun dev's pid: {found:?}"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(narun_pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert!(
        st.success(),
        "{st}: {}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    let units = as_nobody("systemctl")
        .args([
            "--user",
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "narun-app@*",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&units.stdout).trim().is_empty(),
        "{units:?}"
    );
    let left = sd.nsenter(
        "sh",
        &["-c", "ls -d /run/user/65534/narun-dev-* 2>/dev/null"],
    );
    assert!(left.stdout.is_empty(), "{left:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "gateway still listening"
    );
}

/// `narun dev` started as a shell starts a foreground job: in a process
/// group of its own (here a session of its own, as `setsid` makes it), so
/// "Ctrl-C" is SIGINT to the whole group, as a terminal sends it.
struct TerminalDev {
    child: std::process::Child,
    pid: u32,
    log: tempfile::NamedTempFile,
    out: Vec<String>,
    rest: std::sync::mpsc::Receiver<String>,
    http_port: u16,
    nats_port: u16,
    systemd_pid: Option<i32>,
}

impl TerminalDev {
    fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new(narun_binary());
        cmd.args(["dev", "--http-port", "0"])
            .arg("--demo-binary")
            .arg(example_binary("hello"))
            .args(["--grpc-port", "0"])
            .arg("--demo-grpc-binary")
            .arg(example_binary("grpc-hello"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start narun dev");
        let pid = child.id();
        let (out, rest) = until_running(&mut child, log.path(), String::new);
        let after = |marker: &str, end: char| {
            out.iter()
                .find_map(|l| l.split(marker).nth(1))
                .and_then(|rest| rest.split(end).next())
                .and_then(|p| p.trim().parse::<i32>().ok())
        };
        let systemd_pid = after("private systemd (pid ", ')');
        let nats_port =
            after("narun dev: NATS at nats://127.0.0.1:", ' ').expect("NATS port announced") as u16;
        let http_port = announced_http_port(&out);
        TerminalDev {
            child,
            pid,
            log,
            out,
            rest,
            http_port,
            nats_port,
            systemd_pid,
        }
    }

    /// Ctrl-C: SIGINT to every process of the foreground group.
    fn ctrl_c(&self) {
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
    }

    /// The nats-server it started (a child process).
    fn nats_server_pid(&self) -> i32 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid)).unwrap();
        tasks
            .flatten()
            .flat_map(|t| {
                std::fs::read_to_string(t.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .collect::<Vec<_>>()
            })
            .find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|comm| comm.trim() == "nats-server")
            })
            .expect("narun dev's nats-server")
    }

    /// The next line on stdout containing `needle`.
    fn wait_line(&mut self, needle: &str) -> String {
        loop {
            let line = self
                .rest
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no line {needle:?} on stdout:\n{}", self.stderr()));
            self.out.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log.path()).unwrap_or_default()).into_owned()
    }

    /// Its exit status, within `limit` (then it is killed and the test fails).
    fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // What it printed after "running".
                while let Ok(line) = self.rest.recv_timeout(Duration::from_secs(5)) {
                    self.out.push(line);
                }
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "narun dev did not exit within {limit:?} of Ctrl-C\nstdout:\n{}\nstderr (tail):\n{}",
                    self.out.join("\n"),
                    tail(&self.stderr(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Nothing of it left: no process naming its work dir (nats-server,
    /// unshare, apps), not its systemd, no listener, no work dir.
    fn assert_nothing_left(&self) {
        let work = format!("/var/lib/narun-dev-{}", self.pid);
        let left = processes_mentioning(&format!("narun-dev-{}", self.pid));
        assert!(left.is_empty(), "processes left behind: {left:#?}");
        if let Some(p) = self.systemd_pid {
            assert!(!alive(p), "private systemd {p} still running");
        }
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", self.nats_port)).is_err(),
            "NATS still listening"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_err(),
            "gateway still listening"
        );
        assert!(
            !std::path::Path::new(&work).exists(),
            "work dir {work} left behind"
        );
    }
}

impl Drop for TerminalDev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A live process (not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// Live processes whose command line contains `needle`: "pid: cmdline".
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            (cmdline.contains(needle) && alive(pid.parse().ok()?))
                .then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

/// Its console is for a person: no colour escapes when not a terminal.
fn assert_plain(text: &str) {
    assert!(!text.contains('\u{1b}'), "escape bytes in:\n{text}");
}

/// Ctrl-C in a terminal: SIGINT reaches narun dev and the children in its
/// process group at once. It stops within seconds, leaving nothing, and
/// the NATS disconnect its own stop causes is no ERROR.
#[test]
fn ctrl_c_in_a_terminal_stops_everything() {
    let _one_at_a_time = root_dev_lock();
    let mut dev = TerminalDev::start();
    dev.ctrl_c();
    let status = dev.exit_within(Duration::from_secs(15));
    let stderr = dev.stderr();
    assert!(status.success(), "{status}\n{stderr}");
    dev.assert_nothing_left();
    assert_plain(&stderr);
    assert!(
        !stderr.lines().any(|l| l.contains("ERROR")),
        "ERROR lines in:\n{stderr}"
    );
    let out = dev.out.join("\n");
    assert!(out.contains("narun dev: stopped"), "{out}");
}

/// NATS died first (killed), then Ctrl-C: nothing waits on the dead NATS.
#[test]
fn ctrl_c_after_nats_died_stops_everything() {
    let _one_at_a_time = root_dev_lock();
    let mut dev = TerminalDev::start();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.nats_server_pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", dev.nats_port)).is_ok() {
        assert!(std::time::Instant::now() < deadline, "NATS still up");
        std::thread::sleep(Duration::from_millis(20));
    }
    dev.ctrl_c();
    let status = dev.exit_within(Duration::from_secs(15));
    assert!(status.success(), "{status}\n{}", dev.stderr());
    dev.assert_nothing_left();
    assert_plain(&dev.stderr());
}

/// A second Ctrl-C while the orderly stop waits (here on a NATS server that
/// no longer answers: stopped with SIGSTOP) stops everything at once.
#[test]
fn a_second_ctrl_c_stops_at_once() {
    let _one_at_a_time = root_dev_lock();
    let mut dev = TerminalDev::start();
    let nats = dev.nats_server_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(nats),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    dev.ctrl_c();
    dev.wait_line("narun dev: stopping");
    dev.ctrl_c();
    let status = dev.exit_within(Duration::from_secs(10));
    let out = dev.out.join("\n");
    assert_eq!(
        status.code(),
        Some(130),
        "{status}\n{out}\n{}",
        dev.stderr()
    );
    assert!(out.contains("at once"), "{out}");
    assert!(!alive(nats), "nats-server left behind");
    dev.assert_nothing_left();
    assert_plain(&dev.stderr());
}
