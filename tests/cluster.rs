//! narun against a real 3-server NATS cluster: three nats-server processes
//! routed on loopback, JetStream on each, every component given the whole
//! URL list as a user gives it.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::load::*;
use common::systemd::{cleanup_state, PrivateSystemd, VarLibDir};
use common::*;

/// `narun ARGS --nats-url URLS`, which must exit 0; returns stdout.
fn narun_ok(urls: &str, args: &[&str]) -> String {
    let (code, out, err) = narun_cli_at(urls, args);
    assert_eq!(code, 0, "narun {args:?} failed:\n{out}\n{err}");
    out
}

/// `narun init ARGS -o json`: each resource's replicas and action.
fn init(urls: &str, args: &[&str]) -> Vec<(String, u64, String)> {
    let mut all = vec!["init", "-o", "json"];
    all.extend_from_slice(args);
    let doc: serde_json::Value = serde_json::from_str(&narun_ok(urls, &all)).unwrap();
    doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["stream"].as_str().unwrap().to_owned(),
                r["replicas"].as_u64().unwrap(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The stream's configured replicas and how many of its peers are current.
async fn stream_replicas(url: &str, stream: &str) -> (usize, usize) {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let info = js
        .get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let current = info
        .cluster
        .map(|c| c.replicas.iter().filter(|p| p.current).count() + 1)
        .unwrap_or(1);
    (info.config.num_replicas, current)
}

/// The first thing a new user does with a cluster they just started:
/// `narun deploy`. JetStream answers nothing sent before its meta leader is
/// elected; the CLI retries within its --timeout instead of failing with
/// "cannot look up stream OBJ_app-binaries: timed out" (it did, every time).
#[test]
fn the_cli_rides_out_a_cluster_still_electing_its_leaders() {
    let cluster = NatsCluster::start(3);
    let started = Instant::now();
    let (code, out, err) = narun_cli_at(
        &cluster.urls(),
        &[
            "deploy",
            "--name",
            "hello",
            "--tag",
            "v1",
            "--node",
            "n1",
            example_binary("hello").to_str().unwrap(),
        ],
    );
    eprintln!("deploy took {:?}:\n{err}", started.elapsed());
    assert_eq!(code, 0, "deploy into a forming cluster:\n{out}\n{err}");
    assert!(out.contains("spec app-configs/hello: written"), "{out}");
}

/// `narun init` creates every bucket and stream with the replicas asked
/// for; `nodes list` warns about those with fewer copies than the cluster
/// allows; `narun init` without a count raises them to one per server
/// (JetStream copies the data), keeping what they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_set_raised_and_warned_about() {
    let cluster = NatsCluster::start(3);
    cluster.wait_jetstream(Duration::from_secs(60)).await;
    let urls = cluster.urls();

    let made = init(&urls, &["--replicas", "1"]);
    assert_eq!(made.len(), 7, "{made:?}");
    assert!(
        made.iter().all(|(_, n, a)| *n == 1 && a == "created"),
        "{made:?}"
    );
    // Something to keep while the copies are made.
    narun_ok(
        &urls,
        &[
            "deploy",
            "--name",
            "kept",
            "--tag",
            "v1",
            "--node",
            "n1",
            example_binary("hello").to_str().unwrap(),
        ],
    );

    let (code, _, err) = narun_cli_at(&urls, &["nodes", "list"]);
    assert_eq!(code, 0, "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("in a 3-server NATS cluster"))
        .collect();
    assert_eq!(warnings.len(), 7, "one warning per resource:\n{err}");
    assert!(
        warnings[0].contains("KV app-configs has 1 replica")
            && warnings[0].contains("`narun init --replicas 3`"),
        "{err}"
    );

    let raised = init(&urls, &[]);
    assert!(
        raised
            .iter()
            .all(|(_, n, a)| *n == 3 && a == "replicas 1 -> 3"),
        "{raised:?}"
    );
    for (stream, _, _) in &raised {
        let url = cluster.servers[0].url();
        eventually(
            Duration::from_secs(60),
            &format!("{stream} copied to 3 servers"),
            || {
                let (url, stream) = (url.clone(), stream.clone());
                async move { stream_replicas(&url, &stream).await == (3, 3) }
            },
        )
        .await;
    }
    let (code, _, err) = narun_cli_at(&urls, &["nodes", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("replica"), "no warning left:\n{err}");
    let again = init(&urls, &[]);
    assert!(
        again.iter().all(|(_, n, a)| *n == 3 && a == "unchanged"),
        "{again:?}"
    );
    let apps = narun_ok(&urls, &["apps", "list"]);
    assert!(apps.contains("kept"), "{apps}");
}

/// The `hello` example as app `app` at `tag` on node-1.
fn hello_spec(dir: &Path, app: &str, tag: &str) -> PathBuf {
    write_spec(
        dir,
        &format!("{app}-{tag}.yaml"),
        &format!(
            "name: {app}\ntag: {tag}\nargs: [\"--service\", \"{app}\"]\n\
             nodes:\n  - name: node-1\n    replicas: 1\n"
        ),
    )
}

/// A 3-server cluster with every bucket at three replicas, a node agent,
/// an app and the gateway all given the three URLs, a steady load through
/// the gateway. The server the gateway is connected to is killed:
/// - the gateway stays up; requests fail only until it has moved to
///   another server (counted and printed), then every one succeeds;
/// - the agent keeps its app running (same process) and keeps reporting;
/// - a deploy made while the server is down reaches the node, under the
///   same load, without a failed request;
/// - the spec, the binary and a shared file written before the kill are
///   all still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lost_under_load_loses_nothing() {
    let app = "cl-hello";
    cleanup_state(app);
    let mut cluster = NatsCluster::start(3);
    cluster.wait_jetstream(Duration::from_secs(60)).await;
    let urls = cluster.urls();
    init(&urls, &["--replicas", "3"]);

    let sd = PrivateSystemd::boot();
    let data = VarLibDir::new("narun-cluster");
    let agent = Agent::start_with(
        &cluster.servers[0],
        &sd,
        "node-1",
        &data.0,
        &["--nats-url", &urls],
    );
    let work = tempfile::tempdir().unwrap();
    let hello = example_binary("hello");
    let shared = work.path().join("shared.txt");
    std::fs::write(&shared, "kept across the loss\n").unwrap();
    narun_ok(&urls, &["files", "add", "shared", shared.to_str().unwrap()]);
    narun_ok(
        &urls,
        &[
            "deploy",
            "-f",
            hello_spec(work.path(), app, "v1").to_str().unwrap(),
            hello.to_str().unwrap(),
            "--wait=60s",
        ],
    );
    let unit = format!("narun-app@{app}.service");
    let pid_before = sd.show(&unit, "MainPID");
    assert_ne!(pid_before, "0");

    let mut gw = GatewayProc::start(
        &urls,
        &format!(
            "  - path: \"/hello/\"\n    methods: [\"POST\"]\n    service: \"{app}\"\n    timeout: \"3s\""
        ),
        "",
    );
    let load = Load::start(gw.http, 4, Duration::from_millis(10));
    load.served(200).await;

    // Kill the server the gateway is on.
    let victim = cluster
        .server_of_client("NATS HTTP Gateway")
        .await
        .expect("the gateway is connected to a server");
    cluster.servers[victim].stop();
    let killed = Instant::now();
    let survivors: String = cluster
        .servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, s)| s.url())
        .collect::<Vec<_>>()
        .join(",");

    // Recovered: 300 requests in a row succeeded after the kill.
    load.until("300 successes in a row after the kill", |recs| {
        recs.iter()
            .rev()
            .take_while(|r| r.sent > killed && r.ok())
            .count()
            >= 300
    })
    .await;
    let after: Vec<Rec> = load
        .records()
        .into_iter()
        .filter(|r| r.sent >= killed)
        .collect();
    let failed: Vec<&Rec> = after.iter().filter(|r| !r.ok()).collect();
    let last_failure = failed.iter().map(|r| r.sent - killed).max();
    eprintln!(
        "server n{victim} killed: {} of {} requests failed, the last sent {last_failure:?} \
         after the kill: {:?}",
        failed.len(),
        after.len(),
        tally(failed.iter().copied())
    );
    assert!(
        gw.proc.is_running(),
        "the gateway exited:\n{}",
        gw.proc.stderr()
    );
    for r in &failed {
        assert!(
            matches!(r.status(), Some(503 | 504)),
            "a failure other than 503/504 while NATS failed over: {r:?}"
        );
    }

    // The agent kept its app and its reports.
    assert_eq!(
        sd.show(&unit, "MainPID"),
        pid_before,
        "the app was not restarted"
    );
    // Its apps share its NATS user: `nodes list` says so.
    let (_, _, err) = narun_cli_at(&survivors, &["nodes", "list"]);
    assert!(
        err.contains("apps on node-1 get no NATS identity of their own"),
        "{err}"
    );
    eventually(Duration::from_secs(60), "node-1 reporting again", || {
        let survivors = survivors.clone();
        async move {
            let (code, out, _) = narun_cli_at(&survivors, &["nodes", "list", "-o", "json"]);
            code == 0 && out.contains("\"node-1\"") && out.contains(&format!("{app}-0"))
        }
    })
    .await;

    // A deploy while the server is down (the user's URL list still names
    // it) reaches the node, and the load sees no failure through it.
    let deploying = Instant::now();
    narun_ok(
        &urls,
        &[
            "deploy",
            "-f",
            hello_spec(work.path(), app, "v2").to_str().unwrap(),
            hello.to_str().unwrap(),
            "--wait=90s",
        ],
    );
    // v1's process stops once v2 is ready (--wait returns at ready).
    eventually(Duration::from_secs(60), "v1 replaced by v2", || async {
        sd.show(&unit, "MainPID") != pid_before
    })
    .await;
    load.served(200).await;
    let recs = load.finish().await;
    let during: Vec<&Rec> = recs
        .iter()
        .filter(|r| r.sent >= deploying && !r.ok())
        .collect();
    assert!(
        during.is_empty(),
        "requests failed during the deploy with a server down: {:?}",
        tally(during.iter().copied())
    );

    // What was written before the kill is all there.
    let images = narun_ok(&survivors, &["images", "list", "-o", "json"]);
    assert!(images.contains(&format!("{app}-v1-linux-")), "{images}");
    let files = narun_ok(&survivors, &["files", "list", "-o", "json"]);
    assert!(files.contains("\"shared\""), "{files}");
    let info = narun_ok(&survivors, &["apps", "info", app, "-o", "json"]);
    assert!(info.contains("\"v2\""), "{info}");
    drop(agent);
}
