//! BHTTP (RFC 9292) encode and decode, `narun::wire`.
//!
//! - encode → decode gives back the request/response, within what BHTTP
//!   and the wire contract carry (hop-by-hop fields dropped, a computed
//!   `content-length`, the authority as `host`, repeated `cookie` lines
//!   joined with `; ` as the bhttp crate does);
//! - the decoders read all four framings (known and indeterminate length,
//!   requests and responses), any chunking, informational responses,
//!   trailers, truncation and padding, written by an encoder of this file;
//! - the field limits hold exactly: a message is refused iff it has more
//!   than `MAX_FIELD_LINES` lines or `MAX_FIELD_SECTION_LEN` bytes;
//! - arbitrary and mutated bytes never panic, and what decodes is within
//!   the limits and decodes the same once encoded again.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use narun::wire::{
    decode_request, decode_request_by_crate, decode_response, decode_response_by_crate,
    encode_request, encode_request_with, encode_response, WireError, MAX_AUTHORITY_LEN,
    MAX_FIELD_LINES, MAX_FIELD_LINE_LEN, MAX_FIELD_SECTION_LEN, MAX_METHOD_LEN, MAX_PATH_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use crate::harness::check;

const EXCLUDED_REQUEST: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "trailer",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];
const EXCLUDED_RESPONSE: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "trailer",
    "connection",
    "keep-alive",
];

/// Header values by name, in order.
type Fields = BTreeMap<String, Vec<Vec<u8>>>;

fn multimap(headers: &HeaderMap) -> Fields {
    let mut out = Fields::new();
    for (name, value) in headers {
        out.entry(name.as_str().to_owned())
            .or_default()
            .push(value.as_bytes().to_vec());
    }
    out
}

/// The bhttp crate joins the `cookie` lines of one field section.
fn join_cookies(values: &[Vec<u8>]) -> Vec<u8> {
    values.join(&b"; "[..])
}

// === strategies ===

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        select(vec![
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE",
        ])
        .prop_map(String::from),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}",
    ]
    .prop_map(|m| Method::from_bytes(m.as_bytes()).expect("token"))
}

fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        3 => "[a-z][a-z0-9-]{0,12}",
        2 => select(vec![
            "host", "content-length", "transfer-encoding", "trailer", "connection",
            "keep-alive", "proxy-connection", "te", "upgrade", "cookie", "set-cookie",
            "content-type", "x-a", "x-b",
        ])
        .prop_map(String::from),
        1 => "[!#$%&'*+.^_`|~0-9a-z-]{1,8}",
    ]
    .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).expect("token"))
}

/// Bytes `http::HeaderValue` accepts: visible ASCII, space, tab, obs-text.
fn value_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![8 => 0x20u8..0x7f, 1 => 0x80u8..=0xff, 1 => Just(b'\t')],
        0..max,
    )
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    vec((header_name(), value_bytes(24)), 0..12).prop_map(|fields| {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(name, HeaderValue::from_bytes(&value).expect("valid"));
        }
        map
    })
}

/// Request targets as a client sends them (origin form), and a few that
/// `http::Uri` refuses.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "/[A-Za-z0-9._~!$&'()*+,;=:@/%-]{0,40}(\\?[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,20})?",
        1 => "/[ -~]{0,30}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => vec(any::<u8>(), 0..64), 1 => vec(any::<u8>(), 0..2048)]
}

// === encode → decode ===

#[test]
fn request_round_trip() {
    let strategy = (method(), "[ -~]{0,40}", path(), headers(), body());
    check(
        "wire_bhttp::request_round_trip",
        256,
        strategy,
        |(method, authority, path, headers, body)| {
            let bytes = encode_request(&method, &authority, &path, &headers, &body)
                .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
            let uri = http::Uri::try_from(path.as_str());
            let decoded = decode_request(&bytes);
            let (Ok(uri), Ok(req)) = (uri, &decoded) else {
                // The only input encode takes and decode refuses: a target
                // `http::Uri` does not parse (a client cannot send one).
                prop_assert!(
                    http::Uri::try_from(path.as_str()).is_err()
                        && matches!(decoded, Err(WireError::Path(_))),
                    "{decoded:?}"
                );
                return Ok(());
            };
            prop_assert_eq!(req.method(), &method);
            prop_assert_eq!(req.uri(), &uri);
            if !path.contains('#') {
                prop_assert_eq!(req.uri().to_string(), path.clone());
            }
            prop_assert_eq!(req.body().as_ref(), &body[..]);

            let mut want = Fields::new();
            for (name, value) in &headers {
                if !EXCLUDED_REQUEST.contains(&name.as_str()) {
                    want.entry(name.as_str().to_owned())
                        .or_default()
                        .push(value.as_bytes().to_vec());
                }
            }
            if !body.is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(&method) {
                want.insert(
                    "content-length".into(),
                    vec![body.len().to_string().into_bytes()],
                );
            }
            if !authority.is_empty() {
                want.insert("host".into(), vec![authority.clone().into_bytes()]);
            }
            if let Some(cookies) = want.get_mut("cookie") {
                *cookies = vec![join_cookies(cookies)];
            }
            prop_assert_eq!(multimap(req.headers()), want);
            Ok(())
        },
    );
}

#[test]
fn response_round_trip() {
    let strategy = (200u16..=599, headers(), body());
    check(
        "wire_bhttp::response_round_trip",
        256,
        strategy,
        |(status, headers, body)| {
            let status = StatusCode::from_u16(status).expect("200..=599");
            let bytes = encode_response(status, &headers, &body)
                .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
            let resp =
                decode_response(&bytes).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
            prop_assert_eq!(resp.status(), status);
            prop_assert_eq!(resp.body().as_ref(), &body[..]);
            let mut want = Fields::new();
            for (name, value) in &headers {
                if !EXCLUDED_RESPONSE.contains(&name.as_str()) {
                    want.entry(name.as_str().to_owned())
                        .or_default()
                        .push(value.as_bytes().to_vec());
                }
            }
            want.insert(
                "content-length".into(),
                vec![body.len().to_string().into_bytes()],
            );
            if let Some(cookies) = want.get_mut("cookie") {
                *cookies = vec![join_cookies(cookies)];
            }
            prop_assert_eq!(multimap(resp.headers()), want);
            Ok(())
        },
    );
}

/// The encoders refuse, with the right error, what is beyond the Go
/// decoder's limits, and accept what is within them.
#[test]
fn encoders_enforce_the_length_limits() {
    let strategy = (
        0usize..=MAX_METHOD_LEN + 2,
        prop_oneof![0usize..8, (MAX_AUTHORITY_LEN - 2)..=(MAX_AUTHORITY_LEN + 2)],
        prop_oneof![1usize..8, (MAX_PATH_LEN - 2)..=(MAX_PATH_LEN + 2)],
        prop_oneof![0usize..8, (MAX_FIELD_LINE_LEN - 8)..=(MAX_FIELD_LINE_LEN)],
    );
    check(
        "wire_bhttp::encoders_enforce_the_length_limits",
        64,
        strategy,
        |(method_len, authority_len, path_len, value_len)| {
            let method = if method_len == 0 {
                Method::GET
            } else {
                Method::from_bytes("M".repeat(method_len).as_bytes()).expect("token")
            };
            let authority = "a".repeat(authority_len);
            let path = format!("/{}", "p".repeat(path_len - 1));
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_bytes(&vec![b'v'; value_len]).expect("valid");
            headers.insert("x-long", value);
            let line_ok = "x-long".len() + value_len <= MAX_FIELD_LINE_LEN;
            let got = encode_request(&method, &authority, &path, &headers, b"");
            let want_ok = method.as_str().len() <= MAX_METHOD_LEN
                && authority_len <= MAX_AUTHORITY_LEN
                && path_len <= MAX_PATH_LEN
                && line_ok;
            prop_assert_eq!(got.is_ok(), want_ok, "{:?}", got.as_ref().err());
            match got {
                Ok(bytes) => {
                    let req = decode_request(&bytes)
                        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
                    prop_assert_eq!(req.method(), &method);
                    prop_assert_eq!(req.uri().path().len(), path_len);
                }
                Err(WireError::TooLong { field, .. }) => {
                    prop_assert!(["method", "authority", "path", "field line"].contains(&field));
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
            let resp = encode_response(StatusCode::OK, &headers, b"");
            prop_assert_eq!(resp.is_ok(), line_ok);
            Ok(())
        },
    );
}

// === a BHTTP encoder of our own, for all four framings ===

#[derive(Debug, Clone)]
enum Control {
    Request {
        method: Vec<u8>,
        scheme: Vec<u8>,
        authority: Vec<u8>,
        path: Vec<u8>,
    },
    Response {
        informational: Vec<(u64, Vec<Field>)>,
        status: u64,
    },
}

type Field = (Vec<u8>, Vec<u8>);

/// One BHTTP message as written on the wire.
#[derive(Debug, Clone)]
struct Raw {
    indeterminate: bool,
    control: Control,
    header: Vec<Field>,
    /// The content, in chunks (non-empty; only indeterminate-length
    /// messages keep the boundaries).
    chunks: Vec<Vec<u8>>,
    trailer: Vec<Field>,
    /// Known length: leave out the empty trailer (1), or the empty content
    /// and trailer (2).
    truncate: u8,
    padding: usize,
    /// Write every varint on 8 bytes (valid, if wasteful).
    wide: bool,
}

fn varint(out: &mut Vec<u8>, v: u64, wide: bool) {
    if wide {
        out.extend_from_slice(&(v | 0xc0 << 56).to_be_bytes());
    } else if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc0 << 56).to_be_bytes());
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8], wide: bool) {
    varint(out, b.len() as u64, wide);
    out.extend_from_slice(b);
}

impl Raw {
    fn fields(&self, out: &mut Vec<u8>, fields: &[Field]) {
        let mut lines = Vec::new();
        for (name, value) in fields {
            bytes(&mut lines, name, self.wide);
            bytes(&mut lines, value, self.wide);
        }
        if self.indeterminate {
            out.extend_from_slice(&lines);
            varint(out, 0, self.wide);
        } else {
            bytes(out, &lines, self.wide);
        }
    }

    fn content(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let request = matches!(self.control, Control::Request { .. });
        let framing = match (request, self.indeterminate) {
            (true, false) => 0,
            (false, false) => 1,
            (true, true) => 2,
            (false, true) => 3,
        };
        varint(&mut out, framing, self.wide);
        match &self.control {
            Control::Request {
                method,
                scheme,
                authority,
                path,
            } => {
                for b in [method, scheme, authority, path] {
                    bytes(&mut out, b, self.wide);
                }
            }
            Control::Response {
                informational,
                status,
            } => {
                for (code, fields) in informational {
                    varint(&mut out, *code, self.wide);
                    self.fields(&mut out, fields);
                }
                varint(&mut out, *status, self.wide);
            }
        }
        self.fields(&mut out, &self.header);
        let content = self.content();
        let truncate = if self.indeterminate || !self.trailer.is_empty() {
            0
        } else if content.is_empty() {
            self.truncate
        } else {
            self.truncate.min(1)
        };
        if self.indeterminate {
            for chunk in &self.chunks {
                bytes(&mut out, chunk, self.wide);
            }
            varint(&mut out, 0, self.wide);
        } else if truncate < 2 {
            bytes(&mut out, &content, self.wide);
        }
        if truncate < 1 {
            self.fields(&mut out, &self.trailer);
        }
        out.resize(out.len() + self.padding, 0);
        out
    }

    /// The headers `narun::wire` decodes this message into: header then
    /// trailer lines, each section's `cookie` lines joined, the authority
    /// as `host` (when the message has no `host` line).
    fn want_headers(&self) -> Fields {
        let mut out = Fields::new();
        for section in [&self.header, &self.trailer] {
            let mut cookies = Vec::new();
            let mut cookie_at = None;
            for (name, value) in section.iter() {
                let name = String::from_utf8(name.clone()).expect("generated ASCII");
                if name == "cookie" {
                    cookies.push(value.clone());
                    if cookie_at.is_none() {
                        cookie_at = Some(out.get("cookie").map_or(0, Vec::len));
                        out.entry(name).or_default().push(Vec::new());
                    }
                } else {
                    out.entry(name).or_default().push(value.clone());
                }
            }
            if let Some(at) = cookie_at {
                out.get_mut("cookie").expect("added")[at] = join_cookies(&cookies);
            }
        }
        if let Control::Request { authority, .. } = &self.control {
            if !authority.is_empty() && !out.contains_key("host") {
                out.insert("host".into(), vec![authority.clone()]);
            }
        }
        out
    }
}

/// A valid field line: a lowercase token name, a valid value.
fn field() -> impl Strategy<Value = Field> {
    (header_name(), value_bytes(16)).prop_map(|(n, v)| (n.as_str().as_bytes().to_vec(), v))
}

fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(vec(any::<u8>(), 1..40), 0..5)
}

/// A message `narun::wire` must decode: control data within the limits,
/// valid field lines (a request's `host` line, if any, equal to its
/// authority), status 200..=599 after informational responses.
fn valid_raw() -> impl Strategy<Value = Raw> {
    let request = (
        method(),
        "[a-z]{0,6}",
        "[a-z0-9.:-]{0,30}",
        "/[A-Za-z0-9._~!$&'()*+,;=:@/-]{0,40}",
    )
        .prop_map(|(m, s, a, p)| Control::Request {
            method: m.as_str().as_bytes().to_vec(),
            scheme: s.into_bytes(),
            authority: a.into_bytes(),
            path: p.into_bytes(),
        });
    let response = (vec((100u64..=199, vec(field(), 0..3)), 0..3), 200u64..=599).prop_map(
        |(informational, status)| Control::Response {
            informational,
            status,
        },
    );
    (
        any::<bool>(),
        prop_oneof![request, response],
        vec(field(), 0..10),
        chunks(),
        vec(field(), 0..4),
        0u8..3,
        prop_oneof![3 => Just(0usize), 1 => 1usize..10],
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(indeterminate, control, header, chunks, trailer, truncate, padding, wide)| {
                let mut raw = Raw {
                    indeterminate,
                    control,
                    header,
                    chunks,
                    trailer,
                    truncate,
                    padding,
                    wide,
                };
                if let Control::Request { authority, .. } = &raw.control {
                    for (name, value) in &mut raw.header {
                        if name == b"host" {
                            value.clone_from(authority);
                        }
                    }
                }
                raw
            },
        )
}

#[test]
fn decodes_every_framing() {
    check(
        "wire_bhttp::decodes_every_framing",
        256,
        valid_raw(),
        |raw| {
            let bytes = raw.encode();
            match &raw.control {
                Control::Request { method, path, .. } => {
                    let req = decode_request(&bytes)
                        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
                    prop_assert_eq!(req.method().as_str().as_bytes(), &method[..]);
                    let target = req.uri().to_string();
                    prop_assert_eq!(target.as_bytes(), &path[..]);
                    prop_assert_eq!(req.body().as_ref(), &raw.content()[..]);
                    // A request's trailer lines are not decoded.
                    let mut header_only = raw.clone();
                    header_only.trailer.clear();
                    prop_assert_eq!(multimap(req.headers()), header_only.want_headers());
                    let wrong_kind =
                        matches!(decode_response(&bytes), Err(WireError::WrongKind { .. }));
                    prop_assert!(wrong_kind);
                }
                Control::Response { status, .. } => {
                    let resp = decode_response(&bytes)
                        .map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
                    prop_assert_eq!(u64::from(resp.status().as_u16()), *status);
                    prop_assert_eq!(resp.body().as_ref(), &raw.content()[..]);
                    prop_assert_eq!(multimap(resp.headers()), raw.want_headers());
                    let wrong_kind =
                        matches!(decode_request(&bytes), Err(WireError::WrongKind { .. }));
                    prop_assert!(wrong_kind);
                }
            }
            Ok(())
        },
    );
}

/// `n` field lines with `len`-byte values (distinct names), split between
/// the header and trailer sections of a response at `split`, or all in a
/// request's header section: refused exactly past the limits.
#[test]
fn field_limits_are_exact() {
    // (lines, value length): few lines up to the line length limit, the
    // line count limit, and both ways to the byte limit (2000 * 524 and
    // 64 * 16384 are just below MAX_FIELD_SECTION_LEN).
    let sizes = prop_oneof![
        (
            0usize..20,
            prop_oneof![0usize..4, (MAX_FIELD_LINE_LEN - 10)..=MAX_FIELD_LINE_LEN]
        ),
        (
            (MAX_FIELD_LINES - 2)..=(MAX_FIELD_LINES + 2),
            prop_oneof![0usize..4, 514usize..522]
        ),
        (
            62usize..68,
            (MAX_FIELD_LINE_LEN - 400)..=(MAX_FIELD_LINE_LEN - 7)
        ),
    ];
    let strategy = (sizes, any::<Index>(), any::<bool>(), any::<bool>());
    check(
        "wire_bhttp::field_limits_are_exact",
        24,
        strategy,
        |((n, len), split, request, indeterminate)| {
            let fields: Vec<Field> = (0..n)
                .map(|i| (format!("x-{i:05}").into_bytes(), vec![b'v'; len]))
                .collect();
            let total: usize = fields.iter().map(|(n, v)| n.len() + v.len()).sum();
            let line_ok = n == 0 || 7 + len <= MAX_FIELD_LINE_LEN;
            let split = if request { n } else { split.index(n + 1) };
            let raw = Raw {
                indeterminate,
                control: if request {
                    Control::Request {
                        method: b"GET".to_vec(),
                        scheme: Vec::new(),
                        authority: Vec::new(),
                        path: b"/".to_vec(),
                    }
                } else {
                    Control::Response {
                        informational: Vec::new(),
                        status: 200,
                    }
                },
                header: fields[..split].to_vec(),
                chunks: Vec::new(),
                trailer: fields[split..].to_vec(),
                truncate: 0,
                padding: 0,
                wide: false,
            };
            let bytes = raw.encode();
            let result = if request {
                decode_request(&bytes).map(|r| r.headers().len())
            } else {
                decode_response(&bytes).map(|r| r.headers().len())
            };
            let within = n <= MAX_FIELD_LINES && total <= MAX_FIELD_SECTION_LEN && line_ok;
            match result {
                Ok(got) => {
                    prop_assert!(within, "accepted {n} lines, {total} bytes");
                    prop_assert_eq!(got, n);
                }
                Err(e) => {
                    prop_assert!(!within, "refused {n} lines, {total} bytes: {e}");
                    prop_assert!(e.is_fields_too_large(), "{e}");
                }
            }
            Ok(())
        },
    );
}

// === arbitrary and mutated bytes ===

#[derive(Debug, Clone)]
enum Mutation {
    Xor(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// Overwrite with a large varint (a length prefix that lies).
    BigVarint(Index, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Xor(i, x)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..6)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), prop_oneof![Just(u64::MAX >> 2), 64u64..100_000, Just(1 << 30)])
            .prop_map(|(i, v)| Mutation::BigVarint(i, v)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
        match m {
            Mutation::Xor(i, x) => {
                if !bytes.is_empty() {
                    let i = at(i, bytes.len());
                    bytes[i] ^= x;
                }
            }
            Mutation::Insert(i, b) => {
                let i = at(i, bytes.len() + 1);
                bytes.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(i, bytes.len());
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
            Mutation::BigVarint(i, v) => {
                let i = at(i, bytes.len() + 1);
                let mut enc = Vec::new();
                varint(&mut enc, *v, false);
                let end = (i + enc.len()).min(bytes.len());
                bytes.splice(i..end, enc);
            }
        }
    }
    bytes
}

/// Inputs for the decoders: random bytes (mostly with a valid framing
/// indicator), and valid messages with a few mutations.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        1 => (0u8..4, vec(any::<u8>(), 0..256)).prop_map(|(f, mut b)| {
            b.insert(0, f);
            b
        }),
        4 => (valid_raw(), vec(mutation(), 1..4))
            .prop_map(|(raw, mutations)| mutate(raw.encode(), &mutations)),
    ]
}

fn fields_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum()
}

/// Decoding never panics; what decodes is within the limits, and encoding
/// it again and decoding gives the same message (hop-by-hop fields and
/// `content-length` aside).
#[test]
fn decoders_survive_hostile_bytes() {
    check(
        "wire_bhttp::decoders_survive_hostile_bytes",
        512,
        hostile_bytes(),
        |bytes| {
            if let Ok(req) = decode_request(&bytes) {
                check_request(&req, bytes.len())?;
            }
            if let Ok(resp) = decode_response(&bytes) {
                check_response(&resp, bytes.len())?;
            }
            Ok(())
        },
    );
}

// === the direct reader and writer against the bhttp crate ===

/// What a decoder gave, comparable: the error's text, or the message with
/// its header lines in order.
fn request_outcome(r: Result<http::Request<bytes::Bytes>, WireError>) -> Result<String, String> {
    r.map(|r| {
        format!(
            "{} {} {:?} {:?}",
            r.method(),
            r.uri(),
            r.headers(),
            r.body()
        )
    })
    .map_err(|e| e.to_string())
}

fn response_outcome(r: Result<http::Response<bytes::Bytes>, WireError>) -> Result<String, String> {
    r.map(|r| format!("{} {:?} {:?}", r.status(), r.headers(), r.body()))
        .map_err(|e| e.to_string())
}

/// The direct known-length reader decodes every message exactly as the
/// bhttp crate does (the same message, or the same error): valid messages
/// of every framing, and mutated or arbitrary bytes.
#[test]
fn the_direct_reader_agrees_with_the_crate() {
    let inputs = prop_oneof![
        1 => valid_raw().prop_map(|raw| raw.encode()),
        2 => hostile_bytes(),
    ];
    check(
        "wire_bhttp::the_direct_reader_agrees_with_the_crate",
        1024,
        inputs,
        |bytes| {
            prop_assert_eq!(
                request_outcome(decode_request(&bytes)),
                request_outcome(decode_request_by_crate(&bytes))
            );
            prop_assert_eq!(
                response_outcome(decode_response(&bytes)),
                response_outcome(decode_response_by_crate(&bytes))
            );
            Ok(())
        },
    );
}

/// How narun wrote requests and responses with the bhttp crate's `Message`
/// (before the direct writer): the reference the writer must match.
fn crate_request(
    method: &Method,
    authority: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let msg = bhttp::Message::request(
        method.as_str().as_bytes().to_vec(),
        Vec::new(),
        authority.as_bytes().to_vec(),
        path.as_bytes().to_vec(),
    );
    let length = !body.is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(method);
    crate_write(msg, headers, EXCLUDED_REQUEST, length, body)
}

fn crate_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let msg = bhttp::Message::response(bhttp::StatusCode::try_from(status.as_u16()).unwrap());
    crate_write(msg, headers, EXCLUDED_RESPONSE, true, body)
}

/// `msg` with the field lines of `headers` but `excluded`, plus a
/// `content-length` if `length`, sorted by name, and `body`, written as a
/// known-length message.
fn crate_write(
    mut msg: bhttp::Message,
    headers: &HeaderMap,
    excluded: &[&str],
    length: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(n, _)| !excluded.contains(&n.as_str()))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    if length {
        fields.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    for (n, v) in fields {
        msg.put_header(n, v);
    }
    msg.write_content(body);
    let mut out = Vec::new();
    msg.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
    out
}

/// The direct writer writes what the bhttp crate writes, byte for byte;
/// lines set by the caller replace the client's of the same name.
#[test]
fn the_direct_writer_writes_what_the_crate_writes() {
    let set_names = select(vec![
        "x-request-id",
        "traceparent",
        "x-forwarded-for",
        "accept",
    ]);
    let strategy = (
        method(),
        "[ -~]{0,40}",
        path(),
        headers(),
        body(),
        vec((set_names, value_bytes(20)), 0..3),
        200u16..=599,
    );
    check(
        "wire_bhttp::the_direct_writer_writes_what_the_crate_writes",
        512,
        strategy,
        |(method, authority, path, headers, body, set, status)| {
            let ours = encode_request(&method, &authority, &path, &headers, &body)
                .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
            prop_assert_eq!(
                &ours,
                &crate_request(&method, &authority, &path, &headers, &body)
            );

            let mut set_map = HeaderMap::new();
            for (name, value) in &set {
                set_map.insert(*name, HeaderValue::from_bytes(value).unwrap());
            }
            let set: Vec<(&str, &[u8])> = set_map
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect();
            let mut merged = headers.clone();
            for (name, value) in &set_map {
                merged.insert(name, value.clone());
            }
            let with = encode_request_with(&method, &authority, &path, &headers, &set, &body)
                .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
            prop_assert_eq!(
                with,
                crate_request(&method, &authority, &path, &merged, &body)
            );

            let status = StatusCode::from_u16(status).unwrap();
            let ours = encode_response(status, &headers, &body)
                .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
            prop_assert_eq!(ours, crate_response(status, &headers, &body));
            Ok(())
        },
    );
}

fn check_request(req: &http::Request<bytes::Bytes>, input: usize) -> Result<(), TestCaseError> {
    prop_assert!(req.method().as_str().len() <= MAX_METHOD_LEN);
    let target = req.uri().to_string();
    prop_assert!(target.len() <= MAX_PATH_LEN && target.starts_with('/'));
    // The field lines, plus `host` from the authority.
    prop_assert!(req.headers().len() <= MAX_FIELD_LINES + 1);
    prop_assert!(fields_size(req.headers()) <= MAX_FIELD_SECTION_LEN + 4 + MAX_AUTHORITY_LEN);
    prop_assert!(req.body().len() <= input);

    // Encode again: the authority is the `host` value.
    let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
    let authority = match hosts[..] {
        [] => "",
        [one] => match std::str::from_utf8(one.as_bytes()) {
            Ok(s) => s,
            Err(_) => return Ok(()),
        },
        _ => return Ok(()),
    };
    let again = match encode_request(req.method(), authority, &target, req.headers(), req.body()) {
        Ok(b) => b,
        // `host` lines are not bounded like the authority, and the added
        // `content-length` line may be one too many.
        Err(WireError::TooLong {
            field: "authority", ..
        }) => return Ok(()),
        Err(e) if e.is_fields_too_large() => return Ok(()),
        Err(e) => return Err(TestCaseError::fail(format!("re-encode: {e}"))),
    };
    let back = decode_request(&again).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(back.method(), req.method());
    prop_assert_eq!(back.uri(), req.uri());
    prop_assert_eq!(back.body(), req.body());
    let mut want = multimap(req.headers());
    want.retain(|n, _| n == "host" || !EXCLUDED_REQUEST.contains(&n.as_str()));
    let method = req.method();
    if !req.body().is_empty() || [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        want.insert(
            "content-length".into(),
            vec![req.body().len().to_string().into_bytes()],
        );
    }
    if authority.is_empty() {
        want.remove("host");
    }
    if let Some(cookies) = want.get_mut("cookie") {
        *cookies = vec![join_cookies(cookies)];
    }
    prop_assert_eq!(multimap(back.headers()), want);
    Ok(())
}

fn check_response(resp: &http::Response<bytes::Bytes>, input: usize) -> Result<(), TestCaseError> {
    prop_assert!((200..=599).contains(&resp.status().as_u16()));
    prop_assert!(resp.headers().len() <= MAX_FIELD_LINES);
    prop_assert!(fields_size(resp.headers()) <= MAX_FIELD_SECTION_LEN);
    prop_assert!(resp.body().len() <= input);
    let again = match encode_response(resp.status(), resp.headers(), resp.body()) {
        Ok(b) => b,
        Err(e) if e.is_fields_too_large() => return Ok(()),
        Err(e) => return Err(TestCaseError::fail(format!("re-encode: {e}"))),
    };
    let back = match decode_response(&again) {
        Ok(b) => b,
        // Header and trailer `cookie` lines joined into one line.
        Err(e)
            if e.is_fields_too_large() && resp.headers().get_all("cookie").iter().count() > 1 =>
        {
            return Ok(())
        }
        Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
    };
    prop_assert_eq!(back.status(), resp.status());
    prop_assert_eq!(back.body(), resp.body());
    let mut want = multimap(resp.headers());
    want.retain(|n, _| !EXCLUDED_RESPONSE.contains(&n.as_str()));
    want.insert(
        "content-length".into(),
        vec![resp.body().len().to_string().into_bytes()],
    );
    if let Some(cookies) = want.get_mut("cookie") {
        *cookies = vec![join_cookies(cookies)];
    }
    prop_assert_eq!(multimap(back.headers()), want);
    Ok(())
}
