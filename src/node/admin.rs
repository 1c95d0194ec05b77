//! The node admin web UI (default `127.0.0.1:9101`): one read-only page
//! per node, rendered from the agent's [`NodeSnapshot`]s.
//!
//! - `/`: the page. HTML is rendered on the server with [`maud`] (every
//!   value is escaped by the template engine) and works without
//!   JavaScript (a `<noscript>` refresh every 10 s).
//! - `/events`: server-sent events. At each new snapshot (the agent
//!   publishes one per status poll; at most one event per
//!   [`SSE_MIN_INTERVAL`]) the server re-renders the `#live` fragment and
//!   pushes it as a `snapshot` event; `admin.js` swaps it in. The browser
//!   never renders data itself, so escaping lives in one place.
//! - `/logs/<unit>`: the last 20 journal lines of one replica, from the
//!   configured `--journalctl` command plus
//!   `-u <unit> -n 20 -o cat --no-pager` (run directly, no shell, with a
//!   timeout). The unit must be one of the snapshot's units: anything else
//!   is a 404 before any command runs.
//! - `/api/snapshot`: the snapshot as JSON.
//! - `/admin.css`, `/admin.js`: embedded static assets (`src/node/admin/`),
//!   so the pages carry a strict `Content-Security-Policy` (no inline
//!   script or style).
//!
//! Credentials in the NATS URL (`nats://user:pass@host`) are never shown.
//! There is no authentication and no action: keep the listener on
//! loopback (the default) or behind a proxy that authenticates. A listener
//! that cannot be bound is logged as an error and the agent runs on
//! without the UI.
//!
//! The small HTTP plumbing here ([`bind`], [`serve_requests`]) is shared
//! with [`super::metrics`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use maud::{html, Markup, DOCTYPE};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::snapshot::{AppSnapshot, NodeSnapshot, ReplicaSnapshot};

/// Response body of the admin and metrics listeners.
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Connections served at once per listener (server-sent event streams
/// included); further clients wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one server-sent event per this interval.
pub const SSE_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Journal lines shown per replica.
pub const LOG_LINES: u32 = 20;
/// The journal command must answer within this.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this much journal output is shown.
const LOG_MAX_BYTES: usize = 256 * 1024;

const CSS: &str = include_str!("admin/admin.css");
const JS: &str = include_str!("admin/admin.js");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Serve the admin UI on `listener` (see [`bind`]) from `snapshots`.
/// `journalctl` is the command (and its prefix arguments) that reads a
/// unit's journal; empty disables `/logs`.
pub async fn serve(
    listener: TcpListener,
    snapshots: watch::Receiver<NodeSnapshot>,
    journalctl: Vec<String>,
) {
    let admin = Arc::new(Admin {
        snapshots,
        journalctl,
    });
    serve_requests(listener, move |req| handle(req, admin.clone())).await;
}

struct Admin {
    snapshots: watch::Receiver<NodeSnapshot>,
    journalctl: Vec<String>,
}

async fn handle(req: Request<Incoming>, admin: Arc<Admin>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return method_not_allowed();
    }
    let path = req.uri().path();
    match path {
        "/" => {
            let snap = admin.snapshots.borrow().clone();
            html_response(StatusCode::OK, render_page(&snap, now_unix()))
        }
        "/events" => events(admin.snapshots.clone()),
        "/api/snapshot" => {
            let snap = redacted(admin.snapshots.borrow().clone());
            let json = serde_json::to_vec(&snap).unwrap_or_default();
            full(StatusCode::OK, "application/json", json)
        }
        "/admin.css" => full(StatusCode::OK, "text/css; charset=utf-8", CSS),
        "/admin.js" => full(StatusCode::OK, "text/javascript; charset=utf-8", JS),
        _ => match path.strip_prefix("/logs/").and_then(percent_decode) {
            Some(unit) => logs(&admin, &unit).await,
            None => not_found(),
        },
    }
}

/// `/logs/<unit>`: only for a unit of the current snapshot.
async fn logs(admin: &Admin, unit: &str) -> Response<Body> {
    let (known, node_id) = {
        let snap = admin.snapshots.borrow();
        (known_unit(&snap, unit), snap.node_id.clone())
    };
    if !known {
        return not_found();
    }
    let logs = read_logs(&admin.journalctl, unit).await;
    html_response(StatusCode::OK, render_logs(&node_id, unit, &logs))
}

/// `/events`: a `snapshot` event with the re-rendered `#live` fragment now
/// and at each change of the snapshot (at most one per
/// [`SSE_MIN_INTERVAL`]); the stream ends when the agent goes away.
fn events(rx: watch::Receiver<NodeSnapshot>) -> Response<Body> {
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            tokio::time::sleep(SSE_MIN_INTERVAL).await;
            rx.changed().await.ok()?;
        }
        let snap = rx.borrow_and_update().clone();
        let fragment = render_live(&snap, now_unix()).into_string();
        let frame = Frame::data(Bytes::from(sse_event("snapshot", &fragment)));
        Some((Ok::<_, Infallible>(frame), (rx, false)))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// One server-sent event: `data` may span lines (each gets its `data:`).
pub fn sse_event(event: &str, data: &str) -> String {
    let mut out = format!("event: {event}\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    out
}

// ---------------------------------------------------------------- journal

/// Whether `unit` is a replica unit of `snap` (and looks like a unit name:
/// defence in depth, it is passed as one argument to the journal command).
pub fn known_unit(snap: &NodeSnapshot, unit: &str) -> bool {
    let plausible = !unit.is_empty()
        && unit.len() <= 256
        && !unit.starts_with('-')
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@:._-\\".contains(&b));
    plausible
        && snap
            .apps
            .iter()
            .flat_map(|a| &a.replicas)
            .any(|r| r.unit == unit)
}

/// The journal command for `unit`: `journalctl` (program and prefix
/// arguments) + `-u <unit> -n 20 -o cat --no-pager`. None if disabled.
pub fn log_command(journalctl: &[String], unit: &str) -> Option<(String, Vec<String>)> {
    let (program, prefix) = journalctl.split_first()?;
    let mut args = prefix.to_vec();
    args.extend(
        [
            "-u",
            unit,
            "-n",
            &LOG_LINES.to_string(),
            "-o",
            "cat",
            "--no-pager",
        ]
        .map(str::to_owned),
    );
    Some((program.clone(), args))
}

/// The last journal lines of `unit` (already validated), or why not.
async fn read_logs(journalctl: &[String], unit: &str) -> Result<String, String> {
    let Some((program, args)) = log_command(journalctl, unit) else {
        return Err("log viewing is disabled (--journalctl \"\")".into());
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(LOG_TIMEOUT, cmd.output()).await {
        Err(_) => return Err(format!("{program} did not answer within {LOG_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("cannot run {program}: {e}")),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() && out.stdout.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{program} failed ({}): {}",
            out.status,
            truncate(stderr.trim(), 4096)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // Keep the end: the newest lines are the interesting ones.
    let start = text.len().saturating_sub(LOG_MAX_BYTES);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    Ok(text[start..].to_owned())
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------- rendering

/// The whole page.
pub fn render_page(snap: &NodeSnapshot, now: i64) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "narun node " (snap.node_id) }
                link rel="stylesheet" href="/admin.css";
                noscript { meta http-equiv="refresh" content="10"; }
                script src="/admin.js" defer {}
            }
            body data-live="static" {
                h1 { "narun node " span #node-id { (snap.node_id) } }
                div #live { (render_live(snap, now)) }
                footer {
                    "narun " (snap.version) " · read-only admin UI · "
                    a href="/api/snapshot" { "snapshot (JSON)" }
                }
            }
        }
    }
}

/// The part of the page that changes (pushed over server-sent events).
pub fn render_live(snap: &NodeSnapshot, now: i64) -> Markup {
    if snap.node_id.is_empty() {
        return html! { p.meta #waiting { "Waiting for the agent's first status poll…" } };
    }
    let labels = snap
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        dl.node {
            dt { "Node ID" } dd #node { (snap.node_id) }
            dt { "Version" } dd { (snap.version) }
            dt { "Started" } dd {
                (rfc3339(snap.started_unix)) " (up " (human_duration(now - snap.started_unix)) ")"
            }
            dt { "NATS" } dd #nats data-connected=(snap.nats_connected) {
                @if snap.nats_connected { span.ok { "connected" } } @else { span.bad { "disconnected" } }
                " " span.meta { (redact_urls(&snap.nats_url)) }
            }
            dt { "systemd" } dd { (snap.systemd_version) }
            dt { "Platform" } dd { (snap.os) "/" (snap.arch) }
            @if !labels.is_empty() { dt { "Labels" } dd { (labels) } }
            dt { "Updated" } dd { (rfc3339(now)) }
        }
        @if snap.apps.is_empty() {
            p.meta #no-apps { "No applications are known to this node." }
        }
        @for app in &snap.apps { (render_app(app, now)) }
    }
}

fn render_app(app: &AppSnapshot, now: i64) -> Markup {
    html! {
        section.app data-app=(app.name) {
            h2 { "App " (app.name) }
            p.meta {
                "tag " strong { (dash(&app.tag)) }
                " · mode " strong { (dash(&app.mode)) }
                " · replicas here " strong { (app.desired) }
                @if app.metrics_port > 0 {
                    " · metrics " code { ":" (app.metrics_port) (app.metrics_path) }
                }
            }
            @if let Some(e) = &app.error { p.error { "Error: " (e) } }
            @if app.replicas.is_empty() {
                p.meta.no-replicas { "No replicas on this node." }
            } @else {
                table {
                    thead { tr {
                        th { "Instance" } th { "Unit" } th { "Status" } th { "systemd state" }
                        th { "PID" } th { "Uptime" } th { "Restarts" } th { "Last exit" }
                        th { "Memory" } th { "CPU" } th { "Logs" }
                    } }
                    tbody { @for r in &app.replicas { (render_replica(r, now)) } }
                }
            }
        }
    }
}

fn render_replica(r: &ReplicaSnapshot, now: i64) -> Markup {
    html! {
        tr data-instance=(r.instance_id) data-status=(r.status) {
            td { (r.instance_id) }
            td { code { (r.unit) } }
            td class={ "status-" (r.status) } { (r.status) }
            td { (r.active_state) "/" (r.sub_state) }
            td { @if r.pid > 0 { (r.pid) } @else { "-" } }
            td {
                @if r.active_since_unix > 0 { (human_duration(now - r.active_since_unix)) }
                @else { "-" }
            }
            td { (r.restarts) }
            td { @if let Some(c) = r.last_exit_code { (c) } @else { "-" } }
            @if let Some(m) = r.memory_current_bytes {
                td title={ (m) " bytes" } { (human_bytes(m)) }
            } @else { td { "-" } }
            td { @if let Some(c) = r.cpu_usage_seconds { (format!("{c:.2} s")) } @else { "-" } }
            td { a href=(logs_href(&r.unit)) { "last " (LOG_LINES) " lines" } }
        }
    }
}

/// The `/logs/<unit>` page.
pub fn render_logs(node_id: &str, unit: &str, logs: &Result<String, String>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (unit) " · narun node " (node_id) }
                link rel="stylesheet" href="/admin.css";
            }
            body {
                p { a href="/" { "← node " (node_id) } }
                h1 { "Last " (LOG_LINES) " lines of " code { (unit) } }
                @match logs {
                    Ok(text) if text.is_empty() => p.meta { "(no log lines)" },
                    Ok(text) => pre.logs #logs { (text) },
                    Err(e) => p.error #logs-error { (e) },
                }
            }
        }
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `/logs/<unit>` with the unit percent-encoded as a path segment.
fn logs_href(unit: &str) -> String {
    let mut out = String::from("/logs/");
    for b in unit.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode a percent-encoded path segment (None if malformed or not UTF-8).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Comma-separated URLs with any `user:password@` replaced by `***@`.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let (scheme, rest) = match u.find("://") {
                Some(i) => u.split_at(i + 3),
                None => ("", u),
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}***{}", &rest[at..]),
                None => u.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn redacted(mut snap: NodeSnapshot) -> NodeSnapshot {
    snap.nats_url = redact_urls(&snap.nats_url);
    snap
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `9s`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `512 B`, `1.5 KiB`, `12.3 MiB`, `1.2 GiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

// ---------------------------------------------------------------- HTTP

/// Bind `addr` for `what` (port 0: any free port); the address bound is
/// logged, and so is a failure (the agent runs on without `what`).
pub(super) async fn bind(addr: SocketAddr, what: &str) -> Option<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => {
            let bound = l.local_addr().unwrap_or(addr);
            tracing::info!(addr = %bound, "{what} listening on http://{bound}/");
            Some(l)
        }
        Err(e) => {
            tracing::error!(
                addr = %addr,
                error = %e,
                "{what} disabled: cannot listen on {addr}: {e} (the agent keeps running)"
            );
            None
        }
    }
}

/// Serve HTTP/1.1 on `listener` forever, answering each request with
/// `handler`. At most [`MAX_CONNECTIONS`] connections at once.
pub(super) async fn serve_requests<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: do not spin.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A buffered response.
pub(super) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed_unsync());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn html_response(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut resp = full(status, "text/html; charset=utf-8", markup.into_string());
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

pub(super) fn not_found() -> Response<Body> {
    full(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "404 page not found\n",
    )
}

pub(super) fn method_not_allowed() -> Response<Body> {
    let mut resp = full(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "405 method not allowed (read-only)\n",
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> NodeSnapshot {
        NodeSnapshot {
            node_id: "n1".into(),
            version: "0.1.0".into(),
            started_unix: 1_700_000_000,
            nats_connected: true,
            nats_url: "nats://alice:hunter2@10.0.0.1:4222,nats://10.0.0.2:4222".into(),
            systemd_version: "252 (252.38-1~deb12u1)".into(),
            os: "linux".into(),
            arch: "amd64".into(),
            labels: vec![("zone".into(), "<eu>".into())],
            apps: vec![AppSnapshot {
                name: "hello".into(),
                tag: "v1<script>alert(1)</script>".into(),
                mode: "exec".into(),
                desired: 1,
                error: Some("binary \"x\" & <y> not found".into()),
                metrics_port: 9464,
                metrics_path: "/metrics".into(),
                replicas: vec![ReplicaSnapshot {
                    index: 0,
                    instance_id: "hello-0".into(),
                    unit: "narun-app@hello.service".into(),
                    active_state: "active".into(),
                    sub_state: "running".into(),
                    status: "running".into(),
                    pid: 4242,
                    active_since_unix: 1_700_000_100,
                    restarts: 3,
                    last_exit_code: Some(137),
                    memory_current_bytes: Some(12 * 1024 * 1024 + 300 * 1024),
                    cpu_usage_seconds: Some(1.5),
                    spec_hash: "abc".into(),
                }],
            }],
        }
    }

    #[test]
    fn page_shows_node_app_and_replica_with_every_value_escaped() {
        let html = render_page(&snapshot(), 1_700_003_700).into_string();
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("<title>narun node n1</title>"), "{html}");
        // Escaped, never raw.
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("v1&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("binary &quot;x&quot; &amp; &lt;y&gt; not found")
                || html.contains("binary \"x\" &amp; &lt;y&gt; not found"),
            "{html}"
        );
        assert!(html.contains("zone=&lt;eu&gt;"), "{html}");
        // Node header.
        assert!(html.contains("252 (252.38-1~deb12u1)"));
        assert!(html.contains("connected"));
        assert!(html.contains("up 1h 1m"), "{html}");
        // No credentials.
        assert!(!html.contains("hunter2"), "{html}");
        assert!(html.contains("nats://***@10.0.0.1:4222,nats://10.0.0.2:4222"));
        // The replica row.
        assert!(
            html.contains(r#"<tr data-instance="hello-0" data-status="running">"#),
            "{html}"
        );
        assert!(html.contains(r#"<td class="status-running">running</td>"#));
        assert!(html.contains("<td>active/running</td>"));
        assert!(html.contains("<td>4242</td>"));
        assert!(html.contains("<td>1h 0m</td>"), "uptime: {html}");
        assert!(html.contains("<td>3</td>"), "restarts");
        assert!(html.contains("<td>137</td>"), "last exit");
        assert!(html.contains("12.3 MiB"), "{html}");
        assert!(html.contains("1.50 s"), "{html}");
        assert!(html.contains(r#"href="/logs/narun-app@hello.service""#));
        // Static assets, no inline script.
        assert!(html.contains(r#"<script src="/admin.js" defer></script>"#));
        assert!(html.contains(r#"<div id="live">"#));
    }

    #[test]
    fn an_app_without_replicas_and_a_fresh_agent_render() {
        let mut snap = snapshot();
        snap.apps[0].replicas.clear();
        snap.apps[0].error = None;
        let html = render_live(&snap, 0).into_string();
        assert!(html.contains("No replicas on this node."));
        assert!(!html.contains("data-instance"));
        assert!(!html.contains("Error:"));
        snap.apps.clear();
        assert!(render_live(&snap, 0)
            .into_string()
            .contains("No applications are known to this node."));
        let html = render_page(&NodeSnapshot::default(), 0).into_string();
        assert!(html.contains("Waiting for the agent"), "{html}");
    }

    #[test]
    fn logs_page_escapes_the_journal() {
        let html = render_logs(
            "n1",
            "narun-app@hello.service",
            &Ok("line <b>1</b> & \"2\"\n".into()),
        )
        .into_string();
        assert!(html.contains("line &lt;b&gt;1&lt;/b&gt; &amp;"), "{html}");
        assert!(!html.contains("<b>1</b>"));
        let html = render_logs("n1", "u", &Err("<boom>".into())).into_string();
        assert!(html.contains("&lt;boom&gt;"), "{html}");
        let html = render_logs("n1", "u", &Ok(String::new())).into_string();
        assert!(html.contains("(no log lines)"));
    }

    #[test]
    fn only_snapshot_units_are_passed_to_the_journal_command() {
        let snap = snapshot();
        assert!(known_unit(&snap, "narun-app@hello.service"));
        for bad in [
            "narun-app@other.service",
            "",
            "-k",
            "narun-app@hello.service; rm -rf /",
            "../../etc/passwd",
            "*",
        ] {
            assert!(!known_unit(&snap, bad), "{bad}");
        }
        // Even if a snapshot held a strange unit name, it must look like one.
        let mut odd = snapshot();
        odd.apps[0].replicas[0].unit = "--output=json".into();
        assert!(!known_unit(&odd, "--output=json"));

        let (prog, args) = log_command(
            &[
                "nsenter".into(),
                "-t".into(),
                "7".into(),
                "journalctl".into(),
            ],
            "narun-app@hello:1.service",
        )
        .unwrap();
        assert_eq!(prog, "nsenter");
        assert_eq!(
            args,
            [
                "-t",
                "7",
                "journalctl",
                "-u",
                "narun-app@hello:1.service",
                "-n",
                "20",
                "-o",
                "cat",
                "--no-pager"
            ]
        );
        assert!(log_command(&[], "u").is_none());
    }

    #[test]
    fn unit_paths_round_trip() {
        for unit in ["narun-app@hello:1.service", r"narun-app@a\x2db.service"] {
            let href = logs_href(unit);
            let seg = href.strip_prefix("/logs/").unwrap();
            assert_eq!(percent_decode(seg).as_deref(), Some(unit));
        }
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn sse_events_frame_multiline_data() {
        assert_eq!(
            sse_event("snapshot", "a\nb\r\nc"),
            "event: snapshot\ndata: a\ndata: b\ndata: c\n\n"
        );
        assert_eq!(sse_event("x", ""), "event: x\ndata: \n\n");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_urls("nats://h:4222"), "nats://h:4222");
        assert_eq!(
            redact_urls("nats://u:p@h:4222,tls://tok@h2"),
            "nats://***@h:4222,tls://***@h2"
        );
        assert_eq!(redact_urls("u:p@h"), "***@h");
        let snap = redacted(snapshot());
        assert!(!serde_json::to_string(&snap).unwrap().contains("hunter2"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_duration(9), "9s");
        assert_eq!(human_duration(250), "4m 10s");
        assert_eq!(human_duration(7500), "2h 5m");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600 + 7), "3d 4h");
        assert_eq!(human_duration(-5), "0s");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    /// A listener on any free 127.0.0.1 port, and its address.
    async fn listener() -> (TcpListener, SocketAddr) {
        let l = bind("127.0.0.1:0".parse().unwrap(), "test").await.unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(addr).await.unwrap()
    }

    /// Send `request` and read until `needle` is in the answer.
    async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut String, needle: &str) {
        use tokio::io::AsyncReadExt;
        let wait = async {
            let mut buf = [0u8; 8192];
            while !seen.contains(needle) {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before {needle:?}:\n{seen}");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in:\n{seen}"));
    }

    async fn exchange(addr: SocketAddr, request: &str, needle: &str) -> String {
        use tokio::io::AsyncWriteExt;
        let mut stream = connect(addr).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = String::new();
        read_until(&mut stream, &mut seen, needle).await;
        seen
    }

    #[tokio::test]
    async fn events_push_each_new_snapshot_and_logs_run_only_for_known_units() {
        use tokio::io::AsyncWriteExt;
        let (l, addr) = listener().await;
        let tx = watch::Sender::new(snapshot());
        // `echo` stands in for journalctl: it shows the exact arguments.
        tokio::spawn(serve(l, tx.subscribe(), vec!["echo".into()]));

        let mut events = connect(addr).await;
        events
            .write_all(b"GET /events HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        read_until(&mut events, &mut seen, r#"data-instance="hello-0""#).await;
        assert!(seen.contains("content-type: text/event-stream"), "{seen}");
        assert!(seen.contains("event: snapshot\ndata: "), "{seen}");
        let mut gone = snapshot();
        gone.apps[0].replicas.clear();
        tx.send_replace(gone);
        read_until(&mut events, &mut seen, "No replicas on this node.").await;

        let page = exchange(addr, "GET / HTTP/1.1\r\nhost: x\r\n\r\n", "</html>").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("content-security-policy: default-src 'none'"));
        // The unit is gone from the snapshot: 404, nothing run.
        let logs = exchange(
            addr,
            "GET /logs/narun-app@hello.service HTTP/1.1\r\nhost: x\r\n\r\n",
            "404 page not found",
        )
        .await;
        assert!(logs.starts_with("HTTP/1.1 404"), "{logs}");
        tx.send_replace(snapshot());
        let logs = exchange(
            addr,
            "GET /logs/narun-app@hello.service HTTP/1.1\r\nhost: x\r\n\r\n",
            "</html>",
        )
        .await;
        assert!(
            logs.contains("-u narun-app@hello.service -n 20 -o cat --no-pager"),
            "{logs}"
        );
        let other = exchange(
            addr,
            "GET /logs/narun-app@other.service HTTP/1.1\r\nhost: x\r\n\r\n",
            "\r\n\r\n",
        )
        .await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = exchange(addr, "POST / HTTP/1.1\r\nhost: x\r\n\r\n", "\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let js = exchange(addr, "GET /admin.js HTTP/1.1\r\nhost: x\r\n\r\n", "})();").await;
        assert!(js.contains("new EventSource(\"/events\")"), "{js}");
    }

    /// (That a port 0 is logged as the port bound, every agent test
    /// relies on: tests/common/agent.rs reads both addresses from the log.)
    #[tokio::test]
    async fn an_address_in_use_is_a_none_not_a_failure() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(bind(addr, "admin UI").await.is_none());
    }
}
