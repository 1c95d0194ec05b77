//! `narun dev`: the whole system in one command, and nothing left behind
//! after Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narun_dev_serves_the_demo_and_ctrl_c_leaves_nothing_behind() {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(narun_binary())
        .args(["dev", "--http-port", &port.to_string()])
        .arg("--demo-binary")
        .arg(example_binary("hello"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start narun dev");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    // Read the announcements until it says it is running.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut systemd_pid = None;
    let mut nats_port = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| {
                panic!(
                    "narun dev did not come up:\n{}\n{}",
                    lines.join("\n"),
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                )
            });
        if let Some(rest) = line.split("private systemd (pid ").nth(1) {
            systemd_pid = rest.split(')').next().and_then(|p| p.parse::<u32>().ok());
        }
        if let Some(rest) = line.strip_prefix("narun dev: NATS at nats://127.0.0.1:") {
            nats_port = rest.trim().parse::<u16>().ok();
        }
        let running = line.contains("running. Try:");
        lines.push(line);
        if running {
            break;
        }
    }
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
