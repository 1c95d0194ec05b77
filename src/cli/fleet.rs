//! Reading the fleet's state: specs, node heartbeats, retained statuses.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::kv;
use futures_util::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::{CliResult, Ctx};
use crate::spec::{self, ServiceSpec, SpecErrors, Strictness};
use crate::store::Js;
use crate::store::{self, InstanceState, NodeState, StatusUpdate};

/// One stored spec.
pub struct AppEntry {
    /// The YAML as stored.
    pub raw: String,
    /// KV revision.
    pub revision: u64,
    /// When this revision was written.
    pub updated: OffsetDateTime,
    /// The spec, read leniently (a spec stored by the Go CLI may carry keys
    /// narun does not know: those are warnings here).
    pub spec: Result<spec::Parsed, SpecErrors>,
}

impl AppEntry {
    fn new(raw: String, revision: u64, updated: OffsetDateTime) -> Self {
        let spec = spec::parse_detailed(&raw, Strictness::Lenient);
        AppEntry {
            raw,
            revision,
            updated,
            spec,
        }
    }

    /// The valid spec, if it is one.
    pub fn valid(&self) -> Option<&ServiceSpec> {
        self.spec.as_ref().ok().map(|p| &p.spec)
    }
}

/// The spec of `app`, if the bucket and the key exist.
pub async fn load_app(ctx: &Ctx, js: &Js, app: &str) -> CliResult<Option<AppEntry>> {
    let Some(kv) = store::open_kv(js, store::APP_CONFIGS).await? else {
        return Ok(None);
    };
    entry(ctx, &kv, app).await
}

async fn entry(ctx: &Ctx, kv: &kv::Store, key: &str) -> CliResult<Option<AppEntry>> {
    let e = ctx
        .timed(&format!("cannot read app-configs/{key}"), || kv.entry(key))
        .await?;
    Ok(e.filter(|e| e.operation == kv::Operation::Put).map(|e| {
        AppEntry::new(
            String::from_utf8_lossy(&e.value).into_owned(),
            e.revision,
            e.created,
        )
    }))
}

/// Every stored spec, by app name.
pub async fn load_apps(ctx: &Ctx, js: &Js) -> CliResult<BTreeMap<String, AppEntry>> {
    let mut out = BTreeMap::new();
    let Some(kv) = store::open_kv(js, store::APP_CONFIGS).await? else {
        return Ok(out);
    };
    for key in keys(ctx, &kv, store::APP_CONFIGS).await? {
        if let Some(e) = entry(ctx, &kv, &key).await? {
            out.insert(key, e);
        }
    }
    Ok(out)
}

/// The keys of a KV bucket.
pub async fn keys(ctx: &Ctx, kv: &kv::Store, bucket: &str) -> CliResult<Vec<String>> {
    let what = format!("cannot list the keys of {bucket}");
    let keys = ctx
        .timed(&what, || async {
            let keys = kv.keys().await?;
            keys.try_collect::<Vec<String>>()
                .await
                .map_err(anyhow::Error::from)
        })
        .await?;
    Ok(keys)
}

/// A node's heartbeat and how fresh it is.
pub struct Node {
    /// The last heartbeat.
    pub state: NodeState,
}

impl Node {
    /// `running`, `shutting_down`, or `stale` when the heartbeat is older
    /// than the TTL (the key is about to expire).
    pub fn status(&self, now: OffsetDateTime) -> String {
        let ttl = time::Duration::try_from(store::NODE_STATE_TTL).unwrap_or(time::Duration::ZERO);
        if now - self.state.last_seen > ttl {
            "stale".into()
        } else {
            self.state.status.clone()
        }
    }
}

/// Every live node (heartbeat not expired), by id.
pub async fn load_nodes(ctx: &Ctx, js: &Js) -> CliResult<BTreeMap<String, Node>> {
    let mut out = BTreeMap::new();
    let Some(kv) = store::open_kv(js, store::NODE_STATES).await? else {
        return Ok(out);
    };
    for key in keys(ctx, &kv, store::NODE_STATES).await? {
        let value = ctx
            .timed(&format!("cannot read {}/{key}", store::NODE_STATES), || {
                kv.get(&key)
            })
            .await?;
        let Some(value) = value else { continue };
        match serde_json::from_slice::<NodeState>(&value) {
            Ok(state) => {
                out.insert(key, Node { state });
            }
            Err(e) => tracing::warn!(node = key, error = %e, "unreadable node state"),
        }
    }
    Ok(out)
}

/// What the retained statuses say about one instance.
#[derive(Debug, Clone)]
pub struct InstanceSummary {
    /// The latest status.
    pub last: StatusUpdate,
    /// Restarts so far (the `restarts` extension, Go's `Restarting (n/5)`
    /// note, or the count of crashes seen).
    pub restarts: u32,
    /// The latest failure text or non-zero exit.
    pub last_error: String,
}

/// Latest status of each instance (by node, then instance id), from the
/// `narun-status` stream; empty when it does not exist.
pub async fn load_statuses(
    ctx: &Ctx,
    js: &Js,
    app: Option<&str>,
) -> CliResult<BTreeMap<(String, String), InstanceSummary>> {
    let mut out = BTreeMap::new();
    let Some(stream) = store::open_stream(js, store::STATUS_STREAM).await? else {
        return Ok(out);
    };
    let filter = store::status_filter(app, None);
    let what = "cannot read the narun-status stream";
    let consumer = ctx
        .timed(what, || {
            stream.create_consumer(OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
        })
        .await?;
    let updates = ctx
        .within(what, async {
            let mut pending = consumer.cached_info().num_pending;
            let mut updates = Vec::new();
            if pending == 0 {
                return Ok::<_, anyhow::Error>(updates);
            }
            let mut messages = consumer.messages().await?;
            while let Some(m) = messages.next().await {
                let m = m?;
                pending = m.info().map(|i| i.pending).unwrap_or(0);
                if let Ok(u) = serde_json::from_slice::<StatusUpdate>(&m.payload) {
                    updates.push(u);
                }
                if pending == 0 {
                    break;
                }
            }
            Ok(updates)
        })
        .await?;
    for u in updates {
        fold(&mut out, u);
    }
    Ok(out)
}

/// Add one status to the summaries.
pub fn fold(out: &mut BTreeMap<(String, String), InstanceSummary>, u: StatusUpdate) {
    let key = (u.node_id.clone(), u.instance_id.clone());
    let entry = out.entry(key).or_insert_with(|| InstanceSummary {
        last: u.clone(),
        restarts: 0,
        last_error: String::new(),
    });
    if u.status == InstanceState::Crashed {
        entry.restarts += 1;
    }
    if let Some(n) = u.restart_count() {
        entry.restarts = n;
    }
    let is_failure = matches!(u.status, InstanceState::Failed | InstanceState::Crashed)
        || u.exit_code.is_some_and(|c| c != 0);
    if is_failure {
        entry.last_error = if u.error.is_empty() {
            match u.exit_code {
                Some(c) => format!("{} (exit code {c})", u.status.as_str()),
                None => u.status.as_str().to_owned(),
            }
        } else {
            u.error.clone()
        };
    }
    entry.last = u;
}

/// Nodes an app targets: those named in `nodes`, plus live nodes its
/// `nodeSelector` matches, with their desired replica counts.
pub fn targets(spec: &ServiceSpec, nodes: &BTreeMap<String, Node>) -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = spec
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.replicas))
        .collect();
    if spec.node_selector.is_some() {
        for (id, n) in nodes {
            let r = spec.replicas_for(id, &n.state.labels, &n.state.arch);
            if r > 0 {
                out.entry(id.clone()).or_insert(r);
            }
        }
    }
    out
}
