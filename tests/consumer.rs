//! The consumer library against a real nats-server, driven by raw NATS
//! requests (no gateway): what any peer, a Go gateway included, may send.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::*;
use futures_util::Stream;
use narun::wire::{self, grpc as g};
use narun_hello_proto::prost::Message as _;
use narun_hello_proto::v1::greeter_server::{Greeter, GreeterServer};
use narun_hello_proto::v1::{HelloReply, HelloRequest, HelloStreamRequest};
use tokio::sync::oneshot;

/// Far more distinct header names than `http::HeaderMap` holds (24,576):
/// decoding them into one used to panic, and the caller got no reply.
const HUGE: usize = 30_000;

/// How long a test waits for a reply: the consumer answers at once; without
/// a reply the request fails after this instead of hanging.
const REPLY_WAIT: Duration = Duration::from_secs(20);

async fn client(nats: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(REPLY_WAIT))
        .connect(nats.url())
        .await
        .expect("connect")
}

/// Serve `router` as HTTP consumer `service` until the sender drops.
async fn http_consumer(nats: &NatsServer, service: &str, router: Router) -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel::<()>();
    let mut opts = narun::consumer::Options::new(service);
    opts.nats_url = nats.url();
    tokio::spawn(async move {
        narun::consumer::serve_with_shutdown(opts, router, async {
            let _ = rx.await;
        })
        .await
        .expect("consumer serves");
    });
    wait_service(&nats.url(), service).await;
    tx
}

/// A BHTTP `GET /hello/` with `extra` distinct header fields `x-<i>: v`.
fn get_hello(extra: usize) -> Vec<u8> {
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", "test".parse().unwrap());
    let mut bytes =
        wire::encode_request(&http::Method::GET, "h", "/hello/", &headers, b"").expect("encodes");
    if extra == 0 {
        return bytes;
    }
    // Past the encoder's limits: build it by hand, as a foreign peer would.
    let mut m = bhttp::Message::request(
        b"GET".to_vec(),
        Vec::new(),
        b"h".to_vec(),
        b"/hello/".to_vec(),
    );
    for i in 0..extra {
        m.put_header(format!("x-{i}"), "v");
    }
    bytes.clear();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut bytes).unwrap();
    bytes
}

fn bhttp_headers() -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(wire::CONTENT_TYPE_HEADER, wire::CONTENT_TYPE_BHTTP);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_header_fields_get_a_prompt_431_and_serving_goes_on() {
    let nats = NatsServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let router = Router::new().route(
        "/hello/",
        get(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async { "hi" }
        }),
    );
    let _stop = http_consumer(&nats, "huge", router).await;
    let nc = client(&nats).await;

    let payload = Bytes::from(get_hello(HUGE));
    assert!(payload.len() < nc.server_info().max_payload);
    let reply = nc
        .request_with_headers("huge", bhttp_headers(), payload)
        .await
        .expect("a reply, not a timeout");
    let err = wire::service_error(reply.headers.as_ref())
        .unwrap_or_else(|| panic!("a Micro error reply, got {reply:?}"));
    assert_eq!(err.code, 431, "{err:?}");
    assert!(
        err.message.contains("Request Header Fields Too Large"),
        "{err:?}"
    );
    assert!(reply.payload.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never runs");

    // Just under the limit is served.
    let under = wire::MAX_FIELD_LINES - 1;
    let reply = nc
        .request_with_headers("huge", bhttp_headers(), get_hello(under).into())
        .await
        .expect("reply");
    assert!(wire::service_error(reply.headers.as_ref()).is_none());
    assert_eq!(wire::decode_response(&reply.payload).unwrap().status(), 200);

    // The consumer still serves normal requests.
    let reply = nc
        .request_with_headers("huge", bhttp_headers(), get_hello(0).into())
        .await
        .expect("reply");
    let resp = wire::decode_response(&reply.payload).expect("a BHTTP response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().as_ref(), b"hi");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A Greeter answering `Hello, <name>!`.
struct Hello;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<HelloReply, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(
        &self,
        req: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        Ok(tonic::Response::new(HelloReply {
            message: format!("Hello, {}!", req.into_inner().name),
        }))
    }

    type SayHelloStreamStream = ReplyStream;

    async fn say_hello_stream(
        &self,
        _req: tonic::Request<HelloStreamRequest>,
    ) -> Result<tonic::Response<ReplyStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}

/// The gRPC consumer: metadata past the wire limits (as NATS headers) is
/// refused with RESOURCE_EXHAUSTED at once, and the consumer keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_much_grpc_metadata_gets_a_prompt_error_and_serving_goes_on() {
    let nats = NatsServer::start();
    let (tx, rx) = oneshot::channel::<()>();
    let mut opts = narun::consumer::Options::new("greeter");
    opts.nats_url = nats.url();
    tokio::spawn(async move {
        narun::consumer::serve_grpc_with_shutdown(opts, GreeterServer::new(Hello), async {
            let _ = rx.await;
        })
        .await
        .expect("gRPC consumer serves");
    });
    wait_service(&nats.url(), "greeter").await;
    let _stop = tx;
    let nc = client(&nats).await;
    let request = |metadata: usize| {
        let mut h = async_nats::HeaderMap::new();
        h.insert(g::METHOD_HEADER, "/hello.v1.Greeter/SayHello");
        for i in 0..metadata {
            h.insert(format!("{}x-{i}", g::METADATA_PREFIX).as_str(), "v");
        }
        let body = HelloRequest {
            name: "NATS".into(),
        }
        .encode_to_vec();
        (h, Bytes::from(body))
    };

    let (h, body) = request(HUGE);
    let reply = nc
        .request_with_headers("greeter", h, body)
        .await
        .expect("a reply, not a timeout");
    let err = wire::service_error(reply.headers.as_ref())
        .unwrap_or_else(|| panic!("a Micro error reply, got {reply:?}"));
    assert_eq!(err.code, u32::from(g::code::RESOURCE_EXHAUSTED), "{err:?}");

    let (h, body) = request(1);
    let reply = nc
        .request_with_headers("greeter", h, body)
        .await
        .expect("reply");
    assert!(wire::service_error(reply.headers.as_ref()).is_none());
    let hello = HelloReply::decode(reply.payload).expect("a HelloReply");
    assert_eq!(hello.message, "Hello, NATS!");
}

/// A consumer whose NATS client closes under it (not a stop it was asked
/// for) returns an error, so the process fails and its supervisor
/// (systemd's `Restart=on-failure`) starts it again, instead of exiting 0
/// as if stopped on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_client_closes_fails_instead_of_exiting_cleanly() {
    let nats = NatsServer::start();
    let c = client(&nats).await;
    let router = Router::new().route("/", get(|| async { "hi" }));
    let serving = tokio::spawn(narun::consumer::serve_on(
        c.clone(),
        narun::consumer::Options::new("lost"),
        router,
        std::future::pending::<()>(),
    ));
    wait_service(&nats.url(), "lost").await;
    c.drain().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("serving ends once its client is closed")
        .unwrap();
    assert!(
        matches!(result, Err(narun::consumer::Error::SubscriptionEnded)),
        "{result:?}"
    );
}
