//! The systemd module against a real systemd (booted privately): transient
//! units with the rendered properties, limits enforced, stop, adoption data.

mod common;

use std::time::Duration;

use common::systemd::{cleanup_state, PrivateSystemd, VarLibDir};
use narun::node::units::{self, Identity, Network, Replica, Restart};
use narun::systemd::{Systemd, UnitManager};

fn replica(app: &str, index: u32, binary: &str, args: &[&str]) -> Replica {
    Replica {
        app: app.into(),
        index,
        node_id: "node-t".into(),
        node_os: "linux".into(),
        node_arch: "amd64".into(),
        hash: "h1".into(),
        binary: binary.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![("GREETING".into(), "hi".into())],
        nats_url: "nats://127.0.0.1:1".into(),
        nats_ca: None,
        nats_creds: None,
        identity: Identity::Dynamic,
        memory_low_mb: None,
        memory_max_mb: Some(64),
        cpu_cores: Some(0.5),
        tasks_max: Some(16),
        restart: Restart::default(),
        stop_timeout: Duration::from_secs(5),
        network: Network::None,
        systemd_version: 252,
        environment_file: None,
        files: vec![],
        landlock: None,
        exec_wrapper: None,
        next: false,
        notify: false,
        probe: None,
        bridge: None,
        secret_files: None,
        manager: narun::node::units::Manager::System,
    }
}

async fn connect(sd: &PrivateSystemd) -> Systemd {
    Systemd::connect_address(&sd.bus_address())
        .await
        .expect("connect to the private systemd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_units_run_sandboxed_with_limits_and_stop() {
    let sd = PrivateSystemd::boot();
    let mgr = connect(&sd).await;
    let version = mgr.version().await.unwrap();
    assert!(units::systemd_major(&version) >= 240, "{version}");

    // A binary outside /tmp (DynamicUser gets a private /tmp).
    let dir = VarLibDir::new("narun-sdtest");
    let bin = dir.0.join("sleep");
    std::fs::copy("/bin/sleep", &bin).unwrap();

    let app = "sdt-a";
    cleanup_state(app);
    let unit = units::render(&replica(app, 0, bin.to_str().unwrap(), &["1000"]));
    mgr.start_transient(&unit).await.expect("start");

    let name = "narun-app@sdt-a.service";
    assert_eq!(sd.show(name, "ActiveState"), "active");
    let details = mgr.details(name).await.unwrap().expect("loaded");
    assert!(details.main_pid > 0);
    assert_eq!(details.active_state, "active");
    // The properties systemd reports are the rendered ones.
    assert_eq!(sd.show(name, "DynamicUser"), "yes");
    assert_eq!(sd.show(name, "User"), "narun-sdt-a");
    assert_eq!(sd.show(name, "Slice"), "narun.slice");
    assert_eq!(sd.show(name, "PrivateNetwork"), "yes");
    assert_eq!(sd.show(name, "ProtectSystem"), "strict");
    assert_eq!(sd.show(name, "NoNewPrivileges"), "yes");
    assert_eq!(sd.show(name, "MemoryMax"), (64u64 << 20).to_string());
    assert_eq!(sd.show(name, "TasksMax"), "16");
    assert_eq!(sd.show(name, "CPUQuotaPerSecUSec"), "500ms");
    assert!(sd
        .show(name, "Environment")
        .contains("NARUN_INSTANCE_ID=sdt-a-0"));
    // The process really runs as a dynamic (non-root) user.
    let out = sd.nsenter(
        "stat",
        &["-c", "%u", &format!("/proc/{}", details.main_pid)],
    );
    let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(uid >= 61184, "dynamic uid, got {uid}");
    // Limits are enforced by the kernel (cgroup files).
    let mem = cgroup_file(
        &sd,
        "memory",
        name,
        &["memory.max", "memory.limit_in_bytes"],
    );
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    let pids = cgroup_file(&sd, "pids", name, &["pids.max"]);
    assert_eq!(pids.trim(), "16");
    // 0.5 cores: 50 ms per 100 ms period (v1) or "50000 100000" (v2).
    let cpu = cgroup_file(&sd, "cpu", name, &["cpu.max", "cpu.cfs_quota_us"]);
    assert!(
        cpu.trim() == "50000" || cpu.trim() == "50000 100000",
        "{cpu}"
    );

    let listed = mgr.list(units::UNIT_GLOB).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        units::hash_from_description(&listed[0].description),
        Some("h1")
    );

    mgr.stop(name).await.expect("stop");
    assert!(
        mgr.details(name).await.unwrap().is_none(),
        "transient unit gone"
    );
    // Stopping or resetting what is not there is not an error.
    mgr.stop(name).await.unwrap();
    mgr.reset_failed(name).await.unwrap();
    cleanup_state(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binary_fails_the_start_job_with_a_clear_error() {
    let sd = PrivateSystemd::boot();
    let mgr = connect(&sd).await;
    let app = "sdt-b";
    cleanup_state(app);
    let unit = units::render(&replica(app, 0, "/var/lib/does-not-exist/app", &[]));
    let err = mgr.start_transient(&unit).await.unwrap_err();
    // systemd accepted the unit; its start job failed (203/EXEC).
    assert!(
        matches!(&err, narun::systemd::SystemdError::Job { unit, result }
            if unit == "narun-app@sdt-b.service" && result == "failed"),
        "{err:?}"
    );
    let _ = mgr.stop("narun-app@sdt-b.service").await;
    mgr.reset_failed("narun-app@sdt-b.service").await.unwrap();
    cleanup_state(app);
    drop(sd);
}

/// A cgroup file of `unit`, where its systemd put it (`ControlGroup`: the
/// path under the hierarchy's root, in the private systemd's own subtree).
fn cgroup_file(sd: &PrivateSystemd, controller: &str, unit: &str, files: &[&str]) -> String {
    let path = sd.show(unit, "ControlGroup");
    assert!(path.contains("/narun.slice/"), "ControlGroup={path}");
    for base in [
        format!("/sys/fs/cgroup{path}"),
        format!("/sys/fs/cgroup/{controller}{path}"),
    ] {
        for f in files {
            if let Ok(v) = std::fs::read_to_string(format!("{base}/{f}")) {
                return v;
            }
        }
    }
    panic!("no {files:?} for {unit} under /sys/fs/cgroup");
}
