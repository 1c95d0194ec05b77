//! Listeners, connections, forwarding and shutdown of the gateway.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::body::Body;
use super::config::Config;
use super::metrics::{Metrics, UNMATCHED};
use super::rescue::{rescue, Failure};
use super::routes::{check_path, HttpRoute, Resolution, RouteTable};
use super::shared::{request_id, request_id_header, text, Decorations, Gateway, PeerIp};
use crate::nats::{self as nats_conn, NatsOptions};
use crate::{sd, wire};

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot use the sockets passed by systemd: {0}")]
    Inherited(std::io::Error),
    #[error(transparent)]
    Nats(#[from] nats_conn::NatsConfigError),
}

/// What a listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// HTTP; also gRPC (by `content-type`) when `grpc_addr == server_addr`.
    Http { with_grpc: bool },
    /// gRPC only (`grpc_addr`).
    Grpc,
}

/// Run the gateway until SIGTERM/SIGINT, then drain.
pub async fn run(cfg: Config) -> Result<(), GatewayError> {
    run_until(cfg, crate::consumer::shutdown_signal()).await
}

/// Run the gateway until `shutdown` resolves, then stop accepting and drain
/// in-flight requests for up to `shutdown_timeout`.
pub async fn run_until(
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let listeners = Listeners::bind(&cfg).await?;
    serve(cfg, listeners, shutdown).await
}

/// The gateway's listening sockets.
pub struct Listeners {
    /// HTTP (and gRPC too when `grpc` is `None` and `grpc_addr` is set).
    pub http: TcpListener,
    /// gRPC, when it has a listener of its own.
    pub grpc: Option<TcpListener>,
    /// Prometheus `/metrics`.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// The sockets systemd passed (named `http`, `grpc`, `metrics`; an
    /// unnamed one is `http`), else bound to the configured addresses.
    pub async fn bind(cfg: &Config) -> Result<Self, GatewayError> {
        let mut inherited =
            sd::inherited_sockets(&["http", "grpc", "metrics"]).map_err(GatewayError::Inherited)?;
        let http = listener(&mut inherited, "http", true, cfg.server_addr, "HTTP").await?;
        // gRPC gets its own listener unless it shares the HTTP address
        // (then requests are told apart by content-type), or systemd
        // passed one.
        let grpc = match cfg.grpc_addr {
            Some(addr) if addr != cfg.server_addr || inherited.named.contains_key("grpc") => {
                Some(listener(&mut inherited, "grpc", false, addr, "gRPC").await?)
            }
            _ => None,
        };
        let metrics = match cfg.metrics_addr {
            Some(addr) => Some(listener(&mut inherited, "metrics", false, addr, "metrics").await?),
            None => None,
        };
        Ok(Listeners {
            http,
            grpc,
            metrics,
        })
    }
}

/// Serve on `listeners` (bound by the caller: [`Listeners::bind`], or
/// `narun dev` and tests on ports of their choosing) until `shutdown`
/// resolves, then stop accepting and drain in-flight requests for up to
/// `shutdown_timeout`. The addresses in `cfg` are not used.
pub async fn serve(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let Listeners {
        http,
        grpc,
        metrics: metrics_listener,
    } = listeners;
    let http_mode = Mode::Http {
        with_grpc: cfg.grpc_addr.is_some() && grpc.is_none(),
    };

    let mut nopts = NatsOptions::new(&cfg.nats_url, "NATS HTTP Gateway");
    nopts.nkey_seed_file = cfg.nkey_seed_file.clone();
    nopts.creds_file = cfg.creds_file.clone();
    nopts.tls_ca_file = cfg.tls_ca_file.clone();
    nopts.tls_cert_file = cfg.tls_cert_file.clone();
    nopts.tls_key_file = cfg.tls_key_file.clone();
    let (nats, disconnects) = nats_conn::connect_counting_disconnects(&nopts).await?;

    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let gw = Arc::new(Gateway {
        routes: RouteTable::new(cfg.http_routes.clone()),
        subjects: cfg
            .http_routes
            .iter()
            .map(|r| async_nats::Subject::from(r.service.as_str()))
            .collect(),
        grpc_routes: cfg
            .grpc_routes
            .iter()
            .map(|r| (r.service_name.clone(), r.clone()))
            .collect(),
        permits: Arc::new(Semaphore::new(cfg.max_in_flight)),
        metrics: Metrics::new(cfg.http_routes.len()),
        stopping: stopping_rx,
        nats,
        disconnects,
        cfg,
    });
    let http_addr = http.local_addr().ok();
    tracing::info!(addr = ?http_addr, routes = gw.routes.routes().len(), "HTTP listener ready");
    if let Some(l) = &grpc {
        tracing::info!(addr = ?l.local_addr().ok(), routes = gw.grpc_routes.len(), "gRPC listener ready");
    } else if http_mode == (Mode::Http { with_grpc: true }) {
        tracing::info!(
            routes = gw.grpc_routes.len(),
            "gRPC served on the HTTP listener"
        );
    }

    if let Some(l) = metrics_listener {
        tracing::info!(addr = ?l.local_addr().ok(), "metrics listener ready");
        tokio::spawn(serve_metrics(l, gw.metrics.clone()));
    }

    // READY once listeners are bound and NATS is connected; requests are
    // served (with 503) even before that.
    sd::status("waiting for NATS");
    let ready_gw = gw.clone();
    tokio::spawn(async move {
        nats_conn::wait_connected(&ready_gw.nats).await;
        sd::ready(&format!(
            "serving {} routes on {}",
            ready_gw.routes.routes().len(),
            http_addr.map_or_else(|| "?".into(), |a| a.to_string())
        ));
    });
    sd::spawn_watchdog();

    let graceful = GracefulShutdown::new();
    // `max_connections`, shared by the HTTP and gRPC listeners, bound here
    // or passed by systemd alike.
    let connections = Arc::new(Semaphore::new(gw.cfg.max_connections));
    let mut saturated: Option<Saturation> = None;
    tokio::pin!(shutdown);
    loop {
        let (accepted, mode) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = http.accept() => (accepted, http_mode),
            accepted = accept_optional(grpc.as_ref()) => (accepted, Mode::Grpc),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                if let Some(episode) = saturated.take() {
                    tracing::info!(
                        max_connections = gw.cfg.max_connections,
                        waited = episode.waited,
                        lasted = ?episode.since.elapsed(),
                        "accepting connections again: below max_connections"
                    );
                }
                permit
            }
            Err(_) => {
                // This connection (and those still in the listen backlog)
                // waits until one closes. Said once per episode.
                let episode = saturated.get_or_insert_with(|| {
                    tracing::warn!(
                        max_connections = gw.cfg.max_connections,
                        "max_connections reached: new connections wait until one closes"
                    );
                    Saturation {
                        since: Instant::now(),
                        waited: 0,
                    }
                });
                episode.waited += 1;
                tokio::select! {
                    _ = &mut shutdown => break,
                    permit = connections.clone().acquire_owned() => {
                        permit.expect("the connection semaphore is never closed")
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        spawn_connection(gw.clone(), stream, peer, mode, &graceful, permit);
    }

    drop(http);
    drop(grpc);
    sd::stopping("draining in-flight requests");
    let _ = stopping_tx.send(true);
    tracing::info!("shutting down: no longer accepting, draining in-flight requests");
    match tokio::time::timeout(gw.cfg.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!("shutdown timeout: closing remaining connections"),
    }
    // Never hang the exit on a NATS that is gone.
    let _ = tokio::time::timeout(Duration::from_secs(2), gw.nats.flush()).await;
    Ok(())
}

/// Accept on `listener`, or never when there is none.
async fn accept_optional(
    listener: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// An episode of `max_connections` open connections.
struct Saturation {
    since: Instant,
    /// Connections that had to wait for one to close.
    waited: u64,
}

async fn listener(
    inherited: &mut sd::InheritedSockets,
    name: &str,
    fallback: bool,
    addr: SocketAddr,
    what: &'static str,
) -> Result<TcpListener, GatewayError> {
    if let Some(l) = inherited.take(name, fallback) {
        tracing::info!(socket = name, "using socket passed by systemd");
        return TcpListener::from_std(l).map_err(GatewayError::Inherited);
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { what, addr, source })
}

/// What a connection's timers look at: the opening (until it is complete,
/// `header_read_timeout`), then requests and response bytes
/// (`idle_timeout`).
struct Activity {
    started: Instant,
    /// When the connection last made progress, in ms since `started`: a
    /// request began or ended, or response bytes were written. Bytes
    /// received do not count: a client that dribbles bytes completing no
    /// request is idle.
    last_ms: AtomicU64,
    /// Requests being handled (until their response body is dropped).
    active: AtomicUsize,
    /// The client has sent its opening (see [`Opening`]).
    opened: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            opened: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection is to be closed unless something happens first:
    /// `None` while a request is being handled. Activity only moves it
    /// later, except when the opening completes (from `started +
    /// header_read_timeout` to `last + idle_timeout`): checking again at
    /// least every `idle_timeout` keeps the close on time.
    fn deadline(&self, header_read_timeout: Duration, idle_timeout: Duration) -> Option<Instant> {
        if !self.opened.load(Ordering::Relaxed) {
            return Some(self.started + header_read_timeout);
        }
        if self.active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.started + last + idle_timeout)
    }
}

/// Counts one active request on a connection until its response body is
/// dropped (a streamed response keeps the connection from being idle).
struct ActiveGuard(Arc<Activity>);

impl ActiveGuard {
    fn new(activity: Arc<Activity>) -> Self {
        activity.active.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        ActiveGuard(activity)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The preface and the header of the first frame, which must be SETTINGS.
const H2_OPENING_HEAD: usize = H2_PREFACE.len() + 9;

/// Tells when a client has sent its opening, which must come within
/// `header_read_timeout` of the connection: for HTTP/2 the preface and the
/// whole first frame (neither hyper nor h2 times them), for HTTP/1 its
/// first byte (hyper's `header_read_timeout` times each request head from
/// there).
struct Opening {
    head: [u8; H2_OPENING_HEAD],
    received: usize,
}

impl Opening {
    fn new() -> Self {
        Opening {
            head: [0; H2_OPENING_HEAD],
            received: 0,
        }
    }

    /// Takes the next bytes received; true once the opening is complete.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let at = self.received.min(H2_OPENING_HEAD);
        let n = (H2_OPENING_HEAD - at).min(bytes.len());
        self.head[at..at + n].copy_from_slice(&bytes[..n]);
        self.received = self.received.saturating_add(bytes.len());
        let seen = self.received.min(H2_PREFACE.len());
        if self.head[..seen] != H2_PREFACE[..seen] {
            return true; // HTTP/1
        }
        if self.received < H2_OPENING_HEAD {
            return false;
        }
        let frame_len = usize::from(self.head[24]) << 16
            | usize::from(self.head[25]) << 8
            | usize::from(self.head[26]);
        self.received >= H2_OPENING_HEAD + frame_len
    }
}

fn spawn_connection(
    gw: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    mode: Mode,
    graceful: &GracefulShutdown,
    permit: OwnedSemaphorePermit,
) {
    let counted = gw.metrics.connection();
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
        opening: Some(Opening::new()),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gw.cfg.header_read_timeout)
        .max_buf_size(gw.cfg.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(gw.cfg.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    let svc_gw = gw.clone();
    let svc_activity = activity.clone();
    let peer_ip = PeerIp::new(peer);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let gw = svc_gw.clone();
        let activity = svc_activity.clone();
        async move {
            let guard = ActiveGuard::new(activity);
            let grpc = match mode {
                Mode::Grpc => true,
                Mode::Http { with_grpc } => {
                    with_grpc
                        && req
                            .headers()
                            .get(header::CONTENT_TYPE)
                            .is_some_and(wire::grpc::is_grpc_content_type)
                }
            };
            let resp = if grpc {
                super::grpc::handle(gw, req, peer_ip).await
            } else {
                gw.handle(req, &peer_ip).await
            };
            Ok::<_, std::convert::Infallible>(resp.map(|b| b.guard(guard)))
        }
    });
    let conn = builder.serve_connection(io, service).into_owned();
    let conn = graceful.watch(conn);
    let (header_read_timeout, idle_timeout) = (gw.cfg.header_read_timeout, gw.cfg.idle_timeout);
    tokio::spawn(async move {
        // Both released when the connection ends.
        let _slot = (permit, counted);
        tokio::pin!(conn);
        loop {
            let recheck = Instant::now() + idle_timeout;
            let wake = activity
                .deadline(header_read_timeout, idle_timeout)
                .map_or(recheck, |d| d.min(recheck));
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(wake) => {
                    let deadline = activity.deadline(header_read_timeout, idle_timeout);
                    if deadline.is_some_and(|d| d <= Instant::now()) {
                        if activity.opened.load(Ordering::Relaxed) {
                            tracing::debug!(%peer, "closing idle connection");
                        } else {
                            tracing::debug!(%peer, "closing connection: no HTTP/2 preface and first frame (or HTTP/1 byte) within header_read_timeout_seconds");
                        }
                        return;
                    }
                }
            }
        }
    });
}

/// A TCP stream that reports the client's opening and when response bytes
/// were written to [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// `None` once the opening is complete.
    opening: Option<Opening>,
}

impl Tracked {
    fn wrote(&self, res: &Poll<std::io::Result<usize>>) {
        if matches!(res, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.touch();
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(opening) = &mut self.opening {
            if opening.feed(&buf.filled()[before..]) {
                self.opening = None;
                self.activity.opened.store(true, Ordering::Relaxed);
                self.activity.touch();
            }
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&res);
        res
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&res);
        res
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Gateway {
    async fn handle(&self, req: Request<Incoming>, peer: &PeerIp) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let version = req.version();
        // Before routing: a path a decoding consumer would read otherwise.
        if let Err(bad) = check_path(req.uri().path()) {
            let resp = failure_response(&Failure::BadPath(bad), None, version);
            self.metrics.http(
                &method,
                UNMATCHED,
                resp.status().as_u16(),
                start.elapsed().as_secs_f64(),
            );
            return resp;
        }
        let resp = match self.routes.resolve(&method, req.uri().path()) {
            Resolution::NotFound => text(StatusCode::NOT_FOUND, "404 page not found"),
            Resolution::Redirect(mut location) => {
                if let Some(q) = req.uri().query() {
                    location.push('?');
                    location.push_str(q);
                }
                let mut r = text(StatusCode::MOVED_PERMANENTLY, "Moved Permanently");
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Resolution::MethodNotAllowed { allow } => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
                r
            }
            Resolution::Forward { route, index } => {
                let resp = match self.forward(route, index, req, peer).await {
                    Ok(r) => r,
                    Err((failure, request_id)) => failure_response(&failure, request_id, version),
                };
                self.metrics.http_routed(
                    index,
                    &method,
                    &route.pattern,
                    resp.status().as_u16(),
                    start.elapsed().as_secs_f64(),
                );
                return resp;
            }
        };
        self.metrics.http(
            &method,
            UNMATCHED,
            resp.status().as_u16(),
            start.elapsed().as_secs_f64(),
        );
        resp
    }

    /// Forward one request to the route's service. Dropping this future
    /// (client gone) abandons the NATS wait.
    async fn forward(
        &self,
        route: &HttpRoute,
        index: usize,
        req: Request<Incoming>,
        peer: &PeerIp,
    ) -> Result<Response<Body>, (Failure, Option<HeaderValue>)> {
        let _in_flight = self.metrics.in_flight();
        let (parts, body) = req.into_parts();
        let request_id = request_id(&parts.headers);
        let fail = |f: Failure| (f, Some(request_id.clone()));

        if self.nats.connection_state() != async_nats::connection::State::Connected {
            return Err(fail(Failure::Disconnected));
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.cfg.max_body_bytes) {
            return Err(fail(Failure::BodyTooLarge));
        }
        let limit = usize::try_from(self.cfg.max_body_bytes).unwrap_or(usize::MAX);
        let read = crate::consumer::body_bytes(Limited::new(body, limit));
        let body = match tokio::time::timeout(self.cfg.body_read_timeout, read).await {
            Err(_) => return Err(fail(Failure::BodyTimeout)),
            Ok(Ok(b)) => b,
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(fail(Failure::BodyTooLarge))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "client body read failed");
                return Err(fail(Failure::Unencodable));
            }
        };

        let decorations = Decorations::new(&parts.headers, peer);
        let authority = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut timeout_ms = itoa::Buffer::new();
        let [id, trace, forwarded_for, proto] = decorations.fields(&request_id);
        let set = [
            id,
            trace,
            forwarded_for,
            proto,
            (
                wire::TIMEOUT_FIELD,
                timeout_ms
                    .format(wire::timeout_ms(route.timeout))
                    .as_bytes(),
            ),
        ];
        let payload =
            wire::encode_request_with(&parts.method, authority, path, &parts.headers, &set, &body)
                .map_err(|e| {
                    tracing::debug!(error = %e, "cannot encode request");
                    fail(Failure::Unencodable)
                })?;
        if payload.len() > self.nats.max_payload() {
            return Err(fail(Failure::PayloadTooLarge));
        }

        // The NATS leg, and only it, holds an in-flight permit: a client
        // that sends its body slowly holds none.
        let Ok(_permit) = self.permits.try_acquire() else {
            return Err(fail(Failure::Overloaded));
        };

        // Lost while the body was read, or while waiting for the reply
        // (which then never comes): 503 now, not 504 at the timeout.
        let seen = self.disconnects.seen();
        if self.nats.connection_state() != async_nats::connection::State::Connected {
            return Err(fail(Failure::Disconnected));
        }
        let outcome = tokio::select! {
            biased;
            outcome = self.nats.send_request(
                self.subjects[index].clone(),
                // No NATS headers: the deadline travels in the BHTTP
                // field lines (`wire::TIMEOUT_FIELD`).
                async_nats::Request::new()
                    .payload(payload.into())
                    .timeout(Some(route.timeout)),
            ) => outcome,
            () = self.disconnects.since(seen) => {
                self.metrics.nats(&route.service, "error");
                return Err(fail(Failure::Disconnected));
            }
        };
        let reply = match outcome {
            Ok(msg) => msg,
            Err(e) => {
                let failure = Failure::of_request(e.kind());
                if failure == Failure::Nats {
                    tracing::warn!(subject = %route.service, error = %e, "NATS request failed");
                }
                self.metrics
                    .nats(&route.service, rescue(&failure).nats_outcome);
                return Err(fail(failure));
            }
        };
        self.metrics.nats_routed_success(index, &route.service);
        if let Some(err) = wire::service_error(reply.headers.as_ref()) {
            return Err(fail(Failure::Consumer(err)));
        }
        let decoded = wire::decode_response_shared(reply.payload).map_err(|e| {
            tracing::warn!(subject = %route.service, error = %e, "undecodable reply");
            fail(Failure::BadReply)
        })?;
        let (mut rparts, rbody) = decoded.into_parts();
        // hyper frames the body itself.
        rparts.headers.remove(header::CONTENT_LENGTH);
        rparts.headers.remove(header::TRANSFER_ENCODING);
        rparts.headers.remove(header::CONNECTION);
        if parts.method == Method::HEAD {
            return Ok(Response::from_parts(rparts, Body::empty()));
        }
        rparts.headers.insert(request_id_header(), request_id);
        Ok(Response::from_parts(rparts, Body::full(rbody)))
    }
}

/// The plain-text answer to an HTTP request that failed.
fn failure_response(
    failure: &Failure,
    request_id: Option<HeaderValue>,
    version: http::Version,
) -> Response<Body> {
    let rescue = rescue(failure);
    let mut r = text(rescue.http, &rescue.message);
    match failure {
        Failure::Overloaded => {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // The rest of the body may still come: the connection cannot be
        // reused (HTTP/2 resets just the stream).
        Failure::BodyTimeout if version < http::Version::HTTP_2 => {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    if let Some(id) = request_id {
        r.headers_mut().insert(request_id_header(), id);
    }
    r
}

async fn serve_metrics(listener: TcpListener, metrics: Metrics) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        let mut r = Response::new(Body::full(metrics.encode()));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        r
                    } else {
                        text(StatusCode::NOT_FOUND, "404 page not found")
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_is_the_h2_preface_and_first_frame_or_any_http1_byte() {
        let feed_bytewise = |bytes: &[u8]| {
            let mut o = Opening::new();
            bytes.iter().position(|b| o.feed(std::slice::from_ref(b)))
        };
        // HTTP/1: complete at the first byte that is not the preface's.
        assert_eq!(feed_bytewise(b"GET / HTTP/1.1\r\n"), Some(0));
        assert_eq!(feed_bytewise(b"PRI * HTTP/1.1\r\n"), Some(11));
        // HTTP/2: the preface, the 9-byte frame header, the frame's payload.
        let settings = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        let opening = [H2_PREFACE.as_slice(), &settings].concat();
        assert_eq!(feed_bytewise(&opening), Some(opening.len() - 1));
        assert_eq!(feed_bytewise(H2_PREFACE), None);
        let mut o = Opening::new();
        assert!(!o.feed(&opening[..20]));
        assert!(!o.feed(&opening[20..30]));
        assert!(!o.feed(&[]));
        assert!(o.feed(&opening[30..]));
        // An empty first frame.
        let mut o = Opening::new();
        assert!(o.feed(&[H2_PREFACE.as_slice(), &[0, 0, 0, 4, 0, 0, 0, 0, 0]].concat()));
    }
}
