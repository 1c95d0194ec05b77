//! The one place that builds NATS clients.
//!
//! Every narun component connects the same way: a list of server URLs,
//! optional nkey seed file, creds file or TLS CA, reconnects forever with a
//! capped exponential backoff (except [`connect_once`]'s), and connection
//! events logged. The first connect is retried in the background too, so a
//! component started before NATS does not exit: it serves errors until NATS
//! is there.

#[cfg(feature = "store")]
pub mod jwt;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr};

/// Default server when nothing is configured (same as Go's `nats.DefaultURL`).
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// One or more URLs; a single string may hold a comma-separated list.
    pub urls: Vec<String>,
    /// NATS client name, shown by `nats server report connections`.
    pub name: String,
    /// File holding an nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (JWT + nkey seed).
    pub creds_file: Option<PathBuf>,
    /// A PEM CA bundle; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// A PEM client certificate, for a server that verifies clients
    /// (`verify: true`); needs [`NatsOptions::tls_key_file`].
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub tls_key_file: Option<PathBuf>,
    /// Prefix of the client's reply inboxes (default `_INBOX`): an app
    /// with its own NATS identity may read only `_INBOX_<app>.>`.
    pub inbox_prefix: Option<String>,
    /// Time allowed for one connection attempt.
    pub connect_timeout: Duration,
}

impl NatsOptions {
    /// Options for `urls` (comma-separated allowed) and client `name`.
    pub fn new(urls: &str, name: impl Into<String>) -> Self {
        NatsOptions {
            urls: split_urls(urls),
            name: name.into(),
            nkey_seed_file: None,
            creds_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            inbox_prefix: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a client could not be built (before any network traffic).
#[derive(Debug, thiserror::Error)]
pub enum NatsConfigError {
    #[error("invalid NATS URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("no NATS URL given")]
    NoUrl,
    #[error("cannot read nkey seed file {path}: {source}")]
    NkeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nkey seed file {0} is empty")]
    EmptyNkey(PathBuf),
    #[error("cannot read creds file {path}: {source}")]
    CredsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a TLS client certificate needs its key and the key its certificate (given: {0})")]
    ClientCert(&'static str),
    #[error("cannot reach NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

/// Split `nats://a:4222, nats://b:4222` into its URLs.
pub fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parse the configured URLs.
pub fn server_addrs(urls: &[String]) -> Result<Vec<ServerAddr>, NatsConfigError> {
    if urls.is_empty() {
        return Err(NatsConfigError::NoUrl);
    }
    urls.iter()
        .map(|u| {
            u.parse::<ServerAddr>().map_err(|e| NatsConfigError::Url {
                url: u.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Delay before connection attempt `attempts` (1-based; async-nats asks
/// before the very first attempt too): none for the first, then 100 ms
/// doubling to a 5 s cap, so a restarted server is found quickly and a dead
/// one is not hammered.
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = (attempts - 2).min(6) as u32;
    Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(5))
}

/// Build the connect options (no I/O but reading credential files). The
/// first connection is retried forever in the background.
pub async fn connect_options(opts: &NatsOptions) -> Result<ConnectOptions, NatsConfigError> {
    Ok(base_options(opts).await?.retry_on_initial_connect())
}

/// The options every client shares (no initial-connect retry).
async fn base_options(opts: &NatsOptions) -> Result<ConnectOptions, NatsConfigError> {
    base_options_counting(opts, None).await
}

/// [`base_options`], counting disconnections into `disconnects`.
async fn base_options_counting(
    opts: &NatsOptions,
    disconnects: Option<Arc<tokio::sync::watch::Sender<u64>>>,
) -> Result<ConnectOptions, NatsConfigError> {
    let mut co = match &opts.creds_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| NatsConfigError::CredsFile {
                path: path.clone(),
                source,
            })?,
        None => ConnectOptions::new(),
    };
    if let Some(path) = &opts.nkey_seed_file {
        let seed = crate::limits::read_to_string_capped(path, 64 << 10, "an nkey seed file")
            .map_err(|source| NatsConfigError::NkeyFile {
                path: path.clone(),
                source,
            })?;
        let seed = seed.trim();
        if seed.is_empty() {
            return Err(NatsConfigError::EmptyNkey(path.clone()));
        }
        co = co.nkey(seed.to_owned());
    }
    if let Some(ca) = &opts.tls_ca_file {
        co = co.add_root_certificates(ca.clone()).require_tls(true);
    }
    match (&opts.tls_cert_file, &opts.tls_key_file) {
        (Some(cert), Some(key)) => {
            co = co
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        (Some(_), None) => return Err(NatsConfigError::ClientCert("certificate only")),
        (None, Some(_)) => return Err(NatsConfigError::ClientCert("key only")),
        (None, None) => {}
    }
    if let Some(prefix) = &opts.inbox_prefix {
        co = co.custom_inbox_prefix(prefix);
    }
    let name = opts.name.clone();
    Ok(co
        .name(&opts.name)
        .connection_timeout(opts.connect_timeout)
        .ping_interval(Duration::from_secs(20))
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let name = name.clone();
            let disconnects = disconnects.clone();
            async move {
                if let (Event::Disconnected, Some(d)) = (&event, disconnects) {
                    d.send_modify(|n| *n += 1);
                }
                log_event(&name, event)
            }
        }))
}

fn log_event(name: &str, event: Event) {
    match event {
        Event::Connected => tracing::info!(client = name, "connected to NATS"),
        Event::Disconnected => tracing::warn!(client = name, "disconnected from NATS"),
        Event::LameDuckMode => tracing::warn!(client = name, "NATS server entering lame duck mode"),
        Event::SlowConsumer(sid) => tracing::warn!(client = name, sid, "slow consumer"),
        Event::ServerError(e) => tracing::error!(client = name, error = %e, "NATS server error"),
        Event::ClientError(e) => tracing::error!(client = name, error = %e, "NATS client error"),
        other => tracing::debug!(client = name, event = %other, "NATS event"),
    }
}

/// Build a client. Returns at once: the first connection is made in the
/// background and retried forever (see [`wait_connected`]).
pub async fn connect(opts: &NatsOptions) -> Result<Client, NatsConfigError> {
    let addrs = server_addrs(&opts.urls)?;
    let co = connect_options(opts).await?;
    Ok(co.connect(addrs).await?)
}

/// How many times a client lost its connection so far. A request waiting
/// for a reply on a connection that is gone waits in vain: the reply, if
/// the request got anywhere, was routed to the old connection.
#[derive(Debug, Clone)]
pub struct Disconnects(tokio::sync::watch::Receiver<u64>);

impl Disconnects {
    /// The count now: take it before checking that the client is connected
    /// and sending.
    pub fn seen(&self) -> u64 {
        *self.0.borrow()
    }

    /// Resolves once the connection is lost after the count was `seen`
    /// (never, if the client is gone).
    pub async fn since(&self, seen: u64) {
        let mut rx = self.0.clone();
        if rx.wait_for(|n| *n > seen).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// [`connect`], and the client's [`Disconnects`].
pub async fn connect_counting_disconnects(
    opts: &NatsOptions,
) -> Result<(Client, Disconnects), NatsConfigError> {
    let addrs = server_addrs(&opts.urls)?;
    let (tx, rx) = tokio::sync::watch::channel(0);
    let co = base_options_counting(opts, Some(Arc::new(tx)))
        .await?
        .retry_on_initial_connect();
    Ok((co.connect(addrs).await?, Disconnects(rx)))
}

/// Build a client for a short-lived command (the CLI): one attempt per
/// server within `connect_timeout`, failing with
/// [`NatsConfigError::Connect`] when none answers, so the command can say
/// so at once instead of waiting forever. Once connected it reconnects like
/// every other client.
pub async fn connect_now(opts: &NatsOptions) -> Result<Client, NatsConfigError> {
    let addrs = server_addrs(&opts.urls)?;
    let co = base_options(opts).await?;
    Ok(co.connect(addrs).await?)
}

/// Build a client whose connection, once lost, is not established again
/// (one attempt per server, like [`connect_now`]): every call after the
/// loss fails, and nothing queued for the lost connection is sent later on
/// another one. For a publisher whose order must hold across outages (the
/// log forwarder): it builds a new client and sends again from what was
/// acknowledged.
pub async fn connect_once(opts: &NatsOptions) -> Result<Client, NatsConfigError> {
    let addrs = server_addrs(&opts.urls)?;
    let co = base_options(opts).await?.no_reconnect();
    Ok(co.connect(addrs).await?)
}

/// Wait until `client` is connected.
pub async fn wait_connected(client: &Client) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while client.connection_state() != async_nats::connection::State::Connected {
        tick.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_comma_separated_urls() {
        assert_eq!(
            split_urls("nats://a:4222, nats://b:4223,,"),
            vec!["nats://a:4222", "nats://b:4223"]
        );
        assert!(server_addrs(&split_urls("nats://a:4222,tls://b:4443")).is_ok());
        assert!(matches!(server_addrs(&[]), Err(NatsConfigError::NoUrl)));
        assert!(matches!(
            server_addrs(&["http://a b".into()]),
            Err(NatsConfigError::Url { .. })
        ));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(
            reconnect_delay(1),
            Duration::ZERO,
            "the first connect is not delayed"
        );
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(3), Duration::from_millis(200));
        assert_eq!(reconnect_delay(5), Duration::from_millis(800));
        assert_eq!(reconnect_delay(100), Duration::from_secs(5));
    }
}
