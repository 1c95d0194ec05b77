//! The node's side of NATS, in one place: what the agent loop asks of the
//! fleet ([`Fleet`]: publish a status, resolve a secret, download a binary
//! or a file) and the background tasks that feed it events (spec, secret,
//! file and binary watches), register the node and heartbeat.
//!
//! The loop never touches NATS itself: it is generic over [`Fleet`], so
//! its tests drive it with a recording fake.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::agent::{machine_id, Event, NodeError};
use super::binaries::{BinaryCache, Fetched};
use super::snapshot::NodeSnapshot;
use crate::store;

/// What the agent loop needs from NATS.
pub trait Fleet: Clone + Send + Sync + 'static {
    /// Publish one replica's status change (best effort: a lost one is
    /// superseded by the next change; `narun apps` also reads heartbeats).
    fn publish(&self, app: &str, update: store::StatusUpdate) -> impl Future<Output = ()> + Send;
    /// A secret as stored (the encrypted JSON) and its revision; `None`
    /// when there is no such secret.
    fn secret(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, u64)>, String>> + Send;
    /// Make sure a shared file (`mounts:`) is in the local file cache.
    fn file(&self, object: &str) -> impl Future<Output = Result<Fetched, String>> + Send;
    /// Make sure an app's binary for this node's platform is in the local
    /// binary cache, verified.
    fn binary(&self, app: &str, tag: &str) -> impl Future<Output = Result<Fetched, String>> + Send;
    /// Is the NATS connection up (for the admin UI)?
    fn connected(&self) -> bool;
}

/// [`Fleet`] over a NATS client.
#[derive(Clone)]
pub struct NatsFleet {
    nats: async_nats::Client,
    node_id: String,
    os: &'static str,
    arch: &'static str,
    binaries: BinaryCache,
    files: BinaryCache,
    /// The secrets bucket, looked up once it exists.
    secrets: Arc<tokio::sync::OnceCell<async_nats::jetstream::kv::Store>>,
}

impl NatsFleet {
    pub fn new(
        nats: async_nats::Client,
        node_id: String,
        (os, arch): (&'static str, &'static str),
        binaries: BinaryCache,
        files: BinaryCache,
    ) -> Self {
        NatsFleet {
            nats,
            node_id,
            os,
            arch,
            binaries,
            files,
            secrets: Arc::default(),
        }
    }
}

impl Fleet for NatsFleet {
    async fn publish(&self, app: &str, update: store::StatusUpdate) {
        if let Ok(json) = serde_json::to_vec(&update) {
            let _ = self
                .nats
                .publish(store::status_subject(app, &self.node_id), json.into())
                .await;
        }
    }

    async fn secret(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, String> {
        let kv = self
            .secrets
            .get_or_try_init(|| async {
                let js = store::jetstream(&self.nats).map_err(|e| e.to_string())?;
                store::open_kv(&js, store::SECRETS)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("KV bucket '{}' does not exist", store::SECRETS))
            })
            .await?;
        let entry = store::patiently(
            store::retry::DEFAULT_PATIENCE,
            &format!("cannot read secret {name}"),
            || kv.entry(name),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(entry
            .filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
            .map(|e| (e.value.to_vec(), e.revision)))
    }

    async fn file(&self, object: &str) -> Result<Fetched, String> {
        self.files
            .fetch_object(&self.nats, object)
            .await
            .map_err(|e| e.to_string())
    }

    async fn binary(&self, app: &str, tag: &str) -> Result<Fetched, String> {
        self.binaries
            .fetch(&self.nats, app, tag, self.os, self.arch)
            .await
    }

    fn connected(&self) -> bool {
        self.nats.connection_state() == async_nats::connection::State::Connected
    }
}

/// The buckets the agent uses (created on first use with the Go settings).
#[derive(Clone)]
struct Buckets {
    app_configs: async_nats::jetstream::kv::Store,
    node_states: async_nats::jetstream::kv::Store,
}

impl Buckets {
    async fn open(nats: &async_nats::Client) -> Result<Self, store::StoreError> {
        let js = store::jetstream(nats)?;
        let b = Buckets {
            app_configs: store::ensure_kv(&js, store::APP_CONFIGS).await?,
            node_states: store::ensure_kv(&js, store::NODE_STATES).await?,
        };
        store::ensure_object_store(&js, store::APP_BINARIES).await?;
        store::ensure_logs_stream(&js).await?;
        store::ensure_status_stream(&js).await?;
        Ok(b)
    }
}

/// Who this node is, as its heartbeats say.
#[derive(Clone)]
pub struct Identity {
    pub node_id: String,
    pub os: &'static str,
    pub arch: &'static str,
    pub labels: std::collections::BTreeMap<String, String>,
    pub systemd_version: String,
    pub started: time::OffsetDateTime,
    /// The signing key apps' NATS users are minted with, if any.
    pub app_identity: Option<String>,
}

/// The NATS side of a running agent, as one future (dropping it stops
/// everything it started): wait for NATS, check no other agent uses this
/// node id ([`Event::Fatal`] if one does), then forward logs (if `logs`
/// says how), heartbeat and feed spec, secret, file and binary changes to
/// the loop.
pub async fn serve(
    nats: async_nats::Client,
    disconnects: crate::nats::Disconnects,
    me: Identity,
    logs: Option<super::logs::Forwarder>,
    events: mpsc::UnboundedSender<Event>,
    snapshot: watch::Receiver<NodeSnapshot>,
) {
    crate::nats::wait_connected(&nats).await;
    let buckets = loop {
        match Buckets::open(&nats).await {
            Ok(b) => break b,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the narun buckets; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    if let Err(e) = check_unique(&buckets, &me.node_id).await {
        let _ = events.send(Event::Fatal(e));
        return;
    }
    let logs = async {
        match logs {
            Some(f) => f.run().await,
            None => std::future::pending::<()>().await,
        }
    };
    let specs = async {
        loop {
            // A watch is an ordered consumer on one server: when the
            // connection is lost (that server may be gone) it is made
            // again, replaying what it missed.
            let seen = disconnects.seen();
            crate::nats::wait_connected(&nats).await;
            tokio::select! {
                r = watch_specs(&buckets, &events) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "spec watch ended; restarting it");
                    }
                }
                _ = disconnects.since(seen) => {
                    tracing::info!("NATS connection lost: restarting the spec watch");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::join!(
        logs,
        specs,
        watch_secrets_and_files(&nats, &disconnects, &events),
        heartbeats(&buckets, &me, snapshot),
    );
}

/// Heartbeat every interval, and at once when the node's instances change
/// (so `narun nodes list` is current).
async fn heartbeats(buckets: &Buckets, me: &Identity, mut snapshot: watch::Receiver<NodeSnapshot>) {
    let mut tick = tokio::time::interval(store::HEARTBEAT_INTERVAL);
    let mut sent: Option<Vec<String>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = snapshot.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await; // the agent is stopping
                }
                if sent.as_ref() == Some(&managed_instances(&snapshot.borrow_and_update())) {
                    continue;
                }
            }
        }
        let managed = managed_instances(&snapshot.borrow_and_update());
        heartbeat(buckets, me, store::NODE_RUNNING, managed.clone()).await;
        sent = Some(managed);
    }
}

/// The instance ids the node runs (two generations of a replica are one).
fn managed_instances(snapshot: &NodeSnapshot) -> Vec<String> {
    let ids: BTreeSet<String> = snapshot
        .apps
        .iter()
        .flat_map(|a| a.replicas.iter().map(|r| r.instance_id.clone()))
        .collect();
    ids.into_iter().collect()
}

async fn heartbeat(buckets: &Buckets, me: &Identity, status: &str, managed: Vec<String>) {
    let state = store::NodeState {
        node_id: me.node_id.clone(),
        last_seen: time::OffsetDateTime::now_utc(),
        version: crate::VERSION.to_owned(),
        start_time: me.started,
        managed_instances: managed,
        status: status.to_owned(),
        os: me.os.to_owned(),
        arch: me.arch.to_owned(),
        labels: me.labels.clone(),
        machine_id: Some(machine_id()),
        systemd_version: Some(me.systemd_version.clone()),
        agent_pid: Some(std::process::id()),
        app_identity: me.app_identity.clone(),
    };
    match serde_json::to_vec(&state) {
        Ok(json) => {
            if let Err(e) = buckets.node_states.put(&me.node_id, json.into()).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode the node state"),
    }
}

/// Say the node is going away (if NATS is up): `narun nodes list` drops it
/// at once instead of after the heartbeat TTL.
pub async fn deregister(nats: &async_nats::Client, me: &Identity, snapshot: &NodeSnapshot) {
    if nats.connection_state() != async_nats::connection::State::Connected {
        return;
    }
    let goodbye = async {
        if let Ok(b) = Buckets::open(nats).await {
            heartbeat(
                &b,
                me,
                store::NODE_SHUTTING_DOWN,
                managed_instances(snapshot),
            )
            .await;
            let _ = b.node_states.delete(&me.node_id).await;
        }
        let _ = nats.flush().await;
    };
    // A NATS that accepts but never answers must not hold the exit.
    let _ = tokio::time::timeout(Duration::from_secs(2), goodbye).await;
}

/// Refuse to run beside another live agent with the same node id (R26).
async fn check_unique(buckets: &Buckets, node_id: &str) -> Result<(), NodeError> {
    let Ok(Some(raw)) = buckets.node_states.get(node_id).await else {
        return Ok(());
    };
    let Ok(state) = serde_json::from_slice::<store::NodeState>(&raw) else {
        return Ok(());
    };
    if state.status != store::NODE_RUNNING {
        return Ok(());
    }
    // The key exists, so it was written within the TTL. It is ours if it
    // comes from this machine and its agent process is gone (a restart).
    let mine = machine_id();
    let other_alive = match state.machine_id.as_deref() {
        Some(m) if m != mine => true,
        _ => state
            .agent_pid
            .is_some_and(|pid| pid != std::process::id() && is_narun_process(pid)),
    };
    if other_alive {
        return Err(NodeError::DuplicateNode {
            node_id: node_id.to_owned(),
            machine: state.machine_id.unwrap_or_default(),
            last_seen: state.last_seen.to_string(),
        });
    }
    Ok(())
}

/// Is `pid` a live narun process?
fn is_narun_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() == "narun")
        .unwrap_or(false)
}

/// Secret, file and binary changes, as events (restarted when a watch ends).
async fn watch_secrets_and_files(
    nats: &async_nats::Client,
    disconnects: &crate::nats::Disconnects,
    events: &mpsc::UnboundedSender<Event>,
) {
    loop {
        let seen = disconnects.seen();
        crate::nats::wait_connected(nats).await;
        let run = async {
            let js = store::jetstream(nats).map_err(|e| e.to_string())?;
            let secrets = store::ensure_kv(&js, store::SECRETS)
                .await
                .map_err(|e| e.to_string())?;
            let files = store::ensure_object_store(&js, store::FILES)
                .await
                .map_err(|e| e.to_string())?;
            let binaries = store::ensure_object_store(&js, store::APP_BINARIES)
                .await
                .map_err(|e| e.to_string())?;
            let mut s = secrets.watch_all().await.map_err(|e| e.to_string())?;
            let mut f = files.watch().await.map_err(|e| e.to_string())?;
            let mut b = binaries.watch().await.map_err(|e| e.to_string())?;
            loop {
                let event = tokio::select! {
                    // A new upload under an existing tag (R5), by `narun
                    // deploy` or the Go CLI: the apps running that object
                    // look it up again.
                    e = b.next() => match e {
                        Some(Ok(i)) => Event::Binary(i.name),
                        _ => return Err("binary watch ended".to_owned()),
                    },
                    e = s.next() => match e {
                        Some(Ok(e)) => Event::Changed(format!("secret {}", e.key)),
                        _ => return Err::<(), String>("secret watch ended".into()),
                    },
                    e = f.next() => match e {
                        Some(Ok(i)) => Event::Changed(format!("file {}", i.name)),
                        _ => return Err("file watch ended".into()),
                    },
                };
                if events.send(event).is_err() {
                    return Ok(()); // the agent stopped
                }
            }
        };
        tokio::select! {
            r = run => match r {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "secret/file watch ended; restarting it"),
            },
            _ = disconnects.since(seen) => {
                tracing::info!("NATS connection lost: restarting the secret and file watches");
                // What changed meanwhile is not replayed: look again.
                if events.send(Event::Changed("NATS reconnected".to_owned())).is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Replay every spec, then follow changes. After the replay,
/// [`Event::Synced`] names the apps NATS has (the agent forgets cached
/// apps deleted while it was offline).
async fn watch_specs(
    buckets: &Buckets,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let kv = &buckets.app_configs;
    let mut watch = kv
        .watch_with_history(">")
        .await
        .map_err(|e| e.to_string())?;
    // An empty bucket replays nothing: the initial sync is then done at
    // once, and nothing cached is forgotten (an empty or new NATS is not
    // a reason to stop every app).
    let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
    let mut any = false;
    while let Some(k) = keys.next().await {
        if k.is_ok() {
            any = true;
            break;
        }
    }
    let mut synced = !any;
    let mut seen = BTreeSet::new();
    if synced {
        let _ = events.send(Event::Synced { apps: None });
    }
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(|e| e.to_string())?;
        seen.insert(entry.key.clone());
        let yaml = match entry.operation {
            async_nats::jetstream::kv::Operation::Put => Some(entry.value.to_vec()),
            _ => None,
        };
        let _ = events.send(Event::Spec {
            key: entry.key.clone(),
            yaml,
        });
        if !synced && entry.delta == 0 {
            synced = true;
            let _ = events.send(Event::Synced {
                apps: Some(std::mem::take(&mut seen)),
            });
        }
    }
    Err("watch stream closed".into())
}
