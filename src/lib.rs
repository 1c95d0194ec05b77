//! narun: ship static binaries to fleets of Linux machines and expose them as
//! HTTP and gRPC APIs over NATS, with systemd as the only supervisor.
//!
//! Module map (one module per external system):
//!
//! - [`wire`]: the only owner of the wire contract between gateways and
//!   consumers (BHTTP over NATS Micro, header names, limits).
//! - [`nats`]: the one place that builds NATS clients.
//! - [`limits`]: size limits on what narun reads (files, specs), and the
//!   bounded reads that enforce them.
//! - [`consumer`] (feature `consumer`): serve any `tower::Service` (an axum
//!   `Router`, ...) as a NATS Micro service.
//! - [`logging`] (feature `consumer`): the logging setup of the daemons and
//!   of consumer apps (plain text off a terminal, journald under systemd).
//! - [`gateway`] (feature `gateway`): the HTTP and gRPC front door.
//! - [`sd`] (feature `gateway`): the service manager's notify socket and
//!   socket activation.
//! - [`spec`] (feature `store`): the ServiceSpec (YAML in KV `app-configs`),
//!   its validation and per-node hash; pure.
//! - [`store`] (feature `store`): the NATS data model (bucket, stream and
//!   subject names and settings, JSON formats, secret crypto, binaries).
//! - [`cli`] (feature `cli`): the `narun` management commands.
//! - [`bridge`] (feature `cli`): proxy mode, any HTTP server as an app
//!   (`narun bridge`, run by nodes inside the app's unit).

#![deny(unsafe_code)]

#[cfg(any(feature = "gateway", feature = "store"))]
pub mod duration;
pub mod limits;
pub mod nats;
pub mod wire;

#[cfg(feature = "consumer")]
pub mod consumer;

#[cfg(feature = "consumer")]
pub mod logging;

#[cfg(feature = "gateway")]
pub mod gateway;

#[cfg(any(feature = "gateway", feature = "node"))]
pub mod sd;

#[cfg(feature = "node")]
pub mod systemd;

#[cfg(feature = "node")]
pub mod node;

#[cfg(feature = "exec")]
pub mod exec;

#[cfg(feature = "cli")]
pub mod dev;

#[cfg(feature = "store")]
pub mod spec;

#[cfg(feature = "store")]
pub mod store;

#[cfg(feature = "cli")]
pub mod cli;

#[cfg(feature = "cli")]
pub mod bridge;

/// The version string reported by every narun component.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
