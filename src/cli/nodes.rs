//! `narun nodes list`.

use std::collections::BTreeSet;

use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::{fleet, human_age, print_json, print_table, rfc3339, CliResult, Ctx};
use crate::spec;

/// `narun nodes`.
#[derive(Subcommand, Debug)]
pub enum NodesCommand {
    /// Every node whose heartbeat has not expired (45 s).
    #[command(alias = "ls")]
    List,
}

/// Run `narun nodes`.
pub async fn run(ctx: &Ctx, cmd: NodesCommand) -> CliResult {
    match cmd {
        NodesCommand::List => list(ctx).await,
    }
}

async fn list(ctx: &Ctx) -> CliResult {
    let js = ctx.js().await?;
    let nodes = fleet::load_nodes(ctx, &js).await?;
    // In a cluster, say which buckets one server's loss would take away.
    let servers = crate::store::cluster_size(&ctx.client().await?.server_info());
    if servers > 1 {
        let found = crate::store::replicas::inspect(&js).await?;
        for w in crate::store::replicas::warnings(servers, &found) {
            eprintln!("narun: warning: {w}");
        }
    }
    let now = OffsetDateTime::now_utc();
    let apps_of = |instances: &[String]| -> Vec<String> {
        instances
            .iter()
            .filter_map(|i| spec::split_instance_id(i).map(|(a, _)| a.to_owned()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    // Apps on a node without an identity of their own share the agent's
    // NATS user (or none): any of them can serve another's subject.
    let shared: Vec<&str> = nodes
        .iter()
        .filter(|(_, n)| n.state.app_identity.is_none())
        .map(|(id, _)| id.as_str())
        .collect();
    if !shared.is_empty() {
        eprintln!(
            "narun: warning: apps on {} get no NATS identity of their own: any app can \
             serve another's subject (give the agents an account signing key: see \
             docs/operations.md, per-app NATS identity)",
            shared.join(", ")
        );
    }
    if ctx.json() {
        let docs: Vec<_> = nodes
            .iter()
            .map(|(id, n)| {
                let s = &n.state;
                json!({
                    "node_id": id,
                    "status": n.status(now),
                    "version": s.version,
                    "os": s.os,
                    "arch": s.arch,
                    "labels": s.labels,
                    "apps": apps_of(&s.managed_instances),
                    "managed_instances": s.managed_instances,
                    "start_time": rfc3339(s.start_time),
                    "last_seen": rfc3339(s.last_seen),
                    "last_seen_seconds": (now - s.last_seen).whole_seconds().max(0),
                    "app_identity": s.app_identity,
                })
            })
            .collect();
        return print_json(&docs);
    }
    if nodes.is_empty() {
        eprintln!("no node agent has reported in the last 45 s");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|(id, n)| {
            let s = &n.state;
            let apps = apps_of(&s.managed_instances);
            vec![
                id.clone(),
                n.status(now),
                s.version.clone(),
                format!("{}/{}", s.os, s.arch),
                if apps.is_empty() {
                    "-".into()
                } else {
                    apps.join(",")
                },
                s.managed_instances.len().to_string(),
                human_age(s.last_seen, now),
                if s.labels.is_empty() {
                    "-".into()
                } else {
                    s.labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]
        })
        .collect();
    print_table(
        &[
            "NODE",
            "STATUS",
            "VERSION",
            "PLATFORM",
            "APPS",
            "INSTANCES",
            "LAST SEEN",
            "LABELS",
        ],
        &rows,
    );
    Ok(())
}
