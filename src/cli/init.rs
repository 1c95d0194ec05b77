//! `narun init`: create narun's buckets and streams, or change how many
//! copies of them the NATS cluster keeps ([`crate::store::replicas`]).

use clap::Args;
use serde_json::json;

use super::{print_json, print_table, CliResult, Ctx};
use crate::store::replicas::{self, Change};

/// `narun init`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  narun init                 # create what is missing, one copy per server up to 3
  narun init --replicas 3    # three copies of every bucket and stream

Components create what they need on first use, with the same settings; run
this once when a fleet is set up, or to raise the replicas after servers
were added to the cluster: JetStream copies the data to the new peers in the
background (`nats stream info KV_app-configs` shows the progress).")]
pub struct InitArgs {
    /// Copies of each bucket and stream (at most the cluster's size). Without
    /// it: one per server up to three, and an existing count is only raised.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: Option<u8>,
    /// Options of every management command.
    #[command(flatten)]
    pub global: super::GlobalArgs,
}

/// Run `narun init`.
pub async fn run(ctx: &Ctx, args: InitArgs) -> CliResult {
    let js = ctx.js().await?;
    let servers = crate::store::cluster_size(&ctx.client().await?.server_info());
    let (want, exact) = match args.replicas {
        Some(n) => (usize::from(n), true),
        None => (js.replicas(), false),
    };
    if want > servers {
        eprintln!(
            "narun: warning: {want} replicas asked for, the cluster advertises {servers} \
             server{}: JetStream refuses more replicas than servers it has",
            if servers == 1 { "" } else { "s" }
        );
    }
    let done = replicas::apply(&js, want, exact).await?;
    let action = |c: Change| match c {
        Change::Create => "created".to_owned(),
        Change::Set { from } => format!("replicas {from} -> {want}"),
        Change::Keep => "unchanged".to_owned(),
    };
    if ctx.json() {
        let docs: Vec<_> = done
            .iter()
            .map(|(r, c, n)| {
                json!({
                    "name": r.name,
                    "kind": r.kind,
                    "stream": r.stream(),
                    "replicas": n,
                    "action": action(*c),
                })
            })
            .collect();
        return print_json(&json!({ "servers": servers, "resources": docs }));
    }
    let rows: Vec<Vec<String>> = done
        .iter()
        .map(|(r, c, n)| vec![r.label(), r.stream(), n.to_string(), action(*c)])
        .collect();
    print_table(&["RESOURCE", "STREAM", "REPLICAS", "ACTION"], &rows);
    Ok(())
}
