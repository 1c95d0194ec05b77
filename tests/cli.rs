//! The `narun` management commands against a real nats-server, through the
//! real binary: spec validation, deploy (CLI-1, CLI-2, three arches, --wait),
//! secrets (CLI-3, Go compatibility), files (CLI-4), apps (CLI-5), nodes,
//! logs, errors and exit codes.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_nats::jetstream::kv;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use common::{narun_binary, NatsServer};
use narun::store::binary::{fixtures, DETECT_HEADER_LEN};
use narun::store::{self, InstanceState, LogEntry, NodeState, StatusUpdate};

// === harness ===

/// What a `narun` run printed and returned.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }
    #[track_caller]
    fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "{self:#?}");
        self
    }
}

/// Run `narun ARGS` with `NATS_URL=url`, extra environment and stdin; fail
/// the test if it runs more than 60 s.
fn run(url: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new(narun_binary());
    cmd.args(args)
        .env("NATS_URL", url)
        .env_remove("NARUN_MASTER_KEY")
        .env_remove("NARUN_MASTER_KEY_FILE")
        .env_remove("NARUN_MASTER_KEY_PATH")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start narun");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for narun"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("narun {args:?} did not exit within 60 s");
        }
    };
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn narun(url: &str, args: &[&str]) -> Out {
    run(url, args, &[], None)
}

/// `narun` from async code, off the runtime's threads.
async fn narun_async(url: &str, args: &[&str]) -> Out {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        narun(&url, &args)
    })
    .await
    .unwrap()
}

/// A file with a Linux executable header for `arch`, `size` bytes long,
/// with arch-specific filler.
fn fake_binary(dir: &Path, arch: &str, size: usize) -> PathBuf {
    let mut bytes = fixtures::linux_exec(arch);
    let seed = arch
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    bytes.extend((0..size.saturating_sub(bytes.len())).map(|i| (i as u8) ^ seed));
    let path = dir.join(format!("hello-linux-{arch}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The `hello` example: a real amd64 (host) executable.
fn real_binary() -> PathBuf {
    common::example_binary("hello")
}

fn sha256_digest(path: &Path) -> String {
    let sum: [u8; 32] = Sha256::digest(std::fs::read(path).unwrap()).into();
    narun::store::binary::digest_string(&sum)
}

async fn js(nats: &NatsServer) -> store::Js {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    store::jetstream(&client).expect("JetStream")
}

async fn kv_entry(js: &store::Js, bucket: &str, key: &str) -> Option<kv::Entry> {
    js.get_key_value(bucket)
        .await
        .unwrap_or_else(|e| panic!("bucket {bucket}: {e}"))
        .entry(key)
        .await
        .unwrap()
}

fn node_state(id: &str, arch: &str, instances: &[&str]) -> NodeState {
    let now = time::OffsetDateTime::now_utc();
    NodeState {
        node_id: id.into(),
        last_seen: now,
        version: "test".into(),
        start_time: now,
        managed_instances: instances.iter().map(|s| s.to_string()).collect(),
        status: store::NODE_RUNNING.into(),
        os: "linux".into(),
        arch: arch.into(),
        labels: Default::default(),
        machine_id: None,
        systemd_version: None,
        agent_pid: None,
        app_identity: None,
    }
}

/// Write a heartbeat as a node agent does.
async fn heartbeat(js: &store::Js, state: &NodeState) {
    let kv = store::ensure_kv(js, store::NODE_STATES).await.unwrap();
    kv.put(&state.node_id, serde_json::to_vec(state).unwrap().into())
        .await
        .unwrap();
}

fn status(instance: &str, node: &str, state: InstanceState, hash: &str) -> StatusUpdate {
    StatusUpdate {
        instance_id: instance.into(),
        node_id: node.into(),
        status: state,
        pid: if state == InstanceState::Running {
            4242
        } else {
            0
        },
        exit_code: None,
        error: String::new(),
        time: time::OffsetDateTime::now_utc(),
        spec_hash: hash.into(),
        restarts: None,
    }
}

/// Publish a status into the retained stream and wait for its ack.
async fn publish_retained(js: &store::Js, app: &str, u: &StatusUpdate) {
    js.publish(
        store::status_subject(app, &u.node_id),
        serde_json::to_vec(u).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .expect("status stored in narun-status");
}

// === spec validation ===

#[test]
fn invalid_specs_are_rejected_with_every_error_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "name: hello\ntag: v1\nmode: jial\nnodes:\n  - name: node-1\n    replicas: 1\n  - name: node-2\n    replicas: 0\nCPUCores: 0.5\n",
    )
    .unwrap();
    let bin = fake_binary(dir.path(), "amd64", 4096);
    let args = [
        "deploy",
        "-f",
        spec.to_str().unwrap(),
        bin.to_str().unwrap(),
    ];
    // No server is needed to reject it: nothing is contacted.
    let out = narun("nats://127.0.0.1:1", &args).code(65);
    for expected in [
        "invalid spec (3 errors)",
        "mode: \"jial\" is not a valid mode: expected one of exec, landlock (line 3, column 7)",
        "nodes[1].replicas: must be > 0 (line 8, column 5)",
        "CPUCores: unknown key (did you mean `cpuCores`?) (line 9, column 1)",
    ] {
        assert!(
            out.stderr.contains(expected),
            "{expected:?} in {}",
            out.stderr
        );
    }
    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let doc = narun("nats://127.0.0.1:1", &json_args).code(65).json();
    let errors = doc["details"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3);
    assert_eq!(errors[1]["path"], "nodes[1].replicas");
    assert_eq!(errors[1]["line"], 8);
    assert_eq!(doc["exit_code"], 65);
}

#[test]
fn the_go_example_specs_load_and_the_typo_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "amd64", 4096);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/go-specs");
    for ok in ["hello-app.yaml", "every-field.yaml"] {
        let f = fixtures.join(ok);
        let out = narun(
            "nats://127.0.0.1:1",
            &[
                "deploy",
                "--dry-run",
                "-f",
                f.to_str().unwrap(),
                bin.to_str().unwrap(),
            ],
        )
        .ok();
        assert!(out.stdout.contains(": valid (app hello"), "{out:?}");
        assert!(out.stdout.contains("-> hello"), "{out:?}");
    }
    let every = narun(
        "nats://127.0.0.1:1",
        &[
            "deploy",
            "--dry-run",
            "-f",
            fixtures.join("every-field.yaml").to_str().unwrap(),
        ],
    )
    .ok();
    assert!(every.stderr.contains("cgroupParent: ignored"), "{every:?}");
    let hello = narun(
        "nats://127.0.0.1:1",
        &[
            "deploy",
            "--dry-run",
            "-f",
            fixtures.join("hello.yaml").to_str().unwrap(),
        ],
    )
    .code(65);
    assert!(
        hello
            .stderr
            .contains("CPUCores: unknown key (did you mean `cpuCores`?) (line 28, column 1)"),
        "{hello:?}"
    );
    let jail = narun(
        "nats://127.0.0.1:1",
        &[
            "deploy",
            "--dry-run",
            "-f",
            fixtures.join("hello-jail.yaml").to_str().unwrap(),
        ],
    )
    .code(65);
    assert!(jail.stderr.contains("FreeBSD only"), "{jail:?}");
}

#[test]
fn the_readme_spec_example_is_valid() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("### The ServiceSpec").expect("the section")..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").unwrap()];
    let parsed = narun::spec::parse_detailed(yaml, narun::spec::Strictness::Strict)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    assert!(parsed.spec.node_selector.is_some() && parsed.spec.tasks_max == Some(64));
}

#[tokio::test]
async fn nothing_is_uploaded_for_an_invalid_spec() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "name: hello\ntag: v1\nnodes: [{name: n1, replicas: 0}]\n",
    )
    .unwrap();
    let bin = fake_binary(dir.path(), "amd64", 4096);
    narun_async(
        &nats.url(),
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            bin.to_str().unwrap(),
        ],
    )
    .await
    .code(65);
    let js = js(&nats).await;
    assert!(store::open_object_store(&js, store::APP_BINARIES)
        .await
        .unwrap()
        .is_none());
    assert!(store::open_kv(&js, store::APP_CONFIGS)
        .await
        .unwrap()
        .is_none());
}

#[test]
fn scripts_and_unknown_formats_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\nexec hello\n").unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some text, not a program").unwrap();
    let base = ["deploy", "--dry-run", "--name", "hello", "--tag", "v1"];
    let out = narun(
        "nats://127.0.0.1:1",
        &[&base[..], &[script.to_str().unwrap()]].concat(),
    )
    .code(65);
    assert!(
        out.stderr.contains("run.sh: is a script (starts with #!)"),
        "{out:?}"
    );
    let out = narun(
        "nats://127.0.0.1:1",
        &[&base[..], &[text.to_str().unwrap()]].concat(),
    )
    .code(65);
    assert!(
        out.stderr.contains("unrecognized executable format"),
        "{out:?}"
    );
    let a = fake_binary(dir.path(), "arm64", 100);
    let b = dir.path().join("copy");
    std::fs::copy(&a, &b).unwrap();
    let out = narun(
        "nats://127.0.0.1:1",
        &[&base[..], &[a.to_str().unwrap(), b.to_str().unwrap()]].concat(),
    )
    .code(65);
    assert!(out.stderr.contains("are both linux/arm64"), "{out:?}");
}

// === deploy ===

/// CLI-1 with three architectures: objects named `<app>-<tag>-linux-<arch>`
/// with the five Go metadata keys and the files' SHA-256; the KV value is
/// the file's bytes; a second run changes nothing.
#[tokio::test]
async fn cli1_deploy_uploads_three_arches_then_the_spec() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec_text = "name: hello-app\ntag: hello-app-v1.3 # Base tag\nargs: [ \"--listen\", \":9001\" ]\nnodes:\n  - name: node-amd64\n    replicas: 1\n  - name: node-arm64\n    replicas: 2\n";
    let spec = dir.path().join("hello-spec.yaml");
    std::fs::write(&spec, spec_text).unwrap();
    let amd64 = real_binary();
    let arm64 = fake_binary(dir.path(), "arm64", 300_000);
    let riscv64 = fake_binary(dir.path(), "riscv64", 5_000);
    let bins = [(&amd64, "amd64"), (&arm64, "arm64"), (&riscv64, "riscv64")];
    let args = [
        "deploy",
        "-f",
        spec.to_str().unwrap(),
        amd64.to_str().unwrap(),
        arm64.to_str().unwrap(),
        riscv64.to_str().unwrap(),
        "-o",
        "json",
    ];
    let report = narun_async(&nats.url(), &args).await.ok().json();
    assert_eq!(report["spec"]["changed"], true);
    assert_eq!(report["spec"]["revision"], 1);

    let js = js(&nats).await;
    let bucket = js.get_object_store(store::APP_BINARIES).await.unwrap();
    for (i, (path, arch)) in bins.iter().enumerate() {
        let name = format!("hello-app-hello-app-v1.3-linux-{arch}");
        let info = bucket.info(&name).await.unwrap();
        assert_eq!(info.size as u64, std::fs::metadata(path).unwrap().len());
        assert_eq!(info.digest.as_deref(), Some(sha256_digest(path).as_str()));
        let m = &info.metadata;
        assert_eq!(m.len(), 5, "{m:?}");
        assert_eq!(m["narun-app-name"], "hello-app");
        assert_eq!(m["narun-version-tag"], "hello-app-v1.3");
        assert_eq!(m["narun-goos"], "linux");
        assert_eq!(m["narun-goarch"], *arch);
        assert_eq!(
            m["narun-original-file"],
            path.file_name().unwrap().to_str().unwrap()
        );
        assert_eq!(
            info.description.as_deref(),
            Some(format!("Binary for hello-app (linux/{arch}) tag hello-app-v1.3").as_str())
        );
        assert_eq!(report["binaries"][i]["object"], name);
        assert_eq!(report["binaries"][i]["uploaded"], true);
    }
    let entry = kv_entry(&js, store::APP_CONFIGS, "hello-app")
        .await
        .unwrap();
    assert_eq!(
        entry.value,
        spec_text.as_bytes(),
        "the file's bytes, as Go stores them"
    );

    // Idempotent: nothing uploaded, no new revision.
    let again = narun_async(&nats.url(), &args).await.ok().json();
    assert_eq!(again["spec"]["changed"], false);
    assert_eq!(again["spec"]["revision"], 1);
    assert!(again["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["uploaded"] == false));
    assert_eq!(
        kv_entry(&js, store::APP_CONFIGS, "hello-app")
            .await
            .unwrap()
            .revision,
        1
    );

    // A new build of the same tag is uploaded again (nodes restart, R5).
    let arm64_v2 = fake_binary(dir.path(), "arm64", 300_001);
    let out = narun_async(
        &nats.url(),
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            arm64_v2.to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(out["binaries"][0]["uploaded"], true);
    let info = bucket
        .info("hello-app-hello-app-v1.3-linux-arm64")
        .await
        .unwrap();
    assert_eq!(
        info.digest.as_deref(),
        Some(sha256_digest(&arm64_v2).as_str())
    );

    // The table form.
    let table = narun_async(&nats.url(), &args[..6]).await.ok();
    assert!(
        table
            .stdout
            .contains("unchanged  hello-app-hello-app-v1.3-linux-amd64"),
        "{table:?}"
    );
    assert!(
        table
            .stdout
            .contains("spec app-configs/hello-app: unchanged (revision 1)"),
        "{table:?}"
    );
}

/// CLI-2: without a spec file the generated spec names node `local`, one
/// replica, and `mode: exec` (Go wrote no mode, so its runner never started
/// the app, R3).
#[tokio::test]
async fn cli2_deploy_without_a_spec_generates_one_with_mode_exec() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "amd64", 10_000);
    narun_async(
        &nats.url(),
        &["deploy", "--name", "x", "--tag", "y", bin.to_str().unwrap()],
    )
    .await
    .ok();
    let js = js(&nats).await;
    let value = kv_entry(&js, store::APP_CONFIGS, "x").await.unwrap().value;
    let yaml = std::str::from_utf8(&value).unwrap();
    assert_eq!(
        yaml,
        "name: x\ntag: y\nmode: exec\nnodes:\n- name: local\n  replicas: 1\n"
    );
    let spec = narun::spec::parse(yaml).unwrap();
    assert_eq!(spec.mode, narun::spec::Mode::Exec);
    let bucket = js.get_object_store(store::APP_BINARIES).await.unwrap();
    assert!(bucket.info("x-y-linux-amd64").await.is_ok());

    // Bad names are refused before anything is contacted.
    let out = narun_async(
        &nats.url(),
        &[
            "deploy",
            "--name",
            "a.b",
            "--tag",
            "y",
            bin.to_str().unwrap(),
        ],
    )
    .await
    .code(65);
    assert!(
        out.stderr.contains("name: \"a.b\" is not a valid app name"),
        "{out:?}"
    );
}

#[tokio::test]
async fn deploy_warns_when_no_binary_matches_a_node_arch() {
    let nats = NatsServer::start();
    let js = js(&nats).await;
    heartbeat(&js, &node_state("node-1", "riscv64", &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "amd64", 1000);
    let out = narun_async(
        &nats.url(),
        &[
            "deploy",
            "--name",
            "hello",
            "--tag",
            "v1",
            "--node",
            "node-1",
            bin.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    assert!(
        out.stderr
            .contains("node node-1 is linux/riscv64 but no binary for linux/riscv64 was uploaded"),
        "{out:?}"
    );
    // Without binaries, the ones uploaded for the tag are used; none → error.
    let out = narun_async(&nats.url(), &["deploy", "--name", "hello", "--tag", "v2"])
        .await
        .code(1);
    assert!(
        out.stderr.contains("no binary uploaded for hello tag v2"),
        "{out:?}"
    );
    narun_async(
        &nats.url(),
        &[
            "deploy",
            "--name",
            "hello",
            "--tag",
            "v1",
            "--replicas",
            "2",
        ],
    )
    .await
    .ok();
}

#[tokio::test]
async fn deploy_wait_times_out_cleanly_without_an_agent() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "amd64", 1000);
    let started = Instant::now();
    let out = narun_async(
        &nats.url(),
        &[
            "deploy",
            "--name",
            "hello",
            "--tag",
            "v1",
            "--node",
            "node-1",
            "--wait=2s",
            bin.to_str().unwrap(),
        ],
    )
    .await
    .code(1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert!(
        out.stderr
            .contains("hello: 0/1 replicas running, 1 pending (timed out after 2"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(
            "node-1  1        0        0       1        no heartbeat: is the node agent running?"
        ),
        "{out:?}"
    );
    // The spec was written all the same.
    let js = js(&nats).await;
    assert!(kv_entry(&js, store::APP_CONFIGS, "hello").await.is_some());
}

/// A stand-in for the node agent: when the spec is written, report each
/// replica as `state` with the spec's node hash.
async fn fake_agent(
    js: store::Js,
    app: &'static str,
    node: &'static str,
    arch: &'static str,
    state: InstanceState,
    error: &'static str,
) -> tokio::task::JoinHandle<()> {
    heartbeat(&js, &node_state(node, arch, &[])).await;
    let kv = store::ensure_kv(&js, store::APP_CONFIGS).await.unwrap();
    let mut watch = kv.watch(app).await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(entry)) = watch.next().await {
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let spec = narun::spec::parse(std::str::from_utf8(&entry.value).unwrap()).unwrap();
            let bucket = js.get_object_store(store::APP_BINARIES).await.unwrap();
            let object = store::binary::object_name(&spec.name, &spec.tag, "linux", arch);
            let digest = bucket.info(&object).await.unwrap().digest.unwrap();
            let hash = spec.node_hash(node, &Default::default(), arch, &digest);
            let replicas = spec.replicas_for(node, &Default::default(), arch);
            for i in 0..replicas {
                let id = spec.instance_id(i);
                let client = js.client();
                let mut starting = status(&id, node, InstanceState::Starting, &hash);
                starting.error = "Starting process".into();
                // An old instance of another spec: ignored by --wait.
                let old = status(&id, node, InstanceState::Stopped, "0000000000000000");
                let mut last = status(&id, node, state, &hash);
                last.error = error.into();
                for u in [old, starting, last] {
                    client
                        .publish(
                            store::status_subject(app, node),
                            serde_json::to_vec(&u).unwrap().into(),
                        )
                        .await
                        .unwrap();
                }
                client.flush().await.unwrap();
            }
            return;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_wait_follows_status_until_running() {
    let nats = NatsServer::start();
    let js = js(&nats).await;
    let agent = fake_agent(
        js.clone(),
        "hello",
        "node-1",
        "amd64",
        InstanceState::Running,
        "",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "amd64", 1000);
    let out = narun_async(
        &nats.url(),
        &[
            "deploy",
            "--name",
            "hello",
            "--tag",
            "v1",
            "--node",
            "node-1",
            "--replicas",
            "2",
            "--wait=30s",
            bin.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    agent.await.unwrap();
    assert!(
        out.stdout.contains("node-1  2        2        0       0"),
        "{out:?}"
    );
    assert!(out.stderr.contains("node-1 hello-1 running"), "{out:?}");
    assert!(
        !out.stderr.contains("stopped"),
        "the previous spec's status is ignored: {out:?}"
    );

    // Redeploying the same thing with the agent's statuses retained: done at once.
    let started = Instant::now();
    let doc = narun_async(
        &nats.url(),
        &[
            "deploy",
            "--name",
            "hello",
            "--tag",
            "v1",
            "--node",
            "node-1",
            "--replicas",
            "2",
            "--wait=30s",
            bin.to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .await
    .ok()
    .json();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(doc["wait"]["all_running"], true);
    assert_eq!(doc["wait"]["nodes"][0]["running"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_wait_reports_failures() {
    let nats = NatsServer::start();
    let js = js(&nats).await;
    let agent = fake_agent(
        js.clone(),
        "hello",
        "node-1",
        "amd64",
        InstanceState::Failed,
        "Binary fetch failed: not found",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "amd64", 1000);
    let out = narun_async(
        &nats.url(),
        &[
            "deploy",
            "--name",
            "hello",
            "--tag",
            "v1",
            "--node",
            "node-1",
            "--wait=30s",
            bin.to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .await
    .code(1);
    agent.await.unwrap();
    let doc = out.json();
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(
        doc["error"],
        "hello: 0/1 replicas running, 1 failed (node-1 hello-0: Binary fetch failed: not found)"
    );
    let node = &doc["details"]["wait"]["nodes"][0];
    assert_eq!(node["failed"], 1);
    assert_eq!(node["note"], "Binary fetch failed: not found");
}

// === secrets ===

fn write_key(dir: &Path) -> (PathBuf, [u8; 32]) {
    let key: [u8; 32] = std::array::from_fn(|i| (i * 7) as u8);
    let path = dir.join("master.key");
    std::fs::write(&path, format!("{}\n", STANDARD.encode(key))).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, key)
}

/// CLI-3, plus Go compatibility both ways.
#[tokio::test]
async fn cli3_secrets_set_list_delete_and_go_compatibility() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let (key_path, key) = write_key(dir.path());
    let key_env = [("NARUN_MASTER_KEY_FILE", key_path.to_str().unwrap())];

    // Without a key: a clear error, nothing written.
    let out = run(&url, &["secret", "set", "S", "v"], &[], None).code(65);
    assert!(out.stderr.contains("the master key is required"), "{out:?}");

    // The value from stdin (one trailing newline dropped).
    let out = run(&url, &["secret", "set", "S"], &key_env, Some(b"v\n")).ok();
    assert!(out.stdout.contains("secret S created"), "{out:?}");
    let js = js(&nats).await;
    let first: serde_json::Value =
        serde_json::from_slice(&kv_entry(&js, store::SECRETS, "S").await.unwrap().value).unwrap();
    let fields: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        ["ciphertext", "created_at", "name", "nonce", "updated_at"]
    );
    assert_eq!(first["name"], "S");
    // Decrypt as Go does: AES-256-GCM, 12-byte nonce, AAD = name.
    let decrypt = |doc: &serde_json::Value, aad: &str| {
        let ct = STANDARD
            .decode(doc["ciphertext"].as_str().unwrap())
            .unwrap();
        let nonce = STANDARD.decode(doc["nonce"].as_str().unwrap()).unwrap();
        assert_eq!(nonce.len(), 12);
        Aes256Gcm::new_from_slice(&key).unwrap().decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: aad.as_bytes(),
            },
        )
    };
    assert_eq!(decrypt(&first, "S").unwrap(), b"v");
    assert!(decrypt(&first, "T").is_err(), "the name is authenticated");

    // A second set keeps created_at (argv value, description).
    let out = run(
        &url,
        &["secret", "set", "S", "v2", "--description", "db password"],
        &key_env,
        None,
    )
    .ok();
    assert!(out.stdout.contains("secret S updated"), "{out:?}");
    let second: serde_json::Value =
        serde_json::from_slice(&kv_entry(&js, store::SECRETS, "S").await.unwrap().value).unwrap();
    assert_eq!(second["created_at"], first["created_at"]);
    assert_ne!(second["updated_at"], first["updated_at"]);
    assert_eq!(decrypt(&second, "S").unwrap(), b"v2");

    // --from-file keeps the bytes as they are.
    let value_file = dir.path().join("value");
    std::fs::write(&value_file, "line1\nline2\n").unwrap();
    run(
        &url,
        &[
            "secret",
            "set",
            "F",
            "--from-file",
            value_file.to_str().unwrap(),
        ],
        &key_env,
        None,
    )
    .ok();
    let doc: serde_json::Value =
        serde_json::from_slice(&kv_entry(&js, store::SECRETS, "F").await.unwrap().value).unwrap();
    assert_eq!(decrypt(&doc, "F").unwrap(), b"line1\nline2\n");

    // A secret written by the Go CLI (local-offset times): updating it here
    // keeps its created_at, and the value stays decryptable by Go.
    let go_nonce = [3u8; 12];
    let go_ct = Aes256Gcm::new_from_slice(&key)
        .unwrap()
        .encrypt(
            Nonce::from_slice(&go_nonce),
            Payload {
                msg: b"from go",
                aad: b"GO",
            },
        )
        .unwrap();
    let go_doc = serde_json::json!({
        "name": "GO", "ciphertext": STANDARD.encode(&go_ct), "nonce": STANDARD.encode(go_nonce),
        "created_at": "2025-12-21T19:18:35.123456789-05:00", "updated_at": "2025-12-21T19:18:35.123456789-05:00",
    });
    let kv = js.get_key_value(store::SECRETS).await.unwrap();
    kv.put("GO", serde_json::to_vec(&go_doc).unwrap().into())
        .await
        .unwrap();
    let list = run(&url, &["secret", "list", "-o", "json"], &[], None)
        .ok()
        .json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["F", "GO", "S"]);
    assert_eq!(list[1]["created_at"], "2025-12-21T19:18:35.123456789-05:00");
    run(&url, &["secret", "set", "GO", "from rust"], &key_env, None).ok();
    let doc: serde_json::Value =
        serde_json::from_slice(&kv_entry(&js, store::SECRETS, "GO").await.unwrap().value).unwrap();
    assert_eq!(doc["created_at"], "2025-12-21T19:18:35.123456789-05:00");
    assert_eq!(decrypt(&doc, "GO").unwrap(), b"from rust");

    let table = narun(&url, &["secret", "list"]).ok();
    assert!(table.stdout.starts_with("SECRET NAME"), "{table:?}");
    assert!(table.stdout.contains("db password"), "{table:?}");

    // delete purges; an unknown name is an error.
    narun(&url, &["secret", "delete", "-y", "S"]).ok();
    let purged = js
        .get_key_value(store::SECRETS)
        .await
        .unwrap()
        .entry("S")
        .await
        .unwrap();
    assert!(
        purged
            .as_ref()
            .is_none_or(|e| e.operation == kv::Operation::Purge),
        "{purged:?}"
    );
    let out = narun(&url, &["secret", "delete", "-y", "S"]).code(1);
    assert!(out.stderr.contains("unknown secret \"S\""), "{out:?}");
    // No confirmation on stdin: cancelled.
    let out = run(&url, &["secret", "delete", "F"], &[], Some(b"no\n")).code(1);
    assert!(out.stderr.contains("cancelled"), "{out:?}");
    let out = narun(&url, &["secret", "set", "a b", "v"]).code(65);
    assert!(out.stderr.contains("not a valid secret name"), "{out:?}");
}

#[test]
fn secret_keygen_writes_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k");
    narun(
        "nats://127.0.0.1:1",
        &["secret", "keygen", "--file", file.to_str().unwrap()],
    )
    .ok();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = STANDARD
        .decode(std::fs::read_to_string(&file).unwrap().trim())
        .unwrap();
    assert_eq!(key.len(), 32);
    let out = narun(
        "nats://127.0.0.1:1",
        &["secret", "keygen", "--file", file.to_str().unwrap()],
    )
    .code(1);
    assert!(
        out.stderr.contains("File exists"),
        "never overwritten: {out:?}"
    );
}

// === files ===

/// CLI-4.
#[tokio::test]
async fn cli4_files_add_list_delete() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("settings.json");
    std::fs::write(&f, "{\"a\":1}").unwrap();
    let out = narun(&url, &["files", "add", "a/b", f.to_str().unwrap()]).code(65);
    assert!(
        out.stderr.contains("\"a/b\" is not a valid file name"),
        "{out:?}"
    );
    let out = narun(&url, &["files", "add", "cfg", dir.path().to_str().unwrap()]).code(65);
    assert!(out.stderr.contains("not a regular file"), "{out:?}");
    narun(&url, &["files", "add", "cfg", f.to_str().unwrap()]).ok();

    let js = js(&nats).await;
    let info = js
        .get_object_store(store::FILES)
        .await
        .unwrap()
        .info("cfg")
        .await
        .unwrap();
    assert_eq!(info.metadata["original-filename"], "settings.json");
    let ts = &info.metadata["upload-timestamp"];
    assert!(
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
        "{ts}"
    );
    assert_eq!(
        info.description.as_deref(),
        Some("Shared file 'cfg' uploaded from 'settings.json'")
    );

    let table = narun(&url, &["files", "list"]).ok();
    assert!(
        table.stdout.starts_with("NAME  SIZE  MODIFIED"),
        "{table:?}"
    );
    assert!(
        table.stdout.contains("ORIGINAL FILENAME  DIGEST"),
        "{table:?}"
    );
    assert!(table.stdout.contains("settings.json"), "{table:?}");
    let list = narun(&url, &["files", "list", "-o", "json"]).ok().json();
    assert_eq!(list[0]["name"], "cfg");
    assert_eq!(list[0]["size"], 7);

    // A spec mounting it protects it.
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "name: hello\ntag: v1\nnodes: [{name: n1, replicas: 1}]\nmounts: [{path: conf/settings.json, source: {objectStore: cfg}}]\n",
    )
    .unwrap();
    let bin = fake_binary(dir.path(), "amd64", 100);
    narun(
        &url,
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            bin.to_str().unwrap(),
        ],
    )
    .ok();
    let out = narun(&url, &["files", "delete", "-y", "cfg"]).code(1);
    assert!(
        out.stderr.contains("file cfg is mounted by hello"),
        "{out:?}"
    );
    narun(&url, &["files", "delete", "-y", "--force", "cfg"]).ok();
    assert!(narun(&url, &["files", "list", "-o", "json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    let out = narun(&url, &["files", "delete", "-y", "cfg"]).code(1);
    assert!(out.stderr.contains("no file named \"cfg\""), "{out:?}");
}

/// Write an object the way nats.go (so the Go narun CLI) does: one chunk,
/// then a meta record with a zero `mtime` (nats.go never stores the time:
/// it reads the meta message's JetStream timestamp).
async fn put_like_go(
    js: &store::Js,
    bucket: &str,
    name: &str,
    data: &[u8],
    description: &str,
    metadata: serde_json::Value,
) {
    let sum: [u8; 32] = Sha256::digest(data).into();
    let nuid = format!("Go{}", &hex(&sum)[..20]);
    js.publish(
        format!("$O.{bucket}.C.{nuid}"),
        Bytes::copy_from_slice(data),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let meta = serde_json::json!({
        "name": name,
        "description": description,
        "metadata": metadata,
        "options": {"max_chunk_size": 131072},
        "bucket": bucket,
        "nuid": nuid,
        "size": data.len(),
        "mtime": "0001-01-01T00:00:00Z",
        "chunks": 1,
        "digest": format!("SHA-256={}", URL_SAFE.encode(sum)),
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    js.publish_with_headers(
        format!("$O.{bucket}.M.{}", URL_SAFE.encode(name)),
        headers,
        serde_json::to_vec(&meta).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Binaries and files uploaded by the Go CLI carry a zero `mtime`: the
/// lists show when the server stored them, as the Go CLI does, not year 1.
#[tokio::test]
async fn objects_uploaded_by_go_show_when_they_were_stored() {
    let nats = NatsServer::start();
    let url = nats.url();
    let js = js(&nats).await;
    store::ensure_object_store(&js, store::APP_BINARIES)
        .await
        .unwrap();
    let files = store::ensure_object_store(&js, store::FILES).await.unwrap();
    let before = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
    put_like_go(
        &js,
        store::APP_BINARIES,
        "hello-v1-linux-amd64",
        &fixtures::linux_exec("amd64"),
        "Binary for hello (linux/amd64) tag v1",
        serde_json::json!({
            "narun-app-name": "hello", "narun-goos": "linux", "narun-goarch": "amd64",
            "narun-version-tag": "v1", "narun-original-file": "hello",
        }),
    )
    .await;
    for name in ["cfg", "gone"] {
        put_like_go(
            &js,
            store::FILES,
            name,
            b"{\"a\":1}",
            &format!("Shared file '{name}' uploaded from 'settings.json'"),
            serde_json::json!({
                "original-filename": "settings.json",
                "upload-timestamp": "2025-12-21T10:00:00Z",
            }),
        )
        .await;
    }
    files.delete("gone").await.unwrap();
    let after = time::OffsetDateTime::now_utc() + Duration::from_secs(1);
    let stored_now = |doc: &serde_json::Value| {
        let text = doc["modified"].as_str().unwrap_or_else(|| panic!("{doc}"));
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap();
        assert!(
            before <= t && t <= after,
            "{text} not in [{before}, {after}]"
        );
    };

    let images = narun_async(&url, &["images", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
    assert_eq!(images[0]["object"], "hello-v1-linux-amd64");
    assert_eq!(images[0]["app"], "hello");
    stored_now(&images[0]);
    let files_doc = narun_async(&url, &["files", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        files_doc.as_array().unwrap().len(),
        1,
        "deleted skipped: {files_doc}"
    );
    assert_eq!(files_doc[0]["name"], "cfg");
    assert_eq!(files_doc[0]["original_filename"], "settings.json");
    stored_now(&files_doc[0]);

    // The tables too: this year, not 0001.
    let year = format!("  {}-", time::OffsetDateTime::now_utc().year());
    for args in [&["images", "list"], &["files", "list"]] {
        let table = narun_async(&url, args).await.ok();
        assert!(!table.stdout.contains("0001-01-01"), "{table:?}");
        assert!(table.stdout.contains(&year), "{table:?}");
    }
}

// === apps, images, nodes ===

/// CLI-5: list, info and delete, with node heartbeats and retained statuses.
#[tokio::test]
async fn cli5_apps_list_info_delete() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "amd64", 1000);
    let spec = dir.path().join("hello.yaml");
    std::fs::write(
        &spec,
        "name: hello\ntag: v1\ndescription: says hello\nnodes:\n  - name: node-1\n    replicas: 2\n  - name: node-2\n    replicas: 1\n",
    )
    .unwrap();
    narun_async(
        &url,
        &[
            "deploy",
            "-f",
            spec.to_str().unwrap(),
            bin.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    let js = js(&nats).await;
    // node-1 runs hello-0 and hello-1, plus an orphan hello-5; node-2 is offline.
    heartbeat(
        &js,
        &node_state("node-1", "amd64", &["hello-0", "hello-1", "hello-5"]),
    )
    .await;
    store::ensure_status_stream(&js).await.unwrap();
    publish_retained(
        &js,
        "hello",
        &status("hello-0", "node-1", InstanceState::Running, ""),
    )
    .await;
    let mut crashed = status("hello-1", "node-1", InstanceState::Crashed, "");
    crashed.exit_code = Some(3);
    publish_retained(&js, "hello", &crashed).await;
    let mut restarting = status("hello-1", "node-1", InstanceState::Starting, "");
    restarting.error = "Restarting (2/5)".into();
    publish_retained(&js, "hello", &restarting).await;

    let table = narun_async(&url, &["apps", "list"]).await.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(
        lines[0], "APP    TAG  NODE    NODE STATUS  PLATFORM     DESIRED  RUNNING  INSTANCES",
        "{table:?}"
    );
    assert_eq!(
        lines[1],
        "hello  v1   node-1  running      linux/amd64  2        2        hello-0, hello-1, hello-5"
    );
    assert_eq!(
        lines[2],
        "hello  v1   node-2  offline      -            1        0        -"
    );
    // The Go name still works.
    assert_eq!(
        narun_async(&url, &["service", "list"]).await.ok().stdout,
        table.stdout
    );

    let doc = narun_async(&url, &["apps", "info", "hello", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(doc["spec"]["description"], "says hello");
    assert_eq!(doc["revision"], 1);
    let instances = doc["instances"].as_array().unwrap();
    let find = |id: &str| instances.iter().find(|i| i["instance_id"] == id).unwrap();
    assert_eq!(find("hello-0")["status"], "running");
    assert_eq!(find("hello-0")["pid"], 4242);
    assert_eq!(find("hello-1")["status"], "starting");
    assert_eq!(find("hello-1")["restarts"], 2);
    assert_eq!(find("hello-1")["last_error"], "crashed (exit code 3)");
    assert_eq!(find("hello-5")["orphaned"], true);
    let info = narun_async(&url, &["apps", "info", "hello"]).await.ok();
    assert!(info.stdout.contains("About:     says hello"), "{info:?}");
    assert!(
        info.stdout.contains("  name: hello\n  tag: v1\n"),
        "the raw spec: {info:?}"
    );
    assert!(info.stdout.contains("orphaned (not in spec)"), "{info:?}");

    // images list shows the binary; deleting it is refused while deployed.
    let images = narun_async(&url, &["list-images"]).await.ok();
    assert!(images.stdout.contains("hello-v1-linux-amd64"), "{images:?}");
    let out = narun_async(&url, &["images", "delete", "-y", "hello-v1-linux-amd64"])
        .await
        .code(1);
    assert!(
        out.stderr.contains("binary of deployed app hello"),
        "{out:?}"
    );

    // delete: tombstoned; the app is gone.
    let out = narun_async(&url, &["apps", "delete", "hello"])
        .await
        .code(1);
    assert!(out.stderr.contains("no confirmation on stdin"), "{out:?}");
    narun_async(&url, &["apps", "delete", "-y", "hello"])
        .await
        .ok();
    let kv = js.get_key_value(store::APP_CONFIGS).await.unwrap();
    let mut history = kv.history("hello").await.unwrap();
    let mut last = None;
    while let Some(e) = history.next().await {
        last = Some(e.unwrap());
    }
    assert_eq!(last.unwrap().operation, kv::Operation::Delete);
    let out = narun_async(&url, &["apps", "info", "hello"]).await.code(1);
    assert!(out.stderr.contains("unknown app \"hello\""), "{out:?}");
    let out = narun_async(&url, &["apps", "delete", "-y", "hello"])
        .await
        .code(1);
    assert!(out.stderr.contains("unknown app"), "{out:?}");
    // Now the image can go.
    narun_async(&url, &["images", "delete", "-y", "hello-v1-linux-amd64"])
        .await
        .ok();
    let list = narun_async(&url, &["images", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert!(list.as_array().unwrap().is_empty(), "{list}");
}

#[tokio::test]
async fn nodes_list_shows_heartbeats() {
    let nats = NatsServer::start();
    let url = nats.url();
    let empty = narun_async(&url, &["nodes", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(empty, serde_json::json!([]));
    let js = js(&nats).await;
    let mut n = node_state("edge-7", "arm64", &["hello-0", "hello-1", "api-0"]);
    n.labels.insert("zone".into(), "eu".into());
    heartbeat(&js, &n).await;
    let table = narun_async(&url, &["nodes", "list"]).await.ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0]
            .starts_with("NODE    STATUS   VERSION  PLATFORM     APPS       INSTANCES  LAST SEEN"),
        "{table:?}"
    );
    assert!(
        lines[1].starts_with("edge-7  running  test     linux/arm64  api,hello  3          "),
        "{table:?}"
    );
    assert!(lines[1].ends_with("zone=eu"), "{table:?}");
    let doc = narun_async(&url, &["nodes", "list", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(doc[0]["node_id"], "edge-7");
    assert_eq!(doc[0]["apps"], serde_json::json!(["api", "hello"]));
    assert_eq!(doc[0]["labels"]["zone"], "eu");
}

// === logs ===

fn log(app: &str, node: &str, instance: &str, message: &str) -> LogEntry {
    LogEntry {
        instance_id: instance.into(),
        app_name: app.into(),
        node_id: node.into(),
        stream: "stdout".into(),
        message: message.into(),
        timestamp: time::OffsetDateTime::now_utc(),
        priority: None,
    }
}

async fn publish_log(js: &store::Js, e: &LogEntry) {
    js.publish(
        store::logs_subject(&e.app_name, &e.node_id),
        serde_json::to_vec(e).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .expect("log stored in narun-logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_retained_and_followed() {
    let nats = NatsServer::start();
    let url = nats.url();
    // First use creates the retention stream; nothing to show yet.
    let out = narun_async(&url, &["logs", "hello"]).await.ok();
    assert_eq!(out.stdout, "");
    let js = js(&nats).await;
    let stream = js.get_stream(store::LOGS_STREAM).await.unwrap();
    assert_eq!(stream.cached_info().config.subjects, ["logs.>"]);
    assert_eq!(stream.cached_info().config.max_age, store::LOGS_MAX_AGE);

    publish_log(&js, &log("hello", "node-1", "hello-0", "first")).await;
    publish_log(&js, &log("hello", "node-2", "hello-1", "second")).await;
    publish_log(&js, &log("other", "node-1", "other-0", "not mine")).await;
    let out = narun_async(&url, &["logs", "hello"]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(lines[0].ends_with("] [hello-0] [stdout] first"), "{out:?}");
    assert!(
        lines[0].starts_with("[20"),
        "Go format: [time] [instance] [stream] message"
    );
    assert!(lines[1].ends_with("[hello-1] [stdout] second"), "{out:?}");
    let out = narun_async(&url, &["logs", "hello", "--node", "node-2"])
        .await
        .ok();
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    let out = narun_async(&url, &["logs", "--instance", "hello-0"])
        .await
        .ok();
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(out.stdout.contains("first"));
    // --replica N is --instance <app>-N.
    let by_index = narun_async(&url, &["logs", "hello", "--replica", "0"])
        .await
        .ok();
    assert_eq!(by_index.stdout, out.stdout, "{by_index:?}");
    let out = narun_async(&url, &["logs", "--raw"]).await.ok();
    let raw: Vec<LogEntry> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(raw.len(), 3);
    let out = narun_async(&url, &["logs", "hello", "--since", "10m"])
        .await
        .ok();
    assert_eq!(out.stdout.lines().count(), 2, "{out:?}");
    let out = narun_async(&url, &["logs", "hello", "--since", "1ms"])
        .await
        .ok();
    assert_eq!(out.stdout, "", "older lines are skipped: {out:?}");
    let out = narun_async(&url, &["logs", "x.y"]).await.code(65);
    assert!(out.stderr.contains("not a valid app name"), "{out:?}");

    // -f: the retained lines, then new ones as they are published.
    let mut child = Command::new(narun_binary())
        .args(["logs", "hello", "-f"])
        .env("NATS_URL", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a log line within 20 s")
            .expect("narun logs -f kept running")
    }
    assert!(next(&mut rx).await.ends_with("first"));
    assert!(next(&mut rx).await.ends_with("second"));
    // A live line, published the way agents do (core NATS).
    let client = js.client();
    client
        .publish(
            store::logs_subject("hello", "node-1"),
            Bytes::from(serde_json::to_vec(&log("hello", "node-1", "hello-0", "live")).unwrap()),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert!(next(&mut rx).await.ends_with("[hello-0] [stdout] live"));
    child.kill().unwrap();
    child.wait().unwrap();
}

// === errors ===

#[test]
fn unreachable_nats_exits_69() {
    let port = common::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    for args in [
        &["apps", "list"][..],
        &["nodes", "list"],
        &["logs"],
        &["secret", "list"],
    ] {
        let out = narun(&url, args).code(69);
        assert!(
            out.stderr.contains(&format!("cannot reach NATS at {url}")),
            "{out:?}"
        );
    }
    let doc = narun(&url, &["apps", "list", "-o", "json"]).code(69).json();
    assert_eq!(doc["exit_code"], 69);
}

#[test]
fn a_server_without_jetstream_gets_a_clear_error() {
    let nats = NatsServer::start_without_jetstream();
    let out = narun(&nats.url(), &["apps", "list"]).code(69);
    assert!(
        out.stderr
            .contains("JetStream is not enabled on the NATS server"),
        "{out:?}"
    );
}

#[tokio::test]
async fn empty_fleet_and_unknown_names() {
    let nats = NatsServer::start();
    let url = nats.url();
    // Nothing created yet: empty lists, not errors.
    for args in [
        &["apps", "list"][..],
        &["images", "list"],
        &["files", "list"],
        &["secret", "list"],
    ] {
        let mut json_args = args.to_vec();
        json_args.extend(["-o", "json"]);
        let doc = narun_async(&url, &json_args).await.ok().json();
        assert_eq!(doc, serde_json::json!([]), "{args:?}");
    }
    let js = js(&nats).await;
    assert!(
        store::open_kv(&js, store::APP_CONFIGS)
            .await
            .unwrap()
            .is_none(),
        "readers create nothing"
    );
    let out = narun_async(&url, &["apps", "info", "nope"]).await.code(1);
    assert!(out.stderr.contains("unknown app \"nope\""), "{out:?}");
    let doc = narun_async(&url, &["apps", "info", "nope", "-o", "json"])
        .await
        .code(1)
        .json();
    assert_eq!(doc["exit_code"], 1);
    let out = narun_async(&url, &["apps", "info", "bad.name"])
        .await
        .code(65);
    assert!(out.stderr.contains("not a valid app name"), "{out:?}");
    let out = narun_async(&url, &["images", "delete", "-y", "nope"])
        .await
        .code(1);
    assert!(out.stderr.contains("no binary named \"nope\""), "{out:?}");
    let out = narun_async(&url, &["logs", "--instance", "hello"])
        .await
        .code(65);
    assert!(out.stderr.contains("is not an instance id"), "{out:?}");
}

// === generated docs ===

#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish"] {
        let out = narun("nats://127.0.0.1:1", &["completions", shell]).ok();
        assert!(out.stdout.contains("narun"), "{shell}");
        assert!(out.stdout.contains("deploy"), "{shell}");
    }
    let page = narun("nats://127.0.0.1:1", &["man"]).ok();
    assert!(
        page.stdout.contains(".TH narun 1"),
        "{}",
        &page.stdout[..200.min(page.stdout.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    narun(
        "nats://127.0.0.1:1",
        &["man", "--out-dir", dir.path().to_str().unwrap()],
    )
    .ok();
    assert!(dir.path().join("narun.1").is_file());
    assert!(dir.path().join("narun-deploy.1").is_file());
    let help = narun("nats://127.0.0.1:1", &["--help"]).ok();
    assert!(help.stdout.contains("69  NATS unreachable"), "{help:?}");
}

#[test]
fn detection_reads_real_executables() {
    // The test harness's own binary: a real host executable.
    let me = std::fs::read(narun_binary()).unwrap();
    let p = narun::store::binary::detect_platform(&me[..DETECT_HEADER_LEN]).unwrap();
    assert_eq!(p, narun::store::binary::host_platform());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_rollback_writes_an_earlier_revision_or_says_why_not() {
    let nats = NatsServer::start();
    let js = js(&nats).await;
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_binary(dir.path(), "amd64", 1000);
    let deploy = |replicas: &'static str| {
        let (url, bin) = (nats.url(), bin.clone());
        async move {
            narun_async(
                &url,
                &[
                    "deploy",
                    "--name",
                    "rb",
                    "--tag",
                    "v1",
                    "--node",
                    "n1",
                    "--replicas",
                    replicas,
                    bin.to_str().unwrap(),
                ],
            )
            .await
            .ok();
        }
    };
    // Unknown app.
    let out = narun_async(&nats.url(), &["apps", "rollback", "rb"])
        .await
        .code(65);
    assert!(out.stderr.contains("app rb has no spec"), "{out:?}");
    // One revision: nothing to go back to.
    deploy("1").await;
    let out = narun_async(&nats.url(), &["apps", "rollback", "rb"])
        .await
        .code(65);
    assert!(out.stderr.contains("no earlier revision"), "{out:?}");
    // Revision 2, then back: revision 3 holds revision 1's bytes.
    deploy("2").await;
    let current = kv_entry(&js, store::APP_CONFIGS, "rb").await.unwrap();
    assert_eq!(current.revision, 2);
    let out = narun_async(&nats.url(), &["apps", "rollback", "rb", "--to", "99"])
        .await
        .code(65);
    assert!(
        out.stderr.contains("revision 99") && out.stderr.contains("kept: 1, 2"),
        "{out:?}"
    );
    let out = narun_async(&nats.url(), &["apps", "rollback", "rb"])
        .await
        .ok();
    assert!(
        out.stderr.contains("back to revision 1 (current 2)"),
        "{out:?}"
    );
    let now = kv_entry(&js, store::APP_CONFIGS, "rb").await.unwrap();
    assert_eq!(now.revision, 3);
    assert!(String::from_utf8_lossy(&now.value).contains("replicas: 1"));
    // --to an explicit revision.
    narun_async(&nats.url(), &["apps", "rollback", "rb", "--to", "2"])
        .await
        .ok();
    let now = kv_entry(&js, store::APP_CONFIGS, "rb").await.unwrap();
    assert_eq!(now.revision, 4);
    assert!(String::from_utf8_lossy(&now.value).contains("replicas: 2"));
}

// === size limits ===

/// The address space `narun` gets in the size-limit tests (`ulimit -v`, in
/// KiB): several times what it needs, far less than what reading
/// `/dev/zero` to its end, or parsing a 500,000-entry list, takes.
const CAPPED_AS_KIB: u64 = 256 * 1024;

/// Run `narun ARGS` against no server, with its address space limited to
/// [`CAPPED_AS_KIB`] and `stdin` as its input; fail the test if it runs
/// more than 60 s.
fn run_capped(args: &[&str], stdin: Stdio) -> Out {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CAPPED_AS_KIB} && exec \"$0\" \"$@\""))
        .arg(narun_binary())
        .args(args)
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env_remove("NARUN_MASTER_KEY")
        .env_remove("NARUN_MASTER_KEY_FILE")
        .env_remove("NARUN_MASTER_KEY_PATH")
        .env_remove("RUST_LOG")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start narun");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for narun"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("narun {args:?} did not exit within 60 s");
        }
    };
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A FIFO at `path` fed with zeros until its reader closes it (the thread
/// then ends).
fn endless_fifo(path: &Path) -> std::thread::JoinHandle<()> {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success());
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let zeros = vec![0u8; 64 * 1024];
        while w.write_all(&zeros).is_ok() {}
    })
}

/// `deploy -f /dev/zero` (or a FIFO that never ends) took 13 GB: the spec
/// is read up to its limit, then refused, naming the file and the limit.
#[test]
fn an_endless_spec_file_fails_fast_naming_the_limit() {
    let out = run_capped(&["deploy", "--dry-run", "-f", "/dev/zero"], Stdio::null()).code(65);
    assert!(
        out.stderr
            .contains("cannot read spec /dev/zero: larger than 1 MiB, the limit for a spec"),
        "{out:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("spec.fifo");
    let writer = endless_fifo(&fifo);
    let out = run_capped(
        &["deploy", "--dry-run", "-f", fifo.to_str().unwrap()],
        Stdio::null(),
    )
    .code(65);
    assert!(
        out.stderr.contains(&format!(
            "cannot read spec {}: larger than 1 MiB",
            fifo.display()
        )),
        "{out:?}"
    );
    writer.join().unwrap();
    // A regular file past the limit, whatever it holds.
    let big = dir.path().join("big.yaml");
    std::fs::write(
        &big,
        format!("name: a\ntag: v1\n#{}\n", "x".repeat(1 << 20)),
    )
    .unwrap();
    let out = run_capped(
        &["deploy", "--dry-run", "-f", big.to_str().unwrap()],
        Stdio::null(),
    )
    .code(65);
    assert!(out.stderr.contains("larger than 1 MiB"), "{out:?}");
}

/// A spec with 500,000 args (less than 1 MiB in flow style) was accepted,
/// parsing it took hundreds of MB: it is refused before it is parsed, and
/// the error names the field and the limit.
#[test]
fn a_spec_with_500k_args_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("args.yaml");
    let args = vec!["a"; 500_000].join(",");
    std::fs::write(
        &spec,
        format!("name: a\ntag: v1\nnodes: [{{name: n, replicas: 1}}]\nargs: [{args}]\n"),
    )
    .unwrap();
    let out = run_capped(
        &["deploy", "--dry-run", "-f", spec.to_str().unwrap()],
        Stdio::null(),
    )
    .code(65);
    assert!(
        out.stderr
            .contains("args: 500000 entries, at most 4096 (line 4, column 1)"),
        "{out:?}"
    );
    let doc = run_capped(
        &[
            "deploy",
            "--dry-run",
            "-f",
            spec.to_str().unwrap(),
            "-o",
            "json",
        ],
        Stdio::null(),
    )
    .code(65)
    .json();
    assert_eq!(doc["details"]["errors"][0]["path"], "args", "{doc}");
    // Nesting: libyaml alone takes minutes on a few hundred KiB of `[`.
    std::fs::write(
        &spec,
        format!(
            "name: a\ntag: v1\nx: {}{}\n",
            "[".repeat(300_000),
            "]".repeat(300_000)
        ),
    )
    .unwrap();
    let out = run_capped(
        &["deploy", "--dry-run", "-f", spec.to_str().unwrap()],
        Stdio::null(),
    )
    .code(65);
    assert!(
        out.stderr.contains("nested deeper than 32 levels"),
        "{out:?}"
    );
}

/// Secret values and master key files are read up to their limit too.
#[test]
fn secret_values_and_key_files_are_read_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    narun(
        "nats://127.0.0.1:1",
        &["secret", "keygen", "--file", key.to_str().unwrap()],
    )
    .ok();
    let set = [
        "secret",
        "set",
        "S",
        "--master-key-file",
        key.to_str().unwrap(),
    ];
    let out = run_capped(
        &[&set[..], &["--from-file", "/dev/zero"]].concat(),
        Stdio::null(),
    )
    .code(65);
    assert!(
        out.stderr
            .contains("cannot read /dev/zero: larger than 512 KiB, the limit for a secret value"),
        "{out:?}"
    );
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; (512 << 10) + 3]).unwrap();
    let out = run_capped(&set, Stdio::from(std::fs::File::open(&big).unwrap())).code(65);
    assert!(
        out.stderr
            .contains("cannot read stdin: larger than 512 KiB, the limit for a secret value"),
        "{out:?}"
    );
    let out = run_capped(
        &["secret", "set", "S", "v", "--master-key-file", "/dev/zero"],
        Stdio::null(),
    )
    .code(65);
    assert!(
        out.stderr.contains(
            "cannot read master key file /dev/zero: larger than 4 KiB, the limit for a master \
             key file"
        ),
        "{out:?}"
    );
}

/// A secret at the limit fits the default NATS max payload (1 MiB) once
/// encrypted and base64-encoded, and reads back.
#[tokio::test]
async fn a_secret_at_the_size_limit_is_stored() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    narun_async(
        &nats.url(),
        &["secret", "keygen", "--file", key.to_str().unwrap()],
    )
    .await
    .ok();
    let value = dir.path().join("v");
    std::fs::write(&value, vec![b'x'; 512 << 10]).unwrap();
    narun_async(
        &nats.url(),
        &[
            "secret",
            "set",
            "BIG",
            "--from-file",
            value.to_str().unwrap(),
            "--master-key-file",
            key.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    let js = js(&nats).await;
    let entry = kv_entry(&js, store::SECRETS, "BIG").await.expect("stored");
    let stored: store::StoredSecret = serde_json::from_slice(&entry.value).unwrap();
    let master = store::MasterKey::from_file(&key).unwrap();
    assert_eq!(stored.open(&master, "BIG").unwrap().len(), 512 << 10);
}
