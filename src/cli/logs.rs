//! `narun logs`: the retained lines of `logs.<app>.<node>` (stream
//! `narun-logs`, 24 h / 256 MiB), then, with `-f`, new ones as they come.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use clap::Args;
use futures_util::StreamExt;
use time::OffsetDateTime;

use super::{check_app_name, check_node_id, fail, println_safe, rfc3339, CliError, CliResult, Ctx};
use crate::spec;
use crate::store::{self, LogEntry};

/// `narun logs`.
#[derive(Args, Debug)]
#[command(after_help = "\
Lines print as `[time] [instance] [stream] message` (the Go narun's format);
with -o json, one JSON object per line (with the journal's priority).
Without -f, prints what is retained and exits; with -f, keeps following,
across NATS restarts, without repeating or skipping a line.")]
pub struct LogsArgs {
    /// Only this app (default: every app).
    pub app: Option<String>,
    /// Only this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only this instance (`<app>-<index>`; implies its app).
    #[arg(long, value_name = "INSTANCE", conflicts_with = "replica")]
    pub instance: Option<String>,
    /// Only this replica of the app (its index: `--replica 0` is
    /// `--instance <app>-0`).
    #[arg(long, value_name = "INDEX", requires = "app")]
    pub replica: Option<u32>,
    /// Keep following new lines (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Print each message's JSON as published.
    #[arg(long)]
    pub raw: bool,
    /// Only lines newer than this (`10m`, `2h`).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse)]
    pub since: Option<Duration>,
    /// Options of every management command.
    #[command(flatten)]
    pub global: super::GlobalArgs,
}

/// Run `narun logs`.
pub async fn run(ctx: &Ctx, mut args: LogsArgs) -> CliResult {
    if let (Some(app), Some(i)) = (&args.app, args.replica) {
        args.instance = Some(spec::instance_id(app, i));
    }
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
    let mut deliver_policy = match args.since {
        Some(d) => DeliverPolicy::ByStartTime {
            start_time: OffsetDateTime::now_utc() - d,
        },
        None => DeliverPolicy::All,
    };
    let filter = store::logs_filter(app.as_deref(), args.node.as_deref());
    let mut resuming = false;
    loop {
        let opened = async {
            let consumer = ctx
                .timed("cannot read the narun-logs stream", || {
                    stream.create_consumer(OrderedConfig {
                        filter_subject: filter.clone(),
                        deliver_policy,
                        ..Default::default()
                    })
                })
                .await?;
            let pending = consumer.cached_info().num_pending;
            let messages = ctx
                .within("cannot read the narun-logs stream", consumer.messages())
                .await?;
            CliResult::Ok((pending, messages))
        }
        .await;
        let mut messages = match opened {
            Ok((0, _)) if !args.follow => return Ok(()),
            Ok((_, m)) => m,
            // While following, NATS may still be coming back.
            Err(_) if resuming => {
                crate::nats::wait_connected(ctx.client().await?).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let why = loop {
            let m = match messages.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => break e.to_string(),
                None => break "the stream ended".to_owned(),
            };
            let info = m.info().ok().map(|i| (i.stream_sequence, i.pending));
            print_entry(ctx, &args, &m.payload);
            if let Some((seq, pending)) = info {
                // A new consumer resumes after this line: none repeated,
                // none skipped.
                deliver_policy = DeliverPolicy::ByStartSequence {
                    start_sequence: seq + 1,
                };
                if pending == 0 && !args.follow {
                    return Ok(());
                }
            }
        };
        if !args.follow {
            return Err(CliError::failed(anyhow::anyhow!(
                "reading logs failed: {why}"
            )));
        }
        // Following across a NATS restart: wait for the connection, then
        // resume after the last line printed.
        if !resuming {
            eprintln!("narun logs: {why}; resuming when NATS is back");
        }
        resuming = true;
        crate::nats::wait_connected(ctx.client().await?).await;
    }
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
