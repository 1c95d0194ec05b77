//! How many copies of narun's buckets and streams the cluster keeps.
//!
//! A bucket with one replica lives on one server: that server's loss loses
//! the specs, binaries or secrets in it until it comes back (or for good,
//! with its disk). Buckets and streams are created with
//! [`super::default_replicas`] copies of the cluster's size by whichever
//! component comes first; `narun init --replicas N` creates them all up
//! front or changes the count of existing ones (JetStream copies the data
//! to the new peers in the background), and `narun nodes list` warns about
//! ones with fewer copies than the cluster allows ([`warnings`]).

use super::{
    ensure_kv, ensure_logs_stream, ensure_object_store, ensure_status_stream, Js, StoreError,
    APP_BINARIES, APP_CONFIGS, FILES, LOGS_STREAM, NODE_STATES, SECRETS, STATUS_STREAM,
};

/// What kind of JetStream resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A key-value bucket (stream `KV_<name>`).
    Kv,
    /// An object store (stream `OBJ_<name>`).
    ObjectStore,
    /// A plain stream.
    Stream,
}

/// One of narun's buckets or streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// Its kind.
    pub kind: Kind,
    /// The bucket's or stream's name.
    pub name: &'static str,
}

impl Resource {
    /// The JetStream stream behind it.
    pub fn stream(&self) -> String {
        match self.kind {
            Kind::Kv => format!("KV_{}", self.name),
            Kind::ObjectStore => format!("OBJ_{}", self.name),
            Kind::Stream => self.name.to_owned(),
        }
    }

    /// `KV app-configs`, `object store app-binaries`, `stream narun-logs`.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            Kind::Kv => "KV",
            Kind::ObjectStore => "object store",
            Kind::Stream => "stream",
        };
        format!("{kind} {}", self.name)
    }
}

/// Every bucket and stream narun uses.
pub const RESOURCES: [Resource; 7] = [
    Resource {
        kind: Kind::Kv,
        name: APP_CONFIGS,
    },
    Resource {
        kind: Kind::Kv,
        name: NODE_STATES,
    },
    Resource {
        kind: Kind::Kv,
        name: SECRETS,
    },
    Resource {
        kind: Kind::ObjectStore,
        name: APP_BINARIES,
    },
    Resource {
        kind: Kind::ObjectStore,
        name: FILES,
    },
    Resource {
        kind: Kind::Stream,
        name: LOGS_STREAM,
    },
    Resource {
        kind: Kind::Stream,
        name: STATUS_STREAM,
    },
];

/// What `narun init` does to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Missing: create it with the wanted count.
    Create,
    /// Exists with `from` copies: set it to the wanted count.
    Set {
        /// Copies it has.
        from: usize,
    },
    /// Leave it as it is.
    Keep,
}

/// What to do to a resource that has `current` copies (None: missing) when
/// `want` are asked for. Without `exact` (no count given: the cluster's
/// default) a count is only raised, never lowered.
pub fn plan(current: Option<usize>, want: usize, exact: bool) -> Change {
    match current {
        None => Change::Create,
        Some(from) if from < want || (exact && from != want) => Change::Set { from },
        Some(_) => Change::Keep,
    }
}

/// The warnings for resources holding fewer copies than a cluster of
/// `servers` allows (`found`: each resource and its copies, None when it
/// does not exist yet).
pub fn warnings(servers: usize, found: &[(Resource, Option<usize>)]) -> Vec<String> {
    let want = super::default_replicas(servers);
    found
        .iter()
        .filter_map(|(r, replicas)| {
            let n = (*replicas)?;
            (n < want).then(|| {
                format!(
                    "{} has {n} replica{} in a {servers}-server NATS cluster: losing the server \
                     that holds it loses its data; raise it with `narun init --replicas {want}`",
                    r.label(),
                    if n == 1 { "" } else { "s" }
                )
            })
        })
        .collect()
}

/// Copies of each resource (None when it does not exist).
pub async fn inspect(js: &Js) -> Result<Vec<(Resource, Option<usize>)>, StoreError> {
    let mut out = Vec::with_capacity(RESOURCES.len());
    for r in RESOURCES {
        // open_stream just fetched it: the cached info is current.
        let replicas = super::open_stream(js, &r.stream())
            .await?
            .map(|s| s.cached_info().config.num_replicas);
        out.push((r, replicas));
    }
    Ok(out)
}

/// Create every missing resource and set the copies of existing ones as
/// [`plan`] says; returns each resource, what was done and its copies now.
pub async fn apply(
    js: &Js,
    want: usize,
    exact: bool,
) -> Result<Vec<(Resource, Change, usize)>, StoreError> {
    let js = js.clone().with_replicas(want);
    let mut out = Vec::with_capacity(RESOURCES.len());
    for (r, current) in inspect(&js).await? {
        let change = plan(current, want, exact);
        let now = match change {
            Change::Create => {
                create(&js, r).await?;
                want
            }
            Change::Set { .. } => {
                set_replicas(&js, &r.stream(), want).await?;
                want
            }
            Change::Keep => current.unwrap_or(want),
        };
        out.push((r, change, now));
    }
    Ok(out)
}

async fn create(js: &Js, r: Resource) -> Result<(), StoreError> {
    match (r.kind, r.name) {
        (Kind::Kv, name) => ensure_kv(js, name).await.map(drop),
        (Kind::ObjectStore, name) => ensure_object_store(js, name).await.map(drop),
        (Kind::Stream, LOGS_STREAM) => ensure_logs_stream(js).await.map(drop),
        (Kind::Stream, _) => ensure_status_stream(js).await.map(drop),
    }
}

/// Set stream `name`'s copies, keeping the rest of its configuration.
async fn set_replicas(js: &Js, name: &str, replicas: usize) -> Result<(), StoreError> {
    let what = format!("cannot set the replicas of stream {name} to {replicas}");
    js.patiently(&what, || async {
        let mut stream = js.get_stream(name).await?;
        let mut config = stream.info().await?.config.clone();
        config.num_replicas = replicas;
        js.update_stream(config).await?;
        Ok::<_, async_nats::Error>(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_create_raise_and_keep() {
        assert_eq!(plan(None, 3, false), Change::Create);
        assert_eq!(plan(Some(1), 3, false), Change::Set { from: 1 });
        assert_eq!(plan(Some(3), 3, false), Change::Keep);
        assert_eq!(
            plan(Some(5), 3, false),
            Change::Keep,
            "the default never lowers"
        );
        assert_eq!(
            plan(Some(3), 1, true),
            Change::Set { from: 3 },
            "an explicit count does"
        );
        assert_eq!(plan(Some(1), 1, true), Change::Keep);
    }

    #[test]
    fn warns_about_fewer_copies_than_the_cluster_allows() {
        let found = [
            (RESOURCES[0], Some(1)),
            (RESOURCES[1], Some(3)),
            (RESOURCES[2], None),
            (RESOURCES[3], Some(2)),
        ];
        let w = warnings(3, &found);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("KV app-configs has 1 replica in a 3-server NATS cluster")
                && w[0].ends_with("`narun init --replicas 3`"),
            "{}",
            w[0]
        );
        assert!(
            w[1].starts_with("object store app-binaries has 2 replicas"),
            "{}",
            w[1]
        );
        assert!(
            warnings(1, &found).is_empty(),
            "a lone server: nothing to say"
        );
        assert!(
            warnings(5, &[(RESOURCES[0], Some(3))]).is_empty(),
            "three copies are enough in a bigger cluster"
        );
    }

    #[test]
    fn streams_behind_each_resource() {
        let streams: Vec<String> = RESOURCES.iter().map(Resource::stream).collect();
        assert_eq!(
            streams,
            [
                "KV_app-configs",
                "KV_node-runner-states",
                "KV_narun-secrets",
                "OBJ_app-binaries",
                "OBJ_narun-files",
                "narun-logs",
                "narun-status"
            ]
        );
    }
}
