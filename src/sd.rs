//! The service manager's side channels: `sd_notify` (READY, STATUS,
//! STOPPING, WATCHDOG) and socket activation (`LISTEN_FDS` with names).
//! Outside systemd both are no-ops: notify does nothing without
//! `NOTIFY_SOCKET` and no sockets are inherited without `LISTEN_FDS`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// If the unit sets `WatchdogSec=`, ping at half the interval as long as
/// the tokio runtime is alive. A runtime task records a heartbeat; a plain
/// thread sends the pings (the notify socket is blocking, and must never
/// stall a runtime worker) only while the heartbeat is fresh, so a stuck
/// runtime stops the pings and systemd restarts the process.
pub fn spawn_watchdog() -> Option<Duration> {
    let interval = sd_notify::watchdog_enabled()?;
    let period = (interval / 2).max(Duration::from_millis(50));
    let origin = std::time::Instant::now();
    let beat = Arc::new(AtomicU64::new(0));
    let runtime_beat = beat.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        loop {
            tick.tick().await;
            runtime_beat.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    });
    let spawned = std::thread::Builder::new()
        .name("sd-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(period);
            let last = Duration::from_millis(beat.load(Ordering::Relaxed));
            if origin.elapsed().saturating_sub(last) < interval {
                send(&[NotifyState::Watchdog]);
            } else {
                tracing::error!("runtime unresponsive: withholding watchdog ping");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the watchdog thread");
        return None;
    }
    tracing::info!(?interval, "systemd watchdog enabled");
    Some(interval)
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
