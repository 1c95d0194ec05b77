//! Chaos with real processes, under a steady load through the gateway: the
//! nats-server killed and started again, the node agent killed with
//! SIGKILL, an app's main process killed with SIGKILL. Every request of
//! the load is recorded (when it was sent, how long it took, what it got),
//! and each test says which answers are acceptable when.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::agent::Agent;
use common::load::*;
use common::systemd::{cleanup_state, PrivateSystemd, VarLibDir};
use common::*;
use http_body_util::{BodyExt, Full};

/// The route's reply timeout: a request lost in flight answers 504 after it.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(3);

/// The `hello` example as app `app`, `replicas` on node-1.
fn hello_spec(dir: &Path, app: &str, tag: &str, replicas: u32) -> PathBuf {
    write_spec(
        dir,
        &format!("{app}-{tag}-{replicas}.yaml"),
        &format!(
            "name: {app}\ntag: {tag}\nargs: [\"--service\", \"{app}\"]\n\
             nodes:\n  - name: node-1\n    replicas: {replicas}\n"
        ),
    )
}

/// `narun deploy -f SPEC hello --wait=60s`, which must succeed.
fn deploy_ok(nats: &NatsServer, spec: &Path) {
    let hello = example_binary("hello");
    let (code, out, err) = narun_cli(
        nats,
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            hello.to_str().unwrap(),
            "--wait=60s",
        ],
    );
    assert_eq!(code, 0, "narun deploy failed:\n{out}\n{err}");
}

fn main_pid(sd: &PrivateSystemd, unit: &str) -> String {
    let pid = sd.show(unit, "MainPID");
    assert_ne!(pid, "0", "{unit} has no process");
    pid
}

/// The gateway, routing POST /hello/ to `app` with [`ROUTE_TIMEOUT`].
fn gateway(nats: &NatsServer, app: &str) -> GatewayProc {
    GatewayProc::start(
        &nats.url(),
        &format!(
            "  - path: \"/hello/\"\n    methods: [\"POST\"]\n    service: \"{app}\"\n    timeout: \"{}ms\"",
            ROUTE_TIMEOUT.as_millis()
        ),
        "",
    )
}

/// `narun apps info APP -o json`.
fn apps_info(nats: &NatsServer, app: &str) -> serde_json::Value {
    let out = narun_cli_ok(nats, &["apps", "info", app, "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("apps info JSON ({e}): {out}"))
}

/// The heartbeat of `node` (`narun nodes list -o json`).
fn node_state(nats: &NatsServer, node: &str) -> serde_json::Value {
    let out = narun_cli_ok(nats, &["nodes", "list", "-o", "json"]);
    let all: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("nodes list JSON ({e}): {out}"));
    all.as_array()
        .and_then(|a| a.iter().find(|n| n["node_id"] == node))
        .cloned()
        .unwrap_or_else(|| panic!("no node {node}: {out}"))
}

/// The instance `id` of `apps info` JSON.
fn instance<'a>(info: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    info["instances"]
        .as_array()?
        .iter()
        .find(|i| i["instance_id"] == id)
}

fn assert_gateway_alive(gw: &mut GatewayProc) {
    assert!(
        gw.proc.is_running(),
        "the gateway exited:\n{}",
        gw.proc.stderr()
    );
}

/// nats-server killed and started again on the same port and store, under
/// load: the gateway never exits and answers 503 at once while NATS is
/// down (never a hang, never another status), 200 again within seconds of
/// the restart; the app and the agent reconnect on their own (the app is
/// not restarted, a later deploy reaches the agent), and JetStream kept
/// the apps, the binaries and the statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_under_load() {
    let app = "ch-nats";
    cleanup_state(app);
    let mut nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-chaos");
    let mut agent = Agent::start(&nats, &sd, "node-1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let unit = format!("narun-app@{app}.service");
    deploy_ok(&nats, &hello_spec(work.path(), app, "v1", 1));
    let mut gw = gateway(&nats, app);
    let pid = main_pid(&sd, &unit);
    let invocation = sd.show(&unit, "InvocationID");
    let info_before = apps_info(&nats, app);
    let images_before = narun_cli_ok(&nats, &["images", "list", "-o", "json"]);

    let load = Load::start(gw.http, 4, Duration::from_millis(10));
    load.served(100).await;

    let stopped = Instant::now();
    nats.stop();
    // While it is down: 503s, and enough of them to be a steady state.
    load.until("100 answers 503 while NATS is down", |recs| {
        recs.iter()
            .filter(|r| r.sent >= stopped && r.status() == Some(503))
            .count()
            >= 100
    })
    .await;
    assert_gateway_alive(&mut gw);
    assert!(
        agent.proc.is_running(),
        "the agent exited:\n{}",
        agent.proc.stderr()
    );
    assert_eq!(
        sd.show(&unit, "MainPID"),
        pid,
        "the app stopped without NATS"
    );
    let down_for = stopped.elapsed();

    let restarted = Instant::now();
    nats.restart();
    load.until("a 200 after the restart", |recs| {
        recs.iter().any(|r| r.sent >= restarted && r.ok())
    })
    .await;
    let recs = load.records();
    let first_ok = recs
        .iter()
        .filter(|r| r.sent >= restarted && r.ok())
        .map(|r| r.done)
        .min()
        .unwrap();
    let recovery = first_ok - restarted;
    load.served_since(300, first_ok).await;
    let recs = load.finish().await;
    assert_gateway_alive(&mut gw);
    eprintln!("nats-server down for {down_for:?}, 200 again {recovery:?} after its restart");
    print_figures("nats restart", &recs);
    print_figures(
        "  answered after the stop, sent before the first 200 after the restart",
        &recs
            .iter()
            .filter(|r| r.done >= stopped && r.sent < first_ok)
            .cloned()
            .collect::<Vec<_>>(),
    );

    // Only 200 and 503 ("not connected" or, while the app reconnects, "no
    // backend"), each within the route timeout.
    let bad: Vec<_> = recs
        .iter()
        .filter(|r| !matches!(r.status(), Some(200 | 503)) || r.took() > ROUTE_TIMEOUT)
        .collect();
    assert!(
        bad.is_empty(),
        "{} requests got something else: {bad:?}",
        bad.len()
    );
    // Everything before the stop and after the recovery succeeded.
    let failed_outside: Vec<_> = recs
        .iter()
        .filter(|r| !r.ok() && (r.done < stopped || r.sent >= first_ok))
        .collect();
    assert!(
        failed_outside.is_empty(),
        "failures outside the outage: {failed_outside:?}"
    );
    // 503 answers are immediate: not a wait for a reply that cannot come.
    let slow_503 = recs
        .iter()
        .filter(|r| r.status() == Some(503))
        .map(Rec::took)
        .max()
        .unwrap_or_default();
    assert!(slow_503 < Duration::from_secs(1), "a 503 took {slow_503:?}");
    // Clients retry every 100 ms doubling to 5 s (crate::nats): a few
    // seconds at most, a fraction of one after a short outage.
    assert!(
        recovery < Duration::from_secs(8),
        "200 again only {recovery:?} after NATS restarted"
    );

    // The app reconnected by itself: never restarted.
    assert_eq!(sd.show(&unit, "MainPID"), pid);
    assert_eq!(sd.show(&unit, "InvocationID"), invocation);
    assert_eq!(sd.show(&unit, "NRestarts"), "0");
    // JetStream kept the spec, its revision, the binaries and the statuses.
    let info_after = apps_info(&nats, app);
    assert_eq!(info_after["revision"], info_before["revision"]);
    assert_eq!(info_after["spec_yaml"], info_before["spec_yaml"]);
    assert_eq!(
        instance(&info_after, &format!("{app}-0")).map(|i| &i["status"]),
        Some(&serde_json::json!("running")),
        "{info_after:#}"
    );
    assert_eq!(
        narun_cli_ok(&nats, &["images", "list", "-o", "json"]),
        images_before
    );
    // The agent reconnected: a deploy after the restart reaches it.
    deploy_ok(&nats, &hello_spec(work.path(), app, "v1", 2));
    let second = format!("narun-app@{app}:1.service");
    assert_eq!(sd.show(&second, "ActiveState"), "active");
    assert_eq!(
        sd.show(&unit, "MainPID"),
        pid,
        "scaling up replaced replica 0"
    );
    assert!(agent.proc.is_running());
    drop(agent);
    cleanup_state(app);
}

/// The agent killed with SIGKILL under load: the apps are systemd's and
/// keep serving while it is dead and once it is back; the new agent adopts
/// the running units (same process, same invocation, no restart) and
/// reports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkill_under_load_loses_nothing() {
    let app = "ch-agent";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-chaos");
    let mut agent = Agent::start(&nats, &sd, "node-1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let units = [
        format!("narun-app@{app}.service"),
        format!("narun-app@{app}:1.service"),
    ];
    deploy_ok(&nats, &hello_spec(work.path(), app, "v1", 2));
    let mut gw = gateway(&nats, app);
    let before: Vec<(String, String)> = units
        .iter()
        .map(|u| (main_pid(&sd, u), sd.show(u, "InvocationID")))
        .collect();

    let started_before = node_state(&nats, "node-1")["start_time"].clone();
    let load = Load::start(gw.http, 4, Duration::from_millis(10));
    load.served(100).await;
    agent.proc.signal(nix::sys::signal::Signal::SIGKILL);
    agent.proc.wait_exit(Duration::from_secs(10));
    let killed = Instant::now();
    load.served(200).await;
    let dead_for = killed.elapsed();
    let agent = Agent::start(&nats, &sd, "node-1", &data.0);
    let back = Instant::now();
    // The new agent (another start time in its heartbeat) manages both
    // replicas, whose statuses still name the processes that ran all along.
    eventually(
        Duration::from_secs(30),
        "the new agent's heartbeat with both replicas",
        || {
            let node = node_state(&nats, "node-1");
            let ok = node["start_time"] != started_before
                && (0..2).all(|i| {
                    node["managed_instances"]
                        .as_array()
                        .is_some_and(|m| m.contains(&format!("{app}-{i}").into()))
                });
            async move { ok }
        },
    )
    .await;
    let info = apps_info(&nats, app);
    for (i, (pid, _)) in before.iter().enumerate() {
        let s = instance(&info, &format!("{app}-{i}")).expect("instance reported");
        assert_eq!(s["status"], "running", "{info:#}");
        assert_eq!(s["pid"].as_u64(), pid.parse().ok(), "{info:#}");
    }
    load.served_since(200, back).await;
    let recs = load.finish().await;
    assert_gateway_alive(&mut gw);
    eprintln!("agent dead for {dead_for:?}");
    print_figures("agent SIGKILL", &recs);
    print_figures(
        "  while the agent was dead",
        &recs
            .iter()
            .filter(|r| r.sent >= killed && r.sent < back)
            .cloned()
            .collect::<Vec<_>>(),
    );
    let failed: Vec<_> = recs.iter().filter(|r| !r.ok()).collect();
    assert!(
        failed.is_empty(),
        "{} requests failed: {failed:?}",
        failed.len()
    );
    for (u, (pid, invocation)) in units.iter().zip(&before) {
        assert_eq!(&sd.show(u, "MainPID"), pid, "{u} has another process");
        assert_eq!(&sd.show(u, "InvocationID"), invocation, "{u} was restarted");
        assert_eq!(sd.show(u, "NRestarts"), "0", "{u}");
    }
    drop(agent);
    cleanup_state(app);
}

/// Names of the connections nats-server has closed (its monitoring
/// endpoint `/connz?state=closed`).
async fn closed_connections(monitor: SocketAddr) -> Vec<String> {
    let r = http(monitor, "GET", "/connz?state=closed&limit=100000", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["connections"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL the main process of `unit`; returns (when the signal was sent,
/// when nats-server had closed the process's connection: from then on no
/// request can be routed to it).
async fn kill_app(
    sd: &PrivateSystemd,
    unit: &str,
    app: &str,
    monitor: SocketAddr,
) -> (Instant, Instant) {
    let mine = |names: Vec<String>| {
        names
            .iter()
            .filter(|n| n.ends_with(&format!(" - {app}")))
            .count()
    };
    let closed_before = mine(closed_connections(monitor).await);
    let pid = main_pid(sd, unit);
    let killed = Instant::now();
    let out = sd.nsenter("kill", &["-KILL", &pid]);
    assert!(
        out.status.success(),
        "kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while mine(closed_connections(monitor).await) == closed_before {
        assert!(
            Instant::now() < deadline,
            "nats-server did not see the app's connection close"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (killed, Instant::now())
}

/// Wait until `unit` runs again with another process than `old`; returns
/// the new MainPID.
async fn restarted(sd: &PrivateSystemd, unit: &str, old: &str) -> String {
    let mut pid = String::new();
    eventually(
        Duration::from_secs(30),
        &format!("{unit} restarted"),
        || {
            pid = sd.show(unit, "MainPID");
            let ok = pid != "0" && pid != old && sd.show(unit, "ActiveState") == "active";
            async move { ok }
        },
    )
    .await;
    pid
}

/// `kill -9` of an app's main process under load: systemd restarts it (a
/// new process), `narun apps info` reports the restart and the new
/// process. With one replica, requests fail until it is back (503: no
/// backend; 504 for one lost in flight); with two on the node, every
/// request sent after nats-server dropped the dead process's connection
/// succeeds, and those in flight at the kill can only time out (504).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_sigkill_is_restarted_and_reported() {
    let app = "ch-kill";
    cleanup_state(app);
    let nats = NatsServer::start_with_config("http: \"127.0.0.1:-1\"");
    let monitor = SocketAddr::from(([127, 0, 0, 1], nats.monitor_port()));
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-chaos");
    let agent = Agent::start(&nats, &sd, "node-1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let unit = format!("narun-app@{app}.service");
    deploy_ok(&nats, &hello_spec(work.path(), app, "v1", 1));
    let mut gw = gateway(&nats, app);

    // One replica.
    let load = Load::start(gw.http, 4, Duration::from_millis(10));
    load.served(100).await;
    let old = main_pid(&sd, &unit);
    let (killed, gone) = kill_app(&sd, &unit, app, monitor).await;
    let pid = restarted(&sd, &unit, &old).await;
    load.served(200).await;
    assert_eq!(sd.show(&unit, "NRestarts"), "1");
    eventually(
        Duration::from_secs(30),
        "apps info reports the restart and the new process",
        || {
            let info = apps_info(&nats, app);
            let ok = instance(&info, &format!("{app}-0")).is_some_and(|i| {
                i["status"] == "running"
                    && i["pid"].as_u64() == pid.parse().ok()
                    && i["restarts"] == 1
            });
            async move { ok }
        },
    )
    .await;
    let recs = load.finish().await;
    let first_ok = recs
        .iter()
        .filter(|r| r.sent >= gone && r.ok())
        .map(|r| r.done)
        .min()
        .unwrap();
    eprintln!(
        "one replica: killed, connection closed {:?} later, 200 again {:?} after the kill",
        gone - killed,
        first_ok - killed
    );
    print_figures("one replica", &recs);
    // Requests sent once the connection was gone: 503 (no backend) until
    // the new process serves.
    let expected = |r: &Rec| {
        let in_flight = r.sent < gone && r.done >= killed;
        match r.status() {
            Some(200) => true,
            Some(503) => r.done >= killed && r.took() < Duration::from_secs(1),
            Some(504) => in_flight,
            _ => false,
        }
    };
    let bad: Vec<_> = recs.iter().filter(|r| !expected(r)).collect();
    assert!(bad.is_empty(), "unexpected failures: {bad:?}");
    assert!(
        recs.iter()
            .all(|r| r.ok() || r.done >= killed && r.sent < first_ok),
        "failures outside the gap: {:?}",
        tally(&recs)
    );

    // Two replicas on the node: one killed, the other serves.
    deploy_ok(&nats, &hello_spec(work.path(), app, "v1", 2));
    let other = format!("narun-app@{app}:1.service");
    let other_pid = main_pid(&sd, &other);
    let load = Load::start(gw.http, 4, Duration::from_millis(10));
    load.served(100).await;
    let old = main_pid(&sd, &unit);
    let (killed, gone) = kill_app(&sd, &unit, app, monitor).await;
    let pid = restarted(&sd, &unit, &old).await;
    load.served(200).await;
    eventually(
        Duration::from_secs(30),
        "apps info reports the second restart",
        || {
            let info = apps_info(&nats, app);
            let ok = instance(&info, &format!("{app}-0")).is_some_and(|i| {
                i["status"] == "running"
                    && i["pid"].as_u64() == pid.parse().ok()
                    && i["restarts"] == 2
            });
            async move { ok }
        },
    )
    .await;
    let recs = load.finish().await;
    assert_gateway_alive(&mut gw);
    assert_eq!(
        sd.show(&other, "MainPID"),
        other_pid,
        "the other replica was touched"
    );
    let in_flight: Vec<_> = recs
        .iter()
        .filter(|r| r.sent < gone && r.done >= killed)
        .cloned()
        .collect();
    eprintln!(
        "two replicas: connection closed {:?} after the kill",
        gone - killed
    );
    print_figures("two replicas", &recs);
    print_figures("  in flight at the kill", &in_flight);
    let after: Vec<_> = recs.iter().filter(|r| r.sent >= gone && !r.ok()).collect();
    assert!(
        after.is_empty(),
        "{} requests sent after the kill failed: {after:?}",
        after.len()
    );
    let lost: Vec<_> = recs
        .iter()
        .filter(|r| !(r.ok() || r.status() == Some(504) && r.sent < gone && r.done >= killed))
        .collect();
    assert!(lost.is_empty(), "unexpected failures: {lost:?}");
    drop(agent);
    cleanup_state(app);
}

/// One gRPC call over h2c (an empty request message); returns its
/// `grpc-status` and `grpc-message`, from the headers (trailers-only) or
/// the trailers.
async fn grpc_status(addr: SocketAddr, path: &str) -> (String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let resp = sender.send_request(req).await.expect("h2 exchange");
    let (parts, body) = resp.into_parts();
    let trailers = body
        .collect()
        .await
        .expect("response body")
        .trailers()
        .cloned()
        .unwrap_or_default();
    let get = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

/// An HTTP request and a gRPC call waiting for their reply (a subscriber
/// that never answers has them) when nats-server dies: the reply cannot
/// come any more, so they answer 503 / UNAVAILABLE at once, not 504 /
/// DEADLINE_EXCEEDED at the end of the route's 30 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_when_nats_dies_answer_503_at_once() {
    use futures_util::StreamExt;
    let mut nats = NatsServer::start();
    let hole = async_nats::connect(nats.url()).await.unwrap();
    let mut http_sub = hole.subscribe("ch-hole").await.unwrap();
    let mut grpc_sub = hole.subscribe("ch-hole-grpc").await.unwrap();
    hole.flush().await.unwrap();
    let mut gw = GatewayProc::start(
        &nats.url(),
        "  - path: \"/hole/\"\n    methods: [\"POST\"]\n    service: \"ch-hole\"\n    timeout: \"30s\"\n\
         \x20 - grpc: \"hole.v1.Hole\"\n    service: \"ch-hole-grpc\"\n    timeout: \"30s\"",
        "grpc_addr: \"{grpc_addr}\"",
    );
    let grpc = gw.grpc.expect("a gRPC listener of its own");
    let h = tokio::spawn(http(gw.http, "POST", "/hole/", &[], "x"));
    let g = tokio::spawn(grpc_status(grpc, "/hole.v1.Hole/Call"));
    let wait = Duration::from_secs(10);
    tokio::time::timeout(wait, http_sub.next())
        .await
        .expect("the HTTP request reaches NATS");
    tokio::time::timeout(wait, grpc_sub.next())
        .await
        .expect("the gRPC call reaches NATS");

    let stopped = Instant::now();
    nats.stop();
    let r = tokio::time::timeout(wait, h)
        .await
        .expect("the HTTP request waited for its timeout")
        .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "Gateway not connected to NATS\n")
    );
    let (status, message) = tokio::time::timeout(wait, g)
        .await
        .expect("the gRPC call waited for its deadline")
        .unwrap();
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("14", "Gateway not connected to NATS")
    );
    eprintln!(
        "both answered {:?} after nats-server died",
        stopped.elapsed()
    );
    assert_gateway_alive(&mut gw);
}
