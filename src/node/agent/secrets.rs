//! Secrets and shared files of an app: resolved through the fleet,
//! written root-only for systemd to hand over (environment files, the
//! `secrets:` directory). Nothing here reaches argv, unit properties or
//! logs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::*;

/// The file under /run/secrets holding an app's NATS credentials (its
/// `NATS_CREDS`), when the node mints per-app identities.
pub(super) const APP_CREDS_FILE: &str = "nats.creds";

/// Secrets and files resolved for one app.
pub(super) struct Prepared {
    /// Content of the secret environment file, if the app has secrets.
    pub(super) env: Option<Zeroizing<String>>,
    /// `secrets:` files: (file name under /run/secrets, content).
    pub(super) secret_files: Vec<(String, Zeroizing<Vec<u8>>)>,
    /// Mounted files: (cached source, path relative to the working dir).
    pub(super) files: Vec<(PathBuf, String)>,
    /// What, besides the spec and binary, the replicas' hash covers:
    /// secret revisions and file digests (a change restarts the app).
    pub(super) extra: String,
}

impl<M: UnitManager, F: Fleet> Agent<M, F> {
    /// Does the app get files under /run/secrets (its `secrets:`, its NATS
    /// creds)?
    pub(super) fn has_secret_files(&self, spec: &ServiceSpec) -> bool {
        !spec.secrets.is_empty() || self.cfg.app_identity.is_some()
    }

    /// The root-only directory holding an app's `secrets:` files (bound at
    /// /run/secrets in its units).
    pub(super) fn secret_files_dir(&self, app: &str) -> PathBuf {
        self.cfg.runtime_dir.join("files").join(app)
    }

    /// Bring an app's secret files up to date: new or changed content is
    /// written atomically (0440; in the setgid directory `narun-exec
    /// --own-secrets` prepared, a new file takes the app's group, so no
    /// capability is needed); files no longer in the spec are removed.
    /// Running instances see the change at once.
    pub(super) fn sync_secret_files(
        &self,
        app: &str,
        files: &[(String, Zeroizing<Vec<u8>>)],
    ) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.secret_files_dir(app);
        let fail = |e: std::io::Error| format!("secret files of {app}: {e}");
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(fail)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
        for (name, content) in files {
            let path = dir.join(name);
            let same = std::fs::read(&path)
                .map(|old| Zeroizing::new(old).as_slice() == content.as_slice())
                .unwrap_or(false);
            if !same {
                write_private_file(&path, content, 0o440).map_err(fail)?;
            }
        }
        for entry in std::fs::read_dir(&dir).map_err(fail)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !files.iter().any(|(n, _)| *n == name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Where the secret environment of `unit` is written.
    pub(super) fn env_file(&self, unit: &str) -> PathBuf {
        self.cfg
            .runtime_dir
            .join("secrets")
            .join(format!("{unit}.env"))
    }

    /// Resolve an app's secrets and mounted files.
    pub(super) async fn prepare(&self, spec: &ServiceSpec) -> Result<Prepared, String> {
        let mut extra = String::new();
        let mut env = Zeroizing::new(String::new());
        // Every secret the app uses, once: env[].valueFromSecret, secrets[].
        let mut names: Vec<&str> = spec
            .env
            .iter()
            .filter(|e| !e.value_from_secret.is_empty())
            .map(|e| e.value_from_secret.as_str())
            .chain(spec.secrets.iter().map(|s| s.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut plain: HashMap<&str, Zeroizing<Vec<u8>>> = HashMap::new();
        if let Some(first) = names.first() {
            let key = self.master_key.as_ref().ok_or_else(|| {
                format!(
                    "Failed to resolve secret '{first}': node has no master key configured (--master-key-file)"
                )
            })?;
            for name in names {
                let fail = |why: String| format!("Failed to resolve secret '{name}': {why}");
                let (value, revision) = self
                    .fleet
                    .secret(name)
                    .await
                    .map_err(fail)?
                    .ok_or_else(|| fail(format!("not found in KV store '{}'", store::SECRETS)))?;
                let stored: store::StoredSecret = serde_json::from_slice(&value)
                    .map_err(|e| fail(format!("unreadable stored secret: {e}")))?;
                let value = stored
                    .open(key, name)
                    .map_err(|e| fail(format!("decryption failed (wrong master key?): {e}")))?;
                // A changed secret restarts the app unless it opted out.
                if spec.restart_on_secret_change {
                    extra.push_str(&format!(";secret:{name}@{revision}"));
                }
                plain.insert(name, Zeroizing::new(value.to_vec()));
            }
        }
        for var in spec.env.iter().filter(|e| !e.value_from_secret.is_empty()) {
            let name = &var.value_from_secret;
            let fail = |why: &str| format!("Failed to resolve secret '{name}': {why}");
            let value = std::str::from_utf8(&plain[name.as_str()])
                .map_err(|_| fail("the value is not UTF-8 text (use `secrets:` for a file)"))?;
            if value.contains('\0') {
                return Err(fail("the value contains a NUL byte"));
            }
            env.push_str(&env_file_line(&var.name, value));
        }
        let mut secret_files: Vec<(String, Zeroizing<Vec<u8>>)> = spec
            .secrets
            .iter()
            .map(|s| (s.file_name(), plain[s.name.as_str()].clone()))
            .collect();
        if let Some(issuer) = &self.cfg.app_identity {
            let creds = self.app_creds(issuer, spec, &secret_files)?;
            // A new signing key re-mints every app's creds: a rollout.
            extra.push_str(&format!(";nats-identity:{}", issuer.signing_key()));
            secret_files.push((APP_CREDS_FILE.to_owned(), creds));
        }
        let mut files = Vec::new();
        for m in &spec.mounts {
            let object = &m.source.object_store;
            let f =
                self.fleet.file(object).await.map_err(|e| {
                    format!("Failed to process mount {}: file '{object}': {e}", m.path)
                })?;
            extra.push_str(&format!(";file:{object}={}", f.digest));
            files.push((f.path, m.path.clone()));
        }
        Ok(Prepared {
            env: (!env.is_empty()).then_some(env),
            secret_files,
            files,
            extra,
        })
    }

    /// App `app`'s NATS identity: the creds already handed to it if this
    /// issuer minted them with today's permissions, else new ones.
    fn app_creds(
        &self,
        issuer: &crate::nats::jwt::Issuer,
        spec: &ServiceSpec,
        secret_files: &[(String, Zeroizing<Vec<u8>>)],
    ) -> Result<Zeroizing<Vec<u8>>, String> {
        let app = spec.name.as_str();
        if secret_files.iter().any(|(n, _)| n == APP_CREDS_FILE) {
            return Err(format!(
                "secrets: file name {APP_CREDS_FILE} is reserved for the app's NATS identity \
                 (the node mints its apps' NATS users); use another path"
            ));
        }
        let extra = crate::nats::jwt::Extra {
            publish: spec.nats.publish.clone(),
            subscribe: spec.nats.subscribe.clone(),
            kv: spec.nats.kv.clone(),
        };
        let path = self.secret_files_dir(app).join(APP_CREDS_FILE);
        if let Ok(old) = crate::limits::read_to_string_capped(&path, 64 << 10, "app creds") {
            let old = Zeroizing::new(old);
            if issuer.still_valid(&old, app, &extra) {
                return Ok(Zeroizing::new(old.as_bytes().to_vec()));
            }
        }
        let (user, creds) = issuer
            .mint(app, &extra)
            .map_err(|e| format!("cannot mint the NATS identity of {app}: {e}"))?;
        tracing::info!(app, user = %user, account = %issuer.account(), "NATS identity minted");
        Ok(Zeroizing::new(creds.into_bytes()))
    }

    /// Write a unit's secret environment file (0600, root) before it starts.
    pub(super) fn write_env_file(&self, unit: &str, content: &str) -> Result<(), String> {
        write_private_file(&self.env_file(unit), content.as_bytes(), 0o600)
            .map_err(|e| format!("cannot write the secret environment of {unit}: {e}"))
    }

    /// For an app that keeps running when its secrets change: bring the
    /// secret environment files of its existing units up to date, for
    /// their next restart.
    pub(super) fn refresh_env_files(&self, units: &[String]) {
        for unit in units {
            let path = self.env_file(unit);
            let Some(content) = self.pending_env.get(unit) else {
                continue;
            };
            let Ok(old) = std::fs::read(&path).map(Zeroizing::new) else {
                continue; // not started yet: written at its start
            };
            if old.as_slice() != content.as_bytes() {
                if let Err(e) = write_private_file(&path, content.as_bytes(), 0o600) {
                    tracing::error!(unit = %unit, error = %e, "cannot update the secret environment");
                }
            }
        }
    }

    pub(super) fn remove_env_file(&self, unit: &str) {
        let _ = std::fs::remove_file(self.env_file(unit));
    }
}

/// Write `content` to `path` atomically (a temp file renamed over it),
/// created with `mode`, synced.
pub(super) fn write_private_file(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let written = (|| {
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// One `EnvironmentFile=` line: `NAME="value"` with the characters
/// systemd's parser treats specially escaped.
pub fn env_file_line(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 4);
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"\n");
    out
}
