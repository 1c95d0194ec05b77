//! The gRPC `hello.v1.Greeter` consumer (`proto/hello.proto`), a
//! tonic-generated service served over NATS by `narun::consumer::serve_grpc`.
//!
//! - `SayHello{name}` answers `Hello, <name>!`; an empty name is
//!   INVALID_ARGUMENT `Name cannot be empty` (as the Go example);
//! - `SayHelloStream{name, count}` streams `count` greetings
//!   `Hello, <name>! (i/count)`, `--interval-ms` apart.
//!
//! ```text
//! cargo run --example grpc-hello -- --nats-url nats://127.0.0.1:4222 --service grpc-hello-service
//! ```
//!
//! with a gateway route `- grpc: "hello.v1.Greeter"` / `service: "grpc-hello-service"`.

use std::pin::Pin;
use std::time::Duration;

use clap::Parser;
use futures_util::Stream;
use narun_hello_proto::v1::greeter_server::{Greeter, GreeterServer};
use narun_hello_proto::v1::{HelloReply, HelloRequest, HelloStreamRequest};
use tonic::{Request, Response, Status};

#[derive(Parser, Debug)]
struct Args {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// NATS Micro service name (and subject).
    #[arg(long, default_value = "grpc-hello-service")]
    service: String,
    /// Calls handled at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Pause between streamed greetings, in milliseconds.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
}

/// The most greetings one `SayHelloStream` call may ask for.
const MAX_COUNT: u32 = 10_000;

struct Hello {
    interval: Duration,
}

fn name_of(name: &str) -> Result<String, Status> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Status::invalid_argument("Name cannot be empty"));
    }
    Ok(name.to_owned())
}

type GreetingStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = name_of(&request.get_ref().name)?;
        Ok(Response::new(HelloReply {
            message: format!("Hello, {name}!"),
        }))
    }

    type SayHelloStreamStream = GreetingStream;

    async fn say_hello_stream(
        &self,
        request: Request<HelloStreamRequest>,
    ) -> Result<Response<GreetingStream>, Status> {
        let HelloStreamRequest { name, count } = request.into_inner();
        let name = name_of(&name)?;
        if count > MAX_COUNT {
            return Err(Status::invalid_argument(format!(
                "count must be at most {MAX_COUNT}"
            )));
        }
        let interval = self.interval;
        let greetings = futures_util::stream::unfold(1u32, move |i| {
            let name = name.clone();
            async move {
                if i > count {
                    return None;
                }
                if i > 1 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let reply = HelloReply {
                    message: format!("Hello, {name}! ({i}/{count})"),
                };
                Some((Ok(reply), i + 1))
            }
        });
        Ok(Response::new(Box::pin(greetings)))
    }
}

#[tokio::main]
async fn main() {
    // Plain text off a terminal, journald under systemd (narun node).
    narun::logging::init("info");
    let args = Args::parse();
    let mut opts = narun::consumer::Options::new(&args.service);
    opts.nats_url = args.nats_url;
    opts.description = "gRPC hello.v1.Greeter example".into();
    if let Some(c) = args.concurrency {
        opts.concurrency = c;
    }
    let svc = GreeterServer::new(Hello {
        interval: Duration::from_millis(args.interval_ms),
    });
    if let Err(e) = narun::consumer::serve_grpc(opts, svc).await {
        eprintln!("grpc-hello: {e}");
        std::process::exit(1);
    }
}
