//! `narun node` end to end: a real nats-server, a real (private) systemd,
//! the real `narun` binary as the agent, and the hello example as the app.
//! Assertions are made from outside: NATS messages, systemd properties,
//! the app answering requests.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::agent::Agent;
use common::systemd::{cleanup_state, settled, PrivateSystemd, VarLibDir};
use common::*;
use futures_util::StreamExt;
use narun::store::{self, InstanceState, StatusUpdate};

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
        let mut seen = Vec::new();
        let wait = async {
            while let Some(msg) = self.0.next().await {
                let s: StatusUpdate = serde_json::from_slice(&msg.payload).unwrap();
                if pred(&s) {
                    return s;
                }
                seen.push(format!("{} {:?} {}", s.instance_id, s.status, s.error));
            }
            panic!("status subscription ended");
        };
        match tokio::time::timeout(Duration::from_secs(60), wait).await {
            Ok(s) => s,
            Err(_) => panic!("no status: {what}; statuses seen:\n{}", seen.join("\n")),
        }
    }
}

fn running(id: &'static str) -> impl Fn(&StatusUpdate) -> bool {
    move |s| s.instance_id == id && s.status == InstanceState::Running
}

/// Running again, with another main process than `old_pid`.
fn running_again<'a>(id: &'a str, old_pid: &'a str) -> impl Fn(&StatusUpdate) -> bool + 'a {
    move |s| {
        // A new process: not the old one, and not none (a status read
        // while systemd restarts the unit may say running without one).
        s.instance_id == id
            && s.status == InstanceState::Running
            && s.pid != 0
            && s.pid.to_string() != old_pid
    }
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
        .unwrap_or_else(|_| {
            panic!(
                "no log line on logs.nt-hello.n1; journal:\n{}\nagent:\n{}",
                sd.journal(&["--no-pager", "NARUN_NODE=n1"]),
                agent.proc.stderr()
            )
        })
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
    // Replica 1 too (its status may come after replica 2's).
    eventually(Duration::from_secs(30), "replica 1 active", || {
        let state = sd.show("narun-app@nt-hello:1.service", "ActiveState");
        async move { state == "active" }
    })
    .await;
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
        .until(
            "restarted with the new binary",
            running_again("nt-hello-0", &pid_before),
        )
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

    // A corrupt object (its chunks replaced in the store): the digest check
    // fails the download; failed, nothing started, nothing installed.
    let corrupt = "nt-corrupt";
    let mut stc = Statuses::new(&client, corrupt, "n1").await;
    upload(&client, corrupt, "v1", &example_binary("hello")).await;
    let js = store::jetstream(&client).unwrap();
    let objects = store::ensure_object_store(&js, store::APP_BINARIES)
        .await
        .unwrap();
    let arch = store::binary::host_platform().arch;
    let info = objects
        .info(store::binary::object_name(corrupt, "v1", "linux", arch))
        .await
        .unwrap();
    let chunk_subject = format!("$O.{}.C.{}", store::APP_BINARIES, info.nuid);
    let stream = js
        .get_stream(format!("OBJ_{}", store::APP_BINARIES))
        .await
        .unwrap();
    stream.purge().filter(&chunk_subject).await.unwrap();
    let per_chunk = info.size.div_ceil(info.chunks.max(1));
    let mut left = info.size;
    for _ in 0..info.chunks {
        let n = per_chunk.min(left);
        left -= n;
        js.publish(chunk_subject.clone(), vec![0xAB; n].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    put_spec(
        &client,
        corrupt,
        &hello_spec(corrupt, "v1", "  - name: n1\n    replicas: 1"),
    )
    .await;
    let s = stc
        .until("failed: corrupt binary", |s| {
            s.status == InstanceState::Failed
        })
        .await;
    assert!(s.error.contains("digest"), "{}", s.error);
    assert_eq!(
        sd.show("narun-app@nt-corrupt.service", "LoadState"),
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

    // A malformed spec keeps the running version (R7) and says why.
    let mut st2 = Statuses::new(&client, nats_app, "n1").await;
    put_spec(&client, nats_app, "name: nt-survive\nnodes: [oops\n").await;
    let s = st2
        .until("failed: invalid spec", |s| {
            s.status == InstanceState::Failed
        })
        .await;
    assert!(s.error.contains("invalid spec"), "{}", s.error);
    assert_eq!(sd.show(unit, "MainPID"), pid, "still the previous version");

    // A second agent with the same node id is refused.
    let out = Command::new(narun_binary())
        .args(["node", "--nats-url", &nats.url(), "--node-id", "n1"])
        .arg("--data-dir")
        .arg(data.0.join("second"))
        .args(["--systemd-bus", &sd.bus_address(), "--journalctl", ""])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("another agent with node id \"n1\""),
        "{stderr}"
    );
    assert!(agent.proc.is_running());

    // SIGTERM: the agent leaves, its apps keep running.
    let mut w = kv.watch("n1").await.unwrap();
    agent.proc.signal(nix::sys::signal::Signal::SIGTERM);
    agent.wait_notify("STOPPING=1");
    let status = agent.proc.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    assert_eq!(sd.show(unit, "ActiveState"), "active");
    assert_eq!(sd.show(unit, "MainPID"), pid);
    // The node state says shutting_down, then is deleted.
    let mut saw_shutdown = false;
    while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        match e.operation {
            async_nats::jetstream::kv::Operation::Put => {
                let st: store::NodeState = serde_json::from_slice(&e.value).unwrap();
                saw_shutdown |= st.status == "shutting_down";
            }
            _ => break,
        }
    }
    assert!(saw_shutdown);
    assert!(kv.get("n1").await.unwrap().is_none(), "node state deleted");
    cleanup_state(app);
    cleanup_state(nats_app);
}

/// `narun node` and `narun-node` (the packaged unit's binary) alike.
#[test]
fn an_unusable_data_dir_is_refused_before_anything_starts() {
    let node = |args: &[&str]| {
        [
            Command::new(narun_binary())
                .arg("node")
                .args(args)
                .output()
                .unwrap(),
            Command::new(env!("CARGO_BIN_EXE_narun-node"))
                .args(args)
                .output()
                .unwrap(),
        ]
    };
    for out in node(&[
        "--node-id",
        "n1",
        "--data-dir",
        "/tmp/narun-data",
        "--systemd-bus",
        "unix:path=/nonexistent",
    ]) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{stderr}");
        assert!(stderr.contains("/tmp/narun-data"), "{stderr}");
        assert!(stderr.contains("private /tmp"), "{stderr}");
    }
    for out in node(&["--node-id", "bad id!", "--data-dir", "/var/lib/x"]) {
        assert_eq!(out.status.code(), Some(78));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--node-id"));
    }
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
        let mut up = std::collections::BTreeSet::new();
        while up.len() < 2 {
            let s = st
                .until("both replicas running", |s| {
                    s.status == InstanceState::Running
                })
                .await;
            up.insert(s.instance_id);
        }
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
    // READY came from the cache: both replicas are back without NATS,
    // waiting for it (the consumer library signals READY=1 once its
    // endpoint is subscribed), not killed for the wait.
    let units = [
        "narun-app@nt-reboot.service",
        "narun-app@nt-reboot:1.service",
    ];
    for unit in units {
        assert_eq!(sd.show(unit, "ActiveState"), "activating", "{unit}");
        assert_ne!(sd.show(unit, "MainPID"), "0", "{unit}");
        assert_eq!(sd.show(unit, "TimeoutStartUSec"), "infinity", "{unit}");
    }
    // NATS is back: they serve.
    nats.restart();
    for unit in units {
        eventually(
            Duration::from_secs(60),
            &format!("{unit} active"),
            || async { sd.show(unit, "ActiveState") == "active" },
        )
        .await;
        assert_eq!(sd.show(unit, "NRestarts"), "0", "{unit}");
    }
    cleanup_state(app);
}

const PROBE: &str = r#"#!/bin/sh
# Records what the app sees, then idles.
{
  echo "secret=$API_TOKEN"
  echo "plain=$GREETING"
  echo "file=$(cat cfg/app.conf)"
  if (echo x >> cfg/app.conf) 2>/dev/null; then echo "file-writable"; else echo "file-readonly"; fi
  if cat /etc/shadow >/dev/null 2>&1; then echo "shadow-readable"; else echo "shadow-denied"; fi
  if [ -n "$NARUN_SECRETS_DIR" ]; then
    echo "secretfile=$(cat "$NARUN_SECRETS_DIR/token")"
    echo "secretfile-owner=$(stat -c %u:%g "$NARUN_SECRETS_DIR/token") me=0:$(id -g) mode=$(stat -c %a "$NARUN_SECRETS_DIR/token")"
    if (echo x >> "$NARUN_SECRETS_DIR/token") 2>/dev/null; then echo "secretfile-writable"; else echo "secretfile-readonly"; fi
  fi
} > seen.tmp
mv seen.tmp seen
# Apps that keep running when a secret changes re-read their files.
while [ -n "$NARUN_SECRETS_DIR" ]; do
  cat "$NARUN_SECRETS_DIR/token" > live.tmp 2>&1; mv live.tmp live
  sleep 0.2
done
exec sleep 100000
"#;

fn seen(app: &str) -> String {
    std::fs::read_to_string(format!("/var/lib/private/narun-app/{app}/seen")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_app_only_and_files_are_read_only() {
    let app = "nt-secret";
    let missing = "nt-nosecret";
    cleanup_state(app);
    cleanup_state(missing);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-node-test");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = store::jetstream(&client).unwrap();

    // The master key: a root-only file, never on a command line.
    let key = store::MasterKey::generate();
    let key_path = data.0.join("master.key");
    std::fs::write(&key_path, key.to_base64().as_bytes()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plaintext = "s3cr3t-Value-$HOME-\"q\"";
    let secrets = store::ensure_kv(&js, store::SECRETS).await.unwrap();
    let put_secret = |value: &str| {
        let sealed = store::StoredSecret::seal(
            &key,
            "API_TOKEN",
            value.as_bytes(),
            "",
            time::OffsetDateTime::now_utc(),
            None,
        )
        .unwrap();
        serde_json::to_vec(&sealed).unwrap()
    };
    secrets
        .put("API_TOKEN", put_secret(plaintext).into())
        .await
        .unwrap();
    let files = store::ensure_object_store(&js, store::FILES).await.unwrap();
    files
        .put(
            "app-conf",
            &mut std::io::Cursor::new(b"listen=8080".to_vec()),
        )
        .await
        .unwrap();

    let mut all_logs = client.subscribe("logs.>").await.unwrap();
    let agent = Agent::start_with(
        &nats,
        &sd,
        "n1",
        &data.0,
        &["--master-key-file", key_path.to_str().unwrap()],
    );
    let probe = data.0.join("probe.sh");
    std::fs::write(&probe, PROBE).unwrap();
    upload(&client, app, "v1", &probe).await;
    let spec = format!(
        "name: {app}\ntag: v1\nenv:\n  - name: API_TOKEN\n    valueFromSecret: API_TOKEN\n  - name: GREETING\n    value: hi\nsecrets:\n  - name: API_TOKEN\n    path: token\nmounts:\n  - path: cfg/app.conf\n    source:\n      objectStore: app-conf\nnodes:\n  - name: n1\n    replicas: 1\n"
    );
    let mut st = Statuses::new(&client, app, "n1").await;
    put_spec(&client, app, &spec).await;
    st.until("running", running("nt-secret-0")).await;
    let unit = "narun-app@nt-secret.service";
    eventually(
        Duration::from_secs(20),
        "the probe wrote what it sees",
        || async { seen(app).contains("shadow-") },
    )
    .await;
    let s = seen(app);
    assert!(s.contains(&format!("secret={plaintext}")), "{s}");
    assert!(s.contains("plain=hi"), "{s}");
    assert!(s.contains("file=listen=8080"), "{s}");
    assert!(s.contains("file-readonly"), "{s}");
    // The secret as a file: the app's own, read-only, at /run/secrets.
    assert!(s.contains(&format!("secretfile={plaintext}")), "{s}");
    let owner = s
        .lines()
        .find_map(|l| l.strip_prefix("secretfile-owner="))
        .unwrap_or_else(|| panic!("{s}"));
    let (file, rest) = owner.split_once(" me=").unwrap();
    assert!(
        rest.starts_with(&format!("{file} ")),
        "root's, in the app's group: {owner}"
    );
    assert!(owner.ends_with("mode=440"), "{owner}");
    assert!(s.contains("secretfile-readonly"), "{s}");

    // The leak scan: nowhere but the app's own environment.
    let show = sd.systemctl(&["show", unit]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(!show.contains("s3cr3t"), "systemctl show leaks the secret");
    assert!(show.contains("EnvironmentFiles="), "{show}");
    assert!(
        !sd.journal(&["--no-pager", "-o", "cat"]).contains("s3cr3t"),
        "journal"
    );
    let agent_log = agent.proc.stderr();
    assert!(!agent_log.contains("s3cr3t"), "agent log");
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), all_logs.next()).await
    {
        assert!(
            !String::from_utf8_lossy(&m.payload).contains("s3cr3t"),
            "logs.> leaks"
        );
    }
    // Every process that holds the secret in its environment is one of the
    // app's own: its cgroup is the unit's. (The probe keeps spawning `cat`
    // and `sleep`, so a list of pids taken before the scan would race it.)
    let mut holders = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if String::from_utf8_lossy(&env).contains("s3cr3t") {
            let Ok(cgroup) = std::fs::read_to_string(entry.path().join("cgroup")) else {
                continue; // gone between the two reads
            };
            assert!(
                cgroup.trim_end().ends_with(&format!("/{unit}")),
                "pid {name} (cgroup {}) has the secret in its environment",
                cgroup.trim_end()
            );
            holders += 1;
        }
    }
    assert!(holders > 0, "the scan found not even the app");
    // The secret file is root-only, in a root-only directory; the data dir
    // (spec cache, binaries) holds no plaintext.
    let env_file = data.0.join("run/secrets").join(format!("{unit}.env"));
    let meta = std::fs::metadata(&env_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let files_dir = data.0.join("run/files").join(app);
    assert_eq!(
        std::fs::metadata(&files_dir).unwrap().permissions().mode() & 0o777,
        0o750,
        "the app's secret files dir"
    );
    assert_eq!(
        std::fs::metadata(data.0.join("run"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let grep = Command::new("grep")
        .args(["-r", "-l", "s3cr3t"])
        .arg(data.0.join("specs"))
        .arg(data.0.join("binaries"))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // `narun secret set` of a new value restarts the app with it.
    let pid = sd.show(unit, "MainPID");
    secrets
        .put("API_TOKEN", put_secret("rotated-value").into())
        .await
        .unwrap();
    st.until(
        "restarted after the secret changed",
        running_again("nt-secret-0", &pid),
    )
    .await;
    eventually(Duration::from_secs(20), "the new value is seen", || async {
        let s = seen(app);
        s.contains("secret=rotated-value") && s.contains("secretfile=rotated-value")
    })
    .await;

    // restartOnSecretChange: false: the same process sees the new file.
    let keep = "nt-secret-keep";
    cleanup_state(keep);
    upload(&client, keep, "v1", &probe).await;
    let mut st3 = Statuses::new(&client, keep, "n1").await;
    put_spec(
        &client,
        keep,
        &format!("name: {keep}\ntag: v1\nrestartOnSecretChange: false\nsecrets:\n  - name: API_TOKEN\n    path: token\nnodes:\n  - name: n1\n    replicas: 1\n"),
    )
    .await;
    st3.until("running", running("nt-secret-keep-0")).await;
    let live = || {
        std::fs::read_to_string(format!("/var/lib/private/narun-app/{keep}/live"))
            .unwrap_or_default()
    };
    eventually(Duration::from_secs(20), "the file is read", || async {
        live().trim() == "rotated-value"
    })
    .await;
    let keep_unit = "narun-app@nt-secret-keep.service";
    let keep_pid = sd.show(keep_unit, "MainPID");
    secrets
        .put("API_TOKEN", put_secret("third-value").into())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the file changes in place",
        || async { live().trim() == "third-value" },
    )
    .await;
    assert_eq!(sd.show(keep_unit, "MainPID"), keep_pid, "not restarted");
    // `secrets:` removed from the spec: restarted without them, and the
    // decrypted files are gone from the node while the app runs on.
    let keep_files = data.0.join("run/files").join(keep);
    assert!(keep_files.is_dir());
    put_spec(
        &client,
        keep,
        &format!("name: {keep}\ntag: v1\nnodes:\n  - name: n1\n    replicas: 1\n"),
    )
    .await;
    st3.until(
        "restarted without secret files",
        running_again("nt-secret-keep-0", &keep_pid),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the secret files are removed",
        || async { !keep_files.exists() },
    )
    .await;
    settled(&sd, keep_unit).await;
    // The restarting app did restart (again) with the third value.
    eventually(
        Duration::from_secs(20),
        "the first app restarted",
        || async { seen(app).contains("secretfile=third-value") },
    )
    .await;
    delete_spec(&client, keep).await;
    st3.until("stopped", |s| {
        s.instance_id == "nt-secret-keep-0" && s.status == InstanceState::Stopped
    })
    .await;
    cleanup_state(keep);

    // `narun files add` of new content restarts the apps that mount it.
    let pid = sd.show(unit, "MainPID");
    files
        .put(
            "app-conf",
            &mut std::io::Cursor::new(b"listen=9090".to_vec()),
        )
        .await
        .unwrap();
    st.until(
        "restarted after the file changed",
        running_again("nt-secret-0", &pid),
    )
    .await;
    eventually(Duration::from_secs(20), "the new file is seen", || async {
        let s = seen(app);
        s.contains("file=listen=9090") && s.contains("file-readonly")
    })
    .await;

    // A secret that does not exist: failed with the reason, nothing started.
    let mut st2 = Statuses::new(&client, missing, "n1").await;
    upload(&client, missing, "v1", &probe).await;
    put_spec(
        &client,
        missing,
        &format!("name: {missing}\ntag: v1\nenv:\n  - name: X\n    valueFromSecret: NOPE\nnodes:\n  - name: n1\n    replicas: 1\n"),
    )
    .await;
    let s = st2
        .until("failed", |s| s.status == InstanceState::Failed)
        .await;
    assert!(
        s.error.contains("Failed to resolve secret 'NOPE'"),
        "{}",
        s.error
    );
    assert!(s.error.contains("not found"), "{}", s.error);
    assert_eq!(
        sd.show("narun-app@nt-nosecret.service", "LoadState"),
        "not-found"
    );

    // Delete: the secret file goes with the unit.
    delete_spec(&client, app).await;
    st.until("stopped", |s| {
        s.instance_id == "nt-secret-0" && s.status == InstanceState::Stopped
    })
    .await;
    assert!(!env_file.exists(), "secret file removed with the unit");
    eventually(
        Duration::from_secs(20),
        "the secret files of a deleted app are removed",
        || async { !files_dir.exists() },
    )
    .await;
    drop(agent);

    // A node with the wrong master key, then with none: failed, with the
    // reason, and nothing started.
    let wrong = "nt-wrongkey";
    cleanup_state(wrong);
    let other_key = data.0.join("other.key");
    std::fs::write(
        &other_key,
        store::MasterKey::generate().to_base64().as_bytes(),
    )
    .unwrap();
    std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    upload(&client, wrong, "v1", &probe).await;
    let mut st4 = Statuses::new(&client, wrong, "n1").await;
    let agent = Agent::start_with(
        &nats,
        &sd,
        "n1",
        &data.0,
        &["--master-key-file", other_key.to_str().unwrap()],
    );
    put_spec(
        &client,
        wrong,
        &format!("name: {wrong}\ntag: v1\nsecrets: [{{name: API_TOKEN}}]\nnodes:\n  - name: n1\n    replicas: 1\n"),
    )
    .await;
    let s = st4
        .until("failed: wrong key", |s| s.status == InstanceState::Failed)
        .await;
    assert!(
        s.error.contains("Failed to resolve secret 'API_TOKEN'")
            && s.error.contains("wrong master key"),
        "{}",
        s.error
    );
    assert_eq!(
        sd.show("narun-app@nt-wrongkey.service", "LoadState"),
        "not-found"
    );
    drop(agent);
    let _agent = Agent::start_with(&nats, &sd, "n1", &data.0, &[]);
    let s = st4
        .until("failed: no key", |s| {
            s.status == InstanceState::Failed && s.error.contains("no master key")
        })
        .await;
    assert!(s.error.contains("--master-key-file"), "{}", s.error);
    assert_eq!(
        sd.show("narun-app@nt-wrongkey.service", "LoadState"),
        "not-found"
    );
    cleanup_state(wrong);
    cleanup_state(app);
    cleanup_state(missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landlock_mode_allows_exactly_the_policy() {
    let app = "nt-landlock";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-node-test");
    let client = async_nats::connect(nats.url()).await.unwrap();
    // The wrapper where app users can execute it.
    let wrapper = data.0.join("narun-exec");
    std::fs::copy(narun_binary().with_file_name("narun-exec"), &wrapper).unwrap();
    let _agent = Agent::start_with(
        &nats,
        &sd,
        "n1",
        &data.0,
        &["--exec-wrapper", wrapper.to_str().unwrap()],
    );
    let probe = data.0.join("probe.sh");
    std::fs::write(
        &probe,
        format!(
            r#"#!/bin/sh
check() {{ if $2 >/dev/null 2>&1; then echo "$1-allowed"; else echo "$1-denied"; fi; }}
{{
  check hosts "cat /etc/hosts"
  check passwd "cat /etc/passwd"
  check datadir "ls {data}/binaries"
  check usrshare "ls /usr/share"
  echo done
}} > seen.tmp
mv seen.tmp seen
exec sleep 100000
"#,
            data = data.0.display()
        ),
    )
    .unwrap();
    upload(&client, app, "v1", &probe).await;
    let mut st = Statuses::new(&client, app, "n1").await;
    put_spec(
        &client,
        app,
        &format!(
            "name: {app}\ntag: v1\nmode: landlock\nlandlock:\n  shared: true\n  dns: true\n  paths:\n    - path: /usr/bin\n      modes: rx\nnodes:\n  - name: n1\n    replicas: 1\n"
        ),
    )
    .await;
    st.until("running", running("nt-landlock-0")).await;
    eventually(
        Duration::from_secs(20),
        "the probe wrote what it sees",
        || async { seen(app).contains("done") },
    )
    .await;
    let s = seen(app);
    // Without the policy all four are readable by any user.
    assert!(s.contains("hosts-allowed"), "dns group: {s}");
    assert!(s.contains("passwd-denied"), "not in the policy: {s}");
    assert!(s.contains("datadir-denied"), "the node's data dir: {s}");
    assert!(s.contains("usrshare-denied"), "not in the policy: {s}");
    let unit = "narun-app@nt-landlock.service";
    let exec = sd.show(unit, "ExecStart");
    assert!(
        exec.contains("narun-exec") && exec.contains("--policy"),
        "{exec}"
    );

    // nonet.localPorts: loopback only (systemd's BPF address filter), and
    // TCP connects only to the listed ports (Landlock ABI 4; this kernel
    // has 7). A listener of the test's own on every address, not listed.
    let other = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let host_ip = {
        let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        u.connect("192.0.2.1:9").unwrap();
        u.local_addr().unwrap().ip()
    };
    assert!(
        !host_ip.is_loopback() && !host_ip.is_unspecified(),
        "this test needs a non-loopback IPv4 address on the machine, found {host_ip}"
    );
    let nats_port = nats.url().rsplit(':').next().unwrap().to_owned();
    let nonet = "nt-nonet";
    cleanup_state(nonet);
    let probe = data.0.join("nonet.sh");
    std::fs::write(
        &probe,
        format!(
            r#"#!/bin/bash
try() {{ if timeout 5 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then echo "$1-allowed"; else echo "$1-denied"; fi; }}
{{
  try nats 127.0.0.1 {nats_port}
  try other 127.0.0.1 {other_port}
  try hostip {host_ip} {other_port}
  echo done
}} > seen.tmp
mv seen.tmp seen
exec sleep 100000
"#
        ),
    )
    .unwrap();
    upload(&client, nonet, "v1", &probe).await;
    let mut st = Statuses::new(&client, nonet, "n1").await;
    put_spec(
        &client,
        nonet,
        &format!("name: {nonet}\ntag: v1\nnonet:\n  localPorts:\n    - port: {nats_port}\nnodes:\n  - name: n1\n    replicas: 1\n"),
    )
    .await;
    st.until("running", running("nt-nonet-0")).await;
    eventually(Duration::from_secs(30), "the nonet probe ran", || async {
        seen(nonet).contains("done")
    })
    .await;
    let s = seen(nonet);
    assert!(s.contains("nats-allowed"), "a listed local port: {s}");
    assert!(s.contains("other-denied"), "an unlisted local port: {s}");
    assert!(s.contains("hostip-denied"), "a non-loopback address: {s}");
    // Without the spec's restriction, both reach the listener (checked
    // from the same private systemd, same user kind).
    let out = sd.nsenter(
        "systemd-run",
        &[
            "--wait",
            "--pipe",
            "-q",
            "-p",
            "DynamicUser=yes",
            "/bin/bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{host_ip}/{other_port} && echo reachable"),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reachable"),
        "control: {out:?}"
    );
    drop(other);

    // A kernel without Landlock (seccomp makes landlock_create_ruleset
    // fail with ENOSYS, as on kernels before 5.13): mandatory mode refuses
    // to run (exit 122); `landlock.bestEffort` runs unconfined.
    let run_wrapper = |policy: &str| {
        let path = data.0.join("policy-test.json");
        std::fs::write(&path, policy).unwrap();
        let out = sd.nsenter(
            "systemd-run",
            &[
                "--wait",
                "--pipe",
                "-q",
                "-p",
                "SystemCallFilter=~landlock_create_ruleset",
                "-p",
                "SystemCallErrorNumber=ENOSYS",
                wrapper.to_str().unwrap(),
                "--policy",
                path.to_str().unwrap(),
                "--",
                "/bin/echo",
                "app-ran",
            ],
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run_wrapper(r#"{"groups": {"shared": true}}"#);
    assert_eq!(code, Some(122), "{stdout}{stderr}");
    assert!(!stdout.contains("app-ran"), "{stdout}");
    assert!(stderr.contains("refusing to run unconfined"), "{stderr}");
    let (code, stdout, stderr) =
        run_wrapper(r#"{"groups": {"shared": true}, "best_effort": true}"#);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("app-ran"), "{stdout}");
    assert!(stderr.contains("running unconfined"), "{stderr}");
    cleanup_state(nonet);
    cleanup_state(app);
}

/// Headless Chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4), so a
/// test can wait in one page for what server-sent events change. (`--dump-dom
/// --virtual-time-budget` never returns while an EventSource is open:
/// virtual time stays paused while a fetch is pending.)
struct Browser {
    child: tokio::process::Child,
    input: tokio::process::ChildStdin,
    output: tokio::io::BufReader<tokio::process::ChildStdout>,
    next_id: u64,
    events: Vec<serde_json::Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let chromium = std::env::split_paths(&path)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
            .expect(
                "chromium is not installed: the admin UI test drives headless Chromium \
                 (Debian package `chromium`; `bash scripts/prereqs.sh` installs it)",
            );
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            // The protocol pipe is fds 3 (commands) and 4 (answers).
            .arg(r#"exec 3<&0 4>&1 </dev/null >/dev/null; exec "$0" "$@""#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        Browser {
            input: child.stdin.take().unwrap(),
            output: tokio::io::BufReader::new(child.stdout.take().unwrap()),
            child,
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        }
    }

    async fn read(&mut self) -> serde_json::Value {
        use tokio::io::AsyncBufReadExt;
        let mut buf = Vec::new();
        let n = self.output.read_until(0, &mut buf).await.unwrap();
        assert!(n > 0 && buf.pop() == Some(0), "chromium closed its pipe");
        serde_json::from_slice(&buf).unwrap()
    }

    /// One protocol command; its result (panics on a protocol error).
    async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        use tokio::io::AsyncWriteExt;
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.input.write_all(&bytes).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                let m = self.read().await;
                if m["id"] == id {
                    return m;
                }
                if m.get("method").is_some() {
                    self.events.push(m);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    async fn wait_event(&mut self, method: &str) {
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
                    return self.events.remove(i);
                }
                let m = self.read().await;
                self.events.push(m);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {method} from chromium"));
    }

    /// A new tab on `url`, once its load event fired; its session id.
    async fn open(&mut self, url: &str) -> String {
        let t = self
            .call(
                None,
                "Target.createTarget",
                serde_json::json!({"url": "about:blank"}),
            )
            .await;
        let s = self
            .call(
                None,
                "Target.attachToTarget",
                serde_json::json!({"targetId": t["targetId"], "flatten": true}),
            )
            .await;
        let session = s["sessionId"].as_str().unwrap().to_owned();
        self.call(Some(&session), "Page.enable", serde_json::json!({}))
            .await;
        self.call(
            Some(&session),
            "Page.navigate",
            serde_json::json!({"url": url}),
        )
        .await;
        self.wait_event("Page.loadEventFired").await;
        session
    }

    /// Wait until the JavaScript expression `check` is true in the page:
    /// a MutationObserver re-evaluates it at each DOM change (no polling);
    /// fails after 60 s with the page's HTML.
    async fn wait_until(&mut self, session: &str, what: &str, check: &str) -> String {
        let expr = format!(
            r#"new Promise((resolve) => {{
                const check = () => {{ try {{ return !!({check}); }} catch (e) {{ return false; }} }};
                const done = (ok) => resolve({{ ok, html: document.documentElement.outerHTML }});
                if (check()) {{ done(true); return; }}
                const obs = new MutationObserver(() => {{ if (check()) {{ obs.disconnect(); done(true); }} }});
                obs.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});
                setTimeout(() => {{ obs.disconnect(); done(check()); }}, 60000);
            }})"#
        );
        let r = self
            .call(
                Some(session),
                "Runtime.evaluate",
                serde_json::json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        let v = &r["result"]["value"];
        let html = v["html"].as_str().unwrap_or_default().to_owned();
        assert_eq!(v["ok"], true, "page never showed {what}:\n{html}\n{r}");
        html
    }

    async fn close(mut self) {
        self.call(None, "Browser.close", serde_json::json!({}))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

async fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = http(addr, "GET", path, &[], Bytes::new()).await;
    (r.status, r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_ui_metrics_and_discovery_show_the_running_apps() {
    let app = "nt-observe";
    let unit = "narun-app@nt-observe.service";
    cleanup_state(app);
    // Fail early, before anything is deployed, if Chromium is missing.
    let mut browser = Browser::launch();
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-node-test");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let agent = Agent::start(&nats, &sd, "n1", &data.0);

    let probe = data.0.join("probe.sh");
    std::fs::write(
        &probe,
        "#!/bin/sh\necho 'probe says <b>hi</b> & \"bye\"'\nexec sleep 100000\n",
    )
    .unwrap();
    upload(&client, app, "v1", &probe).await;
    let spec = |node: &str| {
        format!(
            "name: {app}\ntag: v1\nmetrics:\n  port: 9464\nnodes:\n  - name: {node}\n    replicas: 1\n"
        )
    };
    let mut st = Statuses::new(&client, app, "n1").await;
    put_spec(&client, app, &spec("n1")).await;
    st.until("running", running("nt-observe-0")).await;
    let pid = sd.show(unit, "MainPID");

    // /metrics: the instance is up, with systemd's accounting of its unit.
    let labels = r#"{app_name="nt-observe",instance_id="nt-observe-0",node_id="n1"}"#;
    let up = format!("narun_node_runner_instance_up{labels} 1");
    eventually(Duration::from_secs(20), "instance_up 1", || async {
        get_text(agent.metrics, "/metrics")
            .await
            .1
            .lines()
            .any(|l| l == up)
    })
    .await;
    let (status, text) = get_text(agent.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let memory = metric_value(
        &text,
        &format!("narun_node_runner_instance_memory_current_bytes{labels}"),
    );
    let systemd_memory: f64 = sd.show(unit, "MemoryCurrent").parse().unwrap();
    assert!(memory > 0.0, "{text}");
    assert!(
        (memory - systemd_memory).abs() <= systemd_memory * 0.25 + 512.0 * 1024.0,
        "metric {memory} vs systemd MemoryCurrent {systemd_memory}"
    );
    assert!(
        text.contains(&format!(
            "narun_node_runner_instance_restarts_total{labels} 0"
        )),
        "{text}"
    );
    // CPU time where systemd accounts it (not on every cgroup v1 host):
    // sampled before `systemctl show`, so never more than it.
    let cpu_prefix = format!("narun_node_runner_instance_cpu_seconds_total{labels} ");
    let cpu = text
        .lines()
        .find_map(|l| l.strip_prefix(&cpu_prefix))
        .map(|v| v.parse::<f64>().unwrap());
    match sd.show(unit, "CPUUsageNSec").parse::<u64>() {
        Ok(ns) => {
            let cpu = cpu.unwrap_or_else(|| panic!("no CPU series:\n{text}"));
            assert!(
                cpu >= 0.0 && cpu <= ns as f64 / 1e9 + 1e-6,
                "{cpu} vs {ns} ns"
            );
        }
        Err(_) => assert_eq!(cpu, None, "systemd accounts no CPU time:\n{text}"),
    }
    assert!(text.contains(
        r#"narun_node_runner_instance_info{app_name="nt-observe",instance_id="nt-observe-0",node_id="n1",spec_tag="v1",spec_mode="exec"} 1"#
    ), "{text}");
    assert!(!text.contains("run_id"));

    // /discovery: the Go PrometheusTarget JSON, at the listener's address.
    let (status, body) = get_text(agent.metrics, "/discovery").await;
    assert_eq!(status, 200);
    let targets: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        targets,
        serde_json::json!([{
            "targets": ["127.0.0.1:9464"],
            "labels": {
                "job": "narun-workload",
                "narun_app": "nt-observe",
                "narun_instance_id": "nt-observe-0",
                "narun_node_id": "n1",
                "narun_tag": "v1",
                "__metrics_path__": "/metrics"
            }
        }])
    );

    // /logs/<unit>: the journal through --journalctl, escaped; only units
    // of the snapshot.
    let logs_path = format!("/logs/{unit}");
    eventually(
        Duration::from_secs(20),
        "the probe's line in /logs",
        || async {
            get_text(agent.admin, &logs_path)
                .await
                .1
                .contains("probe says &lt;b&gt;hi&lt;/b&gt; &amp; ")
        },
    )
    .await;
    let (status, page) = get_text(agent.admin, &logs_path).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<b>hi</b>"), "{page}");
    for bad in [
        "/logs/narun-app@other.service",
        "/logs/..%2F..%2Fetc%2Fpasswd",
        "/logs/-k",
        "/logs/",
        "/nope",
    ] {
        assert_eq!(get_text(agent.admin, bad).await.0, 404, "{bad}");
    }

    // The page in a real browser: the row, then the live change (the same
    // page, updated by server-sent events) when the app moves to another node.
    let session = browser.open(&format!("http://{}/", agent.admin)).await;
    let row = r#"document.querySelector('tr[data-instance="nt-observe-0"]')"#;
    let html = browser
        .wait_until(
            &session,
            "the running row, pushed over server-sent events",
            &format!(
                r#"document.body.dataset.live === "connected" && {row}.dataset.status === "running""#
            ),
        )
        .await;
    assert!(html.contains("narun node n1"), "{html}");
    assert!(html.contains(unit), "{html}");
    assert!(html.contains(&format!("<td>{pid}</td>")), "{html}");
    assert!(
        html.contains(r#"id="nats" data-connected="true""#),
        "{html}"
    );

    put_spec(&client, app, &spec("n2")).await;
    st.until("stopped", |s| {
        s.instance_id == "nt-observe-0" && s.status == InstanceState::Stopped
    })
    .await;
    let html = browser
        .wait_until(
            &session,
            "the row gone",
            &format!(
                r#"{row} === null && document.querySelector('section[data-app="nt-observe"] .no-replicas') !== null"#
            ),
        )
        .await;
    assert!(html.contains("No replicas on this node."), "{html}");
    browser.close().await;

    // The instance's series and target are gone.
    eventually(
        Duration::from_secs(20),
        "no series of nt-observe-0",
        || async {
            !get_text(agent.metrics, "/metrics")
                .await
                .1
                .contains(r#"instance_id="nt-observe-0""#)
        },
    )
    .await;
    assert_eq!(get_text(agent.metrics, "/discovery").await.1, "[]");

    delete_spec(&client, app).await;
    drop(agent);
    cleanup_state(app);
}

/// The command line of a unit's main process, read inside the private
/// systemd's namespace (any local user can read it there: world-readable).
fn cmdline(sd: &PrivateSystemd, unit: &str) -> (String, Vec<String>) {
    let pid = sd.show(unit, "MainPID");
    assert_ne!(pid, "0", "{unit} has no main process");
    let out = sd.nsenter("cat", &[&format!("/proc/{pid}/cmdline")]);
    let argv = String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\0')
        .split('\0')
        .map(str::to_owned)
        .collect();
    (pid, argv)
}

/// Hardening (#13.1, #13.2), as a user and as an attacker with NATS access:
/// `args` reach the app exactly as written (`$`, `%` included), also after
/// a daemon-reload and a restart; root in any spelling is refused by the
/// CLI and, written straight into KV, by the node, and nothing starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_are_literal_and_root_is_refused_in_every_spelling() {
    let app = "nt-args";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-node-test");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let _agent = Agent::start(&nats, &sd, "n1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("args.yaml");
    let literal = [
        "$FOO", "${FOO}", "$$", "$DBPASS", "%n", "%%", "%i", "a b", "\\", "'q'", ";",
    ];
    let args: Vec<String> = literal
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    std::fs::write(
        &spec,
        format!(
            "name: {app}\ntag: v1\nenv:\n  - {{name: FOO, value: EXPANDED}}\n  - {{name: DBPASS, value: s3cret}}\n\
             args: [\"-c\", \"while :; do sleep 1; done\", {}]\nnodes: [{{name: n1, replicas: 1}}]\n",
            args.join(", ")
        ),
    )
    .unwrap();
    let mut st = Statuses::new(&client, app, "n1").await;
    narun_cli_ok(
        &nats,
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            "/bin/sh",
            "--wait=60s",
        ],
    );
    let unit = format!("narun-app@{app}.service");
    let (pid, argv) = cmdline(&sd, &unit);
    assert_eq!(argv[1..3], ["-c", "while :; do sleep 1; done"]);
    assert_eq!(argv[3..], literal, "args as written");
    assert!(!argv
        .iter()
        .any(|a| a.contains("s3cret") || a.contains("EXPANDED")));

    // systemd re-reads transient units from the files it wrote for them.
    let out = sd.systemctl(&["daemon-reload"]);
    assert!(out.status.success(), "{out:?}");
    sd.nsenter("kill", &["-KILL", &pid]);
    st.until("restarted after SIGKILL", running_again("nt-args-0", &pid))
        .await;
    let (_, argv) = cmdline(&sd, &unit);
    assert_eq!(argv[3..], literal, "args as written after daemon-reload");

    // The CLI refuses root spelled as a uid, and odd spellings of any uid.
    for user in ["0", "\"0\"", "\"00\"", "\" 0\"", "\"+0\"", "\"0000\""] {
        let bad = work.path().join("root.yaml");
        std::fs::write(
            &bad,
            format!("name: nt-root\ntag: v1\nuser: {user}\nnodes: [{{name: n1, replicas: 1}}]\n"),
        )
        .unwrap();
        let (code, out, err) = narun_cli(
            &nats,
            &[
                "deploy",
                "--dry-run",
                "-f",
                bad.to_str().unwrap(),
                "/bin/sh",
            ],
        );
        assert_eq!(code, 65, "user: {user} accepted:\n{out}\n{err}");
        assert!(err.contains("user"), "user: {user}: {err}");
    }

    // `user: root` by name: the CLI warns and deploys; the node refuses.
    let root_app = "nt-root";
    let mut rst = Statuses::new(&client, root_app, "n1").await;
    let root_spec = work.path().join("root-name.yaml");
    std::fs::write(
        &root_spec,
        format!("name: {root_app}\ntag: v1\nuser: root\nnodes: [{{name: n1, replicas: 1}}]\n"),
    )
    .unwrap();
    let (code, out, err) = narun_cli(
        &nats,
        &[
            "deploy",
            "-f",
            root_spec.to_str().unwrap(),
            "/bin/sh",
            "--wait=60s",
        ],
    );
    assert_eq!(code, 1, "a refused app is a failed deploy:\n{out}\n{err}");
    assert!(err.contains("--allow-root-apps"), "the CLI warns: {err}");
    let s = rst
        .until("root refused", |s| {
            s.instance_id == "nt-root-0" && s.status == InstanceState::Failed
        })
        .await;
    assert!(s.error.contains("allow_root_apps is off"), "{}", s.error);

    // Written straight into KV (the Go CLI validates nothing): every
    // spelling of uid 0 is refused by the node itself.
    for (i, user) in ["0", "\"00\"", "\" 0\"", "\"0 \"", "\"+0\""]
        .iter()
        .enumerate()
    {
        let name = format!("nt-root{i}");
        let mut st = Statuses::new(&client, &name, "n1").await;
        put_spec(
            &client,
            &name,
            &format!("name: {name}\ntag: v1\nuser: {user}\nnodes: [{{name: n1, replicas: 1}}]\n"),
        )
        .await;
        let id = format!("{name}-0");
        let s = st
            .until(&format!("user: {user} refused"), |s| {
                s.instance_id == id && s.status == InstanceState::Failed
            })
            .await;
        assert!(
            s.error.contains("uid 0 is root")
                || s.error.contains("leading zero")
                || s.error.contains("not a valid user"),
            "user: {user}: {}",
            s.error
        );
        let state = sd.show(&format!("narun-app@{name}.service"), "ActiveState");
        assert_ne!(state, "active", "user: {user} ran");
    }
    let state = sd.show(&format!("narun-app@{root_app}.service"), "ActiveState");
    assert_ne!(state, "active", "no root app ever ran");
    let log = sd.journal(&["-u", &format!("narun-app@{root_app}.service"), "--no-pager"]);
    assert!(!log.contains("Started"), "a root unit was started:\n{log}");
}

/// Every Go landlock group works under systemd, where stdout and stderr are
/// the journal's socket (`/dev/stdout` cannot be opened by path there; the
/// wrapper used to exit 122 on the `stdio` group). Each app is deployed
/// with `narun deploy --wait`: it must run, reach what its group allows,
/// not what it does not, and log to the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_landlock_group_works_with_stdout_on_the_journal() {
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-ll-groups");
    let _agent = Agent::start(&nats, &sd, "n1", &data.0);
    let work = tempfile::tempdir().unwrap();
    // (group, a command its paths allow)
    let groups = [
        ("shared", "test -r /etc/ld.so.cache"),
        ("stdio", "head -c 1 /dev/urandom"),
        ("tty", "ls /usr/share/terminfo"),
        ("tmp", "touch /tmp/x"),
        ("vminfo", "cat /proc/cpuinfo"),
        ("dns", "cat /etc/hosts"),
        ("certs", "ls /etc/ssl/certs"),
    ];
    for (group, allowed) in groups {
        let app = format!("nt-ll-{group}");
        cleanup_state(&app);
        let script = format!(
            r#"check() {{ if sh -c "$2" >/dev/null 2>&1; then echo "$1-allowed"; else echo "$1-denied"; fi; }}
{{ check {group} "{allowed}"; check passwd "cat /etc/passwd"; echo done; }} > seen.tmp
mv seen.tmp seen
echo "{app} logs to the journal"
exec sleep 100000"#
        );
        let spec = work.path().join(format!("{group}.yaml"));
        std::fs::write(
            &spec,
            format!(
                "name: {app}\ntag: v1\nargs: [\"-c\", {}]\nmode: landlock\nlandlock:\n  {}\n  paths:\n    - path: /usr/bin\n      modes: rx\nhealth: {{stablePeriod: 500ms}}\nnodes:\n  - name: n1\n    replicas: 1\n",
                serde_json::to_string(&script).unwrap(),
                if group == "shared" {
                    "shared: true".to_owned()
                } else {
                    format!("shared: true\n  {group}: true")
                }
            ),
        )
        .unwrap();
        let (code, out, err) = narun_cli(
            &nats,
            &[
                "deploy",
                "-f",
                spec.to_str().unwrap(),
                "/bin/sh",
                "--wait=60s",
            ],
        );
        assert_eq!(code, 0, "{group}: {out}\n{err}");
        eventually(
            Duration::from_secs(20),
            "the app wrote what it sees",
            || {
                let s = seen(&app);
                async move { s.contains("done") }
            },
        )
        .await;
        let s = seen(&app);
        assert!(s.contains(&format!("{group}-allowed")), "{group}: {s}");
        assert!(
            s.contains("passwd-denied"),
            "{group}: not in any group: {s}"
        );
        let unit = format!("narun-app@{app}.service");
        eventually(Duration::from_secs(20), "its stdout in the journal", || {
            let j = sd.journal(&["-u", &unit, "-o", "cat"]);
            let want = format!("{app} logs to the journal");
            async move { j.contains(&want) }
        })
        .await;
        let (code, _, err) = narun_cli(&nats, &["apps", "delete", &app, "-y"]);
        assert_eq!(code, 0, "{err}");
    }
    for (group, _) in groups {
        cleanup_state(&format!("nt-ll-{group}"));
    }
}

/// A CA and a server certificate for 127.0.0.1 (openssl, P-256).
fn tls_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-days", "2", "-subj", "/CN=narun test CA"],
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    // A client certificate, for a server that verifies clients.
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=narun node",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    ]
    .concat());
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "client.cnf",
        "-out",
        "client.pem",
    ]);
    // The CA goes to apps, which run as their own users.
    std::fs::set_permissions(
        dir.join("ca.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_and_the_cli_share_connection_options_and_apps_get_every_server() {
    let app = "nt-tls";
    cleanup_state(app);
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(certs.path());
    let (client_cert, client_key) = (
        certs.path().join("client.pem"),
        certs.path().join("client.key"),
    );
    // TLS, and every client must show a certificate of the CA.
    let nats = NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}\n",
        cert.display().to_string(),
        key.display().to_string(),
        ca.display().to_string()
    ));
    // Two servers as an edge node knows them; the second is down.
    let urls = format!("{},nats://127.0.0.1:{}", nats.url(), free_port());
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-node-test");
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.clone())
        .add_client_certificate(client_cert.clone(), client_key.clone())
        .require_tls(true)
        .connect(nats.url())
        .await
        .unwrap();
    // The agent with the CLI's spelling of the URL list and the CA.
    let _agent = Agent::start_with(
        &nats,
        &sd,
        "n1",
        &data.0,
        &[
            "--nats-url",
            &urls,
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            client_cert.to_str().unwrap(),
            "--tls-key",
            client_key.to_str().unwrap(),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("tls.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: {app}\ntag: v1\nargs: [\"-c\", \"echo \\\"$NATS_URL $NATS_CA\\\" > nats_url.tmp && mv nats_url.tmp nats_url; exec sleep 100000\"]\nnodes: [{{name: n1, replicas: 1}}]\n"
        ),
    )
    .unwrap();
    let mut st = Statuses::new(&client, app, "n1").await;
    // The CLI through the same TLS server: NATS_CA and a URL list.
    let out = Command::new(narun_binary())
        .args([
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            "/bin/sh",
            "--wait=60s",
        ])
        .env("NATS_URL", &urls)
        .env("NATS_CA", &ca)
        .env("NATS_CERT", &client_cert)
        .env("NATS_KEY", &client_key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "narun deploy over TLS: {out:?}");
    st.until("running", running("nt-tls-0")).await;
    let seen = || {
        std::fs::read_to_string(format!("/var/lib/private/narun-app/{app}/nats_url"))
            .unwrap_or_default()
    };
    eventually(
        Duration::from_secs(20),
        "the app wrote its NATS_URL",
        || async { !seen().is_empty() },
    )
    .await;
    assert_eq!(
        seen().trim(),
        format!("{urls} {}", ca.display()),
        "apps get every server the agent has, and its CA"
    );

    // Without the CA the CLI is refused by the TLS server, and says so.
    let out = Command::new(narun_binary())
        .args(["apps", "list", "--timeout", "5s"])
        .env("NATS_URL", nats.url())
        .env_remove("NATS_CA")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "no CA, yet: {out:?}");
    // With the CA but without a client certificate: refused too.
    let out = Command::new(narun_binary())
        .args(["apps", "list", "--timeout", "5s"])
        .env("NATS_URL", nats.url())
        .env("NATS_CA", &ca)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "no client certificate, yet: {out:?}");
    // Half a client certificate is a usage error.
    let out = Command::new(narun_binary())
        .args(["apps", "list", "--tls-cert"])
        .arg(&client_cert)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{out:?}"
    );
}
