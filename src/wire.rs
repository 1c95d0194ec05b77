//! The wire contract between gateways and consumers. Nothing else in narun
//! knows these bytes.
//!
//! # HTTP over NATS
//!
//! A gateway sends a NATS request to the subject named by the route's
//! `service` (no prefix). The payload is an RFC 9292 binary HTTP (BHTTP)
//! request. The Go gateway also sets the NATS header `Content-Type:
//! application/bhttp`, which every consumer ignores; the narun gateway sends
//! HTTP requests without NATS headers (a message with headers costs the
//! server and every consumer a header parse per request).
//! The consumer answers on the reply inbox with a BHTTP response, or with an
//! empty payload and the NATS Micro error headers [`NATS_SERVICE_ERROR_CODE`]
//! and [`NATS_SERVICE_ERROR`].
//!
//! This matches the Go narun byte for byte where the Go decoder cares:
//! lowercase field names, a `content-length` field line for known-length
//! requests with a body (and for POST/PUT/PATCH with an empty one), the
//! client's `Host` as authority, the path with its query, status 200..=599,
//! and the Go decoder's size limits ([`MAX_METHOD_LEN`], ...). narun encodes
//! known-length messages; it decodes all four framings, any chunking,
//! truncated trailers and zero padding.
//!
//! narun also bounds the field lines of one message ([`MAX_FIELD_LINES`],
//! [`MAX_FIELD_SECTION_LEN`]), encoding and decoding: a consumer answers a
//! request beyond them with the Micro error 431 (Request Header Fields Too
//! Large), and a gateway treats such a response as undecodable.
//!
//! # Consumers registered with NATS Micro v1
//!
//! Service name = subject = route `service`; endpoint [`HTTP_ENDPOINT`] (or
//! [`GRPC_ENDPOINT`]) in queue group [`QUEUE_GROUP`].
//!
//! # Deadlines (narun only)
//!
//! The narun gateway tells the consumer the time, in whole milliseconds, it
//! will still wait for the reply when it sends the request: in an HTTP
//! request as the BHTTP field line [`TIMEOUT_FIELD`] `narun-timeout-ms: <n>`
//! (replacing any the client sent), in a gRPC request as the NATS header
//! [`TIMEOUT_HEADER`] `Narun-Timeout-Ms: <n>` (earlier narun gateways sent
//! the header on HTTP requests too). A consumer stops working on the request
//! once that time has passed since it received it, and takes the field line
//! out before the handler sees the request ([`take_request_timeout`]). Go
//! consumers ignore the header; they hand the field line to the handler as
//! the header `Narun-Timeout-Ms`.
//!
//! # gRPC over NATS
//!
//! See [`grpc`]: unary calls as in the Go narun, plus server streaming.

pub mod grpc;
mod known;

use std::io::{Cursor, Read};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// Carried by every binary that links `narun::consumer`, which sends
/// systemd `READY=1` once its endpoint is subscribed: the node agent looks
/// for it to give the app's units `Type=notify`.
pub const SD_NOTIFY_MARKER: &[u8] = b"narun-consumer:sd_notify-ready:v1";

/// NATS header the Go gateway sets on every BHTTP request (consumers ignore
/// it; the narun gateway does not send it).
pub const CONTENT_TYPE_HEADER: &str = "Content-Type";
/// Value of [`CONTENT_TYPE_HEADER`].
pub const CONTENT_TYPE_BHTTP: &str = "application/bhttp";
/// NATS Micro error description header (exact spelling; NATS headers are case sensitive).
pub const NATS_SERVICE_ERROR: &str = "Nats-Service-Error";
/// NATS Micro error code header.
pub const NATS_SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
/// NATS header carrying the gRPC method on gRPC requests (exact spelling).
pub const GRPC_METHOD_HEADER: &str = "X-Original-Grpc-Method";
/// Micro endpoint name of HTTP consumers.
pub const HTTP_ENDPOINT: &str = "handler";
/// Micro endpoint name of gRPC consumers.
pub const GRPC_ENDPOINT: &str = "grpc_handler";
/// Queue group every consumer endpoint joins, so NATS load-balances between replicas.
pub const QUEUE_GROUP: &str = "q";
/// NATS header with the time the gateway still waits, in milliseconds
/// (gRPC requests; HTTP requests from earlier narun gateways).
pub const TIMEOUT_HEADER: &str = "Narun-Timeout-Ms";
/// BHTTP field line with the time the gateway still waits, in milliseconds
/// (HTTP requests).
pub const TIMEOUT_FIELD: &str = "narun-timeout-ms";

/// Go decoder limit on the method (bytes).
pub const MAX_METHOD_LEN: usize = 64;
/// Go decoder limit on the scheme (bytes).
pub const MAX_SCHEME_LEN: usize = 64;
/// Go decoder limit on the authority (bytes).
pub const MAX_AUTHORITY_LEN: usize = 256;
/// Go decoder limit on the path with query (bytes).
pub const MAX_PATH_LEN: usize = 4096;
/// Go decoder limit on one field line, name plus value (bytes).
pub const MAX_FIELD_LINE_LEN: usize = 16 * 1024;
/// Most field lines one message may carry, header and trailer sections
/// together (narun limit; Node.js's `maxHeadersCount`). Go sets none, but
/// `http::HeaderMap` panics past 24,576 distinct names: a decoder must stop
/// well before. Clients send tens; hyper's HTTP/1 server takes at most 100.
pub const MAX_FIELD_LINES: usize = 2000;
/// Most bytes of field names and values one message may carry, header and
/// trailer sections together (narun limit; Go's `http.DefaultMaxHeaderBytes`).
pub const MAX_FIELD_SECTION_LEN: usize = 1024 * 1024;

/// Why a BHTTP message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed BHTTP: {0}")]
    Bhttp(#[from] bhttp::Error),
    #[error("expected a BHTTP {expected}, got a {got}")]
    WrongKind {
        expected: &'static str,
        got: &'static str,
    },
    #[error("{field} is {len} bytes, the limit is {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("more than {max} field lines")]
    TooManyFields { max: usize },
    #[error("field names and values exceed {max} bytes")]
    FieldsTooLarge { max: usize },
    #[error("invalid method {0:?}")]
    Method(String),
    #[error("invalid path {0:?}: must start with '/'")]
    Path(String),
    #[error("invalid authority {0:?}")]
    Authority(String),
    #[error("invalid header field {0:?}")]
    Header(String),
    #[error("pseudo-header {0:?} is not allowed in a field section")]
    PseudoHeader(String),
    #[error("status {0} is outside 200..=599")]
    Status(u16),
    #[error("non-zero byte in padding")]
    Padding,
}

/// Header fields a proxy never forwards (hop-by-hop, or re-expressed in the
/// BHTTP framing itself).
impl WireError {
    /// The message's field lines are too many or too large: for a request,
    /// HTTP's 431 (Request Header Fields Too Large).
    pub fn is_fields_too_large(&self) -> bool {
        matches!(
            self,
            WireError::TooManyFields { .. }
                | WireError::FieldsTooLarge { .. }
                | WireError::TooLong {
                    field: "field line",
                    ..
                }
        )
    }
}

/// Counts the field lines of one message against [`MAX_FIELD_LINES`] and
/// [`MAX_FIELD_SECTION_LEN`].
#[derive(Default)]
struct FieldBudget {
    lines: usize,
    bytes: usize,
}

impl FieldBudget {
    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), WireError> {
        self.lines += 1;
        if self.lines > MAX_FIELD_LINES {
            return Err(WireError::TooManyFields {
                max: MAX_FIELD_LINES,
            });
        }
        self.bytes += name.len() + value.len();
        if self.bytes > MAX_FIELD_SECTION_LEN {
            return Err(WireError::FieldsTooLarge {
                max: MAX_FIELD_SECTION_LEN,
            });
        }
        Ok(())
    }
}

fn is_excluded_request_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "trailer"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "upgrade"
    )
}

fn is_excluded_response_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length" | "transfer-encoding" | "trailer" | "connection" | "keep-alive"
    )
}

fn check_len(field: &'static str, value: &[u8], max: usize) -> Result<(), WireError> {
    if value.len() > max {
        return Err(WireError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Check the field lines of one message and sort them by name (stably:
/// repeated names keep their order; names are lowercase, as
/// `http::HeaderName` guarantees); returns the length of their known-length
/// field section.
fn check_fields(fields: &mut [(&str, &[u8])]) -> Result<usize, WireError> {
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut budget = FieldBudget::default();
    let mut len = 0;
    for (name, value) in fields.iter() {
        check_len(
            "field line",
            value,
            MAX_FIELD_LINE_LEN.saturating_sub(name.len()),
        )?;
        budget.take(name.as_bytes(), value)?;
        len += known::vec_len(name.as_bytes()) + known::vec_len(value);
    }
    Ok(len)
}

/// Write the field section [`check_fields`] sorted and measured (`len`).
fn put_fields(out: &mut Vec<u8>, fields: &[(&str, &[u8])], len: usize) {
    known::put_varint(out, len);
    for (name, value) in fields {
        known::put_vec(out, name.as_bytes());
        known::put_vec(out, value);
    }
}

/// The field lines of one message, on the stack for the common message.
type FieldLines<'a> = smallvec::SmallVec<[(&'a str, &'a [u8]); 16]>;

/// Encode a client request as a known-length BHTTP request, the way the Go
/// gateway does. `authority` is the client's `Host`; `path` includes the query.
pub fn encode_request(
    method: &Method,
    authority: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<u8>, WireError> {
    encode_request_with(method, authority, path, headers, &[], body)
}

/// [`encode_request`] with field lines the caller sets (`set`: lowercase
/// names), each replacing the client's lines of that name: how the gateway
/// adds `x-request-id`, `traceparent` and `x-forwarded-*` without copying
/// the client's headers.
pub fn encode_request_with(
    method: &Method,
    authority: &str,
    path: &str,
    headers: &HeaderMap,
    set: &[(&str, &[u8])],
    body: &[u8],
) -> Result<Vec<u8>, WireError> {
    check_len("method", method.as_str().as_bytes(), MAX_METHOD_LEN)?;
    check_len("authority", authority.as_bytes(), MAX_AUTHORITY_LEN)?;
    check_len("path", path.as_bytes(), MAX_PATH_LEN)?;
    if !path.starts_with('/') {
        return Err(WireError::Path(path.to_owned()));
    }
    let mut length = itoa::Buffer::new();
    let mut fields = FieldLines::new();
    for (name, value) in headers {
        if !is_excluded_request_header(name) && !set.iter().any(|(n, _)| *n == name.as_str()) {
            fields.push((name.as_str(), value.as_bytes()));
        }
    }
    fields.extend_from_slice(set);
    if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        fields.push(("content-length", length.format(body.len()).as_bytes()));
    }
    let fields_len = check_fields(&mut fields)?;
    let (method, authority, path) = (
        method.as_str().as_bytes(),
        authority.as_bytes(),
        path.as_bytes(),
    );
    // Sized exactly: one allocation, and a `Bytes` made of it takes it as is.
    let size = 1
        + known::vec_len(method)
        + known::vec_len(b"")
        + known::vec_len(authority)
        + known::vec_len(path)
        + known::varint_len(fields_len)
        + fields_len
        + known::vec_len(body)
        + 1;
    let mut out = Vec::with_capacity(size);
    known::put_varint(&mut out, 0); // known-length request
    known::put_vec(&mut out, method);
    known::put_vec(&mut out, b""); // scheme, as the Go gateway sends it
    known::put_vec(&mut out, authority);
    known::put_vec(&mut out, path);
    put_fields(&mut out, &fields, fields_len);
    known::put_vec(&mut out, body);
    known::put_varint(&mut out, 0); // no trailers
    debug_assert_eq!(out.len(), size);
    Ok(out)
}

/// Encode a handler's response as a known-length BHTTP response.
pub fn encode_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<u8>, WireError> {
    let code = status.as_u16();
    if !(200..=599).contains(&code) {
        return Err(WireError::Status(code));
    }
    let mut length = itoa::Buffer::new();
    let mut fields = FieldLines::new();
    for (name, value) in headers {
        if !is_excluded_response_header(name) {
            fields.push((name.as_str(), value.as_bytes()));
        }
    }
    fields.push(("content-length", length.format(body.len()).as_bytes()));
    let fields_len = check_fields(&mut fields)?;
    // Sized exactly: one allocation, and a `Bytes` made of it takes it as is.
    let size = 1
        + known::varint_len(usize::from(code))
        + known::varint_len(fields_len)
        + fields_len
        + known::vec_len(body)
        + 1;
    let mut out = Vec::with_capacity(size);
    known::put_varint(&mut out, 1); // known-length response
    known::put_varint(&mut out, usize::from(code));
    put_fields(&mut out, &fields, fields_len);
    known::put_vec(&mut out, body);
    known::put_varint(&mut out, 0); // no trailers
    debug_assert_eq!(out.len(), size);
    Ok(out)
}

/// Read one BHTTP message and check the padding after it.
fn read_message(bytes: &[u8]) -> Result<bhttp::Message, WireError> {
    let mut cursor = Cursor::new(bytes);
    let msg = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut cursor)?;
    let mut rest = Vec::new();
    cursor.read_to_end(&mut rest).map_err(bhttp::Error::from)?;
    if rest.iter().any(|b| *b != 0) {
        return Err(WireError::Padding);
    }
    Ok(msg)
}

/// Add one decoded field line to `into`, enforcing the Go decoder's rules
/// (line length, pseudo-headers) and the message's [`FieldBudget`].
/// `value` makes the header value from the checked bytes (a copy, or a
/// slice of the shared input).
fn decode_field(
    raw_name: &[u8],
    raw_value: &[u8],
    value: impl FnOnce() -> Result<HeaderValue, http::header::InvalidHeaderValue>,
    budget: &mut FieldBudget,
    into: &mut HeaderMap,
) -> Result<(), WireError> {
    check_len(
        "field line",
        raw_value,
        MAX_FIELD_LINE_LEN.saturating_sub(raw_name.len()),
    )?;
    budget.take(raw_name, raw_value)?;
    if let Some(pseudo) = raw_name.strip_prefix(b":") {
        if matches!(
            pseudo,
            b"method" | b"scheme" | b"authority" | b"path" | b"status"
        ) {
            return Err(WireError::PseudoHeader(
                String::from_utf8_lossy(raw_name).into_owned(),
            ));
        }
        return Ok(()); // other pseudo-headers are dropped, as in Go
    }
    let name = HeaderName::from_bytes(raw_name)
        .map_err(|_| WireError::Header(String::from_utf8_lossy(raw_name).into_owned()))?;
    let value = value().map_err(|_| WireError::Header(name.to_string()))?;
    // Within the budget this cannot fail; `append` would panic.
    into.try_append(name, value)
        .map_err(|_| WireError::TooManyFields {
            max: MAX_FIELD_LINES,
        })?;
    Ok(())
}

/// The field lines of one message, decoded into a `HeaderMap`.
struct Fields {
    map: HeaderMap,
    budget: FieldBudget,
}

impl Fields {
    fn with_capacity(lines: usize) -> Self {
        Fields {
            map: HeaderMap::with_capacity(lines.min(64)),
            budget: FieldBudget::default(),
        }
    }

    /// A field section read by the bhttp crate (values copied).
    fn crate_section(&mut self, section: &bhttp::FieldSection) -> Result<(), WireError> {
        for field in section.iter() {
            let v = field.value();
            decode_field(
                field.name(),
                v,
                || HeaderValue::from_bytes(v),
                &mut self.budget,
                &mut self.map,
            )?;
        }
        Ok(())
    }

    /// A field section read by [`known::read`] (values share `bytes`).
    fn known_section(
        &mut self,
        bytes: &Bytes,
        lines: &[(std::ops::Range<usize>, std::ops::Range<usize>)],
    ) -> Result<(), WireError> {
        for (name, value) in lines {
            decode_field(
                &bytes[name.clone()],
                &bytes[value.clone()],
                || HeaderValue::from_maybe_shared(bytes.slice(value.clone())),
                &mut self.budget,
                &mut self.map,
            )?;
        }
        Ok(())
    }
}

/// Decode a BHTTP request (any framing) into an `http::Request`.
///
/// The URI is the origin-form path and query; the authority is exposed as
/// the `Host` header (as a server sees an HTTP/1.1 request), unless the
/// message carried its own `host` field line, which must then agree.
pub fn decode_request(bytes: &[u8]) -> Result<http::Request<Bytes>, WireError> {
    decode_request_shared(Bytes::copy_from_slice(bytes))
}

/// [`decode_request`] of a shared buffer (a NATS payload): the body, path
/// and header values of a known-length request are slices of it, not
/// copies.
pub fn decode_request_shared(bytes: Bytes) -> Result<http::Request<Bytes>, WireError> {
    decode_request_from(bytes, true)
}

/// [`decode_request`] by the bhttp crate alone, for tests comparing it with
/// the direct reader.
#[doc(hidden)]
pub fn decode_request_by_crate(bytes: &[u8]) -> Result<http::Request<Bytes>, WireError> {
    decode_request_from(Bytes::copy_from_slice(bytes), false)
}

fn decode_request_from(bytes: Bytes, direct: bool) -> Result<http::Request<Bytes>, WireError> {
    let (method, authority, path, fields, body) =
        match direct.then(|| known::read(&bytes)).flatten() {
            Some(known::Known {
                control:
                    known::Control::Request {
                        method,
                        authority,
                        path,
                    },
                header,
                content,
                ..
            }) => {
                let mut fields = Fields::with_capacity(header.len() + 1);
                fields.known_section(&bytes, &header)?;
                (
                    bytes.slice(method),
                    bytes.slice(authority),
                    bytes.slice(path),
                    fields,
                    bytes.slice(content),
                )
            }
            Some(_) => {
                return Err(WireError::WrongKind {
                    expected: "request",
                    got: "response",
                })
            }
            None => {
                let msg = read_message(&bytes)?;
                let bhttp::ControlData::Request {
                    method,
                    authority,
                    path,
                    ..
                } = msg.control()
                else {
                    return Err(WireError::WrongKind {
                        expected: "request",
                        got: "response",
                    });
                };
                let mut fields = Fields::with_capacity(msg.header().len() + 1);
                fields.crate_section(msg.header())?;
                (
                    Bytes::copy_from_slice(method),
                    Bytes::copy_from_slice(authority),
                    Bytes::copy_from_slice(path),
                    fields,
                    Bytes::copy_from_slice(msg.content()),
                )
            }
        };
    check_len("method", &method, MAX_METHOD_LEN)?;
    check_len("authority", &authority, MAX_AUTHORITY_LEN)?;
    check_len("path", &path, MAX_PATH_LEN)?;
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let method = Method::from_bytes(&method).map_err(|_| WireError::Method(lossy(&method)))?;
    if !path.starts_with(b"/") {
        return Err(WireError::Path(lossy(&path)));
    }
    let uri =
        http::Uri::from_maybe_shared(path.clone()).map_err(|_| WireError::Path(lossy(&path)))?;
    let mut headers = fields.map;
    if !authority.is_empty() {
        let host = HeaderValue::from_maybe_shared(authority.clone())
            .map_err(|_| WireError::Authority(lossy(&authority)))?;
        match headers.get(http::header::HOST) {
            Some(existing) if existing != host => {
                return Err(WireError::Authority(lossy(&authority)))
            }
            Some(_) => {}
            None => {
                headers.insert(http::header::HOST, host);
            }
        }
    }
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Decode a BHTTP response (any framing) into an `http::Response`. Trailers,
/// if any, are merged into the headers (HTTP/1.1 clients of the gateway
/// cannot receive them otherwise).
pub fn decode_response(bytes: &[u8]) -> Result<http::Response<Bytes>, WireError> {
    decode_response_shared(Bytes::copy_from_slice(bytes))
}

/// [`decode_response`] of a shared buffer (a NATS payload): the body and
/// header values of a known-length response are slices of it, not copies.
pub fn decode_response_shared(bytes: Bytes) -> Result<http::Response<Bytes>, WireError> {
    decode_response_from(bytes, true)
}

/// [`decode_response`] by the bhttp crate alone, for tests comparing it with
/// the direct reader.
#[doc(hidden)]
pub fn decode_response_by_crate(bytes: &[u8]) -> Result<http::Response<Bytes>, WireError> {
    decode_response_from(Bytes::copy_from_slice(bytes), false)
}

fn decode_response_from(bytes: Bytes, direct: bool) -> Result<http::Response<Bytes>, WireError> {
    let (code, fields, body) = match direct.then(|| known::read(&bytes)).flatten() {
        Some(known::Known {
            control: known::Control::Response(code),
            header,
            content,
            trailer,
        }) => {
            let mut fields = Fields::with_capacity(header.len() + trailer.len());
            fields.known_section(&bytes, &header)?;
            fields.known_section(&bytes, &trailer)?;
            (code, fields, bytes.slice(content))
        }
        Some(_) => {
            return Err(WireError::WrongKind {
                expected: "response",
                got: "request",
            })
        }
        None => {
            let msg = read_message(&bytes)?;
            let bhttp::ControlData::Response(status) = msg.control() else {
                return Err(WireError::WrongKind {
                    expected: "response",
                    got: "request",
                });
            };
            let code = status.code();
            if !(200..=599).contains(&code) {
                return Err(WireError::Status(code));
            }
            let mut fields = Fields::with_capacity(msg.header().len() + msg.trailer().len());
            fields.crate_section(msg.header())?;
            fields.crate_section(msg.trailer())?;
            (code, fields, Bytes::copy_from_slice(msg.content()))
        }
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = StatusCode::from_u16(code).map_err(|_| WireError::Status(code))?;
    *response.headers_mut() = fields.map;
    Ok(response)
}

/// A NATS Micro error reply, as read from the reply's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// `Nats-Service-Error-Code` as sent (HTTP status or gRPC code number).
    pub code: u32,
    /// `Nats-Service-Error`, the consumer's message.
    pub message: String,
}

/// Extract a Micro error from reply headers, if the reply is one.
pub fn service_error(headers: Option<&async_nats::HeaderMap>) -> Option<ServiceError> {
    let headers = headers?;
    let code = headers.get(NATS_SERVICE_ERROR_CODE)?;
    let code = code.as_str().trim().parse().unwrap_or(500);
    let message = headers
        .get(NATS_SERVICE_ERROR)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    Some(ServiceError { code, message })
}

/// The time left to answer a request, from its [`TIMEOUT_HEADER`].
pub fn request_timeout(headers: Option<&async_nats::HeaderMap>) -> Option<std::time::Duration> {
    let ms: u64 = headers?.get(TIMEOUT_HEADER)?.as_str().trim().parse().ok()?;
    Some(std::time::Duration::from_millis(ms))
}

/// The time left to answer an HTTP request: its NATS [`TIMEOUT_HEADER`]
/// (an older narun gateway's, which passes the client's field lines on
/// unchanged) or else its [`TIMEOUT_FIELD`]. Every [`TIMEOUT_FIELD`] line is
/// removed from `fields`: the handler sees the request as the client sent it.
pub fn take_request_timeout(
    nats_headers: Option<&async_nats::HeaderMap>,
    fields: &mut HeaderMap,
) -> Option<std::time::Duration> {
    const NAME: HeaderName = HeaderName::from_static(TIMEOUT_FIELD);
    let field = fields.remove(NAME);
    request_timeout(nats_headers).or_else(|| {
        let ms: u64 = field?.to_str().ok()?.trim().parse().ok()?;
        Some(std::time::Duration::from_millis(ms))
    })
}

/// A [`TIMEOUT_HEADER`] value for `left` (whole milliseconds, at least 1).
pub fn timeout_value(left: std::time::Duration) -> String {
    timeout_ms(left).to_string()
}

/// `left` in whole milliseconds, at least 1: the value of [`TIMEOUT_HEADER`]
/// and [`TIMEOUT_FIELD`].
pub fn timeout_ms(left: std::time::Duration) -> u64 {
    u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `text` made safe for a NATS header value (NATS headers cannot hold line
/// breaks: each becomes a space).
pub fn header_safe(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_header_round_trip_and_safe_values() {
        let mut h = async_nats::HeaderMap::new();
        assert_eq!(request_timeout(Some(&h)), None);
        h.insert(
            TIMEOUT_HEADER,
            timeout_value(std::time::Duration::from_micros(1500)).as_str(),
        );
        assert_eq!(
            request_timeout(Some(&h)),
            Some(std::time::Duration::from_millis(1))
        );
        assert_eq!(timeout_value(std::time::Duration::ZERO), "1");
        assert_eq!(header_safe("a\r\nb"), "a  b");
    }

    #[test]
    fn the_timeout_field_is_read_and_taken_out() {
        let ms = std::time::Duration::from_millis;
        let fields = |lines: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in lines {
                h.append(*n, HeaderValue::from_static(v));
            }
            h
        };
        // The gateway's field line, next to the client's own headers.
        let mut f = fields(&[(TIMEOUT_FIELD, "250"), ("accept", "*/*")]);
        assert_eq!(take_request_timeout(None, &mut f), Some(ms(250)));
        assert!(f.get(TIMEOUT_FIELD).is_none());
        assert_eq!(f["accept"], "*/*");
        // An older gateway's NATS header wins over a field the client sent
        // through it; the field is taken out all the same.
        let mut nats = async_nats::HeaderMap::new();
        nats.insert(TIMEOUT_HEADER, "90");
        let mut f = fields(&[(TIMEOUT_FIELD, "1"), (TIMEOUT_FIELD, "2")]);
        assert_eq!(take_request_timeout(Some(&nats), &mut f), Some(ms(90)));
        assert!(f.is_empty());
        // Neither, or nonsense: no deadline, and nonsense is not passed on.
        assert_eq!(take_request_timeout(None, &mut HeaderMap::new()), None);
        let mut f = fields(&[(TIMEOUT_FIELD, "soon")]);
        assert_eq!(take_request_timeout(None, &mut f), None);
        assert!(f.is_empty());
        assert_eq!(timeout_ms(std::time::Duration::from_micros(10)), 1);
        assert_eq!(timeout_ms(ms(1500)), 1500);
    }

    /// §4.2.5: the request the Go gateway produced for
    /// `curl -X POST -H 'Content-Type: application/json' -d '{"name":"NATS User"}' http://localhost:8080/hello/`.
    pub(crate) const GO_REQUEST: &str = "\
        00 04 50 4f 53 54 00 0e 6c 6f 63 61 6c 68 6f 73 74 3a 38 30 38 30 07 2f 68 65 6c 6c 6f 2f 40 51 \
        06 61 63 63 65 70 74 03 2a 2f 2a 0e 63 6f 6e 74 65 6e 74 2d 6c 65 6e 67 74 68 02 32 30 0c 63 6f \
        6e 74 65 6e 74 2d 74 79 70 65 10 61 70 70 6c 69 63 61 74 69 6f 6e 2f 6a 73 6f 6e 0a 75 73 65 72 \
        2d 61 67 65 6e 74 0a 63 75 72 6c 2f 38 2e 35 2e 30 14 7b 22 6e 61 6d 65 22 3a 22 4e 41 54 53 20 \
        55 73 65 72 22 7d 00";

    /// §4.2.5: the Go consumer's empty-body 204.
    const GO_EMPTY_204: &str =
        "01 40 cc 11 0e 63 6f 6e 74 65 6e 74 2d 6c 65 6e 67 74 68 01 30 00 00";

    const HELLO_BODY: &str = r#"{"consumer_host":"clot","message":"Hello, NATS User! (processed by POST)","received_path":"/hello/"}"#;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// §4.2.5: the Go consumer's indeterminate-length hello response: a first
    /// chunk of one byte, then the rest, then the terminators.
    fn go_hello_response() -> Vec<u8> {
        let body = format!("{HELLO_BODY}\n");
        assert_eq!(body.len(), 101);
        let mut v = hex("03 40 c8 0c");
        v.extend_from_slice(b"content-type");
        v.push(0x10);
        v.extend_from_slice(b"application/json");
        v.push(0x14);
        v.extend_from_slice(b"x-narun-processed-by");
        v.push(0x04);
        v.extend_from_slice(b"clot");
        v.push(0x00);
        v.extend_from_slice(&[0x01, b'{', 0x40, 0x64]);
        v.extend_from_slice(&body.as_bytes()[1..]);
        v.extend_from_slice(&[0x00, 0x00]);
        v
    }

    #[test]
    fn go_response_vector_layout_matches_reference() {
        let v = go_hello_response();
        assert_eq!(v.len(), 166);
        assert_eq!(&v[0x3c..0x40], &[0x01, 0x7b, 0x40, 0x64]);
    }

    #[test]
    fn decodes_go_request_vector() {
        let bytes = hex(GO_REQUEST);
        assert_eq!(bytes.len(), 135);
        let req = decode_request(&bytes).unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "/hello/");
        assert_eq!(req.headers()["host"], "localhost:8080");
        assert_eq!(req.headers()["accept"], "*/*");
        assert_eq!(req.headers()["content-length"], "20");
        assert_eq!(req.headers()["content-type"], "application/json");
        assert_eq!(req.headers()["user-agent"], "curl/8.5.0");
        assert_eq!(req.body().as_ref(), br#"{"name":"NATS User"}"#);
    }

    #[test]
    fn encodes_go_request_vector_byte_for_byte() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "localhost:8080".parse().unwrap());
        headers.insert("user-agent", "curl/8.5.0".parse().unwrap());
        headers.insert("accept", "*/*".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("content-length", "20".parse().unwrap());
        let bytes = encode_request(
            &Method::POST,
            "localhost:8080",
            "/hello/",
            &headers,
            br#"{"name":"NATS User"}"#,
        )
        .unwrap();
        assert_eq!(bytes, hex(GO_REQUEST));
    }

    #[test]
    fn decodes_go_indeterminate_response_vector() {
        let resp = decode_response(&go_hello_response()).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["x-narun-processed-by"], "clot");
        assert_eq!(resp.body().as_ref(), format!("{HELLO_BODY}\n").as_bytes());
    }

    #[test]
    fn decodes_go_empty_204_vector_and_encodes_it_identically() {
        let bytes = hex(GO_EMPTY_204);
        let resp = decode_response(&bytes).unwrap();
        assert_eq!(resp.status(), 204);
        assert_eq!(resp.headers()["content-length"], "0");
        assert!(resp.body().is_empty());
        let again = encode_response(StatusCode::NO_CONTENT, &HeaderMap::new(), b"").unwrap();
        assert_eq!(again, bytes);
    }

    #[test]
    fn response_round_trip_keeps_status_headers_body() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.append("set-cookie", "a=1".parse().unwrap());
        headers.append("set-cookie", "b=2".parse().unwrap());
        let bytes = encode_response(StatusCode::CREATED, &headers, b"{}").unwrap();
        let back = decode_response(&bytes).unwrap();
        assert_eq!(back.status(), 201);
        let cookies: Vec<_> = back.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(back.headers()["content-length"], "2");
        assert_eq!(back.body().as_ref(), b"{}");
    }

    #[test]
    fn request_round_trip_with_query_and_no_body() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "abc".parse().unwrap());
        headers.insert("connection", "keep-alive".parse().unwrap());
        let bytes = encode_request(&Method::GET, "example.com", "/a/b?x=1", &headers, b"").unwrap();
        let req = decode_request(&bytes).unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/a/b");
        assert_eq!(req.uri().query(), Some("x=1"));
        assert_eq!(req.headers()["host"], "example.com");
        assert_eq!(req.headers()["x-request-id"], "abc");
        assert!(req.headers().get("connection").is_none(), "hop-by-hop");
        assert!(
            req.headers().get("content-length").is_none(),
            "GET without body"
        );
    }

    #[test]
    fn empty_post_carries_content_length_zero() {
        let bytes = encode_request(&Method::POST, "h", "/", &HeaderMap::new(), b"").unwrap();
        let req = decode_request(&bytes).unwrap();
        assert_eq!(req.headers()["content-length"], "0");
    }

    /// An indeterminate-length request (a chunked upload) in several chunks.
    #[test]
    fn decodes_indeterminate_request() {
        let mut v = hex("02 03");
        v.extend_from_slice(b"PUT");
        v.push(0);
        v.push(1);
        v.push(b'h');
        v.push(2);
        v.extend_from_slice(b"/u");
        v.push(3);
        v.extend_from_slice(b"x-a");
        v.push(1);
        v.push(b'1');
        v.push(0); // header section terminator
        v.extend_from_slice(&[3, b'a', b'b', b'c', 2, b'd', b'e', 0]);
        v.push(0); // trailers terminator
        let req = decode_request(&v).unwrap();
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(req.headers()["x-a"], "1");
        assert_eq!(req.body().as_ref(), b"abcde");
    }

    #[test]
    fn accepts_truncated_trailers_and_zero_padding() {
        let mut bytes = hex(GO_REQUEST);
        bytes.pop(); // no trailer section at all
        assert!(decode_request(&bytes).is_ok());
        let mut padded = hex(GO_REQUEST);
        padded.extend_from_slice(&[0, 0, 0, 0]);
        assert!(decode_request(&padded).is_ok());
    }

    #[test]
    fn rejects_what_the_go_decoder_rejects() {
        let mut bad_padding = hex(GO_REQUEST);
        bad_padding.extend_from_slice(&[0, 7]);
        assert!(matches!(
            decode_request(&bad_padding),
            Err(WireError::Padding)
        ));

        let long_path = format!("/{}", "a".repeat(MAX_PATH_LEN));
        let mut m =
            bhttp::Message::request(b"GET".to_vec(), vec![], b"h".to_vec(), long_path.into());
        let mut v = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut v).unwrap();
        assert!(matches!(
            decode_request(&v),
            Err(WireError::TooLong { field: "path", .. })
        ));

        let long_authority = "a".repeat(MAX_AUTHORITY_LEN + 1);
        m = bhttp::Message::request(
            b"GET".to_vec(),
            vec![],
            long_authority.into(),
            b"/".to_vec(),
        );
        v.clear();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut v).unwrap();
        assert!(matches!(
            decode_request(&v),
            Err(WireError::TooLong {
                field: "authority",
                ..
            })
        ));

        m = bhttp::Message::request(b"GET".to_vec(), vec![], b"h".to_vec(), b"/".to_vec());
        m.put_header(":path", "/x");
        v.clear();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut v).unwrap();
        assert!(matches!(
            decode_request(&v),
            Err(WireError::PseudoHeader(_))
        ));

        m = bhttp::Message::request(b"GET".to_vec(), vec![], b"h".to_vec(), b"/".to_vec());
        m.put_header("x-big", vec![b'a'; MAX_FIELD_LINE_LEN]);
        v.clear();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut v).unwrap();
        assert!(matches!(
            decode_request(&v),
            Err(WireError::TooLong {
                field: "field line",
                ..
            })
        ));

        // status 600 (encoded by hand: the bhttp crate refuses to build it)
        let status_600 = hex("01 42 58 00 00 00");
        assert!(decode_response(&status_600).is_err());
        // a request where a response is expected, and vice versa
        assert!(matches!(
            decode_response(&hex(GO_REQUEST)),
            Err(WireError::WrongKind { .. })
        ));
        assert!(matches!(
            decode_request(&hex(GO_EMPTY_204)),
            Err(WireError::WrongKind { .. })
        ));
    }

    /// A known-length request with `n` distinct field lines `x-<i>: v`.
    fn request_with_fields(n: usize) -> Vec<u8> {
        let mut m = bhttp::Message::request(b"GET".to_vec(), vec![], b"h".to_vec(), b"/".to_vec());
        for i in 0..n {
            m.put_header(format!("x-{i}"), "v");
        }
        let mut v = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut v).unwrap();
        v
    }

    /// `http::HeaderMap` panics past 24,576 distinct names: the decoders
    /// stop at [`MAX_FIELD_LINES`] with an error instead.
    #[test]
    fn field_lines_are_bounded_without_panicking() {
        let req = decode_request(&request_with_fields(MAX_FIELD_LINES)).unwrap();
        assert_eq!(req.headers().len(), MAX_FIELD_LINES + 1, "plus host");
        let e = decode_request(&request_with_fields(MAX_FIELD_LINES + 1)).unwrap_err();
        assert!(matches!(e, WireError::TooManyFields { .. }), "{e}");
        assert!(e.is_fields_too_large());
        let e = decode_request(&request_with_fields(30_000)).unwrap_err();
        assert!(e.is_fields_too_large(), "{e}");

        // A response's header and trailer sections share the budget.
        let mut m = bhttp::Message::response(bhttp::StatusCode::try_from(200u16).unwrap());
        for i in 0..MAX_FIELD_LINES {
            m.put_header(format!("x-{i}"), "v");
        }
        m.put_trailer("x-last", "v");
        let mut v = Vec::new();
        m.write_bhttp(bhttp::Mode::IndeterminateLength, &mut v)
            .unwrap();
        let e = decode_response(&v).unwrap_err();
        assert!(matches!(e, WireError::TooManyFields { .. }), "{e}");

        // Same limit on encoding (content-length is one of the lines).
        let mut headers = HeaderMap::new();
        for i in 0..MAX_FIELD_LINES {
            headers.insert(
                HeaderName::try_from(format!("x-{i}")).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let e = encode_response(StatusCode::OK, &headers, b"").unwrap_err();
        assert!(e.is_fields_too_large(), "{e}");
        let e = encode_request(&Method::GET, "h", "/", &headers, b"x").unwrap_err();
        assert!(e.is_fields_too_large(), "{e}");
        headers.remove("x-0");
        assert!(encode_response(StatusCode::OK, &headers, b"").is_ok());
    }

    #[test]
    fn field_bytes_are_bounded() {
        let line = vec![b'a'; MAX_FIELD_LINE_LEN - 8];
        let n = MAX_FIELD_SECTION_LEN / line.len() + 1;
        let mut m = bhttp::Message::request(b"GET".to_vec(), vec![], b"h".to_vec(), b"/".to_vec());
        for i in 0..n {
            m.put_header(format!("x-{i}"), line.clone());
        }
        let mut v = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut v).unwrap();
        let e = decode_request(&v).unwrap_err();
        assert!(matches!(e, WireError::FieldsTooLarge { .. }), "{e}");
        assert!(e.is_fields_too_large());
        // Other malformations are not "too large".
        assert!(!WireError::Padding.is_fields_too_large());
        assert!(!WireError::TooLong {
            field: "path",
            len: 5000,
            max: MAX_PATH_LEN
        }
        .is_fields_too_large());
    }

    #[test]
    fn refuses_to_encode_out_of_range_status() {
        assert!(matches!(
            encode_response(StatusCode::CONTINUE, &HeaderMap::new(), b""),
            Err(WireError::Status(100))
        ));
    }

    #[test]
    fn service_error_reads_micro_headers() {
        let mut h = async_nats::HeaderMap::new();
        h.insert(NATS_SERVICE_ERROR_CODE, "400");
        h.insert(NATS_SERVICE_ERROR, "Failed to decode BHTTP request");
        assert_eq!(
            service_error(Some(&h)),
            Some(ServiceError {
                code: 400,
                message: "Failed to decode BHTTP request".into()
            })
        );
        assert_eq!(service_error(Some(&async_nats::HeaderMap::new())), None);
        assert_eq!(service_error(None), None);
    }
}
