//! gRPC end to end: real nats-server, the real `narun gateway` process, a
//! real tonic client (and a raw HTTP/2 client where exact bytes matter),
//! consumers built with `narun::consumer::serve_grpc` or speaking the Go
//! wire format by hand.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use narun::wire::grpc as g;
use narun_hello_proto::prost::Message as _;
use narun_hello_proto::v1::greeter_client::GreeterClient;
use narun_hello_proto::v1::greeter_server::{Greeter, GreeterServer};
use narun_hello_proto::v1::{HelloReply, HelloRequest, HelloStreamRequest};
use narun_hello_proto::ProstCodec;
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

const GREETER_ROUTE: &str = r#"  - grpc: "hello.v1.Greeter"
    service: "grpc-hello-service""#;

/// A gateway with a separate gRPC listener; returns it and the gRPC address.
fn grpc_gateway(nats: &NatsServer, routes: &str, extra: &str) -> (GatewayProc, SocketAddr) {
    let gw = GatewayProc::start(
        &nats.url(),
        routes,
        &format!("grpc_addr: \"{{grpc_addr}}\"\n{extra}"),
    );
    let grpc = gw.grpc.expect("a gRPC listener of its own");
    (gw, grpc)
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("gRPC connect {addr}: {e}"))
}

async fn greeter(addr: SocketAddr) -> GreeterClient<Channel> {
    GreeterClient::new(channel(addr).await)
}

/// The `grpc-hello` example consumer, awaited until it answers `$SRV.PING`.
async fn start_grpc_hello(nats: &NatsServer, service: &str, dir: &std::path::Path) -> Proc {
    let stderr_path = dir.join(format!("grpc-hello-{service}.log"));
    let child = std::process::Command::new(example_binary("grpc-hello"))
        .args([
            "--nats-url",
            &nats.url(),
            "--service",
            service,
            "--interval-ms",
            "20",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start the grpc-hello example");
    let proc = Proc { child, stderr_path };
    wait_service(&nats.url(), service).await;
    proc
}

/// What the in-process test service saw and dropped.
#[derive(Default)]
struct Seen {
    /// `grpc-timeout` of the last slow call.
    timeout: Mutex<Option<String>>,
    /// Notified when a slow handler or a stream is dropped unfinished.
    dropped: Mutex<Option<mpsc::UnboundedSender<&'static str>>>,
}

struct DropSignal(Arc<Seen>, &'static str);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.dropped.lock().unwrap().as_ref() {
            let _ = tx.send(self.1);
        }
    }
}

/// A Greeter whose behaviour depends on the name.
#[derive(Clone)]
struct TestGreeter {
    seen: Arc<Seen>,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

#[tonic::async_trait]
impl Greeter for TestGreeter {
    async fn say_hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let md = req.metadata().clone();
        let name = req.into_inner().name;
        match name.as_str() {
            "" => Err(Status::invalid_argument("Name cannot be empty")),
            "slow" => {
                *self.seen.timeout.lock().unwrap() = md
                    .get("grpc-timeout")
                    .map(|v| v.to_str().unwrap().to_owned());
                let _guard = DropSignal(self.seen.clone(), "slow");
                tokio::time::sleep(Duration::from_secs(20)).await;
                std::mem::forget(_guard);
                Ok(Response::new(HelloReply {
                    message: "late".into(),
                }))
            }
            "panic" => panic!("handler bug"),
            "meta" => {
                let mut resp = Response::new(HelloReply {
                    message: "meta".into(),
                });
                let out = resp.metadata_mut();
                for key in ["x-custom", "x-request-id", "x-forwarded-for"] {
                    if let Some(v) = md.get(key) {
                        out.insert(
                            format!("echo-{key}")
                                .parse::<tonic::metadata::MetadataKey<_>>()
                                .unwrap(),
                            v.clone(),
                        );
                    }
                }
                if let Some(v) = md.get_bin("x-data-bin") {
                    out.insert_bin("echo-data-bin", v.clone());
                }
                Ok(resp)
            }
            "denied" => {
                let mut md = MetadataMap::new();
                md.insert("x-why", MetadataValue::from_static("policy"));
                Err(Status::with_metadata(
                    Code::PermissionDenied,
                    "not for you",
                    md,
                ))
            }
            "big" => Ok(Response::new(HelloReply {
                message: "x".repeat(2 * 1024 * 1024),
            })),
            name => Ok(Response::new(HelloReply {
                message: format!("Hello, {name}!"),
            })),
        }
    }

    type SayHelloStreamStream = ReplyStream;

    async fn say_hello_stream(
        &self,
        req: Request<HelloStreamRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let HelloStreamRequest { name, count } = req.into_inner();
        let seen = self.seen.clone();
        let stream: ReplyStream = match name.as_str() {
            "forever" => {
                let guard = Arc::new(DropSignal(seen, "stream"));
                Box::pin(futures_util::stream::unfold(0u32, move |i| {
                    let _g = guard.clone();
                    async move {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Some((
                            Ok(HelloReply {
                                message: format!("tick {i}"),
                            }),
                            i + 1,
                        ))
                    }
                }))
            }
            "fail" => Box::pin(
                futures_util::stream::iter((0..3).map(|i| {
                    Ok(HelloReply {
                        message: format!("part {i}"),
                    })
                }))
                .chain(futures_util::stream::once(async {
                    Err(Status::aborted("stream failed on purpose"))
                })),
            ),
            "panic" => Box::pin(futures_util::stream::iter(0..count).map(|i| {
                if i == 2 {
                    panic!("stream bug");
                }
                Ok(HelloReply {
                    message: format!("n {i}"),
                })
            })),
            _ => Box::pin(futures_util::stream::iter((1..=count).map(move |i| {
                Ok(HelloReply {
                    message: format!("Hello, {name}! ({i}/{count})"),
                })
            }))),
        };
        Ok(Response::new(stream))
    }
}

/// Serve a [`TestGreeter`] in this process until the sender drops.
async fn test_consumer(nats: &NatsServer, service: &str) -> (oneshot::Sender<()>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let (tx, rx) = oneshot::channel::<()>();
    let mut opts = narun::consumer::Options::new(service);
    opts.nats_url = nats.url();
    let svc = GreeterServer::new(TestGreeter { seen: seen.clone() });
    tokio::spawn(async move {
        narun::consumer::serve_grpc_with_shutdown(opts, svc, async {
            let _ = rx.await;
        })
        .await
        .expect("gRPC consumer serves");
    });
    wait_service(&nats.url(), service).await;
    (tx, seen)
}

/// A gRPC exchange seen at the HTTP/2 level.
#[derive(Debug)]
struct RawReply {
    http_status: u16,
    headers: http::HeaderMap,
    messages: Vec<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl RawReply {
    /// (grpc-status, grpc-message) from the trailers, or the headers of a
    /// trailers-only response.
    fn status(&self) -> (String, String) {
        let block = self.trailers.as_ref().unwrap_or(&self.headers);
        let code = block
            .get("grpc-status")
            .unwrap_or_else(|| panic!("no grpc-status in {self:?}"))
            .to_str()
            .unwrap()
            .to_owned();
        let msg = block
            .get("grpc-message")
            .map(|v| g::decode_message(v.as_bytes()))
            .unwrap_or_default();
        (code, msg)
    }
}

/// One gRPC call over h2c with prior knowledge, no gRPC library involved.
async fn raw_grpc(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: Bytes) -> RawReply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .expect("h2 exchange");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("response body");
    let trailers = collected.trailers().cloned();
    let bytes = collected.to_bytes();
    let mut d = g::FrameDecoder::new(usize::MAX);
    d.push(&bytes);
    let mut messages = Vec::new();
    while let Some(m) = d.next_message().unwrap() {
        messages.push(m);
    }
    d.finish().unwrap();
    RawReply {
        http_status: parts.status.as_u16(),
        headers: parts.headers,
        messages,
        trailers,
    }
}

fn hello_frame(name: &str) -> Bytes {
    g::frame(&HelloRequest { name: name.into() }.encode_to_vec())
}

/// A unary call to any path through tonic's generic client.
async fn call_path(addr: SocketAddr, path: &'static str) -> Result<HelloReply, Status> {
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.unwrap();
    grpc.unary(
        Request::new(HelloRequest { name: "x".into() }),
        http::uri::PathAndQuery::from_static(path),
        ProstCodec::<HelloRequest, HelloReply>::default(),
    )
    .await
    .map(Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_consumer_unary_stream_invalid_argument_and_metrics() {
    let nats = NatsServer::start();
    let (gw, grpc) = grpc_gateway(&nats, GREETER_ROUTE, "");
    let _hello = start_grpc_hello(&nats, "grpc-hello-service", gw.dir.path()).await;
    let mut client = greeter(grpc).await;

    let reply = client
        .say_hello(HelloRequest { name: "Ada".into() })
        .await
        .expect("SayHello");
    assert_eq!(reply.get_ref().message, "Hello, Ada!");

    let err = client
        .say_hello(HelloRequest { name: "".into() })
        .await
        .expect_err("empty name");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(err.message(), "Name cannot be empty");

    // Server streaming, 20 ms between messages: each arrives as it is sent.
    let mut stream = client
        .say_hello_stream(HelloStreamRequest {
            name: "Bo".into(),
            count: 5,
        })
        .await
        .expect("SayHelloStream")
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.expect("stream message") {
        got.push(m.message);
    }
    let want: Vec<_> = (1..=5).map(|i| format!("Hello, Bo! ({i}/5)")).collect();
    assert_eq!(got, want);

    let err = client
        .say_hello_stream(HelloStreamRequest {
            name: "".into(),
            count: 3,
        })
        .await
        .expect_err("empty name on the stream");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "Name cannot be empty");

    let m = gw.metrics_text().await;
    for (series, want) in [
        (
            r#"grpc_gateway_requests_total{grpc_method="/hello.v1.Greeter/SayHello",grpc_code="OK"}"#,
            1.0,
        ),
        (
            r#"grpc_gateway_requests_total{grpc_method="/hello.v1.Greeter/SayHello",grpc_code="InvalidArgument"}"#,
            1.0,
        ),
        (
            r#"grpc_gateway_requests_total{grpc_method="/hello.v1.Greeter/SayHelloStream",grpc_code="OK"}"#,
            1.0,
        ),
        (
            r#"grpc_gateway_request_duration_seconds_count{grpc_method="/hello.v1.Greeter/SayHello"}"#,
            2.0,
        ),
        (
            r#"gateway_nats_requests_total{subject="grpc-hello-service",status="success"}"#,
            4.0,
        ),
    ] {
        assert_eq!(metric_value(&m, series), want, "{series}\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_unknown_method_malformed_and_no_consumer() {
    let nats = NatsServer::start();
    let (gw, grpc) = grpc_gateway(
        &nats,
        &format!("{GREETER_ROUTE}\n  - grpc: \"other.v1.Nobody\"\n    service: \"nobody-home\""),
        "",
    );
    let _c = test_consumer(&nats, "grpc-hello-service").await;

    let err = call_path(grpc, "/unrouted.v1.Svc/Call").await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert_eq!(
        err.message(),
        "service unrouted.v1.Svc not implemented or routed"
    );

    // A routed service, a method its consumer does not have.
    let err = call_path(grpc, "/hello.v1.Greeter/Nope").await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    // Routed, but no consumer subscribed.
    let err = call_path(grpc, "/other.v1.Nobody/Call").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(err.message(), "No backend service available");

    let r = raw_grpc(grpc, "/not-a-method", &[], hello_frame("x")).await;
    assert_eq!(r.http_status, 200);
    assert_eq!(r.status().0, "12");
    assert!(r.status().1.starts_with("malformed method name"), "{r:?}");

    let m = gw.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            r#"grpc_gateway_requests_total{grpc_method="<unrouted>",grpc_code="Unimplemented"}"#
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"gateway_nats_requests_total{subject="nobody-home",status="error"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_from_the_route_and_from_the_client() {
    let nats = NatsServer::start();
    let routes = r#"  - grpc: "hello.v1.Greeter"
    service: "grpc-hello-service"
    timeout: "2s""#;
    let (gw, grpc) = grpc_gateway(&nats, routes, "");
    let (_c, seen) = test_consumer(&nats, "grpc-hello-service").await;
    let (drop_tx, mut dropped) = mpsc::unbounded_channel();
    *seen.dropped.lock().unwrap() = Some(drop_tx);
    let seen_timeout = || {
        let t = seen.timeout.lock().unwrap().take();
        let t = t.expect("grpc-timeout reached the handler");
        g::parse_timeout(&t).unwrap()
    };

    // Slow consumer, route timeout 2 s, no client deadline.
    let started = Instant::now();
    let err = greeter(grpc)
        .await
        .say_hello(HelloRequest {
            name: "slow".into(),
        })
        .await
        .expect_err("slow");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_eq!(
        err.message(),
        "Request timed out waiting for backend processor"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    // The consumer got the deadline and abandoned the handler.
    assert!(seen_timeout() <= Duration::from_secs(2));
    let what = tokio::time::timeout(Duration::from_secs(10), dropped.recv())
        .await
        .expect("the consumer drops the handler at the deadline");
    assert_eq!(what, Some("slow"));

    // A client deadline shorter than the route timeout: the gateway itself
    // answers DEADLINE_EXCEEDED (raw client: no client-side timer).
    let started = Instant::now();
    let r = raw_grpc(
        grpc,
        "/hello.v1.Greeter/SayHello",
        &[("grpc-timeout", "400m")],
        hello_frame("slow"),
    )
    .await;
    assert_eq!(r.status().0, "4", "{r:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(seen_timeout() <= Duration::from_millis(400));

    // Through tonic's deadline: tonic's own timer ends the call at the
    // client (Cancelled "Timeout expired") about when the gateway does; the
    // deadline still reaches the consumer, which abandons the handler.
    let mut req = Request::new(HelloRequest {
        name: "slow".into(),
    });
    req.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = greeter(grpc).await.say_hello(req).await.unwrap_err();
    assert!(
        err.code() == Code::DeadlineExceeded
            || (err.code() == Code::Cancelled && err.message() == "Timeout expired"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(seen_timeout() <= Duration::from_millis(300));
    for call in ["raw", "tonic"] {
        let what = tokio::time::timeout(Duration::from_secs(10), dropped.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("the consumer drops the {call} call's handler at its deadline")
            });
        assert_eq!(what, Some("slow"));
    }

    let r = raw_grpc(
        grpc,
        "/hello.v1.Greeter/SayHello",
        &[("grpc-timeout", "soon")],
        hello_frame("x"),
    )
    .await;
    assert_eq!(r.status(), ("13".into(), "malformed grpc-timeout".into()));

    assert!(
        gw.metric(r#"grpc_gateway_requests_total{grpc_method="/hello.v1.Greeter/SayHello",grpc_code="DeadlineExceeded"}"#)
            .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_trailers_round_trip() {
    let nats = NatsServer::start();
    let (_gw, grpc) = grpc_gateway(&nats, GREETER_ROUTE, "");
    let _c = test_consumer(&nats, "grpc-hello-service").await;
    let mut client = greeter(grpc).await;

    let mut req = Request::new(HelloRequest {
        name: "meta".into(),
    });
    req.metadata_mut()
        .insert("x-custom", MetadataValue::from_static("v1"));
    req.metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("rid-7"));
    req.metadata_mut()
        .insert_bin("x-data-bin", MetadataValue::from_bytes(&[0, 1, 2, 255]));
    let resp = client.say_hello(req).await.expect("meta call");
    let md = resp.metadata();
    assert_eq!(md.get("echo-x-custom").unwrap(), "v1");
    assert_eq!(md.get("echo-x-request-id").unwrap(), "rid-7");
    assert_eq!(
        md.get("x-request-id").unwrap(),
        "rid-7",
        "echoed by the gateway"
    );
    assert_eq!(md.get("echo-x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(
        md.get_bin("echo-data-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        &[0, 1, 2, 255]
    );

    // An error's metadata arrives as trailers, with its code and message.
    let err = client
        .say_hello(HelloRequest {
            name: "denied".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "not for you");
    assert_eq!(err.metadata().get("x-why").unwrap(), "policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_order_flow_control_errors_and_cancel() {
    let nats = NatsServer::start();
    let (gw, grpc) = grpc_gateway(&nats, GREETER_ROUTE, "");
    let (_c, seen) = test_consumer(&nats, "grpc-hello-service").await;
    let (drop_tx, mut dropped) = mpsc::unbounded_channel();
    *seen.dropped.lock().unwrap() = Some(drop_tx);
    let mut client = greeter(grpc).await;

    // Far more messages than the stream window: all arrive, in order.
    let count = 1000;
    let mut stream = client
        .say_hello_stream(HelloStreamRequest {
            name: "Cy".into(),
            count,
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(m) = stream.message().await.expect("message") {
        n += 1;
        assert_eq!(m.message, format!("Hello, Cy! ({n}/{count})"));
    }
    assert_eq!(n, count);

    // Zero messages, then OK.
    let mut stream = client
        .say_hello_stream(HelloStreamRequest {
            name: "Zed".into(),
            count: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_none());

    // Messages then an error status: the messages, then the error.
    let mut stream = client
        .say_hello_stream(HelloStreamRequest {
            name: "fail".into(),
            count: 0,
        })
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        assert_eq!(
            stream.message().await.unwrap().unwrap().message,
            format!("part {i}")
        );
    }
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(err.message(), "stream failed on purpose");

    // A panic mid-stream ends it with INTERNAL (before or after the
    // response headers, depending on what was ready when it struck).
    let err = match client
        .say_hello_stream(HelloStreamRequest {
            name: "panic".into(),
            count: 5,
        })
        .await
    {
        Err(e) => e,
        Ok(resp) => {
            let mut stream = resp.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(m)) => assert_ne!(m.message, "n 2"),
                    Ok(None) => panic!("a panicking stream ended OK"),
                    Err(e) => break e,
                }
            }
        }
    };
    assert_eq!(err.code(), Code::Internal, "{err:?}");

    // The client goes away mid-stream: the consumer's stream is dropped.
    let mut forever = greeter(grpc).await;
    let mut stream = forever
        .say_hello_stream(HelloStreamRequest {
            name: "forever".into(),
            count: 0,
        })
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        assert_eq!(
            stream.message().await.unwrap().unwrap().message,
            format!("tick {i}")
        );
    }
    drop(stream);
    drop(forever);
    let what = tokio::time::timeout(Duration::from_secs(10), dropped.recv())
        .await
        .expect("the consumer stops streaming once the client is gone");
    assert_eq!(what, Some("stream"));
    eventually(Duration::from_secs(10), "cancelled call recorded", || async {
        gw.metric(r#"grpc_gateway_requests_total{grpc_method="/hello.v1.Greeter/SayHelloStream",grpc_code="Canceled"}"#)
            .await
            == 1.0
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "no gRPC call in flight",
        || async { gw.metric("grpc_gateway_in_flight_requests").await == 0.0 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_panics_oversized_replies_and_unsupported_requests() {
    let nats = NatsServer::start();
    let (_gw, grpc) = grpc_gateway(&nats, GREETER_ROUTE, "");
    let _c = test_consumer(&nats, "grpc-hello-service").await;
    let mut client = greeter(grpc).await;

    let err = client
        .say_hello(HelloRequest {
            name: "panic".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    // Still serving.
    let ok = client
        .say_hello(HelloRequest {
            name: "again".into(),
        })
        .await
        .unwrap();
    assert_eq!(ok.get_ref().message, "Hello, again!");

    // A reply over the NATS max payload (1 MiB): an error, not a timeout.
    let started = Instant::now();
    let err = client
        .say_hello(HelloRequest { name: "big".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("max payload"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Client streaming (two request messages): UNIMPLEMENTED, clearly.
    let mut two = hello_frame("a").to_vec();
    two.extend_from_slice(&hello_frame("b"));
    let r = raw_grpc(grpc, "/hello.v1.Greeter/SayHello", &[], two.into()).await;
    assert_eq!(r.status().0, "12");
    assert!(r.status().1.contains("client-streaming"), "{r:?}");

    // A compressed request: UNIMPLEMENTED, identity advertised.
    let r = raw_grpc(
        grpc,
        "/hello.v1.Greeter/SayHello",
        &[("grpc-encoding", "gzip")],
        hello_frame("a"),
    )
    .await;
    assert_eq!(r.status().0, "12");
    assert_eq!(r.headers["grpc-accept-encoding"], "identity");

    // Not gRPC at all on the gRPC listener: plain HTTP errors.
    let r = http2(grpc, "GET", "/hello.v1.Greeter/SayHello", "").await;
    assert_eq!(r.status, 405);
}

/// A consumer speaking the Go wire format by hand: raw NATS, raw protobuf,
/// Go's error codes (gRPC numbers and 400/500/501).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_wire_format_consumer_answers_through_the_gateway() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client.queue_subscribe("go-grpc", "q".into()).await.unwrap();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<async_nats::Message>();
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let reply = msg.reply.clone().unwrap();
            seen_tx.send(msg.clone()).unwrap();
            let method = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("X-Original-Grpc-Method"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let error = |code: &str, text: &str| {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Service-Error-Code", code);
                h.insert("Nats-Service-Error", text);
                h
            };
            if method != "/hello.v1.Greeter/SayHello" {
                let h = error(
                    "501",
                    &format!("Method {method} not implemented or routed to this NATS service"),
                );
                responder
                    .publish_with_headers(reply, h, Bytes::new())
                    .await
                    .unwrap();
                continue;
            }
            let req = HelloRequest::decode(msg.payload.as_ref()).unwrap();
            let h = match req.name.as_str() {
                "" => Some(error("3", "Name cannot be empty")),
                "http400" => Some(error(
                    "400",
                    "Missing required X-Original-Grpc-Method header",
                )),
                "http500" => Some(error("500", "Internal server error")),
                _ => None,
            };
            match h {
                Some(h) => responder
                    .publish_with_headers(reply, h, Bytes::new())
                    .await
                    .unwrap(),
                None => {
                    let out = HelloReply {
                        message: format!("Hello, {}!", req.name),
                    };
                    // Response metadata and trailers, narun style.
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("Grpc-Metadata-x-served-by", "go");
                    h.insert("Grpc-Trailer-x-cost", "42");
                    responder
                        .publish_with_headers(reply, h, out.encode_to_vec().into())
                        .await
                        .unwrap()
                }
            }
        }
    });
    client.flush().await.unwrap();
    let (_gw, grpc) = grpc_gateway(
        &nats,
        r#"  - grpc: "hello.v1.Greeter"
    service: "go-grpc""#,
        "",
    );
    let mut greeter = greeter(grpc).await;
    let reply = greeter
        .say_hello(HelloRequest { name: "Go".into() })
        .await
        .unwrap();
    assert_eq!(reply.get_ref().message, "Hello, Go!");
    // What the consumer got: the method header and the bare message bytes.
    let msg = seen_rx.recv().await.unwrap();
    assert_eq!(
        msg.payload.as_ref(),
        HelloRequest { name: "Go".into() }
            .encode_to_vec()
            .as_slice(),
        "raw protobuf, no 5-byte frame"
    );
    let h = msg.headers.as_ref().unwrap();
    assert_eq!(
        h.get("X-Original-Grpc-Method").unwrap().as_str(),
        "/hello.v1.Greeter/SayHello"
    );
    let left: u64 = h.get("Narun-Timeout-Ms").unwrap().as_str().parse().unwrap();
    assert!(left > 0 && left <= 30_000, "{left}");

    // Metadata in headers, trailers in trailers (raw HTTP/2 view).
    let r = raw_grpc(
        grpc,
        "/hello.v1.Greeter/SayHello",
        &[("x-client", "raw")],
        hello_frame("Raw"),
    )
    .await;
    assert_eq!(r.status(), ("0".into(), String::new()));
    assert_eq!(r.headers["x-served-by"], "go");
    assert!(r.headers.get("x-cost").is_none());
    let trailers = r.trailers.as_ref().expect("trailers");
    assert_eq!(trailers["x-cost"], "42");
    assert_eq!(
        HelloReply::decode(r.messages[0].as_ref()).unwrap().message,
        "Hello, Raw!"
    );
    let msg = seen_rx.recv().await.unwrap();
    let h = msg.headers.as_ref().unwrap();
    assert_eq!(h.get("Grpc-Metadata-x-client").unwrap().as_str(), "raw");
    assert!(h.get("Grpc-Metadata-content-type").is_none());
    assert!(h.get("Grpc-Metadata-te").is_none());

    for (name, code, message) in [
        ("", Code::InvalidArgument, "Name cannot be empty"),
        (
            "http400",
            Code::InvalidArgument,
            "Missing required X-Original-Grpc-Method header",
        ),
        ("http500", Code::Internal, "Internal server error"),
    ] {
        let err = greeter
            .say_hello(HelloRequest { name: name.into() })
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.message()), (code, message), "{name:?}");
    }
    let err = greeter
        .say_hello_stream(HelloStreamRequest {
            name: "x".into(),
            count: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(
        err.message(),
        "Method /hello.v1.Greeter/SayHelloStream not implemented or routed to this NATS service"
    );
}

/// The Rust consumer behind a gateway that knows only the Go format (no
/// stream window, no deadline): raw NATS requests as the Go gateway sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_consumer_answers_the_go_gateway_format() {
    let nats = NatsServer::start();
    let _c = test_consumer(&nats, "grpc-hello-service").await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let ask = |method: &'static str, name: &str, count: u32| {
        let client = client.clone();
        let payload = if method.ends_with("Stream") {
            HelloStreamRequest {
                name: name.into(),
                count,
            }
            .encode_to_vec()
        } else {
            HelloRequest { name: name.into() }.encode_to_vec()
        };
        async move {
            let mut h = async_nats::HeaderMap::new();
            h.insert("X-Original-Grpc-Method", method);
            client
                .send_request(
                    "grpc-hello-service",
                    async_nats::Request::new()
                        .headers(h)
                        .payload(payload.into())
                        .timeout(Some(Duration::from_secs(10))),
                )
                .await
                .unwrap()
        }
    };
    let reply = ask("/hello.v1.Greeter/SayHello", "Go", 0).await;
    assert!(reply
        .headers
        .as_ref()
        .is_none_or(|h| h.get("Nats-Service-Error-Code").is_none()));
    assert_eq!(
        HelloReply::decode(reply.payload.as_ref()).unwrap().message,
        "Hello, Go!"
    );
    let reply = ask("/hello.v1.Greeter/SayHello", "", 0).await;
    let h = reply.headers.unwrap();
    assert_eq!(h.get("Nats-Service-Error-Code").unwrap().as_str(), "3");
    assert_eq!(
        h.get("Nats-Service-Error").unwrap().as_str(),
        "Name cannot be empty"
    );
    // One message: a plain reply even for a streaming method.
    let reply = ask("/hello.v1.Greeter/SayHelloStream", "One", 1).await;
    assert!(reply
        .headers
        .as_ref()
        .is_none_or(|h| h.get("Narun-Stream-Seq").is_none()));
    assert_eq!(
        HelloReply::decode(reply.payload.as_ref()).unwrap().message,
        "Hello, One! (1/1)"
    );
    // Several: the Go gateway cannot take them.
    let reply = ask("/hello.v1.Greeter/SayHelloStream", "Many", 3).await;
    let h = reply.headers.unwrap();
    assert_eq!(h.get("Nats-Service-Error-Code").unwrap().as_str(), "12");
    // No method header.
    let reply = client
        .request("grpc-hello-service", Bytes::new())
        .await
        .unwrap();
    let h = reply.headers.unwrap();
    assert_eq!(h.get("Nats-Service-Error-Code").unwrap().as_str(), "3");
    assert_eq!(
        h.get("Nats-Service-Error").unwrap().as_str(),
        "Missing required X-Original-Grpc-Method header"
    );
    // With a stream window (the narun gateway), a unary answer is still one
    // plain reply, not a stream.
    let mut h = async_nats::HeaderMap::new();
    h.insert("X-Original-Grpc-Method", "/hello.v1.Greeter/SayHello");
    h.insert("Narun-Stream-Window", "4");
    h.insert("Narun-Timeout-Ms", "5000");
    let reply = client
        .send_request(
            "grpc-hello-service",
            async_nats::Request::new()
                .headers(h)
                .payload(HelloRequest { name: "W".into() }.encode_to_vec().into()),
        )
        .await
        .unwrap();
    assert!(reply
        .headers
        .as_ref()
        .is_none_or(|h| h.get("Narun-Stream-Seq").is_none()));
    assert_eq!(
        HelloReply::decode(reply.payload.as_ref()).unwrap().message,
        "Hello, W!"
    );
    // Micro discovery shows the gRPC endpoint.
    let info = client
        .request("$SRV.INFO.grpc-hello-service", Bytes::new())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["endpoints"][0]["name"], "grpc_handler");
    assert_eq!(info["endpoints"][0]["queue_group"], "q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_serves_http_and_grpc_and_health() {
    let nats = NatsServer::start();
    let gw = GatewayProc::start(
        &nats.url(),
        &format!(
            "{GREETER_ROUTE}\n  - grpc: \"other.v1.Nobody\"\n    service: \"nobody-home\"\n  - path: \"/hello/\"\n    methods: [\"POST\"]\n    service: \"hello\""
        ),
        "grpc_addr: \"{server_addr}\"",
    );
    let _hello = start_hello(&nats, "hello", gw.dir.path()).await;
    let _c = test_consumer(&nats, "grpc-hello-service").await;

    let r = http(gw.http, "POST", "/hello/", &[], r#"{"name":"H"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reply = greeter(gw.http)
        .await
        .say_hello(HelloRequest { name: "G".into() })
        .await
        .unwrap();
    assert_eq!(reply.get_ref().message, "Hello, G!");

    let addr = gw.http;
    let check = |service: &'static str| async move {
        let body = health_request(service);
        raw_grpc(addr, "/grpc.health.v1.Health/Check", &[], g::frame(&body)).await
    };
    let r = check("").await;
    assert_eq!(r.status().0, "0");
    assert_eq!(r.messages, [Bytes::from_static(&[0x08, 1])], "SERVING");
    let r = check("hello.v1.Greeter").await;
    assert_eq!(r.messages, [Bytes::from_static(&[0x08, 1])], "SERVING");
    let r = check("other.v1.Nobody").await;
    assert_eq!(r.messages, [Bytes::from_static(&[0x08, 2])], "NOT_SERVING");
    let r = check("nope.v1.Nope").await;
    assert_eq!(r.status().0, "5", "NOT_FOUND");
    let r = raw_grpc(gw.http, "/grpc.health.v1.Health/Nope", &[], g::frame(&[])).await;
    assert_eq!(r.status().0, "12");

    // gRPC needs HTTP/2: an HTTP/1.1 gRPC request is refused, not forwarded.
    let answer = raw_exchange(
        gw.http,
        b"POST /hello.v1.Greeter/SayHello HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc\r\ncontent-length: 0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 505"), "{answer:?}");
}

/// A server stream read message by message over raw HTTP/2.
struct RawStream {
    body: hyper::body::Incoming,
    decoder: g::FrameDecoder,
    _sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

#[derive(Debug, PartialEq)]
enum RawEvent {
    Message(Bytes),
    Trailers(http::HeaderMap),
    End,
}

impl RawStream {
    async fn open(addr: SocketAddr, path: &str, message: &[u8]) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("h2c handshake");
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(g::frame(message)))
            .unwrap();
        let resp = sender.send_request(req).await.expect("h2 exchange");
        assert_eq!(resp.status(), 200);
        RawStream {
            body: resp.into_body(),
            decoder: g::FrameDecoder::new(usize::MAX),
            _sender: sender,
        }
    }

    /// The next message or the trailers, waiting at most `within`.
    async fn next(&mut self, within: Duration) -> RawEvent {
        loop {
            if let Some(m) = self.decoder.next_message().unwrap() {
                return RawEvent::Message(m);
            }
            let frame = tokio::time::timeout(within, self.body.frame())
                .await
                .expect("a stream event in time");
            let Some(frame) = frame else {
                return RawEvent::End;
            };
            let frame = frame.expect("stream frame");
            match frame.into_data() {
                Ok(data) => self.decoder.push(&data),
                Err(frame) => return RawEvent::Trailers(frame.into_trailers().unwrap()),
            }
        }
    }
}

fn health_request(service: &str) -> Vec<u8> {
    let mut m = vec![0x0a, service.len() as u8];
    m.extend_from_slice(service.as_bytes());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watch_follows_the_consumer_and_ends_at_shutdown() {
    let nats = NatsServer::start();
    let (mut gw, grpc) = grpc_gateway(&nats, GREETER_ROUTE, "shutdown_timeout_seconds: 30");
    let (stop_consumer, _) = test_consumer(&nats, "grpc-hello-service").await;
    let watch = "/grpc.health.v1.Health/Watch";
    let serving = RawEvent::Message(Bytes::from_static(&[0x08, 1]));
    let not_serving = RawEvent::Message(Bytes::from_static(&[0x08, 2]));
    let unknown = RawEvent::Message(Bytes::from_static(&[0x08, 3]));

    let mut routed = RawStream::open(grpc, watch, &health_request("hello.v1.Greeter")).await;
    assert_eq!(routed.next(Duration::from_secs(10)).await, serving);
    let mut nope = RawStream::open(grpc, watch, &health_request("nope.v1.Nope")).await;
    assert_eq!(nope.next(Duration::from_secs(10)).await, unknown);

    // The consumer goes away: the watcher hears about it.
    drop(stop_consumer);
    assert_eq!(routed.next(Duration::from_secs(15)).await, not_serving);

    // Shutdown ends the watches at once instead of draining for 30 s.
    let started = Instant::now();
    gw.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let RawEvent::Trailers(t) = routed.next(Duration::from_secs(10)).await else {
        panic!("expected trailers");
    };
    assert_eq!(t["grpc-status"], "14");
    let status = gw.proc.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
