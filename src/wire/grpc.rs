//! gRPC over NATS: the contract between the gateway's gRPC ingress and gRPC
//! consumers. Everything here is also what a consumer written in another
//! language implements; nothing else in narun knows these names.
//!
//! # Unary calls (compatible with the Go narun)
//!
//! The gateway sends one NATS request to the route's `service` subject:
//!
//! | NATS header | value |
//! | --- | --- |
//! | [`METHOD_HEADER`] `X-Original-Grpc-Method` | `/pkg.Service/Method` (exact spelling, NATS headers are case sensitive) |
//! | [`super::TIMEOUT_HEADER`] `Narun-Timeout-Ms` | the time left before the gateway stops waiting, in whole milliseconds (narun only) |
//! | [`STREAM_WINDOW_HEADER`] `Narun-Stream-Window` | stream credit: the gateway understands the stream framing below (narun only) |
//! | [`METADATA_PREFIX`]`<key>` | one per client metadata entry, e.g. `Grpc-Metadata-x-user: alice` (narun only) |
//!
//! The payload is the raw protobuf bytes of the single request message,
//! without the 5-byte gRPC frame prefix (possibly empty).
//!
//! The consumer replies on the reply subject with the raw protobuf bytes of
//! the response message, or with an empty payload and the Micro error
//! headers `Nats-Service-Error-Code` (a gRPC code number, [`code`]) and
//! `Nats-Service-Error` (the status message). Response metadata travels as
//! [`METADATA_PREFIX`]`<key>` headers (initial metadata) and
//! [`TRAILER_PREFIX`]`<key>` headers (trailing metadata), on success and on
//! error replies alike. The Go consumer sends gRPC code numbers for status
//! errors and 400/500/501 for its own failures; the narun consumer always
//! sends gRPC numbers; the gateway accepts both (see the gateway's error
//! table). Metadata keys are lowercase; `-bin` values keep their base64
//! text form, exactly as on the HTTP/2 wire.
//!
//! # Server-streaming responses (narun only)
//!
//! A request that carries [`STREAM_WINDOW_HEADER`] (`W` frames of credit)
//! may be answered with a stream of replies on the same reply subject
//! instead of one reply. Every stream reply carries
//! [`STREAM_SEQ_HEADER`] `Narun-Stream-Seq: n`, counting from 0 without
//! gaps (NATS keeps the order of one publisher, the sequence numbers detect
//! a lost message):
//!
//! - a *message frame* has the raw bytes of one response message as its
//!   payload (possibly empty: an empty protobuf message); frame 0 also
//!   carries the initial metadata ([`METADATA_PREFIX`] headers);
//! - the *end frame*, last, has [`STREAM_END_HEADER`] `Narun-Stream-End: 1`,
//!   an empty payload, the final status (no error headers = OK, else the
//!   Micro error headers as above) and the trailing metadata
//!   ([`TRAILER_PREFIX`] headers). A stream may be just an end frame (zero
//!   messages).
//!
//! A reply without `Narun-Stream-Seq` is a unary reply, so a consumer
//! answers a unary call (one message then OK) with one plain reply, exactly
//! as the Go consumer does, and the gateway cannot tell the difference.
//!
//! Flow control: every message frame is published with a reply subject of
//! the consumer's own (a fresh inbox per call, the *control subject*). The
//! consumer never has more than `W` message frames not yet acknowledged.
//! The gateway acknowledges frames once they are handed to the client's
//! HTTP/2 stream, by publishing to the control subject an empty message with
//! [`STREAM_ACK_HEADER`] `Narun-Stream-Ack: n` (every frame up to and
//! including `n` is consumed; cumulative, at least every `W/2` frames). When
//! the client goes away, the deadline passes or the stream breaks, the
//! gateway publishes [`STREAM_CANCEL_HEADER`] `Narun-Stream-Cancel: <reason>`
//! to the control subject and the consumer stops. The whole call, stream
//! included, ends at the deadline given by [`super::TIMEOUT_HEADER`].
//!
//! A request without [`STREAM_WINDOW_HEADER`] (the Go gateway) gets a single
//! reply: a response of several messages then becomes the error
//! UNIMPLEMENTED.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// NATS header with the gRPC method, `/pkg.Service/Method` (exact spelling).
pub const METHOD_HEADER: &str = super::GRPC_METHOD_HEADER;
/// Prefix of the NATS headers carrying request metadata and response
/// initial metadata: `Grpc-Metadata-<lowercase key>`.
pub const METADATA_PREFIX: &str = "Grpc-Metadata-";
/// Prefix of the NATS headers carrying response trailing metadata:
/// `Grpc-Trailer-<lowercase key>`.
pub const TRAILER_PREFIX: &str = "Grpc-Trailer-";
/// Request header: stream credit in frames; its presence means the gateway
/// understands the stream framing.
pub const STREAM_WINDOW_HEADER: &str = "Narun-Stream-Window";
/// Stream reply header: the frame's sequence number, from 0.
pub const STREAM_SEQ_HEADER: &str = "Narun-Stream-Seq";
/// Stream reply header on the end frame (value `1`).
pub const STREAM_END_HEADER: &str = "Narun-Stream-End";
/// Control message header: frames up to this sequence number are consumed.
pub const STREAM_ACK_HEADER: &str = "Narun-Stream-Ack";
/// Control message header: stop the stream (the value is a reason, for logs).
pub const STREAM_CANCEL_HEADER: &str = "Narun-Stream-Cancel";
/// The credit the narun gateway grants.
pub const DEFAULT_STREAM_WINDOW: u32 = 32;
/// The largest credit a consumer honours (a larger value is clamped).
pub const MAX_STREAM_WINDOW: u32 = 1024;
/// `content-type` of gRPC requests and responses.
pub const CONTENT_TYPE: &str = "application/grpc";
/// The fully-qualified name of the standard health service.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// gRPC status codes (grpc/doc/statuscodes.md).
pub mod code {
    pub const OK: u16 = 0;
    pub const CANCELLED: u16 = 1;
    pub const UNKNOWN: u16 = 2;
    pub const INVALID_ARGUMENT: u16 = 3;
    pub const DEADLINE_EXCEEDED: u16 = 4;
    pub const NOT_FOUND: u16 = 5;
    pub const ALREADY_EXISTS: u16 = 6;
    pub const PERMISSION_DENIED: u16 = 7;
    pub const RESOURCE_EXHAUSTED: u16 = 8;
    pub const FAILED_PRECONDITION: u16 = 9;
    pub const ABORTED: u16 = 10;
    pub const OUT_OF_RANGE: u16 = 11;
    pub const UNIMPLEMENTED: u16 = 12;
    pub const INTERNAL: u16 = 13;
    pub const UNAVAILABLE: u16 = 14;
    pub const DATA_LOSS: u16 = 15;
    pub const UNAUTHENTICATED: u16 = 16;
}

/// The name grpc-go gives a code (`codes.Code.String()`), as in the Go
/// gateway's `grpc_code` metric label.
pub fn code_name(c: u16) -> &'static str {
    match c {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Whether a `content-type` is gRPC (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc_content_type(v: &HeaderValue) -> bool {
    let v = v.as_bytes();
    v.len() >= CONTENT_TYPE.len()
        && v[..CONTENT_TYPE.len()].eq_ignore_ascii_case(CONTENT_TYPE.as_bytes())
        && matches!(v.get(CONTENT_TYPE.len()), None | Some(b'+' | b';'))
}

/// Split `/pkg.Service/Method` into (`pkg.Service`, `Method`).
pub fn parse_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    (ok(service) && ok(method)).then_some((service, method))
}

/// One length-prefixed gRPC message: flag 0 (uncompressed), big-endian length, bytes.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).expect("gRPC messages are below 4 GiB"));
    out.put_slice(message);
    out.freeze()
}

/// Why a gRPC message stream could not be split into messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("compressed gRPC message, but no compression was negotiated")]
    Compressed,
    #[error("invalid gRPC frame flag {0}")]
    Flag(u8),
    #[error("gRPC message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("gRPC stream ended inside a message")]
    Truncated,
}

/// Splits HTTP/2 DATA into gRPC messages (a message may span DATA frames,
/// and a DATA frame may hold several messages).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
}

impl FrameDecoder {
    /// A decoder refusing messages larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Add received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if any.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        match self.buf[0] {
            0 => {}
            1 => return Err(FrameError::Compressed),
            f => return Err(FrameError::Flag(f)),
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Check that nothing is left over at the end of the stream.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

/// Parse a `grpc-timeout` value: 1 to 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`).
pub fn parse_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Encode a `grpc-timeout` value: at most 8 digits in the finest unit that
/// fits, rounded down (the callee never gets more time than there is).
pub fn encode_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    for (unit, per) in [
        ("n", 1u128),
        ("u", 1_000),
        ("m", 1_000_000),
        ("S", 1_000_000_000),
        ("M", 60_000_000_000),
        ("H", 3_600_000_000_000),
    ] {
        let n = nanos / per;
        if n <= MAX {
            return format!("{n}{unit}");
        }
    }
    format!("{MAX}H")
}

/// Percent-encode a status message for `grpc-message` (bytes outside
/// printable ASCII, and `%`).
pub fn encode_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode a `grpc-message` value; malformed escapes are kept literally.
pub fn decode_message(v: &[u8]) -> String {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `grpc-status` and `grpc-message` in a header or trailer block.
pub fn status_of(headers: &HeaderMap) -> Option<(u16, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u16>()
        .unwrap_or(code::UNKNOWN);
    let message = headers
        .get("grpc-message")
        .map(|v| decode_message(v.as_bytes()))
        .unwrap_or_default();
    Some((code, message))
}

/// Headers that are part of the gRPC/HTTP transport, never metadata.
pub fn is_transport_header(name: &str) -> bool {
    matches!(
        name,
        "content-type"
            | "content-length"
            | "te"
            | "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "trailer"
            | "grpc-status"
            | "grpc-message"
            | "grpc-timeout"
            | "grpc-encoding"
            | "grpc-accept-encoding"
            | "grpc-message-type"
    )
}

/// Copy the metadata in `headers` into NATS headers named `prefix + key`,
/// skipping transport headers and values a NATS header cannot carry.
pub fn metadata_to_nats(headers: &HeaderMap, prefix: &str, into: &mut async_nats::HeaderMap) {
    for (name, value) in headers {
        if is_transport_header(name.as_str()) {
            continue;
        }
        let Ok(value) = value.to_str() else {
            tracing::debug!(header = %name, "metadata value is not visible ASCII: not forwarded");
            continue;
        };
        let Ok(nats_name) = async_nats::HeaderName::try_from(format!("{prefix}{name}")) else {
            continue;
        };
        into.append(nats_name, value);
    }
}

/// The metadata carried by NATS headers named `prefix + key`, as HTTP
/// headers. Transport headers and invalid names or values are dropped.
/// Metadata beyond the wire limits ([`super::MAX_FIELD_LINES`],
/// [`super::MAX_FIELD_SECTION_LEN`]) is dropped too, with a warning: see
/// [`try_metadata_from_nats`] to refuse it instead.
pub fn metadata_from_nats(headers: Option<&async_nats::HeaderMap>, prefix: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Err(e) = fill_metadata(headers, prefix, &mut out) {
        tracing::warn!(error = %e, "gRPC metadata over the limits: the rest is dropped");
    }
    out
}

/// [`metadata_from_nats`], or an error (for which
/// [`super::WireError::is_fields_too_large`] holds) when the metadata is
/// beyond the wire limits.
pub fn try_metadata_from_nats(
    headers: Option<&async_nats::HeaderMap>,
    prefix: &str,
) -> Result<HeaderMap, super::WireError> {
    let mut out = HeaderMap::new();
    fill_metadata(headers, prefix, &mut out)?;
    Ok(out)
}

/// Append the metadata to `out` until the wire limits are reached.
fn fill_metadata(
    headers: Option<&async_nats::HeaderMap>,
    prefix: &str,
    out: &mut HeaderMap,
) -> Result<(), super::WireError> {
    let Some(headers) = headers else {
        return Ok(());
    };
    let mut budget = super::FieldBudget::default();
    for (name, values) in headers.iter() {
        let Some(key) = AsRef::<str>::as_ref(name).strip_prefix(prefix) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        if is_transport_header(&key) {
            continue;
        }
        let Ok(key) = HeaderName::from_bytes(key.as_bytes()) else {
            continue;
        };
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v.as_str()) {
                budget.take(key.as_str().as_bytes(), v.as_bytes())?;
                // Within the budget this cannot fail; `append` would panic.
                out.try_append(key.clone(), v)
                    .map_err(|_| super::WireError::TooManyFields {
                        max: super::MAX_FIELD_LINES,
                    })?;
            }
        }
    }
    Ok(())
}

/// Read a numeric NATS header.
pub fn number(headers: Option<&async_nats::HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().trim().parse().ok()
}

/// The stream credit a request grants, if the gateway supports streaming
/// (clamped to 1..=[`MAX_STREAM_WINDOW`]).
pub fn stream_window(headers: Option<&async_nats::HeaderMap>) -> Option<u32> {
    let w = number(headers, STREAM_WINDOW_HEADER)?;
    Some(w.clamp(1, u64::from(MAX_STREAM_WINDOW)) as u32)
}

/// `Some(seq)` when a reply is a stream frame.
pub fn stream_seq(headers: Option<&async_nats::HeaderMap>) -> Option<u64> {
    number(headers, STREAM_SEQ_HEADER)
}

/// Whether a stream frame is the end frame.
pub fn is_stream_end(headers: Option<&async_nats::HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get(STREAM_END_HEADER))
        .is_some_and(|v| v.as_str().trim() == "1")
}

/// A protobuf message that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf message")]
pub struct MalformedProto;

/// A tiny protobuf reader for the few messages the gateway itself decodes
/// (the health check request): the last string field numbered `field`.
pub fn proto_string_field(mut msg: &[u8], field: u64) -> Result<Option<String>, MalformedProto> {
    fn varint(buf: &mut &[u8]) -> Result<u64, MalformedProto> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or(MalformedProto)?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(MalformedProto)
    }
    let mut found = None;
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(&mut msg)?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                msg = msg.get(n..).ok_or(MalformedProto)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut msg)?).map_err(|_| MalformedProto)?;
                let value = msg.get(..len).ok_or(MalformedProto)?;
                msg = &msg[len..];
                if num == field {
                    found = Some(String::from_utf8(value.to_vec()).map_err(|_| MalformedProto)?);
                }
            }
            _ => return Err(MalformedProto),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_data_boundaries() {
        let mut all = Vec::new();
        all.extend_from_slice(&frame(b"hello"));
        all.extend_from_slice(&frame(b""));
        all.extend_from_slice(&frame(&[7u8; 300]));
        let mut d = FrameDecoder::new(1000);
        let mut got = Vec::new();
        for chunk in all.chunks(3) {
            d.push(chunk);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        d.finish().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref(), b"hello");
        assert!(got[1].is_empty());
        assert_eq!(got[2].len(), 300);
    }

    #[test]
    fn frame_errors() {
        let mut d = FrameDecoder::new(10);
        d.push(&[1, 0, 0, 0, 1, 9]);
        assert_eq!(d.next_message(), Err(FrameError::Compressed));
        let mut d = FrameDecoder::new(10);
        d.push(&[0, 0, 0, 0, 11]);
        assert!(matches!(
            d.next_message(),
            Err(FrameError::TooLarge { len: 11, .. })
        ));
        let mut d = FrameDecoder::new(10);
        d.push(&[0, 0, 0]);
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated));
    }

    #[test]
    fn timeouts_parse_and_encode() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "m", "100", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(30),
            Duration::from_nanos(7),
            Duration::from_secs(86_400 * 30),
        ] {
            let e = encode_timeout(d);
            let back = parse_timeout(&e).unwrap();
            assert!(
                back <= d && d - back < d / 1000 + Duration::from_nanos(1),
                "{d:?} {e}"
            );
        }
    }

    #[test]
    fn status_messages_are_percent_encoded() {
        let m = "Name cannot be empty: 100% ünïcode\n";
        let e = encode_message(m);
        assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(decode_message(e.as_bytes()), m);
        assert_eq!(decode_message(b"50%"), "50%");
        assert_eq!(decode_message(b"%zz%4"), "%zz%4");
    }

    #[test]
    fn methods_and_content_types() {
        assert_eq!(
            parse_method("/hello.v1.Greeter/SayHello"),
            Some(("hello.v1.Greeter", "SayHello"))
        );
        for bad in ["", "/", "//x", "/a/", "a/b", "/a/b/c", "/a b/c"] {
            assert_eq!(parse_method(bad), None, "{bad:?}");
        }
        for ok in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC",
        ] {
            assert!(is_grpc_content_type(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "application/grpc-web",
            "application/json",
            "application/grp",
        ] {
            assert!(
                !is_grpc_content_type(&HeaderValue::from_static(bad)),
                "{bad}"
            );
        }
    }

    #[test]
    fn metadata_round_trips_through_nats_headers() {
        let mut h = HeaderMap::new();
        h.append("x-user", "alice".parse().unwrap());
        h.append("x-user", "bob".parse().unwrap());
        h.insert("trace-bin", "AAEC".parse().unwrap());
        h.insert("content-type", "application/grpc".parse().unwrap());
        h.insert("grpc-timeout", "1S".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        let mut n = async_nats::HeaderMap::new();
        metadata_to_nats(&h, METADATA_PREFIX, &mut n);
        assert_eq!(n.len(), 2, "transport headers are not metadata");
        assert_eq!(n.get("Grpc-Metadata-trace-bin").unwrap().as_str(), "AAEC");
        let back = metadata_from_nats(Some(&n), METADATA_PREFIX);
        let users: Vec<_> = back.get_all("x-user").iter().collect();
        assert_eq!(users, ["alice", "bob"]);
        assert_eq!(back["trace-bin"], "AAEC");
        assert!(metadata_from_nats(Some(&n), TRAILER_PREFIX).is_empty());
    }

    /// Past the wire limits, metadata is refused (consumer) or cut
    /// (gateway), never a panic of `http::HeaderMap` (past 24,576 names).
    #[test]
    fn metadata_is_bounded() {
        let mut n = async_nats::HeaderMap::new();
        for i in 0..30_000 {
            n.insert(format!("{METADATA_PREFIX}x-{i}").as_str(), "v");
        }
        let e = try_metadata_from_nats(Some(&n), METADATA_PREFIX).unwrap_err();
        assert!(e.is_fields_too_large(), "{e}");
        let cut = metadata_from_nats(Some(&n), METADATA_PREFIX);
        assert_eq!(cut.len(), super::super::MAX_FIELD_LINES);
    }

    #[test]
    fn stream_headers() {
        let mut n = async_nats::HeaderMap::new();
        assert_eq!(stream_window(Some(&n)), None);
        n.insert(STREAM_WINDOW_HEADER, "100000");
        n.insert(STREAM_SEQ_HEADER, "3");
        n.insert(STREAM_END_HEADER, "1");
        assert_eq!(stream_window(Some(&n)), Some(MAX_STREAM_WINDOW));
        assert_eq!(stream_seq(Some(&n)), Some(3));
        assert!(is_stream_end(Some(&n)));
        assert!(!is_stream_end(None));
    }

    #[test]
    fn reads_a_string_field() {
        // field 1 = "hello.v1.Greeter", plus an unknown varint field 2
        let mut m = vec![0x0a, 16];
        m.extend_from_slice(b"hello.v1.Greeter");
        m.extend_from_slice(&[0x10, 0x96, 0x01]);
        assert_eq!(
            proto_string_field(&m, 1),
            Ok(Some("hello.v1.Greeter".into()))
        );
        assert_eq!(proto_string_field(&[], 1), Ok(None));
        assert!(proto_string_field(&[0x0a, 5, b'a'], 1).is_err());
    }

    #[test]
    fn code_names_match_grpc_go() {
        assert_eq!(code_name(code::OK), "OK");
        assert_eq!(code_name(code::CANCELLED), "Canceled");
        assert_eq!(code_name(code::DEADLINE_EXCEEDED), "DeadlineExceeded");
        assert_eq!(code_name(99), "Unknown");
    }
}
