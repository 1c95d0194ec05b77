//! The JSON documents on NATS, with the Go field names and time format.
//!
//! Times are RFC 3339 with nanoseconds, as Go's `time.Time` marshals
//! (`2025-12-21T19:18:35.1-05:00`); narun writes UTC (`...Z`) and reads any
//! offset. Go marshals a nil slice as `null`: every list accepts it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

/// Go-format timestamps (RFC 3339, nanoseconds, any offset).
pub mod go_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    /// Serialize as RFC 3339 with the significant nanoseconds.
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    /// Parse RFC 3339 (Go's zero time `0001-01-01T00:00:00Z` included).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|e| serde::de::Error::custom(format!("invalid time {text:?}: {e}")))
    }
}

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`).
pub fn go_zero_time() -> OffsetDateTime {
    time::Date::from_calendar_date(1, time::Month::January, 1)
        .expect("a valid date")
        .midnight()
        .assume_utc()
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `NodeState.status` while the agent runs.
pub const NODE_RUNNING: &str = "running";
/// `NodeState.status` written once on a clean shutdown, before the key is
/// deleted.
pub const NODE_SHUTTING_DOWN: &str = "shutting_down";

/// A node agent's heartbeat: KV `node-runner-states/<node_id>`, written at
/// start and every [`super::HEARTBEAT_INTERVAL`]; the bucket's TTL
/// ([`super::NODE_STATE_TTL`]) removes a node that stopped writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node id (= the KV key).
    pub node_id: String,
    /// Time of this heartbeat.
    #[serde(with = "go_time")]
    pub last_seen: OffsetDateTime,
    /// Agent version.
    pub version: String,
    /// When the agent started.
    #[serde(with = "go_time")]
    pub start_time: OffsetDateTime,
    /// Every instance the agent manages, whatever its state, sorted.
    #[serde(default, deserialize_with = "null_as_default")]
    pub managed_instances: Vec<String>,
    /// [`NODE_RUNNING`] or [`NODE_SHUTTING_DOWN`].
    pub status: String,
    /// Go `GOOS` name (`linux`).
    pub os: String,
    /// Go `GOARCH` name (`amd64`, `arm64`, ...; see
    /// [`super::binary::go_arch`]).
    pub arch: String,
    /// narun extension (Go ignores it): the node's labels, matched by a
    /// spec's `nodeSelector`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// narun extension: `/etc/machine-id` of the agent's machine, so a
    /// restarted agent is told apart from a second agent with the same id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// narun extension: the node's systemd version (`Manager.Version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_version: Option<String>,
    /// narun extension: the agent's process id on its machine, so a second
    /// agent on the same machine with the same id can be refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pid: Option<u32>,
    /// narun extension: the account signing key (public) the agent mints
    /// its apps' NATS users with; None when apps get no identity of their
    /// own (and from Go agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_identity: Option<String>,
}

/// One line of an instance's output, on `logs.<app>.<node>` (core NATS;
/// the `narun-logs` stream retains it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// `<app>-<index>`.
    pub instance_id: String,
    /// The app.
    pub app_name: String,
    /// The node.
    pub node_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// One line, without its newline.
    pub message: String,
    /// When the app wrote it (the journal's timestamp).
    #[serde(with = "go_time")]
    pub timestamp: OffsetDateTime,
    /// narun extension: the syslog priority journald recorded (0 emerg ..
    /// 7 debug); absent in Go's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

/// The state of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Being started (`error` holds `Starting process` or `Restarting (n/m)`).
    Starting,
    /// Running with `pid`.
    Running,
    /// Asked to stop.
    Stopping,
    /// Stopped on purpose (`exit_code` set).
    Stopped,
    /// Will not be restarted: pre-start failure or restart limit reached
    /// (`error` says why).
    Failed,
    /// Exited on its own; a restart may follow.
    Crashed,
    /// A state this version does not know.
    #[serde(other)]
    Unknown,
}

impl InstanceState {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Failed => "failed",
            InstanceState::Crashed => "crashed",
            InstanceState::Unknown => "unknown",
        }
    }
}

/// An instance state change, on `status.<app>.<node>` (core NATS; the
/// `narun-status` stream retains it).
///
/// For `narun deploy --wait` and `narun apps info` to work, a node agent
/// publishes one on every state change of every instance, with
/// `instance_id` = `<app>-<index>` and, as narun extensions, `spec_hash` =
/// [`crate::spec::ServiceSpec::node_hash`] of the spec the instance runs
/// and `restarts` = restarts so far. `--wait` counts an instance done when
/// its latest status is `running` (or `failed`) with the expected
/// `spec_hash` (a status without `spec_hash`, from a Go agent, counts when
/// it arrives after the spec was written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// `<app>-<index>`.
    pub instance_id: String,
    /// The node.
    pub node_id: String,
    /// The new state.
    pub status: InstanceState,
    /// Process id, for `running` and `stopping`; omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pid: u32,
    /// Exit status, only on exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why (failures) or a note (`Restarting (1/5)`); omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// When.
    #[serde(with = "go_time")]
    pub time: OffsetDateTime,
    /// narun extension: the node hash of the spec this instance runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spec_hash: String,
    /// narun extension: restarts of this instance so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl StatusUpdate {
    /// Restarts so far: the `restarts` extension, else parsed from Go's
    /// `Restarting (n/5)` note.
    pub fn restart_count(&self) -> Option<u32> {
        self.restarts.or_else(|| {
            let rest = self.error.strip_prefix("Restarting (")?;
            rest.split('/').next()?.parse().ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_documents_parse_and_round_trip() {
        let node = r#"{"node_id":"node-1","last_seen":"2025-12-21T19:18:35.1-05:00","version":"0.2.1-dev",
 "start_time":"2025-12-21T18:00:00-05:00","managed_instances":["hello-0","hello-1"],
 "status":"running","os":"linux","arch":"amd64"}"#;
        let n: NodeState = serde_json::from_str(node).unwrap();
        assert_eq!(n.managed_instances, vec!["hello-0", "hello-1"]);
        assert_eq!(n.last_seen.nanosecond(), 100_000_000);
        assert_eq!(n.last_seen.offset().whole_hours(), -5);
        let json = serde_json::to_string(&n).unwrap();
        assert!(
            json.contains(r#""last_seen":"2025-12-21T19:18:35.1-05:00""#),
            "{json}"
        );
        assert!(
            !json.contains("labels"),
            "extension omitted when empty: {json}"
        );
        assert_eq!(serde_json::from_str::<NodeState>(&json).unwrap(), n);
        // Go marshals a nil slice as null.
        let n: NodeState =
            serde_json::from_str(&node.replace(r#"["hello-0","hello-1"]"#, "null")).unwrap();
        assert!(n.managed_instances.is_empty());

        let log = r#"{"instance_id":"hello-0","app_name":"hello","node_id":"node-1","stream":"stdout","message":"hi","timestamp":"2025-12-21T19:18:35.123456789Z"}"#;
        let l: LogEntry = serde_json::from_str(log).unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), log);

        let st = r#"{"instance_id":"hello-0","node_id":"node-1","status":"running","pid":1234,"time":"2025-12-21T19:18:35Z"}"#;
        let s: StatusUpdate = serde_json::from_str(st).unwrap();
        assert_eq!(
            (s.status, s.pid, s.exit_code),
            (InstanceState::Running, 1234, None)
        );
        assert_eq!(serde_json::to_string(&s).unwrap(), st);
        let crashed = r#"{"instance_id":"hello-0","node_id":"node-1","status":"starting","exit_code":0,"error":"Restarting (2/5)","time":"0001-01-01T00:00:00Z"}"#;
        let s: StatusUpdate = serde_json::from_str(crashed).unwrap();
        assert_eq!(s.exit_code, Some(0));
        assert_eq!(s.restart_count(), Some(2));
        assert_eq!(s.time, go_zero_time());
        assert_eq!(serde_json::to_string(&s).unwrap(), crashed);
        let odd = st.replace("running", "paused");
        assert_eq!(
            serde_json::from_str::<StatusUpdate>(&odd).unwrap().status,
            InstanceState::Unknown
        );
    }
}
