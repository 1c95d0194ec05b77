//! `narun node`: the agent that runs apps as transient systemd units.
//!
//! - [`units`]: replica → transient unit properties (pure);
//! - [`reconcile`]: desired vs actual → actions (pure);
//! - [`rollout`]: systemd's units as the plan sees them (health), tested
//!   against a recording fake unit manager;
//! - the agent loop wires NATS (specs, binaries, status, heartbeats) to
//!   systemd through [`crate::systemd::UnitManager`].

pub mod agent;
pub mod binaries;
pub mod identity;
pub mod reconcile;
pub mod rollout;
pub mod status;
pub mod units;

pub use agent::{run, NodeConfig, NodeError};
pub mod admin;
pub mod logs;
pub mod metrics;
pub mod snapshot;
