//! The `narun node` agent as a process, against a private systemd.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::systemd::PrivateSystemd;
use super::{narun_binary, NatsServer, Proc};

/// The agent process with its notify socket.
pub struct Agent {
    pub proc: Proc,
    pub notify: UnixDatagram,
    /// Admin UI and metrics listeners.
    pub admin: std::net::SocketAddr,
    pub metrics: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Start `narun node` for `node`, data in `data` (under /var/lib), and
    /// wait for READY=1.
    pub fn start(nats: &NatsServer, sd: &PrivateSystemd, node: &str, data: &Path) -> Agent {
        Self::start_with(nats, sd, node, data, &[])
    }

    pub fn start_with(
        nats: &NatsServer,
        sd: &PrivateSystemd,
        node: &str,
        data: &Path,
        extra: &[&str],
    ) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let log = dir.path().join("agent.log");
        let journalctl = format!("nsenter -t {} -m -p journalctl", sd.pid);
        // narun-exec where the apps' users can execute it (as the packages
        // put it in /usr/libexec/narun), unless the test chooses one.
        let mut wrapper_arg = Vec::new();
        if !extra.contains(&"--exec-wrapper") {
            let wrapper = data.join("narun-exec");
            std::fs::copy(narun_binary().with_file_name("narun-exec"), &wrapper).unwrap();
            wrapper_arg = vec!["--exec-wrapper".to_owned(), wrapper.display().to_string()];
        }
        // Like the packaged unit (CapabilityBoundingSet= empty), the agent
        // must never depend on root's file capabilities: it runs without
        // chown, DAC override and fowner (the rest stay: the tests reach
        // the private systemd's journal through nsenter).
        let child = Command::new("setpriv")
            .args([
                "--bounding-set",
                "-chown,-dac_override,-dac_read_search,-fowner,-fsetid",
                "--inh-caps",
                "-all",
                "--",
            ])
            .arg(narun_binary())
            .arg("node")
            // The server's URL, unless the test gives its own list.
            .args(if extra.contains(&"--nats-url") {
                vec![]
            } else {
                vec!["--nats-url".to_owned(), nats.url()]
            })
            .args(["--node-id", node])
            .arg("--data-dir")
            .arg(data)
            .args(["--systemd-bus", &sd.bus_address()])
            .args(["--journalctl", &journalctl, "--status-interval", "300ms"])
            // systemd's /run is private: runtime files go where it can see them.
            .arg("--runtime-dir")
            .arg(data.join("run"))
            // Port 0: the agent binds any free port and logs it (no port
            // is guessed before the agent binds it).
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .args(wrapper_arg)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "narun=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start narun node");
        let unbound = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let mut agent = Agent {
            proc: Proc {
                child,
                stderr_path: log,
            },
            notify,
            admin: unbound,
            metrics: unbound,
            _dir: dir,
        };
        agent.wait_notify("READY=1");
        // Both are bound and logged before READY=1.
        let log = agent.proc.stderr();
        agent.admin = listening(&log, "admin UI");
        agent.metrics = listening(&log, "metrics");
        agent
    }

    /// The last lines of the agent's log.
    pub fn log_tail(&self, lines: usize) -> String {
        super::last_lines(&self.proc.stderr(), lines)
    }

    pub fn wait_notify(&self, needle: &str) {
        let mut buf = [0u8; 4096];
        self.notify
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        loop {
            let n = self.notify.recv(&mut buf).unwrap_or_else(|e| {
                panic!("no {needle} from the agent ({e}):\n{}", self.proc.stderr())
            });
            if String::from_utf8_lossy(&buf[..n]).contains(needle) {
                return;
            }
        }
    }
}

/// A failing test shows what the agent said (its log goes with its temp
/// dir otherwise).
impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- agent log (last 150 lines) ---\n{}\n--- end of agent log ---",
                self.log_tail(150)
            );
        }
    }
}

/// The address `what` listens on, from the agent's log line
/// "`what` listening on http://ADDR/".
fn listening(log: &str, what: &str) -> std::net::SocketAddr {
    let marker = format!("{what} listening on http://");
    log.lines()
        .find_map(|l| l.split(&marker).nth(1))
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no \"{marker}\" in the agent's log:\n{log}"))
}
