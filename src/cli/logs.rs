//! `narun logs`: the retained lines of `logs.<app>.<node>` (stream
//! `narun-logs`, 24 h / 256 MiB), then, with `-f`, new ones as they come.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use clap::Args;
use futures_util::StreamExt;
use time::OffsetDateTime;

use super::{
    check_app_name, check_node_id, fail, parse_duration, println_safe, rfc3339, CliError,
    CliResult, Ctx,
};
use crate::spec;
use crate::store::{self, LogEntry};

/// `narun logs`.
#[derive(Args, Debug)]
#[command(after_help = "\
Lines print as `[time] [instance] [stream] message` (the Go narun's format).
Without -f, prints what is retained and exits; with -f, keeps following.")]
pub struct LogsArgs {
    /// Only this app (default: every app).
    pub app: Option<String>,
    /// Only this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only this instance (`<app>-<index>`; implies its app).
    #[arg(long, value_name = "INSTANCE")]
    pub instance: Option<String>,
    /// Keep following new lines (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Print each message's JSON as published.
    #[arg(long)]
    pub raw: bool,
    /// Only lines newer than this (`10m`, `2h`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Options of every management command.
    #[command(flatten)]
    pub global: super::GlobalArgs,
}

/// Run `narun logs`.
pub async fn run(ctx: &Ctx, args: LogsArgs) -> CliResult {
    let mut app = args.app.clone();
    if let Some(a) = &app {
        check_app_name(a)?;
    }
    if let Some(n) = &args.node {
        check_node_id(n)?;
    }
    if let Some(i) = &args.instance {
        let Some((inst_app, _)) = spec::split_instance_id(i) else {
            fail!(
                data,
                "{i:?} is not an instance id: expected <app>-<index>, e.g. hello-0"
            );
        };
        match &app {
            Some(a) if a != inst_app => {
                fail!(data, "instance {i} is not an instance of app {a}")
            }
            Some(_) => {}
            None => app = Some(inst_app.to_owned()),
        }
    }
    let js = ctx.js().await?;
    let stream = store::ensure_logs_stream(&js).await?;
    let deliver_policy = match args.since {
        Some(d) => DeliverPolicy::ByStartTime {
            start_time: OffsetDateTime::now_utc() - d,
        },
        None => DeliverPolicy::All,
    };
    let consumer = ctx
        .timed(
            "cannot read the narun-logs stream",
            stream.create_consumer(OrderedConfig {
                filter_subject: store::logs_filter(app.as_deref(), args.node.as_deref()),
                deliver_policy,
                ..Default::default()
            }),
        )
        .await?;
    let mut pending = consumer.cached_info().num_pending;
    if pending == 0 && !args.follow {
        return Ok(());
    }
    let mut messages = ctx
        .timed("cannot read the narun-logs stream", consumer.messages())
        .await?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| CliError::failed(anyhow::anyhow!("reading logs failed: {e}")))?;
        pending = m.info().map(|i| i.pending).unwrap_or(0);
        print_entry(ctx, &args, &m.payload);
        if pending == 0 && !args.follow {
            break;
        }
    }
    Ok(())
}

fn print_entry(ctx: &Ctx, args: &LogsArgs, payload: &[u8]) {
    let entry = serde_json::from_slice::<LogEntry>(payload).ok();
    if let (Some(want), Some(e)) = (&args.instance, &entry) {
        if &e.instance_id != want {
            return;
        }
    }
    if args.raw {
        println_safe(&String::from_utf8_lossy(payload));
        return;
    }
    match entry {
        Some(e) if ctx.json() => {
            println_safe(&serde_json::to_string(&e).unwrap_or_default());
        }
        Some(e) => println_safe(&format!(
            "[{}] [{}] [{}] {}",
            rfc3339(e.timestamp),
            e.instance_id,
            e.stream,
            e.message
        )),
        None if args.instance.is_none() => {
            println_safe(&format!(
                "(not a log entry) {}",
                String::from_utf8_lossy(payload)
            ));
        }
        None => {}
    }
}
