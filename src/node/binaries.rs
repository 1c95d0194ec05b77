//! App binaries from Object Store `app-binaries`: streamed to a temp file in
//! the data dir, SHA-256 verified, fsync'd, atomically renamed, mode 0755
//! root-owned, cached by digest.

use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::store;

/// A verified binary on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    /// The object's digest as NATS records it (`SHA-256=<base64url>`).
    pub digest: String,
    /// Built with `narun::consumer`: it sends systemd `READY=1`
    /// ([`crate::wire::SD_NOTIFY_MARKER`]).
    pub notify: bool,
}

/// Does `bytes` contain the consumer library's readiness marker?
pub fn has_notify_marker(bytes: &[u8]) -> bool {
    let m = crate::wire::SD_NOTIFY_MARKER;
    bytes.windows(m.len()).any(|w| w == m)
}

/// [`has_notify_marker`] of a file, read in chunks (bounded memory).
pub fn file_has_notify_marker(path: &Path) -> bool {
    use std::io::Read;
    let m = crate::wire::SD_NOTIFY_MARKER;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut keep = 0;
    loop {
        let n = match f.read(&mut buf[keep..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let end = keep + n;
        if has_notify_marker(&buf[..end]) {
            return true;
        }
        // Keep the tail: a marker may straddle two reads.
        keep = (m.len() - 1).min(end);
        buf.copy_within(end - keep..end, 0);
    }
}

/// Why an object could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No such object (or no such bucket).
    Missing(String),
    /// Anything else: digest mismatch, I/O, NATS.
    Other(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Missing(s) | FetchError::Other(s) => f.write_str(s),
        }
    }
}

/// An on-disk cache of one object store's objects, under
/// `<dir>/<sha256 hex>/<object>`: `<data-dir>/binaries` for app binaries
/// (mode 0755), `<data-dir>/files` for mounted files (mode 0644).
#[derive(Debug, Clone)]
pub struct BinaryCache {
    dir: PathBuf,
    bucket: &'static str,
    mode: u32,
}

/// `SHA-256=<base64url, padded or not>` → lowercase hex.
pub fn digest_hex(digest: &str) -> Option<String> {
    let b64 = digest.strip_prefix("SHA-256=")?.trim_end_matches('=');
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    (raw.len() == 32).then(|| raw.iter().map(|b| format!("{b:02x}")).collect())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Cached objects younger than this are never garbage-collected.
const GC_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

impl BinaryCache {
    /// The app binaries cache.
    pub fn new(dir: PathBuf) -> Self {
        BinaryCache {
            dir,
            bucket: store::APP_BINARIES,
            mode: 0o755,
        }
    }

    /// The mounted files cache (Object Store `narun-files`).
    pub fn files(dir: PathBuf) -> Self {
        BinaryCache {
            dir,
            bucket: store::FILES,
            mode: 0o644,
        }
    }

    fn path_for(&self, hex: &str, object: &str) -> PathBuf {
        self.dir.join(hex).join(object)
    }

    /// A cached binary for this digest, if present and intact.
    pub fn cached(
        &self,
        app: &str,
        tag: &str,
        os: &str,
        arch: &str,
        digest: &str,
    ) -> Option<Fetched> {
        self.cached_object(&store::binary::object_name(app, tag, os, arch), digest)
    }

    /// A cached object for this digest, if present and intact.
    pub fn cached_object(&self, object: &str, digest: &str) -> Option<Fetched> {
        let hex = digest_hex(digest)?;
        let path = self.path_for(&hex, object);
        let bytes = std::fs::read(&path).ok()?;
        (sha256_hex(&bytes) == hex).then(|| Fetched {
            path,
            digest: digest.to_owned(),
            notify: has_notify_marker(&bytes),
        })
    }

    /// Make sure the binary of `app` at `tag` for this platform is on disk.
    pub async fn fetch(
        &self,
        nats: &async_nats::Client,
        app: &str,
        tag: &str,
        os: &str,
        arch: &str,
    ) -> Result<Fetched, String> {
        let object = store::binary::object_name(app, tag, os, arch);
        self.fetch_object(nats, &object).await.map_err(|e| match e {
            FetchError::Missing(why) => format!(
                "binary object '{object}' for platform {os}/{arch} not found in '{}': {why}",
                self.bucket
            ),
            FetchError::Other(why) => why,
        })
    }

    /// Make sure `object` of this cache's bucket is on disk, verified.
    pub async fn fetch_object(
        &self,
        nats: &async_nats::Client,
        object: &str,
    ) -> Result<Fetched, FetchError> {
        use async_nats::jetstream::object_store::InfoErrorKind;
        // Lookups ride out a leader election or a failover (store::retry);
        // only a bucket or object that is not there is "missing".
        let js = store::jetstream(nats).map_err(|e| FetchError::Other(e.to_string()))?;
        let bucket = store::open_object_store(&js, self.bucket)
            .await
            .map_err(|e| FetchError::Other(e.to_string()))?
            .ok_or_else(|| {
                FetchError::Missing(format!("object store '{}' does not exist", self.bucket))
            })?;
        let info = js
            .patiently(&format!("cannot look up object '{object}'"), || async {
                match bucket.info(object).await {
                    Ok(info) => Ok(Some(info)),
                    Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| FetchError::Other(e.to_string()))?
            .filter(|info| !info.deleted)
            .ok_or_else(|| FetchError::Missing("object not found".to_owned()))?;
        let digest = info
            .digest
            .clone()
            .ok_or_else(|| FetchError::Other(format!("object '{object}' has no digest")))?;
        let hex = digest_hex(&digest).ok_or_else(|| {
            FetchError::Other(format!(
                "object '{object}' has an unsupported digest {digest:?}"
            ))
        })?;
        // Installed files were verified before their atomic rename into
        // the digest-named path; the full re-hash happens on restore.
        let installed = self.path_for(&hex, object);
        if installed.is_file() {
            let notify = file_has_notify_marker(&installed);
            return Ok(Fetched {
                path: installed,
                digest,
                notify,
            });
        }
        let final_path = self.path_for(&hex, object);
        let dir = final_path.parent().expect("has a parent").to_owned();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| FetchError::Other(format!("cannot create {}: {e}", dir.display())))?;
        set_mode(&dir, 0o755).await;
        let tmp = dir.join(format!(".{object}.tmp.{}", std::process::id()));
        if let Err(e) = self.download(&bucket, object, &tmp, &hex).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(FetchError::Other(e));
        }
        tokio::fs::rename(&tmp, &final_path).await.map_err(|e| {
            FetchError::Other(format!("cannot install {}: {e}", final_path.display()))
        })?;
        tracing::info!(object = %object, path = %final_path.display(), "object installed");
        let notify = file_has_notify_marker(&final_path);
        Ok(Fetched {
            path: final_path,
            digest,
            notify,
        })
    }

    async fn download(
        &self,
        bucket: &async_nats::jetstream::object_store::ObjectStore,
        object: &str,
        tmp: &Path,
        want_hex: &str,
    ) -> Result<(), String> {
        let mut obj = bucket
            .get(object)
            .await
            .map_err(|e| format!("cannot download '{object}': {e}"))?;
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            use tokio::io::AsyncReadExt;
            let n = obj
                .read(&mut buf)
                .await
                .map_err(|e| format!("download of '{object}' failed: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .await
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        }
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != want_hex {
            return Err(format!(
                "digest mismatch for '{object}': expected sha256 {want_hex}, got {got}"
            ));
        }
        file.sync_all()
            .await
            .map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
        drop(file);
        set_mode(tmp, self.mode).await;
        Ok(())
    }

    /// The digests (hex) of cached files that `args` (a unit's command
    /// lines) name: what the unit needs to start again.
    pub fn digests_in(&self, args: &[String]) -> Vec<String> {
        args.iter()
            .filter_map(|a| Path::new(a).strip_prefix(&self.dir).ok())
            .filter_map(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect()
    }

    /// Remove cached digests not in `keep` (hex), except those installed
    /// within [`GC_GRACE`] (a download in progress, or one the agent has
    /// not recorded yet).
    pub fn gc(&self, keep: &std::collections::BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < GC_GRACE);
            if name.len() == 64 && !keep.contains(&name) && !fresh {
                tracing::info!(digest = %name, "removing a cached object nothing uses");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

async fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_cached_file_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BinaryCache::new(dir.path().to_owned());
        let digest = "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=";
        let hex = digest_hex(digest).unwrap();
        let path = dir.path().join(&hex).join("obj");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
        assert_eq!(cache.cached_object("obj", digest).unwrap().path, path);
        std::fs::write(&path, b"tampered").unwrap();
        assert!(cache.cached_object("obj", digest).is_none());
    }

    #[test]
    fn gc_keeps_what_is_kept_and_what_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BinaryCache::new(dir.path().to_owned());
        let old = std::time::SystemTime::now() - GC_GRACE - std::time::Duration::from_secs(60);
        let make = |hex: &str, age: Option<std::time::SystemTime>| {
            let d = dir.path().join(hex);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("obj"), b"x").unwrap();
            if let Some(t) = age {
                std::fs::File::open(&d).unwrap().set_modified(t).unwrap();
            }
            d
        };
        let (kept, unused, fresh) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let kept_dir = make(&kept, Some(old));
        let unused_dir = make(&unused, Some(old));
        let fresh_dir = make(&fresh, None);
        let other = dir.path().join("not-a-digest");
        std::fs::create_dir(&other).unwrap();
        cache.gc(&[kept].into());
        assert!(kept_dir.exists() && fresh_dir.exists() && other.exists());
        assert!(!unused_dir.exists());
    }

    #[test]
    fn the_digests_a_unit_needs_are_read_off_its_command_line() {
        let cache = BinaryCache::new(PathBuf::from("/var/lib/narun/binaries"));
        let hex = "ab".repeat(32);
        let args: Vec<String> = [
            "/usr/libexec/narun/narun-exec".to_owned(),
            "--args".to_owned(),
            format!("/var/lib/narun/binaries/{hex}/hello-v1-linux-amd64"),
            "/var/lib/narun/binaries/short/x".to_owned(),
            format!("/var/lib/narun/other/{hex}/x"),
            format!("/var/lib/narun/binaries/{}/x", "zz".repeat(32)),
        ]
        .into();
        assert_eq!(cache.digests_in(&args), vec![hex]);
    }

    #[test]
    fn digests_decode_padded_or_not() {
        // sha256("") in base64url
        let d = "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(
            digest_hex(d).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest_hex(d.trim_end_matches('=')), digest_hex(d));
        assert_eq!(digest_hex("MD5=abc"), None);
        assert_eq!(digest_hex("SHA-256=short"), None);
    }
}
