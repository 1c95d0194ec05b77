//! `narun bridge`: proxy mode, any HTTP server as a narun app.
//!
//! A replica of an app with `http:` in its spec runs as
//! `narun bridge --service NAME [--port P] -- APP ARGS...`: the unit's main
//! process, as the app's user, in its cgroup and sandbox. It picks the
//! app's port (a free one on 127.0.0.1 unless the spec pins it), starts the
//! app with `PORT` set, waits until the port accepts connections, then
//! serves the app's NATS Micro service (the consumer library: same name,
//! queue group, `$SRV.*`, READY=1 to systemd once subscribed). Each request
//! becomes an HTTP/1.1 request to `127.0.0.1:PORT`.
//!
//! Stop (SIGTERM from systemd): the service drains first (no new request,
//! the ones in flight answered), then the app gets SIGTERM. An app that
//! exits on its own ends the bridge with the app's status, so systemd's
//! restart policy applies to the app: no bridge answers for a dead app.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What the bridge runs.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// The app's NATS Micro service name.
    pub service: String,
    /// The app's port on 127.0.0.1; 0: pick a free one.
    pub port: u16,
    /// The app's command line. It has as long as it takes to listen: the
    /// node agent judges `progressDeadline`.
    pub command: Vec<String>,
}

/// Headers that belong to one connection, not to the request (RFC 9110
/// §7.6.1); the bridge speaks its own HTTP/1.1 to the app.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The request as sent to the app at `port`: its path and query on
/// 127.0.0.1, without hop-by-hop headers (nor those `Connection` names),
/// `x-forwarded-proto` / `x-forwarded-host` set when absent.
pub fn to_app(
    mut req: http::Request<Full<Bytes>>,
    port: u16,
) -> Result<http::Request<Full<Bytes>>, String> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let uri: http::Uri = format!("http://127.0.0.1:{port}{path}")
        .parse()
        .map_err(|e| format!("request target {path:?}: {e}"))?;
    let h = req.headers_mut();
    let named: Vec<String> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    for n in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        h.remove(n);
    }
    h.remove(http::header::TRANSFER_ENCODING);
    if !h.contains_key("x-forwarded-proto") {
        h.insert("x-forwarded-proto", http::HeaderValue::from_static("http"));
    }
    if let Some(host) = h.get(http::header::HOST).cloned() {
        if !h.contains_key("x-forwarded-host") {
            h.insert("x-forwarded-host", host);
        }
    }
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    Ok(req)
}

/// The tower service: each request to the app, its response back.
#[derive(Clone)]
struct Proxy {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    port: u16,
}

impl tower::Service<http::Request<Full<Bytes>>> for Proxy {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        let (client, port) = (self.client.clone(), self.port);
        Box::pin(async move {
            let req = match to_app(req, port) {
                Ok(r) => r,
                Err(e) => return Ok(error(http::StatusCode::BAD_REQUEST, &e)),
            };
            let resp = match client.request(req).await {
                Ok(r) => r,
                // The app is not listening (any more): it is unavailable.
                Err(e) => {
                    return Ok(error(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        &format!("the app on 127.0.0.1:{port} did not answer: {e}"),
                    ))
                }
            };
            let (mut parts, body) = resp.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return Ok(error(
                        http::StatusCode::BAD_GATEWAY,
                        &format!("the app's response broke off: {e}"),
                    ))
                }
            };
            for n in HOP_BY_HOP {
                parts.headers.remove(n);
            }
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            Ok(http::Response::from_parts(parts, Full::new(body)))
        })
    }
}

fn error(status: http::StatusCode, message: &str) -> http::Response<Full<Bytes>> {
    tracing::warn!(%status, %message, "proxy error");
    let mut r = http::Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A free TCP port on 127.0.0.1 (bound then released: the app binds it
/// right after).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The exit code that reports how `status` ended (128 + signal, as a
/// shell does).
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

/// Run the bridge until systemd stops it or the app exits.
pub async fn run(opts: BridgeOptions) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("narun bridge: {msg}");
        ExitCode::from(1)
    };
    let Some((program, args)) = opts.command.split_first() else {
        return fail("no app command".into());
    };
    let port = match opts.port {
        0 => match free_port() {
            Ok(p) => p,
            Err(e) => return fail(format!("no free port on 127.0.0.1: {e}")),
        },
        p => p,
    };
    let mut app = match tokio::process::Command::new(program)
        .args(args)
        .env("PORT", port.to_string())
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start {program}: {e}")),
    };
    tracing::info!(port, "app started; waiting for it to listen");
    // Ready to serve once the port accepts connections.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listening = async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        status = app.wait() => {
            return match status {
                Ok(s) => {
                    eprintln!("narun bridge: the app exited before listening on 127.0.0.1:{port} ({s})");
                    ExitCode::from(exit_code(s).max(1))
                }
                Err(e) => fail(format!("waiting for the app: {e}")),
            };
        }
        _ = listening => {}
    }
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let proxy = Proxy { client, port };
    let copts = crate::consumer::Options::new(opts.service.clone());
    // Stop serving when systemd stops the unit, or when the app dies.
    let (app_done_tx, app_done_rx) = tokio::sync::oneshot::channel();
    let app_pid = app.id();
    let watcher = tokio::spawn(async move {
        let status = app.wait().await;
        let _ = app_done_tx.send(());
        status
    });
    let mut app_done_rx = app_done_rx;
    let mut app_died = false;
    let shutdown = async {
        tokio::select! {
            _ = crate::consumer::shutdown_signal() => {}
            _ = &mut app_done_rx => { app_died = true; }
        }
    };
    if let Err(e) = crate::consumer::serve_with_shutdown(copts, proxy, shutdown).await {
        eprintln!("narun bridge: {e}");
    }
    // Drained: now the app stops (systemd's KillMode=mixed SIGKILLs what
    // is left at the stop timeout).
    if !app_died {
        if let Some(pid) = app_pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    match watcher.await {
        Ok(Ok(s)) if app_died => {
            eprintln!("narun bridge: the app exited ({s})");
            ExitCode::from(exit_code(s).max(1))
        }
        Ok(Ok(_)) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_reach_the_app_without_hop_by_hop_headers() {
        let req = http::Request::builder()
            .method("POST")
            .uri("/a/b?x=1")
            .header("host", "example.com")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("x-kept", "yes")
            .body(Full::new(Bytes::from_static(b"body")))
            .unwrap();
        let out = to_app(req, 8080).unwrap();
        assert_eq!(out.uri(), "http://127.0.0.1:8080/a/b?x=1");
        let h = out.headers();
        for gone in ["connection", "x-private", "keep-alive", "te"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h["host"], "example.com");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-forwarded-proto"], "http");
        let bare = http::Request::new(Full::new(Bytes::new()));
        assert_eq!(to_app(bare, 1).unwrap().uri(), "http://127.0.0.1:1/");
    }

    #[test]
    fn exit_codes_say_how_the_app_ended() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }
}
