//! `narun node`: the agent that runs apps as transient systemd units.
//!
//! - [`units`]: replica → transient unit properties (pure);
//! - [`reconcile`]: desired vs actual → actions (pure);
//! - [`rollout`]: systemd's units as the plan sees them (health);
//! - [`agent`]: the loop. It owns the agent's state and reacts to events
//!   (spec, binary, secret and file changes, finished downloads) and
//!   timers; every systemd call goes through
//!   [`crate::systemd::UnitManager`], every NATS one through
//!   [`fleet::Fleet`], so its tests drive it with recording fakes;
//! - [`fleet`]: the node's side of NATS (watches, heartbeats, downloads,
//!   status updates).

pub mod agent;
pub mod binaries;
#[cfg(feature = "cli")]
pub mod cmd;
pub mod fleet;
pub mod identity;
pub mod reconcile;
pub mod rollout;
pub mod status;
#[cfg(test)]
mod testkit;
pub mod units;

pub use agent::{run, NodeConfig, NodeError};
pub mod admin;
pub mod logs;
pub mod metrics;
pub mod snapshot;
