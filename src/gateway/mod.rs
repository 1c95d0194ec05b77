//! `narun gateway`: the HTTP and gRPC front door. Each route maps to a NATS
//! Micro service; HTTP requests travel as BHTTP over NATS request-reply,
//! gRPC calls as raw protobuf messages (see [`crate::wire`]).
//!
//! - [`config`]: the Go-compatible `gateway.yaml` and its validation;
//! - [`routes`]: route matching, a pure function;
//! - [`rescue`]: the one failure → HTTP status / gRPC code table;
//! - [`metrics`]: Prometheus metrics;
//! - [`server`]: listeners, connections, HTTP forwarding, shutdown;
//! - [`grpc`]: gRPC ingress (h2c), forwarding, streaming, health;
//! - [`body`]: the response body type.

pub mod body;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod rescue;
pub mod routes;
pub mod server;

pub use server::{run, GatewayError};
