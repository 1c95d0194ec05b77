//! The gateway end to end: real nats-server, the real `narun gateway`
//! process, real TCP clients, consumers built with `narun::consumer`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{oneshot, Notify};

/// Run `router` as Micro service `service` in this process until the sender drops.
async fn consumer(
    url: &str,
    service: &str,
    router: Router,
    concurrency: usize,
) -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel::<()>();
    let mut opts = narun::consumer::Options::new(service);
    opts.nats_url = url.to_owned();
    opts.concurrency = concurrency;
    tokio::spawn(async move {
        narun::consumer::serve_with_shutdown(opts, router, async {
            let _ = rx.await;
        })
        .await
        .expect("consumer serves");
    });
    wait_service(url, service).await;
    tx
}

/// A consumer that answers with what it saw.
fn echo_router() -> Router {
    Router::new().fallback(any(|req: Request| async move {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let h = |n: &str| parts.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
        axum::Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "host": h("host"),
            "content_length": h("content-length"),
            "x_forwarded_for": h("x-forwarded-for"),
            "x_request_id": h("x-request-id"),
            "traceparent": h("traceparent"),
            "x_custom": h("x-custom"),
            "narun_timeout_ms": h("narun-timeout-ms"),
            "body": String::from_utf8_lossy(&body),
        }))
    }))
}

const HELLO_ROUTE: &str = r#"  - path: "/hello/"
    methods: ["POST", "PUT"]
    service: "hello""#;

/// `narun gateway` on a multi-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gw1_hello_example_through_the_gateway() {
    let nats = NatsServer::start();
    let gw = GatewayProc::start(&nats.url(), HELLO_ROUTE, "threads: 2");
    assert!(
        gw.proc.stderr().contains("threads=2"),
        "{}",
        gw.proc.stderr()
    );
    hello_through(&nats, &gw).await;
}

/// `narun-gateway` (the packaged unit's binary) on a single-threaded
/// runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gw1_hello_example_through_the_lean_gateway_on_one_thread() {
    let nats = NatsServer::start();
    let gw = GatewayProc::start_lean(&nats.url(), HELLO_ROUTE, "threads: 1");
    assert!(
        gw.proc.stderr().contains("threads=1"),
        "{}",
        gw.proc.stderr()
    );
    hello_through(&nats, &gw).await;
}

async fn hello_through(nats: &NatsServer, gw: &GatewayProc) {
    let _hello = start_hello(nats, "hello", gw.dir.path()).await;

    let r = http(
        gw.http,
        "POST",
        "/hello/",
        &[("content-type", "application/json")],
        r#"{"name":"NATS User"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    // Same bytes as the Go consumer: field order and the trailing newline.
    assert_eq!(
        r.text(),
        format!(
            "{{\"consumer_host\":\"{host}\",\"message\":\"Hello, NATS User! (processed by POST)\",\"received_path\":\"/hello/\"}}\n"
        )
    );
    assert_eq!(r.headers["x-narun-processed-by"], host);
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.contains_key("x-request-id"));

    let put = http(gw.http, "PUT", "/hello/x", &[], r#"{"name":"A"}"#).await;
    assert_eq!(put.json()["message"], "Hello, A! (processed by PUT)");
    assert_eq!(put.json()["received_path"], "/hello/x");

    let missing = http(gw.http, "POST", "/hello/", &[], "{}").await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.json()["error"],
        "Invalid JSON payload: 'name' field is required."
    );

    assert_eq!(
        gw.metric(r#"gateway_nats_requests_total{subject="hello",status="success"}"#)
            .await,
        3.0
    );
    assert_eq!(
        gw.metric(r#"http_gateway_requests_total{method="POST",path="/hello/",status_code="200"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gw2_path_query_host_and_headers_reach_the_consumer() {
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "echo", echo_router(), 4).await;
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/api/"
    methods: ["GET", "POST"]
    service: "echo""#,
        "",
    );
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = http(
        gw.http,
        "POST",
        "/api/a/b?x=1&y=2",
        &[
            ("x-custom", "v"),
            ("x-request-id", "rid-42"),
            ("traceparent", tp),
            ("narun-timeout-ms", "1"),
        ],
        "payload",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    // The gateway's deadline (which replaced the client's) is the
    // consumer's business: the app does not see it.
    assert_eq!(seen["narun_timeout_ms"], serde_json::Value::Null);
    assert_eq!(seen["path"], "/api/a/b");
    assert_eq!(seen["query"], "x=1&y=2");
    assert_eq!(seen["host"], gw.http.to_string());
    assert_eq!(seen["content_length"], "7");
    assert_eq!(seen["body"], "payload");
    assert_eq!(seen["x_custom"], "v");
    assert_eq!(seen["x_forwarded_for"], "127.0.0.1");
    assert_eq!(seen["x_request_id"], "rid-42");
    assert_eq!(r.headers["x-request-id"], "rid-42");
    let forwarded_tp = seen["traceparent"].as_str().unwrap();
    assert!(forwarded_tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(forwarded_tp.ends_with("-01"));
    assert_ne!(forwarded_tp, tp, "the gateway is a new parent span");

    // Without one, a request id and a trace are generated.
    let r = http(gw.http, "GET", "/api/", &[], "").await;
    let seen = r.json();
    assert_eq!(seen["x_request_id"].as_str().unwrap().len(), 32);
    assert_eq!(
        r.headers["x-request-id"],
        seen["x_request_id"].as_str().unwrap()
    );
    assert!(seen["traceparent"].as_str().unwrap().starts_with("00-"));
    assert_eq!(
        seen["content_length"],
        serde_json::Value::Null,
        "GET without body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gw3_to_gw5_routing_404_301_405_and_same_path_two_services() {
    let nats = NatsServer::start();
    let _a = consumer(&nats.url(), "svc-get", echo_router(), 2).await;
    let _b = consumer(
        &nats.url(),
        "svc-post",
        Router::new().fallback(any(|| async { "posted" })),
        2,
    )
    .await;
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/goodbye"
    methods: ["GET"]
    service: "svc-get"
  - path: "/hello/"
    methods: ["GET"]
    service: "svc-get"
  - path: "/hello/"
    methods: ["POST"]
    service: "svc-post""#,
        "",
    );
    let r = http(gw.http, "GET", "/goodbye/x", &[], "").await;
    assert_eq!((r.status, r.text().as_str()), (404, "404 page not found\n"));
    let r = http(gw.http, "GET", "/goodbye", &[], "").await;
    assert_eq!(r.status, 200);

    let r = http(gw.http, "GET", "/hello?q=1", &[], "").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "/hello/?q=1");

    let r = http(gw.http, "DELETE", "/hello/", &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, POST");

    // Two routes on one path (Go panics at startup here, G1).
    let r = http(gw.http, "GET", "/hello/", &[], "").await;
    assert_eq!(r.json()["method"], "GET");
    let r = http(gw.http, "POST", "/hello/", &[], "").await;
    assert_eq!(r.text(), "posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gw6_gw7_no_responders_is_503_and_timeout_is_504() {
    let nats = NatsServer::start();
    let slow = Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        "late"
    }));
    let _slow = consumer(&nats.url(), "slow", slow, 2).await;
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/none/"
    methods: ["GET"]
    service: "nobody"
  - path: "/slow/"
    methods: ["GET"]
    service: "slow"
    timeout: "300ms""#,
        "",
    );
    let r = http(gw.http, "GET", "/none/", &[], "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "No backend service available\n")
    );
    let r = http(gw.http, "GET", "/slow/", &[], "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (504, "Request timed out waiting for backend processor\n")
    );
    let m = gw.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            r#"gateway_nats_requests_total{subject="nobody",status="error"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            r#"gateway_nats_requests_total{subject="slow",status="timeout"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            r#"http_gateway_requests_total{method="GET",path="/slow/",status_code="504"}"#
        ),
        1.0
    );
}

/// A consumer speaking the Go wire format with no library: raw NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gw8_micro_error_replies_keep_their_status_and_go_replies_decode() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client.queue_subscribe("raw", "q".into()).await.unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let reply = msg.reply.clone().unwrap();
            seen_tx.send(msg.clone()).unwrap();
            let req = narun::wire::decode_request(&msg.payload).unwrap();
            if req.uri().path() == "/raw/error" {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Service-Error-Code", "400");
                h.insert("Nats-Service-Error", "Failed to decode BHTTP request");
                responder
                    .publish_with_headers(reply, h, Bytes::new())
                    .await
                    .unwrap();
            } else {
                // The Go consumer's 204: known-length, content-length: 0.
                let go_204: &[u8] = &[
                    0x01, 0x40, 0xcc, 0x11, 0x0e, b'c', b'o', b'n', b't', b'e', b'n', b't', b'-',
                    b'l', b'e', b'n', b'g', b't', b'h', 0x01, b'0', 0x00, 0x00,
                ];
                responder
                    .publish(reply, Bytes::from_static(go_204))
                    .await
                    .unwrap();
            }
        }
    });
    client.flush().await.unwrap();
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/raw/"
    methods: ["POST"]
    service: "raw"
    timeout: "2500ms""#,
        "",
    );
    // A client's own deadline field is replaced by the gateway's.
    let r = http(
        gw.http,
        "POST",
        "/raw/error",
        &[("Narun-Timeout-Ms", "1")],
        "x",
    )
    .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Failed to decode BHTTP request\n")
    );
    let msg = seen_rx.recv().await.unwrap();
    // No NATS headers (the Go gateway sets Content-Type, which consumers
    // ignore): the deadline is a BHTTP field line, the route's timeout.
    assert!(
        msg.headers.as_ref().is_none_or(|h| h.is_empty()),
        "{:?}",
        msg.headers
    );
    assert_eq!(msg.payload[0], 0, "known-length request framing");
    let req = narun::wire::decode_request(&msg.payload).unwrap();
    let deadlines: Vec<_> = req.headers().get_all("narun-timeout-ms").iter().collect();
    assert_eq!(deadlines, ["2500"]);

    let r = http(gw.http, "POST", "/raw/ok", &[], "").await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let msg = seen_rx.recv().await.unwrap();
    let req = narun::wire::decode_request(&msg.payload).unwrap();
    assert_eq!(
        req.headers()["content-length"],
        "0",
        "empty POST carries content-length"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_handles_requests_concurrently_and_survives_panics() {
    let nats = NatsServer::start();
    let gate = Arc::new(Notify::new());
    let (g1, g2) = (gate.clone(), gate.clone());
    let router = Router::new()
        .route(
            "/c/block",
            any(move || {
                let g = g1.clone();
                async move {
                    g.notified().await;
                    "unblocked"
                }
            }),
        )
        .route(
            "/c/release",
            any(move || {
                let g = g2.clone();
                async move {
                    g.notify_one();
                    "released"
                }
            }),
        )
        .route(
            "/c/panic",
            any(|| async {
                panic!("handler bug");
                #[allow(unreachable_code)]
                ""
            }),
        );
    let _c = consumer(&nats.url(), "conc", router, 8).await;
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/c/"
    methods: ["GET"]
    service: "conc"
    timeout: "10s""#,
        "",
    );
    // /c/block only returns once /c/release has been handled: a serial
    // consumer (Go C1) would time out here.
    let blocked = tokio::spawn(http(gw.http, "GET", "/c/block", &[], ""));
    let mut released = false;
    // The release may land before the block registers; retry until the
    // blocked request completes.
    for _ in 0..200 {
        let r = http(gw.http, "GET", "/c/release", &[], "").await;
        assert_eq!(r.status, 200);
        released = true;
        if blocked.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(released);
    let r = blocked.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "unblocked"));

    let r = http(gw.http, "GET", "/c/panic", &[], "").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "Internal Server Error\n")
    );
    // still serving
    let r = http(gw.http, "GET", "/c/release", &[], "").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micro_info_and_ping_answer_for_the_consumer() {
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "hello", echo_router(), 2).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let info = client
        .request("$SRV.INFO.hello", Bytes::new())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["type"], "io.nats.micro.v1.info_response");
    assert_eq!(info["name"], "hello");
    assert_eq!(info["version"], "0.1.0");
    assert_eq!(info["endpoints"][0]["name"], "handler");
    assert_eq!(info["endpoints"][0]["subject"], "hello");
    assert_eq!(info["endpoints"][0]["queue_group"], "q");
    let ping = client.request("$SRV.PING", Bytes::new()).await.unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_headers_and_payload_are_rejected() {
    // A small NATS max payload to hit the NATS limit below the body limit.
    let nats = NatsServer::start_with_config("max_payload: 65536");
    let _c = consumer(&nats.url(), "echo", echo_router(), 2).await;
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/e/"
    methods: ["POST"]
    service: "echo""#,
        "max_body_bytes: 200000\nmax_header_bytes: 16384",
    );
    let r = http(gw.http, "POST", "/e/", &[], vec![b'a'; 300_000]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (413, "Request body too large\n")
    );
    let r = http(gw.http, "POST", "/e/", &[], vec![b'a'; 100_000]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (413, "Request too large for the NATS max payload\n")
    );
    let r = http(gw.http, "POST", "/e/", &[], vec![b'a'; 1000]).await;
    assert_eq!(r.status, 200);

    let big = "a".repeat(40_000);
    let raw = format!("POST /e/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nContent-Length: 0\r\n\r\n");
    let answer = raw_exchange(gw.http, raw.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized headers: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_abandons_the_nats_wait() {
    let nats = NatsServer::start();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let router = Router::new().fallback(any(move || {
        let g = g.clone();
        async move {
            g.notified().await;
            "never"
        }
    }));
    let _c = consumer(&nats.url(), "stuck", router, 2).await;
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/s/"
    methods: ["GET"]
    service: "stuck""#,
        "request_timeout_seconds: 60",
    );
    let mut s = std::net::TcpStream::connect(gw.http).unwrap();
    std::io::Write::write_all(&mut s, b"GET /s/ HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    eventually(Duration::from_secs(10), "request in flight", || async {
        gw.metric("http_gateway_in_flight_requests").await == 1.0
    })
    .await;
    drop(s);
    // Well before the 60 s timeout the gateway has dropped the request.
    eventually(Duration::from_secs(10), "in-flight back to 0", || async {
        gw.metric("http_gateway_in_flight_requests").await == 0.0
    })
    .await;
    gate.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_gives_503_then_recovers_without_gateway_restart() {
    let mut nats = NatsServer::start();
    let gw = GatewayProc::start(&nats.url(), HELLO_ROUTE, "");
    let hello = start_hello(&nats, "hello", gw.dir.path()).await;
    let ok = |r: &HttpReply| r.status == 200;
    let r = http(gw.http, "POST", "/hello/", &[], r#"{"name":"a"}"#).await;
    assert!(ok(&r));

    nats.stop();
    // While NATS is down: 503 quickly (not a hang until the timeout).
    let start = std::time::Instant::now();
    eventually(
        Duration::from_secs(10),
        "503 while NATS is down",
        || async {
            http(gw.http, "POST", "/hello/", &[], r#"{"name":"a"}"#)
                .await
                .status
                == 503
        },
    )
    .await;
    let r = http(gw.http, "POST", "/hello/", &[], r#"{"name":"a"}"#).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "Gateway not connected to NATS\n")
    );
    assert!(start.elapsed() < Duration::from_secs(10));

    nats.restart();
    eventually(
        Duration::from_secs(30),
        "200 after NATS is back",
        || async {
            http(gw.http, "POST", "/hello/", &[], r#"{"name":"a"}"#)
                .await
                .status
                == 200
        },
    )
    .await;
    let mut gw = gw;
    assert!(
        gw.proc.is_running(),
        "the gateway never exits because NATS went away"
    );
    drop(hello);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_started_before_nats_serves_503_then_becomes_ready() {
    let mut nats = NatsServer::start();
    nats.stop();
    // The gateway binds its configured address itself: the path without
    // socket activation.
    let gw = GatewayProc::spawn_configured(&nats.url(), HELLO_ROUTE, "");
    eventually(Duration::from_secs(10), "listener up", || async {
        tokio::net::TcpStream::connect(gw.http).await.is_ok()
    })
    .await;
    let r = http(gw.http, "POST", "/hello/", &[], r#"{"name":"a"}"#).await;
    assert_eq!(r.status, 503);
    nats.restart();
    gw.wait_notify("READY=1", Duration::from_secs(30));
    let _hello = start_hello(&nats, "hello", gw.dir.path()).await;
    let r = http(gw.http, "POST", "/hello/", &[], r#"{"name":"a"}"#).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_stops_accepting() {
    let nats = NatsServer::start();
    // A gate that stays open once opened: the handler may start waiting
    // after the release (the gateway counts the request in flight before
    // the consumer gets it).
    let (gate, released) = tokio::sync::watch::channel(false);
    let router = Router::new().fallback(any(move || {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|open| *open).await;
            "finished"
        }
    }));
    let _c = consumer(&nats.url(), "drain", router, 4).await;
    let mut gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/d/"
    methods: ["GET"]
    service: "drain""#,
        "shutdown_timeout_seconds: 20",
    );
    let in_flight = tokio::spawn(http(gw.http, "GET", "/d/", &[], ""));
    eventually(Duration::from_secs(10), "request in flight", || async {
        gw.metric("http_gateway_in_flight_requests").await == 1.0
    })
    .await;
    gw.proc.signal(nix::sys::signal::Signal::SIGTERM);
    gw.wait_notify("STOPPING=1", Duration::from_secs(10));
    // No longer accepting.
    eventually(Duration::from_secs(5), "listener closed", || async {
        tokio::net::TcpStream::connect(gw.http).await.is_err()
    })
    .await;
    assert!(gw.proc.is_running(), "still draining");
    gate.send_replace(true);
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "finished"));
    let status = gw.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_uses_the_passed_listener() {
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "echo", echo_router(), 2).await;
    // server_addr points at a port nobody listens on: only the passed socket works.
    let route = "  - path: \"/e/\"\n    methods: [\"GET\"]\n    service: \"echo\"";
    let mut gw = GatewayProc::spawn_socket_activated(&nats.url(), route, "");
    gw.wait_notify("READY=1", Duration::from_secs(20));
    assert_ne!(gw.http, gw.server_addr);
    let r = http(gw.http, "GET", "/e/", &[], "").await;
    assert_eq!(r.status, 200, "{}", gw.proc.stderr());
    assert!(tokio::net::TcpStream::connect(gw.server_addr)
        .await
        .is_err());
    assert!(gw.proc.is_running());
}

#[test]
fn bad_configs_exit_78_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "routes:\n  - path: \"/a/\"\n    methods: []\n    service: \"a\"\n",
            "routes[0].methods",
        ),
        (
            "request_timeout_seconds: 0\nroutes:\n  - path: \"/a/\"\n    methods: [\"GET\"]\n    service: \"a\"\n",
            "request_timeout_seconds",
        ),
        (
            "routes:\n  - path: \"/a/\"\n    methods: [\"GET\"]\n    service: \"a b\"\n",
            "routes[0].service",
        ),
        ("routes: []\n", "routes"),
        ("request_timeout: 5\nroutes: []\n", "request_timeout"),
        ("routes:\n  - path: [\n", "line"),
    ];
    for (i, (yaml, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(narun_binary())
            .args(["gateway", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "case {i}: {stderr}");
        assert!(
            stderr.contains(needle),
            "case {i}: {needle:?} not in {stderr}"
        );
    }
    let out = std::process::Command::new(narun_binary())
        .args(["gateway", "--config", "/nonexistent/gw.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gw.yaml"));
}

#[test]
fn the_go_readme_config_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        r#"nats_url: "nats://localhost:4222"
server_addr: ":8080"
nkey_seed_file: ""
grpc_addr: ":8081"
metrics_addr: ":9090"
request_timeout_seconds: 15
routes:
  - path: "/hello/"
    methods: ["POST"]
    service: "hello"
  - grpc: "hello.v1.Greeter"
    service: "grpc-hello-service"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(narun_binary())
        .args(["gateway", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // narun-gateway, the unit's binary: the same options and statuses.
    let lean = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_narun-gateway"))
            .args(args)
            .env_remove("NARUN_GATEWAY_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let config = path.to_str().unwrap();
    assert_eq!(lean(&["--check", "--config", config]).0, Some(0));
    assert_eq!(lean(&["--check", &format!("--config={config}")]).0, Some(0));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "nats_url: 3\nroutes: []\n").unwrap();
    let (code, err) = lean(&["--config", bad.to_str().unwrap(), "--check"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("narun gateway:"), "{err}");
    let (code, err) = lean(&["--bogus"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown argument \"--bogus\""), "{err}");
    assert_eq!(lean(&["--config"]).0, Some(2), "a flag without its value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_stop_drains_in_flight_and_unsubscribes() {
    let nats = NatsServer::start();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<()>();
    let router = Router::new().fallback(any(move || {
        let g = g.clone();
        let entered_tx = entered_tx.clone();
        async move {
            let released = g.notified();
            entered_tx.send(()).unwrap();
            released.await;
            "drained"
        }
    }));
    let mut opts = narun::consumer::Options::new("stopper");
    opts.nats_url = nats.url();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let served = tokio::spawn(narun::consumer::serve_with_shutdown(opts, router, async {
        let _ = stop_rx.await;
    }));
    wait_service(&nats.url(), "stopper").await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let payload =
        narun::wire::encode_request(&http::Method::GET, "h", "/", &http::HeaderMap::new(), b"")
            .unwrap();
    let c2 = client.clone();
    let in_flight = tokio::spawn(async move {
        c2.send_request(
            "stopper",
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(Duration::from_secs(20))),
        )
        .await
    });
    entered.recv().await.expect("request reached the handler");
    stop_tx.send(()).unwrap();
    // After the stop the service no longer answers pings...
    eventually(Duration::from_secs(10), "service unsubscribed", || async {
        client
            .request("$SRV.PING.stopper", Bytes::new())
            .await
            .is_err()
    })
    .await;
    // ...but the in-flight request still completes.
    assert!(!served.is_finished(), "draining");
    gate.notify_waiters();
    let reply = in_flight
        .await
        .unwrap()
        .expect("in-flight request answered");
    let resp = narun::wire::decode_response(&reply.payload).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().as_ref(), b"drained");
    served.await.unwrap().unwrap();
}

/// Replicas of a service replaced one after the other under a flood of
/// requests (the rollout of a new version): every request is answered.
/// A replica that stops drains its endpoint, and the server's
/// acknowledgement of the UNSUB fences the requests already routed to it
/// (async-nats drops them on arrival without the patch in vendor/).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_replaced_under_a_flood_lose_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let nats = NatsServer::start();
    let served = Arc::new(AtomicU64::new(0));
    let start = |served: Arc<AtomicU64>| {
        let router = Router::new().fallback(any(move || {
            served.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }));
        let mut opts = narun::consumer::Options::new("flood");
        opts.nats_url = nats.url();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(narun::consumer::serve_with_shutdown(opts, router, async {
            let _ = stop_rx.await;
        }));
        (stop_tx, task)
    };
    let mut current = start(served.clone());
    wait_service(&nats.url(), "flood").await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let payload: Bytes =
        narun::wire::encode_request(&http::Method::GET, "h", "/", &http::HeaderMap::new(), b"")
            .unwrap()
            .into();
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let (client, payload, stop) = (client.clone(), payload.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut lost) = (0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    let r = client
                        .send_request(
                            "flood",
                            async_nats::Request::new()
                                .payload(payload.clone())
                                .timeout(Some(Duration::from_secs(10))),
                        )
                        .await;
                    match r.map(|m| narun::wire::decode_response(&m.payload)) {
                        Ok(Ok(resp)) if resp.body().as_ref() == b"ok" => ok += 1,
                        other => {
                            if lost == 0 {
                                eprintln!("lost: {other:?}");
                            }
                            lost += 1
                        }
                    }
                }
                (ok, lost)
            })
        })
        .collect();
    for round in 0..20 {
        // The next replica serves (it took a request) before the
        // previous one stops.
        let next_served = Arc::new(AtomicU64::new(0));
        let next = start(next_served.clone());
        eventually(
            Duration::from_secs(30),
            &format!("round {round}: the new replica serves"),
            || async { next_served.load(Ordering::SeqCst) > 0 },
        )
        .await;
        let (stop_tx, task) = std::mem::replace(&mut current, next);
        stop_tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut lost) = (0, 0);
    for f in flood {
        let (o, l) = f.await.unwrap();
        ok += o;
        lost += l;
    }
    eprintln!("flood: {ok} answered, {lost} lost over 20 replacements");
    assert_eq!(lost, 0, "{lost} of {} requests lost", ok + lost);
    assert!(ok > 0);
    drop(current);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_answers_undecodable_requests_with_a_micro_error() {
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "strict", echo_router(), 2).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let reply = client
        .request("strict", Bytes::from_static(b"\x07garbage"))
        .await
        .unwrap();
    let h = reply.headers.expect("error headers");
    assert_eq!(h.get("Nats-Service-Error-Code").unwrap().as_str(), "400");
    assert_eq!(
        h.get("Nats-Service-Error").unwrap().as_str(),
        "Failed to decode BHTTP request"
    );
    assert!(reply.payload.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_watchdog_is_pinged() {
    use std::io::Read;
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "echo", echo_router(), 2).await;
    let dir_routes = r#"  - path: "/e/"
    methods: ["GET"]
    service: "echo""#;
    // WATCHDOG_USEC set as systemd does for WatchdogSec=: the gateway must ping.
    let gw = GatewayProc::spawn_with_env(
        &nats.url(),
        dir_routes,
        "idle_timeout_seconds: 1\nheader_read_timeout_seconds: 30",
        &[("WATCHDOG_USEC", "200000")],
    );
    gw.wait_notify("READY=1", Duration::from_secs(20));
    gw.wait_notify("WATCHDOG=1", Duration::from_secs(5));

    let mut s = std::net::TcpStream::connect(gw.http).unwrap();
    std::io::Write::write_all(&mut s, b"GET /e/ HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Keep-alive connection, now idle: the gateway closes it (read gets EOF).
    let started = std::time::Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!(
                "expected the idle connection to be closed: {e}; gateway stderr:\n{}",
                gw.proc.stderr()
            ),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_abandons_a_request_once_the_gateway_deadline_passes() {
    struct Dropped(tokio::sync::mpsc::UnboundedSender<()>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let nats = NatsServer::start();
    let (tx, mut dropped) = tokio::sync::mpsc::unbounded_channel::<()>();
    let router = Router::new().fallback(any(move || {
        let tx = tx.clone();
        async move {
            let _d = Dropped(tx);
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }
    }));
    let _c = consumer(&nats.url(), "patient", router, 2).await;
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/p/"
    methods: ["GET"]
    service: "patient"
    timeout: "300ms""#,
        "",
    );
    let r = http(gw.http, "GET", "/p/", &[], "").await;
    assert_eq!(r.status, 504);
    // The gateway sent its deadline (the BHTTP field line
    // narun-timeout-ms): the handler is dropped, not left running for its
    // 30 s.
    tokio::time::timeout(Duration::from_secs(10), dropped.recv())
        .await
        .expect("the consumer drops the handler at the deadline");

    // Earlier narun gateways sent the deadline as the NATS header
    // Narun-Timeout-Ms: still honoured.
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let mut h = async_nats::HeaderMap::new();
    h.insert(narun::wire::TIMEOUT_HEADER, "300");
    let req =
        narun::wire::encode_request(&http::Method::GET, "x", "/p/", &http::HeaderMap::new(), b"")
            .unwrap();
    nc.publish_with_reply_and_headers("patient", nc.new_inbox(), h, req.into())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), dropped.recv())
        .await
        .expect("the consumer drops the handler at the NATS header's deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_promptly_while_nats_is_down() {
    let mut nats = NatsServer::start();
    let mut gw = GatewayProc::start(&nats.url(), HELLO_ROUTE, "");
    nats.stop();
    eventually(
        Duration::from_secs(10),
        "503 while NATS is down",
        || async {
            http(gw.http, "POST", "/hello/", &[], r#"{"name":"a"}"#)
                .await
                .status
                == 503
        },
    )
    .await;
    gw.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let status = gw.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

const ECHO_POST_ROUTE: &str = r#"  - path: "/e/"
    methods: ["GET", "POST"]
    service: "echo""#;

/// A request head declaring a 100-byte body, then 8 bytes of it: the body
/// stalls (the client never sends the rest).
const STALLED_BODY: &[u8] = b"POST /e/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n12345678";

/// Sends an HTTP/2 request whose body never ends; the task yields the
/// response once the gateway answers, and holds the connection open until
/// then.
fn stalled_h2_request(
    addr: std::net::SocketAddr,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
) -> tokio::task::JoinHandle<http::Response<hyper::body::Incoming>> {
    tokio::spawn(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("h2c handshake");
        tokio::spawn(conn);
        let never = futures_util::stream::pending::<
            Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
        >();
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(http_body_util::StreamBody::new(never)).unwrap();
        sender.send_request(req).await.expect("h2 exchange")
    })
}

/// The gRPC status of a response: trailers, or the headers of a
/// trailers-only response.
async fn grpc_status(resp: http::Response<hyper::body::Incoming>) -> String {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("response body");
    let block = collected.trailers().cloned().unwrap_or(parts.headers);
    block
        .get("grpc-status")
        .unwrap_or_else(|| panic!("no grpc-status in {block:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Issue #13 item 4: a request whose body trickles in holds no
/// `max_in_flight` permit (the permit covers the NATS leg only), for HTTP
/// and for gRPC alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_take_no_in_flight_permit() {
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "echo", echo_router(), 2).await;
    let gw = GatewayProc::start(
        &nats.url(),
        &format!(
            "{ECHO_POST_ROUTE}
  - grpc: \"slow.v1.Nobody\"
    service: \"nobody\""
        ),
        "max_in_flight: 1\ngrpc_addr: \"{server_addr}\"",
    );
    // Clients that never finish their bodies: one, then three.
    let mut stalled = Vec::new();
    for n in [1, 3] {
        while stalled.len() < n {
            let mut s = std::net::TcpStream::connect(gw.http).unwrap();
            std::io::Write::write_all(&mut s, STALLED_BODY).unwrap();
            stalled.push(s);
        }
        eventually(
            Duration::from_secs(10),
            "the stalled requests in flight",
            || async { gw.metric("http_gateway_in_flight_requests").await == n as f64 },
        )
        .await;
        let r = http(gw.http, "POST", "/e/", &[], "hello").await;
        assert_eq!(r.status, 200, "{n} stalled: {}", r.text());
        assert_eq!(r.json()["body"], "hello");
    }

    // gRPC: a call whose request stream never ends holds no permit either.
    const GRPC: &[(&str, &str)] = &[("content-type", "application/grpc"), ("te", "trailers")];
    let stalled_call = stalled_h2_request(gw.http, "/slow.v1.Nobody/Call", GRPC);
    eventually(
        Duration::from_secs(10),
        "the gRPC call in flight",
        || async { gw.metric("grpc_gateway_in_flight_requests").await == 1.0 },
    )
    .await;
    let stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/slow.v1.Nobody/Call", gw.http));
    for (k, v) in GRPC {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    // UNAVAILABLE (no consumer subscribed), not RESOURCE_EXHAUSTED (8).
    assert_eq!(grpc_status(resp).await, "14");
    stalled_call.abort();
    drop(stalled);
}

/// Issue #13 item 4: a body that stalls gets 408 once
/// `body_read_timeout_seconds` has passed (and the connection is closed);
/// a gRPC request stream that stalls ends with DEADLINE_EXCEEDED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_gets_408() {
    use std::io::Read;
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "echo", echo_router(), 2).await;
    let gw = GatewayProc::start(
        &nats.url(),
        &format!(
            "{ECHO_POST_ROUTE}
  - grpc: \"slow.v1.Nobody\"
    service: \"nobody\""
        ),
        "body_read_timeout_seconds: 1\ngrpc_addr: \"{server_addr}\"",
    );
    let mut s = std::net::TcpStream::connect(gw.http).unwrap();
    std::io::Write::write_all(&mut s, STALLED_BODY).unwrap();
    // Generous: the answer comes after about 1 s; without a body deadline
    // it never does.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{read:?}: {answer:?}\n{}",
        gw.proc.stderr()
    );
    assert!(answer.contains("connection: close\r\n"), "{answer:?}");
    assert!(
        read.is_ok(),
        "the connection is closed after the 408: {read:?}"
    );
    assert!(
        answer.ends_with("Request body not received in time\n"),
        "{answer:?}"
    );
    assert_eq!(
        gw.metric(r#"http_gateway_requests_total{method="POST",path="/e/",status_code="408"}"#)
            .await,
        1.0
    );

    const GRPC: &[(&str, &str)] = &[("content-type", "application/grpc"), ("te", "trailers")];
    let stalled_call = stalled_h2_request(gw.http, "/slow.v1.Nobody/Call", GRPC);
    let resp = tokio::time::timeout(Duration::from_secs(20), stalled_call)
        .await
        .expect("the gateway ends a stalled gRPC request stream")
        .unwrap();
    assert_eq!(grpc_status(resp).await, "4", "DEADLINE_EXCEEDED");

    // A body that arrives in time is served as usual.
    let r = http(gw.http, "POST", "/e/", &[], "in time").await;
    assert_eq!(r.json()["body"], "in time");
}

/// Sends `prefix` at once, then `dribble` one byte every 250 ms, and
/// returns how many dribbled bytes were sent before the gateway closed the
/// connection (panics if it does not close it within 30 s).
async fn dribble_until_closed(addr: std::net::SocketAddr, prefix: &[u8], dribble: &[u8]) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(prefix).await.unwrap();
    let sent = std::cell::Cell::new(0);
    let closed = async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let dribbler = async {
        for b in dribble {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            sent.set(sent.get() + 1);
            // Pacing the slow client, not synchronisation.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        std::future::pending::<()>().await;
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            _ = closed => {}
            _ = dribbler => {}
        }
    })
    .await
    .expect("the gateway closes the connection");
    sent.get()
}

/// Issue #13 item 5: a connection that sends its HTTP/2 preface or first
/// frame slowly is closed after `header_read_timeout_seconds`, however often
/// a byte arrives; after that, bytes that complete no request do not keep a
/// connection from being idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http2_openings_and_partial_frames_are_timed_out() {
    let nats = NatsServer::start();
    let gw = GatewayProc::start(
        &nats.url(),
        ECHO_POST_ROUTE,
        "header_read_timeout_seconds: 1\nidle_timeout_seconds: 2",
    );
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // A SETTINGS frame: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 65535,
    // MAX_FRAME_SIZE 16384.
    const SETTINGS: &[u8] = &[
        0, 0, 18, 4, 0, 0, 0, 0, 0, //
        0, 2, 0, 0, 0, 0, //
        0, 4, 0, 0, 255, 255, //
        0, 5, 0, 0, 64, 0,
    ];
    // A HEADERS frame on stream 1 declaring 64 bytes of header block.
    let mut headers = vec![0, 0, 64, 1, 4, 0, 0, 0, 1];
    headers.extend([0x82; 64]);
    let settings_then_headers = [PREFACE, SETTINGS].concat();
    let cases: [(&str, &[u8], &[u8]); 3] = [
        ("the preface", b"", PREFACE),
        ("the first SETTINGS frame", PREFACE, SETTINGS),
        (
            "a HEADERS frame after the opening",
            &settings_then_headers,
            &headers,
        ),
    ];
    for (what, prefix, dribble) in cases {
        let sent = dribble_until_closed(gw.http, prefix, dribble).await;
        assert!(
            sent < dribble.len(),
            "{what}: the connection stayed open until all {} bytes were sent one by one\n{}",
            dribble.len(),
            gw.proc.stderr()
        );
    }
    // The listener still serves (no consumer: 503).
    let r = http(gw.http, "GET", "/e/", &[], "").await;
    assert_eq!(r.status, 503, "{}", r.text());
}

/// Issue #13 item 5: at `max_connections` open connections the gateway
/// accepts no more until one closes, on a listener it bound and on one
/// passed by systemd alike, and says so once per episode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_caps_bound_and_socket_activated_listeners() {
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "echo", echo_router(), 4).await;
    let extra = "max_connections: 2\nheader_read_timeout_seconds: 60\nidle_timeout_seconds: 60";
    for activated in [false, true] {
        let gw = if activated {
            let gw = GatewayProc::spawn_socket_activated(&nats.url(), ECHO_POST_ROUTE, extra);
            gw.wait_notify("READY=1", Duration::from_secs(20));
            gw
        } else {
            GatewayProc::start_configured(&nats.url(), ECHO_POST_ROUTE, extra)
        };
        let kind = if activated {
            "socket-activated"
        } else {
            "bound"
        };
        // Two keep-alive connections, each with one request served.
        let mut held = Vec::new();
        for _ in 0..2 {
            let stream = tokio::net::TcpStream::connect(gw.http).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            let conn = tokio::spawn(conn);
            let req = http::Request::builder()
                .uri("/e/")
                .header("host", "x")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200, "{kind}");
            held.push((sender, conn));
        }
        // Two more wait: the gateway says so, once.
        let waiting: Vec<_> = (0..2)
            .map(|i| tokio::spawn(http(gw.http, "POST", "/e/", &[], format!("waiter {i}"))))
            .collect();
        eventually(
            Duration::from_secs(10),
            "the max_connections warning",
            || async { gw.proc.stderr().contains("max_connections reached") },
        )
        .await;
        assert!(
            waiting.iter().all(|w| !w.is_finished()),
            "{kind}: served beyond max_connections"
        );
        // Each connection that closes lets one waiting connection in.
        let mut waiting = waiting;
        for (sender, conn) in held {
            drop(sender);
            conn.abort();
            let (r, _, rest) = tokio::time::timeout(
                Duration::from_secs(20),
                futures_util::future::select_all(waiting),
            )
            .await
            .unwrap_or_else(|_| panic!("{kind}: a waiting connection was never served"));
            assert_eq!(r.unwrap().status, 200, "{kind}");
            waiting = rest;
        }
        eventually(
            Duration::from_secs(10),
            "every connection closed",
            || async {
                // The metrics scrape is its own listener: not counted.
                gw.metric("gateway_open_connections").await == 0.0
            },
        )
        .await;
        // Below the cap again: served at once, and the episode is over.
        let r = http(gw.http, "GET", "/e/", &[], "").await;
        assert_eq!(r.status, 200, "{kind}");
        let log = gw.proc.stderr();
        assert_eq!(
            log.matches("max_connections reached").count(),
            1,
            "{kind}: one warning per episode\n{log}"
        );
        assert!(log.contains("accepting connections again"), "{kind}\n{log}");
    }
}

/// Issue #13 item 6: a path with an encoded dot segment, an encoded `/`, an
/// encoded NUL or a malformed escape is rejected with 400 before routing,
/// so a consumer that decodes paths is never walked out of its subtree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_dot_segments_slashes_and_nul_are_rejected() {
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "echo", echo_router(), 2).await;
    let gw = GatewayProc::start(
        &nats.url(),
        r#"  - path: "/hello/"
    methods: ["GET"]
    service: "echo""#,
        "",
    );
    let rejected = [
        ("/hello/%2e%2e/x", "encoded dot segment"),
        ("/hello/%2E%2E/%2E%2E/etc/passwd", "encoded dot segment"),
        ("/hello/.%2e/x", "encoded dot segment"),
        ("/hello/%2e/x", "encoded dot segment"),
        ("/hello/%2e%2e", "encoded dot segment"),
        ("/hello/..%2f..%2fetc", "encoded '/'"),
        ("/hello/%2Fetc%2Fpasswd", "encoded '/'"),
        ("/hello/a%2Fb", "encoded '/'"),
        ("/hello/a.txt%00.png", "encoded NUL"),
        ("/hello/%zz", "malformed percent-encoding"),
        ("/hello/%2", "malformed percent-encoding"),
        // Before routing: not a 404.
        ("/elsewhere/%2e%2e/hello/", "encoded dot segment"),
    ];
    for (path, why) in rejected {
        for version in [1, 2] {
            let r = if version == 1 {
                http(gw.http, "GET", path, &[], "").await
            } else {
                http2(gw.http, "GET", path, "").await
            };
            assert_eq!(
                (r.status, r.text()),
                (400, format!("Bad Request: {why} in the path\n")),
                "HTTP/{version} {path}"
            );
        }
    }
    assert_eq!(
        gw.metric(
            r#"http_gateway_requests_total{method="GET",path="<unmatched>",status_code="400"}"#
        )
        .await,
        (rejected.len() * 2) as f64
    );

    // Forwarded as sent: escapes that decode to ordinary characters, dots
    // inside a segment, and anything in the query.
    for path in [
        "/hello/%41bc",
        "/hello/a%20b/c",
        "/hello/.../x",
        "/hello/a..b/.c/..d",
        "/hello/x?p=%2e%2e%2f%00",
    ] {
        let r = http(gw.http, "GET", path, &[], "").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let uri: http::Uri = path.parse().unwrap();
        assert_eq!(r.json()["path"], uri.path(), "{path}");
    }
    // Literal dot segments are redirected to the clean path, as before.
    let r = http(gw.http, "GET", "/hello/a/../b", &[], "").await;
    assert_eq!(
        (r.status, &r.headers["location"]),
        (301, &"/hello/b".parse::<http::HeaderValue>().unwrap())
    );
}
