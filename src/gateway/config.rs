//! The gateway configuration file.
//!
//! The YAML schema is the Go gateway's `config.yaml`, unchanged, so an
//! existing Go configuration loads as is; the new keys all have defaults.
//! [`GatewayConfig`] is the file as written; [`parse`] and [`load`] validate
//! it into a ready-to-use [`Config`], reporting every problem at once, each
//! prefixed with where it is (`routes[1].methods: ...`).
//!
//! Differences from the Go gateway, all deliberate:
//!
//! - unknown keys are errors (Go silently ignored them, so a typo such as
//!   `request_timeout: 5` went unnoticed);
//! - `metrics_addr: ""` disables the metrics listener (Go listened on `:80`),
//!   and `server_addr: ""` is an error (Go listened on `:80`);
//! - a `service` must also be a valid NATS subject, and an HTTP `path` must
//!   be a clean literal path (Go's `ServeMux` gave `{`, `}`, spaces and
//!   host names special meanings);
//! - two routes may share a `path` with different methods (Go panicked);
//! - a `path` must not contain an encoded dot segment, `/` or NUL, or a
//!   malformed escape: requests with one get 400 before routing (see
//!   [`super::routes::check_path`]), so such a route could never match.
//!
//! As in Go, a key given an empty YAML value (`metrics_addr:`) keeps its
//! default, and `nats_url: ""` means the default URL.

use std::{
    collections::{hash_map::Entry, HashMap},
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use http::Method;
use serde::{Deserialize, Deserializer};

use super::routes::{canonical_key, check_path, clean_path, HttpRoute};

/// The NATS server used when `nats_url` is absent or empty.
const DEFAULT_NATS_URL: &str = "nats://localhost:4222";

/// The longest duration any timeout may be set to (365 days): larger values
/// are certainly mistakes, and could overflow deadline arithmetic.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The smallest `max_header_bytes` hyper accepts.
const MIN_HEADER_BYTES: usize = 8192;

/// The configuration file as written, with defaults applied but not yet
/// validated: see [`parse`] for the validated [`Config`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// NATS server URL(s). Default `nats://localhost:4222`; `""` also means
    /// the default, as in Go.
    #[serde(default = "default_nats_url", deserialize_with = "de_nats_url")]
    pub nats_url: String,
    /// NKey seed file for NATS authentication; absent or `""` means none.
    #[serde(default, deserialize_with = "de_optional_path")]
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS credentials (JWT + seed) file; absent or `""` means none.
    #[serde(default, deserialize_with = "de_optional_path")]
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the NATS server with; absent or `""`
    /// means the system roots.
    #[serde(default, deserialize_with = "de_optional_path")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a NATS server that verifies clients;
    /// needs `tls_key_file`. Absent or `""` means none.
    #[serde(default, deserialize_with = "de_optional_path")]
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default, deserialize_with = "de_optional_path")]
    pub tls_key_file: Option<PathBuf>,
    /// HTTP listen address. Default `:8080`.
    #[serde(default = "default_server_addr", deserialize_with = "de_server_addr")]
    pub server_addr: String,
    /// gRPC (h2c) listen address. Default `""`: disabled. Required when a
    /// gRPC route exists.
    #[serde(default, deserialize_with = "de_grpc_addr")]
    pub grpc_addr: String,
    /// Prometheus `/metrics` listen address. Default `:9090`; `""` disables
    /// it.
    #[serde(default = "default_metrics_addr", deserialize_with = "de_metrics_addr")]
    pub metrics_addr: String,
    /// Default time to wait for a service's reply. Default 30; must be > 0.
    #[serde(
        default = "default_request_timeout_seconds",
        deserialize_with = "de_request_timeout_seconds"
    )]
    pub request_timeout_seconds: i64,
    /// Largest accepted request body. Default 8 MiB; must be > 0.
    #[serde(
        default = "default_max_body_bytes",
        deserialize_with = "de_max_body_bytes"
    )]
    pub max_body_bytes: u64,
    /// Largest accepted request head. Default 64 KiB; must be >= 8192.
    #[serde(
        default = "default_max_header_bytes",
        deserialize_with = "de_max_header_bytes"
    )]
    pub max_header_bytes: usize,
    /// Most requests forwarded at once (waiting for their NATS reply, or
    /// streaming it). Default 1024; must be > 0.
    #[serde(
        default = "default_max_in_flight",
        deserialize_with = "de_max_in_flight"
    )]
    pub max_in_flight: usize,
    /// Most client connections open at once, HTTP and gRPC listeners
    /// together. Default 4096; must be > 0.
    #[serde(
        default = "default_max_connections",
        deserialize_with = "de_max_connections"
    )]
    pub max_connections: usize,
    /// Time allowed to receive a request head, and a new connection's
    /// HTTP/2 preface and first frame. Default 5; must be > 0.
    #[serde(
        default = "default_header_read_timeout_seconds",
        deserialize_with = "de_header_read_timeout_seconds"
    )]
    pub header_read_timeout_seconds: u64,
    /// Time allowed to receive a request body, from the end of its head.
    /// Default 30; must be > 0.
    #[serde(
        default = "default_body_read_timeout_seconds",
        deserialize_with = "de_body_read_timeout_seconds"
    )]
    pub body_read_timeout_seconds: u64,
    /// Idle keep-alive connection lifetime. Default 60; must be > 0.
    #[serde(
        default = "default_idle_timeout_seconds",
        deserialize_with = "de_idle_timeout_seconds"
    )]
    pub idle_timeout_seconds: u64,
    /// Time allowed to drain in-flight requests on shutdown. Default 15.
    #[serde(
        default = "default_shutdown_timeout_seconds",
        deserialize_with = "de_shutdown_timeout_seconds"
    )]
    pub shutdown_timeout_seconds: u64,
    /// Runtime threads. Default 0: automatic, one on machines with up to
    /// two cores, else one per core. 1 runs a single-threaded runtime: on a
    /// small machine shared with NATS and the apps it spends about a
    /// quarter less CPU per request and serves more (bench/run.sh, rows
    /// (g) and (h) on 2 cores).
    #[serde(default, deserialize_with = "de_threads")]
    pub threads: usize,
    /// The routes; at least one is required.
    #[serde(default, deserialize_with = "de_routes")]
    pub routes: Vec<RouteConfig>,
}

/// One route as written: HTTP (`path` + `methods`) or gRPC (`grpc`), sent
/// to the NATS subject `service`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// HTTP path pattern: `/x/` is a subtree, `/x` exact. `""` means absent,
    /// as in Go.
    #[serde(default)]
    pub path: Option<String>,
    /// Accepted HTTP methods (case-insensitive); required for HTTP routes.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Fully-qualified gRPC service, e.g. `hello.v1.Greeter`. `""` means
    /// absent, as in Go.
    #[serde(default)]
    pub grpc: Option<String>,
    /// The NATS subject (and NATS Micro service name); required.
    #[serde(default)]
    pub service: Option<String>,
    /// This route's reply timeout, overriding `request_timeout_seconds`:
    /// `500ms`, `5s`, `2m`, `1h`, or a bare integer of seconds.
    #[serde(default, deserialize_with = "de_timeout")]
    pub timeout: Option<String>,
}

/// The validated, ready-to-use configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS server URL(s), as given.
    pub nats_url: String,
    /// NKey seed file for NATS authentication.
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS credentials file.
    pub creds_file: Option<PathBuf>,
    /// CA certificate to verify the NATS server with.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key for a server that verifies clients.
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's key.
    pub tls_key_file: Option<PathBuf>,
    /// HTTP listen address.
    pub server_addr: SocketAddr,
    /// gRPC listen address; `None` when disabled.
    pub grpc_addr: Option<SocketAddr>,
    /// Metrics listen address; `None` when disabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Default reply timeout (routes may override it).
    pub request_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: u64,
    /// Largest accepted request head.
    pub max_header_bytes: usize,
    /// Most requests forwarded at once.
    pub max_in_flight: usize,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Time allowed to receive a request head, and a new connection's
    /// HTTP/2 preface and first frame.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request body.
    pub body_read_timeout: Duration,
    /// Idle keep-alive connection lifetime.
    pub idle_timeout: Duration,
    /// Time allowed to drain in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// Runtime threads (`threads`, 0 resolved: see [`Config::runtime_threads`]).
    pub threads: usize,
    /// The HTTP routes, in file order.
    pub http_routes: Vec<HttpRoute>,
    /// The gRPC routes, in file order.
    pub grpc_routes: Vec<GrpcRoute>,
}

impl Config {
    /// The runtime threads to use on a machine with `cores` cores.
    pub fn runtime_threads(&self, cores: usize) -> usize {
        match self.threads {
            0 if cores <= 2 => 1,
            0 => cores,
            n => n,
        }
    }
}

/// One validated gRPC route: every method of `service_name` goes to
/// `subject`.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcRoute {
    /// Fully-qualified gRPC service name, e.g. `hello.v1.Greeter`.
    pub service_name: String,
    /// The NATS subject (and NATS Micro service name) calls are sent to.
    pub subject: String,
    /// How long to wait for the service's reply.
    pub timeout: Duration,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML for the schema (syntax error, wrong type,
    /// unknown key); the message includes the line and column.
    #[error("{path}: {message}")]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// The YAML error, with its location.
        message: String,
    },
    /// The file parsed but breaks validation rules.
    #[error(
        "{path}: invalid configuration:\n{}",
        .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// Every problem found, each starting with where it is.
        problems: Vec<String>,
    },
}

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let yaml = crate::limits::read_gateway_config(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &yaml)
}

/// Deepest nesting of lists and mappings in a configuration (a real one
/// uses 4 levels).
pub const MAX_CONFIG_DEPTH: usize = 32;
/// Most values (scalars, lists, mappings) in a configuration.
pub const MAX_CONFIG_VALUES: usize = 200_000;

/// Too deep or too many values, with the line, checked on the YAML events
/// (linear, little memory) before serde_norway builds the document:
/// libyaml's time grows with the nesting depth times the size (200 KB of
/// `[[[...` took over 20 s).
fn check_shape(yaml: &str) -> Result<(), String> {
    use saphyr_parser::{Event, Parser};
    let (mut depth, mut values) = (0usize, 0usize);
    let mut parser = Parser::new_from_str(yaml);
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(e) => e,
            Err(e) => {
                // Syntax errors are serde_norway's to report, unless the
                // document is too deep for libyaml to get there in time.
                let openings = yaml.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
                if openings > 4 * MAX_CONFIG_DEPTH || e.info().contains("recursion limit") {
                    return Err(format!(
                        "{} at line {} column {}",
                        e.info(),
                        e.marker().line(),
                        e.marker().col() + 1
                    ));
                }
                return Ok(());
            }
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                values += 1;
                if depth > MAX_CONFIG_DEPTH {
                    return Err(format!(
                        "lists and mappings nested deeper than {MAX_CONFIG_DEPTH} levels at line {} column {}",
                        span.start.line(),
                        span.start.col() + 1
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::Scalar(..) | Event::Alias(_) => values += 1,
            _ => {}
        }
        if values > MAX_CONFIG_VALUES {
            return Err(format!(
                "more than {MAX_CONFIG_VALUES} values at line {} column {}",
                span.start.line(),
                span.start.col() + 1
            ));
        }
    }
    Ok(())
}

/// Parses and validates `yaml`; `path` is only used in error messages.
pub fn parse(path: &Path, yaml: &str) -> Result<Config, ConfigError> {
    check_shape(yaml).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })?;
    let raw: GatewayConfig = serde_norway::from_str(yaml).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: yaml_error_message(&e),
    })?;
    raw.validate().map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })
}

/// The YAML error's message, always with its location: serde_norway leaves
/// out `at line 1 column 1` (for instance for an unknown key on the first
/// line), which would make that error the only one without a position.
fn yaml_error_message(error: &serde_norway::Error) -> String {
    let message = error.to_string();
    match error.location() {
        Some(at)
            if at.line() == 1
                && at.column() == 1
                && !message.contains(" at line ")
                && !message.contains(" at position ") =>
        {
            format!("{message} at line 1 column 1")
        }
        _ => message,
    }
}

impl GatewayConfig {
    /// Checks every rule and builds the [`Config`], or returns every
    /// problem found, in file order.
    fn validate(&self) -> Result<Config, Vec<String>> {
        let mut problems = Problems::default();

        let nats_url = self.nats_url.trim().to_owned();
        if self.nkey_seed_file.is_some() && self.creds_file.is_some() {
            problems.push(
                "creds_file",
                "cannot be combined with nkey_seed_file; both authenticate the connection",
            );
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => problems.push(
                "tls_cert_file",
                "needs tls_key_file (the certificate's private key)",
            ),
            (None, Some(_)) => problems.push(
                "tls_key_file",
                "needs tls_cert_file (the client certificate it is the key of)",
            ),
            _ => {}
        }
        let server_addr = if self.server_addr.trim().is_empty() {
            problems.push(
                "server_addr",
                "must not be empty (the Go gateway listened on :80 then; write \":80\" for that)",
            );
            None
        } else {
            problems.check("server_addr", parse_listen_addr(&self.server_addr))
        };
        let grpc_addr = optional_addr(&mut problems, "grpc_addr", &self.grpc_addr);
        let metrics_addr = optional_addr(&mut problems, "metrics_addr", &self.metrics_addr);

        let request_timeout = problems.check(
            "request_timeout_seconds",
            u64::try_from(self.request_timeout_seconds)
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| format!("must be > 0, got {}", self.request_timeout_seconds))
                .and_then(|s| bounded(Duration::from_secs(s))),
        );
        if self.max_body_bytes == 0 {
            problems.push("max_body_bytes", "must be > 0, got 0");
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            problems.push(
                "max_header_bytes",
                format!(
                    "must be >= {MIN_HEADER_BYTES}, got {}",
                    self.max_header_bytes
                ),
            );
        }
        if self.max_in_flight == 0 {
            problems.push("max_in_flight", "must be > 0, got 0");
        }
        if self.max_connections == 0 {
            problems.push("max_connections", "must be > 0, got 0");
        }
        let header_read_timeout = positive_seconds(
            &mut problems,
            "header_read_timeout_seconds",
            self.header_read_timeout_seconds,
        );
        let body_read_timeout = positive_seconds(
            &mut problems,
            "body_read_timeout_seconds",
            self.body_read_timeout_seconds,
        );
        let idle_timeout = positive_seconds(
            &mut problems,
            "idle_timeout_seconds",
            self.idle_timeout_seconds,
        );
        let shutdown_timeout = problems.check(
            "shutdown_timeout_seconds",
            bounded(Duration::from_secs(self.shutdown_timeout_seconds)),
        );

        let (http_routes, grpc_routes) = self.validate_routes(&mut problems, request_timeout);

        match (
            problems.0.is_empty(),
            server_addr,
            request_timeout,
            header_read_timeout,
            body_read_timeout,
            idle_timeout,
            shutdown_timeout,
        ) {
            (
                true,
                Some(server_addr),
                Some(request_timeout),
                Some(header_read_timeout),
                Some(body_read_timeout),
                Some(idle_timeout),
                Some(shutdown_timeout),
            ) => Ok(Config {
                nats_url,
                nkey_seed_file: self.nkey_seed_file.clone(),
                creds_file: self.creds_file.clone(),
                tls_ca_file: self.tls_ca_file.clone(),
                tls_cert_file: self.tls_cert_file.clone(),
                tls_key_file: self.tls_key_file.clone(),
                server_addr,
                grpc_addr: grpc_addr.flatten(),
                metrics_addr: metrics_addr.flatten(),
                request_timeout,
                max_body_bytes: self.max_body_bytes,
                max_header_bytes: self.max_header_bytes,
                max_in_flight: self.max_in_flight,
                max_connections: self.max_connections,
                header_read_timeout,
                body_read_timeout,
                idle_timeout,
                shutdown_timeout,
                threads: self.threads,
                http_routes,
                grpc_routes,
            }),
            _ => Err(problems.0),
        }
    }

    /// Validates `routes`. With `default_timeout` `None` (invalid), routes
    /// without their own timeout are checked but not built.
    fn validate_routes(
        &self,
        problems: &mut Problems,
        default_timeout: Option<Duration>,
    ) -> (Vec<HttpRoute>, Vec<GrpcRoute>) {
        let mut http_routes = Vec::new();
        let mut grpc_routes = Vec::new();
        if self.routes.is_empty() {
            problems.push("routes", "at least one route is required");
        }
        // (canonical path, method) and gRPC service -> first route index.
        let mut http_seen: HashMap<(String, Method), usize> = HashMap::new();
        let mut grpc_seen: HashMap<String, usize> = HashMap::new();
        let mut first_grpc_route = None;

        for (i, route) in self.routes.iter().enumerate() {
            let at = |field: &str| format!("routes[{i}].{field}");
            let path = route.path.as_deref().filter(|p| !p.is_empty());
            let grpc = route.grpc.as_deref().filter(|g| !g.is_empty());

            // The kind-specific checks first, in the order of the keys.
            let kind = match (path, grpc) {
                (Some(_), Some(_)) => {
                    problems.push(
                        &format!("routes[{i}]"),
                        "has both 'path' and 'grpc'; a route is either HTTP or gRPC",
                    );
                    None
                }
                (None, None) => {
                    problems.push(
                        &format!("routes[{i}]"),
                        "has neither 'path' (HTTP route) nor 'grpc' (gRPC route)",
                    );
                    None
                }
                (Some(path), None) => {
                    let path_ok = validate_path(problems, &at("path"), path);
                    let (methods, methods_ok) =
                        validate_methods(problems, &at("methods"), route.methods.as_deref());
                    if path_ok {
                        let key = canonical_key(path);
                        for method in &methods {
                            match http_seen.entry((key.to_string(), method.clone())) {
                                Entry::Vacant(entry) => {
                                    entry.insert(i);
                                }
                                Entry::Occupied(entry) => problems.push(
                                    &format!("routes[{i}]"),
                                    format!(
                                        "duplicate HTTP route for path '{path}' and method \
                                         '{method}', already defined by routes[{}]",
                                        entry.get()
                                    ),
                                ),
                            }
                        }
                    }
                    (path_ok && methods_ok).then_some(Kind::Http { path, methods })
                }
                (None, Some(grpc)) => {
                    first_grpc_route.get_or_insert(i);
                    let name = grpc.trim();
                    if name.is_empty() {
                        problems.push(&at("grpc"), "must not be empty");
                        None
                    } else if name.contains(|c: char| c.is_whitespace() || c == '/') {
                        problems.push(
                            &at("grpc"),
                            format!(
                                "must not contain whitespace or '/', got '{grpc}' \
                                 (expected a fully-qualified service such as hello.v1.Greeter)"
                            ),
                        );
                        None
                    } else if let Some(&first) = grpc_seen.get(name) {
                        problems.push(
                            &at("grpc"),
                            format!(
                                "duplicate gRPC route for service '{name}', \
                                 already defined by routes[{first}]"
                            ),
                        );
                        None
                    } else {
                        grpc_seen.insert(name.to_owned(), i);
                        Some(Kind::Grpc { name })
                    }
                }
            };

            let service = validate_service(problems, &at("service"), route.service.as_deref());
            let timeout = match &route.timeout {
                Some(t) => problems.check(&at("timeout"), parse_duration(t)),
                None => default_timeout,
            };

            match (kind, service, timeout) {
                (Some(Kind::Http { path, methods }), Some(service), Some(timeout)) => {
                    http_routes.push(HttpRoute {
                        pattern: path.to_owned(),
                        methods,
                        service,
                        timeout,
                    });
                }
                (Some(Kind::Grpc { name }), Some(service), Some(timeout)) => {
                    grpc_routes.push(GrpcRoute {
                        service_name: name.to_owned(),
                        subject: service,
                        timeout,
                    });
                }
                _ => {}
            }
        }

        if let (Some(i), true) = (first_grpc_route, self.grpc_addr.trim().is_empty()) {
            problems.push(
                "grpc_addr",
                format!("required because routes[{i}] is a gRPC route"),
            );
        }
        (http_routes, grpc_routes)
    }
}

/// Parses a listen address the way Go's `net.Listen("tcp", s)` reads it,
/// without name resolution: `:8080` (every IPv4 interface, `0.0.0.0:8080`),
/// `127.0.0.1:0`, `[::1]:80`, `localhost:8080` (`127.0.0.1:8080`).
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty; expected host:port such as ':8080'".to_owned());
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "'{s}' has no port; expected host:port such as ':8080' or '127.0.0.1:8080'"
        ));
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|_| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!("'{s}' has an invalid port '{port}'; expected a number from 0 to 65535")
        })?;
    let ip: IpAddr = if host.is_empty() {
        Ipv4Addr::UNSPECIFIED.into()
    } else if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST.into()
    } else if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "'{s}': an IPv6 address must be in brackets, e.g. '[::1]:8080'"
        ));
    } else {
        return Err(format!(
            "'{s}': host '{host}' must be an IP address, 'localhost' or empty"
        ));
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses a timeout in narun's one duration syntax ([`crate::duration`]:
/// `250ms`, `5s`, `2m`, a bare integer of seconds). It must be > 0 and at
/// most 365 days.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let duration = crate::duration::parse(s)?;
    if duration.is_zero() {
        return Err(format!("must be > 0, got '{s}'"));
    }
    bounded(duration).map_err(|_| format!("'{s}' is too long: at most {}s", MAX_DURATION.as_secs()))
}

// === validation helpers ===

/// A route whose kind-specific keys are valid.
enum Kind<'a> {
    Http { path: &'a str, methods: Vec<Method> },
    Grpc { name: &'a str },
}

/// The problems found so far, each `"<where>: <what>"`.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, at: &str, message: impl fmt::Display) {
        self.0.push(format!("{at}: {message}"));
    }

    /// The value, or `None` after recording the error under `at`.
    fn check<T>(&mut self, at: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.push(at, e)).ok()
    }
}

/// `Ok(duration)` if it is at most [`MAX_DURATION`].
fn bounded(duration: Duration) -> Result<Duration, String> {
    if duration > MAX_DURATION {
        Err(format!(
            "must be at most {}s, got {}s",
            MAX_DURATION.as_secs(),
            duration.as_secs()
        ))
    } else {
        Ok(duration)
    }
}

fn positive_seconds(problems: &mut Problems, at: &str, seconds: u64) -> Option<Duration> {
    if seconds == 0 {
        problems.push(at, "must be > 0, got 0");
        return None;
    }
    problems.check(at, bounded(Duration::from_secs(seconds)))
}

/// An address where `""` means disabled: `Some(None)` when disabled,
/// `Some(Some(addr))` when valid, `None` (and a problem) when invalid.
fn optional_addr(problems: &mut Problems, at: &str, value: &str) -> Option<Option<SocketAddr>> {
    if value.trim().is_empty() {
        return Some(None);
    }
    problems.check(at, parse_listen_addr(value)).map(Some)
}

/// The service (NATS subject), or `None` after recording why it is invalid.
fn validate_service(problems: &mut Problems, at: &str, service: Option<&str>) -> Option<String> {
    let Some(service) = service.filter(|s| !s.trim().is_empty()) else {
        problems.push(
            at,
            "is required (the NATS service the route's requests go to)",
        );
        return None;
    };
    if service.contains(|c: char| c == '*' || c == '>' || c.is_whitespace()) {
        problems.push(
            at,
            format!("must not contain '*', '>' or whitespace, got '{service}'"),
        );
        return None;
    }
    if service.split('.').any(str::is_empty) {
        problems.push(
            at,
            format!(
                "'{service}' is not a valid NATS subject: it has an empty token \
                 (leading or trailing '.', or '..')"
            ),
        );
        return None;
    }
    Some(service.to_owned())
}

/// Whether an HTTP route `path` is a usable literal pattern; records why
/// not.
fn validate_path(problems: &mut Problems, at: &str, path: &str) -> bool {
    let mut ok = true;
    if !path.starts_with('/') {
        problems.push(
            at,
            format!(
                "must start with '/', got '{path}' (Go's ServeMux would read what precedes \
                 the first '/' as a host name)"
            ),
        );
        ok = false;
    }
    if path.contains(['{', '}']) {
        problems.push(
            at,
            format!(
                "must not contain '{{' or '}}', got '{path}' (Go's ServeMux would read them \
                 as wildcards; narun matches literal paths only)"
            ),
        );
        ok = false;
    }
    if path.contains(char::is_whitespace) {
        problems.push(
            at,
            format!(
                "must not contain whitespace, got '{path}' (Go's ServeMux would read \
                 'METHOD /path' as a method and a path; use 'methods' instead)"
            ),
        );
        ok = false;
    }
    if path.contains(['?', '#']) {
        problems.push(
            at,
            format!(
                "must not contain '?' or '#', got '{path}' (they start the query or the \
                 fragment, which are never part of the matched path)"
            ),
        );
        ok = false;
    }
    if let Err(bad) = check_path(path) {
        problems.push(
            at,
            format!(
                "'{path}' has an invalid escape ({}): requests for it get 400 before \
                 routing, so it could never match",
                bad.reason()
            ),
        );
        ok = false;
    }
    if ok {
        let cleaned = clean_path(path);
        if cleaned != path {
            problems.push(
                at,
                format!(
                    "'{path}' is not a clean path; requests for it are redirected to \
                     '{cleaned}', so it could never match (write '{cleaned}')"
                ),
            );
            ok = false;
        }
    }
    ok
}

/// The route's valid methods, trimmed and upper-cased, and whether all of
/// them were valid; records every problem.
fn validate_methods(
    problems: &mut Problems,
    at: &str,
    methods: Option<&[String]>,
) -> (Vec<Method>, bool) {
    let methods = methods.unwrap_or_default();
    if methods.is_empty() {
        problems.push(at, "must not be empty for an HTTP route");
        return (Vec::new(), false);
    }
    let mut valid: Vec<Method> = Vec::with_capacity(methods.len());
    let mut all_ok = true;
    for (j, raw) in methods.iter().enumerate() {
        let name = raw.trim().to_ascii_uppercase();
        if name.is_empty() {
            problems.push(&format!("{at}[{j}]"), "must not be empty");
            all_ok = false;
            continue;
        }
        match Method::from_bytes(name.as_bytes()) {
            Ok(method) if valid.contains(&method) => {
                problems.push(&format!("{at}[{j}]"), format!("'{name}' is listed twice"));
                all_ok = false;
            }
            Ok(method) => valid.push(method),
            Err(_) => {
                problems.push(
                    &format!("{at}[{j}]"),
                    format!("'{raw}' is not a valid HTTP method"),
                );
                all_ok = false;
            }
        }
    }
    (valid, all_ok)
}

// === serde helpers ===

fn default_nats_url() -> String {
    DEFAULT_NATS_URL.to_owned()
}
fn default_server_addr() -> String {
    ":8080".to_owned()
}
fn default_metrics_addr() -> String {
    ":9090".to_owned()
}
fn default_request_timeout_seconds() -> i64 {
    30
}
fn default_max_body_bytes() -> u64 {
    8 * 1024 * 1024
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout_seconds() -> u64 {
    5
}
fn default_body_read_timeout_seconds() -> u64 {
    30
}
fn default_idle_timeout_seconds() -> u64 {
    60
}
fn default_shutdown_timeout_seconds() -> u64 {
    15
}

/// Defines a deserializer for which an explicit YAML null (`key:` with no
/// value) means the default, as yaml.v3 did for the Go gateway.
macro_rules! null_means_default {
    ($($name:ident: $ty:ty = $default:expr;)*) => {$(
        fn $name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
            Ok(Option::<$ty>::deserialize(deserializer)?.unwrap_or_else($default))
        }
    )*};
}

null_means_default! {
    de_server_addr: String = default_server_addr;
    de_grpc_addr: String = String::new;
    de_metrics_addr: String = default_metrics_addr;
    de_request_timeout_seconds: i64 = default_request_timeout_seconds;
    de_max_body_bytes: u64 = default_max_body_bytes;
    de_max_header_bytes: usize = default_max_header_bytes;
    de_max_in_flight: usize = default_max_in_flight;
    de_max_connections: usize = default_max_connections;
    de_header_read_timeout_seconds: u64 = default_header_read_timeout_seconds;
    de_body_read_timeout_seconds: u64 = default_body_read_timeout_seconds;
    de_idle_timeout_seconds: u64 = default_idle_timeout_seconds;
    de_shutdown_timeout_seconds: u64 = default_shutdown_timeout_seconds;
    de_routes: Vec<RouteConfig> = Vec::new;
    de_threads: usize = usize::default;
}

/// `nats_url`: null, `""` or blank mean the default (nats.go connected to
/// its default URL for `""`).
fn de_nats_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(default_nats_url))
}

/// A file path where null, `""` or blank mean none.
fn de_optional_path<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?
        .filter(|p| !p.trim().is_empty())
        .map(PathBuf::from))
}

/// A route `timeout`: a string, or a bare integer (seconds) kept as its
/// decimal text for [`parse_duration`].
fn de_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct TimeoutVisitor;

    impl<'de> serde::de::Visitor<'de> for TimeoutVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"500ms\", \"5s\", \"2m\", or an integer of seconds")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
    }

    deserializer.deserialize_option(TimeoutVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_or_huge_documents_are_refused_before_serde() {
        for (yaml, want) in [
            (format!("routes: {}", "[".repeat(200_000)), "line 1"),
            (
                format!("routes:\n{}", "- ".repeat(40) + "x\n"),
                "nested deeper than 32 levels",
            ),
            (
                format!("routes: [{}]\n", "a,".repeat(MAX_CONFIG_VALUES)),
                "more than 200000 values",
            ),
        ] {
            let e = parse(Path::new("gw.yaml"), &yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        // A syntax error is still serde_norway's message.
        let e = parse(Path::new("gw.yaml"), "routes: [\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line"), "{e}");
    }

    /// The Go gateway's README / `config.yaml` example, verbatim.
    const GO_README_EXAMPLE: &str = r#"nats_url: "nats://localhost:4222"
server_addr: ":8080"
nkey_seed_file: ""
grpc_addr: ":8081"
metrics_addr: ":9090"
request_timeout_seconds: 15
routes:
  - path: "/hello/"
    methods: ["POST"]
    service: "hello"
  - grpc: "hello.v1.Greeter"
    service: "grpc-hello-service"
"#;

    /// The Go repository's `cmd/narun-gw/config.yaml`, comments included.
    const GO_REPO_EXAMPLE: &str = r#"# config.yaml example with HTTP and gRPC routes

nats_url: "nats://localhost:4222" # URL of your NATS server
server_addr: ":8080" # Address for the main HTTP gateway to listen on
grpc_addr: ":8081" # Address for the gRPC gateway (optional, remove if no gRPC routes)
metrics_addr: ":9090" # Address for the Prometheus metrics endpoint
request_timeout_seconds: 15 # Max time (seconds) to wait for a NATS reply

# Define routes: map HTTP path/method OR gRPC service to NATS service
routes:
  # --- HTTP Route Example ---
  - path: "/" # Incoming HTTP request path
    methods: ["GET"] # Incoming HTTP request methods
    service: "caradioamateur" # Target NATS service name for these HTTP requests

  # --- gRPC Route Example ---
  - grpc: "hello.v1.Greeter" # Fully qualified gRPC service name
    service: "grpc-hello-service" # NATS Micro service name the consumer listens on

  # --- Another HTTP Route ---
  - path: "/goodbye"
    methods: ["GET"]
    service: "goodbye"
"#;

    fn ok(yaml: &str) -> Config {
        match parse(Path::new("gw.yaml"), yaml) {
            Ok(config) => config,
            Err(e) => panic!("expected a valid configuration, got: {e}\n{yaml}"),
        }
    }

    fn problems(yaml: &str) -> Vec<String> {
        match parse(Path::new("gw.yaml"), yaml) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected ConfigError::Invalid, got {other:?}\n{yaml}"),
        }
    }

    fn parse_error(yaml: &str) -> String {
        match parse(Path::new("gw.yaml"), yaml) {
            Err(e @ ConfigError::Parse { .. }) => e.to_string(),
            other => panic!("expected ConfigError::Parse, got {other:?}\n{yaml}"),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    /// One HTTP route and `extra` top-level lines.
    fn with_http_route(extra: &str) -> String {
        format!("{extra}\nroutes:\n  - path: /x\n    methods: [GET]\n    service: svc\n")
    }

    #[test]
    fn go_readme_example_loads_unchanged() {
        let config = ok(GO_README_EXAMPLE);
        assert_eq!(config.nats_url, "nats://localhost:4222");
        assert_eq!(config.nkey_seed_file, None);
        assert_eq!(config.server_addr, addr("0.0.0.0:8080"));
        assert_eq!(config.grpc_addr, Some(addr("0.0.0.0:8081")));
        assert_eq!(config.metrics_addr, Some(addr("0.0.0.0:9090")));
        assert_eq!(config.request_timeout, Duration::from_secs(15));
        assert_eq!(
            config.http_routes,
            vec![HttpRoute {
                pattern: "/hello/".to_owned(),
                methods: vec![Method::POST],
                service: "hello".to_owned(),
                timeout: Duration::from_secs(15),
            }]
        );
        assert_eq!(
            config.grpc_routes,
            vec![GrpcRoute {
                service_name: "hello.v1.Greeter".to_owned(),
                subject: "grpc-hello-service".to_owned(),
                timeout: Duration::from_secs(15),
            }]
        );
    }

    #[test]
    fn go_repo_example_loads_unchanged() {
        let config = ok(GO_REPO_EXAMPLE);
        let http: Vec<(&str, &str)> = config
            .http_routes
            .iter()
            .map(|r| (r.pattern.as_str(), r.service.as_str()))
            .collect();
        assert_eq!(http, [("/", "caradioamateur"), ("/goodbye", "goodbye")]);
        assert_eq!(config.grpc_routes.len(), 1);
        assert_eq!(config.grpc_addr, Some(addr("0.0.0.0:8081")));
    }

    #[test]
    fn defaults() {
        let config = ok(&with_http_route(""));
        assert_eq!(config.nats_url, "nats://localhost:4222");
        assert_eq!(config.server_addr, addr("0.0.0.0:8080"));
        assert_eq!(config.metrics_addr, Some(addr("0.0.0.0:9090")));
        assert_eq!(config.grpc_addr, None);
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.http_routes[0].timeout, Duration::from_secs(30));
        assert_eq!(config.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(config.max_header_bytes, 64 * 1024);
        assert_eq!(config.max_in_flight, 1024);
        assert_eq!(config.max_connections, 4096);
        assert_eq!(config.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.body_read_timeout, Duration::from_secs(30));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(15));
        assert_eq!(config.nkey_seed_file, None);
        assert_eq!(config.creds_file, None);
        assert_eq!(config.tls_ca_file, None);
        // Unless set: one runtime thread up to two cores, else one per core.
        assert_eq!(config.threads, 0);
        assert_eq!(
            [1, 2, 3, 4, 16].map(|c| config.runtime_threads(c)),
            [1, 1, 3, 4, 16]
        );
        let one = ok(&with_http_route("threads: 1"));
        assert_eq!([2, 16].map(|c| one.runtime_threads(c)), [1, 1]);
    }

    #[test]
    fn empty_values_keep_defaults_or_disable() {
        // As with yaml.v3: a key with no value keeps its default.
        let config = ok(&with_http_route(
            "nats_url:\nserver_addr:\nmetrics_addr: ~\nrequest_timeout_seconds:\nnkey_seed_file:",
        ));
        assert_eq!(config.nats_url, "nats://localhost:4222");
        assert_eq!(config.server_addr, addr("0.0.0.0:8080"));
        assert_eq!(config.metrics_addr, Some(addr("0.0.0.0:9090")));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.nkey_seed_file, None);

        // "" disables metrics and gRPC, means "none" for files, and the
        // default URL for nats_url.
        let config = ok(&with_http_route(
            "nats_url: \"\"\nmetrics_addr: \"\"\ngrpc_addr: \"\"\ncreds_file: \"\"\ntls_ca_file: \"\"",
        ));
        assert_eq!(config.nats_url, "nats://localhost:4222");
        assert_eq!(config.metrics_addr, None);
        assert_eq!(config.grpc_addr, None);
        assert_eq!(config.creds_file, None);
        assert_eq!(config.tls_ca_file, None);
    }

    #[test]
    fn new_keys_are_read() {
        let config = ok(&with_http_route(
            "nats_url: nats://a:4222,nats://b:4222
creds_file: /etc/narun/gw.creds
tls_ca_file: /etc/narun/ca.pem
server_addr: 127.0.0.1:0
grpc_addr: \"[::1]:8081\"
metrics_addr: localhost:9100
max_body_bytes: 1024
max_header_bytes: 8192
max_in_flight: 7
max_connections: 9
header_read_timeout_seconds: 2
body_read_timeout_seconds: 4
idle_timeout_seconds: 3
shutdown_timeout_seconds: 0",
        ));
        assert_eq!(config.nats_url, "nats://a:4222,nats://b:4222");
        assert_eq!(
            config.creds_file,
            Some(PathBuf::from("/etc/narun/gw.creds"))
        );
        assert_eq!(config.tls_ca_file, Some(PathBuf::from("/etc/narun/ca.pem")));
        assert_eq!(config.server_addr, addr("127.0.0.1:0"));
        assert_eq!(config.grpc_addr, Some(addr("[::1]:8081")));
        assert_eq!(config.metrics_addr, Some(addr("127.0.0.1:9100")));
        assert_eq!(config.max_body_bytes, 1024);
        assert_eq!(config.max_header_bytes, 8192);
        assert_eq!(config.max_in_flight, 7);
        assert_eq!(config.max_connections, 9);
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.body_read_timeout, Duration::from_secs(4));
        assert_eq!(config.idle_timeout, Duration::from_secs(3));
        assert_eq!(config.shutdown_timeout, Duration::ZERO);
        let config = ok(&with_http_route("nkey_seed_file: /etc/narun/gw.nk"));
        assert_eq!(
            config.nkey_seed_file,
            Some(PathBuf::from("/etc/narun/gw.nk"))
        );
    }

    #[test]
    fn per_route_timeout_overrides_the_global_one() {
        let config = ok(r#"
grpc_addr: ":8081"
request_timeout_seconds: 15
routes:
  - path: /fast
    methods: [GET]
    service: fast
    timeout: 500ms
  - path: /default
    methods: [GET]
    service: default
  - path: /bare
    methods: [GET]
    service: bare
    timeout: 10
  - grpc: slow.v1.Slow
    service: slow
    timeout: "2m"
  - grpc: other.v1.Other
    service: other
"#);
        let http: Vec<Duration> = config.http_routes.iter().map(|r| r.timeout).collect();
        assert_eq!(
            http,
            [
                Duration::from_millis(500),
                Duration::from_secs(15),
                Duration::from_secs(10)
            ]
        );
        let grpc: Vec<Duration> = config.grpc_routes.iter().map(|r| r.timeout).collect();
        assert_eq!(grpc, [Duration::from_secs(120), Duration::from_secs(15)]);
    }

    #[test]
    fn methods_are_trimmed_and_uppercased() {
        let config =
            ok("routes:\n  - path: /x\n    methods: [' get ', Post, PURGE]\n    service: svc\n");
        let purge = Method::from_bytes(b"PURGE").expect("method");
        assert_eq!(
            config.http_routes[0].methods,
            [Method::GET, Method::POST, purge]
        );
    }

    #[test]
    fn same_path_with_different_methods_is_accepted() {
        // The Go gateway accepted this and then panicked at startup (G1).
        let config = ok(r#"
routes:
  - path: /items
    methods: [GET]
    service: items-read
  - path: /items
    methods: [POST]
    service: items-write
"#);
        let services: Vec<&str> = config
            .http_routes
            .iter()
            .map(|r| r.service.as_str())
            .collect();
        assert_eq!(services, ["items-read", "items-write"]);
    }

    /// One case per validation rule: the YAML and the exact problems.
    #[test]
    fn each_rule_is_reported() {
        let route = "\nroutes:\n  - path: /x\n    methods: [GET]\n    service: svc\n";
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "zero routes",
                "routes: []\n".to_owned(),
                vec!["routes: at least one route is required"],
            ),
            (
                "no routes key",
                "server_addr: \":8080\"\n".to_owned(),
                vec!["routes: at least one route is required"],
            ),
            (
                "both path and grpc",
                "grpc_addr: ':8081'\nroutes:\n  - path: /x\n    grpc: a.B\n    methods: [GET]\n    service: svc\n".to_owned(),
                vec!["routes[0]: has both 'path' and 'grpc'; a route is either HTTP or gRPC"],
            ),
            (
                "neither path nor grpc",
                "routes:\n  - service: svc\n".to_owned(),
                vec!["routes[0]: has neither 'path' (HTTP route) nor 'grpc' (gRPC route)"],
            ),
            (
                "empty path and grpc count as absent (as in Go)",
                "routes:\n  - path: ''\n    grpc: ''\n    service: svc\n".to_owned(),
                vec!["routes[0]: has neither 'path' (HTTP route) nor 'grpc' (gRPC route)"],
            ),
            (
                "empty methods",
                "routes:\n  - path: /x\n    methods: []\n    service: svc\n".to_owned(),
                vec!["routes[0].methods: must not be empty for an HTTP route"],
            ),
            (
                "missing methods",
                "routes:\n  - path: /x\n    service: svc\n".to_owned(),
                vec!["routes[0].methods: must not be empty for an HTTP route"],
            ),
            (
                "blank method",
                "routes:\n  - path: /x\n    methods: [GET, ' ']\n    service: svc\n".to_owned(),
                vec!["routes[0].methods[1]: must not be empty"],
            ),
            (
                "invalid method token",
                "routes:\n  - path: /x\n    methods: ['GE T']\n    service: svc\n".to_owned(),
                vec!["routes[0].methods[0]: 'GE T' is not a valid HTTP method"],
            ),
            (
                "method listed twice in one route",
                "routes:\n  - path: /x\n    methods: [GET, get]\n    service: svc\n".to_owned(),
                vec!["routes[0].methods[1]: 'GET' is listed twice"],
            ),
            (
                "duplicate (path, method) across routes",
                "routes:\n  - path: /x\n    methods: [GET, POST]\n    service: a\n  - path: /y\n    methods: [POST]\n    service: b\n  - path: /x\n    methods: [post]\n    service: c\n".to_owned(),
                vec!["routes[2]: duplicate HTTP route for path '/x' and method 'POST', already defined by routes[0]"],
            ),
            (
                "duplicate gRPC service",
                "grpc_addr: ':8081'\nroutes:\n  - grpc: a.v1.S\n    service: a\n  - grpc: ' a.v1.S '\n    service: b\n".to_owned(),
                vec!["routes[1].grpc: duplicate gRPC route for service 'a.v1.S', already defined by routes[0]"],
            ),
            (
                "gRPC route without grpc_addr",
                "routes:\n  - path: /x\n    methods: [GET]\n    service: a\n  - grpc: a.v1.S\n    service: b\n".to_owned(),
                vec!["grpc_addr: required because routes[1] is a gRPC route"],
            ),
            (
                "request_timeout_seconds zero",
                format!("request_timeout_seconds: 0{route}"),
                vec!["request_timeout_seconds: must be > 0, got 0"],
            ),
            (
                "request_timeout_seconds negative",
                format!("request_timeout_seconds: -5{route}"),
                vec!["request_timeout_seconds: must be > 0, got -5"],
            ),
            (
                "request_timeout_seconds absurd",
                format!("request_timeout_seconds: 9999999999{route}"),
                vec!["request_timeout_seconds: must be at most 31536000s, got 9999999999s"],
            ),
            (
                "service with *",
                "routes:\n  - path: /x\n    methods: [GET]\n    service: 'a.*'\n".to_owned(),
                vec!["routes[0].service: must not contain '*', '>' or whitespace, got 'a.*'"],
            ),
            (
                "service with >",
                "routes:\n  - path: /x\n    methods: [GET]\n    service: 'a.>'\n".to_owned(),
                vec!["routes[0].service: must not contain '*', '>' or whitespace, got 'a.>'"],
            ),
            (
                "service with a space",
                "routes:\n  - path: /x\n    methods: [GET]\n    service: 'my svc'\n".to_owned(),
                vec!["routes[0].service: must not contain '*', '>' or whitespace, got 'my svc'"],
            ),
            (
                "service missing",
                "routes:\n  - path: /x\n    methods: [GET]\n".to_owned(),
                vec!["routes[0].service: is required (the NATS service the route's requests go to)"],
            ),
            (
                "service blank",
                "routes:\n  - path: /x\n    methods: [GET]\n    service: '  '\n".to_owned(),
                vec!["routes[0].service: is required (the NATS service the route's requests go to)"],
            ),
            (
                "service with empty subject tokens",
                "routes:\n  - path: /a\n    methods: [GET]\n    service: 'a..b'\n  - path: /b\n    methods: [GET]\n    service: '.a'\n  - path: /c\n    methods: [GET]\n    service: 'a.'\n".to_owned(),
                vec![
                    "routes[0].service: 'a..b' is not a valid NATS subject: it has an empty token (leading or trailing '.', or '..')",
                    "routes[1].service: '.a' is not a valid NATS subject: it has an empty token (leading or trailing '.', or '..')",
                    "routes[2].service: 'a.' is not a valid NATS subject: it has an empty token (leading or trailing '.', or '..')",
                ],
            ),
            (
                "grpc name with a space",
                "grpc_addr: ':8081'\nroutes:\n  - grpc: 'hello v1'\n    service: svc\n".to_owned(),
                vec!["routes[0].grpc: must not contain whitespace or '/', got 'hello v1' (expected a fully-qualified service such as hello.v1.Greeter)"],
            ),
            (
                "grpc name with /",
                "grpc_addr: ':8081'\nroutes:\n  - grpc: hello.v1/Greeter\n    service: svc\n".to_owned(),
                vec!["routes[0].grpc: must not contain whitespace or '/', got 'hello.v1/Greeter' (expected a fully-qualified service such as hello.v1.Greeter)"],
            ),
            (
                "grpc name blank",
                "grpc_addr: ':8081'\nroutes:\n  - grpc: '  '\n    service: svc\n".to_owned(),
                vec!["routes[0].grpc: must not be empty"],
            ),
            (
                "path without leading /",
                "routes:\n  - path: example.com/x\n    methods: [GET]\n    service: svc\n".to_owned(),
                vec!["routes[0].path: must start with '/', got 'example.com/x' (Go's ServeMux would read what precedes the first '/' as a host name)"],
            ),
            (
                "path with wildcard braces",
                "routes:\n  - path: '/users/{id}'\n    methods: [GET]\n    service: svc\n".to_owned(),
                vec!["routes[0].path: must not contain '{' or '}', got '/users/{id}' (Go's ServeMux would read them as wildcards; narun matches literal paths only)"],
            ),
            (
                "path with a space",
                "routes:\n  - path: '/a b'\n    methods: [GET]\n    service: svc\n".to_owned(),
                vec!["routes[0].path: must not contain whitespace, got '/a b' (Go's ServeMux would read 'METHOD /path' as a method and a path; use 'methods' instead)"],
            ),
            (
                "path with ? or #",
                "routes:\n  - path: '/a?b'\n    methods: [GET]\n    service: svc\n  - path: '/c#d'\n    methods: [GET]\n    service: svc\n".to_owned(),
                vec![
                    "routes[0].path: must not contain '?' or '#', got '/a?b' (they start the query or the fragment, which are never part of the matched path)",
                    "routes[1].path: must not contain '?' or '#', got '/c#d' (they start the query or the fragment, which are never part of the matched path)",
                ],
            ),
            (
                "path with an encoded dot segment, '/', NUL or a malformed escape",
                "routes:\n  - path: '/a/%2e%2e/'\n    methods: [GET]\n    service: svc\n  - path: '/a%2Fb'\n    methods: [GET]\n    service: svc\n  - path: '/a%00'\n    methods: [GET]\n    service: svc\n  - path: '/a%zz'\n    methods: [GET]\n    service: svc\n".to_owned(),
                vec![
                    "routes[0].path: '/a/%2e%2e/' has an invalid escape (encoded dot segment): requests for it get 400 before routing, so it could never match",
                    "routes[1].path: '/a%2Fb' has an invalid escape (encoded '/'): requests for it get 400 before routing, so it could never match",
                    "routes[2].path: '/a%00' has an invalid escape (encoded NUL): requests for it get 400 before routing, so it could never match",
                    "routes[3].path: '/a%zz' has an invalid escape (malformed percent-encoding): requests for it get 400 before routing, so it could never match",
                ],
            ),
            (
                "path not clean",
                "routes:\n  - path: '/a//b/../c/'\n    methods: [GET]\n    service: svc\n".to_owned(),
                vec!["routes[0].path: '/a//b/../c/' is not a clean path; requests for it are redirected to '/a/c/', so it could never match (write '/a/c/')"],
            ),
            (
                "invalid route timeout",
                "routes:\n  - path: /x\n    methods: [GET]\n    service: svc\n    timeout: 5x\n".to_owned(),
                vec!["routes[0].timeout: \"5x\" is not a duration: expected e.g. 500ms, 10s, 2m or 1h (a bare number is seconds)"],
            ),
            (
                "zero route timeout",
                "routes:\n  - path: /x\n    methods: [GET]\n    service: svc\n    timeout: 0\n".to_owned(),
                vec!["routes[0].timeout: must be > 0, got '0'"],
            ),
            (
                "invalid server_addr",
                format!("server_addr: nowhere{route}"),
                vec!["server_addr: 'nowhere' has no port; expected host:port such as ':8080' or '127.0.0.1:8080'"],
            ),
            (
                "empty server_addr",
                format!("server_addr: ''{route}"),
                vec!["server_addr: must not be empty (the Go gateway listened on :80 then; write \":80\" for that)"],
            ),
            (
                "invalid grpc_addr",
                format!("grpc_addr: ':grpc'{route}"),
                vec!["grpc_addr: ':grpc' has an invalid port 'grpc'; expected a number from 0 to 65535"],
            ),
            (
                "invalid metrics_addr",
                format!("metrics_addr: 'example.com:9090'{route}"),
                vec!["metrics_addr: 'example.com:9090': host 'example.com' must be an IP address, 'localhost' or empty"],
            ),
            (
                "zero limits",
                format!("max_body_bytes: 0\nmax_header_bytes: 8191\nmax_in_flight: 0\nmax_connections: 0{route}"),
                vec![
                    "max_body_bytes: must be > 0, got 0",
                    "max_header_bytes: must be >= 8192, got 8191",
                    "max_in_flight: must be > 0, got 0",
                    "max_connections: must be > 0, got 0",
                ],
            ),
            (
                "zero connection timeouts",
                format!("header_read_timeout_seconds: 0\nbody_read_timeout_seconds: 0\nidle_timeout_seconds: 0{route}"),
                vec![
                    "header_read_timeout_seconds: must be > 0, got 0",
                    "body_read_timeout_seconds: must be > 0, got 0",
                    "idle_timeout_seconds: must be > 0, got 0",
                ],
            ),
            (
                "absurd shutdown timeout",
                format!("shutdown_timeout_seconds: 40000000{route}"),
                vec!["shutdown_timeout_seconds: must be at most 31536000s, got 40000000s"],
            ),
            (
                "creds_file with nkey_seed_file",
                format!("creds_file: a.creds\nnkey_seed_file: a.nk{route}"),
                vec!["creds_file: cannot be combined with nkey_seed_file; both authenticate the connection"],
            ),
            (
                "client certificate without its key",
                format!("tls_cert_file: client.pem{route}"),
                vec!["tls_cert_file: needs tls_key_file (the certificate's private key)"],
            ),
            (
                "client key without its certificate",
                format!("tls_key_file: client.key{route}"),
                vec!["tls_key_file: needs tls_cert_file (the client certificate it is the key of)"],
            ),
        ];
        for (name, yaml, want) in cases {
            assert_eq!(problems(&yaml), want, "case {name:?}:\n{yaml}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = r#"
request_timeout_seconds: 0
routes:
  - path: /a
    methods: []
    service: "a*"
  - path: /b
    grpc: b.v1.B
    service: b
  - grpc: c.v1.C
    service: c
"#;
        let err = parse(Path::new("/etc/narun/gw.yaml"), yaml).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "/etc/narun/gw.yaml: invalid configuration:
  - request_timeout_seconds: must be > 0, got 0
  - routes[0].methods: must not be empty for an HTTP route
  - routes[0].service: must not contain '*', '>' or whitespace, got 'a*'
  - routes[1]: has both 'path' and 'grpc'; a route is either HTTP or gRPC
  - grpc_addr: required because routes[2] is a gRPC route"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_location() {
        let cases = [
            (
                "typo on the first line",
                "request_timeout: 5\nroutes: []\n",
                "unknown field `request_timeout`",
                "at line 1 column 1",
            ),
            (
                "typo further down",
                "nats_url: nats://x:4222\nrequest_timeout: 5\nroutes: []\n",
                "unknown field `request_timeout`",
                "at line 2 column 1",
            ),
            (
                "typo in a route",
                "routes:\n  - path: /x\n    method: [GET]\n    service: svc\n",
                "routes[0]: unknown field `method`",
                "at line 3 column 5",
            ),
            (
                "wrong type",
                "request_timeout_seconds: soon\nroutes: []\n",
                "request_timeout_seconds: invalid type",
                "at line 1 column 26",
            ),
        ];
        for (name, yaml, what, location) in cases {
            let message = parse_error(yaml);
            assert!(message.starts_with("gw.yaml: "), "{name}: {message}");
            assert!(message.contains(what), "{name}: {message}");
            assert!(message.contains(location), "{name}: {message}");
        }
    }

    #[test]
    fn load_reads_the_file() {
        let path =
            std::env::temp_dir().join(format!("narun-gw-config-{}.yaml", std::process::id()));
        std::fs::write(&path, GO_README_EXAMPLE).expect("write test config");
        let loaded = load(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(loaded.expect("valid").http_routes[0].service, "hello");

        let missing = Path::new("/nonexistent/narun/gw.yaml");
        let err = load(missing).expect_err("missing file");
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/narun/gw.yaml: "),
            "{err}"
        );
    }

    #[test]
    fn listen_addresses() {
        let good = [
            (":8080", "0.0.0.0:8080"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("[::1]:80", "[::1]:80"),
            ("[::]:8080", "[::]:8080"),
            ("localhost:8080", "127.0.0.1:8080"),
            ("LocalHost:1", "127.0.0.1:1"),
            (" 0.0.0.0:9090 ", "0.0.0.0:9090"),
        ];
        for (input, want) in good {
            assert_eq!(parse_listen_addr(input), Ok(addr(want)), "{input:?}");
        }
        let bad = [
            "",
            "8080",
            "localhost",
            ":http",
            ":65536",
            ":+80",
            ":-1",
            ":",
            "example.com:80",
            "::1:80",
            "[fe80::1%eth0]:80",
        ];
        for input in bad {
            assert!(
                parse_listen_addr(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }

    #[test]
    fn durations() {
        let good = [
            ("250ms", Duration::from_millis(250)),
            ("5s", Duration::from_secs(5)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("10", Duration::from_secs(10)),
            (" 7s ", Duration::from_secs(7)),
            ("8760h", Duration::from_secs(365 * 24 * 3600)),
            // The spec's syntax too (crate::duration).
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
        ];
        for (input, want) in good {
            assert_eq!(parse_duration(input), Ok(want), "{input:?}");
        }
        let bad = [
            "",
            "0",
            "0ms",
            "0s",
            "5x",
            "-1",
            "s",
            "8761h",
            "99999999999999999999",
        ];
        for input in bad {
            assert!(
                parse_duration(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }
}
