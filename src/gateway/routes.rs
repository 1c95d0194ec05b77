//! HTTP route matching: which configured route serves a request path.
//!
//! The rules are those of Go's `http.ServeMux` as the Go gateway used it
//! (one literal pattern per route), with its bugs fixed:
//!
//! - a pattern ending in `/` is a subtree: `/hello/` matches `/hello/`,
//!   `/hello/x` and `/hello/a/b`; the full request path is forwarded;
//! - any other pattern matches exactly;
//! - the most specific pattern wins: an exact pattern beats a subtree, and a
//!   longer subtree beats a shorter one;
//! - `/hello`, when only the subtree `/hello/` exists, is redirected (301) to
//!   `/hello/`, whatever the method;
//! - a non-canonical path (`//`, `/./`, `/../`) is redirected (301) to its
//!   cleaned form;
//! - several routes may share a pattern with different methods; each method
//!   goes to its own route (the Go gateway panicked at startup there);
//! - a matching pattern whose routes do not allow the method gives 405 with
//!   an `Allow` list; no matching pattern gives 404.
//!
//! As in Go's `ServeMux`, percent-encoded path segments are compared decoded
//! (`/hell%6F/` matches the pattern `/hello/`), while `.`/`..` removal works
//! on the path as sent (`%2E%2E` is not `..`).
//!
//! Before routing, [`check_path`] rejects (400) the paths that would mean
//! something else to a consumer that percent-decodes them: an encoded dot
//! segment (`/a/%2e%2e/b`), an encoded `/` (`/a/..%2Fb`), an encoded NUL
//! and a malformed escape. So the path a consumer decodes has the segments
//! the gateway routed on, and cannot climb out of the route's subtree.
//!
//! Everything here is pure: no I/O, no allocation-heavy work per request.

use std::{borrow::Cow, collections::HashMap, time::Duration};

use http::Method;

/// One validated HTTP route: a path pattern, the methods it accepts and the
/// NATS service (subject) its requests go to.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// The path pattern as written in the configuration, e.g. `/hello/`
    /// (subtree) or `/status` (exact). Bounded, so usable as a metrics label.
    pub pattern: String,
    /// The accepted methods, compared case-sensitively with the request's.
    pub methods: Vec<Method>,
    /// The NATS subject (and NATS Micro service name) requests are sent to.
    pub service: String,
    /// How long to wait for the service's reply.
    pub timeout: Duration,
}

/// What to do with a request, as decided by [`RouteTable::resolve`].
#[derive(Debug, PartialEq)]
pub enum Resolution<'a> {
    /// Forward the request (with its full, original path) to this route,
    /// the `index`-th given to [`RouteTable::new`] (what its metrics are
    /// cached under).
    Forward { route: &'a HttpRoute, index: usize },
    /// Answer `301 Moved Permanently` with this `Location` path; the caller
    /// appends `?query` if the request had one.
    Redirect(String),
    /// Answer `405 Method Not Allowed` with this `Allow` header value: the
    /// sorted, comma-separated methods of every route with the matched
    /// pattern, e.g. `GET, POST`.
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: String,
    },
    /// Answer `404 Not Found`.
    NotFound,
}

/// The routes sharing one pattern (same canonical form).
#[derive(Debug)]
struct Group {
    /// Indexes into [`RouteTable::routes`], in configuration order.
    routes: Vec<usize>,
    /// The precomputed `Allow` value for a 405.
    allow: String,
}

/// The HTTP routes, indexed for [`RouteTable::resolve`].
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<HttpRoute>,
    groups: Vec<Group>,
    /// Exact patterns, by canonical path.
    exact: HashMap<String, usize>,
    /// Subtree patterns, by canonical path WITHOUT the trailing `/`
    /// (so the root pattern `/` is the empty string).
    subtree: HashMap<String, usize>,
}

impl RouteTable {
    /// Indexes `routes`. Routes with the same pattern are grouped; if two of
    /// them list the same method (configuration validation rejects that),
    /// the first one in `routes` serves it.
    pub fn new(routes: Vec<HttpRoute>) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        let mut exact = HashMap::new();
        let mut subtree = HashMap::new();
        for (index, route) in routes.iter().enumerate() {
            let key = canonical_key(&route.pattern);
            let map = if key.ends_with('/') {
                &mut subtree
            } else {
                &mut exact
            };
            let map_key = key.strip_suffix('/').unwrap_or(&key).to_owned();
            let group = *map.entry(map_key).or_insert_with(|| {
                groups.push(Group {
                    routes: Vec::new(),
                    allow: String::new(),
                });
                groups.len() - 1
            });
            groups[group].routes.push(index);
        }
        for group in &mut groups {
            let mut methods: Vec<&str> = group
                .routes
                .iter()
                .flat_map(|&i| routes[i].methods.iter().map(Method::as_str))
                .collect();
            methods.sort_unstable();
            methods.dedup();
            group.allow = methods.join(", ");
        }
        Self {
            routes,
            groups,
            exact,
            subtree,
        }
    }

    /// Decides what to do with a request for `method` and `path`.
    ///
    /// `path` is the request target's path as received (still
    /// percent-encoded), without the query string. A path that does not
    /// start with `/` (`*`, authority-form) never matches.
    pub fn resolve(&self, method: &Method, path: &str) -> Resolution<'_> {
        if !path.starts_with('/') {
            return Resolution::NotFound;
        }
        let cleaned = clean_path(path);
        let key = canonical_key(&cleaned);

        let group = match self.exact.get(key.as_ref()) {
            Some(&group) => Some(group),
            None => {
                // `/tree` with a subtree `/tree/` registered: redirect, even
                // when a shorter subtree (such as `/`) would match.
                if !key.ends_with('/') && self.subtree.contains_key(key.as_ref()) {
                    return Resolution::Redirect(format!("{cleaned}/"));
                }
                self.longest_subtree(&key)
            }
        };

        if cleaned != path {
            return Resolution::Redirect(cleaned.into_owned());
        }

        let Some(group) = group else {
            return Resolution::NotFound;
        };
        let group = &self.groups[group];
        group
            .routes
            .iter()
            .map(|&index| (&self.routes[index], index))
            .find(|(route, _)| route.methods.contains(method))
            .map_or_else(
                || Resolution::MethodNotAllowed {
                    allow: group.allow.clone(),
                },
                |(route, index)| Resolution::Forward { route, index },
            )
    }

    /// The routes, in the order given to [`RouteTable::new`].
    pub fn routes(&self) -> &[HttpRoute] {
        &self.routes
    }

    /// The group of the longest subtree pattern containing `key`.
    fn longest_subtree(&self, key: &str) -> Option<usize> {
        // A subtree `/a/b/` (stored as `/a/b`) contains every path starting
        // with `/a/b/`: try the prefix before each `/`, longest first.
        key.rmatch_indices('/')
            .find_map(|(slash, _)| self.subtree.get(&key[..slash]).copied())
    }
}

/// Why a request path is rejected before routing (with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// A `%` not followed by two hex digits (Go's `net/http` answers 400
    /// too).
    MalformedEscape,
    /// `%00`: a decoded path would end early for C-string APIs.
    Nul,
    /// `%2F`: the gateway routes on the segments as sent, a consumer that
    /// decodes sees other segments (`..%2F..%2Fetc`, `%2Fetc%2Fpasswd`).
    EncodedSlash,
    /// A segment that decodes to `.` or `..` (`%2e`, `.%2E`, `%2e%2e`): the
    /// gateway never resolves it, a consumer that decodes would.
    EncodedDotSegment,
}

impl BadPath {
    /// What is wrong, for the client: `Bad Request: <this> in the path`.
    pub fn reason(self) -> &'static str {
        match self {
            BadPath::MalformedEscape => "malformed percent-encoding",
            BadPath::Nul => "encoded NUL",
            BadPath::EncodedSlash => "encoded '/'",
            BadPath::EncodedDotSegment => "encoded dot segment",
        }
    }
}

/// Checks a request path as received (percent-encoded, without the query)
/// before routing: every segment must decode to bytes without NUL or `/`,
/// other than `.` and `..` unless written literally (literal dot segments
/// are redirected to the clean path by [`RouteTable::resolve`]).
pub fn check_path(path: &str) -> Result<(), BadPath> {
    if !path.contains('%') {
        return Ok(());
    }
    for segment in path.split('/').filter(|s| s.contains('%')) {
        let decoded = percent_decode(segment).ok_or(BadPath::MalformedEscape)?;
        if decoded.contains(&0) {
            return Err(BadPath::Nul);
        }
        if decoded.contains(&b'/') {
            return Err(BadPath::EncodedSlash);
        }
        if decoded == b"." || decoded == b".." {
            return Err(BadPath::EncodedDotSegment);
        }
    }
    Ok(())
}

/// Cleans a URL path the way Go's `ServeMux` does before matching: Go's
/// `path.Clean` (collapse `//`, drop `.` segments, resolve `..` without going
/// above the root), keeping a trailing `/`. `""` becomes `/`, and a missing
/// leading `/` is added. A path that is already clean (nearly every
/// request's) is returned borrowed.
pub fn clean_path(path: &str) -> Cow<'_, str> {
    if is_clean(path) {
        return Cow::Borrowed(path);
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut cleaned = String::with_capacity(path.len() + 1);
    for segment in &segments {
        cleaned.push('/');
        cleaned.push_str(segment);
    }
    if cleaned.is_empty() || path.ends_with('/') {
        cleaned.push('/');
    }
    Cow::Owned(cleaned)
}

/// Whether [`clean_path`] leaves `path` as it is: a leading `/`, no empty,
/// `.` or `..` segment (an empty last one is the trailing `/`).
fn is_clean(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// The form in which patterns and request paths are compared: every
/// segment percent-decoded (as Go's `ServeMux` does, keeping a segment as is
/// when it holds an invalid escape), then re-encoded canonically, so that
/// two paths have the same key exactly when their decoded segments are
/// equal. Most paths are already canonical and are returned borrowed.
pub(crate) fn canonical_key(path: &str) -> Cow<'_, str> {
    if path.bytes().all(|b| b == b'/' || is_plain(b)) {
        return Cow::Borrowed(path);
    }
    let mut key = String::with_capacity(path.len() + 8);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            key.push('/');
        }
        match percent_decode(segment) {
            Some(bytes) => push_encoded(&mut key, &bytes),
            None => push_encoded(&mut key, segment.as_bytes()),
        }
    }
    Cow::Owned(key)
}

/// Bytes that stand for themselves in a path segment (RFC 3986 `pchar`
/// without `%`): they are never percent-encoded in a canonical key.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

/// Appends `bytes` to `out`, percent-encoding (upper-case hex) every byte
/// that is not [`is_plain`].
fn push_encoded(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Decodes `%XX` escapes; `None` if an escape is malformed (like Go's
/// `url.PathUnescape`).
fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(pattern: &str, methods: &[&str], service: &str) -> HttpRoute {
        HttpRoute {
            pattern: pattern.to_owned(),
            methods: methods
                .iter()
                .map(|m| Method::from_bytes(m.as_bytes()).expect("test method"))
                .collect(),
            service: service.to_owned(),
            timeout: Duration::from_secs(30),
        }
    }

    /// A resolution as a short string: `forward <service>`,
    /// `301 <location>`, `405 <allow>` or `404`.
    fn describe(resolution: Resolution<'_>) -> String {
        match resolution {
            Resolution::Forward { route, .. } => format!("forward {}", route.service),
            Resolution::Redirect(location) => format!("301 {location}"),
            Resolution::MethodNotAllowed { allow } => format!("405 {allow}"),
            Resolution::NotFound => "404".to_owned(),
        }
    }

    /// Resolves each `(case name, method, path, expected description)`.
    fn check(table: &RouteTable, cases: &[(&str, &str, &str, &str)]) {
        for (name, method, path, want) in cases {
            let method = Method::from_bytes(method.as_bytes()).expect("test method");
            let got = describe(table.resolve(&method, path));
            assert_eq!(got, *want, "case {name:?}: {method} {path}");
        }
    }

    #[test]
    fn subtree_exact_and_longest_match() {
        let table = RouteTable::new(vec![
            route("/", &["GET"], "root"),
            route("/hello/", &["GET", "POST"], "hello"),
            route("/hello/admin/", &["GET"], "admin"),
            route("/hello/admin/status", &["GET"], "status"),
            route("/goodbye", &["GET"], "goodbye"),
        ]);
        check(
            &table,
            &[
                ("subtree root itself", "GET", "/hello/", "forward hello"),
                ("subtree child", "POST", "/hello/x", "forward hello"),
                ("subtree deep", "GET", "/hello/a/b", "forward hello"),
                (
                    "longer subtree wins",
                    "GET",
                    "/hello/admin/",
                    "forward admin",
                ),
                (
                    "longer subtree deep",
                    "GET",
                    "/hello/admin/x/y",
                    "forward admin",
                ),
                (
                    "exact beats subtree",
                    "GET",
                    "/hello/admin/status",
                    "forward status",
                ),
                (
                    "exact is not a prefix",
                    "GET",
                    "/hello/admin/status/x",
                    "forward admin",
                ),
                ("exact match", "GET", "/goodbye", "forward goodbye"),
                (
                    "exact does not match child",
                    "GET",
                    "/goodbye/x",
                    "forward root",
                ),
                ("root subtree catches all", "GET", "/other", "forward root"),
                ("root itself", "GET", "/", "forward root"),
                (
                    "similar prefix is not a child",
                    "GET",
                    "/helloworld",
                    "forward root",
                ),
            ],
        );
    }

    #[test]
    fn not_found_without_root() {
        let table = RouteTable::new(vec![
            route("/hello/", &["GET"], "hello"),
            route("/goodbye", &["GET"], "goodbye"),
        ]);
        check(
            &table,
            &[
                ("unknown path", "GET", "/nope", "404"),
                ("root", "GET", "/", "404"),
                ("exact with trailing slash", "GET", "/goodbye/", "404"),
                ("exact with child", "GET", "/goodbye/x", "404"),
                ("prefix without slash boundary", "GET", "/helloworld", "404"),
                ("asterisk form", "OPTIONS", "*", "404"),
                ("empty path", "GET", "", "404"),
            ],
        );
    }

    #[test]
    fn redirects_subtree_root_without_slash_for_any_method() {
        let table = RouteTable::new(vec![
            route("/", &["GET"], "root"),
            route("/hello/", &["POST"], "hello"),
            route("/both/", &["GET"], "both-subtree"),
            route("/both", &["GET"], "both-exact"),
        ]);
        check(
            &table,
            &[
                ("GET /hello", "GET", "/hello", "301 /hello/"),
                ("POST /hello", "POST", "/hello", "301 /hello/"),
                ("method allowed nowhere", "DELETE", "/hello", "301 /hello/"),
                ("exact /both exists", "GET", "/both", "forward both-exact"),
                ("subtree /both/", "GET", "/both/", "forward both-subtree"),
            ],
        );
    }

    #[test]
    fn redirects_non_canonical_paths() {
        let table = RouteTable::new(vec![
            route("/b", &["GET"], "b"),
            route("/hello/", &["GET"], "hello"),
        ]);
        check(
            &table,
            &[
                ("dotdot and double slash", "GET", "//a/../b", "301 /b"),
                ("double slash", "GET", "/hello//x", "301 /hello/x"),
                ("dot segment", "GET", "/hello/./x", "301 /hello/x"),
                (
                    "trailing slash kept",
                    "GET",
                    "/hello/x/../y/",
                    "301 /hello/y/",
                ),
                ("dotdot above root", "GET", "/../b", "301 /b"),
                ("unmatched still redirected", "GET", "//nope", "301 /nope"),
                (
                    "one redirect to subtree root",
                    "GET",
                    "//hello",
                    "301 /hello/",
                ),
                (
                    "encoded dots are not dots",
                    "GET",
                    "/hello/%2E%2E",
                    "forward hello",
                ),
            ],
        );
    }

    #[test]
    fn method_not_allowed_lists_all_routes_of_the_pattern() {
        let table = RouteTable::new(vec![
            route("/api/", &["POST"], "writer"),
            route("/api/", &["GET"], "reader"),
            route("/api/", &["GET", "PUT"], "shadowed"),
            route("/api/x", &["DELETE"], "x"),
        ]);
        check(
            &table,
            &[
                (
                    "sorted and deduplicated",
                    "PATCH",
                    "/api/y",
                    "405 GET, POST, PUT",
                ),
                ("exact pattern only", "GET", "/api/x", "405 DELETE"),
                ("no HEAD for GET", "HEAD", "/api/", "405 GET, POST, PUT"),
                ("case-sensitive", "get", "/api/", "405 GET, POST, PUT"),
                (
                    "first route wins a method",
                    "GET",
                    "/api/",
                    "forward reader",
                ),
            ],
        );
    }

    #[test]
    fn same_path_two_methods_two_services() {
        let table = RouteTable::new(vec![
            route("/items", &["GET"], "items-read"),
            route("/items", &["POST"], "items-write"),
        ]);
        check(
            &table,
            &[
                ("GET", "GET", "/items", "forward items-read"),
                ("POST", "POST", "/items", "forward items-write"),
                ("other", "DELETE", "/items", "405 GET, POST"),
            ],
        );
    }

    #[test]
    fn percent_encoded_segments_compare_decoded() {
        let table = RouteTable::new(vec![
            route("/hello/", &["GET"], "hello"),
            route("/a%2Fb", &["GET"], "slash"),
            route("/café/", &["GET"], "cafe"),
        ]);
        check(
            &table,
            &[
                ("escaped letter", "GET", "/hell%6F/x", "forward hello"),
                (
                    "escaped slash is not a separator",
                    "GET",
                    "/a%2fb",
                    "forward slash",
                ),
                ("real slash differs", "GET", "/a/b", "404"),
                ("escaped UTF-8", "GET", "/caf%C3%A9/menu", "forward cafe"),
                ("malformed escape kept literal", "GET", "/hell%zz/", "404"),
            ],
        );
    }

    #[test]
    fn check_path_rejects_what_a_decoding_consumer_would_read_differently() {
        let cases: &[(&str, Result<(), BadPath>)] = &[
            ("/", Ok(())),
            ("/hello/a/b", Ok(())),
            ("/hello/../x", Ok(())), // literal: redirected by resolve
            ("/hello/./x", Ok(())),
            ("/hello/%41bc", Ok(())),
            ("/hello/a%20b", Ok(())),
            ("/hello/%2e%2e.txt", Ok(())),
            ("/hello/...", Ok(())),
            ("/hello/%2e%2e%2e", Ok(())),
            ("/caf%C3%A9/", Ok(())),
            ("/hello/%2e", Err(BadPath::EncodedDotSegment)),
            ("/hello/%2E%2E", Err(BadPath::EncodedDotSegment)),
            ("/hello/.%2e/x", Err(BadPath::EncodedDotSegment)),
            ("/hello/%2e./x", Err(BadPath::EncodedDotSegment)),
            ("/%2e%2e/hello/", Err(BadPath::EncodedDotSegment)),
            ("/hello/a%2Fb", Err(BadPath::EncodedSlash)),
            ("/hello/..%2f..%2fetc", Err(BadPath::EncodedSlash)),
            ("/hello/%2Fetc", Err(BadPath::EncodedSlash)),
            ("/hello/a%00", Err(BadPath::Nul)),
            ("/hello/%zz", Err(BadPath::MalformedEscape)),
            ("/hello/%2", Err(BadPath::MalformedEscape)),
            ("/hello/%", Err(BadPath::MalformedEscape)),
            ("/hello/%%2e%2e", Err(BadPath::MalformedEscape)),
        ];
        for (path, want) in cases {
            assert_eq!(check_path(path), *want, "{path}");
        }
    }

    #[test]
    fn forward_returns_the_route_with_its_pattern() {
        let table = RouteTable::new(vec![
            route("/a", &["GET"], "a"),
            route("/hello/", &["POST"], "hello"),
        ]);
        let Resolution::Forward { route: got, index } =
            table.resolve(&Method::POST, "/hello/world")
        else {
            panic!("expected a forward");
        };
        assert_eq!(index, 1);
        assert_eq!(got, &table.routes()[1]);
        assert_eq!(got.pattern, "/hello/");
    }

    #[test]
    fn query_is_not_part_of_matching() {
        // The caller passes `Uri::path()`; a query never affects the match,
        // and redirects carry only the path (the caller appends the query).
        let table = RouteTable::new(vec![
            route("/hello/", &["GET"], "hello"),
            route("/exact", &["GET"], "exact"),
        ]);
        let cases = [
            ("/exact?x=1", "forward exact"),
            ("/exact?next=/hello/", "forward exact"),
            ("/hello/a?b=/c/../d", "forward hello"),
            ("/hello?x=1", "301 /hello/"),
            ("//exact?x=1", "301 /exact"),
            ("/nope?to=/hello/", "404"),
        ];
        for (target, want) in cases {
            let uri: http::Uri = target.parse().expect("test URI");
            assert_eq!(
                describe(table.resolve(&Method::GET, uri.path())),
                want,
                "{target}"
            );
        }
    }

    #[test]
    fn clean_path_matches_go() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("a/b", "/a/b"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a//b", "/a/b"),
            ("/a/./b/", "/a/b/"),
            ("/a/../b", "/b"),
            ("/a/..", "/"),
            ("/a/../", "/"),
            ("/a/.", "/a"),
            ("/..", "/"),
            ("/../a/", "/a/"),
            ("//a/../b", "/b"),
            ("/a/b/c/../../d", "/a/d"),
            ("/a/.../b", "/a/.../b"),
            ("/a/b/.", "/a/b"),
            ("/a/b/..", "/a"),
            ("/./", "/"),
            ("/a/.b/", "/a/.b/"),
            ("/a/b//", "/a/b/"),
        ];
        for (input, want) in cases {
            let cleaned = clean_path(input);
            assert_eq!(cleaned, want, "clean_path({input:?})");
            // Borrowed exactly when nothing changed.
            assert_eq!(
                matches!(cleaned, Cow::Borrowed(_)),
                input == want,
                "clean_path({input:?}) borrowed"
            );
        }
    }
}
