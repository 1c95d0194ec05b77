//! Baselines for `bench/run.sh`: what narun's gateway and consumer library
//! are compared with. One binary, one subcommand per role:
//!
//! - `plain`: a hyper HTTP/1 server answering what the `hello` consumer answers;
//! - `hello-http`: a hyper HTTP/1 server doing the `hello` consumer's work
//!   (route, JSON, reply) on 127.0.0.1:$PORT: the app behind `narun bridge`;
//! - `mini-gateway`: hyper + one async-nats client; the raw HTTP body goes
//!   out as a NATS request and the reply payload comes back as the body;
//! - `raw-responder`: a plain NATS subscriber answering `mini-gateway`;
//! - `raw-service`: the `hello` consumer's work (BHTTP decode, JSON, BHTTP
//!   encode) on a bare NATS Micro endpoint, without `narun::consumer`;
//! - `library-service`: the same work as `raw-service` (the same
//!   function), served by `narun::consumer` as a `tower::service_fn`: what
//!   the library itself costs, without axum;
//! - `nats-load`: a closed-loop NATS request generator sending the BHTTP
//!   request curl would produce as the narun gateway sends it (deadline
//!   field line, no NATS headers), printing req/s and p50/p99.
//!
//! ```text
//! cargo run --release --example bench-baselines -- plain --addr 127.0.0.1:8080
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::service::ServiceExt;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(about = "Baselines for bench/run.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Plain hyper server answering the hello consumer's response.
    Plain {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Hyper server doing the hello consumer's work per request (path and
    /// method check, JSON parse, reply built from them): the proxy-mode app
    /// run by `narun bridge`.
    HelloHttp {
        /// Default: 127.0.0.1:$PORT (what `narun bridge` sets).
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// Minimal HTTP → NATS gateway: body out as a NATS request, reply back as the body.
    MiniGateway {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        nats_url: String,
        #[arg(long)]
        subject: String,
    },
    /// Raw NATS subscriber replying the hello response body (for
    /// mini-gateway), or with `--bhttp` the whole hello response as fixed
    /// BHTTP bytes, decoding nothing (for narun gateway: the fair pair).
    RawResponder {
        #[arg(long)]
        nats_url: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        bhttp: bool,
    },
    /// The hello consumer's work on a bare NATS Micro endpoint (no narun::consumer).
    RawService {
        #[arg(long)]
        nats_url: String,
        /// Micro service name, also the subject.
        #[arg(long)]
        service: String,
    },
    /// `raw-service`'s work (the same function) as a `tower::service_fn`
    /// served by `narun::consumer`.
    LibraryService {
        #[arg(long)]
        nats_url: String,
        /// Micro service name, also the subject.
        #[arg(long)]
        service: String,
    },
    /// Closed-loop NATS request load with BHTTP-encoded requests.
    NatsLoad {
        #[arg(long)]
        nats_url: String,
        #[arg(long)]
        subject: String,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Measured time, e.g. 10s, 500ms, 1m.
        #[arg(long, default_value = "10s", value_parser = narun::duration::parse)]
        duration: Duration,
        /// Unmeasured time before it.
        #[arg(long, default_value = "2s", value_parser = narun::duration::parse)]
        warmup: Duration,
        /// The HTTP request body (JSON) to encode as BHTTP.
        #[arg(long)]
        payload_file: PathBuf,
        /// The `Host` the request carries (as curl would send it).
        #[arg(long, default_value = "localhost:8080")]
        authority: String,
        /// The request path.
        #[arg(long, default_value = "/hello/")]
        path: String,
    },
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[derive(Deserialize)]
struct HelloRequest {
    name: Option<String>,
}

#[derive(Serialize)]
struct HelloResponse<'a> {
    consumer_host: &'a str,
    message: String,
    received_path: &'a str,
}

/// The hello consumer's 200 body for `name`, `method` and `path`.
fn hello_json(host: &str, name: &str, method: &Method, path: &str) -> String {
    let reply = HelloResponse {
        consumer_host: host,
        message: format!("Hello, {name}! (processed by {method})"),
        received_path: path,
    };
    serde_json::to_string(&reply).expect("serializable") + "\n"
}

/// The fixed body every baseline answers: the hello consumer's reply to
/// `POST /hello/ {"name":"NATS User"}`.
fn fixed_body(host: &str) -> Bytes {
    hello_json(host, "NATS User", &Method::POST, "/hello/").into()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    match Cli::parse().command {
        Command::Plain { addr } => plain(addr).await,
        Command::HelloHttp { addr } => {
            let addr = match addr {
                Some(a) => a,
                None => {
                    let port: u16 = std::env::var("PORT")
                        .map_err(|_| "hello-http: --addr or PORT is required")?
                        .parse()
                        .map_err(|e| format!("hello-http: PORT: {e}"))?;
                    SocketAddr::from(([127, 0, 0, 1], port))
                }
            };
            hello_http(addr).await
        }
        Command::MiniGateway {
            addr,
            nats_url,
            subject,
        } => mini_gateway(addr, &nats_url, subject).await,
        Command::RawResponder {
            nats_url,
            subject,
            bhttp,
        } => raw_responder(&nats_url, subject, bhttp).await,
        Command::RawService { nats_url, service } => raw_service(&nats_url, &service).await,
        Command::LibraryService { nats_url, service } => library_service(nats_url, &service).await,
        Command::NatsLoad {
            nats_url,
            subject,
            concurrency,
            duration,
            warmup,
            payload_file,
            authority,
            path,
        } => {
            let body = std::fs::read(&payload_file)?;
            let load = Load {
                subject,
                concurrency: concurrency.max(1),
                duration,
                warmup,
                authority,
                path,
            };
            nats_load(&nats_url, load, body).await
        }
    }
}

// ---------------------------------------------------------------- (a) plain

async fn plain(addr: SocketAddr) -> Result<(), BoxError> {
    let host = hostname();
    let body = fixed_body(&host);
    let host = HeaderValue::from_str(&host)?;
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (body, host) = (body.clone(), host.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (body, host) = (body.clone(), host.clone());
                async move {
                    // Read the request as the consumer would.
                    let _ = req.into_body().collect().await;
                    let mut resp = Response::new(Full::new(body));
                    let h = resp.headers_mut();
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    h.insert("x-narun-processed-by", host);
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

// ------------------------------------------------ (f) hello-http (bridged)

async fn hello_http(addr: SocketAddr) -> Result<(), BoxError> {
    let host: &'static str = Box::leak(hostname().into_boxed_str());
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await?.to_bytes();
                let (status, headers, body) =
                    hello_answer(host, &parts.method, parts.uri.path(), &body);
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                Ok::<_, hyper::Error>(resp)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

// --------------------------------------------------------- (c) mini gateway

async fn mini_gateway(addr: SocketAddr, nats_url: &str, subject: String) -> Result<(), BoxError> {
    let client = async_nats::connect(nats_url).await?;
    let subject = async_nats::Subject::from(subject);
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, subject) = (client.clone(), subject.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (client, subject) = (client.clone(), subject.clone());
                async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let resp = match client.request(subject, body).await {
                        Ok(reply) => {
                            let mut r = Response::new(Full::new(reply.payload));
                            r.headers_mut().insert(
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("application/json"),
                            );
                            r
                        }
                        Err(e) => {
                            let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
                            *r.status_mut() = StatusCode::BAD_GATEWAY;
                            r
                        }
                    };
                    Ok::<_, hyper::Error>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

// -------------------------------------------------------- (c') raw responder

async fn raw_responder(nats_url: &str, subject: String, bhttp: bool) -> Result<(), BoxError> {
    let client = async_nats::connect(nats_url).await?;
    let body = fixed_body(&hostname());
    let body: Bytes = if bhttp {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        narun::wire::encode_response(StatusCode::OK, &headers, &body)?.into()
    } else {
        body
    };
    let mut sub = client.queue_subscribe(subject, "q".into()).await?;
    client.flush().await?;
    while let Some(msg) = sub.next().await {
        if let Some(reply) = msg.reply {
            client.publish(reply, body.clone()).await?;
        }
    }
    Ok(())
}

// ------------------------------------------------------ (e3) library service

/// [`hello_answer`] as a tower service, served by `narun::consumer` with
/// its defaults (concurrency 4 × cores, deadline, drain, panics caught).
async fn library_service(nats_url: String, name: &str) -> Result<(), BoxError> {
    let host: &'static str = Box::leak(hostname().into_boxed_str());
    let svc = tower::service_fn(move |req: Request<Full<Bytes>>| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let (status, headers, body) = hello_answer(host, &parts.method, parts.uri.path(), &body);
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        Ok::<_, Infallible>(resp)
    });
    let mut opts = narun::consumer::Options::new(name);
    opts.nats_url = nats_url;
    narun::consumer::serve(opts, svc).await?;
    Ok(())
}

// ---------------------------------------------------------- (e2) raw service

/// What `examples/hello` answers to `method path` with `body`: status,
/// headers, body.
fn hello_answer(
    host: &str,
    method: &Method,
    path: &str,
    body: &[u8],
) -> (StatusCode, HeaderMap, String) {
    let mut headers = HeaderMap::new();
    let (status, body) =
        if !path.starts_with("/hello/") || !(method == Method::POST || method == Method::PUT) {
            (StatusCode::NOT_FOUND, "404 page not found\n".to_owned())
        } else {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let name = serde_json::from_slice::<HelloRequest>(body)
                .ok()
                .and_then(|r| r.name)
                .filter(|n| !n.is_empty());
            match name {
                Some(name) => {
                    if let Ok(v) = HeaderValue::from_str(host) {
                        headers.insert("x-narun-processed-by", v);
                    }
                    (StatusCode::OK, hello_json(host, &name, method, path))
                }
                None => (
                    StatusCode::BAD_REQUEST,
                    "{\"error\":\"Invalid JSON payload: 'name' field is required.\"}\n".to_owned(),
                ),
            }
        };
    (status, headers, body)
}

/// The hello consumer's answer, without tower/axum/narun::consumer:
/// Ok(BHTTP response) or Err((code, description)) for a Micro error.
fn raw_hello(host: &str, payload: Bytes) -> Result<Vec<u8>, (usize, String)> {
    let req = narun::wire::decode_request_shared(payload)
        .map_err(|_| (400, "Failed to decode BHTTP request".to_owned()))?;
    let (status, headers, body) = hello_answer(host, req.method(), req.uri().path(), req.body());
    narun::wire::encode_response(status, &headers, body.as_bytes())
        .map_err(|_| (500, "Failed to encode response".to_owned()))
}

async fn raw_service(nats_url: &str, name: &str) -> Result<(), BoxError> {
    let client = async_nats::connect(nats_url).await?;
    let host = hostname();
    let service = client
        .service_builder()
        .description("raw hello baseline")
        .queue_group(narun::wire::QUEUE_GROUP)
        .start(name, "0.1.0")
        .await?;
    let mut endpoint = service
        .endpoint_builder()
        .name(narun::wire::HTTP_ENDPOINT)
        .queue_group(narun::wire::QUEUE_GROUP)
        .add(name)
        .await?;
    client.flush().await?;
    while let Some(request) = endpoint.next().await {
        let response = raw_hello(&host, request.message.payload.clone())
            .map(Bytes::from)
            .map_err(|(code, status)| async_nats::service::error::Error { status, code });
        if let Err(e) = request.respond(response).await {
            eprintln!("raw-service: cannot reply: {e}");
        }
    }
    Ok(())
}

// ------------------------------------------------------------ (e) nats-load

struct Load {
    subject: String,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    authority: String,
    path: String,
}

/// What one load task saw while measuring.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
}

/// A known-length BHTTP response with status 200 starts with these bytes
/// (framing indicator 1, then 200 as a 2-byte varint).
const BHTTP_200: [u8; 3] = [0x01, 0x40, 0xc8];

fn is_ok_reply(reply: &async_nats::Message) -> bool {
    narun::wire::service_error(reply.headers.as_ref()).is_none()
        && reply.payload.starts_with(&BHTTP_200)
}

async fn nats_load(nats_url: &str, load: Load, body: Vec<u8>) -> Result<(), BoxError> {
    let client = async_nats::connect(nats_url).await?;
    // What curl sends for `curl -H 'Content-Type: application/json' -d @file URL`.
    let mut http_headers = HeaderMap::new();
    http_headers.insert(header::HOST, HeaderValue::from_str(&load.authority)?);
    http_headers.insert(header::USER_AGENT, HeaderValue::from_static("curl/8.5.0"));
    http_headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    http_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    http_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    // As the narun gateway sends it: the deadline as a field line, no NATS
    // headers.
    http_headers.insert(
        narun::wire::TIMEOUT_FIELD,
        HeaderValue::from(narun::wire::timeout_ms(Duration::from_secs(15))),
    );
    let payload = Bytes::from(narun::wire::encode_request(
        &Method::POST,
        &load.authority,
        &load.path,
        &http_headers,
        &body,
    )?);
    let subject = async_nats::Subject::from(load.subject.clone());
    let request = move || {
        async_nats::Request::new()
            .payload(payload.clone())
            .timeout(Some(Duration::from_secs(15)))
    };

    // Readiness: retry until the service answers (no responders at first),
    // then check the answer once in full.
    let ready_by = Instant::now() + Duration::from_secs(15);
    let first = loop {
        match client.send_request(subject.clone(), request()).await {
            Ok(reply) => break reply,
            Err(_) if Instant::now() < ready_by => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("{}: no answer within 15 s: {e}", load.subject).into()),
        }
    };
    if let Some(err) = narun::wire::service_error(first.headers.as_ref()) {
        return Err(format!("{}: service error {err:?}", load.subject).into());
    }
    let decoded = narun::wire::decode_response(&first.payload)?;
    if decoded.status() != StatusCode::OK || !is_ok_reply(&first) {
        return Err(format!("{}: status {}", load.subject, decoded.status()).into());
    }
    eprintln!(
        "nats-load: {} answers {} {:?}",
        load.subject,
        decoded.status(),
        String::from_utf8_lossy(decoded.body()).trim_end()
    );

    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut tasks = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        let (client, subject, request) = (client.clone(), subject.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    return tally;
                }
                let outcome = client.send_request(subject.clone(), request()).await;
                let t1 = Instant::now();
                if t0 < measure_from || t1 > end {
                    continue;
                }
                match outcome {
                    Ok(reply) if is_ok_reply(&reply) => {
                        let us = (t1 - t0).as_micros();
                        tally
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    _ => tally.errors += 1,
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let tally = t.await?;
        latencies.extend(tally.latencies_us);
        errors += tally.errors;
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
        latencies[i - 1]
    };
    let ok = latencies.len() as u64;
    let rps = ok as f64 / load.duration.as_secs_f64();
    println!(
        "RESULT requests={ok} errors={errors} rps={rps:.1} p50_us={} p99_us={}",
        pct(0.50),
        pct(0.99)
    );
    if errors > 0 || ok == 0 {
        return Err(format!("{}: {errors} failed requests, {ok} ok", load.subject).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_hello_matches_the_consumer() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let req =
            narun::wire::encode_request(&Method::POST, "h", "/hello/", &h, br#"{"name":"X"}"#)
                .unwrap();
        let resp = narun::wire::decode_response(&raw_hello("host", req.into()).unwrap()).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-narun-processed-by"], "host");
        assert_eq!(
            resp.body().as_ref(),
            b"{\"consumer_host\":\"host\",\"message\":\"Hello, X! (processed by POST)\",\"received_path\":\"/hello/\"}\n"
        );
        assert!(resp.body().starts_with(b"{"));
    }
}
