//! The NATS data model: every bucket, stream and subject narun uses, their
//! settings, and the JSON documents on them. Names and formats are the Go
//! narun's (§5 of the reference), so Go and Rust components share a fleet.
//!
//! | Resource | Kind | Key / subject | Value |
//! | --- | --- | --- | --- |
//! | [`APP_CONFIGS`] | KV | app name | ServiceSpec YAML ([`crate::spec`]) |
//! | [`NODE_STATES`] | KV, TTL 45 s | node id | [`NodeState`] JSON, every 15 s |
//! | [`SECRETS`] | KV | secret name | [`StoredSecret`] JSON ([`secret`]) |
//! | [`APP_BINARIES`] | object store | [`binary::object_name`] | executable, [`binary`] metadata |
//! | [`FILES`] | object store | file name | file, `original-filename`, `upload-timestamp` |
//! | [`logs_subject`] | core subject | `logs.<app>.<node>` | [`LogEntry`] JSON per line |
//! | [`status_subject`] | core subject | `status.<app>.<node>` | [`StatusUpdate`] JSON per change |
//! | [`LOGS_STREAM`] | stream (new) | captures `logs.>` | retention for `narun logs` |
//! | [`STATUS_STREAM`] | stream (new) | captures `status.>` | retention for `narun apps info` |
//!
//! Logs and status stay core NATS publishes (Go compatible); the two
//! streams, created by whichever of the CLI or an agent comes first
//! ([`ensure_logs_stream`], [`ensure_status_stream`]), retain them so
//! `narun logs APP` shows recent history and `narun apps info` the last
//! state of each instance. An existing stream is used as it is (an
//! operator may have tuned its limits).
//!
//! What a node agent must do for the CLI to work: heartbeat a [`NodeState`]
//! (with its `labels`) every [`HEARTBEAT_INTERVAL`]; publish a
//! [`StatusUpdate`] on [`status_subject`] at every instance state change,
//! with `instance_id` = `<app>-<i>` and `spec_hash` = the
//! [`crate::spec::ServiceSpec::node_hash`] it runs (see [`StatusUpdate`]);
//! publish each output line as a [`LogEntry`] on [`logs_subject`]; call
//! [`ensure_logs_stream`] and [`ensure_status_stream`] at start.
//!
//! Buckets are created on first write with the settings below (readers
//! never create them), and [`jetstream()`] refuses, with a clear error, a
//! server without JetStream or older than 2.10.

pub mod binary;
pub mod replicas;
pub mod retry;
pub mod secret;
pub mod types;

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream, Context};
use async_nats::Client;

pub use retry::patiently;
pub use secret::{MasterKey, SecretError, StoredSecret};
pub use types::{
    InstanceState, LogEntry, NodeState, StatusUpdate, NODE_RUNNING, NODE_SHUTTING_DOWN,
};

/// KV: app name → ServiceSpec YAML.
pub const APP_CONFIGS: &str = "app-configs";
/// KV: node id → [`NodeState`] JSON, expiring after [`NODE_STATE_TTL`].
pub const NODE_STATES: &str = "node-runner-states";
/// KV: secret name → [`StoredSecret`] JSON.
pub const SECRETS: &str = "narun-secrets";
/// Object store: app binaries.
pub const APP_BINARIES: &str = "app-binaries";
/// Object store: shared files for `mounts`.
pub const FILES: &str = "narun-files";
/// Stream retaining `logs.>`.
pub const LOGS_STREAM: &str = "narun-logs";
/// Stream retaining `status.>`.
pub const STATUS_STREAM: &str = "narun-status";

/// A node's heartbeat expires after this (Go `NodeStateKVTTL`).
pub const NODE_STATE_TTL: Duration = Duration::from_secs(45);
/// Heartbeat period (Go: TTL / 3).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// Log retention: age.
pub const LOGS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Log retention: total size (oldest dropped first).
pub const LOGS_MAX_BYTES: i64 = 256 * 1024 * 1024;
/// Status retention: age.
pub const STATUS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Status retention: total size.
pub const STATUS_MAX_BYTES: i64 = 64 * 1024 * 1024;
/// Status retention: messages per `status.<app>.<node>` subject.
pub const STATUS_MAX_PER_SUBJECT: i64 = 1000;
/// The oldest nats-server narun works with (KV and object store features
/// async-nats relies on).
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);

/// `logs.<app>.<node>`.
pub fn logs_subject(app: &str, node: &str) -> String {
    format!("logs.{app}.{node}")
}

/// `status.<app>.<node>`.
pub fn status_subject(app: &str, node: &str) -> String {
    format!("status.{app}.{node}")
}

/// `logs.<app|*>.<node|*>`.
pub fn logs_filter(app: Option<&str>, node: Option<&str>) -> String {
    logs_subject(app.unwrap_or("*"), node.unwrap_or("*"))
}

/// `status.<app|*>.<node|*>`.
pub fn status_filter(app: Option<&str>, node: Option<&str>) -> String {
    status_subject(app.unwrap_or("*"), node.unwrap_or("*"))
}

/// Why the data model is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server predates 2.10.
    #[error(
        "nats-server {version} is too old: narun needs nats-server >= 2.10 (JetStream key-value \
         and object stores)"
    )]
    ServerTooOld {
        /// What the server reported.
        version: String,
    },
    /// JetStream is off.
    #[error(
        "JetStream is not enabled on the NATS server at {server}: narun keeps its specs, \
         binaries and secrets in JetStream (start nats-server with -js, or `jetstream {{}}` in \
         its configuration)"
    )]
    NoJetStream {
        /// The server's address.
        server: String,
    },
    /// A NATS operation failed.
    #[error("{what}: {source}")]
    Nats {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
}

impl StoreError {
    fn nats(what: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        StoreError::Nats {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// `2.10.3-beta` → `(2, 10)`.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A JetStream context and how long narun's calls through it keep
/// retrying what a cluster's leader elections and failovers make fail for a
/// moment ([`retry`]). Derefs to the async-nats [`Context`].
#[derive(Clone, Debug)]
pub struct Js {
    context: Context,
    patience: Duration,
    replicas: usize,
}

impl Js {
    /// Create missing buckets and streams with `replicas` copies (default:
    /// [`default_replicas`] of the connected cluster).
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Copies a bucket or stream created through this context gets.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Keep retrying for `patience` (default [`retry::DEFAULT_PATIENCE`]).
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Run `op` with this context's patience ([`retry::patiently`]).
    pub async fn patiently<T, E, F, Fut>(&self, what: &str, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: Into<async_nats::Error>,
    {
        retry::patiently(self.patience, what, op).await
    }
}

impl std::ops::Deref for Js {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.context
    }
}

impl std::ops::DerefMut for Js {
    fn deref_mut(&mut self) -> &mut Context {
        &mut self.context
    }
}

/// The JetStream context, after checking the connected server is recent
/// enough and has JetStream. `client` must be connected.
pub fn jetstream(client: &Client) -> Result<Js, StoreError> {
    let info = client.server_info();
    match major_minor(&info.version) {
        Some(v) if v >= MIN_SERVER_VERSION => {}
        _ => {
            return Err(StoreError::ServerTooOld {
                version: info.version,
            })
        }
    }
    if !info.jetstream {
        return Err(StoreError::NoJetStream {
            server: format!("{}:{}", info.host, info.port),
        });
    }
    Ok(Js {
        context: jetstream::new(client.clone()),
        patience: retry::DEFAULT_PATIENCE,
        replicas: default_replicas(cluster_size(&info)),
    })
}

/// Servers in the cluster of the connected server, as it advertises them
/// to clients (1 for a lone server, or one started with `no_advertise`).
pub fn cluster_size(info: &async_nats::ServerInfo) -> usize {
    let urls: std::collections::BTreeSet<&String> = info.connect_urls.iter().collect();
    urls.len().max(1)
}

/// Copies of each bucket and stream for a cluster of `servers`: one per
/// server up to three (JetStream's usual maximum; a copy survives the loss
/// of one server from two, of two from three).
pub fn default_replicas(servers: usize) -> usize {
    servers.clamp(1, 3)
}

/// The settings narun creates a KV bucket with (Go's, with descriptions).
pub fn kv_config(bucket: &str, replicas: usize) -> kv::Config {
    let (description, history, max_age) = match bucket {
        APP_CONFIGS => ("Narun configs", 5, Duration::ZERO),
        NODE_STATES => (
            "Stores node runner states and heartbeats.",
            1,
            NODE_STATE_TTL,
        ),
        SECRETS => ("Stores encrypted application secrets.", 1, Duration::ZERO),
        _ => ("", 1, Duration::ZERO),
    };
    kv::Config {
        bucket: bucket.to_owned(),
        description: description.to_owned(),
        history,
        max_age,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// The settings narun creates an object store with.
pub fn object_store_config(bucket: &str, replicas: usize) -> object_store::Config {
    let description = match bucket {
        APP_BINARIES => "Narun binaries",
        FILES => "Shared files for Narun applications",
        _ => "",
    };
    object_store::Config {
        bucket: bucket.to_owned(),
        description: Some(description.to_owned()),
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// The log retention stream: `logs.>`, 24 h, 256 MiB, oldest dropped.
pub fn logs_stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: LOGS_STREAM.to_owned(),
        description: Some("Recent app logs (narun logs)".to_owned()),
        subjects: vec!["logs.>".to_owned()],
        max_age: LOGS_MAX_AGE,
        max_bytes: LOGS_MAX_BYTES,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// The status retention stream: `status.>`, 7 days, 64 MiB, 1000 messages
/// per app and node.
pub fn status_stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: STATUS_STREAM.to_owned(),
        description: Some("Recent instance states (narun apps info)".to_owned()),
        subjects: vec!["status.>".to_owned()],
        max_age: STATUS_MAX_AGE,
        max_bytes: STATUS_MAX_BYTES,
        max_messages_per_subject: STATUS_MAX_PER_SUBJECT,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// Does stream `name` exist?
async fn stream_exists(js: &Js, name: &str) -> Result<bool, StoreError> {
    js.patiently(&format!("cannot look up stream {name}"), || async {
        match js.get_stream(name).await {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(e),
            },
        }
    })
    .await
}

/// KV bucket `bucket`, or None when it does not exist yet.
pub async fn open_kv(js: &Js, bucket: &str) -> Result<Option<kv::Store>, StoreError> {
    if !stream_exists(js, &format!("KV_{bucket}")).await? {
        return Ok(None);
    }
    js.patiently(&format!("cannot open KV bucket {bucket}"), || {
        js.get_key_value(bucket)
    })
    .await
    .map(Some)
}

/// KV bucket `bucket`, created with [`kv_config`] if missing.
pub async fn ensure_kv(js: &Js, bucket: &str) -> Result<kv::Store, StoreError> {
    if let Some(kv) = open_kv(js, bucket).await? {
        return Ok(kv);
    }
    let created = js
        .patiently(&format!("cannot create KV bucket {bucket}"), || {
            js.create_key_value(kv_config(bucket, js.replicas))
        })
        .await;
    match created {
        Ok(kv) => Ok(kv),
        // Created meanwhile by someone else, with other settings.
        Err(e) => match open_kv(js, bucket).await? {
            Some(kv) => Ok(kv),
            None => Err(e),
        },
    }
}

/// Object store `bucket`, or None when it does not exist yet.
pub async fn open_object_store(
    js: &Js,
    bucket: &str,
) -> Result<Option<object_store::ObjectStore>, StoreError> {
    if !stream_exists(js, &format!("OBJ_{bucket}")).await? {
        return Ok(None);
    }
    js.patiently(&format!("cannot open object store {bucket}"), || {
        js.get_object_store(bucket)
    })
    .await
    .map(Some)
}

/// `mtime` as nats.go writes it: Go's zero time, `0001-01-01T00:00:00Z`.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// Is `t` Go's zero time (an `mtime` nats.go left unset)?
pub fn is_go_zero_time(t: time::OffsetDateTime) -> bool {
    t.unix_timestamp() == GO_ZERO_TIME_UNIX && t.nanosecond() == 0
}

/// Every live object of object store `bucket`, sorted by name, or None when
/// the bucket does not exist yet.
///
/// An object's `modified` is its meta record's `mtime`, unless that is
/// missing or zero: then it is the time JetStream stored the meta record,
/// as nats.go reports it. nats.go (so the Go narun CLI) always writes a zero
/// `mtime`, on purpose, and reads the meta message's timestamp instead;
/// async-nats's `list` and `info` return the zero as it is and drop that
/// timestamp, so this lists the meta records itself.
pub async fn list_objects(
    js: &Js,
    bucket: &str,
) -> Result<Option<Vec<object_store::ObjectInfo>>, StoreError> {
    use futures_util::StreamExt;

    let Some(stream) = open_stream(js, &format!("OBJ_{bucket}")).await? else {
        return Ok(None);
    };
    let what = || format!("cannot list object store {bucket}");
    // What async-nats's `list` does: an ordered consumer of the meta
    // records, the last one of each object.
    let consumer = js
        .patiently(&what(), || {
            stream.create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: js.client().new_inbox(),
                filter_subject: format!("$O.{bucket}.M.>"),
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                description: Some("narun object list".to_owned()),
                ..Default::default()
            })
        })
        .await?;
    let mut infos = Vec::new();
    if consumer.cached_info().num_pending > 0 {
        let mut records = consumer
            .messages()
            .await
            .map_err(|e| StoreError::nats(what(), e))?;
        while let Some(record) = records.next().await {
            let record = record.map_err(|e| StoreError::nats(what(), e))?;
            let delivery = record.info().map_err(|e| StoreError::nats(what(), e))?;
            let (pending, stored) = (delivery.pending, delivery.published);
            match serde_json::from_slice::<object_store::ObjectInfo>(&record.payload) {
                Ok(mut info) if !info.deleted => {
                    if info.modified.is_none_or(is_go_zero_time) {
                        info.modified = Some(stored);
                    }
                    infos.push(info);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    subject = %record.subject,
                    error = %e,
                    "{bucket}: unreadable object meta record skipped"
                ),
            }
            if pending == 0 {
                break;
            }
        }
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(infos))
}

/// Object store `bucket`, created with [`object_store_config`] if missing.
pub async fn ensure_object_store(
    js: &Js,
    bucket: &str,
) -> Result<object_store::ObjectStore, StoreError> {
    if let Some(os) = open_object_store(js, bucket).await? {
        return Ok(os);
    }
    let created = js
        .patiently(&format!("cannot create object store {bucket}"), || {
            js.create_object_store(object_store_config(bucket, js.replicas))
        })
        .await;
    match created {
        Ok(os) => Ok(os),
        Err(e) => match open_object_store(js, bucket).await? {
            Some(os) => Ok(os),
            None => Err(e),
        },
    }
}

/// Stream `name`, or None when it does not exist.
pub async fn open_stream(js: &Js, name: &str) -> Result<Option<stream::Stream>, StoreError> {
    if !stream_exists(js, name).await? {
        return Ok(None);
    }
    js.patiently(&format!("cannot open stream {name}"), || {
        js.get_stream(name)
    })
    .await
    .map(Some)
}

async fn ensure_stream(js: &Js, config: stream::Config) -> Result<stream::Stream, StoreError> {
    let name = config.name.clone();
    js.patiently(&format!("cannot create stream {name}"), || {
        js.get_or_create_stream(config.clone())
    })
    .await
}

/// The `narun-logs` stream, created with [`logs_stream_config`] if missing.
pub async fn ensure_logs_stream(js: &Js) -> Result<stream::Stream, StoreError> {
    ensure_stream(js, logs_stream_config(js.replicas)).await
}

/// The `narun-status` stream, created with [`status_stream_config`] if
/// missing.
pub async fn ensure_status_stream(js: &Js) -> Result<stream::Stream, StoreError> {
    ensure_stream(js, status_stream_config(js.replicas)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_settings() {
        assert_eq!(logs_subject("hello", "node-1"), "logs.hello.node-1");
        assert_eq!(status_subject("hello", "node-1"), "status.hello.node-1");
        assert_eq!(logs_filter(Some("hello"), None), "logs.hello.*");
        assert_eq!(status_filter(None, None), "status.*.*");
        assert_eq!(kv_config(NODE_STATES, 1).max_age, Duration::from_secs(45));
        assert_eq!(kv_config(SECRETS, 1).history, 1);
        assert_eq!(major_minor("2.10.0"), Some((2, 10)));
        assert_eq!(major_minor("v2.9.25-RC.1"), Some((2, 9)));
        assert!(major_minor("2.9.10").unwrap() < MIN_SERVER_VERSION);
        assert!(major_minor("2.15.1").unwrap() >= MIN_SERVER_VERSION);
    }

    #[test]
    fn go_zero_time_is_recognised() {
        let zero = time::OffsetDateTime::parse(
            "0001-01-01T00:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(is_go_zero_time(zero));
        assert!(!is_go_zero_time(time::OffsetDateTime::UNIX_EPOCH));
        assert!(!is_go_zero_time(zero + Duration::from_nanos(1)));
    }
}
