//! The service manager's side channels: `sd_notify` (READY, STATUS,
//! STOPPING, WATCHDOG) and socket activation (`LISTEN_FDS` with names).
//! Outside systemd both are no-ops: notify does nothing without
//! `NOTIFY_SOCKET` and no sockets are inherited without `LISTEN_FDS`.

use std::collections::HashMap;
use std::time::Duration;

use sd_notify::NotifyState;

/// Tell the service manager we are ready, with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Update the status line (`systemctl status` shows it).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Tell the service manager we are stopping.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// If the unit sets `WatchdogSec=`, ping at half the interval for as long as
/// the returned task runs. `healthy` is asked before each ping: a process
/// that is stuck stops pinging and systemd restarts it.
pub fn spawn_watchdog<F>(healthy: F) -> Option<tokio::task::JoinHandle<()>>
where
    F: Fn() -> bool + Send + 'static,
{
    let interval = sd_notify::watchdog_enabled()?;
    let period = (interval / 2).max(Duration::from_millis(100));
    tracing::info!(?interval, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if healthy() {
                send(&[NotifyState::Watchdog]);
            }
        }
    }))
}

/// Sockets passed by the service manager, by `FileDescriptorName=`.
/// Sockets without a recognised name are kept in order under `unnamed`.
#[derive(Debug, Default)]
pub struct InheritedSockets {
    pub named: HashMap<String, std::net::TcpListener>,
    pub unnamed: Vec<std::net::TcpListener>,
}

impl InheritedSockets {
    /// Take the socket named `name`, or else the first unnamed one when
    /// `fallback` is set.
    pub fn take(&mut self, name: &str, fallback: bool) -> Option<std::net::TcpListener> {
        if let Some(l) = self.named.remove(name) {
            return Some(l);
        }
        if fallback && !self.unnamed.is_empty() {
            return Some(self.unnamed.remove(0));
        }
        None
    }
}

/// Collect the listening sockets passed with `LISTEN_FDS`/`LISTEN_FDNAMES`.
/// `known` lists the names this program gives a role to; any other name
/// (systemd's default is the socket unit's name) counts as unnamed.
#[allow(unsafe_code)]
pub fn inherited_sockets(known: &[&str]) -> std::io::Result<InheritedSockets> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut out = InheritedSockets::default();
    for (fd, name) in sd_notify::listen_fds_with_names()? {
        // SAFETY: sd_listen_fds(3) hands these descriptors (3.. 3+LISTEN_FDS)
        // to this process, which owns them from now on; `listen_fds_with_names`
        // yields each exactly once (LISTEN_PID was checked) and nothing else
        // in narun touches raw descriptors, so ownership is unique.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let listener = std::net::TcpListener::from(owned);
        listener.set_nonblocking(true)?;
        if known.contains(&name.as_str()) {
            out.named.insert(name, listener);
        } else {
            out.unnamed.push(listener);
        }
    }
    Ok(out)
}
