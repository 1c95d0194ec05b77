//! Serve any `tower::Service` over narun: an axum `Router` works unchanged.
//!
//! ```no_run
//! # async fn run() -> Result<(), narun::consumer::Error> {
//! use axum::{routing::get, Router};
//! let app = Router::new().route("/hello/", get(|| async { "hi" }));
//! narun::consumer::serve(narun::consumer::Options::new("hello"), app).await
//! # }
//! ```
//!
//! The service registers as a NATS Micro v1 service (name = subject = the
//! service name, endpoint `handler`, queue group `q`), so `$SRV.PING`,
//! `$SRV.INFO` and `$SRV.STATS` answer and `nats micro info hello` works.
//! Requests are handled concurrently up to [`Options::concurrency`], as
//! futures of the serving task (no task per request: CPU-heavy handlers
//! should use `tokio::task::spawn_blocking`; a service scales across cores
//! with replicas, which share the queue group); a handler panic becomes a
//! 500 and the consumer keeps serving. A request whose header fields exceed
//! the wire limits ([`crate::wire::MAX_FIELD_LINES`],
//! [`crate::wire::MAX_FIELD_SECTION_LEN`]) gets the Micro error 431 without
//! reaching the handler. A request
//! carrying the gateway's deadline ([`crate::wire::TIMEOUT_FIELD`], taken out
//! before the handler sees the request, or [`crate::wire::TIMEOUT_HEADER`]) is
//! abandoned once it has passed.
//!
//! gRPC services (tonic-generated servers, or any `tower::Service` speaking
//! gRPC over HTTP/2 requests) are served the same way with [`serve_grpc`]:
//! endpoint `grpc_handler`, the wire format of [`crate::wire::grpc`], unary
//! and server-streaming methods, errors as gRPC code numbers, a panicking
//! handler answered with INTERNAL. Both share one serving loop
//! (concurrency limit, graceful drain).
//!
//! The library logs with `tracing`; [`crate::logging::init`] is the default
//! setup (plain text off a terminal, journald's fields under systemd).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_nats::service;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower::Service;

use crate::nats::{self as nats_conn, NatsOptions};
use crate::wire;

mod grpc;
mod micro;
mod ready;

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// NATS URL(s), comma-separated. Default: `$NATS_URL`, else `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// nkey seed file for NATS auth. Default: `$NARUN_NKEY_FILE`.
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS creds file. Default: `$NATS_CREDS`.
    pub creds_file: Option<PathBuf>,
    /// PEM CA bundle of a TLS NATS server. Default: `$NATS_CA` (the node
    /// agent sets it for its apps when it uses one).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate and its key, for a server that verifies
    /// clients. Default: `$NATS_CERT` and `$NATS_KEY`.
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's key.
    pub tls_key_file: Option<PathBuf>,
    /// Prefix of the client's reply inboxes. Default: `$NATS_INBOX_PREFIX`
    /// (set by a node agent that gives the app its own NATS identity),
    /// else `_INBOX`.
    pub inbox_prefix: Option<String>,
    /// Micro service name, also the NATS subject the gateway routes to.
    pub service_name: String,
    /// Micro service version (SemVer).
    pub version: String,
    /// Micro service description.
    pub description: String,
    /// Requests handled at once. Default: 4 × available cores.
    pub concurrency: usize,
    /// How long a graceful stop waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Options {
    /// Defaults for service `service_name`.
    pub fn new(service_name: impl Into<String>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Options {
            nats_url: std::env::var("NATS_URL").unwrap_or_else(|_| nats_conn::DEFAULT_URL.into()),
            nkey_seed_file: env_path("NARUN_NKEY_FILE"),
            creds_file: env_path("NATS_CREDS"),
            tls_ca_file: env_path("NATS_CA"),
            tls_cert_file: env_path("NATS_CERT"),
            tls_key_file: env_path("NATS_KEY"),
            inbox_prefix: std::env::var("NATS_INBOX_PREFIX")
                .ok()
                .filter(|p| !p.is_empty()),
            service_name: service_name.into(),
            version: "0.1.0".into(),
            description: String::new(),
            concurrency: cores * 4,
            drain_timeout: Duration::from_secs(15),
        }
    }
}

/// A path from environment variable `name` (unset or empty: none): the
/// same variables as the narun CLI's and agent's options.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Why the consumer could not serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid service name {0:?}: NATS Micro allows only A-Z, a-z, 0-9, '-' and '_'")]
    ServiceName(String),
    #[error("invalid version {0:?}: NATS Micro requires SemVer (e.g. 1.2.3)")]
    Version(String),
    #[error("concurrency must be at least 1")]
    Concurrency,
    #[error(transparent)]
    Nats(#[from] nats_conn::NatsConfigError),
    #[error("cannot register the Micro service: {0}")]
    Service(String),
    /// The request stream ended while no stop was asked for (the NATS
    /// client closed): a supervisor should restart the process.
    #[error("the NATS subscription ended without a stop being asked for")]
    SubscriptionEnded,
}

/// Check a Micro service name (`[A-Za-z0-9_-]+`).
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<_> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl Options {
    fn validate(&self) -> Result<(), Error> {
        if !valid_service_name(&self.service_name) {
            return Err(Error::ServiceName(self.service_name.clone()));
        }
        if !valid_semver(&self.version) {
            return Err(Error::Version(self.version.clone()));
        }
        if self.concurrency == 0 {
            return Err(Error::Concurrency);
        }
        Ok(())
    }
}

/// Serve `svc` until SIGINT or SIGTERM, then drain in-flight requests.
pub async fn serve<S, B>(opts: Options, svc: S) -> Result<(), Error>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with_shutdown(opts, svc, shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Serve `svc` until `shutdown` resolves, then stop taking requests and drain
/// the in-flight ones (up to [`Options::drain_timeout`]).
pub async fn serve_with_shutdown<S, B, F>(opts: Options, svc: S, shutdown: F) -> Result<(), Error>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Future<Output = ()>,
{
    let client = connect(&opts, "NATS Micro Service").await?;
    serve_on(client, opts, svc, shutdown).await
}

/// Validate the options and build the NATS client named `<kind> - <service>`.
async fn connect(opts: &Options, kind: &str) -> Result<async_nats::Client, Error> {
    opts.validate()?;
    let mut nopts = NatsOptions::new(&opts.nats_url, format!("{kind} - {}", opts.service_name));
    nopts.nkey_seed_file = opts.nkey_seed_file.clone();
    nopts.creds_file = opts.creds_file.clone();
    nopts.tls_ca_file = opts.tls_ca_file.clone();
    nopts.tls_cert_file = opts.tls_cert_file.clone();
    nopts.tls_key_file = opts.tls_key_file.clone();
    nopts.inbox_prefix = opts.inbox_prefix.clone();
    Ok(nats_conn::connect(&nopts).await?)
}

/// Serve on an existing client (shares its connection).
pub async fn serve_on<S, B, F>(
    client: async_nats::Client,
    opts: Options,
    svc: S,
    shutdown: F,
) -> Result<(), Error>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Future<Output = ()>,
{
    serve_endpoint(
        client,
        opts,
        wire::HTTP_ENDPOINT,
        shutdown,
        move |request, ctx| handle(request, svc.clone(), ctx),
    )
    .await
}

/// Serve a gRPC service (a tonic-generated server such as
/// `GreeterServer::new(impl)`, or tonic `Routes` for several) until SIGINT
/// or SIGTERM, then drain in-flight calls.
///
/// The service registers as NATS Micro v1 with endpoint `grpc_handler` in
/// queue group `q`; the wire format is described in [`crate::wire::grpc`].
/// Unary and server-streaming methods work; errors travel as gRPC code
/// numbers.
pub async fn serve_grpc<S, B>(opts: Options, svc: S) -> Result<(), Error>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_grpc_with_shutdown(opts, svc, shutdown_signal()).await
}

/// [`serve_grpc`] until `shutdown` resolves, then drain in-flight calls
/// (up to [`Options::drain_timeout`]).
pub async fn serve_grpc_with_shutdown<S, B, F>(
    opts: Options,
    svc: S,
    shutdown: F,
) -> Result<(), Error>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Future<Output = ()>,
{
    let client = connect(&opts, "NATS gRPC Consumer").await?;
    serve_grpc_on(client, opts, svc, shutdown).await
}

/// [`serve_grpc_with_shutdown`] on an existing client (shares its connection).
pub async fn serve_grpc_on<S, B, F>(
    client: async_nats::Client,
    opts: Options,
    svc: S,
    shutdown: F,
) -> Result<(), Error>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Future<Output = ()>,
{
    serve_endpoint(
        client,
        opts,
        wire::GRPC_ENDPOINT,
        shutdown,
        move |request, ctx| grpc::handle(request, svc.clone(), ctx),
    )
    .await
}

/// What every request handler gets besides the request (whose
/// [`micro::Request::client`] answers it).
#[derive(Clone, Copy)]
struct Ctx {
    /// The NATS server's max payload.
    max_payload: usize,
}

/// The serving loop shared by HTTP and gRPC: registers the Micro service
/// with one endpoint, runs `handler` for each request concurrently (up to
/// [`Options::concurrency`] futures on this task, taking a request from
/// NATS only when a slot is free), and on `shutdown` unsubscribes then
/// drains.
async fn serve_endpoint<H, Fut, F>(
    client: async_nats::Client,
    opts: Options,
    endpoint_name: &str,
    shutdown: F,
    handler: H,
) -> Result<(), Error>
where
    H: Fn(micro::Request, Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
    F: Future<Output = ()>,
{
    opts.validate()?;
    let mut endpoint = micro::MicroService::start(
        &client,
        micro::Config {
            name: opts.service_name.clone(),
            version: opts.version.clone(),
            description: opts.description.clone(),
            endpoint: endpoint_name.to_owned(),
            queue_group: wire::QUEUE_GROUP.to_owned(),
        },
    )
    .await
    .map_err(Error::Service)?;
    // The endpoint is subscribed at the server: tell systemd (a narun
    // unit with `Type=notify` stays "activating", and a rollout keeps the
    // previous version, until this).
    ready::notify_ready();
    tracing::info!(
        service = %opts.service_name,
        endpoint = endpoint_name,
        concurrency = opts.concurrency,
        "serving over NATS"
    );

    // The requests in flight are futures polled by this task: no task spawn,
    // no semaphore and no cross-thread wake-up per request (half the CPU of
    // a task per request in bench/run.sh). Handlers are async: CPU-heavy
    // work belongs in `spawn_blocking`, and a service scales across cores
    // and machines with replicas (one queue group).
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    // Polled when it wakes, not on every turn of the loop (a turn per
    // request; a signal future is not free to poll).
    let mut shutdown = WokenOnly::new(shutdown);
    // The request stream ended without a stop being asked for (the client
    // closed): the process must fail, so its supervisor restarts it.
    let mut lost = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(done) = in_flight.next(), if !in_flight.is_empty() => finished(done),
            // Back-pressure: take a request from NATS only when a slot is free.
            r = endpoint.next(), if in_flight.len() < opts.concurrency => {
                let Some(request) = r else {
                    lost = true;
                    break;
                };
                start(&mut in_flight, &handler, ctx(&client), request);
            }
        }
    }

    tracing::info!(service = %opts.service_name, in_flight = in_flight.len(), "stopping: draining in-flight requests");
    // Drain the endpoint (UNSUB, then every request the server routed here
    // before it is still delivered) and stop the $SRV verbs, so NATS routes
    // new requests to other replicas and none is lost; then finish what
    // came in. NATS may be gone: none of this may hang the exit.
    let quick = std::time::Duration::from_secs(2);
    let _ = tokio::time::timeout(quick, endpoint.drain()).await;
    let drained = tokio::time::timeout(opts.drain_timeout, async {
        let mut open = true;
        while open || !in_flight.is_empty() {
            tokio::select! {
                Some(done) = in_flight.next(), if !in_flight.is_empty() => finished(done),
                r = endpoint.next(), if open && in_flight.len() < opts.concurrency => match r {
                    Some(request) => start(&mut in_flight, &handler, ctx(&client), request),
                    None => open = false,
                },
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(service = %opts.service_name, "drain timeout: abandoning in-flight requests");
    }
    let _ = tokio::time::timeout(quick, client.flush()).await;
    if lost {
        tracing::error!(service = %opts.service_name, "the NATS subscription ended: exiting so the service is restarted");
        return Err(Error::SubscriptionEnded);
    }
    Ok(())
}

/// A future polled only after its own wake-up (and once at first), however
/// often the task that awaits it is polled for other reasons.
struct WokenOnly<F> {
    fut: Pin<Box<F>>,
    flag: Arc<WakeFlag>,
    done: bool,
}

/// Set by the inner future's waker, which then wakes the outer task.
struct WakeFlag {
    woken: AtomicBool,
    outer: futures_util::task::AtomicWaker,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.outer.wake();
    }
}

impl<F: Future> WokenOnly<F> {
    fn new(fut: F) -> Self {
        WokenOnly {
            fut: Box::pin(fut),
            flag: Arc::new(WakeFlag {
                woken: AtomicBool::new(true),
                outer: futures_util::task::AtomicWaker::new(),
            }),
            done: false,
        }
    }
}

impl<F: Future> Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.done {
            return Poll::Pending; // like a fused future
        }
        self.flag.outer.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.flag.clone());
        let out = self.fut.as_mut().poll(&mut Context::from_waker(&waker));
        if out.is_ready() {
            self.done = true;
        }
        out
    }
}

/// The handler's context for the next request (the max payload can change
/// on reconnect).
fn ctx(client: &async_nats::Client) -> Ctx {
    Ctx {
        max_payload: client.max_payload(),
    }
}

/// A request that had to wait: a future of the serving task, its panic
/// caught at each poll (the box holds the handler's future, moved there
/// once; what the set moves is the pointer).
type InFlight =
    futures_util::future::CatchUnwind<AssertUnwindSafe<Pin<Box<dyn Future<Output = ()> + Send>>>>;

/// Start one request. It is polled here once, and joins `in_flight` only
/// if it has to wait: a handler that answers at once (most do) costs no
/// slot in the set and no second turn of the serving loop. (That first
/// poll has a no-op waker; the set polls a future again as soon as it is
/// pushed, with its own.)
fn start<R, H, Fut>(
    in_flight: &mut futures_util::stream::FuturesUnordered<InFlight>,
    handler: &H,
    ctx: Ctx,
    request: R,
) where
    H: Fn(R, Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(handler(request, ctx));
    // Handlers answer their own panics; this is the last resort.
    let mut fut = AssertUnwindSafe(fut).catch_unwind();
    match (&mut fut).now_or_never() {
        Some(done) => finished(done),
        None => in_flight.push(fut),
    }
}

/// A request's future has completed (or panicked past its own handler).
fn finished(done: std::thread::Result<()>) {
    if done.is_err() {
        tracing::error!("request handler panicked");
    }
}

/// What one request produced.
enum Outcome {
    Reply(Vec<u8>),
    Fail(u16, String),
}

/// Answer one request. Its futures are built in place and awaited
/// through pinned references, not passed on by value, and the work's and
/// the reply's storage do not overlap in time: the whole request is one
/// future moved once, into its box (1.8 KB for bench/'s `service_fn`,
/// 3.1 KB when the layers took the futures by value).
async fn handle<S, B>(request: micro::Request, svc: S, ctx: Ctx)
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A panic while decoding or in the handler unwinds to here: answer 500
    // and keep serving. (The block ends the work's storage before the
    // reply's begins.)
    let outcome = {
        let work = std::pin::pin!(work(&request, svc, ctx.max_payload));
        AssertUnwindSafe(work).catch_unwind().await
    };
    let outcome = match outcome {
        Ok(Some(outcome)) => outcome,
        Err(_) => {
            tracing::error!("request decoding or handler panicked");
            Outcome::Reply(internal_error_response())
        }
        Ok(None) => {
            // The requester stopped waiting at this same deadline and
            // answers its own timeout: a reply now would only race that
            // answer.
            tracing::debug!("deadline passed: request abandoned");
            request.abandon(service::error::Error {
                status: "Deadline exceeded before the response was ready".into(),
                code: 504,
            });
            return;
        }
    };
    let result = match outcome {
        Outcome::Reply(bytes) => request.respond(Ok(bytes.into())).await,
        Outcome::Fail(code, status) => {
            request
                .respond(Err(service::error::Error {
                    status: wire::header_safe(&status),
                    code: code as usize,
                }))
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot send reply");
    }
}

/// Decode `request`, call the service and read its response, all within
/// the gateway's deadline when it sent one (`None`: the deadline passed).
async fn work<S, B>(request: &micro::Request, svc: S, max_payload: usize) -> Option<Outcome>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut req = match wire::decode_request_shared(request.message.payload.clone()) {
        Ok(req) => req,
        Err(e) => return Some(undecodable(&e)),
    };
    // The gateway stops waiting after this: so does the handler.
    let deadline = wire::take_request_timeout(request.message.headers.as_ref(), req.headers_mut())
        .map(|left| request.received() + left);
    let mut svc = svc;
    let Ok(()) = within(
        deadline,
        std::pin::pin!(std::future::poll_fn(|cx| svc.poll_ready(cx))),
    )
    .await?;
    let Ok(resp) = within(deadline, std::pin::pin!(svc.call(req.map(Full::new)))).await?;
    let (parts, body) = resp.into_parts();
    Some(
        match within(deadline, std::pin::pin!(read_body(body, max_payload))).await? {
            Ok(body) => encode(&parts, &body, max_payload),
            Err(e) => {
                tracing::warn!(error = %e, "response body failed or exceeds the NATS max payload");
                Outcome::Fail(500, "Response body too large or unreadable".into())
            }
        },
    )
}

/// `fut`'s output, or `None` once `deadline` (if any) has passed. The
/// timer is set only when `fut` has to wait: a handler that answers at its
/// first poll costs no timer entry. `fut` is pinned where its caller built
/// it, not moved here.
async fn within<F: Future>(
    deadline: Option<tokio::time::Instant>,
    mut fut: Pin<&mut F>,
) -> Option<F::Output> {
    let Some(deadline) = deadline else {
        return Some(fut.await);
    };
    match std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(out) => Some(out),
        Poll::Pending => tokio::time::timeout_at(deadline, fut).await.ok(),
    }
}

/// The Micro error answering a request that does not decode: 431 when its
/// field lines exceed the wire limits, else 400 (as the Go consumer).
fn undecodable(e: &wire::WireError) -> Outcome {
    tracing::debug!(error = %e, "undecodable request");
    if e.is_fields_too_large() {
        Outcome::Fail(431, format!("Request Header Fields Too Large: {e}"))
    } else {
        Outcome::Fail(400, "Failed to decode BHTTP request".into())
    }
}

/// The BHTTP reply to a response, or the error when it does not fit in a
/// NATS message.
fn encode(parts: &http::response::Parts, body: &[u8], max_payload: usize) -> Outcome {
    match wire::encode_response(parts.status, &parts.headers, body) {
        Ok(bytes) if bytes.len() <= max_payload => Outcome::Reply(bytes),
        Ok(bytes) => Outcome::Fail(
            500,
            format!(
                "Response of {} bytes exceeds the NATS max payload of {max_payload}",
                bytes.len()
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode response");
            Outcome::Fail(500, "Failed to encode response".into())
        }
    }
}

/// A response body, at most `limit` bytes. A body of one data frame (what
/// `Full`, `String` and most handlers give) is taken as it is.
async fn read_body<B>(
    body: B,
    limit: usize,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body_bytes(Limited::new(body, limit)).await
}

/// A body's bytes: the chunk it came in, as is, when it came in one (most
/// bodies), else the chunks joined. Trailers are dropped. Shared with the
/// gateway, which reads request bodies with it.
pub(crate) async fn body_bytes<B: Body>(body: B) -> Result<Bytes, B::Error> {
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame?.into_data() else {
            continue;
        };
        let n = bytes::Buf::remaining(&data);
        let data = bytes::Buf::copy_to_bytes(&mut data, n); // no copy for `Bytes`
        if let Some(buf) = &mut joined {
            buf.extend_from_slice(&data);
        } else if let Some(head) = first.take() {
            let mut buf = bytes::BytesMut::with_capacity(head.len() + data.len());
            buf.extend_from_slice(&head);
            buf.extend_from_slice(&data);
            joined = Some(buf);
        } else {
            first = Some(data);
        }
    }
    Ok(joined.map_or_else(|| first.unwrap_or_default(), bytes::BytesMut::freeze))
}

fn internal_error_response() -> Vec<u8> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    wire::encode_response(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        &headers,
        b"Internal Server Error\n",
    )
    .expect("static response encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Mutex;

    /// Counts its polls; ready once `open` is set, and then woken by hand.
    struct Gate {
        polls: Arc<AtomicUsize>,
        open: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, SeqCst);
            if self.open.load(SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Counts the outer task's wake-ups.
    struct Count(Arc<AtomicUsize>);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn a_woken_only_future_is_polled_at_first_and_after_its_wake_ups_only() {
        let polls = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicBool::new(false));
        let inner_waker = Arc::new(Mutex::new(None::<Waker>));
        let mut fut = WokenOnly::new(Gate {
            polls: polls.clone(),
            open: open.clone(),
            waker: inner_waker.clone(),
        });
        let outer_woken = Arc::new(AtomicUsize::new(0));
        let waker = Waker::from(Arc::new(Count(outer_woken.clone())));
        let mut cx = Context::from_waker(&waker);
        let mut poll = || Pin::new(&mut fut).poll(&mut cx);

        // The loop turns 100 times for other reasons: one inner poll.
        for _ in 0..100 {
            assert!(poll().is_pending());
        }
        assert_eq!(polls.load(SeqCst), 1);
        // Its own wake-up wakes the outer task and gets it polled again.
        open.store(true, SeqCst);
        inner_waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(outer_woken.load(SeqCst), 1);
        assert!(poll().is_ready());
        assert_eq!(polls.load(SeqCst), 2);
        // Done: never polled again.
        assert!(poll().is_pending());
        assert_eq!(polls.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn only_requests_that_wait_take_a_slot_and_panics_are_caught() {
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let ctx = Ctx { max_payload: 1 };
        let answered = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Mutex::new(Some(rx));
        let handler = |kind: &'static str, _ctx: Ctx| {
            let answered = answered.clone();
            let rx = (kind == "wait").then(|| rx.lock().unwrap().take().unwrap());
            async move {
                if let Some(rx) = rx {
                    rx.await.unwrap();
                }
                if kind == "panic" {
                    panic!("handler bug");
                }
                answered.fetch_add(1, SeqCst);
            }
        };
        // Answers at its first poll: done, no slot taken.
        start(&mut in_flight, &handler, ctx, "now");
        assert_eq!((answered.load(SeqCst), in_flight.len()), (1, 0));
        // Panics at its first poll: caught, no slot, the loop goes on.
        start(&mut in_flight, &handler, ctx, "panic");
        assert_eq!(in_flight.len(), 0);
        // Has to wait: kept, and finished by the set once woken.
        start(&mut in_flight, &handler, ctx, "wait");
        assert_eq!((answered.load(SeqCst), in_flight.len()), (1, 1));
        tx.send(()).unwrap();
        assert!(in_flight.next().await.unwrap().is_ok());
        assert_eq!((answered.load(SeqCst), in_flight.len()), (2, 0));
    }

    #[tokio::test]
    async fn a_deadline_abandons_only_work_that_has_to_wait() {
        use tokio::time::{Duration, Instant};
        let past = Instant::now() - Duration::from_millis(1);
        let later = Instant::now() + Duration::from_secs(60);
        // Ready at its first poll: answered, whatever the deadline.
        assert_eq!(
            within(Some(past), std::pin::pin!(async { 7 })).await,
            Some(7)
        );
        // Waits past the deadline: abandoned.
        let pending = std::pin::pin!(std::future::pending::<u8>());
        assert_eq!(within(Some(past), pending).await, None);
        // Waits, then answers before the deadline.
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move { tx.send(9).unwrap() });
        let answer = std::pin::pin!(async { rx.await.unwrap() });
        assert_eq!(within(Some(later), answer).await, Some(9));
    }

    #[tokio::test]
    async fn response_bodies_are_read_whole_and_bounded() {
        // One frame: the very bytes, not a copy.
        let data = Bytes::from_static(b"hello world");
        let got = read_body(Full::new(data.clone()), 64).await.unwrap();
        assert_eq!(got, data);
        assert_eq!(got.as_ptr(), data.as_ptr());
        assert!(read_body(Full::new(data.clone()), 10).await.is_err());
        assert!(read_body(Full::new(data.clone()), 11).await.is_ok());
        assert!(read_body(http_body_util::Empty::<Bytes>::new(), 0)
            .await
            .unwrap()
            .is_empty());
        // Several frames: joined, and the limit counts them all.
        let frames = || {
            http_body_util::StreamBody::new(futures_util::stream::iter(
                ["ab", "cd", "e"]
                    .map(|s| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(s)))),
            ))
        };
        assert_eq!(read_body(frames(), 5).await.unwrap(), "abcde");
        assert!(read_body(frames(), 4).await.is_err());
        assert!(read_body(frames(), 1).await.is_err());
    }

    #[tokio::test]
    async fn a_body_in_one_chunk_is_taken_as_is_and_chunks_are_joined() {
        use http_body::Frame;
        let frames = |f: Vec<Frame<Bytes>>| {
            http_body_util::StreamBody::new(futures_util::stream::iter(
                f.into_iter().map(Ok::<_, Infallible>),
            ))
        };
        let chunk = Bytes::from_static(b"one chunk");
        let got = body_bytes(frames(vec![Frame::data(chunk.clone())]))
            .await
            .unwrap();
        assert_eq!(got, chunk);
        assert_eq!(got.as_ptr(), chunk.as_ptr(), "not copied");

        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", "1".parse().unwrap());
        let four = frames(vec![
            Frame::data(Bytes::from_static(b"a")),
            Frame::data(Bytes::new()),
            Frame::data(Bytes::from_static(b"bc")),
            Frame::data(Bytes::from_static(b"d")),
            Frame::trailers(trailers),
        ]);
        assert_eq!(body_bytes(four).await.unwrap(), "abcd");
        assert_eq!(body_bytes(frames(vec![])).await.unwrap(), "");
    }

    #[test]
    fn service_names_follow_micro_rules() {
        for ok in ["hello", "grpc-hello-service", "a_b", "X9"] {
            assert!(valid_service_name(ok), "{ok}");
        }
        for bad in ["", "a.b", "a b", "a*", "a>", "héllo"] {
            assert!(!valid_service_name(bad), "{bad}");
        }
    }

    #[test]
    fn versions_must_be_semver() {
        assert!(valid_semver("0.1.0"));
        assert!(valid_semver("1.2.3-rc.1+build"));
        assert!(!valid_semver("1.2"));
        assert!(!valid_semver("v1.2.3"));
    }

    #[test]
    fn options_validation_names_the_problem() {
        let mut o = Options::new("a.b");
        assert!(matches!(o.validate(), Err(Error::ServiceName(_))));
        o.service_name = "ok".into();
        o.concurrency = 0;
        assert!(matches!(o.validate(), Err(Error::Concurrency)));
    }
}
