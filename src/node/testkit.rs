//! Recording fakes of the agent's two outside systems, for unit tests of
//! pure logic and of the agent loop: [`FakeUnits`] (systemd) and
//! [`FakeFleet`] (NATS). The real paths are tested against a real
//! nats-server and a real private systemd (tests/).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::binaries::{has_notify_marker, Fetched};
use super::fleet::Fleet;
use crate::store::{self, StatusUpdate};
use crate::systemd::{Prop, ServiceDetails, SystemdError, TransientUnit, UnitManager, UnitState};

/// A unit manager that keeps units in memory, records every call, and
/// whose units change state (and clock) only when the test says so.
/// Clones share the same units.
#[derive(Clone, Default)]
pub struct FakeUnits(Arc<UnitsInner>);

#[derive(Default)]
struct UnitsInner {
    units: Mutex<BTreeMap<String, (UnitState, ServiceDetails)>>,
    calls: Mutex<Vec<String>>,
    now_usec: Mutex<u64>,
}

impl FakeUnits {
    /// Set a unit's state (entering `active` stamps the current time).
    pub fn set(&self, name: &str, active: &str, sub: &str, edit: impl FnOnce(&mut ServiceDetails)) {
        let now = self.now_usec();
        let mut units = self.0.units.lock().unwrap();
        let (u, d) = units.get_mut(name).expect("a unit the test started");
        if active == "active" && u.active_state != "active" {
            d.active_enter_usec = now;
        }
        u.active_state = active.into();
        u.sub_state = sub.into();
        d.active_state = active.into();
        d.sub_state = sub.into();
        edit(d);
    }

    /// The units loaded, by name.
    pub fn names(&self) -> Vec<String> {
        self.0.units.lock().unwrap().keys().cloned().collect()
    }

    /// A loaded unit's description (it carries the spec hash).
    pub fn description(&self, name: &str) -> Option<String> {
        self.0
            .units
            .lock()
            .unwrap()
            .get(name)
            .map(|(u, _)| u.description.clone())
    }

    /// Every call so far ("start UNIT", "stop UNIT", "reset-failed UNIT").
    pub fn calls(&self) -> Vec<String> {
        self.0.calls.lock().unwrap().clone()
    }

    /// The calls since the last time this was asked, without reset-failed.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.calls.lock().unwrap())
            .into_iter()
            .filter(|c| !c.starts_with("reset-failed "))
            .collect()
    }

    /// Move the clock on.
    pub fn advance(&self, d: Duration) {
        *self.0.now_usec.lock().unwrap() += d.as_micros() as u64;
    }

    fn add(&self, unit: &TransientUnit, how: &str) {
        let now = self.now_usec();
        let description = match unit.get("Description") {
            Some(Prop::Str(d)) => d.clone(),
            _ => String::new(),
        };
        let notify = matches!(unit.get("Type"), Some(Prop::Str(t)) if t == "notify");
        let (active, sub) = if notify {
            ("activating", "start")
        } else {
            ("active", "running")
        };
        self.0
            .calls
            .lock()
            .unwrap()
            .push(format!("{how} {}", unit.name));
        let exec_start_args = match unit.get("ExecStart") {
            Some(Prop::Exec(e)) => e.iter().flat_map(|c| c.argv.clone()).collect(),
            _ => Vec::new(),
        };
        self.0.units.lock().unwrap().insert(
            unit.name.clone(),
            (
                UnitState {
                    name: unit.name.clone(),
                    description,
                    active_state: active.into(),
                    sub_state: sub.into(),
                },
                ServiceDetails {
                    active_state: active.into(),
                    sub_state: sub.into(),
                    main_pid: 1,
                    inactive_exit_usec: now,
                    active_enter_usec: if notify { 0 } else { now },
                    exec_start_args,
                    ..ServiceDetails::default()
                },
            ),
        );
    }
}

impl UnitManager for FakeUnits {
    async fn version(&self) -> Result<String, SystemdError> {
        Ok("252".into())
    }
    async fn start_transient(&self, unit: &TransientUnit) -> Result<(), SystemdError> {
        self.add(unit, "start");
        Ok(())
    }
    async fn start_transient_queued(&self, unit: &TransientUnit) -> Result<(), SystemdError> {
        self.add(unit, "start");
        Ok(())
    }
    async fn stop(&self, name: &str) -> Result<(), SystemdError> {
        self.0.calls.lock().unwrap().push(format!("stop {name}"));
        self.0.units.lock().unwrap().remove(name);
        Ok(())
    }
    async fn reset_failed(&self, name: &str) -> Result<(), SystemdError> {
        self.0
            .calls
            .lock()
            .unwrap()
            .push(format!("reset-failed {name}"));
        Ok(())
    }
    async fn list(&self, pattern: &str) -> Result<Vec<UnitState>, SystemdError> {
        // One `*`, as the agent's patterns.
        let (prefix, suffix) = pattern.split_once('*').unwrap_or((pattern, ""));
        Ok(self
            .0
            .units
            .lock()
            .unwrap()
            .values()
            .filter(|(u, _)| u.name.starts_with(prefix) && u.name.ends_with(suffix))
            .map(|(u, _)| u.clone())
            .collect())
    }
    async fn details(&self, name: &str) -> Result<Option<ServiceDetails>, SystemdError> {
        Ok(self
            .0
            .units
            .lock()
            .unwrap()
            .get(name)
            .map(|(_, d)| d.clone()))
    }
    fn now_usec(&self) -> u64 {
        *self.0.now_usec.lock().unwrap()
    }
}

/// A fleet whose object store, secrets and status subject are in memory.
/// Downloads land in `dir` (a binary cache layout: `<hex>/<object>`).
#[derive(Clone)]
pub struct FakeFleet(Arc<FleetInner>);

struct FleetInner {
    dir: PathBuf,
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    secrets: Mutex<BTreeMap<String, (Vec<u8>, u64)>>,
    published: Mutex<Vec<(String, StatusUpdate)>>,
}

impl FakeFleet {
    /// Downloads go to `dir` (the agent's `<data>/binaries`).
    pub fn new(dir: PathBuf) -> Self {
        FakeFleet(Arc::new(FleetInner {
            dir,
            objects: Mutex::default(),
            secrets: Mutex::default(),
            published: Mutex::default(),
        }))
    }

    /// Upload (or replace) `app`'s binary at `tag` for linux/amd64 and
    /// the machine's own platform.
    pub fn upload(&self, app: &str, tag: &str, content: &[u8]) {
        let (os, arch) = super::agent::go_os_arch();
        let object = store::binary::object_name(app, tag, os, arch);
        self.0
            .objects
            .lock()
            .unwrap()
            .insert(object, content.to_vec());
    }

    /// The status updates published since the last call, as
    /// "instance status[: error]" lines.
    pub fn take_published(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.published.lock().unwrap())
            .into_iter()
            .map(|(_, u)| {
                let status = serde_json::to_value(u.status).unwrap();
                let status = status.as_str().unwrap_or_default().to_owned();
                if u.error.is_empty() {
                    format!("{} {status}", u.instance_id)
                } else {
                    format!("{} {status}: {}", u.instance_id, u.error)
                }
            })
            .collect()
    }
}

impl Fleet for FakeFleet {
    async fn publish(&self, app: &str, update: StatusUpdate) {
        self.0
            .published
            .lock()
            .unwrap()
            .push((app.to_owned(), update));
    }

    async fn secret(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, String> {
        Ok(self.0.secrets.lock().unwrap().get(name).cloned())
    }

    async fn file(&self, object: &str) -> Result<Fetched, String> {
        Err(format!("file '{object}' not found"))
    }

    async fn binary(&self, app: &str, tag: &str) -> Result<Fetched, String> {
        let (os, arch) = super::agent::go_os_arch();
        let object = store::binary::object_name(app, tag, os, arch);
        let content = self
            .0
            .objects
            .lock()
            .unwrap()
            .get(&object)
            .cloned()
            .ok_or_else(|| format!("binary object '{object}' not found"))?;
        let sha: [u8; 32] = Sha256::digest(&content).into();
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.0.dir.join(hex).join(&object);
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&path, &content).map_err(|e| e.to_string())?;
        Ok(Fetched {
            path,
            digest: store::binary::digest_string(&sha),
            notify: has_notify_marker(&content),
        })
    }

    fn connected(&self) -> bool {
        true
    }
}
