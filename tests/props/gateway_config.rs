//! The gateway configuration parser, `narun::gateway::config`.
//!
//! - on YAML-ish text it never panics; a syntax error gives its line, and
//!   every validation problem starts with the key it is about
//!   (`routes[2].methods[0]: ...`); an accepted configuration's every
//!   route is reachable through the route table;
//! - generated configurations are accepted exactly when no two HTTP routes
//!   share a (path, method), and give back their routes.

use std::path::Path;
use std::time::Duration;

use http::Method;
use narun::gateway::config::{parse, ConfigError, GrpcRoute};
use narun::gateway::routes::{HttpRoute, Resolution, RouteTable};
use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use crate::harness::check;
use crate::routes::key;
use crate::yamlish;

const TOP_KEYS: &[&str] = &[
    "nats_url",
    "nkey_seed_file",
    "creds_file",
    "tls_ca_file",
    "server_addr",
    "grpc_addr",
    "metrics_addr",
    "request_timeout_seconds",
    "max_body_bytes",
    "max_header_bytes",
    "max_in_flight",
    "max_connections",
    "header_read_timeout_seconds",
    "body_read_timeout_seconds",
    "idle_timeout_seconds",
    "shutdown_timeout_seconds",
    "threads",
    "routes",
];

const CONFIG_KEYS: &[&str] = &[
    "nats_url",
    "nkey_seed_file",
    "creds_file",
    "server_addr",
    "grpc_addr",
    "metrics_addr",
    "request_timeout_seconds",
    "max_body_bytes",
    "max_header_bytes",
    "max_in_flight",
    "header_read_timeout_seconds",
    "shutdown_timeout_seconds",
    "threads",
    "routes",
    "routes",
    "routes",
    "path",
    "path",
    "methods",
    "methods",
    "grpc",
    "service",
    "service",
    "timeout",
];

/// YAML errors serde_norway gives without a location (found by this
/// test, for the two documents `{}\n{}\n`): about the whole file,
/// so the message alone says what is wrong.
const KNOWN_UNPLACED: &[&str] =
    &["deserializing from YAML containing more than one document is not supported"];

/// `routes[3]`, `routes[3].methods[1]`, `server_addr`, ...
fn is_place(at: &str) -> bool {
    if TOP_KEYS.contains(&at) {
        return true;
    }
    let Some(rest) = at.strip_prefix("routes[") else {
        return false;
    };
    let Some((index, rest)) = rest.split_once(']') else {
        return false;
    };
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match rest.strip_prefix('.') {
        None => rest.is_empty(),
        Some(field) => {
            let (field, sub) = field.split_once('[').unwrap_or((field, ""));
            ["path", "methods", "grpc", "service", "timeout"].contains(&field)
                && (sub.is_empty()
                    || sub
                        .strip_suffix(']')
                        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())))
        }
    }
}

/// Every route of an accepted configuration is reached by a request for
/// its own path and each of its methods.
fn routes_are_reachable(routes: &[HttpRoute]) -> Result<(), TestCaseError> {
    let table = RouteTable::new(routes.to_vec());
    for route in routes {
        for method in &route.methods {
            match table.resolve(method, &route.pattern) {
                Resolution::Forward { route: r, .. } => {
                    prop_assert_eq!(key(&r.pattern), key(&route.pattern));
                    prop_assert!(r.methods.contains(method));
                }
                other => prop_assert!(false, "{method} {}: {other:?}", route.pattern),
            }
        }
    }
    Ok(())
}

#[test]
fn parser_survives_yamlish_text() {
    check(
        "gateway_config::parser_survives_yamlish_text",
        256,
        yamlish::document(CONFIG_KEYS),
        |text| {
            match parse(Path::new("gw.yaml"), &text) {
                Ok(config) => routes_are_reachable(&config.http_routes)?,
                Err(ConfigError::Parse { message, .. }) => {
                    prop_assert!(
                        message.contains(" line ")
                            || message.contains(" position ")
                            || KNOWN_UNPLACED.iter().any(|m| message.starts_with(m)),
                        "no location: {message}"
                    );
                }
                Err(ConfigError::Invalid { problems, .. }) => {
                    prop_assert!(!problems.is_empty());
                    for p in &problems {
                        let at = p.split_once(": ").map_or("", |(at, _)| at);
                        prop_assert!(is_place(at), "no place: {p}");
                    }
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
            Ok(())
        },
    );
}

// === generated configurations ===

const SEGMENTS: &[&str] = &["a", "b", "ab", "%61", "A", "x%20y", "v1", "é"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
const TIMEOUTS: &[(&str, u64)] = &[
    ("500ms", 500),
    ("5s", 5_000),
    ("2m", 120_000),
    ("1h", 3_600_000),
    ("10", 10_000),
    ("'7'", 7_000),
];

#[derive(Debug, Clone)]
struct HttpSpec {
    pattern: String,
    /// (as written, with random case).
    methods: Vec<(&'static str, bool)>,
    service: String,
    timeout: Option<(&'static str, u64)>,
}

fn pattern() -> impl Strategy<Value = String> {
    (vec(select(SEGMENTS), 0..3), any::<bool>()).prop_map(|(segments, subtree)| {
        let mut p: String = segments.iter().map(|s| format!("/{s}")).collect();
        if subtree || p.is_empty() {
            p.push('/');
        }
        p
    })
}

fn service() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,6}(\\.[a-zA-Z0-9_-]{1,6}){0,2}"
}

fn http_route() -> impl Strategy<Value = HttpSpec> {
    (
        pattern(),
        subsequence(METHODS, 1..4).prop_flat_map(|m| {
            let n = m.len();
            (Just(m), vec(any::<bool>(), n))
        }),
        service(),
        option::of(select(TIMEOUTS)),
    )
        .prop_map(|(pattern, (methods, lower), service, timeout)| HttpSpec {
            pattern,
            methods: methods.into_iter().zip(lower).collect(),
            service,
            timeout,
        })
}

#[test]
fn generated_configs_are_accepted_unless_routes_collide() {
    let strategy = (
        vec(http_route(), 0..6),
        btree_set("[a-z]{1,5}(\\.[a-zA-Z0-9]{1,5}){0,2}", 0..3),
        vec((service(), option::of(select(TIMEOUTS))), 3),
    );
    check(
        "gateway_config::generated_configs_are_accepted_unless_routes_collide",
        256,
        strategy,
        |(http, grpc, grpc_services)| {
            let mut yaml = String::from("server_addr: \":8080\"\nmetrics_addr: \"\"\n");
            if !grpc.is_empty() {
                yaml.push_str("grpc_addr: \"127.0.0.1:0\"\n");
            }
            yaml.push_str("routes:\n");
            let timeout_of =
                |t: Option<(&str, u64)>| Duration::from_millis(t.map_or(30_000, |(_, ms)| ms));
            let mut want_http = Vec::new();
            let mut seen = Vec::new();
            let mut collisions = Vec::new();
            for (i, r) in http.iter().enumerate() {
                yaml.push_str(&format!("  - path: '{}'\n    methods: [", r.pattern));
                let written: Vec<String> = r
                    .methods
                    .iter()
                    .map(|(m, lower)| {
                        if *lower {
                            m.to_lowercase()
                        } else {
                            m.to_string()
                        }
                    })
                    .collect();
                yaml.push_str(&written.join(", "));
                yaml.push_str(&format!("]\n    service: '{}'\n", r.service));
                if let Some((t, _)) = r.timeout {
                    yaml.push_str(&format!("    timeout: {t}\n"));
                }
                for (m, _) in &r.methods {
                    let k = (key(&r.pattern), r.pattern.ends_with('/'), *m);
                    if seen.contains(&k) {
                        collisions.push(i);
                    }
                    seen.push(k);
                }
                want_http.push(HttpRoute {
                    pattern: r.pattern.clone(),
                    methods: r
                        .methods
                        .iter()
                        .map(|(m, _)| Method::from_bytes(m.as_bytes()).expect("token"))
                        .collect(),
                    service: r.service.clone(),
                    timeout: timeout_of(r.timeout),
                });
            }
            let mut want_grpc = Vec::new();
            for (name, (service, timeout)) in grpc.iter().zip(&grpc_services) {
                yaml.push_str(&format!("  - grpc: '{name}'\n    service: '{service}'\n"));
                if let Some((t, _)) = timeout {
                    yaml.push_str(&format!("    timeout: {t}\n"));
                }
                want_grpc.push(GrpcRoute {
                    service_name: name.clone(),
                    subject: service.clone(),
                    timeout: timeout_of(*timeout),
                });
            }
            let result = parse(Path::new("gw.yaml"), &yaml);
            let no_routes = http.is_empty() && grpc.is_empty();
            match result {
                Ok(config) => {
                    prop_assert!(collisions.is_empty() && !no_routes, "accepted:\n{yaml}");
                    prop_assert_eq!(&config.http_routes, &want_http, "{}", yaml);
                    prop_assert_eq!(config.grpc_routes, want_grpc);
                    routes_are_reachable(&config.http_routes)?;
                }
                Err(ConfigError::Invalid { problems, .. }) => {
                    prop_assert!(!collisions.is_empty() || no_routes, "{problems:?}\n{yaml}");
                    if no_routes {
                        prop_assert_eq!(problems.len(), 1);
                        prop_assert!(problems[0].starts_with("routes: "));
                    } else {
                        let mut named: Vec<usize> = problems
                            .iter()
                            .map(|p| {
                                p.strip_prefix("routes[")
                                    .and_then(|r| r.split_once("]: duplicate HTTP route"))
                                    .and_then(|(i, _)| i.parse().ok())
                                    .unwrap_or(usize::MAX)
                            })
                            .collect();
                        named.dedup();
                        let mut want = collisions.clone();
                        want.dedup();
                        prop_assert_eq!(named, want, "{:?}", problems);
                    }
                }
                Err(e) => prop_assert!(false, "{e}\n{yaml}"),
            }
            Ok(())
        },
    );
}
