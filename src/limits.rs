//! Size limits on what narun reads from its users: spec files, gateway
//! configurations, secret values, key files, and the specs node agents read
//! from KV `app-configs` (written by anyone with NATS access).
//!
//! Files are read with [`read_capped`]: at most the limit plus one byte,
//! whatever the file claims to be (its metadata is not trusted), so
//! `/dev/zero`, a FIFO or a growing file fails as soon as it passes the
//! limit, with an error naming the limit. Binaries (`narun deploy`) and
//! shared files (`narun files add`) are streamed to the object store in
//! chunks instead, without a size limit.
//!
//! The size, nesting, list and string limits of a spec are checked by the
//! spec parser itself (`spec::parse_detailed`), in the CLI and in the node
//! agent alike; docs/cli.md lists them all.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// Largest spec (YAML), in bytes: 1 MiB, the default NATS max payload (a KV
/// value cannot be larger unless the server's `max_payload` is raised).
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// Deepest nesting of lists and mappings in a spec. The spec's own
/// structure is 4 levels deep (`landlock.paths[0]`); libyaml's time grows
/// with the depth of `[[[...]]]` times the size.
pub const MAX_SPEC_DEPTH: usize = 32;

/// Most entries of any one list or mapping in a spec (the spec's lists
/// have their own, smaller or equal, limits below).
pub const MAX_SPEC_ENTRIES: usize = 4096;

/// Most values in a spec: scalars (keys included), lists and mappings. A
/// spec with every list at its limit has about 50,000; parsing takes a few
/// hundred bytes of memory per value.
pub const MAX_SPEC_VALUES: usize = 100_000;

/// Longest path of a value in a spec (`nodeSelector.labels.<key>`), in
/// bytes: keys are field names and labels (at most 63 bytes). Every value's
/// path is indexed for error messages.
pub const MAX_SPEC_PATH_BYTES: usize = 256;

/// Largest gateway configuration (`narun gateway --config`), in bytes.
pub const MAX_GATEWAY_CONFIG_BYTES: usize = 4 << 20;

/// Largest secret value (`narun secret set`), in bytes: its JSON document
/// (base64 ciphertext) must fit the default 1 MiB NATS max payload.
pub const MAX_SECRET_BYTES: usize = 512 << 10;

/// Largest master key file (a 44-character base64 line), in bytes.
pub const MAX_KEY_FILE_BYTES: usize = 4 << 10;

/// Most `args` of a spec.
pub const MAX_ARGS: usize = 4096;
/// Most `env` entries of a spec.
pub const MAX_ENV: usize = 4096;
/// Longest argument, and longest `NAME=value` environment string, in bytes:
/// Linux refuses longer strings at exec (`MAX_ARG_STRLEN`, 128 KiB with the
/// terminating NUL).
pub const MAX_ARG_BYTES: usize = (128 << 10) - 1;
/// Most `nodes` of a spec (a larger fleet is better chosen with
/// `nodeSelector`).
pub const MAX_NODES: usize = 4096;
/// Most `mounts` of a spec.
pub const MAX_MOUNTS: usize = 1024;
/// Most `secrets` of a spec.
pub const MAX_SECRET_FILES: usize = 1024;
/// Most `landlock.paths` of a spec.
pub const MAX_LANDLOCK_PATHS: usize = 1024;
/// Most `nonet.localPorts` of a spec.
pub const MAX_LOCAL_PORTS: usize = 256;
/// Most `labels` (and `nodeSelector.labels`) of a spec.
pub const MAX_LABELS: usize = 256;
/// Most `nodeSelector.arch` entries (and `jail.ip4Addresses`) of a spec.
pub const MAX_SMALL_LIST: usize = 64;
/// Longest path in a spec (`mounts[].path`, `landlock.paths[].path`,
/// `networkNamespacePath`, `metrics.path`), in bytes: Linux's `PATH_MAX`
/// with its NUL.
pub const MAX_PATH_BYTES: usize = 4095;
/// Most errors, and most warnings, reported for one spec; the rest are
/// counted.
pub const MAX_REPORTED_ISSUES: usize = 100;

/// `n` bytes for people: `1 MiB`, `512 KiB`, `131071 bytes`.
pub fn human_size(n: usize) -> String {
    HumanSize(n).to_string()
}

struct HumanSize(usize);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 20 && n % (1 << 20) == 0 {
            write!(f, "{} MiB", n >> 20)
        } else if n >= 1 << 10 && n % (1 << 10) == 0 {
            write!(f, "{} KiB", n >> 10)
        } else {
            write!(f, "{n} bytes")
        }
    }
}

/// The error of a read past `max` bytes: `larger than 1 MiB, the limit for
/// a spec` (kind [`io::ErrorKind::FileTooLarge`]).
pub fn too_large(max: usize, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than {}, the limit for {what}", HumanSize(max)),
    )
}

/// Read all of `reader`, at most `max` bytes: one byte more is an error
/// ([`too_large`]). Never allocates more than about twice `max`.
pub fn read_capped_from(reader: impl Read, max: usize, what: &str) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(max as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(too_large(max, what));
    }
    Ok(buf)
}

/// Read the file at `path`, at most `max` bytes (see [`read_capped_from`];
/// the file's size is not trusted: `/dev/zero` fails once past `max`).
/// `what` names the limit in the error, e.g. `a spec`.
pub fn read_capped(path: &Path, max: usize, what: &str) -> io::Result<Vec<u8>> {
    read_capped_from(std::fs::File::open(path)?, max, what)
}

/// [`read_capped`] for text: invalid UTF-8 is an error
/// ([`io::ErrorKind::InvalidData`]), as with [`std::fs::read_to_string`].
pub fn read_to_string_capped(path: &Path, max: usize, what: &str) -> io::Result<String> {
    String::from_utf8(read_capped(path, max, what)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// [`read_to_string_capped`] with [`MAX_GATEWAY_CONFIG_BYTES`]: the
/// gateway configuration file.
pub fn read_gateway_config(path: &Path) -> io::Result<String> {
    read_to_string_capped(path, MAX_GATEWAY_CONFIG_BYTES, "a gateway configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_fails_one_byte_past_it() {
        assert_eq!(read_capped_from(&[7u8; 10][..], 10, "x").unwrap().len(), 10);
        let e = read_capped_from(&[7u8; 11][..], 10, "a test").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "larger than 10 bytes, the limit for a test");
        assert!(read_capped_from(&[][..], 0, "x").unwrap().is_empty());
    }

    #[test]
    fn an_endless_file_fails_fast() {
        let e = read_capped(Path::new("/dev/zero"), MAX_SPEC_BYTES, "a spec").unwrap_err();
        assert_eq!(e.to_string(), "larger than 1 MiB, the limit for a spec");
        let e = read_gateway_config(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "larger than 4 MiB, the limit for a gateway configuration"
        );
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bin");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        let e = read_to_string_capped(&f, 10, "x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        std::fs::write(&f, "ok").unwrap();
        assert_eq!(read_to_string_capped(&f, 10, "x").unwrap(), "ok");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(512 << 10), "512 KiB");
        assert_eq!(human_size(MAX_ARG_BYTES), "131071 bytes");
    }
}
