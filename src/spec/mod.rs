//! The ServiceSpec: what to run, where, and how (KV `app-configs`, YAML).
//!
//! One module shared by `narun deploy` (which validates before uploading
//! anything) and the node agent (which computes its replicas and restarts
//! from it). Pure: no I/O.
//!
//! The YAML keys are the Go narun's (`internal/noderunner/config.go`), so an
//! existing Go spec loads unchanged. Differences from Go, all deliberate:
//!
//! - `mode` defaults to `exec` (Go rejected a spec without `mode`, which is
//!   why `narun deploy --name x --tag y` never started anything, R3);
//! - `mode: jail` is rejected with a clear "FreeBSD only" error, and a
//!   `jail:` block is accepted and ignored with a warning;
//! - `cgroupParent` is accepted and ignored with a warning (systemd owns the
//!   cgroups), so `memoryMB`/`cpuCores` no longer require it;
//! - `command` is accepted and ignored (Go never used it either);
//! - unknown keys are errors with a "did you mean" (Go silently ignored
//!   them: the Go example's `CPUCores` set nothing), and every problem is
//!   reported at once with its path and line ([`parse`]);
//! - app and node names must be valid NATS subject tokens, KV keys and
//!   systemd instance names ([`valid_app_name`], [`valid_node_id`]);
//! - the restart hash is per node and covers only what the node's
//!   instances run ([`ServiceSpec::node_hash`]), so scaling node-2 does not
//!   restart node-1 (R4), and it includes the binary digest, so re-uploading
//!   a tag restarts (R5).
//!
//! New keys: `description`, `labels`, `nodeSelector`, `restart`,
//! `stopTimeout`, `tasksMax`, `network`, `secrets`,
//! `restartOnSecretChange`, `landlock.bestEffort`, `health`,
//! `progressDeadline`.

mod de;
mod hash;
mod parse;
mod positions;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use parse::{parse, parse_detailed, Parsed, Severity, SpecErrors, SpecIssue, Strictness};

/// The architectures narun knows (Go `GOARCH` names, as detected from a
/// binary's header and reported by node agents).
pub const KNOWN_ARCHES: &[&str] = &[
    "amd64", "arm64", "riscv64", "386", "arm", "ppc64le", "s390x", "loong64",
];

/// Longest app name: instance ids (`<app>-<i>`), unit names and subjects
/// stay short.
pub const MAX_APP_NAME_LEN: usize = 63;

/// Longest node id.
pub const MAX_NODE_ID_LEN: usize = 128;

/// Most replicas per node (a larger number is certainly a typo).
pub const MAX_REPLICAS: u32 = 1000;

/// Is `name` usable as an app name? It must work unchanged as a NATS subject
/// token (`logs.<app>.<node>`), a KV key (`app-configs`), an object name
/// prefix, a NATS Micro service name and a systemd instance name
/// (`narun-app@<app>-<i>.service`): ASCII letters, digits, `_` and `-`, not
/// starting with `-`, at most [`MAX_APP_NAME_LEN`] characters.
pub fn valid_app_name(name: &str) -> bool {
    token_chars(name, MAX_APP_NAME_LEN)
}

/// Is `id` usable as a node id? Same alphabet as app names (it is a subject
/// token and a KV key: a dotted host name would add subject tokens), at most
/// [`MAX_NODE_ID_LEN`] characters.
pub fn valid_node_id(id: &str) -> bool {
    token_chars(id, MAX_NODE_ID_LEN)
}

fn token_chars(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Is `tag` usable as a binary tag? It is part of the object name
/// `<app>-<tag>-<os>-<arch>`: ASCII letters, digits, `.`, `_`, `+`, `-`, at
/// most 128 characters, not starting with `-` or `.`.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['-', '.'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// Is `name` usable as a secret name (a key of KV `narun-secrets`, and the
/// AES-GCM additional data)? The NATS KV key alphabet `[-/_=.a-zA-Z0-9]`,
/// not starting or ending with `.`, at most 255 characters.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.'))
}

/// Is `name` usable as a shared file name (an object of `narun-files`)?
/// Not empty, no `/`, no control characters, not `.` or `..`, at most 255
/// bytes (Go only rejected `/`).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

/// Is `key` usable as a label key? `[A-Za-z0-9._/-]`, starting with a
/// letter or digit, at most 63 characters.
pub fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 63
        && key.as_bytes()[0].is_ascii_alphanumeric()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

/// The account of a spec's `user:`, in its one accepted spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// A user name, resolved on the node (its user database decides the uid).
    Name(String),
    /// A numeric uid, in canonical decimal form.
    Uid(u32),
}

impl UserRef {
    /// Does this spelling name root by itself (before any lookup)?
    pub fn is_root(&self) -> bool {
        matches!(self, UserRef::Uid(0)) || matches!(self, UserRef::Name(n) if n == "root")
    }
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserRef::Name(n) => f.write_str(n),
            UserRef::Uid(u) => write!(f, "{u}"),
        }
    }
}

/// Parse a spec's `user:`: a user name (ASCII letters, digits, `_`, `-`, not
/// starting with a digit or `-`, at most 32) or a uid in canonical decimal
/// (no sign, no leading zero, no white space; not 65535 or 4294967295, which
/// systemd treats as invalid). Anything else is an error, because two
/// spellings of one account (`0`, `00`, ` 0`) would let a spec slip past a
/// check written for one of them.
pub fn parse_user(u: &str) -> Result<UserRef, String> {
    let b = u.as_bytes();
    if b.is_empty() {
        return Err("empty".into());
    }
    if b.iter().all(u8::is_ascii_digit) {
        if b.len() > 1 && b[0] == b'0' {
            return Err(format!(
                "{u:?} has a leading zero: write the uid in plain decimal"
            ));
        }
        return match u.parse::<u32>() {
            Ok(uid) if uid == u16::MAX as u32 || uid == u32::MAX => {
                Err(format!("uid {uid} is reserved (invalid in systemd)"))
            }
            Ok(uid) => Ok(UserRef::Uid(uid)),
            Err(_) => Err(format!("{u:?} is not a 32-bit uid")),
        };
    }
    let ok = u.len() <= 32
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
    if ok {
        Ok(UserRef::Name(u.to_owned()))
    } else {
        Err(format!(
            "{u:?} is not a valid user name or uid: letters, digits, '_' and '-', not \
             starting with a digit or '-', at most 32; or a uid in plain decimal"
        ))
    }
}

/// How the app's process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Run the binary as is (default; Go required `mode` and had no default).
    #[default]
    Exec,
    /// Run it under a Landlock ruleset built from [`Landlock`].
    Landlock,
}

impl Mode {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exec => "exec",
            Mode::Landlock => "landlock",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The app's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network (systemd default).
    Host,
    /// A private network namespace with only `lo` (`PrivateNetwork=yes`);
    /// `nonet.localPorts` are forwarded into it.
    None,
}

impl Network {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Host => "host",
            Network::None => "none",
        }
    }
}

/// When an exited instance is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Whatever the exit status, including 0 (Go's only behaviour).
    Always,
    /// After a non-zero exit, a signal or a watchdog timeout (default;
    /// systemd `Restart=on-failure`).
    #[default]
    OnFailure,
    /// Never: the instance stays stopped or failed.
    Never,
}

impl RestartPolicy {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

/// A duration written `10s`, `500ms`, `2m`, `1m30s`, `1h` (or a bare
/// integer, in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecDuration(pub Duration);

impl SpecDuration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        SpecDuration(Duration::from_secs(secs))
    }

    /// Parse the YAML spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        crate::duration::parse(s).map(SpecDuration)
    }
}

impl fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for SpecDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One explicitly named node and its replica count (Go `nodes[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeTarget {
    /// The node id (the agent's `--node-id`). Required.
    #[serde(deserialize_with = "de::string")]
    pub name: String,
    /// Instances on that node, `<app>-0` .. `<app>-<replicas-1>`. Required,
    /// 1..=[`MAX_REPLICAS`].
    pub replicas: u32,
}

/// Nodes chosen by their labels and architecture rather than by name (new;
/// Go only had `nodes[]`). A node named in `nodes` takes its count from
/// there; every other node matching all `labels` and one of `arch` runs
/// `replicas` instances.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSelector {
    /// Labels the node must all carry (as reported in its heartbeat).
    #[serde(
        deserialize_with = "de::string_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Architectures (Go names, [`KNOWN_ARCHES`]); empty means any. A single
    /// string is accepted for a one-element list.
    #[serde(
        deserialize_with = "de::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arch: Vec<String>,
    /// Instances on each matching node. Default 1.
    #[serde(default = "one")]
    pub replicas: u32,
}

fn one() -> u32 {
    1
}

/// An environment variable (Go `env[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvVar {
    /// The variable name. Required; no `=`, whitespace or NUL.
    #[serde(deserialize_with = "de::string")]
    pub name: String,
    /// Literal value (`""` when absent; Go always serialized it).
    #[serde(deserialize_with = "de::string")]
    pub value: String,
    /// Name of a secret in KV `narun-secrets`, decrypted at instance start;
    /// exclusive with `value`.
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub value_from_secret: String,
}

/// Where a mounted file comes from (Go `mounts[].source`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MountSource {
    /// Object name in the `narun-files` object store. Required.
    #[serde(deserialize_with = "de::string")]
    pub object_store: String,
}

/// A file placed in the instance's working directory (Go `mounts[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    /// Relative path under the instance work dir; no `..`, not absolute.
    #[serde(deserialize_with = "de::string")]
    pub path: String,
    /// Where the content comes from.
    #[serde(deserialize_with = "de::or_default")]
    pub source: MountSource,
}

/// A secret delivered as a file (new): `/run/secrets/<path>` in the app's
/// namespace, owned by the app's user, mode 0400.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretFile {
    /// The secret's name in KV `narun-secrets`. Required.
    #[serde(deserialize_with = "de::string")]
    pub name: String,
    /// File name under `/run/secrets` (one path component); default `name`
    /// (with `/` replaced by `_`).
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub path: String,
}

impl SecretFile {
    /// The file name under `/run/secrets`.
    pub fn file_name(&self) -> String {
        if self.path.is_empty() {
            self.name.replace('/', "_")
        } else {
            self.path.clone()
        }
    }
}

/// Where `secrets:` files appear inside the app's namespace.
pub const SECRETS_DIR: &str = "/run/secrets";

/// One extra Landlock rule (Go `landlock.paths[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LandlockPath {
    /// Absolute path.
    #[serde(deserialize_with = "de::string")]
    pub path: String,
    /// Access: letters from `r` (read), `w` (write), `x` (execute), `c`
    /// (create/remove entries, directories only).
    #[serde(deserialize_with = "de::string")]
    pub modes: String,
}

/// Landlock rules for `mode: landlock` (Go `landlock`): each flag grants
/// the go-landlock path group of the same name. All default to false.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Landlock {
    /// Shared libraries and the dynamic loader.
    #[serde(skip_serializing_if = "is_false")]
    pub shared: bool,
    /// `/dev/null`, `/dev/urandom`, locale and zoneinfo files.
    #[serde(skip_serializing_if = "is_false")]
    pub stdio: bool,
    /// Terminal devices and terminfo.
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    /// Read-write `/tmp`.
    #[serde(skip_serializing_if = "is_false")]
    pub tmp: bool,
    /// `/proc/stat`, `/proc/meminfo`, `/proc/cpuinfo` and similar.
    #[serde(skip_serializing_if = "is_false")]
    pub vminfo: bool,
    /// Files needed for DNS resolution.
    #[serde(skip_serializing_if = "is_false")]
    pub dns: bool,
    /// The system CA certificates.
    #[serde(skip_serializing_if = "is_false")]
    pub certs: bool,
    /// Extra paths.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub paths: Vec<LandlockPath>,
    /// New: on a kernel without Landlock, run unconfined with a warning
    /// instead of failing (for mixed fleets). Default false: the instance
    /// fails (narun-exec exit code 122).
    #[serde(rename = "bestEffort", skip_serializing_if = "is_false")]
    pub best_effort: bool,
}

impl Landlock {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Landlock::default()
    }
}

/// A host port reachable from a `network: none` app (Go `nonet.localPorts[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalPort {
    /// 1025..=65535.
    pub port: u16,
    /// `tcp` (default) or `udp`; normalized to lowercase.
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub protocol: String,
}

/// Go `nonet`: ports of the host forwarded into the app's private network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NoNet {
    /// The forwarded ports.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub local_ports: Vec<LocalPort>,
}

/// Where the app serves Prometheus metrics (Go `metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// The app's port, 1..=65535; 0 (default) means no metrics.
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    /// HTTP path; default `/metrics` when `port` is set.
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub path: String,
}

/// When a replica is ready (new).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Health {
    /// The app tells systemd when it is ready (`sd_notify` `READY=1`; the
    /// unit gets `Type=notify`). Unset: yes for binaries built with the
    /// `narun::consumer` library (which sends READY=1 once its NATS
    /// endpoint is subscribed), no for others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<bool>,
    /// Without notify: ready once the process has stayed up this long
    /// without a restart. Default 2s; 0s..=10m.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_period: Option<SpecDuration>,
    /// Ready once this command exits 0 (argv, no shell; run inside the
    /// app's sandbox as its user).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    /// Ready once a TCP connection to this port on 127.0.0.1 (the app's
    /// own loopback when its network is private) is accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<u16>,
    /// Ready once `GET path` on 127.0.0.1:port answers 2xx or 3xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// Between attempts of the check. Default 1s; 100ms..=1m.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<SpecDuration>,
    /// One attempt's limit. Default 1s; 100ms..=1m.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<SpecDuration>,
}

/// `nats:` (new): under per-app identity, what an app may do on NATS
/// besides serving its own subject.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsAccess {
    /// Subjects it may publish to (requests to other services included;
    /// wildcards allowed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
    /// KV buckets it may read (get, keys, watch).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<String>,
}

/// `http:` (proxy mode).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpProxy {
    /// The port the app listens on, on 127.0.0.1, told in `PORT`. 0 or
    /// absent: narun picks a free one per replica (and per generation, so
    /// a rollout's two generations never compete for it).
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub port: u16,
}

/// `health.http`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpCheck {
    pub port: u16,
    /// Default `/`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

impl Health {
    /// Has a health check (`exec`, `tcp` or `http`).
    pub fn has_check(&self) -> bool {
        !self.exec.is_empty() || self.tcp.is_some() || self.http.is_some()
    }
}

/// Default [`Health::interval`] and [`Health::timeout`].
pub const DEFAULT_CHECK_INTERVAL: SpecDuration = SpecDuration::from_secs(1);

/// Default [`Health::stable_period`].
pub const DEFAULT_STABLE_PERIOD: SpecDuration = SpecDuration::from_secs(2);
/// Default [`ServiceSpec::progress_deadline`].
pub const DEFAULT_PROGRESS_DEADLINE: SpecDuration = SpecDuration::from_secs(60);

impl ServiceSpec {
    /// How long a new replica may take to become ready.
    pub fn progress_deadline(&self) -> std::time::Duration {
        self.progress_deadline
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE)
            .0
    }
    /// How long a replica without notify must stay up to be ready.
    pub fn stable_period(&self) -> std::time::Duration {
        self.health.stable_period.unwrap_or(DEFAULT_STABLE_PERIOD).0
    }
}

/// Restart policy (new). Maps to systemd `Restart=`, `RestartSec=`,
/// `StartLimitBurst=` and `StartLimitIntervalSec=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Restart {
    /// `always`, `on-failure` (default) or `never`.
    pub policy: RestartPolicy,
    /// Wait before a restart. Default 2s (Go's `RestartDelay`).
    pub delay: SpecDuration,
    /// At most this many restarts within `window`, then the instance is
    /// `failed`. Default 5 (Go's `MaxRestarts`, which Go never reset); 0
    /// means no limit.
    pub max_restarts: u32,
    /// The window `maxRestarts` counts in. Default 10m.
    pub window: SpecDuration,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::OnFailure,
            delay: SpecDuration::from_secs(2),
            max_restarts: 5,
            window: SpecDuration::from_secs(600),
        }
    }
}

/// Go's FreeBSD jail settings: accepted so Go specs load, never used.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Jail {
    /// Jail host name.
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub hostname: String,
    /// IPv4 aliases.
    #[serde(
        rename = "ip4Addresses",
        deserialize_with = "de::strings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ip4_addresses: Vec<String>,
    /// `allow.raw_sockets`.
    #[serde(skip_serializing_if = "is_false")]
    pub allow_raw_sockets: bool,
    /// devfs ruleset.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub devfs_ruleset: i64,
    /// Mount the host certificates.
    #[serde(skip_serializing_if = "is_false")]
    pub mount_system_certs: bool,
}

/// The spec of one app: KV `app-configs/<name>`, YAML. Build it with
/// [`parse`], which validates; every default is documented on its field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// App name = KV key. Required; see [`valid_app_name`].
    #[serde(deserialize_with = "de::string")]
    pub name: String,
    /// Free text shown by `narun apps info`. Default empty.
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    /// Free-form labels (metadata only). Default empty.
    #[serde(
        deserialize_with = "de::string_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Binary tag: the object `<name>-<tag>-<os>-<arch>`. Required; see
    /// [`valid_tag`].
    #[serde(deserialize_with = "de::string")]
    pub tag: String,
    /// Execution mode. Default `exec`.
    pub mode: Mode,
    /// Nodes by id with their replica count. Default none.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nodes: Vec<NodeTarget>,
    /// Nodes by labels/arch. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<NodeSelector>,
    /// argv[1..]. Default none.
    #[serde(
        deserialize_with = "de::strings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    /// Environment. Default none.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<EnvVar>,
    /// Files from `narun-files` placed in the work dir. Default none.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mounts: Vec<Mount>,
    /// Secrets delivered as files under `/run/secrets` (new). Default none.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<SecretFile>,
    /// Restart the app's instances when one of its secrets (`env[].
    /// valueFromSecret` or `secrets`) changes (new). Default true. When
    /// false, files under `/run/secrets` are updated in place and secret
    /// environment variables take effect at the next restart.
    #[serde(skip_serializing_if = "is_true")]
    pub restart_on_secret_change: bool,
    /// Landlock rules; used only with `mode: landlock`.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "Landlock::is_empty"
    )]
    pub landlock: Landlock,
    /// User to run as; default empty = the agent's choice (a dynamic user).
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub user: String,
    /// Memory the app is guaranteed (systemd `MemoryLow=`), MiB; 0 = none.
    #[serde(rename = "memoryMB", skip_serializing_if = "is_zero_u64")]
    pub memory_mb: u64,
    /// Hard memory limit (`MemoryMax=`), MiB; 0 = none. Must be >=
    /// `memoryMB` when both are set. Unlike Go, it works without `memoryMB`.
    #[serde(rename = "memoryMaxMB", skip_serializing_if = "is_zero_u64")]
    pub memory_max_mb: u64,
    /// CPU bandwidth in cores (`CPUQuota=`, 0.5 = 50%); 0 = no limit.
    #[serde(deserialize_with = "de::float", skip_serializing_if = "is_zero_f64")]
    pub cpu_cores: f64,
    /// Most tasks (threads + processes, `TasksMax=`); absent = systemd's
    /// default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks_max: Option<u32>,
    /// `host` or `none`; absent = `none` when `nonet.localPorts` is set,
    /// else `host`. See [`ServiceSpec::network`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Join this existing network namespace (absolute path); default none.
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub network_namespace_path: String,
    /// Go `nonet`: host ports forwarded into a `network: none` app.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "is_default"
    )]
    pub nonet: NoNet,
    /// Prometheus scrape target of the app.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "is_default"
    )]
    pub metrics: Metrics,
    /// Restart policy; default on-failure, 2s, 5 per 10m.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "is_default"
    )]
    pub restart: Restart,
    /// When a replica is ready (new): the rollout of a new version waits
    /// for it before stopping the old one.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "is_default"
    )]
    pub health: Health,
    /// Proxy mode (new): the app is an ordinary HTTP server; narun's
    /// bridge serves its NATS Micro service and forwards each request to
    /// it on 127.0.0.1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProxy>,
    /// What the app may do on NATS besides serving its own subject, on a
    /// node that gives apps their own NATS identity (new).
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "is_default"
    )]
    pub nats: NatsAccess,
    /// A new replica that is not ready within this time (or exits, or
    /// restarts, before it is) fails the rollout, which is rolled back.
    /// Default 60s; 1s..=1h.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<SpecDuration>,
    /// Time between SIGTERM and SIGKILL on stop. Default 10s (Go's
    /// `StopTimeout`); 1s..=1h.
    #[serde(skip_serializing_if = "is_default_stop_timeout")]
    pub stop_timeout: SpecDuration,
    /// Go `command`: accepted and unused (Go never used it either).
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub command: String,
    /// Go `cgroupParent`: accepted and ignored with a warning; systemd
    /// places each instance in `narun.slice`.
    #[serde(
        deserialize_with = "de::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub cgroup_parent: String,
    /// Go FreeBSD jail settings: accepted and ignored with a warning.
    #[serde(
        deserialize_with = "de::or_default",
        skip_serializing_if = "is_default"
    )]
    pub jail: Jail,
}

/// Default stop timeout (Go's `StopTimeout`).
pub const DEFAULT_STOP_TIMEOUT: SpecDuration = SpecDuration::from_secs(10);

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec {
            name: String::new(),
            description: String::new(),
            labels: BTreeMap::new(),
            tag: String::new(),
            mode: Mode::Exec,
            nodes: Vec::new(),
            node_selector: None,
            args: Vec::new(),
            env: Vec::new(),
            mounts: Vec::new(),
            secrets: Vec::new(),
            restart_on_secret_change: true,
            landlock: Landlock::default(),
            user: String::new(),
            memory_mb: 0,
            memory_max_mb: 0,
            cpu_cores: 0.0,
            tasks_max: None,
            network: None,
            network_namespace_path: String::new(),
            nonet: NoNet::default(),
            metrics: Metrics::default(),
            restart: Restart::default(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            health: Health::default(),
            http: None,
            nats: NatsAccess::default(),
            progress_deadline: None,
            command: String::new(),
            cgroup_parent: String::new(),
            jail: Jail::default(),
        }
    }
}

impl ServiceSpec {
    /// Instances node `node_id` (with heartbeat `labels` and Go `arch`)
    /// must run: its `nodes[]` entry if it has one, else the
    /// `nodeSelector`'s count if it matches, else 0.
    pub fn replicas_for(
        &self,
        node_id: &str,
        labels: &BTreeMap<String, String>,
        arch: &str,
    ) -> u32 {
        if let Some(n) = self.nodes.iter().find(|n| n.name == node_id) {
            return n.replicas;
        }
        match &self.node_selector {
            Some(sel) if sel.matches(labels, arch) => sel.replicas,
            _ => 0,
        }
    }

    /// The effective network: explicit `network`, else `none` when
    /// `nonet.localPorts` is set (Go's `nonet` intent), else `host`.
    pub fn network(&self) -> Network {
        match self.network {
            Some(n) => n,
            None if !self.nonet.local_ports.is_empty() => Network::None,
            None => Network::Host,
        }
    }

    /// The metrics path (`/metrics` unless set).
    pub fn metrics_path(&self) -> &str {
        if self.metrics.path.is_empty() {
            "/metrics"
        } else {
            &self.metrics.path
        }
    }

    /// Instance id of replica `index` (Go's `<name>-<index>`).
    pub fn instance_id(&self, index: u32) -> String {
        instance_id(&self.name, index)
    }

    /// A stable hash of what node `node_id`'s instances run: every field
    /// that reaches an instance (tag, mode, args, env, mounts, limits,
    /// sandbox, restart, ...) plus the node's `arch` and the SHA-256
    /// `binary_digest` of the object it runs (`SHA-256=...`). Placement
    /// (`nodes`, `nodeSelector`, replica counts) and metadata
    /// (`description`, `labels`, ignored Go keys) are left out, so scaling
    /// any node restarts nothing (the agent adds or removes instances), and
    /// a new upload of the same tag does restart. 16 hex digits.
    ///
    /// Stable across narun versions: defaults are not serialized, so a new
    /// optional field does not change existing hashes. Secret values and
    /// mounted file contents are not covered here; the node agent appends
    /// their KV revisions and digests to `binary_digest`, so a changed
    /// secret (unless `restartOnSecretChange: false`) or file restarts the
    /// apps that use it.
    pub fn node_hash(
        &self,
        node_id: &str,
        labels: &BTreeMap<String, String>,
        arch: &str,
        binary_digest: &str,
    ) -> String {
        hash::node_hash(self, node_id, labels, arch, binary_digest)
    }
}

impl NodeSelector {
    /// Does a node with these labels and arch match?
    pub fn matches(&self, labels: &BTreeMap<String, String>, arch: &str) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && (self.arch.is_empty() || self.arch.iter().any(|a| a == arch))
    }
}

/// Instance id `<app>-<index>` (Go format; the agent's systemd instance
/// name and the `instance_id` of logs and status).
pub fn instance_id(app: &str, index: u32) -> String {
    format!("{app}-{index}")
}

/// The app name and replica index of an instance id (`hello-0` →
/// `("hello", 0)`), as Go's `InstanceIDToAppName` (text before the last `-`).
pub fn split_instance_id(id: &str) -> Option<(&str, u32)> {
    let (app, index) = id.rsplit_once('-')?;
    Some((app, index.parse().ok()?))
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}
fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}
fn is_default_stop_timeout(d: &SpecDuration) -> bool {
    *d == DEFAULT_STOP_TIMEOUT
}
fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

#[cfg(test)]
mod tests;
