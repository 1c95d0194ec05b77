//! The node admin web UI (default 127.0.0.1:9101).

use std::net::SocketAddr;

use super::snapshot::NodeSnapshot;

/// Serve the admin UI on `addr` from snapshots (not yet implemented).
pub async fn serve(
    addr: SocketAddr,
    snapshots: tokio::sync::watch::Receiver<NodeSnapshot>,
    journalctl: Vec<String>,
) {
    let _ = (addr, snapshots, journalctl);
}
