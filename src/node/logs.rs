//! App logs: journald keeps the local copy (`journalctl -u narun-app@hello`);
//! the agent follows the journal for this node's apps (matched by the
//! `NARUN_NODE` field every app unit sets with `LogExtraFields=`) and
//! publishes Go-format JSON lines on `logs.<app>.<node>`.
//!
//! journald decouples the app from this forwarder: a slow or absent NATS
//! never blocks an app's writes.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::store::{self, LogEntry};

/// One journal record → a log entry, if it is an app line of this node.
pub fn entry_from_journal(json: &str, node_id: &str) -> Option<(String, LogEntry)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    if field("NARUN_NODE")?.as_str() != node_id {
        return None;
    }
    let app = field("NARUN_APP")?;
    let instance = field("NARUN_INSTANCE")?;
    // MESSAGE is a string, or an array of bytes when not valid UTF-8.
    let message = match v.get("MESSAGE")? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(bytes) => {
            let raw: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().map(|n| n as u8))
                .collect();
            String::from_utf8_lossy(&raw).into_owned()
        }
        _ => return None,
    };
    // journald does not tell stdout from stderr for stream transports;
    // error priorities (<= 3) are reported as stderr.
    let stream = match field("PRIORITY").and_then(|p| p.parse::<u8>().ok()) {
        Some(p) if p <= 3 => "stderr",
        _ => "stdout",
    };
    let timestamp = field("__REALTIME_TIMESTAMP")
        .and_then(|t| t.parse::<i128>().ok())
        .and_then(|us| time::OffsetDateTime::from_unix_timestamp_nanos(us * 1000).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    Some((
        app.clone(),
        LogEntry {
            instance_id: instance,
            app_name: app,
            node_id: node_id.to_owned(),
            stream: stream.to_owned(),
            message,
            timestamp,
        },
    ))
}

/// Follow the journal with `journalctl` (the command may be prefixed, e.g.
/// `nsenter -t PID -m -p journalctl` for a private systemd) and publish app
/// lines until the process ends; restarts it on exit.
pub async fn forward(nats: async_nats::Client, node_id: String, journalctl: Vec<String>) {
    let Some((program, prefix_args)) = journalctl.split_first() else {
        return;
    };
    loop {
        let child = tokio::process::Command::new(program)
            .args(prefix_args)
            .args([
                "--follow",
                "--output=json",
                "--lines=0",
                "--no-pager",
                // No journal match (`NARUN_NODE=<id>`): systemd 252's
                // journalctl started before any entry has the matched value
                // misses the entries that get it later (seen about one
                // start in two in tests/node.rs). Every entry is read, with
                // only the fields used, and non-narun ones are skipped
                // before JSON parsing.
                "--output-fields=MESSAGE,PRIORITY,NARUN_APP,NARUN_INSTANCE,NARUN_NODE",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, program = %program, "cannot follow the journal; app logs are not forwarded");
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
        };
        let Some(stdout) = child.stdout.take() else {
            return;
        };
        // What journalctl says about itself goes to the agent's log.
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::warn!(line = %line.chars().take(512).collect::<String>(), "journalctl");
                }
            });
        }
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if !line.contains("\"NARUN_NODE\"") {
                continue;
            }
            let Some((app, entry)) = entry_from_journal(&line, &node_id) else {
                continue;
            };
            if let Ok(json) = serde_json::to_vec(&entry) {
                let _ = nats
                    .publish(store::logs_subject(&app, &node_id), json.into())
                    .await;
            }
        }
        let _ = child.wait().await;
        tracing::warn!("journal follower ended; restarting it");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_records_become_go_log_entries() {
        let rec = r#"{"MESSAGE":"hello world","NARUN_APP":"hello","NARUN_INSTANCE":"hello-1","NARUN_NODE":"n1","PRIORITY":"6","__REALTIME_TIMESTAMP":"1700000000123456"}"#;
        let (app, e) = entry_from_journal(rec, "n1").unwrap();
        assert_eq!(app, "hello");
        assert_eq!(e.instance_id, "hello-1");
        assert_eq!(e.message, "hello world");
        assert_eq!(e.stream, "stdout");
        assert_eq!(e.timestamp.unix_timestamp(), 1_700_000_000);
        assert!(entry_from_journal(rec, "other-node").is_none());
        let bytes = r#"{"MESSAGE":[104,105,255],"NARUN_APP":"a","NARUN_INSTANCE":"a-0","NARUN_NODE":"n1","PRIORITY":"3"}"#;
        let (_, e) = entry_from_journal(bytes, "n1").unwrap();
        assert_eq!(e.message, "hi\u{fffd}");
        assert_eq!(e.stream, "stderr");
        assert!(entry_from_journal(r#"{"MESSAGE":"x"}"#, "n1").is_none());
    }
}
