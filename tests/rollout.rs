//! Deploys a user can trust, the way a user runs them: `narun deploy
//! --wait` and `narun apps rollback` against real node agents (each with a
//! private systemd) while a steady load goes through the gateway. Every
//! request of the load must succeed, whatever the deploy does: a version
//! change, a same-tag rebuild, a bad build (rolled back), a rollback, the
//! agent killed in the middle of a rollout.

mod common;

use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::load::{Load, Rec};
use common::systemd::{cleanup_state, settled, PrivateSystemd, VarLibDir};
use common::*;

/// What the load ([`common::load::Load`]) saw.
#[derive(Default, Debug, Clone)]
struct Tally {
    ok: u64,
    failed: u64,
    /// The first few failures, for the assertion message.
    samples: Vec<String>,
}

/// The time line a failure message places requests on: the deploys print
/// their start and end on it too.
static T0: LazyLock<Instant> = LazyLock::new(Instant::now);

fn at(i: Instant) -> String {
    format!("+{:.3}s", i.saturating_duration_since(*T0).as_secs_f64())
}

fn tally(recs: &[Rec]) -> Tally {
    let mut t = Tally::default();
    for r in recs {
        if r.ok() {
            t.ok += 1;
        } else {
            t.failed += 1;
            if t.samples.len() < 10 {
                t.samples.push(format!(
                    "{} (sent {}, done {})",
                    r.label(),
                    at(r.sent),
                    at(r.done)
                ));
            }
        }
    }
    t
}

/// Stop the load: what it saw and how long it ran.
async fn finish(load: Load) -> (Tally, Duration) {
    let recs = load.finish().await;
    let took = match (recs.first(), recs.last()) {
        (Some(a), Some(b)) => b.done - a.sent,
        _ => Duration::ZERO,
    };
    (tally(&recs), took)
}

/// `narun deploy -f SPEC BINARY --wait=60s`: exit code, stdout, stderr and
/// how long it took.
fn deploy(nats: &NatsServer, spec: &Path, binary: &Path) -> (i32, String, String, Duration) {
    let t = Instant::now();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{} (unix {:.3}): narun deploy {}",
        at(t),
        unix.as_secs_f64(),
        spec.display()
    );
    let (code, out, err) = narun_cli(
        nats,
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            binary.to_str().unwrap(),
            "--wait=60s",
        ],
    );
    eprintln!("{}: deploy exited {code}", at(Instant::now()));
    (code, out, err, t.elapsed())
}

fn deploy_ok(nats: &NatsServer, spec: &Path, binary: &Path) -> Duration {
    let (code, out, err, took) = deploy(nats, spec, binary);
    assert_eq!(code, 0, "narun deploy failed:\n{out}\n{err}");
    took
}

fn main_pid(sd: &PrivateSystemd, unit: &str) -> String {
    let pid = sd.show(unit, "MainPID");
    assert_ne!(pid, "0", "{unit} has no process");
    pid
}

/// The SHA-256 of the executable a unit's main process runs.
fn running_exe_digest(sd: &PrivateSystemd, unit: &str) -> String {
    let pid = main_pid(sd, unit);
    let out = sd.nsenter("sha256sum", &[&format!("/proc/{pid}/exe")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn file_digest(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn gateway(nats: &NatsServer, app: &str) -> GatewayProc {
    GatewayProc::start(
        &nats.url(),
        &format!("  - path: \"/hello/\"\n    methods: [\"POST\"]\n    service: \"{app}\""),
        "",
    )
}

fn assert_no_loss(tally: &Tally, what: &str) {
    assert_eq!(
        tally.failed,
        0,
        "{what}: {} of {} requests failed, e.g. {:?}",
        tally.failed,
        tally.failed + tally.ok,
        tally.samples
    );
}

/// One replica, then 3 replicas on 2 nodes: version changes, a same-tag
/// rebuild, and `narun apps rollback`, all under load, none losing a
/// request; each `--wait` returns once the new build serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacements_under_load_lose_no_request() {
    let app = "ro-hello";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd1 = PrivateSystemd::boot();
    let sd2 = PrivateSystemd::boot();
    let d1 = VarLibDir::new("narun-rollout");
    let d2 = VarLibDir::new("narun-rollout");
    let a1 = Agent::start(&nats, &sd1, "node-1", &d1.0);
    let a2 = Agent::start(&nats, &sd2, "node-2", &d2.0);
    let work = tempfile::tempdir().unwrap();
    let hello = example_binary("hello");
    let unit = format!("narun-app@{app}.service");
    let spec = |tag: &str, version: &str, nodes: &str| {
        write_spec(
            work.path(),
            &format!("{tag}-{version}.yaml"),
            &format!(
                "name: {app}\ntag: {tag}\nargs: [\"--service\", \"{app}\"]\n\
                 env:\n  - {{name: VERSION, value: \"{version}\"}}\nnodes:\n{nodes}"
            ),
        )
    };
    let one = "  - name: node-1\n    replicas: 1\n";

    deploy_ok(&nats, &spec("v1", "1", one), &hello);
    // --wait returned: the replica serves right away.
    let gw = gateway(&nats, app);
    let r = http(
        gw.http,
        "POST",
        "/hello/",
        &[("content-type", "application/json")],
        r#"{"name":"first"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pid_v1 = main_pid(&sd1, &unit);

    let load = Load::start(gw.http, 4, Duration::from_millis(10));
    load.served(100).await;

    // A new version.
    let took = deploy_ok(&nats, &spec("v1", "2", one), &hello);
    eprintln!("version change: deploy --wait took {took:?}");
    settled(&sd1, &unit).await;
    let pid_v2 = main_pid(&sd1, &unit);
    assert_ne!(pid_v1, pid_v2);
    assert!(sd1.show(&unit, "Environment").contains("VERSION=2"));
    load.served(100).await;
    assert_no_loss(&tally(&load.records()), "version change");

    // The same tag, rebuilt: through `narun deploy`, it reaches the node.
    let rebuilt = work.path().join("hello");
    let mut bytes = std::fs::read(&hello).unwrap();
    bytes.extend_from_slice(b"\nrebuilt\n");
    std::fs::write(&rebuilt, bytes).unwrap();
    std::fs::set_permissions(
        &rebuilt,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    deploy_ok(&nats, &spec("v1", "2", one), &rebuilt);
    settled(&sd1, &unit).await;
    assert_ne!(main_pid(&sd1, &unit), pid_v2);
    assert_eq!(running_exe_digest(&sd1, &unit), file_digest(&rebuilt));
    load.served(100).await;
    assert_no_loss(&tally(&load.records()), "same-tag rebuild");

    // `narun apps rollback`: the revision before (VERSION=1), same
    // replacement.
    let pid = main_pid(&sd1, &unit);
    let (code, out, err) = narun_cli(&nats, &["apps", "rollback", app, "--wait=60s"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("rolling ro-hello back to revision"), "{err}");
    settled(&sd1, &unit).await;
    assert_ne!(main_pid(&sd1, &unit), pid);
    assert!(sd1.show(&unit, "Environment").contains("VERSION=1"));
    load.served(100).await;
    assert_no_loss(&tally(&load.records()), "apps rollback");

    // 3 replicas on 2 nodes, then a version change of all three.
    let three = "  - name: node-1\n    replicas: 1\n  - name: node-2\n    replicas: 2\n";
    deploy_ok(&nats, &spec("v1", "3", three), &hello);
    let units2 = [unit.clone(), format!("narun-app@{app}:1.service")];
    settled(&sd1, &unit).await;
    for u in &units2 {
        settled(&sd2, u).await;
    }
    let before: Vec<String> = units2.iter().map(|u| main_pid(&sd2, u)).collect();
    load.served(100).await;
    let took = deploy_ok(&nats, &spec("v1", "4", three), &hello);
    eprintln!("3 replicas on 2 nodes: deploy --wait took {took:?}");
    settled(&sd1, &unit).await;
    for (u, old) in units2.iter().zip(&before) {
        settled(&sd2, u).await;
        assert_ne!(&main_pid(&sd2, u), old, "{u} was not replaced");
        assert!(sd2.show(u, "Environment").contains("VERSION=4"));
    }
    load.served(100).await;
    let (tally, took) = finish(load).await;
    eprintln!(
        "load: {} requests in {took:?} ({:.0}/s), {} failed",
        tally.ok + tally.failed,
        (tally.ok + tally.failed) as f64 / took.as_secs_f64(),
        tally.failed
    );
    assert_no_loss(&tally, "3 replicas on 2 nodes");
    drop((a1, a2));
}

/// Builds that exit at once, never get ready, or crash after a second:
/// each is rolled back, the previous version serves throughout, `--wait`
/// exits 1 naming the reason well before its own timeout, and `narun apps
/// info` shows the rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_builds_roll_back_and_wait_says_why() {
    let app = "ro-bad";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-rollout");
    let agent = Agent::start(&nats, &sd, "node-1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let hello = example_binary("hello");
    let unit = format!("narun-app@{app}.service");
    let nodes = "nodes:\n  - name: node-1\n    replicas: 1\n";
    let good = write_spec(
        work.path(),
        "good.yaml",
        &format!("name: {app}\ntag: good\nargs: [\"--service\", \"{app}\"]\n{nodes}"),
    );
    deploy_ok(&nats, &good, &hello);
    let gw = gateway(&nats, app);
    let pid = main_pid(&sd, &unit);
    let load = Load::start(gw.http, 4, Duration::from_millis(10));
    load.served(100).await;

    let cases: [(&str, &str, &str, &str); 3] = [
        ("exits", "/bin/false", "", "exited with status 1"),
        (
            "never-ready",
            "/bin/sleep",
            "args: [\"1000\"]\nhealth: {notify: true}\nprogressDeadline: 3s\n",
            "not ready within 3s",
        ),
        (
            "crashes",
            "/bin/sh",
            "args: [\"-c\", \"sleep 1; exit 3\"]\n",
            "exited with status 3",
        ),
    ];
    for (tag, binary, extra, reason) in cases {
        let spec = write_spec(
            work.path(),
            &format!("{tag}.yaml"),
            &format!("name: {app}\ntag: {tag}\n{extra}{nodes}"),
        );
        let (code, out, err, took) = deploy(&nats, &spec, Path::new(binary));
        assert_eq!(code, 1, "{tag}: --wait must fail:\n{out}\n{err}");
        assert!(
            took < Duration::from_secs(50),
            "{tag}: --wait took {took:?}, not its own failure"
        );
        let all = format!("{out}\n{err}");
        assert!(
            all.contains("rolled back") && all.contains(reason),
            "{tag}: the reason is missing:\n{all}"
        );
        eprintln!("{tag}: deploy --wait exit 1 after {took:?}");
        // The surge unit is gone, the old process never stopped.
        settled(&sd, &unit).await;
        assert_eq!(
            main_pid(&sd, &unit),
            pid,
            "{tag}: the old version was stopped"
        );
        let info = narun_cli_ok(&nats, &["apps", "info", app]);
        assert!(
            info.contains("rolled back") && info.contains(reason),
            "{tag}: apps info:\n{info}"
        );
        load.served(50).await;
        assert_no_loss(&tally(&load.records()), tag);
    }
    let (tally, took) = finish(load).await;
    eprintln!(
        "load: {} requests in {took:?}, {} failed",
        tally.ok + tally.failed,
        tally.failed
    );
    assert_no_loss(&tally, "bad builds");
    drop(agent);
}

/// The agent killed with SIGKILL while both generations run: started
/// again, it finishes the rollout (one generation, the new one) and no
/// request is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_rollout_converges() {
    let app = "ro-kill";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-rollout");
    let mut agent = Agent::start(&nats, &sd, "node-1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let hello = example_binary("hello");
    let unit = format!("narun-app@{app}.service");
    let next = format!("narun-app@{app}.next.service");
    let spec = |version: &str, extra: &str| {
        write_spec(
            work.path(),
            &format!("{version}.yaml"),
            &format!(
                "name: {app}\ntag: v1\nargs: [\"--service\", \"{app}\"]\n{extra}\
                 env:\n  - {{name: VERSION, value: \"{version}\"}}\n\
                 nodes:\n  - name: node-1\n    replicas: 1\n"
            ),
        )
    };
    deploy_ok(&nats, &spec("1", ""), &hello);
    let gw = gateway(&nats, app);
    let load = Load::start(gw.http, 4, Duration::from_millis(10));
    load.served(100).await;

    // The new version must stay up 6 s before it counts as ready: the
    // agent dies while both run.
    let v2 = spec("2", "health: {notify: false, stablePeriod: 6s}\n");
    narun_cli_ok(
        &nats,
        &[
            "deploy",
            "-f",
            v2.to_str().unwrap(),
            hello.to_str().unwrap(),
        ],
    );
    eventually(Duration::from_secs(60), "the surge unit active", || async {
        sd.show(&next, "ActiveState") == "active"
    })
    .await;
    assert_eq!(sd.show(&unit, "ActiveState"), "active");
    agent.proc.signal(nix::sys::signal::Signal::SIGKILL);
    agent.proc.wait_exit(Duration::from_secs(10));
    load.served(50).await;
    let agent = Agent::start(&nats, &sd, "node-1", &data.0);

    // It finishes: the new version under the main name alone.
    let (code, out, err, _) = deploy(&nats, &v2, &hello);
    assert_eq!(code, 0, "{out}\n{err}\nagent:\n{}", agent.proc.stderr());
    settled(&sd, &unit).await;
    assert!(sd.show(&unit, "Environment").contains("VERSION=2"));
    load.served(100).await;
    let (tally, _) = finish(load).await;
    assert_no_loss(&tally, "agent killed mid-rollout");
    drop(agent);
}

/// `health: {tcp|exec}`: the unit stays `activating` (its `ExecStartPost=`
/// check runs inside it) and `deploy --wait` waits until the check passes;
/// a check that never passes is rolled back at progressDeadline with the
/// reason; an exec check's arguments reach it exactly as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_gate_readiness_and_roll_back() {
    let app = "ro-health";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-health");
    let _agent = Agent::start(&nats, &sd, "node-1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let unit = format!("narun-app@{app}.service");
    let nodes = "nodes:\n  - name: node-1\n    replicas: 1\n";
    let port = free_port();

    // Ready only once something listens on the port: the test opens it.
    let v1 = write_spec(
        work.path(),
        "v1.yaml",
        &format!(
            "name: {app}\ntag: v1\nargs: [\"1000\"]\nhealth: {{tcp: {port}, interval: 100ms}}\n{nodes}"
        ),
    );
    let mut wait = std::process::Command::new(narun_binary())
        .args(["deploy", "-f"])
        .arg(&v1)
        .args(["/bin/sleep", "--wait=60s", "--nats-url", &nats.url()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Progress lines, as they come.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = wait.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("deploy --wait says it waits for the check");
        if line.contains("ro-health-0 starting: waiting for the health check to pass") {
            break;
        }
    }
    eventually(
        Duration::from_secs(60),
        "the check running in the unit",
        || {
            let sub = sd.show(&unit, "SubState");
            async move { sub == "start-post" }
        },
    )
    .await;
    assert_eq!(sd.show(&unit, "ActiveState"), "activating");
    assert!(
        wait.try_wait().unwrap().is_none(),
        "deploy --wait returned before the check passed"
    );
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = wait.wait_with_output().unwrap();
    let progress = reader.join().unwrap();
    assert!(
        out.status.success(),
        "{}\n{progress}",
        String::from_utf8_lossy(&out.stdout),
    );
    assert!(progress.contains("ro-health-0 running"), "{progress}");
    assert_eq!(sd.show(&unit, "ActiveState"), "active");
    let pid = main_pid(&sd, &unit);

    // A check that never passes: rolled back, v1 never stopped.
    let v2 = write_spec(
        work.path(),
        "v2.yaml",
        &format!(
            "name: {app}\ntag: v2\nargs: [\"1001\"]\nhealth: {{tcp: {}, interval: 100ms}}\nprogressDeadline: 3s\n{nodes}",
            free_port()
        ),
    );
    let (code, out, err, took) = deploy(&nats, &v2, Path::new("/bin/sleep"));
    let all = format!("{out}\n{err}");
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("rolled back") && all.contains("health check did not pass within 3s"),
        "{all}"
    );
    eprintln!("failing check: deploy --wait exit 1 after {took:?}");
    settled(&sd, &unit).await;
    assert_eq!(main_pid(&sd, &unit), pid, "v1 was stopped");

    // An exec check, its arguments literal (`$`, `%`, quotes), passes.
    let v3 = write_spec(
        work.path(),
        "v3.yaml",
        &format!(
            "name: {app}\ntag: v3\nargs: [\"1002\"]\nhealth:\n{}\n{nodes}",
            r#"  exec: ["/bin/sh", "-c", "[ \"$1\" = '$HOME %i' ]", "sh", "$HOME %i"]"#
        ),
    );
    deploy_ok(&nats, &v3, Path::new("/bin/sleep"));
    settled(&sd, &unit).await;
    assert_ne!(main_pid(&sd, &unit), pid, "v3 replaced v1");
    drop(listener);
    cleanup_state(app);
}
