//! App logs lose nothing, as a user reads them: `narun logs` after `narun
//! deploy`, against a node agent with a private systemd. Lines written
//! before the agent follows the journal, while the agent is stopped, and
//! while nats-server is down all arrive, once each, in order.

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use common::agent::Agent;
use common::systemd::{cleanup_state, PrivateSystemd, VarLibDir};
use common::*;

/// `narun logs APP` (what is retained), as text.
fn logs(nats: &NatsServer, app: &str) -> String {
    let (code, out, err) = narun_cli(nats, &["logs", app]);
    assert_eq!(code, 0, "{err}");
    out
}

/// The numbers of `line N` messages, in the order printed.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            l.rsplit_once("line ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect()
}

/// The last `line N` systemd's journal holds for `unit`.
fn journal_last(sd: &PrivateSystemd, unit: &str) -> u64 {
    numbers(&sd.journal(&["-u", unit, "-o", "cat", "--no-pager"]))
        .last()
        .copied()
        .unwrap_or(0)
}

/// Wait until the app has printed `more` lines past `from` (journal).
async fn printed_past(sd: &PrivateSystemd, unit: &str, from: u64, more: u64) -> u64 {
    let mut last = 0;
    eventually(Duration::from_secs(60), "the app printing", || {
        last = journal_last(sd, unit);
        let done = last >= from + more;
        async move { done }
    })
    .await;
    last
}

/// Publish `payload` on `subject` with `client` until `sub` receives it
/// (repeats of an earlier payload may come first); a `b` (queued for a lost
/// connection) fails the test.
async fn delivered(
    client: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    subject: &'static str,
    payload: &'static str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "{payload} never delivered");
        client.publish(subject, payload.into()).await.unwrap();
        client.flush().await.unwrap();
        while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await
        {
            assert_ne!(
                got.payload.as_ref(),
                b"b",
                "a message queued for the lost connection arrived"
            );
            if got.payload.as_ref() == payload.as_bytes() {
                return;
            }
        }
    }
}

/// The log forwarder's connection ([`narun::nats::connect_once`]) is not
/// established again once lost: what was queued for it is dropped rather
/// than sent, after the restart, ahead of lines that were lost with the
/// connection and that the forwarder sends again (the reorder this test
/// file's outage test caught under CPU load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_connection_once_lost_fails_instead_of_queueing() {
    let mut nats = NatsServer::start();
    let opts = narun::nats::NatsOptions::new(&nats.url(), "test-once");
    let once = narun::nats::connect_once(&opts)
        .await
        .expect("first connection");
    let watcher = narun::nats::connect_now(&opts).await.unwrap();
    let mut sub = watcher.subscribe("once.>").await.unwrap();
    // The subscription is live once a message published after it arrives
    // (flush is not a round trip): publish until one does.
    delivered(&once, &mut sub, "once.a", "a").await;

    nats.stop();
    // A reconnecting client queues these (and blocks once its queue is
    // full); this one fails them once it has seen the connection go.
    eventually(Duration::from_secs(30), "publishing fails", || {
        let once = once.clone();
        async move {
            matches!(
                tokio::time::timeout(Duration::from_secs(1), once.publish("once.b", "b".into()))
                    .await,
                Ok(Err(_))
            )
        }
    })
    .await;
    // With the server down, a new one cannot be built (no retry forever).
    let err = narun::nats::connect_once(&opts).await.unwrap_err();
    assert!(err.to_string().contains("cannot reach NATS"), "{err}");

    nats.restart();
    narun::nats::wait_connected(&watcher).await;
    assert_ne!(
        once.connection_state(),
        async_nats::connection::State::Connected
    );
    // A new client carries on; nothing the old one queued arrives first.
    let again = narun::nats::connect_once(&opts)
        .await
        .expect("new connection");
    delivered(&again, &mut sub, "once.c", "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_printed_by_an_app_that_exits_at_once_is_in_narun_logs() {
    let app = "lg-once";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-logs-once");
    let _agent = Agent::start(&nats, &sd, "n1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let spec = write_spec(
        work.path(),
        "once.yaml",
        &format!(
            "name: {app}\ntag: v1\nargs: [\"-c\", \"echo the only line\"]\nrestart: {{policy: never}}\nnodes:\n  - name: n1\n    replicas: 1\n"
        ),
    );
    let (code, out, err) = narun_cli(&nats, &["deploy", "-f", spec.to_str().unwrap(), "/bin/sh"]);
    assert_eq!(code, 0, "{out}\n{err}");
    eventually(Duration::from_secs(30), "the line in narun logs", || {
        let text = logs(&nats, app);
        async move { text.contains("the only line") }
    })
    .await;
    let text = logs(&nats, app);
    assert_eq!(text.matches("the only line").count(), 1, "{text}");
    assert!(
        text.contains(&format!("[{app}-0] [stdout] the only line")),
        "{text}"
    );
    // -o json carries the journal's priority.
    let (_, json, _) = narun_cli(&nats, &["logs", app, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(v["message"], "the only line");
    assert_eq!(v["priority"], 6, "{json}");
    cleanup_state(app);
}

/// The agent restarted after an app went quiet: every line the app wrote
/// meanwhile arrives. (`journalctl --follow` from a saved position prints
/// ten entries, then waits for a new one to print the rest, unless told
/// `--no-tail`; a quiet app writes no new one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_written_while_the_agent_was_down_by_an_app_now_quiet_all_arrive() {
    let app = "lg-quiet";
    cleanup_state(app);
    let nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-logs-quiet");
    let mut agent = Agent::start(&nats, &sd, "n1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let unit = format!("narun-app@{app}.service");
    // One line; once the test says so, 40 more at once; then quiet.
    let spec = write_spec(
        work.path(),
        "quiet.yaml",
        &format!(
            "name: {app}\ntag: v1\nargs: [\"-c\", \"echo line 1; while [ ! -e /run/lg-quiet-go ]; do sleep 0.05; done; i=1; while [ $i -lt 41 ]; do i=$((i+1)); echo line $i; done; exec sleep 100000\"]\nnodes:\n  - name: n1\n    replicas: 1\n"
        ),
    );
    let (code, out, err) = narun_cli(&nats, &["deploy", "-f", spec.to_str().unwrap(), "/bin/sh"]);
    assert_eq!(code, 0, "{out}\n{err}");
    eventually(
        Duration::from_secs(30),
        "line 1 forwarded, position saved",
        || {
            let n = numbers(&logs(&nats, app));
            let saved = data.0.join("journal.cursor").exists();
            async move { n == [1] && saved }
        },
    )
    .await;
    agent.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(agent.proc.wait_exit(Duration::from_secs(30)).success());
    drop(agent);
    let out = sd.nsenter("touch", &["/run/lg-quiet-go"]);
    assert!(out.status.success(), "{out:?}");
    printed_past(&sd, &unit, 1, 40).await;
    // journald notifies followers 250 ms after its last write; a follower
    // started before that wakes on it and prints the rest anyway. This
    // pause only makes the test sharp: on a slow machine it can make it
    // miss the bug, never fail without one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _agent = Agent::start(&nats, &sd, "n1", &data.0);
    eventually(
        Duration::from_secs(60),
        "all 41 lines in narun logs",
        || {
            let n = numbers(&logs(&nats, app));
            async move { n.last() == Some(&41) }
        },
    )
    .await;
    assert_eq!(numbers(&logs(&nats, app)), (1..=41).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_written_while_the_agent_or_nats_is_down_arrive_once_in_order() {
    let app = "lg-count";
    cleanup_state(app);
    let mut nats = NatsServer::start();
    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-logs-count");
    let mut agent = Agent::start(&nats, &sd, "n1", &data.0);
    let work = tempfile::tempdir().unwrap();
    let unit = format!("narun-app@{app}.service");
    let spec = write_spec(
        work.path(),
        "count.yaml",
        &format!(
            "name: {app}\ntag: v1\nargs: [\"-c\", \"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \\\"line $i\\\"; sleep 0.02; done\"]\nnodes:\n  - name: n1\n    replicas: 1\n"
        ),
    );
    let (code, out, err) = narun_cli(
        &nats,
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            "/bin/sh",
            "--wait=60s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let first = printed_past(&sd, &unit, 0, 20).await;

    // The agent stopped (SIGTERM), then started again.
    agent.proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(agent.proc.wait_exit(Duration::from_secs(30)).success());
    // 10 s of lines (the app prints one every 20 ms).
    let stopped_at = printed_past(&sd, &unit, first, 500).await;
    drop(agent);
    let agent = Agent::start(&nats, &sd, "n1", &data.0);

    // A follower (`narun logs -f`) across the outage.
    // Killed on drop, also when the test fails.
    let stderr_path = work.path().join("follower.err");
    let child = std::process::Command::new(narun_binary())
        .args(["logs", app, "-f", "--nats-url", &nats.url()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut follower = Proc { child, stderr_path };
    let followed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let out = follower.child.stdout.take().unwrap();
        let followed = followed.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let mut f = followed.lock().unwrap();
                f.push_str(&line);
                f.push('\n');
            }
        })
    };

    // nats-server down, then back on the same port and store.
    let before_outage = printed_past(&sd, &unit, stopped_at, 20).await;
    nats.stop();
    let during = printed_past(&sd, &unit, before_outage, 500).await;
    nats.restart();
    printed_past(&sd, &unit, during, 20).await;

    // Stop the app; every line it wrote must come through.
    let (code, _, err) = narun_cli(&nats, &["apps", "delete", app, "-y"]);
    assert_eq!(code, 0, "{err}");
    eventually(Duration::from_secs(30), "the app stopped", || {
        let state = sd.show(&unit, "ActiveState");
        async move { state != "active" }
    })
    .await;
    let last = journal_last(&sd, &unit);
    let started = Instant::now();
    eventually(Duration::from_secs(60), "every line in narun logs", || {
        let n = numbers(&logs(&nats, app));
        async move { n.last() == Some(&last) }
    })
    .await;
    let got = numbers(&logs(&nats, app));
    let want: Vec<u64> = (1..=last).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{} lines printed, {} in narun logs (first differences: {:?})",
        last,
        got.len(),
        got.iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(got, want, "lost, repeated or reordered lines");
    // The follower resumed after the restart where it was.
    eventually(
        Duration::from_secs(60),
        "the follower at the last line",
        || {
            let n = numbers(&followed.lock().unwrap());
            async move { n.last() == Some(&last) }
        },
    )
    .await;
    let _ = follower.child.kill();
    let status = follower.child.wait().unwrap();
    reader.join().unwrap();
    let seen = numbers(&followed.lock().unwrap());
    let from = seen[0];
    assert_eq!(
        seen,
        (from..=last).collect::<Vec<_>>(),
        "narun logs -f repeated or skipped lines across the NATS restart ({status})"
    );
    eprintln!(
        "{last} lines ({} while the agent was stopped, {} while NATS was down), all in narun logs {:?} after the app stopped",
        stopped_at - first,
        during - before_outage,
        started.elapsed()
    );
    drop(agent);
    cleanup_state(app);
}
