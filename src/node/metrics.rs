//! Prometheus metrics of the node agent (default `127.0.0.1:9100`).
//!
//! `/metrics` (OpenMetrics text) is rendered from the latest
//! [`NodeSnapshot`] at each scrape, into a registry built for that scrape
//! only: an instance that is gone from the snapshot is gone from the next
//! scrape, nothing accumulates (the Go runner's R19). Every instance
//! series has exactly the labels `app_name`, `instance_id`, `node_id`; no
//! per-run label (Go's `run_id`) and no `binary_path`, so a restart never
//! adds series.
//!
//! | metric | type | value |
//! | --- | --- | --- |
//! | `narun_node_runner_instance_up` | gauge | 1 while the replica's status is `running` (unit active), else 0 |
//! | `narun_node_runner_instance_restarts_total` | counter | systemd's `NRestarts` of the unit (automatic restarts) |
//! | `narun_node_runner_instance_memory_current_bytes` | gauge | systemd's `MemoryCurrent`: the unit's cgroup, i.e. the app itself |
//! | `narun_node_runner_instance_cpu_seconds_total` | counter | systemd's `CPUUsageNSec` / 1e9 (user + system) |
//! | `narun_node_runner_instance_info` | gauge (= 1) | extra labels `spec_tag`, `spec_mode` |
//! | `narun_node_runner_instance_last_exit_code` | gauge | the last exit status systemd saw (absent until the app exited once) |
//! | `narun_node_nats_connected` | gauge | 1 while the agent is connected to NATS |
//! | `narun_node_start_time_seconds` | gauge | when the agent started (Unix seconds) |
//!
//! Differences from the Go runner (§8 of the Go reference):
//! - Memory and CPU come from systemd's cgroup accounting of the unit, so
//!   they are the app's own (the Go runner read `/proc/<top pid>`, which
//!   was its `unshare`/launcher wrapper, R16), and they are live, not only
//!   added at exit.
//! - `narun_node_runner_instance_memory_max_rss_bytes` is **not** exported:
//!   its Go meaning (VmHWM, the peak RSS of one process) has no correct
//!   source here. The cgroup's peak is systemd's `MemoryPeak`, which only
//!   exists from systemd 256 on; use `memory_current_bytes` (or
//!   `max_over_time` of it) instead.
//! - `cpu_user_seconds_total` / `cpu_system_seconds_total` become one
//!   `cpu_seconds_total`: systemd accounts CPU time as one number.
//! - `restarts_total` and `cpu_seconds_total` are systemd's counters of the
//!   unit; they start again from 0 when the unit is recreated (a new spec
//!   hash), which Prometheus handles as a counter reset.
//!
//! `/discovery` is Prometheus HTTP service discovery (the Go
//! `PrometheusTarget` JSON): one target per `running` instance of an app
//! whose spec has `metrics.port` > 0, `<node address>:<port>`, with the
//! labels `job` (`narun-workload`), `narun_app`, `narun_instance_id`,
//! `narun_node_id`, `narun_tag` and `__metrics_path__`. Apps run in the
//! host network, so the node address is the IP this metrics listener is
//! bound to, or `127.0.0.1` when it is bound to an unspecified address
//! (`0.0.0.0`, `::`). Nothing is dialled to guess an address (the Go
//! runner dialled `8.8.8.8`, R27): for a remote Prometheus, bind
//! `--metrics-addr` to the node's address. Replicas of one app share the
//! app's port, as the app is the one listening on it.
//!
//! A listener that cannot be bound is logged as an error and the agent
//! runs on without metrics.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::watch;

use super::admin::{self, Body};
use super::snapshot::NodeSnapshot;

/// The `job` label of discovered targets (as in Go).
pub const DISCOVERY_JOB: &str = "narun-workload";

/// Serve `/metrics` and `/discovery` on `listener` (see [`admin::bind`])
/// from `snapshots`.
pub async fn serve(listener: tokio::net::TcpListener, snapshots: watch::Receiver<NodeSnapshot>) {
    let host = listener
        .local_addr()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), discovery_host);
    let snapshots = Arc::new(snapshots);
    admin::serve_requests(listener, move |req| {
        let snapshots = snapshots.clone();
        async move { handle(&req, &snapshots, host) }
    })
    .await;
}

fn handle(
    req: &Request<Incoming>,
    snapshots: &watch::Receiver<NodeSnapshot>,
    host: IpAddr,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return admin::method_not_allowed();
    }
    // A copy, so the agent never waits for a scrape to publish.
    let snap = || snapshots.borrow().clone();
    match req.uri().path() {
        "/metrics" => admin::full(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            encode(&snap()),
        ),
        "/discovery" => admin::full(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&discovery(&snap(), host)).unwrap_or_default(),
        ),
        _ => admin::not_found(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    app_name: String,
    instance_id: String,
    node_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    app_name: String,
    instance_id: String,
    node_id: String,
    spec_tag: String,
    spec_mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node_id: String,
}

/// The OpenMetrics text for `snap`, from a registry made for this call.
pub fn encode(snap: &NodeSnapshot) -> String {
    let mut registry = Registry::default();
    let up = Family::<InstanceLabels, Gauge>::default();
    let restarts = Family::<InstanceLabels, Counter>::default();
    let memory = Family::<InstanceLabels, Gauge>::default();
    let cpu = Family::<InstanceLabels, Counter<f64, AtomicU64>>::default();
    let info = Family::<InfoLabels, Gauge>::default();
    let exit = Family::<InstanceLabels, Gauge>::default();
    let nats = Family::<NodeLabels, Gauge>::default();
    let started = Family::<NodeLabels, Gauge>::default();
    registry.register(
        "narun_node_runner_instance_up",
        "1 while the instance runs (its unit is active), else 0",
        up.clone(),
    );
    registry.register(
        "narun_node_runner_instance_restarts",
        "Automatic restarts of the instance's unit by systemd (NRestarts)",
        restarts.clone(),
    );
    registry.register(
        "narun_node_runner_instance_memory_current_bytes",
        "Memory of the instance's cgroup (systemd MemoryCurrent)",
        memory.clone(),
    );
    registry.register(
        "narun_node_runner_instance_cpu_seconds",
        "CPU time of the instance's cgroup, user + system (systemd CPUUsageNSec)",
        cpu.clone(),
    );
    registry.register(
        "narun_node_runner_instance_info",
        "Spec of the instance's app (always 1)",
        info.clone(),
    );
    registry.register(
        "narun_node_runner_instance_last_exit_code",
        "Last exit status of the instance's process, once it exited",
        exit.clone(),
    );
    registry.register(
        "narun_node_nats_connected",
        "1 while the node agent is connected to NATS",
        nats.clone(),
    );
    registry.register(
        "narun_node_start_time_seconds",
        "When the node agent started, in Unix seconds",
        started.clone(),
    );
    if !snap.node_id.is_empty() {
        let node = NodeLabels {
            node_id: snap.node_id.clone(),
        };
        nats.get_or_create(&node)
            .set(i64::from(snap.nats_connected));
        started.get_or_create(&node).set(snap.started_unix);
    }
    for app in &snap.apps {
        for r in &app.replicas {
            let labels = InstanceLabels {
                app_name: app.name.clone(),
                instance_id: r.instance_id.clone(),
                node_id: snap.node_id.clone(),
            };
            up.get_or_create(&labels)
                .set(i64::from(r.status == "running"));
            restarts
                .get_or_create(&labels)
                .inc_by(u64::from(r.restarts));
            if let Some(m) = r.memory_current_bytes {
                memory
                    .get_or_create(&labels)
                    .set(i64::try_from(m).unwrap_or(i64::MAX));
            }
            if let Some(c) = r.cpu_usage_seconds {
                cpu.get_or_create(&labels).inc_by(c);
            }
            if let Some(code) = r.last_exit_code {
                exit.get_or_create(&labels).set(i64::from(code));
            }
            info.get_or_create(&InfoLabels {
                app_name: app.name.clone(),
                instance_id: r.instance_id.clone(),
                node_id: snap.node_id.clone(),
                spec_tag: app.tag.clone(),
                spec_mode: app.mode.clone(),
            })
            .set(1);
        }
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// One Prometheus HTTP SD target group (Go `PrometheusTarget`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub targets: Vec<String>,
    pub labels: TargetLabels,
}

/// The labels of a discovered target, in Go's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetLabels {
    pub job: String,
    pub narun_app: String,
    pub narun_instance_id: String,
    pub narun_node_id: String,
    pub narun_tag: String,
    #[serde(rename = "__metrics_path__")]
    pub metrics_path: String,
}

/// The address put in discovered targets for apps on this node: the
/// metrics listener's IP, or loopback when it listens on every address.
pub fn discovery_host(listen: SocketAddr) -> IpAddr {
    if listen.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        listen.ip()
    }
}

/// One target per running instance of an app with `metrics.port` > 0.
pub fn discovery(snap: &NodeSnapshot, host: IpAddr) -> Vec<Target> {
    let mut out = Vec::new();
    for app in snap.apps.iter().filter(|a| a.metrics_port > 0) {
        let path = if app.metrics_path.is_empty() {
            "/metrics"
        } else {
            &app.metrics_path
        };
        for r in app.replicas.iter().filter(|r| r.status == "running") {
            out.push(Target {
                targets: vec![SocketAddr::new(host, app.metrics_port).to_string()],
                labels: TargetLabels {
                    job: DISCOVERY_JOB.into(),
                    narun_app: app.name.clone(),
                    narun_instance_id: r.instance_id.clone(),
                    narun_node_id: snap.node_id.clone(),
                    narun_tag: app.tag.clone(),
                    metrics_path: path.into(),
                },
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::snapshot::{AppSnapshot, ReplicaSnapshot};

    fn replica(app: &str, index: u32, status: &str) -> ReplicaSnapshot {
        ReplicaSnapshot {
            index,
            instance_id: format!("{app}-{index}"),
            unit: format!("narun-app@{app}:{index}.service"),
            active_state: "active".into(),
            sub_state: "running".into(),
            status: status.into(),
            pid: 100 + index,
            active_since_unix: 1_700_000_000,
            restarts: 2,
            last_exit_code: Some(137),
            memory_current_bytes: Some(5_000_000),
            cpu_usage_seconds: Some(1.25),
            spec_hash: "h".into(),
        }
    }

    fn snapshot() -> NodeSnapshot {
        NodeSnapshot {
            node_id: "n1".into(),
            version: "0.1.0".into(),
            started_unix: 1_700_000_000,
            nats_connected: true,
            apps: vec![
                AppSnapshot {
                    name: "hello".into(),
                    tag: "v13".into(),
                    mode: "exec".into(),
                    desired: 2,
                    metrics_port: 39211,
                    metrics_path: "/metrics".into(),
                    replicas: vec![
                        replica("hello", 0, "running"),
                        replica("hello", 1, "crashed"),
                    ],
                    ..Default::default()
                },
                AppSnapshot {
                    name: "quiet".into(),
                    tag: "v1".into(),
                    mode: "landlock".into(),
                    desired: 1,
                    replicas: vec![ReplicaSnapshot {
                        last_exit_code: None,
                        memory_current_bytes: None,
                        cpu_usage_seconds: None,
                        ..replica("quiet", 0, "running")
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    const L0: &str = r#"{app_name="hello",instance_id="hello-0",node_id="n1"}"#;
    const L1: &str = r#"{app_name="hello",instance_id="hello-1",node_id="n1"}"#;

    #[test]
    fn series_come_from_the_snapshot_with_go_names() {
        let text = encode(&snapshot());
        for line in [
            format!("narun_node_runner_instance_up{L0} 1"),
            format!("narun_node_runner_instance_up{L1} 0"),
            format!("narun_node_runner_instance_restarts_total{L0} 2"),
            format!("narun_node_runner_instance_memory_current_bytes{L0} 5000000"),
            format!("narun_node_runner_instance_cpu_seconds_total{L0} 1.25"),
            format!("narun_node_runner_instance_last_exit_code{L0} 137"),
            r#"narun_node_runner_instance_info{app_name="hello",instance_id="hello-0",node_id="n1",spec_tag="v13",spec_mode="exec"} 1"#.into(),
            r#"narun_node_runner_instance_info{app_name="quiet",instance_id="quiet-0",node_id="n1",spec_tag="v1",spec_mode="landlock"} 1"#.into(),
            r#"narun_node_nats_connected{node_id="n1"} 1"#.into(),
            r#"narun_node_start_time_seconds{node_id="n1"} 1700000000"#.into(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(text.contains("# TYPE narun_node_runner_instance_restarts counter"));
        assert!(text.contains("# TYPE narun_node_runner_instance_up gauge"));
        // Unknown accounting: no series rather than a fake 0.
        let quiet = r#"instance_id="quiet-0""#;
        for name in [
            "narun_node_runner_instance_memory_current_bytes",
            "narun_node_runner_instance_cpu_seconds_total",
            "narun_node_runner_instance_last_exit_code",
        ] {
            assert!(
                !text
                    .lines()
                    .any(|l| l.starts_with(name) && l.contains(quiet)),
                "{name}:\n{text}"
            );
        }
        // No per-run labels, no wrapper-based max RSS.
        assert!(!text.contains("run_id"));
        assert!(!text.contains("binary_path"));
        assert!(!text.contains("max_rss"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_removed_instance_disappears_from_the_next_scrape() {
        let mut snap = snapshot();
        assert!(encode(&snap).contains(L1));
        snap.apps[0].replicas.truncate(1);
        let text = encode(&snap);
        assert!(!text.contains(L1), "{text}");
        assert!(text.contains(L0));
        snap.apps.clear();
        let text = encode(&snap);
        assert!(!text.contains("instance_id="), "{text}");
        // A fresh agent (no snapshot yet) exposes no series at all.
        let empty = encode(&NodeSnapshot::default());
        assert!(!empty.contains("node_id="), "{empty}");
    }

    #[test]
    fn discovery_lists_running_instances_of_apps_with_a_metrics_port() {
        let host = discovery_host("127.0.0.1:9100".parse().unwrap());
        let json = serde_json::to_value(discovery(&snapshot(), host)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "targets": ["127.0.0.1:39211"],
                "labels": {
                    "job": "narun-workload",
                    "narun_app": "hello",
                    "narun_instance_id": "hello-0",
                    "narun_node_id": "n1",
                    "narun_tag": "v13",
                    "__metrics_path__": "/metrics"
                }
            }])
        );
        // Go's key order.
        let text = serde_json::to_string(&discovery(&snapshot(), host)).unwrap();
        assert!(text.starts_with(r#"[{"targets":["127.0.0.1:39211"],"labels":{"job":"#));
        assert!(
            text.ends_with(r#""__metrics_path__":"/metrics"}}]"#),
            "{text}"
        );
        assert_eq!(
            serde_json::to_string(&discovery(&NodeSnapshot::default(), host)).unwrap(),
            "[]"
        );
    }

    #[test]
    fn discovery_host_is_the_listener_ip_or_loopback() {
        let h = |s: &str| discovery_host(s.parse().unwrap()).to_string();
        assert_eq!(h("0.0.0.0:9100"), "127.0.0.1");
        assert_eq!(h("[::]:9100"), "127.0.0.1");
        assert_eq!(h("10.1.2.3:9100"), "10.1.2.3");
        let mut snap = snapshot();
        snap.apps[0].metrics_path = "/m".into();
        let t = discovery(&snap, "fd00::5".parse().unwrap());
        assert_eq!(t[0].targets, ["[fd00::5]:39211"]);
        assert_eq!(t[0].labels.metrics_path, "/m");
    }
}
