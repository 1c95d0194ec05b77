//! App logs: journald keeps the local copy (`journalctl -u narun-app@hello`);
//! the agent follows the journal for this node's apps (every app unit sets
//! `NARUN_APP`, `NARUN_INSTANCE` and `NARUN_NODE` with `LogExtraFields=`)
//! and publishes Go-format JSON lines on `logs.<app>.<node>`, through
//! JetStream (stream `narun-logs`), each acknowledged before the journal
//! position after it is saved.
//!
//! No line is lost: the position (a journal cursor) is kept in the data
//! dir, so lines written while the agent was stopped or NATS unreachable
//! are read from the journal afterwards (journald is the buffer, bounded by
//! its own retention); a line published but not acknowledged is sent again
//! with the same message id (its cursor), which JetStream drops as a
//! duplicate. One publisher per node, on one connection at a time (see
//! [`Forwarder::run`]), keeps each replica's order, across outages too. A
//! slow or absent NATS never blocks an app's writes: only the journal
//! reader waits.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use crate::store::{self, LogEntry};

/// Publishes awaiting their acknowledgement at most.
const MAX_IN_FLIGHT: usize = 256;
/// Longest journal record read (a longer one is skipped, and said).
const MAX_RECORD: usize = 1 << 20;
/// The saved position is written at most this often while lines flow.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// One journal record → a log entry, if it is an app line of this node.
pub fn entry_from_journal(json: &str, node_id: &str) -> Option<(String, LogEntry)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    entry_from_record(&v, node_id)
}

fn entry_from_record(v: &serde_json::Value, node_id: &str) -> Option<(String, LogEntry)> {
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
    let priority = field("PRIORITY").and_then(|p| p.parse::<u8>().ok());
    // journald does not tell stdout from stderr for stream transports;
    // error priorities (<= 3) are reported as stderr.
    let stream = match priority {
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
            priority,
        },
    ))
}

/// Where reading starts: after the saved cursor, else at `since` (the
/// first start of an agent on this data dir, see [`first_start`]).
pub fn start_args(cursor: Option<&str>, since: time::OffsetDateTime) -> Vec<String> {
    let mut args: Vec<String> = [
        "--follow",
        "--output=json",
        "--no-pager",
        // Every entry after the start point: without it `--follow` prints
        // only ten of them, then waits for a new entry to print the rest
        // (systemd/systemd#4739), so lines past the tenth written while
        // the agent or NATS was down would wait for the next journal entry.
        "--no-tail",
        // No journal match (`NARUN_NODE=<id>`): systemd 252's journalctl
        // started before any entry has the matched value misses the
        // entries that get it later (seen about one start in two in
        // tests/node.rs). Every entry is read, with only the fields used
        // (the cursor and timestamps come anyway), and non-narun ones are
        // skipped before JSON parsing.
        "--output-fields=MESSAGE,PRIORITY,NARUN_APP,NARUN_INSTANCE,NARUN_NODE",
    ]
    .map(str::to_owned)
    .to_vec();
    match cursor {
        Some(c) => args.push(format!("--after-cursor={c}")),
        None => args.push(format!("--since=@{}", since.unix_timestamp())),
    }
    args
}

/// The saved journal position, if any (a cursor is short printable text).
pub fn read_cursor(path: &Path) -> Option<String> {
    let raw = crate::limits::read_capped(path, 4096, "a journal cursor").ok()?;
    let text = String::from_utf8(raw).ok()?;
    let c = text.trim();
    (!c.is_empty() && c.bytes().all(|b| b.is_ascii_graphic())).then(|| c.to_owned())
}

/// Where reading starts while no line was ever acknowledged: the first
/// start of an agent on this data dir, kept in `path` (unix seconds), so
/// that an agent stopped before its first acknowledgement and started again
/// still reads the lines written since its first start.
pub fn first_start(path: &Path, now: time::OffsetDateTime) -> time::OffsetDateTime {
    let saved = crate::limits::read_capped(path, 64, "the log forwarder's first start")
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|t| t.trim().parse::<i64>().ok())
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok());
    match saved {
        Some(t) if t <= now => t,
        _ => {
            save_small_file(path, &now.unix_timestamp().to_string());
            now
        }
    }
}

/// Replace `path` with `text` atomically (a journal position or the first
/// start; one writer, so one `<name>.tmp` beside them is enough).
fn save_small_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    let r = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the log forwarder's position");
    }
}

/// How the agent forwards app logs.
pub struct Forwarder {
    pub nats: crate::nats::NatsOptions,
    pub node_id: String,
    /// The `journalctl` command; it may be prefixed, e.g.
    /// `nsenter -t PID -m -p journalctl` for a private systemd.
    pub journalctl: Vec<String>,
    /// Where the journal position of the last acknowledged line is kept.
    pub cursor_file: PathBuf,
    /// When the agent started: where reading starts the first time (see
    /// [`first_start`]).
    pub since: time::OffsetDateTime,
}

impl Forwarder {
    /// Follow the journal and publish app lines, forever: a follower that
    /// ends, or a line NATS does not acknowledge, starts again from the
    /// last acknowledged position.
    ///
    /// Order holds across an outage because the publishing connection is
    /// never re-established ([`crate::nats::connect_once`]): lines written
    /// to a connection that died may be lost, and with a reconnecting
    /// client the lines queued behind them would be stored first, on the
    /// next connection, before the lost ones are sent again. A lost
    /// connection ends its client and everything queued for it; a new
    /// client sends again from the last acknowledged line.
    pub async fn run(self) {
        let Some((program, prefix_args)) = self.journalctl.split_first() else {
            return;
        };
        let since = first_start(&self.cursor_file.with_extension("since"), self.since);
        let mut failures = 0usize;
        loop {
            let client = match crate::nats::connect_once(&self.nats).await {
                Ok(c) => c,
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "cannot connect to forward app logs; retrying");
                    }
                    tokio::time::sleep(crate::nats::reconnect_delay(failures + 1)).await;
                    continue;
                }
            };
            failures = 0;
            let mut js = async_nats::jetstream::new(client.clone());
            // Unacknowledged lines are sent again (deduplicated by their
            // cursor): no need to wait long for a lost acknowledgement.
            js.set_timeout(Duration::from_secs(3));
            // Rounds on this connection, while it lasts: on one connection
            // the server stores lines in the order they were sent, so a
            // line sent again after an unacknowledged one keeps the order.
            while client.connection_state() == async_nats::connection::State::Connected {
                self.round(program, prefix_args, &js, since).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// One journalctl run from the saved position, until it ends or a line
    /// is not acknowledged.
    async fn round(
        &self,
        program: &str,
        prefix_args: &[String],
        js: &async_nats::jetstream::Context,
        since: time::OffsetDateTime,
    ) {
        let cursor = read_cursor(&self.cursor_file);
        let child = tokio::process::Command::new(program)
            .args(prefix_args)
            .args(start_args(cursor.as_deref(), since))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Not in the agent's process group: a terminal's Ctrl-C is
            // for the agent, which stops it in order.
            .process_group(0)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, program = %program, "cannot follow the journal; app logs are not forwarded");
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
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
        match pump(js, &self.node_id, stdout, &self.cursor_file).await {
            Ok(()) => tracing::warn!("journal follower ended; starting it again"),
            Err(e) => tracing::warn!(
                error = %e,
                "log lines not acknowledged by NATS; sending again from the last acknowledged one"
            ),
        }
        let _ = child.kill().await;
    }
}

/// One line read from journalctl.
#[derive(Debug, PartialEq, Eq)]
enum Record {
    Line(Vec<u8>),
    /// Longer than the limit (skipped).
    TooLong,
}

/// Newline-terminated records of at most `max` bytes. Cancel-safe: what
/// was read stays in `self` (the pump waits for a record with a timeout).
struct Records<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    max: usize,
    /// Inside an over-long record, skipping to its end.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> Records<R> {
    fn new(r: R, max: usize) -> Self {
        Records {
            reader: BufReader::new(r),
            buf: Vec::new(),
            max,
            skipping: false,
        }
    }

    async fn next(&mut self) -> std::io::Result<Option<Record>> {
        loop {
            let budget = if self.skipping {
                64 << 10
            } else {
                (self.max + 1).saturating_sub(self.buf.len()).max(1)
            };
            let n = (&mut self.reader)
                .take(budget as u64)
                .read_until(b'\n', &mut self.buf)
                .await?;
            let ended = self.buf.last() == Some(&b'\n');
            if self.skipping {
                self.buf.clear();
                if ended || n == 0 {
                    self.skipping = false;
                    return Ok(Some(Record::TooLong));
                }
                continue;
            }
            if ended {
                self.buf.pop();
                return Ok(Some(Record::Line(std::mem::take(&mut self.buf))));
            }
            if n == 0 {
                // End of output: the last line may be unterminated.
                return Ok(
                    (!self.buf.is_empty()).then(|| Record::Line(std::mem::take(&mut self.buf)))
                );
            }
            if self.buf.len() > self.max {
                self.buf.clear();
                self.skipping = true;
            }
        }
    }
}

/// Read records and publish this node's app lines, saving the position
/// of the last one acknowledged (records of other units count as done).
/// `Ok` when journalctl ends; `Err` when a publish is not acknowledged.
async fn pump<R: AsyncRead + Unpin>(
    js: &async_nats::jetstream::Context,
    node_id: &str,
    stdout: R,
    cursor_file: &Path,
) -> Result<(), String> {
    let mut records = Records::new(stdout, MAX_RECORD);
    // In order: each record's cursor and its publish (if any).
    let mut in_flight: VecDeque<(String, Option<PublishAckFuture>)> = VecDeque::new();
    let mut done: Option<String> = None;
    let mut saved_at = Instant::now();
    // The position last written to `cursor_file`.
    let mut saved: Option<String> = None;
    let mut skipped = 0u64;
    let mut confirmed = false;
    let result = loop {
        // Acknowledged (or nothing to acknowledge) at the front: done.
        while in_flight.front().is_some_and(|(_, ack)| ack.is_none()) {
            done = in_flight.pop_front().map(|(c, _)| c);
        }
        // One line at a time until NATS has acknowledged one (a server
        // just started may not store the first ones and then store later
        // ones: they would be out of order); pipelined after that.
        let window = if confirmed { MAX_IN_FLIGHT } else { 1 };
        if in_flight.len() >= window {
            if let Err(e) = await_front(&mut in_flight, &mut done).await {
                break Err(e);
            }
            confirmed = true;
            continue;
        }
        if done.is_some() && saved_at.elapsed() >= SAVE_EVERY {
            if let Some(c) = &done {
                save_small_file(cursor_file, c);
            }
            saved.clone_from(&done);
            saved_at = Instant::now();
        }
        // Wait for the next record; with acks pending, resolve them first
        // once no record comes for a moment.
        let next = if in_flight.is_empty() {
            // Nothing pending: save what was acknowledged before waiting
            // (an app may stay quiet for long; a restart must not send its
            // lines again once JetStream's duplicate window is over).
            if done.is_some() && done != saved {
                if let Some(c) = &done {
                    save_small_file(cursor_file, c);
                }
                saved.clone_from(&done);
                saved_at = Instant::now();
            }
            records.next().await
        } else {
            match tokio::time::timeout(SAVE_EVERY, records.next()).await {
                Ok(r) => r,
                Err(_) => {
                    let mut failed = None;
                    while !in_flight.is_empty() && failed.is_none() {
                        failed = await_front(&mut in_flight, &mut done).await.err();
                    }
                    if let Some(e) = failed {
                        break Err(e);
                    }
                    confirmed = true;
                    if let Some(c) = &done {
                        save_small_file(cursor_file, c);
                        saved_at = Instant::now();
                    }
                    saved.clone_from(&done);
                    continue;
                }
            }
        };
        let record = match next {
            Ok(Some(Record::Line(l))) => l,
            Ok(Some(Record::TooLong)) => {
                skipped += 1;
                tracing::warn!(skipped, "a journal record longer than 1 MiB was skipped");
                continue;
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(format!("reading journalctl: {e}")),
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&record) else {
            continue;
        };
        let Some(cursor) = v.get("__CURSOR").and_then(|c| c.as_str()) else {
            continue;
        };
        let cursor = cursor.to_owned();
        let publish = match entry_from_record(&v, node_id) {
            Some((app, entry)) => {
                let Ok(json) = serde_json::to_vec(&entry) else {
                    continue;
                };
                let msg = PublishMessage::build()
                    .payload(json.into())
                    .message_id(&cursor);
                match js
                    .send_publish(store::logs_subject(&app, node_id), msg)
                    .await
                {
                    Ok(ack) => Some(ack),
                    Err(e) => break Err(format!("publish: {e}")),
                }
            }
            None => None,
        };
        in_flight.push_back((cursor, publish));
    };
    // Save what was acknowledged, whatever happened after it.
    if let Some(c) = &done {
        save_small_file(cursor_file, c);
    }
    result
}

/// Wait for the front publish's acknowledgement.
async fn await_front(
    in_flight: &mut VecDeque<(String, Option<PublishAckFuture>)>,
    done: &mut Option<String>,
) -> Result<(), String> {
    let Some((cursor, ack)) = in_flight.pop_front() else {
        return Ok(());
    };
    if let Some(ack) = ack {
        if let Err(e) = ack.await {
            return Err(format!("acknowledgement: {e}"));
        }
    }
    *done = Some(cursor);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_bounded_and_survive_a_cancelled_read() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut records = Records::new(r, 10);
        use tokio::io::AsyncWriteExt;
        // Half a line, then a read that times out: nothing is lost.
        w.write_all(b"hello").await.unwrap();
        let t = tokio::time::timeout(Duration::from_millis(50), records.next()).await;
        assert!(t.is_err());
        w.write_all(b" you\nthis line is far too long\nok\nlast")
            .await
            .unwrap();
        drop(w);
        let mut got = Vec::new();
        while let Some(r) = records.next().await.unwrap() {
            got.push(r);
        }
        assert_eq!(
            got,
            [
                Record::Line(b"hello you".to_vec()),
                Record::TooLong,
                Record::Line(b"ok".to_vec()),
                Record::Line(b"last".to_vec()),
            ]
        );
    }

    #[test]
    fn reading_starts_after_the_saved_cursor_else_at_the_agent_start() {
        let since = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let a = start_args(Some("s=abc;i=1"), since);
        assert!(a.contains(&"--after-cursor=s=abc;i=1".to_owned()), "{a:?}");
        assert!(!a.iter().any(|x| x.starts_with("--since")));
        let a = start_args(None, since);
        assert!(a.contains(&"--since=@1700000000".to_owned()), "{a:?}");
        assert!(a.contains(&"--follow".to_owned()));
        assert!(a.contains(&"--no-tail".to_owned()), "{a:?}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c");
        assert_eq!(read_cursor(&f), None);
        save_small_file(&f, "s=abc;i=2");
        assert_eq!(read_cursor(&f).as_deref(), Some("s=abc;i=2"));
        // The first start is kept until a position is saved.
        let first = dir.path().join("since");
        let t1 = time::OffsetDateTime::from_unix_timestamp(1_700_000_100).unwrap();
        assert_eq!(first_start(&first, since), since);
        assert_eq!(first_start(&first, t1), since);
        std::fs::write(&first, "garbage").unwrap();
        assert_eq!(first_start(&first, t1), t1);
        std::fs::write(&f, "bad cursor\u{7}").unwrap();
        assert_eq!(read_cursor(&f), None);
        assert_eq!(read_cursor(Path::new("/dev/zero")), None);
    }

    #[test]
    fn journal_records_become_go_log_entries() {
        let rec = r#"{"MESSAGE":"hello world","NARUN_APP":"hello","NARUN_INSTANCE":"hello-1","NARUN_NODE":"n1","PRIORITY":"6","__REALTIME_TIMESTAMP":"1700000000123456"}"#;
        let (app, e) = entry_from_journal(rec, "n1").unwrap();
        assert_eq!(app, "hello");
        assert_eq!(e.instance_id, "hello-1");
        assert_eq!(e.message, "hello world");
        assert_eq!(e.stream, "stdout");
        assert_eq!(e.timestamp.unix_timestamp(), 1_700_000_000);
        assert_eq!(e.priority, Some(6));
        assert!(entry_from_journal(rec, "other-node").is_none());
        let bytes = r#"{"MESSAGE":[104,105,255],"NARUN_APP":"a","NARUN_INSTANCE":"a-0","NARUN_NODE":"n1","PRIORITY":"3"}"#;
        let (_, e) = entry_from_journal(bytes, "n1").unwrap();
        assert_eq!(e.message, "hi\u{fffd}");
        assert_eq!(e.stream, "stderr");
        assert!(entry_from_journal(r#"{"MESSAGE":"x"}"#, "n1").is_none());
    }
}
