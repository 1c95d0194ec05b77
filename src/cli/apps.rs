//! `narun apps list|info|delete` (Go: `narun service ...`).

use std::collections::{BTreeMap, BTreeSet};

use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::fleet::{self, AppEntry, InstanceSummary, Node};
use super::{
    check_app_name, confirm, fail, human_age, print_json, print_table, println_safe, rfc3339,
    CliResult, Ctx,
};
use crate::spec::{self, ServiceSpec};
use crate::store::{self, InstanceState};

/// `narun apps`.
#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Every app: desired vs running replicas on each node.
    #[command(alias = "ls")]
    List,
    /// One app: its spec, nodes and instances (state, restarts, last error).
    Info {
        /// The app.
        name: String,
    },
    /// Go back to an earlier spec revision (default: the one before the
    /// current): written as a new revision, rolled out like a deploy (new
    /// replicas ready before the old ones stop).
    #[command(after_help = "\
Examples:
  narun apps rollback hello --wait
  narun apps rollback hello --to 3

`narun apps info NAME` lists the revisions the bucket keeps.")]
    Rollback {
        /// The app.
        name: String,
        /// The revision to go back to (KV app-configs revision).
        #[arg(long, value_name = "REVISION")]
        to: Option<u64>,
        #[command(flatten)]
        wait: super::deploy::WaitArg,
    },
    /// Delete an app's spec: every node stops its instances.
    #[command(alias = "rm")]
    Delete {
        /// The app.
        name: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// Run `narun apps`.
pub async fn run(ctx: &Ctx, cmd: AppsCommand, global: super::GlobalArgs) -> CliResult {
    match cmd {
        AppsCommand::List => list(ctx).await,
        AppsCommand::Info { name } => info(ctx, &name).await,
        AppsCommand::Delete { name, yes } => delete(ctx, &name, yes).await,
        AppsCommand::Rollback { name, to, wait } => rollback(ctx, &name, to, wait, global).await,
    }
}

/// `narun apps rollback`: the spec of an earlier revision, deployed again
/// (its binaries are still in the object store, or the deploy says so).
async fn rollback(
    ctx: &Ctx,
    name: &str,
    to: Option<u64>,
    wait: super::deploy::WaitArg,
    global: super::GlobalArgs,
) -> CliResult {
    use futures_util::StreamExt;
    check_app_name(name)?;
    let js = ctx.js().await?;
    let kv = store::ensure_kv(&js, store::APP_CONFIGS).await?;
    let mut history = ctx
        .timed(&format!("cannot read the history of {name}"), || {
            kv.history(name)
        })
        .await?;
    let mut puts = Vec::new();
    while let Some(entry) = history.next().await {
        let entry = entry.map_err(|e| {
            super::CliError::failed(anyhow::anyhow!("cannot read the history of {name}: {e}"))
        })?;
        if entry.operation == async_nats::jetstream::kv::Operation::Put {
            puts.push((entry.revision, entry.value));
        }
    }
    let Some((current, current_yaml)) = puts.last().cloned() else {
        fail!(data, "app {name} has no spec in {}", store::APP_CONFIGS);
    };
    let target = match to {
        Some(rev) => puts
            .iter()
            .find(|(r, _)| *r == rev)
            .cloned()
            .ok_or_else(|| {
                let kept: Vec<String> = puts.iter().map(|(r, _)| r.to_string()).collect();
                super::CliError::data(anyhow::anyhow!(
                    "revision {rev} of {name} is not in the bucket's history (kept: {})",
                    kept.join(", ")
                ))
            })?,
        // The latest revision with other content than the current one.
        None => puts
            .iter()
            .rev()
            .find(|(_, v)| *v != current_yaml)
            .cloned()
            .ok_or_else(|| {
                super::CliError::data(anyhow::anyhow!(
                    "{name} has no earlier revision that differs from the current one ({current})"
                ))
            })?,
    };
    let yaml = String::from_utf8(target.1.to_vec()).map_err(|_| {
        super::CliError::data(anyhow::anyhow!("revision {} is not UTF-8 text", target.0))
    })?;
    if !ctx.json() {
        eprintln!(
            "rolling {name} back to revision {} (current {current})",
            target.0
        );
    }
    let args = super::deploy::DeployArgs {
        file: None,
        name: None,
        tag: None,
        node: String::new(),
        replicas: 0,
        binaries: Vec::new(),
        wait,
        dry_run: false,
        global,
    };
    super::deploy::deploy_yaml(
        ctx,
        args,
        format!("{}/{name} revision {}", store::APP_CONFIGS, target.0),
        yaml,
    )
    .await
}

/// One app on one node.
struct Placement {
    node: String,
    node_status: String,
    platform: String,
    desired: Option<u32>,
    instances: Vec<String>,
    running: usize,
}

/// Placements of `app` (spec `spec`, if valid) over the fleet.
fn placements(
    app: &str,
    spec: Option<&ServiceSpec>,
    nodes: &BTreeMap<String, Node>,
    statuses: &BTreeMap<(String, String), InstanceSummary>,
    now: OffsetDateTime,
) -> Vec<Placement> {
    let targets = spec.map(|s| fleet::targets(s, nodes)).unwrap_or_default();
    let mut ids: BTreeSet<String> = targets.keys().cloned().collect();
    // Nodes running instances of the app it no longer targets.
    for (id, n) in nodes {
        if n.state.managed_instances.iter().any(|i| is_of(i, app)) {
            ids.insert(id.clone());
        }
    }
    ids.into_iter()
        .map(|id| {
            let node = nodes.get(&id);
            let instances: Vec<String> = node
                .map(|n| {
                    n.state
                        .managed_instances
                        .iter()
                        .filter(|i| is_of(i, app))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            // Running: the latest retained status says so; without one, the
            // agent managing it is all there is to go by (Go's count).
            let running = instances
                .iter()
                .filter(|i| match statuses.get(&(id.clone(), (*i).clone())) {
                    Some(s) => s.last.status == InstanceState::Running,
                    None => true,
                })
                .count();
            Placement {
                node_status: node
                    .map(|n| n.status(now))
                    .unwrap_or_else(|| "offline".into()),
                platform: node
                    .map(|n| format!("{}/{}", n.state.os, n.state.arch))
                    .unwrap_or_else(|| "-".into()),
                desired: spec.map(|_| targets.get(&id).copied().unwrap_or(0)),
                instances,
                running,
                node: id,
            }
        })
        .collect()
}

fn is_of(instance: &str, app: &str) -> bool {
    spec::split_instance_id(instance).is_some_and(|(a, _)| a == app)
}

fn desired_text(p: &Placement) -> String {
    match p.desired {
        Some(0) => "0 (not in spec)".into(),
        Some(n) => n.to_string(),
        None => "?".into(),
    }
}

async fn list(ctx: &Ctx) -> CliResult {
    let js = ctx.js().await?;
    let apps = fleet::load_apps(ctx, &js).await?;
    let nodes = fleet::load_nodes(ctx, &js).await?;
    let statuses = fleet::load_statuses(ctx, &js, None).await?;
    let now = OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for (name, entry) in &apps {
        let spec = entry.valid();
        let tag = spec
            .map(|s| s.tag.clone())
            .unwrap_or_else(|| "(invalid spec)".into());
        let ps = placements(name, spec, &nodes, &statuses, now);
        if ps.is_empty() {
            rows.push(vec![
                name.clone(),
                tag.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "0".into(),
                "0".into(),
                "-".into(),
            ]);
        }
        for p in &ps {
            rows.push(vec![
                name.clone(),
                tag.clone(),
                p.node.clone(),
                p.node_status.clone(),
                p.platform.clone(),
                desired_text(p),
                p.running.to_string(),
                if p.instances.is_empty() {
                    "-".into()
                } else {
                    p.instances.join(", ")
                },
            ]);
        }
        docs.push(json!({
            "app": name,
            "tag": spec.map(|s| s.tag.clone()),
            "valid": spec.is_some(),
            "revision": entry.revision,
            "nodes": ps.iter().map(|p| json!({
                "node": p.node, "node_status": p.node_status, "platform": p.platform,
                "desired": p.desired, "running": p.running, "instances": p.instances,
            })).collect::<Vec<_>>(),
        }));
    }
    if ctx.json() {
        return print_json(&docs);
    }
    if rows.is_empty() {
        eprintln!("no apps deployed");
        return Ok(());
    }
    print_table(
        &[
            "APP",
            "TAG",
            "NODE",
            "NODE STATUS",
            "PLATFORM",
            "DESIRED",
            "RUNNING",
            "INSTANCES",
        ],
        &rows,
    );
    Ok(())
}

async fn info(ctx: &Ctx, name: &str) -> CliResult {
    check_app_name(name)?;
    let js = ctx.js().await?;
    let Some(entry) = fleet::load_app(ctx, &js, name).await? else {
        fail!("unknown app {name:?}: no spec in {}", store::APP_CONFIGS);
    };
    let nodes = fleet::load_nodes(ctx, &js).await?;
    let statuses = fleet::load_statuses(ctx, &js, Some(name)).await?;
    let now = OffsetDateTime::now_utc();
    let spec = entry.valid();
    let ps = placements(name, spec, &nodes, &statuses, now);
    let mut instances = instance_rows(name, &ps, &statuses);
    instances.sort_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
    if ctx.json() {
        return print_json(&info_json(name, &entry, &ps, &instances));
    }
    print_info(name, &entry, &ps, &instances, now);
    Ok(())
}

struct InstanceRow {
    node: String,
    id: String,
    managed: bool,
    desired: bool,
    summary: Option<InstanceSummary>,
}

/// Every instance either a node manages or the retained statuses mention.
fn instance_rows(
    app: &str,
    ps: &[Placement],
    statuses: &BTreeMap<(String, String), InstanceSummary>,
) -> Vec<InstanceRow> {
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut rows = Vec::new();
    for p in ps {
        let desired = p.desired.unwrap_or(0);
        for id in &p.instances {
            seen.insert((p.node.clone(), id.clone()));
            let index = spec::split_instance_id(id)
                .map(|(_, i)| i)
                .unwrap_or(u32::MAX);
            rows.push(InstanceRow {
                node: p.node.clone(),
                id: id.clone(),
                managed: true,
                desired: index < desired,
                summary: statuses.get(&(p.node.clone(), id.clone())).cloned(),
            });
        }
    }
    // Retained statuses of instances no node reports (recently stopped, or
    // a node that went away).
    for ((node, id), s) in statuses {
        if is_of(id, app) && !seen.contains(&(node.clone(), id.clone())) {
            let desired = ps
                .iter()
                .find(|p| &p.node == node)
                .and_then(|p| p.desired)
                .unwrap_or(0);
            let index = spec::split_instance_id(id)
                .map(|(_, i)| i)
                .unwrap_or(u32::MAX);
            rows.push(InstanceRow {
                node: node.clone(),
                id: id.clone(),
                managed: false,
                desired: index < desired,
                summary: Some(s.clone()),
            });
        }
    }
    rows
}

fn info_json(
    name: &str,
    entry: &AppEntry,
    ps: &[Placement],
    instances: &[InstanceRow],
) -> serde_json::Value {
    let (spec, errors, warnings) = match &entry.spec {
        Ok(p) => (
            serde_json::to_value(&p.spec).ok(),
            vec![],
            p.warnings.clone(),
        ),
        Err(e) => (None, e.errors.clone(), e.warnings.clone()),
    };
    json!({
        "app": name,
        "revision": entry.revision,
        "updated": rfc3339(entry.updated),
        "spec_yaml": entry.raw,
        "spec": spec,
        "spec_errors": errors,
        "spec_warnings": warnings,
        "nodes": ps.iter().map(|p| json!({
            "node": p.node, "node_status": p.node_status, "platform": p.platform,
            "desired": p.desired, "running": p.running, "instances": p.instances,
        })).collect::<Vec<_>>(),
        "instances": instances.iter().map(|i| json!({
            "node": i.node,
            "instance_id": i.id,
            "managed": i.managed,
            "orphaned": i.managed && !i.desired,
            "status": i.summary.as_ref().map(|s| s.last.status.as_str()),
            "pid": i.summary.as_ref().map(|s| s.last.pid).filter(|p| *p != 0),
            "since": i.summary.as_ref().map(|s| rfc3339(s.last.time)),
            "restarts": i.summary.as_ref().map(|s| s.restarts),
            "last_error": i.summary.as_ref().map(|s| s.last_error.clone()).filter(|e| !e.is_empty()),
        })).collect::<Vec<_>>(),
    })
}

fn print_info(
    name: &str,
    entry: &AppEntry,
    ps: &[Placement],
    instances: &[InstanceRow],
    now: OffsetDateTime,
) {
    match &entry.spec {
        Ok(p) => {
            let s = &p.spec;
            println_safe(&format!("App:       {name}"));
            if !s.description.is_empty() {
                println_safe(&format!("About:     {}", s.description));
            }
            println_safe(&format!("Tag:       {}", s.tag));
            println_safe(&format!("Mode:      {}", s.mode));
            if !s.labels.is_empty() {
                let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println_safe(&format!("Labels:    {}", l.join(", ")));
            }
            for w in &p.warnings {
                println_safe(&format!("Warning:   {w}"));
            }
        }
        Err(e) => {
            println_safe(&format!("App:       {name}"));
            println_safe(&format!("Spec:      INVALID, nodes ignore it: {e}"));
        }
    }
    println_safe(&format!(
        "Revision:  {} (written {})",
        entry.revision,
        human_age(entry.updated, now)
    ));
    println_safe("");
    println_safe("Spec:");
    for line in entry.raw.lines() {
        println_safe(&format!("  {line}"));
    }
    println_safe("");
    let rows: Vec<Vec<String>> = ps
        .iter()
        .map(|p| {
            vec![
                p.node.clone(),
                p.node_status.clone(),
                p.platform.clone(),
                desired_text(p),
                p.running.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        println_safe("Nodes: none targeted");
    } else {
        print_table(&["NODE", "STATUS", "PLATFORM", "DESIRED", "RUNNING"], &rows);
    }
    println_safe("");
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            let s = i.summary.as_ref();
            vec![
                i.id.clone(),
                i.node.clone(),
                s.map(|s| s.last.status.as_str().to_owned())
                    .unwrap_or_else(|| "unknown".into()),
                s.map(|s| s.last.pid)
                    .filter(|p| *p != 0)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.map(|s| s.restarts.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.map(|s| human_age(s.last.time, now))
                    .unwrap_or_else(|| "-".into()),
                match (i.managed, i.desired) {
                    (true, false) => "orphaned (not in spec)".to_owned(),
                    (false, _) => "not managed".to_owned(),
                    _ => String::new(),
                },
                s.map(|s| s.last_error.clone())
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if rows.is_empty() {
        println_safe("Instances: none reported");
    } else {
        print_table(
            &[
                "INSTANCE",
                "NODE",
                "STATUS",
                "PID",
                "RESTARTS",
                "SINCE",
                "NOTE",
                "LAST ERROR",
            ],
            &rows,
        );
    }
}

async fn delete(ctx: &Ctx, name: &str, yes: bool) -> CliResult {
    check_app_name(name)?;
    let js = ctx.js().await?;
    let Some(kv) = store::open_kv(&js, store::APP_CONFIGS).await? else {
        fail!("unknown app {name:?}: no app deployed yet");
    };
    let exists = ctx
        .timed(&format!("cannot read app-configs/{name}"), || {
            kv.entry(name)
        })
        .await?
        .is_some_and(|e| e.operation == async_nats::jetstream::kv::Operation::Put);
    if !exists {
        fail!("unknown app {name:?}: no spec in {}", store::APP_CONFIGS);
    }
    if !confirm(
        &format!("Delete app {name}? Every node stops its instances."),
        yes,
    )? {
        fail!("cancelled: {name} not deleted");
    }
    ctx.timed(&format!("cannot delete app-configs/{name}"), || {
        kv.delete(name)
    })
    .await?;
    if ctx.json() {
        return print_json(&json!({ "app": name, "deleted": true }));
    }
    println_safe(&format!(
        "app {name} deleted: nodes stop its instances (its binaries stay: see `narun images list`)"
    ));
    Ok(())
}
