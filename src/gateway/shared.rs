//! What the HTTP and gRPC paths share: the gateway's state, request ids,
//! the field lines the gateway adds for the consumer, plain-text answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tokio::sync::Semaphore;

use super::body::Body;
use super::config::{Config, GrpcRoute};
use super::metrics::Metrics;
use super::routes::RouteTable;
use crate::nats as nats_conn;

/// Shared state of one running gateway.
pub(super) struct Gateway {
    pub(super) cfg: Config,
    pub(super) routes: RouteTable,
    /// The NATS subject of each HTTP route, by route index (a clone is a
    /// reference count, not a copy of the name).
    pub(super) subjects: Vec<async_nats::Subject>,
    /// gRPC routes by fully-qualified service name.
    pub(super) grpc_routes: HashMap<String, GrpcRoute>,
    pub(super) nats: async_nats::Client,
    /// The client's lost connections: a request waiting for a reply when
    /// its connection is lost gets 503 at once, not a 504 at its timeout.
    pub(super) disconnects: nats_conn::Disconnects,
    pub(super) metrics: Metrics,
    /// `max_in_flight`, shared by HTTP requests and gRPC calls. A request
    /// takes one for its NATS leg only, once its body is read (a gRPC
    /// stream holds its permit until it ends).
    pub(super) permits: Arc<Semaphore>,
    /// Becomes `true` when the gateway starts shutting down (ends the
    /// endless health watches so that draining does not wait for them).
    pub(super) stopping: tokio::sync::watch::Receiver<bool>,
}

pub(super) fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Body::full(format!("{msg}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The request id header. A name, not a string: inserting a string name
/// would allocate a copy of it on every response.
pub(super) fn request_id_header() -> HeaderName {
    HeaderName::from_static(REQUEST_ID)
}

/// The request id's name, as a BHTTP field and a header.
pub(super) const REQUEST_ID: &str = "x-request-id";

/// The client's `x-request-id` if it is sane, else a new random one.
pub(super) fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .cloned()
        .unwrap_or_else(|| {
            let mut id = [0; 32];
            random_hex(&mut id);
            HeaderValue::from_bytes(&id).expect("hex is a valid header value")
        })
}

/// Fill `out` with random lowercase hex digits.
fn random_hex(out: &mut [u8]) {
    use rand::RngCore;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut random = [0u8; 32];
    let random = &mut random[..out.len().div_ceil(2)];
    rand::rng().fill_bytes(random);
    for (i, digit) in out.iter_mut().enumerate() {
        let b = random[i / 2];
        *digit = HEX[usize::from(if i % 2 == 0 { b >> 4 } else { b & 0xf })];
    }
}

/// Parse a W3C `traceparent` (version 00): returns (trace-id, flags).
pub fn parse_traceparent(v: &str) -> Option<(&str, &str)> {
    let mut it = v.split('-');
    let (version, trace, parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let ok = version == "00"
        && it.next().is_none()
        && hex(trace, 32)
        && !zero(trace)
        && hex(parent, 16)
        && !zero(parent)
        && hex(flags, 2);
    ok.then_some((trace, flags))
}

/// The length of a version 00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// A client's IP address as text, for `x-forwarded-for`: written once per
/// connection, not per request. IPv4-mapped IPv6 addresses are written as
/// IPv4.
#[derive(Clone, Copy)]
pub(super) struct PeerIp {
    /// At most 39 bytes (IPv6).
    text: [u8; 48],
    len: u8,
}

impl PeerIp {
    pub(super) fn new(peer: SocketAddr) -> Self {
        use std::io::Write;
        let mut text = [0u8; 48];
        let mut w = std::io::Cursor::new(&mut text[..]);
        // At most 39 bytes: cannot fail.
        let _ = write!(w, "{}", peer.ip().to_canonical());
        let len = u8::try_from(w.position()).unwrap_or(0);
        PeerIp { text, len }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

/// The field lines the gateway sets on a request for the consumer: request
/// id, W3C trace context (the client's trace continues with the gateway as
/// a new parent), client address and scheme. Built on the stack: the HTTP
/// path hands them to the BHTTP encoder as they are.
pub(super) struct Decorations<'a> {
    traceparent: [u8; TRACEPARENT_LEN],
    ip: &'a PeerIp,
    /// `x-forwarded-for` when the client sent one: theirs, then ours.
    forwarded_for: Option<Vec<u8>>,
}

impl<'a> Decorations<'a> {
    pub(super) fn new(headers: &HeaderMap, ip: &'a PeerIp) -> Self {
        let mut traceparent = *b"00-00000000000000000000000000000000-0000000000000000-00";
        match headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent)
        {
            Some((trace, flags)) => {
                traceparent[3..35].copy_from_slice(trace.as_bytes());
                traceparent[53..55].copy_from_slice(flags.as_bytes());
                random_hex(&mut traceparent[36..52]);
            }
            // Trace and parent id from one draw.
            None => random_hex(&mut traceparent[3..52]),
        }
        // The trace id is 32 digits, then '-': no digit there.
        traceparent[35] = b'-';
        let forwarded_for = headers.get("x-forwarded-for").map(|prev| {
            let ours = ip.as_bytes();
            let mut v = Vec::with_capacity(prev.len() + 2 + ours.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ours);
            v
        });
        Decorations {
            traceparent,
            ip,
            forwarded_for,
        }
    }

    /// The field lines (lowercase names, valid values), each replacing the
    /// client's lines of that name.
    pub(super) fn fields<'b>(
        &'b self,
        request_id: &'b HeaderValue,
    ) -> [(&'static str, &'b [u8]); 4] {
        [
            (REQUEST_ID, request_id.as_bytes()),
            ("traceparent", &self.traceparent),
            (
                "x-forwarded-for",
                self.forwarded_for.as_deref().unwrap_or(self.ip.as_bytes()),
            ),
            ("x-forwarded-proto", b"http"),
        ]
    }
}

/// [`Decorations`] set in `headers` (the gRPC path, which forwards
/// headers as NATS metadata).
pub(super) fn decorate_request(headers: &mut HeaderMap, request_id: &HeaderValue, peer: &PeerIp) {
    let decorations = Decorations::new(headers, peer);
    for (name, value) in decorations.fields(request_id) {
        // Always valid: the client's x-forwarded-for was a header value
        // already; the rest is hex digits, an address and ASCII.
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decorations_start_a_trace_and_name_the_client_when_the_request_has_none() {
        let id = HeaderValue::from_static("req-2");
        let peer = PeerIp::new("[::ffff:10.1.2.3]:40000".parse().unwrap());
        let d = Decorations::new(&HeaderMap::new(), &peer);
        let fields = d.fields(&id);
        let get = |name: &str| {
            let (_, v) = fields.iter().find(|(n, _)| *n == name).unwrap();
            std::str::from_utf8(v).unwrap().to_owned()
        };
        let tp = get("traceparent");
        assert_eq!(tp.len(), TRACEPARENT_LEN);
        let (trace, flags) = parse_traceparent(&tp).expect("a valid traceparent");
        assert_eq!(flags, "00");
        // A new trace each time, not a constant.
        let again = Decorations::new(&HeaderMap::new(), &peer);
        assert_ne!(again.fields(&id)[1].1, fields[1].1);
        assert_ne!(trace, "0".repeat(32));
        // IPv4-mapped IPv6 peers are named as IPv4.
        assert_eq!(get("x-forwarded-for"), "10.1.2.3");
        assert_eq!(get("x-forwarded-proto"), "http");
        assert_eq!(get(REQUEST_ID), "req-2");
        let v6 = PeerIp::new("[2001:db8::1]:1".parse().unwrap());
        let v6 = Decorations::new(&HeaderMap::new(), &v6);
        assert_eq!(v6.fields(&id)[2].1, b"2001:db8::1");
    }

    #[test]
    fn traceparent_is_validated() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(good),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "01"))
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn decorate_continues_the_trace_and_appends_the_client() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        h.insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        let id = HeaderValue::from_static("req-1");
        decorate_request(&mut h, &id, &PeerIp::new("127.0.0.2:5000".parse().unwrap()));
        let tp = h["traceparent"].to_str().unwrap();
        let (trace, flags) = parse_traceparent(tp).unwrap();
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(flags, "01");
        assert!(!tp.contains("00f067aa0ba902b7"), "new parent id");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(h["x-request-id"], "req-1");
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        let mut h = HeaderMap::new();
        let generated = request_id(&h);
        assert_eq!(generated.len(), 32);
        h.insert(REQUEST_ID, "abc".parse().unwrap());
        assert_eq!(request_id(&h), "abc");
    }
}
