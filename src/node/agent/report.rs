//! What the agent says about its replicas: status updates (per unit, on
//! change) and the node snapshot (admin UI, metrics, heartbeats).

use std::collections::{BTreeMap, BTreeSet};

use super::*;

impl<M: UnitManager, F: Fleet> Agent<M, F> {
    /// Publish a status message if it differs from the last one under `key`
    /// (a unit name: the two generations of a replica are told apart).
    pub(super) async fn publish(&mut self, app: &str, key: &str, status: InstanceStatus) {
        if self.published.get(key) == Some(&status) {
            return;
        }
        self.published.insert(key.to_owned(), status.clone());
        self.fleet
            .publish(app, status.to_update(&self.cfg.node_id))
            .await;
    }

    pub(super) async fn publish_app_error(&mut self, app: &str, error: &str) {
        let n = self
            .apps
            .get(app)
            .and_then(|a| a.spec.as_ref())
            .map(|s| s.replicas_for(self.node(), &self.cfg.labels, self.arch))
            .unwrap_or(1)
            .max(1);
        for i in 0..n {
            let id = units::instance_id(app, i);
            self.publish(app, &id, InstanceStatus::failed(&id, error))
                .await;
        }
    }

    /// Read every narun unit's state from systemd and publish changes.
    pub(super) async fn publish_status(&mut self) {
        let Ok(list) = self.systemd.list(units::UNIT_GLOB).await else {
            return;
        };
        let mut live = BTreeSet::new();
        let mut live_units = BTreeSet::new();
        let mut replicas: BTreeMap<String, Vec<ReplicaSnapshot>> = BTreeMap::new();
        // Unchanged units are not asked again (the list carries their state);
        // every tenth sweep refreshes all (restarts, memory, CPU).
        let full_sweep = self.sweeps % 10 == 0;
        self.sweeps += 1;
        let now_usec = self.systemd.now_usec();
        // Per slot, its units (two during a rollout) and whether each is
        // up (active or starting).
        let is_up = |state: &str| matches!(state, "active" | "activating" | "reloading");
        // Also its hash, and whether it serves (active, seen ready).
        let mut slots: BTreeMap<(String, u32), Vec<(String, bool)>> = BTreeMap::new();
        let mut serving: BTreeSet<((String, u32), String)> = BTreeSet::new();
        for u in &list {
            if let Some(slot) = units::parse_unit_name(&u.name) {
                let hash = units::hash_from_description(&u.description).unwrap_or_default();
                if u.active_state == "active"
                    && self.was_ready.contains(&(u.name.clone(), hash.to_owned()))
                {
                    serving.insert((slot.clone(), hash.to_owned()));
                }
                slots
                    .entry(slot)
                    .or_default()
                    .push((u.name.clone(), is_up(&u.active_state)));
            }
        }
        for u in list {
            let Some((app, index)) = units::parse_unit_name(&u.name) else {
                continue;
            };
            let id = units::instance_id(&app, index);
            live.insert(id.clone());
            live_units.insert(u.name.clone());
            let hash = units::hash_from_description(&u.description).unwrap_or_default();
            let was_ready = self.was_ready.contains(&(u.name.clone(), hash.to_owned()));
            let key = (
                u.active_state.clone(),
                u.sub_state.clone(),
                hash.to_owned(),
                was_ready,
            );
            // A unit not known ready yet is read every time (its readiness
            // changes with time alone).
            if !full_sweep && was_ready {
                if let Some((k, snap, status)) = self.sweep_cache.get(&u.name) {
                    if *k == key {
                        replicas.entry(app.clone()).or_default().push(snap.clone());
                        let status = status.clone();
                        self.publish(&app, &u.name, status).await;
                        continue;
                    }
                }
            }
            let Ok(Some(details)) = self.systemd.details(&u.name).await else {
                continue;
            };
            let mut status = derive_status(&id, &details).with_hash(hash);
            // The other generation of this replica, if any (a rollout).
            let others: Vec<&(String, bool)> = slots
                .get(&(app.clone(), index))
                .map(|v| v.iter().filter(|(n, _)| *n != u.name).collect())
                .unwrap_or_default();
            if !was_ready {
                // "running" means ready: until then it is starting, and a
                // replica that failed to get there says why.
                let r = self
                    .readiness
                    .get(&app)
                    .copied()
                    .unwrap_or_else(crate::node::rollout::default_readiness);
                match health(&details, &r, now_usec, false) {
                    Health::Ready => {
                        self.was_ready.insert((u.name.clone(), hash.to_owned()));
                    }
                    Health::Pending => {
                        status = InstanceStatus {
                            pid: status.pid,
                            ..InstanceStatus::starting(
                                &id,
                                if r.check {
                                    "waiting for the health check to pass"
                                } else if r.notify {
                                    "waiting for READY=1"
                                } else {
                                    "waiting until it has run for the stable period"
                                },
                            )
                            .with_hash(hash)
                        };
                    }
                    Health::Failed(why) => {
                        // The other generation keeps serving: the plan
                        // rolls this one back.
                        let why = if !others.is_empty() {
                            rolled_back_reason(&why)
                        } else {
                            why
                        };
                        status = InstanceStatus {
                            pid: status.pid,
                            exit_code: status.exit_code,
                            restarts: status.restarts,
                            ..InstanceStatus::failed(&id, &why).with_hash(hash)
                        };
                    }
                }
            }
            // The last rollback of this replica, on the version that kept
            // serving (`narun apps info`).
            if let Some((bad, why)) = self.rolled_back.get(&(app.clone(), index)) {
                if bad != hash && status.status == "running" {
                    status.error = Some(format!("rolled back from {bad}: {why}"));
                }
            }
            let snap = ReplicaSnapshot {
                index,
                instance_id: id.clone(),
                unit: u.name.clone(),
                active_state: details.active_state.clone(),
                sub_state: details.sub_state.clone(),
                status: status.status.to_owned(),
                pid: details.main_pid,
                active_since_unix: if details.active_state == "active" {
                    (details.active_enter_usec / 1_000_000) as i64
                } else {
                    0
                },
                restarts: details.n_restarts,
                last_exit_code: status.exit_code,
                memory_current_bytes: details.memory_current,
                cpu_usage_seconds: details.cpu_usage_nsec.map(|n| n as f64 / 1e9),
                spec_hash: hash.to_owned(),
            };
            replicas.entry(app.clone()).or_default().push(snap.clone());
            self.sweep_cache
                .insert(u.name.clone(), (key, snap, status.clone()));
            // A generation that served and is going away while the other
            // one of its slot is up was replaced: the replica did not stop.
            let replaced =
                was_ready && !is_up(&details.active_state) && others.iter().any(|(_, up)| *up);
            // The same version moving back to the slot's main name while
            // the other unit serves: the replica is not starting.
            let moving_back = !self.was_ready.contains(&(u.name.clone(), hash.to_owned()))
                && status.status != "failed"
                && serving.contains(&((app.clone(), index), hash.to_owned()));
            if !replaced && !moving_back {
                self.publish(&app, &u.name, status).await;
            }
        }
        self.sweep_cache.retain(|unit, _| live_units.contains(unit));
        self.update_snapshot(replicas);
        // Secret files of units that are gone.
        if let Ok(entries) = std::fs::read_dir(self.cfg.runtime_dir.join("secrets")) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let Some(unit) = file.strip_suffix(".env") else {
                    continue;
                };
                let live_unit = units::parse_unit_name(unit)
                    .is_some_and(|(a, i)| live.contains(&units::instance_id(&a, i)));
                let pending = self.pending_env.contains_key(unit);
                if !live_unit && !pending {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // Secret file directories of apps with no unit and no such spec.
        if let Ok(entries) = std::fs::read_dir(self.cfg.runtime_dir.join("files")) {
            for e in entries.flatten() {
                let app = e.file_name().to_string_lossy().into_owned();
                let wanted = self
                    .apps
                    .get(&app)
                    .and_then(|a| a.spec.as_ref())
                    .is_some_and(|s| !s.secrets.is_empty());
                let running = live
                    .iter()
                    .any(|id| spec::split_instance_id(id).is_some_and(|(a, _)| a == app));
                if !wanted && !running {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        // Instances whose unit vanished on its own (e.g. stopped by hand).
        let gone: Vec<(String, InstanceStatus)> = {
            self.published
                .iter()
                .filter(|(_, s)| !live.contains(&s.instance_id) && s.is_active())
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect()
        };
        for (key, s) in gone {
            if let Some((app, _)) = spec::split_instance_id(&s.instance_id) {
                let app = app.to_owned();
                self.publish(&app, &key, InstanceStatus::stopped(&s.instance_id, None))
                    .await;
            }
        }
    }

    /// Rebuild the node snapshot (admin UI, metrics) from the app state
    /// and the replicas just read from systemd.
    pub(super) fn update_snapshot(&self, mut replicas: BTreeMap<String, Vec<ReplicaSnapshot>>) {
        let apps = &self.apps;
        let mut names: BTreeSet<String> = apps.keys().cloned().collect();
        names.extend(replicas.keys().cloned());
        let snapshot_apps = names
            .into_iter()
            .map(|name| {
                let app = apps.get(&name);
                let spec = app.and_then(|a| a.spec.as_ref());
                let mut reps = replicas.remove(&name).unwrap_or_default();
                reps.sort_by_key(|r| r.index);
                AppSnapshot {
                    tag: spec.map(|s| s.tag.clone()).unwrap_or_default(),
                    mode: spec.map(|s| s.mode.as_str().to_owned()).unwrap_or_default(),
                    desired: spec
                        .map(|s| s.replicas_for(self.node(), &self.cfg.labels, self.arch))
                        .unwrap_or(0),
                    error: app.and_then(|a| a.spec_error.clone().or(a.fetch_error.clone())),
                    metrics_port: spec.map(|s| s.metrics.port).unwrap_or(0),
                    metrics_path: spec
                        .map(|s| s.metrics_path().to_owned())
                        .unwrap_or_default(),
                    replicas: reps,
                    name,
                }
            })
            .collect();
        let snap = NodeSnapshot {
            node_id: self.node().to_owned(),
            version: crate::VERSION.to_owned(),
            started_unix: self.started.unix_timestamp(),
            nats_connected: self.fleet.connected(),
            nats_url: self.cfg.nats.urls.join(","),
            systemd_version: self.systemd_version_string.clone(),
            os: self.os.to_owned(),
            arch: self.arch.to_owned(),
            labels: self
                .cfg
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            apps: snapshot_apps,
        };
        self.snapshot.send_replace(snap);
    }

    pub(super) fn status_line(&self) -> String {
        let apps = self.apps.len();
        let running = self
            .published
            .values()
            .filter(|s| s.status == "running")
            .count();
        format!("{apps} apps, {running} replicas running")
    }
}
