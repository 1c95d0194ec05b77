//! The `hello` consumer of the Go narun, written with axum and served over
//! NATS by `narun::consumer`.
//!
//! POST or PUT `/hello/...` with `{"name": "..."}` answers
//! `{"consumer_host","message","received_path"}` and the header
//! `X-Narun-Processed-By`; a missing name gives 400; anything else 404.
//!
//! ```text
//! cargo run --example hello -- --nats-url nats://127.0.0.1:4222 --service hello
//! ```

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
struct Args {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// NATS Micro service name (and subject).
    #[arg(long, default_value = "hello")]
    service: String,
    /// Requests handled at once.
    #[arg(long)]
    concurrency: Option<usize>,
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

async fn hello(host: &str, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if !path.starts_with("/hello/") || !(method == Method::POST || method == Method::PUT) {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::BAD_REQUEST, "cannot read body\n").into_response(),
    };
    let name = serde_json::from_slice::<HelloRequest>(&body)
        .ok()
        .and_then(|r| r.name)
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"error":"Invalid JSON payload: 'name' field is required."}"#.to_owned() + "\n",
        );
    };
    let reply = HelloResponse {
        consumer_host: host,
        message: format!("Hello, {name}! (processed by {method})"),
        received_path: &path,
    };
    let mut resp = json(
        StatusCode::OK,
        serde_json::to_string(&reply).expect("serializable") + "\n",
    );
    if let Ok(v) = HeaderValue::from_str(host) {
        resp.headers_mut().insert("x-narun-processed-by", v);
    }
    // Under `narun node`, which node served it (a narun extension).
    if let Some(v) = std::env::var("NARUN_NODE_ID")
        .ok()
        .and_then(|n| HeaderValue::from_str(&n).ok())
    {
        resp.headers_mut().insert("x-narun-node-id", v);
    }
    resp
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Plain text off a terminal, journald under systemd (narun node).
    narun::logging::init("info");
    let args = Args::parse();
    let host: &'static str = Box::leak(hostname().into_boxed_str());
    let app = Router::new().fallback(move |req: Request| hello(host, req));

    let mut opts = narun::consumer::Options::new(&args.service);
    opts.nats_url = args.nats_url;
    opts.description = "narun hello example".into();
    if let Some(c) = args.concurrency {
        opts.concurrency = c;
    }
    narun::consumer::serve(opts, app).await?;
    Ok(())
}
