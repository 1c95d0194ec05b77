//! Spec → the transient units of its replicas on this node (with the
//! files the units need: landlock policy, exec wrapper).

use std::path::PathBuf;

use super::secrets::Prepared;
use super::*;

impl<M: UnitManager, F: Fleet> Agent<M, F> {
    /// The service manager the apps run in.
    pub(super) fn manager(&self) -> units::Manager {
        if self.cfg.user_manager {
            units::Manager::User {
                apps_dir: self.cfg.data_dir.join("apps"),
            }
        } else {
            units::Manager::System
        }
    }

    pub(super) fn replicas(
        &self,
        spec: &ServiceSpec,
        bin: &Fetched,
        n: u32,
        prepared: &Prepared,
    ) -> Result<Vec<Desired>, String> {
        let manager = self.manager();
        if self.cfg.user_manager && !spec.user.is_empty() {
            return Err(format!(
                "user: {} needs the system service manager; this node runs apps in a user's manager",
                spec.user
            ));
        }
        let identity = crate::node::identity::identity(
            &spec.user,
            self.cfg.allow_root_apps,
            &crate::node::identity::Nss,
        )?;
        let network = match (spec.network(), spec.network_namespace_path.as_str()) {
            (_, path) if !path.is_empty() => Network::Namespace(path.to_owned()),
            (spec::Network::None, _) if !spec.nonet.local_ports.is_empty() => Network::Loopback,
            (spec::Network::None, _) => Network::None,
            _ => Network::Host,
        };
        let files: Vec<PathBuf> = prepared.files.iter().map(|(p, _)| p.clone()).collect();
        let secrets_host_dir = self.secret_files_dir(&spec.name);
        let has_secret_files = self.has_secret_files(spec);
        let landlock = match units::landlock_policy(
            spec,
            &bin.path,
            &files,
            &manager,
            has_secret_files.then_some(secrets_host_dir.as_path()),
        ) {
            Some(policy) => Some(self.write_policy(&spec.name, &policy)?),
            None => None,
        };
        let exec_wrapper = if units::args_need_wrapper(&spec.args) {
            Some(self.exec_wrapper("args with characters systemd cannot store verbatim")?)
        } else {
            None
        };
        let secret_files = if !has_secret_files {
            None
        } else {
            Some(units::SecretFiles {
                dir: secrets_host_dir.clone(),
                // A user's manager needs no hand-over: the files are its own.
                helper: if self.cfg.user_manager {
                    self.cfg.exec_wrapper.clone()
                } else {
                    self.exec_wrapper("secrets")?
                },
            })
        };
        let probe = match units::probe(&spec.health) {
            Some(p) => Some((self.exec_wrapper("a health check")?, p)),
            None => None,
        };
        let hash = units::unit_hash(
            &spec.node_hash(self.node(), &self.cfg.labels, self.arch, &bin.digest),
            &prepared.extra,
        );
        let env: Vec<(String, String)> = spec
            .env
            .iter()
            .filter(|e| e.value_from_secret.is_empty())
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        let nonzero = |v: u64| (v > 0).then_some(v);
        Ok((0..n)
            .map(|index| {
                let r = Replica {
                    app: spec.name.clone(),
                    index,
                    node_id: self.node().to_owned(),
                    node_os: self.os.into(),
                    node_arch: self.arch.into(),
                    hash: hash.clone(),
                    binary: bin.path.clone(),
                    args: spec.args.clone(),
                    env: env.clone(),
                    nats_url: self.cfg.app_nats_url.clone(),
                    nats_ca: self
                        .cfg
                        .app_tls_ca
                        .as_ref()
                        .map(|p| p.display().to_string()),
                    nats_creds: self.cfg.app_identity.is_some().then(|| {
                        manager
                            .secrets_dir(&secrets_host_dir)
                            .join(super::secrets::APP_CREDS_FILE)
                            .display()
                            .to_string()
                    }),
                    identity: identity.clone(),
                    memory_low_mb: nonzero(spec.memory_mb),
                    memory_max_mb: nonzero(spec.memory_max_mb),
                    cpu_cores: (spec.cpu_cores > 0.0).then_some(spec.cpu_cores),
                    tasks_max: spec.tasks_max.map(u64::from),
                    restart: Restart {
                        policy: match spec.restart.policy {
                            spec::RestartPolicy::Always => "always",
                            spec::RestartPolicy::OnFailure => "on-failure",
                            spec::RestartPolicy::Never => "no",
                        },
                        delay: spec.restart.delay.0,
                        max: spec.restart.max_restarts,
                        window: spec.restart.window.0,
                    },
                    stop_timeout: spec.stop_timeout.0,
                    network: network.clone(),
                    systemd_version: self.systemd_version,
                    environment_file: prepared
                        .env
                        .as_ref()
                        .map(|_| self.env_file(&units::unit_name(&spec.name, index))),
                    next: false,
                    notify: spec.health.notify.unwrap_or(bin.notify),
                    probe: probe.clone(),
                    bridge: spec.http.as_ref().map(|h| units::Bridge {
                        binary: self.cfg.bridge_binary.clone(),
                        port: h.port,
                    }),
                    files: prepared.files.clone(),
                    landlock: landlock.clone(),
                    exec_wrapper: exec_wrapper.clone(),
                    secret_files: secret_files.clone(),
                    manager: manager.clone(),
                };
                let next = Replica {
                    next: true,
                    environment_file: r
                        .environment_file
                        .as_ref()
                        .map(|_| self.env_file(&units::next_unit_name(&spec.name, index))),
                    ..r.clone()
                };
                Desired {
                    app: spec.name.clone(),
                    index,
                    hash: hash.clone(),
                    unit: units::render(&r),
                    next: units::render(&next),
                }
            })
            .collect())
    }

    /// The exec wrapper, which `what` needs.
    pub(super) fn exec_wrapper(&self, what: &str) -> Result<PathBuf, String> {
        let wrapper = &self.cfg.exec_wrapper;
        if !wrapper.is_file() {
            return Err(format!(
                "{what} needs the exec wrapper at {} (narun-exec); it is missing",
                wrapper.display()
            ));
        }
        Ok(wrapper.clone())
    }

    /// Write an app's landlock policy (root-owned, 0644, no secrets) and
    /// return (wrapper, policy path).
    pub(super) fn write_policy(
        &self,
        app: &str,
        policy: &crate::exec::Policy,
    ) -> Result<(PathBuf, PathBuf), String> {
        let what = if policy.filesystem {
            "mode: landlock"
        } else {
            "nonet.localPorts"
        };
        let wrapper = self.exec_wrapper(what)?;
        let dir = self.cfg.data_dir.join("policies");
        let path = dir.join(format!("{app}.json"));
        let json = serde_json::to_vec_pretty(policy).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&path, json))
            .map_err(|e| format!("cannot write the landlock policy {}: {e}", path.display()))?;
        Ok((wrapper, path))
    }
}
