//! The agent loop driven as the loop drives it (events, ticks) against the
//! recording fakes: per case, a table of steps, each with the systemd calls
//! it makes and the status updates it publishes.

use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::node::testkit::{FakeFleet, FakeUnits};

const MAIN: &str = "narun-app@hello.service";
const NEXT: &str = "narun-app@hello.next.service";

/// One thing that happens to the node.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `narun deploy` uploads a binary under a tag (the object watch
    /// reports it).
    Upload(&'static str, &'static str),
    /// A binary is uploaded, and the object watch misses it (NATS trouble).
    UploadUnseen(&'static str, &'static str),
    /// `narun deploy` writes the spec of `hello` at a tag with n replicas.
    Deploy(&'static str, u32),
    /// A spec that does not parse is written.
    DeployYaml(&'static str),
    /// The spec is deleted.
    Delete,
    /// The replay of NATS specs ends; `hello` is not among them.
    SyncedWithout,
    /// systemd changes a unit's state (active, sub, exit status).
    Unit(&'static str, &'static str, &'static str, i32),
    /// Time passes (systemd's clock).
    Wait(u64),
    /// The status timer fires.
    Tick,
    /// The retry timer fires.
    Retry,
}

struct Node {
    agent: Agent<FakeUnits, FakeFleet>,
    sd: FakeUnits,
    fleet: FakeFleet,
    rx: mpsc::UnboundedReceiver<Event>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let cfg = NodeConfig {
            node_id: "n1".into(),
            data_dir: dir.path().join("data"),
            labels: BTreeMap::new(),
            nats: NatsOptions::new(nats_conn::DEFAULT_URL, "test"),
            app_nats_url: "nats://127.0.0.1:4222".into(),
            app_tls_ca: None,
            app_identity: None,
            allow_root_apps: false,
            status_interval: Duration::from_secs(1),
            journalctl: Vec::new(),
            runtime_dir: dir.path().join("run"),
            master_key_file: None,
            exec_wrapper: dir.path().join("no-narun-exec"),
            bridge_binary: dir.path().join("no-narun"),
            admin_addr: None,
            metrics_addr: None,
            user_manager: false,
        };
        std::fs::create_dir_all(cfg.data_dir.join("specs")).unwrap();
        let sd = FakeUnits::default();
        sd.advance(Duration::from_secs(1_000));
        let fleet = FakeFleet::new(cfg.data_dir.join("binaries"));
        let (tx, rx) = mpsc::unbounded_channel();
        let agent = Agent::new(cfg, sd.clone(), "252".into(), fleet.clone(), tx).unwrap();
        Node {
            agent,
            sd,
            fleet,
            rx,
            _dir: dir,
        }
    }

    async fn events(&mut self, batch: Vec<Event>) {
        self.agent.on_events(batch).await.unwrap();
    }

    /// Downloads a step started finish (and are handled) before it ends.
    async fn downloads(&mut self) {
        while self.agent.apps.values().any(|a| a.fetching) {
            let ev = self.rx.recv().await.expect("a download result");
            self.agent.on_events(vec![ev]).await.unwrap();
        }
    }

    /// Do one step; what it did: (systemd calls, published statuses).
    async fn step(&mut self, step: Step) -> (Vec<String>, Vec<String>) {
        match step {
            Step::Upload(tag, content) => {
                self.fleet.upload("hello", tag, content.as_bytes());
                let (os, arch) = go_os_arch();
                let object = store::binary::object_name("hello", tag, os, arch);
                self.events(vec![Event::Binary(object)]).await;
            }
            Step::UploadUnseen(tag, content) => {
                self.fleet.upload("hello", tag, content.as_bytes());
            }
            Step::Deploy(tag, n) => {
                let yaml =
                    format!("name: hello\ntag: {tag}\nnodes:\n  - name: n1\n    replicas: {n}\n");
                self.events(vec![Event::Spec {
                    key: "hello".into(),
                    yaml: Some(yaml.into_bytes()),
                }])
                .await;
            }
            Step::DeployYaml(yaml) => {
                self.events(vec![Event::Spec {
                    key: "hello".into(),
                    yaml: Some(yaml.as_bytes().to_vec()),
                }])
                .await;
            }
            Step::Delete => {
                self.events(vec![Event::Spec {
                    key: "hello".into(),
                    yaml: None,
                }])
                .await;
            }
            Step::SyncedWithout => {
                self.events(vec![Event::Synced {
                    apps: Some(["other".to_owned()].into()),
                }])
                .await;
            }
            Step::Unit(unit, active, sub, code) => {
                self.sd.set(unit, active, sub, |d| {
                    if code != 0 {
                        d.exec_main_code = 1; // CLD_EXITED
                        d.exec_main_status = code;
                        d.n_restarts += 1;
                    }
                });
            }
            Step::Wait(secs) => self.sd.advance(Duration::from_secs(secs)),
            Step::Tick => self.agent.on_tick(Tick::Status).await,
            Step::Retry => self.agent.on_tick(Tick::Retry).await,
        }
        self.downloads().await;
        (self.sd.take_calls(), self.fleet.take_published())
    }

    /// Run a table: each step's calls and published statuses must match.
    async fn run(&mut self, case: &str, table: &[(Step, &[&str], &[&str])]) {
        for (i, (step, calls, published)) in table.iter().enumerate() {
            let (c, p) = self.step(*step).await;
            if std::env::var_os("PRINT").is_some() {
                eprintln!("{case} {i} {step:?}\n  {c:?}\n  {p:?}");
                continue;
            }
            assert_eq!(c, *calls, "{case}: step {i} ({step:?}): systemd calls");
            // "…" at the end of an expected line: a prefix.
            let same = p.len() == published.len()
                && p.iter()
                    .zip(published.iter())
                    .all(|(a, e)| match e.strip_suffix('…') {
                        Some(prefix) => a.starts_with(prefix),
                        None => a == e,
                    });
            assert!(
                same,
                "{case}: step {i} ({step:?}): published {p:#?}, expected {published:#?}"
            );
        }
    }

    /// The spec hash a unit runs.
    fn hash(&self, unit: &str) -> String {
        let d = self.sd.description(unit).expect("a loaded unit");
        units::hash_from_description(&d).unwrap().to_owned()
    }
}

/// hello v1 deployed and running (its first steps are a case of their own).
async fn running_v1() -> Node {
    let mut n = Node::new();
    n.run("v1", V1_STARTS).await;
    n
}

const V1_STARTS: &[(Step, &[&str], &[&str])] = &[
    (Step::Upload("v1", "one"), &[], &[]),
    (
        Step::Deploy("v1", 1),
        &["start narun-app@hello.service"],
        &[
            "hello-0 starting: Starting process",
            "hello-0 starting: waiting until it has run for the stable period",
        ],
    ),
    (Step::Tick, &[], &[]),
    (Step::Wait(3), &[], &[]),
    (Step::Tick, &[], &["hello-0 running"]),
    (Step::Tick, &[], &[]),
];

#[tokio::test]
async fn a_new_app_is_fetched_started_and_running_once_stable() {
    let n = running_v1().await;
    assert_eq!(n.sd.names(), [MAIN]);
}

#[tokio::test]
async fn a_new_version_surges_then_replaces_without_a_stopped_replica() {
    let mut n = running_v1().await;
    let v1 = n.hash(MAIN);
    n.run(
        "v2",
        &[
            (Step::Upload("v2", "two"), &[], &[]),
            (
                Step::Deploy("v2", 1),
                &["start narun-app@hello.next.service"],
                &[
                    "hello-0 starting: Starting process",
                    "hello-0 starting: waiting until it has run for the stable period",
                ],
            ),
            (Step::Tick, &[], &[]),
            (Step::Wait(3), &[], &[]),
            // Ready: the old generation stops (no "stopped" for the
            // replica), the new one moves back to the main name.
            (
                Step::Tick,
                &["stop narun-app@hello.service"],
                &["hello-0 running"],
            ),
            // Back to the main name: the replica serves all along, so
            // nothing is said until the move is done.
            (Step::Tick, &["start narun-app@hello.service"], &[]),
            (Step::Tick, &[], &[]),
            (Step::Wait(3), &[], &[]),
            (
                Step::Tick,
                &["stop narun-app@hello.next.service"],
                &["hello-0 running"],
            ),
            (Step::Tick, &[], &[]),
        ],
    )
    .await;
    assert_eq!(n.sd.names(), [MAIN]);
    assert_ne!(n.hash(MAIN), v1);
}

#[tokio::test]
async fn a_failing_new_version_is_rolled_back_and_the_old_one_keeps_running() {
    let mut n = running_v1().await;
    let v1 = n.hash(MAIN);
    n.run(
        "v2 exits",
        &[
            (Step::Upload("v2", "two"), &[], &[]),
            (
                Step::Deploy("v2", 1),
                &["start narun-app@hello.next.service"],
                &[
                    "hello-0 starting: Starting process",
                    "hello-0 starting: waiting until it has run for the stable period",
                ],
            ),
            (Step::Unit(NEXT, "activating", "auto-restart", 3), &[], &[]),
            (
                Step::Tick,
                &["stop narun-app@hello.next.service"],
                &[
                    "hello-0 failed: rolled back: restarted 1 time before it was ready (last: exited with status 3)",
                    "hello-0 running: rolled back from …",
                ],
            ),
            (Step::Tick, &[], &[]),
            (Step::Wait(120), &[], &[]),
            // Not retried while the spec stays.
            (Step::Tick, &[], &[]),
        ],
    )
    .await;
    assert_eq!(n.sd.names(), [MAIN]);
    assert_eq!(n.hash(MAIN), v1);
}

#[tokio::test]
async fn bad_input_is_reported_and_disturbs_nothing() {
    let mut n = running_v1().await;
    n.run(
        "bad input",
        &[
            (
                Step::DeployYaml("name: hello\ntag: [\n"),
                &[],
                &["hello-0 failed: invalid spec: invalid spec (1 error):\n  did not find expected node content (line 3, column 1)"],
            ),
            (
                Step::DeployYaml("name: other\ntag: v1\n"),
                &[],
                &["hello-0 failed: invalid spec: name: \"other\" does not match the KV key \"hello\""],
            ),
            (
                Step::Deploy("v9", 1),
                &[],
                &["hello-0 failed: Binary fetch failed: binary object 'hello-v9-linux-…"],
            ),
            (Step::Tick, &[], &[]),
            // Uploaded later, unseen: the retry timer picks it up.
            (Step::UploadUnseen("v9", "nine"), &[], &[]),
            (Step::Tick, &[], &[]),
            (
                Step::Retry,
                &["start narun-app@hello.next.service"],
                &[
                    "hello-0 starting: Starting process",
                    "hello-0 starting: waiting until it has run for the stable period",
                ],
            ),
        ],
    )
    .await;
    assert_eq!(n.sd.names(), [NEXT, MAIN]);
}

#[tokio::test]
async fn deleted_apps_stop_whether_deleted_live_or_while_away() {
    for (case, step) in [("live", Step::Delete), ("away", Step::SyncedWithout)] {
        let mut n = running_v1().await;
        n.run(
            case,
            &[(
                step,
                &["stop narun-app@hello.service"],
                &["hello-0 stopping", "hello-0 stopped"],
            )],
        )
        .await;
        assert!(n.sd.names().is_empty(), "{case}");
    }
}

#[tokio::test]
async fn another_agent_with_this_node_id_stops_the_loop_with_an_error() {
    let mut n = running_v1().await;
    let err = n
        .agent
        .on_events(vec![Event::Fatal(NodeError::DuplicateNode {
            node_id: "n1".into(),
            machine: "m".into(),
            last_seen: "now".into(),
        })])
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::DuplicateNode { .. }), "{err}");
    assert!(n.sd.take_calls().is_empty(), "apps keep running");
}
