//! `narun node` and `narun-node`: flags and process plumbing of the node agent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

/// sysexits(3) EX_CONFIG.
const EX_CONFIG: u8 = 78;
/// sysexits(3) EX_UNAVAILABLE.
const EX_UNAVAILABLE: u8 = 69;

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// How to reach NATS: the same options as the CLI's (`NATS_URL`,
    /// `NATS_CREDS`, `NARUN_NKEY_FILE`, `NATS_CA`).
    #[command(flatten)]
    nats: crate::cli::connection::NatsArgs,
    /// This node's id (default: the hostname).
    #[arg(long, env = "NARUN_NODE_ID")]
    node_id: Option<String>,
    /// Where binaries and the last applied specs are kept (not under /tmp).
    #[arg(long, env = "NARUN_DATA_DIR", default_value = "/var/lib/narun")]
    data_dir: PathBuf,
    /// Node labels for `nodeSelector`, e.g. `zone=eu,tier=edge`.
    #[arg(long, value_delimiter = ',', env = "NARUN_NODE_LABELS")]
    labels: Vec<String>,
    /// NATS URL(s) given to apps as NATS_URL (default: every URL of the
    /// agent's, comma-separated).
    #[arg(long)]
    app_nats_url: Option<String>,
    /// CA bundle given to apps as NATS_CA (default: the agent's --tls-ca);
    /// it must be readable by every user (apps run as their own users).
    #[arg(long, value_name = "FILE")]
    app_tls_ca: Option<PathBuf>,
    /// Give every app its own NATS user, minted with this account signing
    /// key (an nkey seed file, `SA...`): it may serve only its own subject.
    /// Without it apps get no NATS credentials.
    #[arg(long, env = "NARUN_ACCOUNT_SIGNING_KEY_FILE", value_name = "FILE")]
    account_signing_key: Option<PathBuf>,
    /// The account's public key (`A...`) the signing key signs for
    /// [default: the account of the agent's own --creds, else the signing
    /// key's own].
    #[arg(long, env = "NARUN_ACCOUNT", value_name = "KEY")]
    account: Option<String>,
    /// Allow apps that run as root (`user: root`, or a name the user
    /// database maps to uid 0 or group 0).
    #[arg(long)]
    allow_root_apps: bool,
    /// D-Bus address of systemd's bus (default: the system bus).
    #[arg(long, env = "NARUN_SYSTEMD_BUS")]
    systemd_bus: Option<String>,
    /// Command used to follow app logs in the journal (a prefix such as
    /// `nsenter -t PID -m -p journalctl` is allowed); "" disables forwarding.
    #[arg(long, default_value = "journalctl")]
    journalctl: String,
    /// Root-only directory for runtime files (secret environment files);
    /// must be on the same mount namespace as systemd.
    #[arg(long, env = "NARUN_RUNTIME_DIR", default_value = "/run/narun")]
    runtime_dir: PathBuf,
    /// File holding the cluster master key (base64 of 32 bytes) used to
    /// decrypt `valueFromSecret` secrets. Never passed on the command line.
    #[arg(long, env = "NARUN_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// The exec wrapper (`narun-exec`) for `mode: landlock`, `nonet` and
    /// `secrets:` apps [default: /usr/libexec/narun/narun-exec, else the
    /// narun-exec beside this binary].
    #[arg(long)]
    exec_wrapper: Option<PathBuf>,
    /// The narun binary that runs `narun bridge` for proxy-mode apps
    /// (`http:` in their spec) [default: /usr/bin/narun, else the narun beside
    /// this binary].
    #[arg(long)]
    bridge_binary: Option<PathBuf>,
    /// Admin web UI address ("" disables).
    #[arg(long, default_value = "127.0.0.1:9101")]
    admin_addr: String,
    /// Prometheus metrics address ("" disables).
    #[arg(long, default_value = "127.0.0.1:9100")]
    metrics_addr: String,
    /// How often unit states are checked for status messages.
    #[arg(long, default_value = "2s", value_parser = crate::duration::parse)]
    status_interval: Duration,
}

/// The account signing key of `--account-signing-key`: a root-only seed
/// file; the account is `account`, else the one of the agent's own creds,
/// else the key's own.
fn load_issuer(
    path: &std::path::Path,
    account: Option<String>,
    agent_creds: Option<&std::path::Path>,
) -> Result<crate::nats::jwt::Issuer, String> {
    use std::os::unix::fs::PermissionsExt;
    let what = |e: &dyn std::fmt::Display| format!("--account-signing-key {}: {e}", path.display());
    let seed = crate::limits::read_to_string_capped(path, 64 << 10, "an account signing key")
        .map_err(|e| what(&e))?;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the account signing key is readable by other users: chmod 0600"
            );
        }
    }
    let account = account.or_else(|| {
        let creds = crate::limits::read_to_string_capped(agent_creds?, 64 << 10, "creds").ok()?;
        crate::nats::jwt::user_account(&creds)
    });
    let issuer = crate::nats::jwt::Issuer::from_seed(&seed, account).map_err(|e| what(&e))?;
    tracing::info!(
        account = %issuer.account(),
        signing_key = %issuer.signing_key(),
        "apps get NATS users of their own"
    );
    Ok(issuer)
}

/// The `NATS_URL` apps get by default: every server the agent knows, in
/// the comma-separated form the NATS clients take, so an app rides out the
/// loss of one server as the agent does.
pub fn app_nats_url(urls: &[String]) -> String {
    urls.join(",")
}

/// The short hostname (a dot would add tokens to NATS subjects).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| h.trim().split('.').next().map(str::to_owned))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub fn run(args: NodeArgs) -> ExitCode {
    let node_id = args.node_id.clone().unwrap_or_else(hostname);
    if !crate::spec::valid_node_id(&node_id) {
        eprintln!("narun node: invalid --node-id {node_id:?}: use letters, digits, '-' and '_'");
        return ExitCode::from(EX_CONFIG);
    }
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => {
                eprintln!("narun node: invalid label {l:?}: expected key=value");
                return ExitCode::from(EX_CONFIG);
            }
        }
    }
    let addr = |what: &str, s: &str| -> Result<Option<std::net::SocketAddr>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| format!("invalid --{what} {s:?}: expected HOST:PORT, e.g. 127.0.0.1:9101"))
    };
    let (admin_addr, metrics_addr) = match (
        addr("admin-addr", &args.admin_addr),
        addr("metrics-addr", &args.metrics_addr),
    ) {
        (Ok(a), Ok(m)) => (a, m),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("narun node: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let mut nats_args = args.nats.clone();
    let legacy = std::env::var_os(crate::cli::connection::LEGACY_NODE_CREDS_ENV).map(PathBuf::from);
    if nats_args.with_legacy_creds(legacy) {
        tracing::warn!(
            "{} is deprecated: set NATS_CREDS (as for the CLI)",
            crate::cli::connection::LEGACY_NODE_CREDS_ENV
        );
    }
    let nats = nats_args.options(format!("node-runner-{node_id}"));
    let app_nats_url = args
        .app_nats_url
        .clone()
        .unwrap_or_else(|| app_nats_url(&nats.urls));
    let app_tls_ca = args.app_tls_ca.clone().or_else(|| nats.tls_ca_file.clone());
    if let Some(ca) = &app_tls_ca {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(ca) {
            Ok(m) if m.permissions().mode() & 0o004 != 0 => {}
            Ok(_) => tracing::warn!(
                path = %ca.display(),
                "the NATS CA given to apps (NATS_CA) is not readable by every user: apps \
                 running as their own users cannot use it (chmod 0644, or --app-tls-ca)"
            ),
            Err(e) => {
                tracing::warn!(path = %ca.display(), error = %e, "cannot read the NATS CA given to apps")
            }
        }
    }
    let app_identity = match &args.account_signing_key {
        Some(path) => match load_issuer(path, args.account.clone(), nats.creds_file.as_deref()) {
            Ok(issuer) => Some(std::sync::Arc::new(issuer)),
            Err(e) => {
                eprintln!("narun node: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        },
        None => None,
    };
    let cfg = crate::node::NodeConfig {
        node_id,
        data_dir: args.data_dir.clone(),
        labels,
        nats,
        app_nats_url,
        app_tls_ca,
        app_identity,
        allow_root_apps: args.allow_root_apps,
        status_interval: args.status_interval,
        journalctl: args
            .journalctl
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        runtime_dir: args.runtime_dir.clone(),
        master_key_file: args.master_key_file.clone(),
        exec_wrapper: args
            .exec_wrapper
            .clone()
            .unwrap_or_else(crate::node::agent::default_exec_wrapper),
        bridge_binary: args
            .bridge_binary
            .clone()
            .unwrap_or_else(crate::node::agent::default_bridge_binary),
        admin_addr,
        metrics_addr,
        user_manager: false,
    };
    let runtime = match crate::cli::runtime("narun node", Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if let Err(e) = crate::node::agent::prepare_data_dir(&cfg.data_dir, false) {
        eprintln!("narun node: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    let result = runtime.block_on(async {
        let systemd = match &args.systemd_bus {
            Some(addr) => crate::systemd::Systemd::connect_address(addr).await,
            None => crate::systemd::Systemd::connect().await,
        };
        let systemd = match systemd {
            Ok(s) => s,
            Err(e) => return Err((EX_UNAVAILABLE, e.to_string())),
        };
        crate::node::run(cfg, systemd, crate::consumer::shutdown_signal())
            .await
            .map_err(|e| {
                let code = match e {
                    crate::node::NodeError::DataDir { .. } => EX_CONFIG,
                    crate::node::NodeError::DuplicateNode { .. } => EX_CONFIG,
                    _ => 1,
                };
                (code, e.to_string())
            })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("narun node: {msg}");
            ExitCode::from(code)
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
        node: NodeArgs,
    }

    #[test]
    fn apps_get_every_server() {
        let urls = crate::nats::split_urls("nats://a:4222, nats://b:4222,tls://c:4222");
        assert_eq!(
            app_nats_url(&urls),
            "nats://a:4222,nats://b:4222,tls://c:4222"
        );
        assert_eq!(app_nats_url(&urls[..1]), "nats://a:4222");
    }

    #[test]
    fn the_agent_takes_the_cli_connection_options() {
        let p = Probe::try_parse_from([
            "narun-node",
            "--nats-url",
            "nats://a:4222,nats://b:4222",
            "--creds",
            "/etc/narun/node.creds",
            "--nkey-file",
            "/etc/narun/node.nk",
            "--tls-ca",
            "/etc/narun/ca.pem",
        ])
        .unwrap();
        let o = p.node.nats.options("n");
        assert_eq!(o.urls.len(), 2);
        assert_eq!(
            o.creds_file.as_deref(),
            Some(std::path::Path::new("/etc/narun/node.creds"))
        );
        assert_eq!(
            o.nkey_seed_file.as_deref(),
            Some(std::path::Path::new("/etc/narun/node.nk"))
        );
        assert_eq!(
            o.tls_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/narun/ca.pem"))
        );
    }
}
