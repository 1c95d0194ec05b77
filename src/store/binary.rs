//! App binaries in the `app-binaries` object store: object names, metadata
//! keys, SHA-256 digests, and the OS/architecture read from an executable's
//! header (Go `cmd/narun/detect.go`, stricter).

use std::collections::HashMap;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Metadata key: the app name.
pub const META_APP_NAME: &str = "narun-app-name";
/// Metadata key: Go `GOOS` name.
pub const META_OS: &str = "narun-goos";
/// Metadata key: Go `GOARCH` name.
pub const META_ARCH: &str = "narun-goarch";
/// Metadata key: the tag.
pub const META_TAG: &str = "narun-version-tag";
/// Metadata key: the uploaded file's base name.
pub const META_ORIGINAL_FILE: &str = "narun-original-file";

/// `narun-files` metadata key: the uploaded file's base name.
pub const FILE_META_ORIGINAL_FILENAME: &str = "original-filename";
/// `narun-files` metadata key: upload time, RFC 3339 UTC.
pub const FILE_META_UPLOAD_TIMESTAMP: &str = "upload-timestamp";

/// Bytes of a file [`detect_platform`] needs (PE headers can sit a little
/// further than ELF and Mach-O ones).
pub const DETECT_HEADER_LEN: usize = 4096;

/// The object holding `app`'s binary for one platform (Go format).
pub fn object_name(app: &str, tag: &str, os: &str, arch: &str) -> String {
    format!("{app}-{tag}-{os}-{arch}")
}

/// The object description (Go format).
pub fn object_description(app: &str, tag: &str, os: &str, arch: &str) -> String {
    format!("Binary for {app} ({os}/{arch}) tag {tag}")
}

/// The object metadata (the Go CLI's five keys).
pub fn object_metadata(
    app: &str,
    tag: &str,
    os: &str,
    arch: &str,
    original_file: &str,
) -> HashMap<String, String> {
    [
        (META_APP_NAME, app),
        (META_OS, os),
        (META_ARCH, arch),
        (META_TAG, tag),
        (META_ORIGINAL_FILE, original_file),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The digest string of a SHA-256 sum, as object stores record it:
/// `SHA-256=` + padded base64url (nats.go and async-nats).
pub fn digest_string(sha256: &[u8; 32]) -> String {
    format!("SHA-256={}", URL_SAFE.encode(sha256))
}

/// An incremental SHA-256 producing [`digest_string`].
#[derive(Default, Clone)]
pub struct Sha256Digest(Sha256);

impl Sha256Digest {
    /// Add bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The raw sum.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
    /// The digest string.
    pub fn finish_string(self) -> String {
        digest_string(&self.finish())
    }
}

/// An object digest that cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not `SHA-256=<base64url>`.
    #[error("unsupported digest format {0:?}: expected SHA-256=<base64url>")]
    Format(String),
    /// `SHA-256=` with nothing after it.
    #[error("expected digest value is empty")]
    Empty,
}

/// Does `sha256` match the object digest `expected` (padded or not, as Go's
/// runner accepts)?
pub fn digest_matches(expected: &str, sha256: &[u8; 32]) -> Result<bool, DigestError> {
    let value = expected
        .strip_prefix("SHA-256=")
        .ok_or_else(|| DigestError::Format(expected.to_owned()))?;
    let value = value.trim_end_matches('=');
    if value.is_empty() {
        return Err(DigestError::Empty);
    }
    Ok(value == URL_SAFE_NO_PAD.encode(sha256))
}

/// An OS and architecture, with Go's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `freebsd`, `darwin`, `windows`, ...
    pub os: &'static str,
    /// `amd64`, `arm64`, `riscv64`, `386`, `arm`, ...
    pub arch: &'static str,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)
    }
}

/// Go's `GOARCH` name for a Rust `target_arch` name.
pub fn go_arch(rust_arch: &str) -> Option<&'static str> {
    Some(match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "riscv64" => "riscv64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        _ => return None,
    })
}

/// The platform this process runs on (what a node agent reports and
/// fetches), Go names.
pub fn host_platform() -> Platform {
    Platform {
        os: match std::env::consts::OS {
            "linux" => "linux",
            "freebsd" => "freebsd",
            "macos" => "darwin",
            "windows" => "windows",
            _ => "unknown",
        },
        arch: go_arch(std::env::consts::ARCH).unwrap_or("unknown"),
    }
}

/// Why a file is not an executable narun can ship.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    /// Empty or too short to be an executable.
    #[error("too short to be an executable ({0} bytes)")]
    TooShort(usize),
    /// A `#!` script.
    #[error("is a script (starts with #!): narun ships compiled executables")]
    Script,
    /// A compressed or archive file.
    #[error("is a {0} archive, not an executable: extract the binary first")]
    Archive(&'static str),
    /// An ELF file that is not an executable (object file, core dump).
    #[error("is an ELF {0}, not an executable")]
    NotExecutable(&'static str),
    /// A known format with an OS narun does not know.
    #[error("unsupported ELF OS ABI {0}")]
    Os(u8),
    /// A known format with an architecture narun does not know.
    #[error("unsupported {format} machine type {machine:#x}")]
    Arch {
        /// ELF, Mach-O or PE.
        format: &'static str,
        /// The header's machine/CPU field.
        machine: u32,
    },
    /// A Mach-O universal binary (several architectures).
    #[error("is a Mach-O universal binary: upload one file per architecture")]
    Universal,
    /// Anything else.
    #[error("unrecognized executable format (not ELF, Mach-O or PE)")]
    Unknown,
}

/// The OS and architecture of the executable starting with `header` (its
/// first [`DETECT_HEADER_LEN`] bytes suffice).
pub fn detect_platform(header: &[u8]) -> Result<Platform, DetectError> {
    if header.len() < 4 {
        return Err(DetectError::TooShort(header.len()));
    }
    let magic = &header[..4];
    if magic == b"\x7fELF" {
        return elf(header);
    }
    if let Some(p) = macho(header)? {
        return Ok(p);
    }
    if header.starts_with(b"MZ") {
        return pe(header);
    }
    if header.starts_with(b"#!") {
        return Err(DetectError::Script);
    }
    if header.starts_with(&[0x1f, 0x8b]) {
        return Err(DetectError::Archive("gzip"));
    }
    if header.starts_with(b"PK\x03\x04") {
        return Err(DetectError::Archive("zip"));
    }
    if header.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(DetectError::Archive("xz"));
    }
    if header.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(DetectError::Archive("zstd"));
    }
    if header.len() > 262 && &header[257..262] == b"ustar" {
        return Err(DetectError::Archive("tar"));
    }
    Err(DetectError::Unknown)
}

fn u16_at(b: &[u8], at: usize, little: bool) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if little {
        u16::from_le_bytes(bytes)
    } else {
        u16::from_be_bytes(bytes)
    })
}

fn u32_at(b: &[u8], at: usize, little: bool) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if little {
        u32::from_le_bytes(bytes)
    } else {
        u32::from_be_bytes(bytes)
    })
}

/// ELF: e_ident[EI_CLASS]=4, [EI_DATA]=5, [EI_OSABI]=7; e_type at 16,
/// e_machine at 18.
fn elf(h: &[u8]) -> Result<Platform, DetectError> {
    if h.len() < 20 {
        return Err(DetectError::TooShort(h.len()));
    }
    let is64 = h[4] == 2;
    let little = h[5] != 2;
    let os = match h[7] {
        0 | 3 => "linux", // SYSV (what Go and most toolchains write) and GNU/Linux
        9 => "freebsd",
        12 => "openbsd",
        2 => "netbsd",
        6 => "solaris",
        other => return Err(DetectError::Os(other)),
    };
    match u16_at(h, 16, little).unwrap_or(0) {
        2 | 3 => {} // ET_EXEC, ET_DYN (static-pie and PIE executables)
        1 => return Err(DetectError::NotExecutable("relocatable object file")),
        4 => return Err(DetectError::NotExecutable("core dump")),
        _ => return Err(DetectError::NotExecutable("file of unknown type")),
    }
    let machine = u16_at(h, 18, little).unwrap_or(0);
    let arch = match (machine, is64, little) {
        (62, true, _) => "amd64",
        (183, true, _) => "arm64",
        (243, true, _) => "riscv64",
        (3, false, _) => "386",
        (40, false, _) => "arm",
        (21, true, true) => "ppc64le",
        (22, true, false) => "s390x",
        (258, true, _) => "loong64",
        _ => {
            return Err(DetectError::Arch {
                format: "ELF",
                machine: machine.into(),
            })
        }
    };
    Ok(Platform { os, arch })
}

/// Mach-O: magic, then cputype. `Ok(None)` when not Mach-O.
fn macho(h: &[u8]) -> Result<Option<Platform>, DetectError> {
    let magic_be = u32_at(h, 0, false).unwrap_or(0);
    let little = match magic_be {
        0xfeedface | 0xfeedfacf => false,
        0xcefaedfe | 0xcffaedfe => true,
        0xcafebabe | 0xcafebabf => {
            // Also Java class files: a universal binary has few architectures,
            // a class file a major version >= 45 in the same place.
            let n = u32_at(h, 4, false).unwrap_or(0);
            return if (1..20).contains(&n) {
                Err(DetectError::Universal)
            } else {
                Ok(None)
            };
        }
        _ => return Ok(None),
    };
    let cpu = u32_at(h, 4, little).unwrap_or(0);
    let arch = match cpu {
        0x0100_0007 => "amd64",
        0x0100_000c => "arm64",
        _ => {
            return Err(DetectError::Arch {
                format: "Mach-O",
                machine: cpu,
            })
        }
    };
    Ok(Some(Platform { os: "darwin", arch }))
}

/// PE: e_lfanew at 0x3c → `PE\0\0`, then the COFF machine.
fn pe(h: &[u8]) -> Result<Platform, DetectError> {
    let Some(off) = u32_at(h, 0x3c, true).map(|o| o as usize) else {
        return Err(DetectError::Unknown);
    };
    if h.get(off..off + 4) != Some(b"PE\0\0") {
        return Err(DetectError::Unknown);
    }
    let machine = u16_at(h, off + 4, true).unwrap_or(0);
    let arch = match machine {
        0x8664 => "amd64",
        0xaa64 => "arm64",
        0x014c => "386",
        _ => {
            return Err(DetectError::Arch {
                format: "PE",
                machine: machine.into(),
            })
        }
    };
    Ok(Platform {
        os: "windows",
        arch,
    })
}

/// Minimal headers of each format, for tests (here and in tests/cli.rs).
#[doc(hidden)]
pub mod fixtures {
    /// A 64-byte ELF header: `class` 1 or 2, OS ABI, e_type, e_machine,
    /// little-endian.
    pub fn elf(class: u8, osabi: u8, e_type: u16, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = 1;
        h[6] = 1;
        h[7] = osabi;
        h[16..18].copy_from_slice(&e_type.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    /// A Linux static executable header for a Go arch name (amd64, arm64,
    /// riscv64, 386, arm).
    pub fn linux_exec(arch: &str) -> Vec<u8> {
        match arch {
            "amd64" => elf(2, 0, 2, 62),
            "arm64" => elf(2, 0, 2, 183),
            "riscv64" => elf(2, 0, 2, 243),
            "386" => elf(1, 0, 2, 3),
            "arm" => elf(1, 0, 2, 40),
            other => panic!("no fixture for {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{elf, linux_exec};
    use super::{
        detect_platform, digest_matches, digest_string, go_arch, host_platform, object_metadata,
        object_name, DetectError, DigestError, Platform, Sha256, Sha256Digest, DETECT_HEADER_LEN,
    };
    use sha2::Digest;

    fn p(os: &'static str, arch: &'static str) -> Result<Platform, DetectError> {
        Ok(Platform { os, arch })
    }

    #[test]
    fn detects_every_supported_format() {
        for arch in ["amd64", "arm64", "riscv64", "386", "arm"] {
            assert_eq!(detect_platform(&linux_exec(arch)), p("linux", arch));
        }
        assert_eq!(
            detect_platform(&elf(2, 3, 3, 62)),
            p("linux", "amd64"),
            "GNU ABI, PIE"
        );
        assert_eq!(detect_platform(&elf(2, 9, 2, 62)), p("freebsd", "amd64"));
        assert_eq!(detect_platform(&elf(2, 12, 2, 183)), p("openbsd", "arm64"));
        assert_eq!(detect_platform(&elf(2, 0, 2, 21)), p("linux", "ppc64le"));
        let mut macho = vec![0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 0x01];
        macho.resize(64, 0);
        assert_eq!(detect_platform(&macho), p("darwin", "arm64"));
        macho[4] = 7;
        assert_eq!(detect_platform(&macho), p("darwin", "amd64"));
        let mut pe = vec![0u8; 256];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        assert_eq!(detect_platform(&pe), p("windows", "amd64"));
        // This very test binary.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(
            detect_platform(&me[..DETECT_HEADER_LEN]),
            Ok(host_platform())
        );
    }

    #[test]
    fn rejects_what_is_not_a_shippable_executable() {
        assert_eq!(
            detect_platform(b"#!/bin/sh\necho hi\n"),
            Err(DetectError::Script)
        );
        assert_eq!(detect_platform(b""), Err(DetectError::TooShort(0)));
        assert_eq!(detect_platform(b"hello world"), Err(DetectError::Unknown));
        assert_eq!(
            detect_platform(&[0x1f, 0x8b, 8, 0]),
            Err(DetectError::Archive("gzip"))
        );
        assert_eq!(
            detect_platform(b"PK\x03\x04rest"),
            Err(DetectError::Archive("zip"))
        );
        assert!(matches!(
            detect_platform(&elf(2, 0, 1, 62)),
            Err(DetectError::NotExecutable(_))
        ));
        assert_eq!(
            detect_platform(&elf(2, 97, 2, 62)),
            Err(DetectError::Os(97))
        );
        assert_eq!(
            detect_platform(&elf(2, 0, 2, 8)),
            Err(DetectError::Arch {
                format: "ELF",
                machine: 8
            })
        );
        assert_eq!(
            detect_platform(&elf(1, 0, 2, 243)),
            Err(DetectError::Arch {
                format: "ELF",
                machine: 243
            }),
            "32-bit RISC-V"
        );
        let universal = [0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2];
        assert_eq!(detect_platform(&universal), Err(DetectError::Universal));
        let class_file = [0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52];
        assert_eq!(detect_platform(&class_file), Err(DetectError::Unknown));
        let mut bad_pe = vec![0u8; 128];
        bad_pe[..2].copy_from_slice(b"MZ");
        assert_eq!(detect_platform(&bad_pe), Err(DetectError::Unknown));
    }

    #[test]
    fn names_metadata_and_digests() {
        assert_eq!(
            object_name("hello", "v13", "linux", "amd64"),
            "hello-v13-linux-amd64"
        );
        let m = object_metadata("hello", "v13", "linux", "arm64", "hello-arm64");
        assert_eq!(m.len(), 5);
        assert_eq!(m["narun-goarch"], "arm64");
        assert_eq!(m["narun-version-tag"], "v13");
        // The Go runner's TestVerifyLocalFileHash vectors.
        let mut d = Sha256Digest::default();
        d.update(b"hello world narun runner");
        let v = d.finish();
        let e: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(
            digest_matches("SHA-256=4FF8wtT3l5j96jCyWAE51R-CliVKhwNKQ69vZoe0sGM", &v),
            Ok(true)
        );
        assert_eq!(
            digest_matches("SHA-256=4FF8wtT3l5j96jCyWAE51R-CliVKhwNKQ69vZoe0sGM=", &v),
            Ok(true)
        );
        assert_eq!(
            digest_matches("SHA-256=NotTheRightBase64HashValueForContentMismatch", &v),
            Ok(false)
        );
        assert_eq!(
            digest_matches("SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU", &e),
            Ok(true)
        );
        assert_eq!(
            digest_matches("SHA-256=4FF8wtT3l5j96jCyWAE51R-CliVKhwNKQ69vZoe0sGM", &e),
            Ok(false)
        );
        assert!(matches!(
            digest_matches("JustTheBase64Hash", &v),
            Err(DigestError::Format(_))
        ));
        assert!(matches!(
            digest_matches("MD5=SomeHash", &v),
            Err(DigestError::Format(_))
        ));
        assert!(matches!(
            digest_matches("SHA-256", &v),
            Err(DigestError::Format(_))
        ));
        assert_eq!(digest_matches("SHA-256=", &v), Err(DigestError::Empty));
        assert_eq!(
            digest_string(&e),
            "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(go_arch("aarch64"), Some("arm64"));
    }
}
