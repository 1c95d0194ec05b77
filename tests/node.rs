//! `narun node` end to end: a real nats-server, a real (private) systemd,
//! the real `narun` binary as the agent, and the hello example as the app.
//! Assertions are made from outside: NATS messages, systemd properties,
//! the app answering requests.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::systemd::{PrivateSystemd, VarLibDir};
use common::*;
use futures_util::StreamExt;
use narun::store::{self, InstanceState, StatusUpdate};

/// The agent process with its notify socket.
struct Agent {
    proc: Proc,
    notify: UnixDatagram,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(nats: &NatsServer, sd: &PrivateSystemd, node: &str, data: &Path) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let log = dir.path().join("agent.log");
        let journalctl = format!("nsenter -t {} -m -p journalctl", sd.pid);
        let child = Command::new(narun_binary())
            .args(["node", "--nats-url", &nats.url(), "--node-id", node])
            .arg("--data-dir")
            .arg(data)
            .args(["--systemd-bus", &sd.bus_address()])
            .args(["--journalctl", &journalctl, "--status-interval", "300ms"])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "narun=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start narun node");
        let agent = Agent {
            proc: Proc {
                child,
                stderr_path: log,
            },
            notify,
            _dir: dir,
        };
        agent.wait_notify("READY=1");
        agent
    }

    fn wait_notify(&self, needle: &str) {
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

/// Upload `binary` as `<app>-<tag>-linux-<arch>` the way `narun deploy` does.
async fn upload(client: &async_nats::Client, app: &str, tag: &str, binary: &Path) {
    let js = store::jetstream(client).unwrap();
    let os = store::ensure_object_store(&js, store::APP_BINARIES)
        .await
        .unwrap();
    let arch = store::binary::host_platform().arch;
    let name = store::binary::object_name(app, tag, "linux", arch);
    let mut file = tokio::fs::File::open(binary).await.unwrap();
    os.put(name.as_str(), &mut file).await.unwrap();
}

async fn put_spec(client: &async_nats::Client, app: &str, yaml: &str) {
    let js = store::jetstream(client).unwrap();
    let kv = store::ensure_kv(&js, store::APP_CONFIGS).await.unwrap();
    kv.put(app, Bytes::from(yaml.to_owned())).await.unwrap();
}

async fn delete_spec(client: &async_nats::Client, app: &str) {
    let js = store::jetstream(client).unwrap();
    let kv = store::ensure_kv(&js, store::APP_CONFIGS).await.unwrap();
    kv.delete(app).await.unwrap();
}

/// Status messages of one app on one node.
struct Statuses(async_nats::Subscriber);

impl Statuses {
    async fn new(client: &async_nats::Client, app: &str, node: &str) -> Self {
        let sub = client
            .subscribe(store::status_subject(app, node))
            .await
            .unwrap();
        client.flush().await.unwrap();
        Statuses(sub)
    }

    /// Wait for a status matching `pred`; returns it.
    async fn until(&mut self, what: &str, pred: impl Fn(&StatusUpdate) -> bool) -> StatusUpdate {
        let wait = async {
            while let Some(msg) = self.0.next().await {
                let s: StatusUpdate = serde_json::from_slice(&msg.payload).unwrap();
                if pred(&s) {
                    return s;
                }
            }
            panic!("status subscription ended");
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("no status: {what}"))
    }
}

fn running(id: &'static str) -> impl Fn(&StatusUpdate) -> bool {
    move |s| s.instance_id == id && s.status == InstanceState::Running
}

/// One request to the hello app over NATS (as the gateway sends it).
async fn hello_request(client: &async_nats::Client, service: &str) -> serde_json::Value {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let payload = narun::wire::encode_request(
        &http::Method::POST,
        "localhost",
        "/hello/",
        &headers,
        br#"{"name":"node test"}"#,
    )
    .unwrap();
    let reply = client
        .request(service.to_owned(), payload.into())
        .await
        .expect("the app answers over NATS");
    let resp = narun::wire::decode_response(&reply.payload).unwrap();
    assert_eq!(resp.status(), 200);
    serde_json::from_slice(resp.body()).unwrap()
}

fn hello_spec(app: &str, tag: &str, nodes: &str) -> String {
    format!(
        "name: {app}\ntag: {tag}\nargs: [\"--service\", \"{app}\"]\nmemoryMaxMB: 256\nnodes:\n{nodes}\n"
    )
}

fn cleanup_state(app: &str) {
    let _ = std::fs::remove_dir_all(format!("/var/lib/private/narun-app/{app}"));
    let _ = std::fs::remove_file(format!("/var/lib/narun-app/{app}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_scale_crash_adopt_delete() {
    let app = "nt-hello";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-node-test");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut agent = Agent::start(&nats, &sd, "n1", &data.0);

    // Deploy: 1 replica on n1.
    let mut st = Statuses::new(&client, app, "n1").await;
    let mut logs = client
        .subscribe(store::logs_subject(app, "n1"))
        .await
        .unwrap();
    upload(&client, app, "v1", &example_binary("hello")).await;
    put_spec(
        &client,
        app,
        &hello_spec(app, "v1", "  - name: n1\n    replicas: 1"),
    )
    .await;
    let s = st.until("nt-hello-0 running", running("nt-hello-0")).await;
    assert!(s.pid > 0);
    assert!(!s.spec_hash.is_empty());
    let unit = "narun-app@nt-hello.service";
    assert_eq!(sd.show(unit, "ActiveState"), "active");
    assert_eq!(sd.show(unit, "User"), "narun-nt-hello");
    assert_eq!(sd.show(unit, "MemoryMax"), (256u64 << 20).to_string());
    let status = sd.systemctl(&["status", "--no-pager", "narun-app@nt-hello"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("active (running)"));

    wait_service(&nats.url(), app).await;
    let reply = hello_request(&client, app).await;
    assert_eq!(reply["message"], "Hello, node test! (processed by POST)");

    // The app's log lines reach NATS in the Go format.
    let line = tokio::time::timeout(Duration::from_secs(30), logs.next())
        .await
        .expect("a log line on logs.nt-hello.n1")
        .unwrap();
    let entry: store::LogEntry = serde_json::from_slice(&line.payload).unwrap();
    assert_eq!(
        (entry.app_name.as_str(), entry.node_id.as_str()),
        (app, "n1")
    );
    assert_eq!(entry.instance_id, "nt-hello-0");

    // Scale 1 -> 3: the first replica keeps running (same pid).
    let pid0 = sd.show(unit, "MainPID");
    put_spec(
        &client,
        app,
        &hello_spec(app, "v1", "  - name: n1\n    replicas: 3"),
    )
    .await;
    st.until("replica 2 running", running("nt-hello-2")).await;
    assert_eq!(
        sd.show("narun-app@nt-hello:1.service", "ActiveState"),
        "active"
    );
    assert_eq!(sd.show(unit, "MainPID"), pid0, "scaling restarts nothing");

    // A change for another node restarts nothing here (R4).
    put_spec(
        &client,
        app,
        &hello_spec(
            app,
            "v1",
            "  - name: n1\n    replicas: 3\n  - name: n2\n    replicas: 5",
        ),
    )
    .await;
    // Scale 3 -> 1 (the reconcile after the n2 change has run before this one).
    put_spec(
        &client,
        app,
        &hello_spec(app, "v1", "  - name: n1\n    replicas: 1"),
    )
    .await;
    st.until("replica 2 stopped", |s| {
        s.instance_id == "nt-hello-2" && s.status == InstanceState::Stopped
    })
    .await;
    st.until("replica 1 stopped", |s| {
        s.instance_id == "nt-hello-1" && s.status == InstanceState::Stopped
    })
    .await;
    assert_eq!(
        sd.show(unit, "MainPID"),
        pid0,
        "R4: no restart of replica 0"
    );
    assert_eq!(
        sd.show("narun-app@nt-hello:2.service", "LoadState"),
        "not-found"
    );

    // kill -9 of the app: systemd restarts it, status says so.
    let out = sd.nsenter("kill", &["-9", &pid0]);
    assert!(out.status.success());
    let s = st
        .until("running again after the crash", |s| {
            s.instance_id == "nt-hello-0"
                && s.status == InstanceState::Running
                && s.restarts.unwrap_or(0) >= 1
        })
        .await;
    assert_ne!(s.pid.to_string(), pid0);
    assert_eq!(sd.show(unit, "NRestarts"), "1");
    wait_service(&nats.url(), app).await;
    hello_request(&client, app).await;

    // The agent dies (kill -9) and comes back: apps untouched and adopted.
    let pid_before = sd.show(unit, "MainPID");
    agent.proc.signal(nix::sys::signal::Signal::SIGKILL);
    agent.proc.wait_exit(Duration::from_secs(10));
    let agent = Agent::start(&nats, &sd, "n1", &data.0);
    assert_eq!(
        sd.show(unit, "MainPID"),
        pid_before,
        "adopted, not restarted"
    );

    // A new binary under the same tag restarts (R5): re-put the same spec.
    let other = data.0.join("hello-copy");
    let mut bytes = std::fs::read(example_binary("hello")).unwrap();
    bytes.extend_from_slice(b"\0narun-test-padding");
    std::fs::write(&other, bytes).unwrap();
    upload(&client, app, "v1", &other).await;
    put_spec(
        &client,
        app,
        &hello_spec(app, "v1", "  - name: n1\n    replicas: 1"),
    )
    .await;
    let s = st
        .until("restarted with the new binary", |s| {
            s.instance_id == "nt-hello-0"
                && s.status == InstanceState::Running
                && s.pid.to_string() != pid_before
        })
        .await;
    assert!(s.pid > 0);

    // Delete: units gone.
    delete_spec(&client, app).await;
    st.until("stopped after delete", |s| {
        s.instance_id == "nt-hello-0" && s.status == InstanceState::Stopped
    })
    .await;
    assert_eq!(sd.show(unit, "LoadState"), "not-found");
    drop(agent);
    cleanup_state(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_binary_fails_with_a_reason_and_nats_outage_is_survived() {
    let app = "nt-missing";
    let nats_app = "nt-survive";
    cleanup_state(app);
    cleanup_state(nats_app);
    let mut nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-node-test");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut agent = Agent::start(&nats, &sd, "n1", &data.0);

    // No object for this arch: failed, with the reason, nothing started.
    let mut st = Statuses::new(&client, app, "n1").await;
    put_spec(
        &client,
        app,
        &hello_spec(app, "v9", "  - name: n1\n    replicas: 1"),
    )
    .await;
    let s = st
        .until("failed", |s| s.status == InstanceState::Failed)
        .await;
    assert!(s.error.contains("not found"), "{}", s.error);
    assert!(s.error.contains(&format!("{app}-v9-linux-")), "{}", s.error);
    assert_eq!(
        sd.show("narun-app@nt-missing.service", "LoadState"),
        "not-found"
    );

    // An app keeps running while NATS is down; the agent reconnects.
    let mut st2 = Statuses::new(&client, nats_app, "n1").await;
    upload(&client, nats_app, "v1", &example_binary("hello")).await;
    put_spec(
        &client,
        nats_app,
        &hello_spec(nats_app, "v1", "  - name: n1\n    replicas: 1"),
    )
    .await;
    st2.until("running", running("nt-survive-0")).await;
    let unit = "narun-app@nt-survive.service";
    let pid = sd.show(unit, "MainPID");
    nats.stop();
    assert!(agent.proc.is_running());
    nats.restart();
    // Heartbeats come back: the node state is written again.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = store::jetstream(&client).unwrap();
    let kv = store::ensure_kv(&js, store::NODE_STATES).await.unwrap();
    let mut w = kv.watch("n1").await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(40), w.next())
        .await
        .expect("a heartbeat after NATS came back")
        .unwrap()
        .unwrap();
    let state: store::NodeState = serde_json::from_slice(&e.value).unwrap();
    assert_eq!(state.status, "running");
    assert!(state.managed_instances.contains(&"nt-survive-0".to_owned()));
    assert_eq!(sd.show(unit, "MainPID"), pid, "the app never noticed");
    assert!(agent.proc.is_running());
    cleanup_state(app);
    cleanup_state(nats_app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_with_nats_unreachable_restores_apps_from_the_cache() {
    let app = "nt-reboot";
    cleanup_state(app);
    let mut nats = NatsServer::start();
    let data = VarLibDir::new("narun-node-test");
    let client = async_nats::connect(nats.url()).await.unwrap();
    {
        let sd = PrivateSystemd::boot();
        let agent = Agent::start(&nats, &sd, "n1", &data.0);
        let mut st = Statuses::new(&client, app, "n1").await;
        upload(&client, app, "v1", &example_binary("hello")).await;
        put_spec(
            &client,
            app,
            &hello_spec(app, "v1", "  - name: n1\n    replicas: 2"),
        )
        .await;
        st.until("replica 1 running", running("nt-reboot-1")).await;
        st.until("replica 0 running", running("nt-reboot-0")).await;
        drop(agent);
        // "Power loss": systemd and every app die with it.
    }
    nats.stop();
    let sd = PrivateSystemd::boot();
    assert_eq!(
        sd.show("narun-app@nt-reboot.service", "LoadState"),
        "not-found"
    );
    let _agent = Agent::start(&nats, &sd, "n1", &data.0);
    // READY came from the cache: both replicas are back without NATS.
    for unit in [
        "narun-app@nt-reboot.service",
        "narun-app@nt-reboot:1.service",
    ] {
        assert_eq!(sd.show(unit, "ActiveState"), "active", "{unit}");
    }
    cleanup_state(app);
}
