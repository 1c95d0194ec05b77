//! `narun-exec --probe`: an app's health check, run by systemd as the
//! unit's `ExecStartPost=` (inside the unit: same user, namespaces,
//! sandbox). It tries until the check passes, then exits 0, so the unit
//! stays `activating` until the app is healthy; the agent, not this
//! process, decides when waiting has lasted too long (`progressDeadline`).
//!
//! ```text
//! narun-exec --probe ENCODED [--policy FILE]
//! ```
//!
//! `ENCODED`: base64url (no padding) of a JSON [`Probe`]. With `--policy`,
//! an `exec` check's command runs under the app's Landlock policy.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One health check and how often to try it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub check: Check,
    /// Between the end of a failed attempt and the next one.
    pub interval_ms: u64,
    /// One attempt's limit.
    pub timeout_ms: u64,
}

/// What "healthy" means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// The command exits 0 (argv; no shell).
    Exec(Vec<String>),
    /// A TCP connection to this port on 127.0.0.1 is accepted.
    Tcp(u16),
    /// `GET path` on 127.0.0.1:port answers 2xx or 3xx.
    Http { port: u16, path: String },
}

/// Longest `--probe` value.
const MAX_ENCODED: usize = 64 << 10;

/// Encode a probe for `narun-exec --probe`.
pub fn encode(probe: &Probe) -> String {
    use base64::Engine;
    let json = serde_json::to_vec(probe).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The inverse of [`encode`].
pub fn decode(s: &str) -> Result<Probe, String> {
    use base64::Engine;
    if s.len() > MAX_ENCODED {
        return Err(format!("--probe is longer than {MAX_ENCODED} bytes"));
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("--probe: not base64url: {e}"))?;
    let p: Probe =
        serde_json::from_slice(&json).map_err(|e| format!("--probe: not a probe: {e}"))?;
    if let Check::Exec(argv) = &p.check {
        if argv.is_empty() {
            return Err("--probe: an exec check needs a command".into());
        }
    }
    Ok(p)
}

/// Try the check until it passes (then 0). Each new kind of failure is
/// said once on stderr (the app's journal).
pub fn run(probe: &Probe, policy: Option<&Path>) -> i32 {
    let interval = Duration::from_millis(probe.interval_ms.max(10));
    let timeout = Duration::from_millis(probe.timeout_ms.max(10));
    let mut last = String::new();
    for attempt in 1u64.. {
        match attempt_once(&probe.check, timeout, policy) {
            Ok(()) => {
                eprintln!("narun-exec: health check passed (attempt {attempt})");
                return 0;
            }
            Err(why) if why != last => {
                eprintln!("narun-exec: health check failed: {why}; trying again");
                last = why;
            }
            Err(_) => {}
        }
        std::thread::sleep(interval);
    }
    unreachable!("the attempts never run out")
}

/// One attempt.
pub fn attempt_once(check: &Check, timeout: Duration, policy: Option<&Path>) -> Result<(), String> {
    match check {
        Check::Tcp(port) => connect(*port, timeout).map(drop),
        Check::Http { port, path } => http_get(*port, path, timeout),
        Check::Exec(argv) => exec(argv, timeout, policy),
    }
}

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("127.0.0.1:{port}: {e}"))
}

/// `GET path` with `Connection: close`; only the status line is read.
fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut s = connect(port, timeout)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let io = |e: std::io::Error| format!("http://127.0.0.1:{port}{path}: {e}");
    s.set_write_timeout(Some(left())).map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: narun-health-check\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    // The status line, at most 256 bytes of it.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 256 {
        s.set_read_timeout(Some(left())).map_err(io)?;
        let n = s.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let code = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "http://127.0.0.1:{port}{path}: not an HTTP response: {:?}",
                line.chars().take(40).collect::<String>()
            )
        })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("http://127.0.0.1:{port}{path}: HTTP {code}"))
    }
}

/// Run the command (under `policy` if any, through this same wrapper) in
/// its own process group; past `timeout` the whole group is killed.
fn exec(argv: &[String], timeout: Duration, policy: Option<&Path>) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut cmd = match policy {
        Some(p) => {
            let me = std::env::current_exe().map_err(|e| format!("narun-exec: {e}"))?;
            let mut c = Command::new(me);
            c.arg("--policy").arg(p).arg("--").args(argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{}: {status}", argv[0])),
            Ok(None) if Instant::now() >= deadline => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "{}: no answer within {} ms (killed)",
                    argv[0],
                    timeout.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("{}: {e}", argv[0])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn encoding_round_trips_and_bad_input_is_an_error() {
        for check in [
            Check::Exec(vec!["/bin/true".into(), "$X %i".into()]),
            Check::Tcp(8080),
            Check::Http {
                port: 80,
                path: "/healthz?x=1".into(),
            },
        ] {
            let p = Probe {
                check,
                interval_ms: 500,
                timeout_ms: 1000,
            };
            assert_eq!(decode(&encode(&p)).unwrap(), p);
        }
        assert!(decode("%%%").unwrap_err().contains("base64url"));
        assert!(decode("e30").unwrap_err().contains("not a probe"));
        let empty = encode(&Probe {
            check: Check::Exec(vec![]),
            interval_ms: 1,
            timeout_ms: 1,
        });
        assert!(decode(&empty).unwrap_err().contains("needs a command"));
        assert!(decode(&"A".repeat(MAX_ENCODED + 1))
            .unwrap_err()
            .contains("longer"));
    }

    #[test]
    fn tcp_passes_when_something_listens() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        attempt_once(&Check::Tcp(port), T, None).unwrap();
        drop(l);
        let e = attempt_once(&Check::Tcp(port), T, None).unwrap_err();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    /// A one-request HTTP server answering `reply`.
    fn serve_once(reply: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request head: it may come in several segments.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(reply).unwrap();
            req
        });
        (port, t)
    }

    #[test]
    fn http_passes_on_2xx_and_3xx_only() {
        for (reply, ok) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], true),
            (b"HTTP/1.0 302 Found\r\nLocation: /\r\n\r\n", true),
            (b"HTTP/1.1 404 Not Found\r\n\r\n", false),
            (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", false),
            (b"SSH-2.0-OpenSSH\r\n", false),
        ] {
            let (port, t) = serve_once(reply);
            let r = attempt_once(
                &Check::Http {
                    port,
                    path: "/healthz".into(),
                },
                T,
                None,
            );
            assert_eq!(r.is_ok(), ok, "{reply:?}: {r:?}");
            let req = String::from_utf8(t.join().unwrap()).unwrap();
            assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        }
    }

    #[test]
    fn a_silent_http_server_is_a_failure_at_the_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = attempt_once(
            &Check::Http {
                port,
                path: "/".into(),
            },
            Duration::from_millis(200),
            None,
        )
        .unwrap_err();
        assert!(e.contains("http://127.0.0.1:"), "{e}");
        drop(l);
    }

    #[test]
    fn exec_passes_on_exit_0_and_a_hung_command_is_killed() {
        let sh = |s: &str| Check::Exec(vec!["/bin/sh".into(), "-c".into(), s.into()]);
        attempt_once(&sh("exit 0"), T, None).unwrap();
        let e = attempt_once(&sh("exit 3"), T, None).unwrap_err();
        assert!(e.contains("exit status: 3"), "{e}");
        // The group is killed: a grandchild holding on does not hang it.
        let e =
            attempt_once(&sh("sleep 60 & sleep 60"), Duration::from_millis(200), None).unwrap_err();
        assert!(e.contains("killed"), "{e}");
        let e = attempt_once(&Check::Exec(vec!["/nonexistent/check".into()]), T, None).unwrap_err();
        assert!(e.contains("/nonexistent/check"), "{e}");
    }

    #[test]
    fn run_returns_once_the_check_passes() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("up");
        let f = flag.to_str().unwrap().to_owned();
        // Passes on the third attempt: each attempt counts itself.
        let script = format!("echo x >> {f}; [ $(wc -l < {f}) -ge 3 ]");
        let p = Probe {
            check: Check::Exec(vec!["/bin/sh".into(), "-c".into(), script]),
            interval_ms: 10,
            timeout_ms: 5000,
        };
        assert_eq!(run(&p, None), 0);
        assert_eq!(std::fs::read_to_string(&flag).unwrap().lines().count(), 3);
    }
}
