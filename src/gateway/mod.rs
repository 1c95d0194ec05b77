//! `narun gateway`: the HTTP and gRPC front door. Each route maps to a NATS
//! Micro service; HTTP requests travel as BHTTP over NATS request-reply,
//! gRPC calls as raw protobuf messages (see [`crate::wire`]).
//!
//! - [`config`]: the Go-compatible `gateway.yaml` and its validation;
//! - [`routes`]: route matching, a pure function;
//! - [`rescue`]: the one failure → HTTP status / gRPC code table;
//! - [`metrics`]: Prometheus metrics;
//! - [`server`]: listeners, connections, HTTP forwarding, shutdown;
//! - [`shared`]: what HTTP and gRPC share: state, request ids, decorations;
//! - [`grpc`]: gRPC ingress (h2c), forwarding, streaming, health;
//! - [`body`]: the response body type.

pub mod body;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod rescue;
pub mod routes;
pub mod server;
pub mod shared;

pub use server::{run, GatewayError};

/// sysexits(3) EX_CONFIG: the units use `RestartPreventExitStatus=78`.
pub const EX_CONFIG: u8 = 78;

/// Scheduler ticks (task polls) between two polls of the reactor
/// (sockets, timers) while tasks are ready, on the one-thread runtime.
/// tokio's default is 61; its documentation advises a higher value when
/// tasks poll quickly, as the gateway's do (a few µs each). On the bench's
/// fair pair (two A/B runs of 10 alternating rounds, 255 against 61): 1.02x
/// the requests per second, 0.99x the CPU per request, 0.91-0.96x the p99
/// and 0.98x nats-server's CPU per request, all small next to the spread of
/// one round; 1024 measured the same as 255. The gateway's epoll_wait calls
/// stay at 0.05 per request (the run queue empties every ~20 requests):
/// the interval only matters within the larger bursts. The worst delay it
/// adds to an event is 255 short polls (1-2 ms), only while tasks are ready
/// the whole time.
const EVENT_INTERVAL: u32 = 255;

/// `narun gateway` and `narun-gateway`: load the configuration at `path`
/// (only check it with `check`), run the gateway on the runtime its
/// `threads` asks for until SIGTERM/SIGINT. Returns the process exit
/// status: 0, [`EX_CONFIG`] for a bad configuration, 1 for other failures.
pub fn main(path: &std::path::Path, check: bool) -> u8 {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("narun gateway: {e}");
            return EX_CONFIG;
        }
    };
    if check {
        println!("{}: ok", path.display());
        return 0;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cfg.runtime_threads(cores);
    tracing::info!(threads, cores, "gateway runtime");
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .event_interval(EVENT_INTERVAL)
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("narun gateway: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("narun gateway: {e}");
            match e {
                GatewayError::Nats(_) => EX_CONFIG,
                _ => 1,
            }
        }
    }
}
