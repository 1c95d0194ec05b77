//! `narun dev`: the whole system in one command, and nothing left behind
//! after Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// `narun dev`'s announcements, read until it says it is running; on a
/// timeout, panics with them, its log and `context()`.
fn until_running(
    child: &mut std::process::Child,
    log: &std::path::Path,
    context: impl Fn() -> String,
) -> Vec<String> {
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
            return lines;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narun_dev_serves_the_demo_and_ctrl_c_leaves_nothing_behind() {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(narun_binary())
        .args(["dev", "--http-port", &port.to_string()])
        .arg("--demo-binary")
        .arg(example_binary("hello"))
        .args(["--grpc-port", &free_port().to_string()])
        .arg("--demo-grpc-binary")
        .arg(example_binary("grpc-hello"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start narun dev");
    let pid = child.id();
    let lines = until_running(&mut child, log.path(), String::new);
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
    ] {
        std::fs::copy(&from, bin.0.join(to)).unwrap();
    }
    let port = free_port();
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
            &port.to_string(),
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
    let lines = until_running(&mut child, log.path(), || {
        format!(
            "systemd's journal:\n{}",
            sd.journal(&["--no-pager", "-n", "60", "-o", "cat"])
        )
    });
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
