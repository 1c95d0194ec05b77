//! Logs are for people and for journald: plain text off a terminal, colours
//! only on one (and never with NO_COLOR), journald's native fields under
//! systemd. Checked on the hello example (the consumer library's default)
//! and on a narun daemon (the gateway).

mod common;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::systemd::{PrivateSystemd, VarLibDir};
use common::*;

const ESC: u8 = 0x1b;

/// A gateway configuration: HTTP and metrics on any free port (port 0),
/// NATS at `nats_url`.
fn gateway_config(dir: &std::path::Path, nats_url: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.yaml");
    let yaml = format!(
        "nats_url: \"{nats_url}\"\nserver_addr: \"127.0.0.1:0\"\nmetrics_addr: \"127.0.0.1:0\"\nroutes:\n  - path: \"/hello/\"\n    methods: [\"POST\"]\n    service: \"hello\"\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Run `cmd` with stderr to a file until its stderr contains `needle`,
/// then stop it (SIGTERM) and return everything it wrote there.
fn stderr_until(mut cmd: Command, needle: &str) -> Vec<u8> {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file.reopen().unwrap())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read(file.path()).unwrap();
        if String::from_utf8_lossy(&text).contains(needle) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no {needle:?} in:\n{}", String::from_utf8_lossy(&text));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    std::fs::read(file.path()).unwrap()
}

fn assert_no_escape(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.contains(&ESC),
        "{what} wrote escape bytes:\n{}",
        String::from_utf8_lossy(bytes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_text_off_a_terminal() {
    let nats = NatsServer::start();
    // The example app: its stderr is a file, not a terminal.
    let mut hello = Command::new(example_binary("hello"));
    hello
        .args(["--nats-url", &nats.url(), "--service", "plain"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color");
    let out = stderr_until(hello, "serving over NATS");
    assert_no_escape("hello", &out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("INFO"), "{text}");
    assert!(text.contains("service=plain"), "{text}");

    // A daemon: the gateway.
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Command::new(narun_binary());
    gw.arg("gateway")
        .arg("--config")
        .arg(gateway_config(dir.path(), &nats.url()))
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color");
    let out = stderr_until(gw, "HTTP listener ready");
    assert_no_escape("narun gateway", &out);
}

/// `cmd` with stderr on a new pseudo-terminal: what it writes there until
/// `needle` appears (then it is killed).
fn on_a_terminal(mut cmd: Command, needle: &str) -> Vec<u8> {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two file descriptors; no name, termios or size.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(slave)
        .spawn()
        .expect("start");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut buf = [0u8; 4096];
        // Ends with EIO once the child (the last holder of the slave) exits.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no {needle:?} on the terminal:\n{}",
                    String::from_utf8_lossy(&seen)
                );
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_only_on_a_terminal_and_never_with_no_color() {
    let nats = NatsServer::start();
    let hello = |service: &str| {
        let mut c = Command::new(example_binary("hello"));
        c.args(["--nats-url", &nats.url(), "--service", service])
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR");
        c
    };
    // On a terminal: colours (so the next check means something).
    let out = on_a_terminal(hello("tty"), "serving over NATS");
    assert!(
        out.contains(&ESC),
        "no colours on a terminal:\n{}",
        String::from_utf8_lossy(&out)
    );
    // NO_COLOR, even on a terminal.
    let mut c = hello("nocolor");
    c.env("NO_COLOR", "1");
    let out = on_a_terminal(c, "serving over NATS");
    assert_no_escape("hello with NO_COLOR", &out);
    // The same for a daemon.
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Command::new(narun_binary());
    gw.arg("gateway")
        .arg("--config")
        .arg(gateway_config(dir.path(), &nats.url()))
        .env("TERM", "xterm-256color")
        .env("NO_COLOR", "1");
    let out = on_a_terminal(gw, "HTTP listener ready");
    assert_no_escape("narun gateway with NO_COLOR", &out);
}

/// The journal entries of `unit` (`journalctl -o json`), once one has a
/// MESSAGE containing `needle`.
fn journal_until(sd: &PrivateSystemd, unit: &str, needle: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = sd.journal(&["--no-pager", "-o", "json", "-u", unit]);
        let entries: Vec<serde_json::Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let found = entries.iter().any(|e| {
            e.get("MESSAGE")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.contains(needle))
        });
        if found {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the journal of {unit}:\n{out}\n{}",
            sd.systemctl(&["status", "--no-pager", unit])
                .stdout
                .escape_ascii()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The entry whose MESSAGE contains `needle`.
fn entry<'a>(entries: &'a [serde_json::Value], needle: &str) -> &'a serde_json::Value {
    entries
        .iter()
        .find(|e| {
            e.get("MESSAGE")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.contains(needle))
        })
        .unwrap()
}

/// journalctl writes a MESSAGE with control characters (an escape code) as
/// an array of bytes: every MESSAGE must be text without ESC.
fn assert_plain_messages(unit: &str, entries: &[serde_json::Value]) {
    for e in entries {
        let m = e.get("MESSAGE").unwrap_or(&serde_json::Value::Null);
        assert!(
            m.as_str().is_some_and(|s| !s.contains('\u{1b}')),
            "{unit}: a MESSAGE that is not plain text: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_apps_and_daemons_log_natively_to_the_journal() {
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let dir = VarLibDir::new("narun-logging");
    let field = |e: &serde_json::Value, k: &str| {
        e.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };

    // The example app, as narun node runs it (LogExtraFields,
    // SyslogIdentifier and NARUN_APP_NAME as its units set them).
    let run = sd.nsenter(
        "systemd-run",
        &[
            "--unit=logtest-hello",
            "-p",
            "LogExtraFields=NARUN_APP=logtest",
            "--setenv",
            &format!("NATS_URL={}", nats.url()),
            "--setenv",
            "TERM=xterm-256color",
            "--setenv",
            "NARUN_APP_NAME=logtest",
            "-p",
            "SyslogIdentifier=logtest",
            example_binary("hello").to_str().unwrap(),
            "--service",
            "logtest",
        ],
    );
    assert!(run.status.success(), "{run:?}");
    let entries = journal_until(&sd, "logtest-hello", "serving over NATS");
    assert_plain_messages("hello", &entries);
    let serving = entry(&entries, "serving over NATS");
    // Native protocol, with the priority, the fields, and what narun logs
    // (the agent's forwarder) needs.
    assert_eq!(field(serving, "_TRANSPORT"), "journal", "{serving}");
    assert_eq!(field(serving, "PRIORITY"), "6", "{serving}");
    assert_eq!(field(serving, "SERVICE"), "logtest", "{serving}");
    assert_eq!(field(serving, "NARUN_APP"), "logtest", "{serving}");
    // Named as the unit names its output (`journalctl -t logtest`).
    assert_eq!(field(serving, "SYSLOG_IDENTIFIER"), "logtest", "{serving}");
    assert!(
        field(serving, "MESSAGE").contains("service=logtest endpoint=\"handler\""),
        "the text keeps the fields: {serving}"
    );
    assert!(!field(serving, "TARGET").is_empty(), "{serving}");

    // A daemon: the gateway, with a NATS that is not there (an error).
    let closed = free_port();
    let config = gateway_config(&dir.0, &format!("nats://127.0.0.1:{closed}"));
    let run = sd.nsenter(
        "systemd-run",
        &[
            "--unit=logtest-gateway",
            "--setenv",
            "TERM=xterm-256color",
            narun_binary().to_str().unwrap(),
            "gateway",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{run:?}");
    let entries = journal_until(&sd, "logtest-gateway", "NATS client error");
    assert_plain_messages("narun gateway", &entries);
    let ready = entry(&entries, "HTTP listener ready");
    assert_eq!(field(ready, "_TRANSPORT"), "journal", "{ready}");
    assert_eq!(field(ready, "PRIORITY"), "6", "{ready}");
    let error = entry(&entries, "NATS client error");
    assert_eq!(field(error, "PRIORITY"), "3", "{error}");
    assert!(!field(error, "ERROR").is_empty(), "{error}");
}
