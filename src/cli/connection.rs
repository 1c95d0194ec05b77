//! How a command or daemon reaches NATS, spelled once: the management
//! commands (`narun apps …`) and the node agent (`narun node`,
//! `narun-node`) flatten the same [`NatsArgs`], so a flag or variable that
//! works for one works for the other. The gateway's YAML keys
//! (`nats_url`, `creds_file`, `nkey_seed_file`, `tls_ca_file`,
//! `tls_cert_file`, `tls_key_file`) name the same settings, and apps built
//! on [`crate::consumer`] read the same variables.

use std::path::PathBuf;

use clap::Args;

use crate::nats::NatsOptions;

/// The variable the node agent read its credentials file from before it
/// took `NATS_CREDS` like the CLI (still read, with a warning).
pub const LEGACY_NODE_CREDS_ENV: &str = "NARUN_CREDS_FILE";

/// NATS connection options (URL list, credentials, TLS CA and client
/// certificate).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        default_value = crate::nats::DEFAULT_URL,
        value_name = "URL",
        alias = "nats"
    )]
    pub nats_url: String,
    /// NATS credentials file (JWT and nkey seed).
    #[arg(
        long,
        global = true,
        env = "NATS_CREDS",
        value_name = "FILE",
        alias = "creds-file"
    )]
    pub creds: Option<PathBuf>,
    /// NATS nkey seed file.
    #[arg(
        long,
        global = true,
        env = "NARUN_NKEY_FILE",
        value_name = "FILE",
        alias = "nkey-file"
    )]
    pub nkey: Option<PathBuf>,
    /// PEM CA bundle for a TLS NATS server (TLS is then required).
    #[arg(long, global = true, env = "NATS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a NATS server that verifies clients.
    #[arg(
        long,
        global = true,
        env = "NATS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(
        long,
        global = true,
        env = "NATS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

impl NatsArgs {
    /// The client options, for a client called `name`.
    pub fn options(&self, name: impl Into<String>) -> NatsOptions {
        let mut opts = NatsOptions::new(&self.nats_url, name);
        opts.creds_file = self.creds.clone();
        opts.nkey_seed_file = self.nkey.clone();
        opts.tls_ca_file = self.tls_ca.clone();
        opts.tls_cert_file = self.tls_cert.clone();
        opts.tls_key_file = self.tls_key.clone();
        opts
    }

    /// `legacy_creds` (the value of [`LEGACY_NODE_CREDS_ENV`]) when no
    /// credentials file was given otherwise; `true` when it was used.
    pub fn with_legacy_creds(&mut self, legacy_creds: Option<PathBuf>) -> bool {
        match (&self.creds, legacy_creds) {
            (None, Some(path)) if !path.as_os_str().is_empty() => {
                self.creds = Some(path);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        nats: NatsArgs,
    }

    #[test]
    fn every_spelling_lands_in_the_options() {
        for argv in [
            &[
                "x",
                "--nats-url",
                "nats://a:4222,nats://b:4222",
                "--creds",
                "/c",
                "--nkey",
                "/n",
                "--tls-ca",
                "/ca",
            ][..],
            &[
                "x",
                "--nats",
                "nats://a:4222,nats://b:4222",
                "--creds-file",
                "/c",
                "--nkey-file",
                "/n",
                "--tls-ca",
                "/ca",
            ][..],
        ] {
            let p = Probe::try_parse_from(argv).unwrap();
            let o = p.nats.options("t");
            assert_eq!(o.urls, ["nats://a:4222", "nats://b:4222"], "{argv:?}");
            assert_eq!(o.creds_file, Some(PathBuf::from("/c")));
            assert_eq!(o.nkey_seed_file, Some(PathBuf::from("/n")));
            assert_eq!(o.tls_ca_file, Some(PathBuf::from("/ca")));
            assert_eq!(o.name, "t");
        }
    }

    #[test]
    fn the_legacy_creds_variable_only_fills_a_gap() {
        let mut a = Probe::try_parse_from(["x"]).unwrap().nats;
        assert!(!a.with_legacy_creds(None));
        assert!(!a.with_legacy_creds(Some(PathBuf::new())));
        assert_eq!(a.creds, None);
        assert!(a.with_legacy_creds(Some("/old".into())));
        assert_eq!(a.creds, Some(PathBuf::from("/old")));
        let mut b = Probe::try_parse_from(["x", "--creds", "/new"])
            .unwrap()
            .nats;
        assert!(!b.with_legacy_creds(Some("/old".into())));
        assert_eq!(b.creds, Some(PathBuf::from("/new")));
    }
}
