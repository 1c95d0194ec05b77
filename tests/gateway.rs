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
            "body": String::from_utf8_lossy(&body),
        }))
    }))
}

const HELLO_ROUTE: &str = r#"  - path: "/hello/"
    methods: ["POST", "PUT"]
    service: "hello""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gw1_hello_example_through_the_gateway() {
    let nats = NatsServer::start();
    let gw = GatewayProc::start(&nats.url(), HELLO_ROUTE, "");
    let _hello = start_hello(&nats, "hello", gw.dir.path()).await;

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
        ],
        "payload",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = r.json();
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
    service: "raw""#,
        "",
    );
    let r = http(gw.http, "POST", "/raw/error", &[], "x").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Failed to decode BHTTP request\n")
    );
    let msg = seen_rx.recv().await.unwrap();
    assert_eq!(
        msg.headers
            .as_ref()
            .unwrap()
            .get("Content-Type")
            .unwrap()
            .as_str(),
        "application/bhttp"
    );
    assert_eq!(msg.payload[0], 0, "known-length request framing");

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
    let gw = GatewayProc::spawn(&nats.url(), HELLO_ROUTE, "");
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
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let router = Router::new().fallback(any(move || {
        let g = g.clone();
        async move {
            g.notified().await;
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
    gate.notify_waiters();
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "finished"));
    let status = gw.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_uses_the_passed_listener() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let nats = NatsServer::start();
    let _c = consumer(&nats.url(), "echo", echo_router(), 2).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // server_addr points at a port nobody listens on: only the passed socket works.
    let unused = free_port();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(
        &cfg,
        format!(
            "nats_url: \"{}\"\nserver_addr: \"127.0.0.1:{unused}\"\nmetrics_addr: \"\"\nroutes:\n  - path: \"/e/\"\n    methods: [\"GET\"]\n    service: \"echo\"\n",
            nats.url()
        ),
    )
    .unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = std::process::Command::new("/bin/sh");
    // LISTEN_PID must be the gateway's pid: the shell's $$ survives exec.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=http exec \"$0\" gateway --config \"$1\"")
        .arg(narun_binary())
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(std::fs::File::create(dir.path().join("gw.log")).unwrap());
    // SAFETY: dup2 is async-signal-safe; it puts the listener at fd 3 as
    // sd_listen_fds(3) expects, in the child only.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) // already there: keep it across exec
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let mut proc = Proc {
        child,
        stderr_path: dir.path().join("gw.log"),
    };
    let mut buf = [0u8; 1024];
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    loop {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no READY ({e}); stderr:\n{}", proc.stderr()));
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    drop(listener);
    let r = http(addr, "GET", "/e/", &[], "").await;
    assert_eq!(r.status, 200, "{}", proc.stderr());
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", unused))
        .await
        .is_err());
    assert!(proc.is_running());
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
    // The gateway sent Narun-Timeout-Ms: the handler is dropped, not left
    // running for its 30 s.
    tokio::time::timeout(Duration::from_secs(10), dropped.recv())
        .await
        .expect("the consumer drops the handler at the deadline");
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
