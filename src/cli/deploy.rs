//! `narun deploy`: validate the spec, upload each binary (OS and arch read
//! from its header), then write the spec; optionally wait until every
//! targeted replica runs.
//!
//! Order matters: nothing is uploaded for an invalid spec, and the spec is
//! written last, so a node never sees a spec whose binary is missing
//! (Go uploaded before validating, L4). Re-running the same deploy changes
//! nothing: an object whose digest and metadata match is not uploaded
//! again, and identical spec bytes are not rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use async_nats::jetstream::object_store::{ObjectInfo, ObjectMetadata, ObjectStore};
use clap::Args;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::io::{AsyncRead, ReadBuf};

use super::fleet::{self, Node};
use super::{fail, print_table, println_safe, CliError, CliResult, Ctx};
use crate::limits;
use crate::spec::{self, RestartPolicy, ServiceSpec, Strictness};
use crate::store::binary::{self, Platform};
use crate::store::Js;
use crate::store::{self, InstanceState, StatusUpdate};

/// `narun deploy`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  narun deploy -f hello.yaml ./hello-linux-amd64 ./hello-linux-arm64
  narun deploy --name hello --tag v2 --node node-1 --replicas 2 ./hello --wait
  narun deploy -f hello.yaml --dry-run ./hello-linux-amd64

Without -f, the generated spec has the given node and replica count and
`mode: exec`. Without BINARY, the binaries already uploaded for the tag are
used.

Each node replaces a changed replica without downtime: the new version
starts next to the old one, the old one stops once the new one is ready,
and a new version that exits, restarts or is not ready within the spec's
progressDeadline is stopped while the old one keeps serving (rolled back).

--wait exits 0 once every targeted replica of this spec is ready on every
targeted node; 1 when one failed or was rolled back (naming node, replica
and reason), or when the timeout passed (naming what is still pending).")]
pub struct DeployArgs {
    /// The ServiceSpec YAML (stored as is in KV app-configs).
    #[arg(
        short = 'f',
        long = "file",
        alias = "config",
        value_name = "SPEC",
        conflicts_with_all = ["name", "tag"]
    )]
    pub file: Option<PathBuf>,
    /// App name (without -f).
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    /// Binary tag (without -f).
    #[arg(long, required_unless_present = "file")]
    pub tag: Option<String>,
    /// Node to run on (without -f).
    #[arg(
        long,
        default_value = "local",
        value_name = "NODE",
        conflicts_with = "file"
    )]
    pub node: String,
    /// Replicas on that node (without -f).
    #[arg(long, default_value_t = 1, conflicts_with = "file")]
    pub replicas: u32,
    /// Executables to upload, one per platform.
    #[arg(value_name = "BINARY")]
    pub binaries: Vec<PathBuf>,
    #[command(flatten)]
    pub wait: WaitArg,
    /// Validate the spec and the binaries, and stop there.
    #[arg(long)]
    pub dry_run: bool,
    /// Options of every management command.
    #[command(flatten)]
    pub global: super::GlobalArgs,
}

/// `--wait[=TIMEOUT]` of the commands that roll out a spec.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct WaitArg {
    /// Then wait until every targeted replica is ready or failed (default
    /// 2m); exit 1 unless all are ready.
    #[arg(
        long,
        value_name = "TIMEOUT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "2m",
        value_parser = crate::duration::parse
    )]
    pub wait: Option<Duration>,
}

/// A binary to upload.
struct Local {
    path: PathBuf,
    platform: Platform,
    size: u64,
}

/// What happened to one binary.
struct Uploaded {
    local_path: PathBuf,
    object: String,
    platform: Platform,
    size: u64,
    digest: String,
    uploaded: bool,
    seconds: f64,
}

/// Run `narun deploy`.
pub async fn run(ctx: &Ctx, args: DeployArgs) -> CliResult {
    let (source, yaml) = spec_source(&args)?;
    deploy_yaml(ctx, args, source, yaml).await
}

/// Deploy the spec `yaml` (read from `source`), with the binaries and
/// options of `args`: `narun deploy`, and `narun apps rollback` with an
/// earlier revision.
pub async fn deploy_yaml(ctx: &Ctx, args: DeployArgs, source: String, yaml: String) -> CliResult {
    let parsed = match spec::parse_detailed(&yaml, Strictness::Strict) {
        Ok(p) => p,
        Err(e) => {
            let details = json!({ "spec": source, "errors": e.errors, "warnings": e.warnings });
            return Err(CliError::data(anyhow::anyhow!("{source}: {e}")).details(details));
        }
    };
    let mut warnings: Vec<String> = parsed
        .warnings
        .iter()
        .map(|w| format!("{source}: {w}"))
        .collect();
    let spec = parsed.spec;

    let locals = detect_all(&args.binaries, &mut warnings)?;
    if args.dry_run {
        for w in &warnings {
            eprintln!("narun: warning: {w}");
        }
        return dry_run(ctx, &spec, &source, &locals);
    }

    let js = ctx.js().await?;
    let quiet = ctx.json();
    let mut uploads = Vec::new();
    if !locals.is_empty() {
        let bucket = store::ensure_object_store(&js, store::APP_BINARIES).await?;
        for local in &locals {
            uploads.push(upload(ctx, &bucket, &spec, local, quiet).await?);
        }
    }

    // What exists for this tag (just uploaded or from before), by platform.
    let available = available_binaries(ctx, &js, &spec).await?;
    if available.is_empty() {
        fail!(
            "no binary uploaded for {} tag {}: pass the executable(s) to upload",
            spec.name,
            spec.tag
        );
    }
    let nodes = fleet::load_nodes(ctx, &js).await?;
    let targets = fleet::targets(&spec, &nodes);
    for (id, desired) in &targets {
        if *desired == 0 {
            continue;
        }
        match nodes.get(id) {
            Some(n) => {
                let p = format!("{}/{}", n.state.os, n.state.arch);
                if !available.contains_key(&p) {
                    warnings.push(format!(
                        "node {id} is {p} but no binary for {p} was uploaded for tag {}: its \
                         instances will fail to start",
                        spec.tag
                    ));
                }
            }
            None => warnings.push(format!(
                "node {id} has no heartbeat (offline, or its agent never started): its \
                 architecture cannot be checked"
            )),
        }
    }
    for w in &warnings {
        eprintln!("narun: warning: {w}");
    }

    // Subscribe before writing, so no status is missed.
    let waiter = match args.wait.wait {
        Some(timeout) => {
            store::ensure_status_stream(&js).await?;
            let sub = ctx
                .client()
                .await?
                .subscribe(store::status_filter(Some(&spec.name), None))
                .await
                .map_err(|e| {
                    CliError::failed(anyhow::anyhow!("cannot subscribe to status: {e}"))
                })?;
            Some((timeout, sub))
        }
        None => None,
    };

    let kv = store::ensure_kv(&js, store::APP_CONFIGS).await?;
    let (revision, changed) = write_spec(ctx, &kv, &spec.name, &yaml).await?;

    let mut report = json!({
        "app": spec.name,
        "tag": spec.tag,
        "spec": { "source": source, "revision": revision, "changed": changed },
        "binaries": uploads.iter().map(|u| json!({
            "file": u.local_path,
            "object": u.object,
            "os": u.platform.os,
            "arch": u.platform.arch,
            "size": u.size,
            "digest": u.digest,
            "uploaded": u.uploaded,
            "seconds": u.seconds,
        })).collect::<Vec<_>>(),
        "warnings": warnings,
    });
    if !ctx.json() {
        let rows: Vec<Vec<String>> = uploads
            .iter()
            .map(|u| {
                vec![
                    if u.uploaded { "uploaded" } else { "unchanged" }.to_owned(),
                    u.object.clone(),
                    u.platform.to_string(),
                    super::human_bytes(u.size),
                    if u.uploaded && u.seconds > 0.0 && u.size >= 1 << 20 {
                        format!("{:.0} MB/s", u.size as f64 / 1e6 / u.seconds)
                    } else {
                        "-".to_owned()
                    },
                    u.digest.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            print_table(
                &["BINARY", "OBJECT", "PLATFORM", "SIZE", "SPEED", "DIGEST"],
                &rows,
            );
        }
        println_safe(&format!(
            "spec {}/{}: {} (revision {revision})",
            store::APP_CONFIGS,
            spec.name,
            if changed { "written" } else { "unchanged" }
        ));
    }

    let Some((timeout, sub)) = waiter else {
        if ctx.json() {
            super::print_json(&report)?;
        }
        return Ok(());
    };
    let digests: BTreeMap<String, String> = available
        .iter()
        .filter_map(|(p, info)| Some((p.clone(), info.digest.clone()?)))
        .collect();
    let outcome = wait(ctx, &js, &spec, &targets, &nodes, &digests, timeout, sub).await?;
    report["wait"] = outcome.json();
    if !ctx.json() {
        outcome.print();
    }
    if outcome.all_running() {
        if ctx.json() {
            super::print_json(&report)?;
        }
        Ok(())
    } else {
        Err(CliError::failed(anyhow::anyhow!("{}", outcome.summary(&spec.name))).details(report))
    }
}

/// The spec's YAML and a name for messages.
fn spec_source(args: &DeployArgs) -> CliResult<(String, String)> {
    if let Some(path) = &args.file {
        // Bounded: `-f /dev/zero` fails once past the limit.
        let bytes = limits::read_capped(path, limits::MAX_SPEC_BYTES, "a spec").map_err(|e| {
            CliError::data(anyhow::anyhow!("cannot read spec {}: {e}", path.display()))
        })?;
        let yaml = String::from_utf8(bytes).map_err(|_| {
            CliError::data(anyhow::anyhow!("spec {} is not UTF-8 text", path.display()))
        })?;
        return Ok((path.display().to_string(), yaml));
    }
    let (Some(name), Some(tag)) = (&args.name, &args.tag) else {
        fail!(data, "give a spec (-f SPEC) or --name and --tag");
    };
    Ok((
        "the generated spec".to_owned(),
        generated_spec(name, tag, &args.node, args.replicas),
    ))
}

/// The spec `--name/--tag/--node/--replicas` stand for: Go's generated spec
/// plus `mode: exec`, so a Go node agent runs it too (R3).
pub fn generated_spec(name: &str, tag: &str, node: &str, replicas: u32) -> String {
    #[derive(serde::Serialize)]
    struct Node<'a> {
        name: &'a str,
        replicas: u32,
    }
    #[derive(serde::Serialize)]
    struct Generated<'a> {
        name: &'a str,
        tag: &'a str,
        mode: &'a str,
        nodes: [Node<'a>; 1],
    }
    serde_norway::to_string(&Generated {
        name,
        tag,
        mode: "exec",
        nodes: [Node {
            name: node,
            replicas,
        }],
    })
    .expect("plain data serializes")
}

/// Read each binary's header (exit 65 on anything that is not an
/// executable, or two files for one platform).
fn detect_all(paths: &[PathBuf], warnings: &mut Vec<String>) -> CliResult<Vec<Local>> {
    let mut out: Vec<Local> = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| CliError::data(anyhow::anyhow!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            fail!(data, "{}: not a regular file", path.display());
        }
        let mut header = Vec::with_capacity(binary::DETECT_HEADER_LEN);
        std::fs::File::open(path)
            .and_then(|f| {
                f.take(binary::DETECT_HEADER_LEN as u64)
                    .read_to_end(&mut header)
            })
            .map_err(|e| CliError::data(anyhow::anyhow!("{}: {e}", path.display())))?;
        let platform = binary::detect_platform(&header)
            .map_err(|e| CliError::data(anyhow::anyhow!("{}: {e}", path.display())))?;
        if let Some(other) = out.iter().find(|l| l.platform == platform) {
            fail!(
                data,
                "{} and {} are both {platform}: give one binary per platform",
                other.path.display(),
                path.display()
            );
        }
        if platform.os != "linux" {
            warnings.push(format!(
                "{} is a {platform} executable: node agents run Linux, so it will never run",
                path.display()
            ));
        }
        out.push(Local {
            path: path.clone(),
            platform,
            size: meta.len(),
        });
    }
    Ok(out)
}

fn dry_run(ctx: &Ctx, spec: &ServiceSpec, source: &str, locals: &[Local]) -> CliResult {
    let objects: Vec<_> = locals
        .iter()
        .map(|l| {
            json!({
                "file": l.path,
                "object": binary::object_name(&spec.name, &spec.tag, l.platform.os, l.platform.arch),
                "os": l.platform.os,
                "arch": l.platform.arch,
                "size": l.size,
            })
        })
        .collect();
    if ctx.json() {
        return super::print_json(&json!({
            "app": spec.name, "tag": spec.tag, "spec": {"source": source, "valid": true},
            "binaries": objects, "dry_run": true,
        }));
    }
    println_safe(&format!(
        "{source}: valid (app {}, tag {}, mode {})",
        spec.name, spec.tag, spec.mode
    ));
    for (l, o) in locals.iter().zip(&objects) {
        println_safe(&format!(
            "{}: {} -> {} ({})",
            l.path.display(),
            l.platform,
            o["object"].as_str().unwrap_or_default(),
            super::human_bytes(l.size)
        ));
    }
    println_safe("dry run: nothing uploaded or written");
    Ok(())
}

/// SHA-256 of a file, as an object store digest.
async fn file_digest(path: &Path) -> CliResult<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path)?;
        let mut d = binary::Sha256Digest::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            d.update(&buf[..n]);
        }
        Ok::<_, std::io::Error>(d.finish_string())
    })
    .await
    .map_err(|e| CliError::failed(anyhow::anyhow!("hashing failed: {e}")))?
    .map_err(|e| CliError::failed(anyhow::anyhow!("cannot read binary: {e}")))
}

/// Upload one binary unless the same bytes and metadata are there already.
async fn upload(
    ctx: &Ctx,
    bucket: &ObjectStore,
    spec: &ServiceSpec,
    local: &Local,
    quiet: bool,
) -> CliResult<Uploaded> {
    let Platform { os, arch } = local.platform;
    let object = binary::object_name(&spec.name, &spec.tag, os, arch);
    let original = local
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = binary::object_metadata(&spec.name, &spec.tag, os, arch, &original);
    // Hash first only when there is something to compare with (a redeploy);
    // otherwise the digest the upload computes is the one recorded.
    let mut local_digest = None;
    if let Some(info) = existing_info(ctx, bucket, &object).await? {
        let digest = file_digest(&local.path).await?;
        if info.digest.as_deref() == Some(digest.as_str()) && info.metadata == metadata {
            return Ok(Uploaded {
                local_path: local.path.clone(),
                object,
                platform: local.platform,
                size: local.size,
                digest,
                uploaded: false,
                seconds: 0.0,
            });
        }
        local_digest = Some(digest);
    }
    let file = tokio::fs::File::open(&local.path)
        .await
        .map_err(|e| CliError::failed(anyhow::anyhow!("{}: {e}", local.path.display())))?;
    let bar = progress_bar(local.size, &object, quiet);
    // Streamed in chunks; a file that grows while it is read stops one byte
    // past its size (and fails the size check below).
    let mut reader = Progress {
        inner: tokio::io::BufReader::with_capacity(
            1 << 20,
            tokio::io::AsyncReadExt::take(file, local.size.saturating_add(1)),
        ),
        bar: bar.clone(),
    };
    let meta = ObjectMetadata {
        name: object.clone(),
        description: Some(binary::object_description(&spec.name, &spec.tag, os, arch)),
        metadata,
        chunk_size: Some(chunk_size(ctx.client().await?.server_info().max_payload)),
        ..Default::default()
    };
    let started = Instant::now();
    let info = bucket
        .put(meta, &mut reader)
        .await
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot upload {object}: {e}")))?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let uploaded_digest = info.digest.clone().unwrap_or_default();
    if let Some(digest) = local_digest {
        if uploaded_digest != digest {
            fail!(
                "{} changed while it was uploaded (digest {digest} then {uploaded_digest}): \
                 deploy again",
                local.path.display(),
            );
        }
    }
    if info.size as u64 != local.size {
        fail!(
            "{} changed while it was uploaded ({} bytes, then {}): deploy again",
            local.path.display(),
            local.size,
            info.size
        );
    }
    Ok(Uploaded {
        local_path: local.path.clone(),
        object,
        platform: local.platform,
        size: info.size as u64,
        digest: uploaded_digest,
        uploaded: true,
        seconds,
    })
}

/// Object chunk size: larger than the 128 KiB default (one acknowledged
/// publish per chunk, so fewer round trips upload faster), within the
/// server's max payload. Readers (Go's and narun's) take any chunk size.
fn chunk_size(max_payload: usize) -> usize {
    (max_payload / 2).clamp(16 * 1024, 512 * 1024)
}

/// The object's info, or None if absent or deleted.
pub(crate) async fn existing_info(
    ctx: &Ctx,
    bucket: &ObjectStore,
    object: &str,
) -> CliResult<Option<ObjectInfo>> {
    use async_nats::jetstream::object_store::InfoErrorKind;
    let info = ctx
        .timed(&format!("cannot look up object {object}"), || async {
            match bucket.info(object).await {
                Ok(info) if !info.deleted => Ok(Some(info)),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?;
    Ok(info)
}

/// Objects of `spec`'s name and tag, by `os/arch`.
async fn available_binaries(
    ctx: &Ctx,
    js: &Js,
    spec: &ServiceSpec,
) -> CliResult<BTreeMap<String, ObjectInfo>> {
    let mut out = BTreeMap::new();
    let Some(bucket) = store::open_object_store(js, store::APP_BINARIES).await? else {
        return Ok(out);
    };
    let prefix = format!("{}-{}-", spec.name, spec.tag);
    let infos: Vec<ObjectInfo> = ctx
        .within("cannot list app-binaries", async {
            let list = bucket.list().await?;
            list.try_collect::<Vec<_>>()
                .await
                .map_err(anyhow::Error::from)
        })
        .await?;
    for info in infos {
        let m = &info.metadata;
        let ours = m.get(binary::META_APP_NAME) == Some(&spec.name)
            && m.get(binary::META_TAG) == Some(&spec.tag);
        let (Some(os), Some(arch)) = (m.get(binary::META_OS), m.get(binary::META_ARCH)) else {
            continue;
        };
        if ours && info.name.starts_with(&prefix) {
            out.insert(format!("{os}/{arch}"), info.clone());
        }
    }
    Ok(out)
}

/// Write the spec unless the stored bytes are the same; (revision, changed).
async fn write_spec(ctx: &Ctx, kv: &kv::Store, app: &str, yaml: &str) -> CliResult<(u64, bool)> {
    let current = ctx
        .timed(&format!("cannot read app-configs/{app}"), || kv.entry(app))
        .await?;
    if let Some(e) = current {
        if e.operation == kv::Operation::Put && e.value == yaml.as_bytes() {
            return Ok((e.revision, false));
        }
    }
    let revision = ctx
        .timed(&format!("cannot write app-configs/{app}"), || {
            kv.put(app, yaml.to_owned().into())
        })
        .await?;
    Ok((revision, true))
}

fn progress_bar(len: u64, object: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(object.to_owned());
    bar
}

/// Counts bytes read into a progress bar.
struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            self.bar.inc((buf.filled().len() - before) as u64);
        }
        r
    }
}

// === --wait ===

/// What is known about one expected instance.
#[derive(Debug, Clone)]
struct Seen {
    state: InstanceState,
    error: String,
    /// Carried the expected spec hash (vs a hash-less Go status).
    hashed: bool,
}

struct NodeWait {
    desired: u32,
    online: bool,
    /// The hash instances of this spec report, when the node's arch is known.
    expected: Option<String>,
    instances: BTreeMap<String, Seen>,
}

struct Outcome {
    app: String,
    nodes: BTreeMap<String, NodeWait>,
    policy: RestartPolicy,
    timed_out: bool,
    waited: Duration,
}

impl Outcome {
    fn done(&self, seen: &Seen) -> bool {
        match seen.state {
            InstanceState::Running | InstanceState::Failed => true,
            // Final only when no restart follows, and only for statuses
            // known to be of this spec.
            InstanceState::Stopped => seen.hashed && self.policy != RestartPolicy::Always,
            InstanceState::Crashed => seen.hashed && self.policy == RestartPolicy::Never,
            _ => false,
        }
    }

    fn counts(&self, n: &NodeWait) -> (u32, u32, u32) {
        let (mut running, mut failed) = (0, 0);
        for i in 0..n.desired {
            if let Some(s) = n.instances.get(&spec::instance_id(&self.app, i)) {
                if s.state == InstanceState::Running {
                    running += 1;
                } else if self.done(s) {
                    failed += 1;
                }
            }
        }
        (running, failed, n.desired - running - failed)
    }

    fn finished(&self) -> bool {
        self.nodes.values().all(|n| self.counts(n).2 == 0)
    }

    fn all_running(&self) -> bool {
        self.nodes.values().all(|n| self.counts(n).0 == n.desired)
    }

    fn summary(&self, app: &str) -> String {
        let (mut running, mut failed, mut pending, mut desired) = (0, 0, 0, 0);
        for n in self.nodes.values() {
            let (r, f, p) = self.counts(n);
            running += r;
            failed += f;
            pending += p;
            desired += n.desired;
        }
        let mut s = format!("{app}: {running}/{desired} replicas running");
        if failed > 0 {
            s.push_str(&format!(", {failed} failed"));
            // Which, where and why.
            let why: Vec<String> = self
                .nodes
                .iter()
                .flat_map(|(node, n)| {
                    n.instances
                        .iter()
                        .filter(|(_, seen)| seen.state != InstanceState::Running && self.done(seen))
                        .map(move |(id, seen)| {
                            if seen.error.is_empty() {
                                format!("{node} {id}: {}", seen.state.as_str())
                            } else {
                                format!("{node} {id}: {}", seen.error)
                            }
                        })
                })
                .collect();
            if !why.is_empty() {
                s.push_str(&format!(" ({})", why.join("; ")));
            }
        }
        if pending > 0 {
            s.push_str(&format!(", {pending} pending"));
        }
        if self.timed_out {
            s.push_str(&format!(
                " (timed out after {:.1}s)",
                self.waited.as_secs_f64()
            ));
        }
        s
    }

    fn note(&self, n: &NodeWait) -> String {
        let (_, failed, pending) = self.counts(n);
        if !n.online && pending > 0 {
            return "no heartbeat: is the node agent running?".into();
        }
        if pending > 0 && n.instances.is_empty() {
            return "no status received from the node".into();
        }
        if failed > 0 {
            let errors: BTreeSet<&str> = n
                .instances
                .values()
                .filter(|s| self.done(s) && s.state != InstanceState::Running)
                .map(|s| s.error.as_str())
                .filter(|e| !e.is_empty())
                .collect();
            return errors.into_iter().collect::<Vec<_>>().join("; ");
        }
        String::new()
    }

    fn print(&self) {
        if self.nodes.is_empty() {
            println_safe("no node targeted: nothing to wait for");
            return;
        }
        let rows: Vec<Vec<String>> = self
            .nodes
            .iter()
            .map(|(id, n)| {
                let (r, f, p) = self.counts(n);
                vec![
                    id.clone(),
                    n.desired.to_string(),
                    r.to_string(),
                    f.to_string(),
                    p.to_string(),
                    self.note(n),
                ]
            })
            .collect();
        print_table(
            &["NODE", "DESIRED", "RUNNING", "FAILED", "PENDING", "NOTE"],
            &rows,
        );
    }

    fn json(&self) -> serde_json::Value {
        let nodes: Vec<_> = self
            .nodes
            .iter()
            .map(|(id, n)| {
                let (r, f, p) = self.counts(n);
                json!({
                    "node": id, "online": n.online, "desired": n.desired,
                    "running": r, "failed": f, "pending": p, "note": self.note(n),
                    "instances": n.instances.iter().map(|(i, s)| json!({
                        "instance_id": i, "status": s.state.as_str(), "error": s.error,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "all_running": self.all_running(),
            "timed_out": self.timed_out,
            "seconds": self.waited.as_secs_f64(),
            "nodes": nodes,
        })
    }
}

/// Follow statuses until every targeted replica is final or `timeout`.
#[allow(clippy::too_many_arguments)]
async fn wait(
    ctx: &Ctx,
    js: &Js,
    spec: &ServiceSpec,
    targets: &BTreeMap<String, u32>,
    nodes: &BTreeMap<String, Node>,
    digests: &BTreeMap<String, String>,
    timeout: Duration,
    mut sub: async_nats::Subscriber,
) -> CliResult<Outcome> {
    let started = Instant::now();
    let mut outcome = Outcome {
        app: spec.name.clone(),
        nodes: BTreeMap::new(),
        policy: spec.restart.policy,
        timed_out: false,
        waited: Duration::ZERO,
    };
    for (id, desired) in targets.iter().filter(|(_, d)| **d > 0) {
        let node = nodes.get(id);
        let expected = node.and_then(|n| {
            let digest = digests.get(&format!("{}/{}", n.state.os, n.state.arch))?;
            Some(spec.node_hash(id, &n.state.labels, &n.state.arch, digest))
        });
        outcome.nodes.insert(
            id.clone(),
            NodeWait {
                desired: *desired,
                online: node.is_some(),
                expected,
                instances: BTreeMap::new(),
            },
        );
    }
    let json = ctx.json();
    let show = |u: &StatusUpdate| {
        if !json {
            let note = if u.error.is_empty() {
                String::new()
            } else {
                format!(": {}", u.error)
            };
            eprintln!(
                "{} {} {}{note}",
                u.node_id,
                u.instance_id,
                u.status.as_str()
            );
        }
    };
    // Instances already running this exact spec (an unchanged redeploy, or
    // an agent faster than this command).
    for ((node, instance), s) in fleet::load_statuses(ctx, js, Some(&spec.name)).await? {
        if let Some(n) = outcome.nodes.get_mut(&node) {
            if n.expected.is_some() && n.expected.as_deref() == Some(s.last.spec_hash.as_str()) {
                show(&s.last);
                n.instances.insert(instance, seen(&s.last, true));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while !outcome.finished() {
        let msg = match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => fail!("the status subscription closed (NATS connection lost?)"),
            Err(_) => {
                outcome.timed_out = true;
                break;
            }
        };
        let Ok(u) = serde_json::from_slice::<StatusUpdate>(&msg.payload) else {
            continue;
        };
        let Some(n) = outcome.nodes.get_mut(&u.node_id) else {
            continue;
        };
        let hashed = !u.spec_hash.is_empty();
        if hashed && n.expected.is_some() && n.expected.as_deref() != Some(u.spec_hash.as_str()) {
            continue; // an instance of the previous spec
        }
        match spec::split_instance_id(&u.instance_id) {
            Some((app, i)) if app == spec.name && i < n.desired => {}
            _ => continue,
        }
        show(&u);
        n.instances.insert(u.instance_id.clone(), seen(&u, hashed));
    }
    let _ = sub.unsubscribe().await;
    outcome.waited = started.elapsed();
    Ok(outcome)
}

fn seen(u: &StatusUpdate, hashed: bool) -> Seen {
    Seen {
        state: u.status,
        error: u.error.clone(),
        hashed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(policy: RestartPolicy, states: &[(InstanceState, bool)]) -> Outcome {
        let instances = states
            .iter()
            .enumerate()
            .map(|(i, (state, hashed))| {
                (
                    spec::instance_id("app", i as u32),
                    Seen {
                        state: *state,
                        error: String::new(),
                        hashed: *hashed,
                    },
                )
            })
            .collect();
        Outcome {
            app: "app".into(),
            nodes: [(
                "n1".to_owned(),
                NodeWait {
                    desired: 3,
                    online: true,
                    expected: None,
                    instances,
                },
            )]
            .into(),
            policy,
            timed_out: false,
            waited: Duration::ZERO,
        }
    }

    #[test]
    fn wait_counts_final_states_by_restart_policy() {
        use InstanceState::*;
        let o = outcome(
            RestartPolicy::OnFailure,
            &[(Running, true), (Failed, false), (Starting, true)],
        );
        assert_eq!(o.counts(&o.nodes["n1"]), (1, 1, 1));
        assert!(!o.finished());
        // A stopped instance of this spec stays stopped unless `always`.
        let o = outcome(
            RestartPolicy::OnFailure,
            &[(Running, true), (Stopped, true), (Crashed, true)],
        );
        assert_eq!(
            o.counts(&o.nodes["n1"]),
            (1, 1, 1),
            "on-failure restarts a crash"
        );
        let o = outcome(
            RestartPolicy::Never,
            &[(Running, true), (Stopped, true), (Crashed, true)],
        );
        assert_eq!(o.counts(&o.nodes["n1"]), (1, 2, 0));
        assert!(o.finished() && !o.all_running());
        assert_eq!(
            o.summary("app"),
            "app: 1/3 replicas running, 2 failed (n1 app-1: stopped; n1 app-2: crashed)"
        );
        let o = outcome(
            RestartPolicy::Always,
            &[(Running, true), (Stopped, true), (Stopped, false)],
        );
        assert_eq!(
            o.counts(&o.nodes["n1"]),
            (1, 0, 2),
            "always restarts; Go's stops are unknown"
        );
        let o = outcome(
            RestartPolicy::OnFailure,
            &[(Running, false), (Running, true), (Running, true)],
        );
        assert!(o.finished() && o.all_running());
    }

    #[test]
    fn the_generated_spec_is_valid_and_has_a_mode() {
        let yaml = generated_spec("x", "1.0", "local", 1);
        assert_eq!(
            yaml,
            "name: x\ntag: '1.0'\nmode: exec\nnodes:\n- name: local\n  replicas: 1\n"
        );
        let s = spec::parse(&yaml).unwrap();
        assert_eq!((s.tag.as_str(), s.nodes[0].replicas), ("1.0", 1));
    }
}
