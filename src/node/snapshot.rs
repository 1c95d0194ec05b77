//! A point-in-time view of the node, for the admin UI and metrics. The
//! agent rebuilds it at every status poll and publishes it on a
//! `tokio::sync::watch` channel; readers never touch the agent's locks.

use serde::Serialize;

/// The whole node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSnapshot {
    pub node_id: String,
    pub version: String,
    /// Unix seconds when the agent started.
    pub started_unix: i64,
    pub nats_connected: bool,
    pub nats_url: String,
    pub systemd_version: String,
    pub os: String,
    pub arch: String,
    pub labels: Vec<(String, String)>,
    /// Apps known to this node (targeted here or not), sorted by name.
    pub apps: Vec<AppSnapshot>,
}

/// One app.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppSnapshot {
    pub name: String,
    pub tag: String,
    /// `exec` or `landlock`.
    pub mode: String,
    /// Replicas this node should run.
    pub desired: u32,
    /// Why the latest spec, binary, secret or file could not be used.
    pub error: Option<String>,
    /// `metrics.port` / `metrics.path` of the spec (0 = none).
    pub metrics_port: u16,
    pub metrics_path: String,
    pub replicas: Vec<ReplicaSnapshot>,
}

/// One replica (one systemd unit).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicaSnapshot {
    pub index: u32,
    pub instance_id: String,
    pub unit: String,
    /// systemd's ActiveState / SubState.
    pub active_state: String,
    pub sub_state: String,
    /// narun status (running, crashed, failed, ...).
    pub status: String,
    pub pid: u32,
    /// Unix seconds since the unit became active (0 if not active).
    pub active_since_unix: i64,
    pub restarts: u32,
    pub last_exit_code: Option<i32>,
    /// From systemd's cgroup accounting of the unit (the app, not a wrapper).
    pub memory_current_bytes: Option<u64>,
    pub cpu_usage_seconds: Option<f64>,
    pub spec_hash: String,
}
