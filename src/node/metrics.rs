//! Prometheus metrics of the node agent (default 127.0.0.1:9100).

use std::net::SocketAddr;

use super::snapshot::NodeSnapshot;

/// Serve `/metrics` and `/discovery` on `addr` (not yet implemented).
pub async fn serve(addr: SocketAddr, snapshots: tokio::sync::watch::Receiver<NodeSnapshot>) {
    let _ = (addr, snapshots);
}
