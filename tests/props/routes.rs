//! The gateway's route matcher, `narun::gateway::routes`.
//!
//! - [`RouteTable::resolve`] agrees with a naive model that compares
//!   percent-decoded segments against every route: the most specific
//!   pattern wins (exact, then the longest subtree), `/x` is redirected to
//!   a subtree `/x/`, non-canonical paths to their clean form, 405 lists
//!   the pattern's methods;
//! - a forwarded route's pattern matches the path (equal, or a subtree
//!   whose prefix is a prefix of the path) and no more specific one does;
//! - percent-encoding letters of a path does not change where it goes;
//! - `clean_path` gives clean, idempotent paths; `check_path` lets through
//!   only paths whose decoded segments are the segments routed on.

use std::time::Duration;

use http::Method;
use narun::gateway::routes::{check_path, clean_path, HttpRoute, Resolution, RouteTable};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};

use crate::harness::check;

/// Percent-decodes a segment; a malformed escape leaves it as is.
fn decode(segment: &str) -> Vec<u8> {
    let b = segment.as_bytes();
    let hex = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => return b.to_vec(),
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// A path as the segments it is routed on.
pub(crate) fn key(path: &str) -> Vec<Vec<u8>> {
    path.split('/').map(decode).collect()
}

/// How a pattern matches a path: `Some(usize::MAX)` when equal, the number
/// of its segments when it is a subtree containing the path.
fn specificity(pattern: &str, path_key: &[Vec<u8>]) -> Option<usize> {
    let pk = key(pattern);
    if pattern.ends_with('/') {
        let prefix = &pk[..pk.len() - 1];
        (path_key.len() > prefix.len() && path_key.starts_with(prefix)).then_some(prefix.len())
    } else {
        (pk == path_key).then_some(usize::MAX)
    }
}

/// Do two patterns have the same key (the same decoded segments, both
/// subtrees or both exact)?
fn same_pattern(a: &str, b: &str) -> bool {
    key(a) == key(b)
}

/// What the gateway must do, computed naively from every route.
fn model<'a>(routes: &'a [HttpRoute], method: &Method, path: &str) -> Resolution<'a> {
    if !path.starts_with('/') {
        return Resolution::NotFound;
    }
    let cleaned = clean_path(path);
    let k = key(&cleaned);
    let exact = routes
        .iter()
        .find(|r| specificity(&r.pattern, &k) == Some(usize::MAX));
    let best = match exact {
        Some(r) => Some(r),
        None => {
            let is_dir = k.last().is_some_and(Vec::is_empty);
            if !is_dir
                && routes.iter().any(|r| {
                    r.pattern.ends_with('/') && {
                        let pk = key(&r.pattern);
                        pk[..pk.len() - 1] == k[..]
                    }
                })
            {
                return Resolution::Redirect(format!("{cleaned}/"));
            }
            routes
                .iter()
                .filter_map(|r| specificity(&r.pattern, &k).map(|s| (s, r)))
                // The first of the longest (all routes of a pattern are equal here).
                .fold(
                    None,
                    |best: Option<(usize, &HttpRoute)>, (s, r)| match best {
                        Some((b, _)) if b >= s => best,
                        _ => Some((s, r)),
                    },
                )
                .map(|(_, r)| r)
        }
    };
    if cleaned != path {
        return Resolution::Redirect(cleaned.into_owned());
    }
    let Some(best) = best else {
        return Resolution::NotFound;
    };
    let group: Vec<(usize, &HttpRoute)> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| same_pattern(&r.pattern, &best.pattern))
        .collect();
    if let Some(&(index, route)) = group.iter().find(|(_, r)| r.methods.contains(method)) {
        return Resolution::Forward { route, index };
    }
    let mut allow: Vec<&str> = group
        .iter()
        .flat_map(|(_, r)| r.methods.iter().map(Method::as_str))
        .collect();
    allow.sort_unstable();
    allow.dedup();
    Resolution::MethodNotAllowed {
        allow: allow.join(", "),
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "FOO"];

fn method() -> impl Strategy<Value = Method> {
    select(vec!["GET", "POST", "PUT", "DELETE", "FOO", "PATCH", "get"])
        .prop_map(|m| Method::from_bytes(m.as_bytes()).expect("token"))
}

/// Segments a configuration accepts in a pattern (clean, no encoded `/`,
/// dot or NUL), with spellings that decode alike (`a`, `%61`).
const CLEAN_SEGMENTS: &[&str] = &[
    "a", "b", "ab", "a.b", "%61", "%62", "%61b", "A", "%41", "x%20y", "~", "é", "%C3%A9",
];

/// Segments of request paths: the above, and what needs cleaning or is
/// refused before routing.
const PATH_SEGMENTS: &[&str] = &[
    "a", "b", "ab", "a.b", "%61", "%62", "%61b", "A", "%41", "x%20y", "~", "é", "%C3%A9", "c", "",
    ".", "..", "%2e", "%2E%2e", "%2F", "%00", "%zz", "%", "%6", "%25",
];

fn pattern() -> impl Strategy<Value = String> {
    (vec(select(CLEAN_SEGMENTS), 0..4), any::<bool>()).prop_map(|(segments, subtree)| {
        let mut p = String::new();
        for s in &segments {
            p.push('/');
            p.push_str(s);
        }
        if subtree || p.is_empty() {
            p.push('/');
        }
        p
    })
}

fn routes() -> impl Strategy<Value = Vec<HttpRoute>> {
    vec((pattern(), subsequence(METHODS, 1..=METHODS.len())), 0..8).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (pattern, methods))| HttpRoute {
                pattern,
                methods: methods
                    .iter()
                    .map(|m| Method::from_bytes(m.as_bytes()).expect("token"))
                    .collect(),
                service: format!("s{i}"),
                timeout: Duration::from_secs(1),
            })
            .collect()
    })
}

fn request_path() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (vec(select(PATH_SEGMENTS), 0..5), any::<bool>()).prop_map(|(segments, dir)| {
            let mut p = String::new();
            for s in &segments {
                p.push('/');
                p.push_str(s);
            }
            if dir || p.is_empty() {
                p.push('/');
            }
            p
        }),
        1 => "[ -~]{0,16}",
        1 => "\\PC{0,8}",
    ]
}

/// Paths near the patterns of `routes`: each route's pattern, with a
/// suffix, without its trailing `/`.
fn table_and_path() -> impl Strategy<Value = (Vec<HttpRoute>, Method, String)> {
    (routes(), method(), request_path(), any::<Index>(), 0u8..4).prop_map(
        |(routes, method, path, pick, how)| {
            let path = match (how, routes.is_empty()) {
                (0, false) | (1, false) => {
                    let p = &routes[pick.index(routes.len())].pattern;
                    match how {
                        0 => p.clone(),
                        _ => format!("{}{}", p, path.trim_start_matches('/')),
                    }
                }
                (2, false) => {
                    let p = &routes[pick.index(routes.len())].pattern;
                    p.strip_suffix('/').unwrap_or(p).to_owned()
                }
                _ => path,
            };
            (routes, method, path)
        },
    )
}

#[test]
fn resolve_agrees_with_the_model() {
    check(
        "routes::resolve_agrees_with_the_model",
        512,
        table_and_path(),
        |(routes, method, path)| {
            let table = RouteTable::new(routes.clone());
            let got = table.resolve(&method, &path);
            prop_assert_eq!(&got, &model(&routes, &method, &path));

            // The same, stated as properties of the result.
            let k = key(&path);
            match got {
                Resolution::Forward { route, index } => {
                    prop_assert_eq!(&routes[index], route);
                    prop_assert!(route.methods.contains(&method));
                    prop_assert_eq!(clean_path(&path), path.clone());
                    let mine = specificity(&route.pattern, &k);
                    prop_assert!(mine.is_some(), "{} does not match", route.pattern);
                    if route.pattern.ends_with('/') {
                        // Its prefix is a prefix of the path's segments.
                        let pk = key(&route.pattern);
                        prop_assert!(k.starts_with(&pk[..pk.len() - 1]));
                    }
                    for other in &routes {
                        prop_assert!(
                            specificity(&other.pattern, &k) <= mine,
                            "{} is more specific than {}",
                            other.pattern,
                            route.pattern
                        );
                    }
                }
                Resolution::Redirect(location) => {
                    prop_assert!(location.starts_with('/'));
                    prop_assert_eq!(clean_path(&location), location.clone());
                    prop_assert_ne!(location, path);
                }
                Resolution::MethodNotAllowed { allow } => {
                    prop_assert!(!allow.is_empty());
                    prop_assert!(!allow.split(", ").any(|m| m == method.as_str()));
                }
                Resolution::NotFound => {
                    if path.starts_with('/') && clean_path(&path) == path {
                        prop_assert!(routes.iter().all(|r| specificity(&r.pattern, &k).is_none()));
                    }
                }
            }
            Ok(())
        },
    );
}

/// Any route table and any path: no panic, and a forward only to a route
/// taking the method.
#[test]
fn resolve_never_panics_on_arbitrary_tables() {
    let patterns = prop_oneof![3 => pattern(), 1 => request_path(), 1 => "\\PC{0,10}"];
    let strategy = (
        vec((patterns, subsequence(METHODS, 0..=METHODS.len())), 0..6),
        method(),
        request_path(),
    );
    check(
        "routes::resolve_never_panics_on_arbitrary_tables",
        512,
        strategy,
        |(specs, method, path)| {
            let routes: Vec<HttpRoute> = specs
                .into_iter()
                .map(|(pattern, methods)| HttpRoute {
                    pattern,
                    methods: methods
                        .iter()
                        .map(|m| Method::from_bytes(m.as_bytes()).expect("token"))
                        .collect(),
                    service: "s".into(),
                    timeout: Duration::from_secs(1),
                })
                .collect();
            let table = RouteTable::new(routes);
            if let Resolution::Forward { route, .. } = table.resolve(&method, &path) {
                prop_assert!(route.methods.contains(&method));
            }
            Ok(())
        },
    );
}

/// Writing a letter or digit of the path as `%XX` sends the request to the
/// same place (a redirect's location keeps the spelling).
#[test]
fn percent_encoding_letters_does_not_change_the_route() {
    let strategy = (table_and_path(), any::<Index>(), any::<bool>());
    check(
        "routes::percent_encoding_letters_does_not_change_the_route",
        512,
        strategy,
        |((routes, method, path), at, lower)| {
            let positions: Vec<usize> = path
                .bytes()
                .enumerate()
                .filter(|(_, b)| b.is_ascii_alphanumeric())
                .map(|(i, _)| i)
                .collect();
            if positions.is_empty() {
                return Ok(());
            }
            let i = positions[at.index(positions.len())];
            // Not inside an existing escape (`%6` + `1`).
            let before = &path.as_bytes()[..i];
            if before.ends_with(b"%") || before[..before.len().saturating_sub(1)].ends_with(b"%") {
                return Ok(());
            }
            let b = path.as_bytes()[i];
            let escape = if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            };
            let encoded = format!("{}{escape}{}", &path[..i], &path[i + 1..]);
            let table = RouteTable::new(routes);
            let (before, after) = (
                table.resolve(&method, &path),
                table.resolve(&method, &encoded),
            );
            match (&before, &after) {
                (Resolution::Redirect(_), Resolution::Redirect(_)) => {}
                _ => prop_assert_eq!(before, after, "{} vs {}", path, encoded),
            }
            Ok(())
        },
    );
}

fn is_clean(p: &str) -> bool {
    p.starts_with('/') && !p.contains("//") && !p.split('/').any(|s| s == "." || s == "..")
}

#[test]
fn clean_path_is_clean_and_idempotent() {
    check(
        "routes::clean_path_is_clean_and_idempotent",
        512,
        request_path(),
        |path| {
            let cleaned = clean_path(&path);
            prop_assert!(is_clean(&cleaned), "{cleaned:?}");
            prop_assert_eq!(clean_path(&cleaned), cleaned.clone());
            prop_assert_eq!(
                cleaned.ends_with('/'),
                path.ends_with('/') || cleaned == "/"
            );
            if is_clean(&path) {
                prop_assert_eq!(&cleaned, &path);
            }
            // A copy only when something changed.
            prop_assert_eq!(
                matches!(cleaned, std::borrow::Cow::Borrowed(_)),
                cleaned == path.as_str()
            );
            if !path.split('/').any(|s| s == "..") {
                // Without `..`, cleaning only drops empty and `.` segments.
                let kept = |p: &str| -> Vec<String> {
                    p.split('/')
                        .filter(|s| !s.is_empty() && *s != ".")
                        .map(String::from)
                        .collect()
                };
                prop_assert_eq!(kept(&cleaned), kept(&path));
            }
            Ok(())
        },
    );
}

/// A path `check_path` accepts means, once each segment is decoded, the
/// segments it was routed on: no decoded `/` or NUL, no dot segment that
/// was not written literally (and so cleaned away).
#[test]
fn check_path_lets_through_only_faithful_paths() {
    check(
        "routes::check_path_lets_through_only_faithful_paths",
        512,
        request_path(),
        |path| {
            let faithful = path.split('/').all(|s| {
                if !s.contains('%') {
                    return true;
                }
                let d = decode(s);
                let malformed = d == s.as_bytes();
                !malformed && !d.contains(&b'/') && !d.contains(&0) && d != b"." && d != b".."
            });
            prop_assert_eq!(
                check_path(&path).is_ok(),
                faithful,
                "{:?}",
                check_path(&path)
            );
            Ok(())
        },
    );
}
