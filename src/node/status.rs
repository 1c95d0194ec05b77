//! systemd unit state → Go-format instance status, as a pure function.

use crate::store::{InstanceState, StatusUpdate};
use crate::systemd::ServiceDetails;

/// What the agent reports for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    pub instance_id: String,
    /// starting | running | stopping | stopped | failed | crashed
    pub status: &'static str,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// systemd's `NRestarts`.
    pub restarts: u32,
    /// Node hash of the spec the instance runs (from its unit), if known.
    pub spec_hash: String,
}

impl InstanceStatus {
    fn new(id: &str, status: &'static str) -> Self {
        InstanceStatus {
            instance_id: id.to_owned(),
            status,
            pid: None,
            exit_code: None,
            error: None,
            restarts: 0,
            spec_hash: String::new(),
        }
    }

    /// The same status, tagged with the spec hash it runs: the part of a
    /// unit's hash the CLI can compute ([`crate::node::units::spec_part`]).
    pub fn with_hash(mut self, hash: &str) -> Self {
        self.spec_hash = crate::node::units::spec_part(hash).to_owned();
        self
    }
    pub fn starting(id: &str, why: &str) -> Self {
        InstanceStatus {
            error: Some(why.to_owned()),
            ..Self::new(id, "starting")
        }
    }
    pub fn stopping(id: &str) -> Self {
        Self::new(id, "stopping")
    }
    pub fn stopped(id: &str, exit_code: Option<i32>) -> Self {
        InstanceStatus {
            exit_code,
            ..Self::new(id, "stopped")
        }
    }
    pub fn failed(id: &str, error: &str) -> Self {
        InstanceStatus {
            error: Some(error.to_owned()),
            ..Self::new(id, "failed")
        }
    }
    /// Starting or running (something that should be seen running).
    pub fn is_active(&self) -> bool {
        matches!(self.status, "starting" | "running" | "crashed")
    }

    /// The Go `statusUpdate` JSON for `status.<app>.<node>`.
    pub fn to_update(&self, node_id: &str) -> StatusUpdate {
        let status = match self.status {
            "starting" => InstanceState::Starting,
            "running" => InstanceState::Running,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            "failed" => InstanceState::Failed,
            "crashed" => InstanceState::Crashed,
            _ => InstanceState::Unknown,
        };
        StatusUpdate {
            instance_id: self.instance_id.clone(),
            node_id: node_id.to_owned(),
            status,
            pid: self.pid.unwrap_or(0),
            exit_code: self.exit_code,
            error: self.error.clone().unwrap_or_default(),
            time: time::OffsetDateTime::now_utc(),
            spec_hash: self.spec_hash.clone(),
            restarts: Some(self.restarts),
        }
    }
}

/// Exit code as the shell would show it: the status for a normal exit,
/// 128 + signal for a kill.
fn exit_code(d: &ServiceDetails) -> Option<i32> {
    match d.exec_main_code {
        1 => Some(d.exec_main_status),           // CLD_EXITED
        2 | 3 => Some(128 + d.exec_main_status), // CLD_KILLED, CLD_DUMPED
        _ => None,
    }
}

/// What the landlock wrapper's exit codes mean.
fn wrapper_error(code: Option<i32>) -> Option<&'static str> {
    match code {
        Some(120) => Some("narun-exec: bad arguments or landlock policy (exit 120)"),
        Some(121) => Some("narun-exec: the secret files could not be handed to the app's user (exit 121)"),
        Some(122) => Some("narun-exec: Landlock cannot be enforced on this kernel; refusing to run unconfined (exit 122)"),
        Some(123) => Some("narun-exec: the app binary could not be executed (exit 123)"),
        _ => None,
    }
}

/// Derive the status of instance `id` from its unit's state.
pub fn derive_status(id: &str, d: &ServiceDetails) -> InstanceStatus {
    let mut s = match (d.active_state.as_str(), d.sub_state.as_str()) {
        // Exited cleanly under `restart: never|on-failure` (RemainAfterExit).
        ("active", "exited") => InstanceStatus::stopped(id, exit_code(d)),
        ("active", _) => InstanceStatus {
            pid: (d.main_pid > 0).then_some(d.main_pid),
            ..InstanceStatus::new(id, "running")
        },
        // Between a crash and systemd's restart.
        ("activating", "auto-restart") => InstanceStatus {
            exit_code: exit_code(d),
            error: Some(format!("exited ({}); systemd restarts it", d.result)),
            ..InstanceStatus::new(id, "crashed")
        },
        ("activating", _) | ("reloading", _) => InstanceStatus::starting(id, "Starting process"),
        ("deactivating", _) => InstanceStatus::stopping(id),
        ("failed", _) => InstanceStatus {
            exit_code: exit_code(d),
            error: Some(match d.result.as_str() {
                "start-limit-hit" => {
                    "restarted too often; systemd gave up (start-limit-hit)".into()
                }
                "exit-code" => "exited with a failure status".into(),
                "signal" | "core-dump" => "killed by a signal".into(),
                "oom-kill" => "killed: out of memory (MemoryMax)".into(),
                "timeout" => "timed out".into(),
                "resources" => "could not be started (binary, user or sandbox setup failed)".into(),
                other => format!("failed ({other})"),
            }),
            ..InstanceStatus::new(id, "failed")
        },
        _ => InstanceStatus::stopped(id, exit_code(d)),
    };
    s.restarts = d.n_restarts;
    if matches!(s.status, "failed" | "crashed") {
        if let Some(e) = wrapper_error(s.exit_code) {
            s.error = Some(e.to_owned());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(active: &str, sub: &str) -> ServiceDetails {
        ServiceDetails {
            active_state: active.into(),
            sub_state: sub.into(),
            ..ServiceDetails::default()
        }
    }

    #[test]
    fn the_status_table() {
        let running = ServiceDetails {
            main_pid: 42,
            n_restarts: 2,
            ..d("active", "running")
        };
        let s = derive_status("a-0", &running);
        assert_eq!((s.status, s.pid, s.restarts), ("running", Some(42), 2));

        let crashed = ServiceDetails {
            exec_main_code: 2,
            exec_main_status: 9,
            result: "signal".into(),
            ..d("activating", "auto-restart")
        };
        let s = derive_status("a-0", &crashed);
        assert_eq!((s.status, s.exit_code), ("crashed", Some(137)));

        let exited = ServiceDetails {
            exec_main_code: 1,
            exec_main_status: 3,
            result: "start-limit-hit".into(),
            ..d("failed", "failed")
        };
        let s = derive_status("a-0", &exited);
        assert_eq!((s.status, s.exit_code), ("failed", Some(3)));
        assert!(s.error.unwrap().contains("start-limit-hit"));

        assert_eq!(
            derive_status("a-0", &d("activating", "start")).status,
            "starting"
        );
        assert_eq!(
            derive_status("a-0", &d("deactivating", "stop-sigterm")).status,
            "stopping"
        );
        assert_eq!(
            derive_status("a-0", &d("inactive", "dead")).status,
            "stopped"
        );
        let finished = ServiceDetails {
            exec_main_code: 1,
            exec_main_status: 0,
            main_pid: 0,
            ..d("active", "exited")
        };
        let s = derive_status("a-0", &finished);
        assert_eq!((s.status, s.exit_code, s.pid), ("stopped", Some(0), None));
        let oom = ServiceDetails {
            result: "oom-kill".into(),
            ..d("failed", "failed")
        };
        assert!(derive_status("a-0", &oom)
            .error
            .unwrap()
            .contains("out of memory"));
    }
}
