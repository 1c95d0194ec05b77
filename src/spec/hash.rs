//! The per-node instance hash ([`super::ServiceSpec::node_hash`]).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ServiceSpec;

/// What one node's instances run. Serialized as JSON (field order fixed,
/// defaults left out) and hashed.
#[derive(Serialize)]
struct Input<'a> {
    /// Bump only to force every instance of every app to restart.
    v: u32,
    spec: &'a ServiceSpec,
    arch: &'a str,
    digest: &'a str,
}

pub(super) fn node_hash(
    spec: &ServiceSpec,
    _node_id: &str,
    _labels: &BTreeMap<String, String>,
    arch: &str,
    binary_digest: &str,
) -> String {
    // Placement and metadata do not reach an instance.
    let mut template = spec.clone();
    template.nodes.clear();
    template.node_selector = None;
    template.description.clear();
    template.labels.clear();
    template.command.clear();
    template.cgroup_parent.clear();
    template.jail = Default::default();
    let input = Input {
        v: 1,
        spec: &template,
        arch,
        digest: binary_digest,
    };
    let json = serde_json::to_vec(&input).expect("a spec always serializes");
    let sum = Sha256::digest(&json);
    sum[..8].iter().map(|b| format!("{b:02x}")).collect()
}
