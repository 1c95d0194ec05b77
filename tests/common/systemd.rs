//! A real systemd for tests: booted as PID 1 of a private PID + mount
//! namespace (see ../shared/reference/testing.md), reached over D-Bus from
//! outside. Needs root; fails loudly without it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A privately booted systemd, killed (with everything it started) on drop.
pub struct PrivateSystemd {
    unshare: Child,
    /// PID of systemd as seen from the test's namespace.
    pub pid: i32,
    /// Its own cgroup subtree (`NARUN_CGROUP` of the boot script).
    cgroup: String,
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test boots a private systemd and needs root (CI runs as root)"
    );
    assert!(
        Path::new("/lib/systemd/systemd").exists(),
        "this test needs systemd installed (/lib/systemd/systemd)"
    );
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

impl PrivateSystemd {
    /// Boot and wait until `systemctl is-system-running` says running.
    pub fn boot() -> Self {
        require_root();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/private-systemd.sh");
        static BOOTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let cgroup = format!(
            "narun-test-{}-{}",
            std::process::id(),
            BOOTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let unshare = Command::new("setsid")
            .args([
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--mount-proc",
            ])
            .arg(&script)
            .env("NARUN_CGROUP", &cgroup)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unshare (util-linux)");
        let upid = unshare.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            let found = children(upid).into_iter().find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .map(|comm| comm.trim() == "systemd")
                    .unwrap_or(false)
            });
            if let Some(p) = found {
                break p;
            }
            assert!(Instant::now() < deadline, "private systemd did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let sd = PrivateSystemd {
            unshare,
            pid,
            cgroup,
        };
        // systemctl needs systemd's private socket, which appears early in
        // the boot; then `--wait` blocks until the boot is finished.
        let private = format!("/proc/{pid}/root/run/systemd/private");
        while !Path::new(&private).exists() {
            assert!(
                Instant::now() < deadline,
                "private systemd never opened {private}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = sd.systemctl(&["is-system-running", "--wait"]);
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            state == "running" || state == "degraded",
            "private systemd state {state:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bus = format!("/proc/{pid}/root/run/dbus/system_bus_socket");
        assert!(Path::new(&bus).exists(), "no D-Bus socket at {bus}");
        if state == "degraded" {
            let failed = sd.systemctl(&["--failed", "--no-legend"]);
            eprintln!(
                "private systemd degraded: {}",
                String::from_utf8_lossy(&failed.stdout)
            );
        }
        sd
    }

    /// `DBUS_SYSTEM_BUS_ADDRESS` value reaching this systemd's bus.
    pub fn bus_address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.pid
        )
    }

    /// Run a command inside the namespace (systemctl refuses to run outside).
    pub fn nsenter(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", program])
            .args(args)
            .output()
            .expect("nsenter")
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.nsenter("systemctl", args)
    }

    /// `systemctl show -p PROP --value UNIT`.
    pub fn show(&self, unit: &str, prop: &str) -> String {
        let out = self.systemctl(&["show", "-p", prop, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn journal(&self, args: &[&str]) -> String {
        let out = self.nsenter("journalctl", args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivateSystemd {
    fn drop(&mut self) {
        // SIGKILL of PID 1 ends every process of the namespace.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        // unshare reaps the killed systemd and exits; kill it only if stuck.
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.unshare.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        remove_cgroup(&self.cgroup);
    }
}

/// Remove a private systemd's cgroup subtree (`/<name>` in every hierarchy),
/// once the killed processes have left it.
fn remove_cgroup(name: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(name)];
    if let Ok(hierarchies) = std::fs::read_dir(root) {
        dirs.extend(hierarchies.flatten().map(|h| h.path().join(name)));
    }
    dirs.retain(|d| d.is_dir());
    let deadline = Instant::now() + Duration::from_secs(10);
    for d in dirs {
        loop {
            remove_depth_first(&d);
            if !d.exists() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn remove_depth_first(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_depth_first(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A fresh directory under /var/lib (not /tmp: units with PrivateTmp or
/// DynamicUser get their own /tmp), traversable by app users.
pub struct VarLibDir(pub PathBuf);

impl VarLibDir {
    pub fn new(prefix: &str) -> Self {
        let base = Path::new("/var/lib");
        for i in 0..1000u32 {
            let p = base.join(format!("{prefix}-{}-{i}", std::process::id()));
            if std::fs::create_dir(&p).is_ok() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                return VarLibDir(p);
            }
        }
        panic!("cannot create a directory under /var/lib");
    }
}

impl Drop for VarLibDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Wait until a replica runs under its main unit name alone (a rollout
/// ends with the new version there and the surge unit gone).
pub async fn settled(sd: &PrivateSystemd, unit: &str) {
    let next = unit.replace(".service", ".next.service");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (main, surge) = (sd.show(unit, "ActiveState"), sd.show(&next, "ActiveState"));
        if main == "active" && matches!(surge.as_str(), "inactive" | "") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{unit} is {main} and {next} is {surge} after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Remove what a previous run of an app left in the host's /var/lib (its
/// `StateDirectory=` survives the private systemd).
pub fn cleanup_state(app: &str) {
    let _ = std::fs::remove_dir_all(format!("/var/lib/private/narun-app/{app}"));
    let _ = std::fs::remove_file(format!("/var/lib/narun-app/{app}"));
}
