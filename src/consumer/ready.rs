//! Readiness, the systemd way: `READY=1` on `$NOTIFY_SOCKET` once the
//! endpoint is subscribed. Outside systemd (no `NOTIFY_SOCKET`) nothing
//! happens.
//!
//! The narun node agent gives an app's units `Type=notify` only when the
//! binary can send it: it looks for [`MARKER`] in the executable, which
//! every binary that links this library carries.

use crate::wire::SD_NOTIFY_MARKER as MARKER;

/// Keeps [`MARKER`] in the binary (a static nothing reads could be
/// discarded by the linker).
static MARKER_KEPT: &[u8] = MARKER;

/// Send `READY=1` (and `STATUS=`) to the service manager, if any.
pub fn notify_ready() {
    std::hint::black_box(MARKER_KEPT);
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, b"READY=1\nSTATUS=serving over NATS") {
        tracing::warn!(error = %e, "cannot notify systemd (READY=1)");
    }
}

fn send(path: &std::ffi::OsStr, msg: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.first() {
        // An abstract socket (`@name`).
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..])?
        }
        _ => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(msg, &addr)?;
    Ok(())
}
