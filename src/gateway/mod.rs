//! `narun gateway`: the HTTP front door. Each route maps to a NATS Micro
//! service; requests travel as BHTTP over NATS request-reply (see [`crate::wire`]).
//!
//! - [`config`]: the Go-compatible `gateway.yaml` and its validation;
//! - [`routes`]: route matching, a pure function;
//! - [`rescue`]: the one failure → HTTP status / gRPC code table;
//! - [`metrics`]: Prometheus metrics;
//! - [`server`]: listeners, connections, forwarding, shutdown.

pub mod config;
pub mod metrics;
pub mod rescue;
pub mod routes;
pub mod server;

pub use server::{run, GatewayError};
