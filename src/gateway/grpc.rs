//! gRPC ingress: HTTP/2 gRPC calls spoken directly over hyper (no gRPC
//! framework), forwarded to NATS as described in [`crate::wire::grpc`].
//!
//! - every method of a routed service (`grpc: pkg.Service`) goes to the
//!   route's subject; other services get UNIMPLEMENTED;
//! - unary and server-streaming calls; a second request message
//!   (client-streaming, bidi) gets UNIMPLEMENTED;
//! - the deadline is the client's `grpc-timeout` capped by the route
//!   timeout; it bounds the whole call, stream included, and reaches the
//!   consumer as `Narun-Timeout-Ms`; a client that goes away cancels the
//!   wait (and the consumer's stream);
//! - request metadata goes out as `Grpc-Metadata-*` NATS headers, response
//!   metadata and trailers come back the same way;
//! - every failure gets its code from the gateway's one error table
//!   ([`super::rescue`]), never OK;
//! - `grpc.health.v1.Health` (`Check` and `Watch`) is answered here unless
//!   that service is routed: `""` is SERVING while NATS is connected, a
//!   routed service is SERVING while one of its consumers answers
//!   `$SRV.PING.<subject>`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::body::Body;
use super::config::GrpcRoute;
use super::metrics::{Metrics, UNROUTED};
use super::rescue::{grpc as code, rescue, Failure};
use super::shared::{decorate_request, request_id, request_id_header, text, Gateway, PeerIp};
use crate::wire::{self, grpc as g, ServiceError};

/// How long the health check waits for a consumer's `$SRV.PING` answer.
const HEALTH_PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a health `Watch` checks for a change.
const HEALTH_WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// Frames buffered between the NATS stream and the HTTP/2 stream.
const STREAM_BUFFER: usize = 4;

/// Records a call's outcome in the metrics exactly once.
struct Record {
    metrics: Metrics,
    method: String,
    start: Instant,
}

impl Record {
    fn done(self, c: u16) {
        self.metrics
            .grpc(&self.method, c, self.start.elapsed().as_secs_f64());
    }
}

/// Serve one gRPC request.
pub(super) async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    peer: PeerIp,
) -> Response<Body> {
    let start = Instant::now();
    // Not a gRPC request at all: plain HTTP errors, as grpc-go answers.
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "gRPC requires POST");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if !req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(g::is_grpc_content_type)
    {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "gRPC requires content-type application/grpc",
        );
    }
    if req.version() != http::Version::HTTP_2 {
        return text(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "gRPC requires HTTP/2",
        );
    }
    let request_id = request_id(req.headers());
    let path = req.uri().path().to_owned();
    let Some((service, method)) = g::parse_method(&path) else {
        let record = Record {
            metrics: gw.metrics.clone(),
            method: UNROUTED.to_owned(),
            start,
        };
        return fail(Failure::MalformedMethod(path), &request_id, record);
    };
    match gw.grpc_routes.get(service) {
        Some(route) => {
            let record = Record {
                metrics: gw.metrics.clone(),
                method: gw.metrics.grpc_method_label(&path),
                start,
            };
            let route = route.clone();
            forward(&gw, &route, req, peer, request_id, record).await
        }
        None if service == g::HEALTH_SERVICE => {
            let record = Record {
                metrics: gw.metrics.clone(),
                method: gw.metrics.grpc_method_label(&path),
                start,
            };
            let method = method.to_owned();
            health(&gw, &method, req, request_id, record).await
        }
        None => {
            let record = Record {
                metrics: gw.metrics.clone(),
                method: UNROUTED.to_owned(),
                start,
            };
            fail(Failure::NotRouted(service.to_owned()), &request_id, record)
        }
    }
}

/// A trailers-only response for `failure`, from the error table.
fn fail(failure: Failure, request_id: &HeaderValue, record: Record) -> Response<Body> {
    let r = rescue(&failure);
    if matches!(failure, Failure::Compression(_)) {
        let mut resp = status_response(r.grpc, &r.message, HeaderMap::new(), request_id);
        resp.headers_mut()
            .insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
        record.done(r.grpc);
        return resp;
    }
    record.done(r.grpc);
    status_response(r.grpc, &r.message, HeaderMap::new(), request_id)
}

/// The status and message headers (`grpc-message` percent-encoded).
fn put_status(headers: &mut HeaderMap, c: u16, message: &str) {
    headers.insert("grpc-status", HeaderValue::from(c));
    if !message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&g::encode_message(message)) {
            headers.insert("grpc-message", v);
        }
    }
}

/// Response headers every gRPC answer carries.
fn grpc_headers(metadata: HeaderMap, request_id: &HeaderValue) -> HeaderMap {
    let mut h = metadata;
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(g::CONTENT_TYPE),
    );
    h.insert(request_id_header(), request_id.clone());
    h
}

/// A trailers-only response (status in the headers, no body).
fn status_response(
    c: u16,
    message: &str,
    metadata: HeaderMap,
    request_id: &HeaderValue,
) -> Response<Body> {
    let mut headers = grpc_headers(metadata, request_id);
    put_status(&mut headers, c, message);
    let mut r = Response::new(Body::empty());
    *r.headers_mut() = headers;
    r
}

/// One response message, then OK and the trailing metadata.
fn unary_response(
    message: &[u8],
    initial: HeaderMap,
    mut trailers: HeaderMap,
    request_id: &HeaderValue,
) -> Response<Body> {
    put_status(&mut trailers, code::OK, "");
    let frames = VecDeque::from([Frame::data(g::frame(message)), Frame::trailers(trailers)]);
    let mut r = Response::new(Body::frames(frames));
    *r.headers_mut() = grpc_headers(initial, request_id);
    r
}

/// The call's deadline: the client's `grpc-timeout`, capped by `cap`.
fn deadline(headers: &HeaderMap, start: Instant, cap: Duration) -> Result<Instant, Failure> {
    let budget = match headers.get("grpc-timeout") {
        None => cap,
        Some(v) => {
            let client = v
                .to_str()
                .ok()
                .and_then(g::parse_timeout)
                .ok_or(Failure::BadTimeout)?;
            client.min(cap)
        }
    };
    Ok(start + budget)
}

/// Read the single request message (empty if the client sent none) by
/// the call's `deadline` and the gateway's `body_deadline`
/// (`body_read_timeout_seconds`), whichever comes first.
async fn read_message(
    body: Incoming,
    limit: usize,
    deadline: Instant,
    body_deadline: Instant,
) -> Result<Bytes, Failure> {
    let mut body = std::pin::pin!(body);
    let mut decoder = g::FrameDecoder::new(limit);
    let mut message = None;
    let (until, late) = if body_deadline < deadline {
        (body_deadline, Failure::BodyTimeout)
    } else {
        (deadline, Failure::Timeout)
    };
    loop {
        let frame = match tokio::time::timeout_at(until, body.frame()).await {
            Err(_) => return Err(late),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "client request stream failed");
                return Err(Failure::Cancelled);
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // request trailers carry nothing for us
        };
        decoder.push(&data);
        loop {
            match decoder.next_message() {
                Ok(None) => break,
                Ok(Some(m)) if message.is_none() => message = Some(m),
                Ok(Some(_)) => return Err(Failure::StreamingRequest),
                Err(g::FrameError::TooLarge { .. }) => return Err(Failure::BodyTooLarge),
                Err(g::FrameError::Compressed) => {
                    return Err(Failure::Compression("compressed message".into()))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed gRPC request framing");
                    return Err(Failure::Unencodable);
                }
            }
        }
    }
    if decoder.finish().is_err() {
        return Err(Failure::Unencodable);
    }
    Ok(message.unwrap_or_default())
}

/// Forward one call to `route`.
async fn forward(
    gw: &Arc<Gateway>,
    route: &GrpcRoute,
    req: Request<Incoming>,
    peer: PeerIp,
    request_id: HeaderValue,
    record: Record,
) -> Response<Body> {
    let in_flight = gw.metrics.grpc_in_flight();
    if gw.nats.connection_state() != async_nats::connection::State::Connected {
        return fail(Failure::Disconnected, &request_id, record);
    }
    let (parts, body) = req.into_parts();
    if let Some(enc) = parts.headers.get("grpc-encoding") {
        if enc.as_bytes() != b"identity" {
            let enc = String::from_utf8_lossy(enc.as_bytes()).into_owned();
            return fail(Failure::Compression(enc), &request_id, record);
        }
    }
    let deadline = match deadline(&parts.headers, record.start, route.timeout) {
        Ok(d) => d,
        Err(f) => return fail(f, &request_id, record),
    };
    let max_payload = gw.nats.max_payload();
    let limit = usize::try_from(gw.cfg.max_body_bytes)
        .unwrap_or(usize::MAX)
        .min(max_payload);
    let body_deadline = record.start + gw.cfg.body_read_timeout;
    let message = match read_message(body, limit, deadline, body_deadline).await {
        Ok(m) => m,
        Err(f) => return fail(f, &request_id, record),
    };
    // The NATS leg, and only it, holds an in-flight permit (until the end
    // of a stream): a client that sends its request slowly holds none.
    let Ok(permit) = gw.permits.clone().try_acquire_owned() else {
        return fail(Failure::Overloaded, &request_id, record);
    };

    let path = parts.uri.path();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(g::METHOD_HEADER, path);
    let left = deadline.saturating_duration_since(Instant::now());
    headers.insert(wire::TIMEOUT_HEADER, wire::timeout_value(left).as_str());
    headers.insert(
        g::STREAM_WINDOW_HEADER,
        g::DEFAULT_STREAM_WINDOW.to_string().as_str(),
    );
    let mut metadata = parts.headers.clone();
    decorate_request(&mut metadata, &request_id, &peer);
    g::metadata_to_nats(&metadata, g::METADATA_PREFIX, &mut headers);

    // Lost while the request was read, or before the first reply (which
    // then never comes): UNAVAILABLE now, not DEADLINE_EXCEEDED later.
    let seen = gw.disconnects.seen();
    if gw.nats.connection_state() != async_nats::connection::State::Connected {
        return fail(Failure::Disconnected, &request_id, record);
    }
    // A reply inbox of our own: a stream has several replies.
    let inbox = gw.nats.new_inbox();
    let mut replies = match gw.nats.subscribe(inbox.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe a reply inbox");
            gw.metrics.nats(&route.subject, "error");
            return fail(Failure::Nats, &request_id, record);
        }
    };
    let published = gw
        .nats
        .publish_with_reply_and_headers(route.subject.clone(), inbox, headers, message)
        .await;
    if let Err(e) = published {
        let failure = Failure::of_publish(e.kind());
        if failure == Failure::Nats {
            tracing::warn!(subject = %route.subject, error = %e, "NATS publish failed");
        }
        gw.metrics
            .nats(&route.subject, rescue(&failure).nats_outcome);
        return fail(failure, &request_id, record);
    }

    let first = tokio::select! {
        biased;
        first = tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut replies)) => first,
        () = gw.disconnects.since(seen) => {
            gw.metrics.nats(&route.subject, "error");
            return fail(Failure::Disconnected, &request_id, record);
        }
    };
    let first = match first {
        Err(_) => {
            gw.metrics.nats(&route.subject, "timeout");
            return fail(Failure::Timeout, &request_id, record);
        }
        Ok(None) => {
            gw.metrics.nats(&route.subject, "error");
            return fail(Failure::Nats, &request_id, record);
        }
        Ok(Some(msg)) => msg,
    };
    if first.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
        gw.metrics.nats(&route.subject, "error");
        return fail(Failure::NoResponders, &request_id, record);
    }
    gw.metrics.nats(&route.subject, "success");
    let h = first.headers.as_ref();
    let initial = g::metadata_from_nats(h, g::METADATA_PREFIX);
    let trailing = g::metadata_from_nats(h, g::TRAILER_PREFIX);

    match g::stream_seq(h) {
        // A unary reply (also every reply of a Go consumer).
        None => match wire::service_error(h) {
            Some(err) => consumer_error(err, initial, trailing, &request_id, record),
            None => {
                record.done(code::OK);
                unary_response(&first.payload, initial, trailing, &request_id)
            }
        },
        Some(seq) if seq != 0 => {
            tracing::warn!(subject = %route.subject, seq, "stream began with a later frame");
            cancel(&gw.nats, first.reply.as_ref(), "stream broken").await;
            fail(Failure::StreamBroken, &request_id, record)
        }
        // An empty stream: just the end frame.
        Some(_) if g::is_stream_end(h) => match wire::service_error(h) {
            Some(err) => consumer_error(err, initial, trailing, &request_id, record),
            None => {
                record.done(code::OK);
                let mut all = initial;
                all.extend(trailing);
                status_response(code::OK, "", all, &request_id)
            }
        },
        Some(_) => {
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            tx.try_send(Frame::data(g::frame(&first.payload)))
                .expect("a new channel has room");
            let stream = Stream {
                nats: gw.nats.clone(),
                replies,
                tx,
                control: first.reply.clone(),
                next_seq: 1,
                delivered: 1,
                acked: 0,
                deadline,
                subject: route.subject.clone(),
            };
            tokio::spawn(stream.pump(record, in_flight, permit));
            let mut r = Response::new(Body::channel(rx));
            *r.headers_mut() = grpc_headers(initial, &request_id);
            r
        }
    }
}

/// A consumer error reply as a trailers-only response.
fn consumer_error(
    err: ServiceError,
    initial: HeaderMap,
    trailing: HeaderMap,
    request_id: &HeaderValue,
    record: Record,
) -> Response<Body> {
    let r = rescue(&Failure::Consumer(err));
    record.done(r.grpc);
    let mut all = initial;
    all.extend(trailing);
    status_response(r.grpc, &r.message, all, request_id)
}

/// Tell a consumer to stop streaming.
async fn cancel(nats: &async_nats::Client, control: Option<&async_nats::Subject>, reason: &str) {
    let Some(control) = control else {
        return;
    };
    let mut h = async_nats::HeaderMap::new();
    h.insert(g::STREAM_CANCEL_HEADER, reason);
    if let Err(e) = nats
        .publish_with_headers(control.clone(), h, Bytes::new())
        .await
    {
        tracing::debug!(error = %e, "cannot cancel the consumer's stream");
    }
}

/// A response stream being relayed from NATS to the client.
struct Stream {
    nats: async_nats::Client,
    replies: async_nats::Subscriber,
    tx: mpsc::Sender<Frame<Bytes>>,
    /// The consumer's control subject (reply subject of its frames).
    control: Option<async_nats::Subject>,
    next_seq: u64,
    /// Message frames handed to the client's stream.
    delivered: u64,
    /// Message frames acknowledged to the consumer.
    acked: u64,
    deadline: Instant,
    subject: String,
}

/// How a stream relay ended.
enum End {
    /// The consumer's end frame: its status and trailers.
    Status(u16, String, HeaderMap),
    /// The gateway ends the stream with this failure.
    Failure(Failure),
    /// The client is gone.
    ClientGone,
}

impl Stream {
    async fn pump(
        mut self,
        record: Record,
        _in_flight: super::metrics::InFlight,
        _permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let end = self.relay().await;
        let (c, message, trailers) = match end {
            End::Status(c, message, trailers) => (c, message, trailers),
            End::Failure(f) => {
                let reason = if f == Failure::Timeout {
                    "deadline"
                } else {
                    "stream broken"
                };
                cancel(&self.nats, self.control.as_ref(), reason).await;
                let r = rescue(&f);
                (r.grpc, r.message, HeaderMap::new())
            }
            End::ClientGone => {
                cancel(&self.nats, self.control.as_ref(), "client gone").await;
                record.done(code::CANCELLED);
                return;
            }
        };
        record.done(c);
        let mut trailers = trailers;
        put_status(&mut trailers, c, &message);
        // The client may be slow: give the trailers a moment, not forever.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.tx.send(Frame::trailers(trailers)),
        )
        .await;
    }

    async fn relay(&mut self) -> End {
        loop {
            let msg = tokio::select! {
                _ = self.tx.closed() => return End::ClientGone,
                _ = tokio::time::sleep_until(self.deadline) => return End::Failure(Failure::Timeout),
                msg = futures_util::StreamExt::next(&mut self.replies) => match msg {
                    Some(msg) => msg,
                    None => return End::Failure(Failure::StreamBroken),
                },
            };
            let h = msg.headers.as_ref();
            let Some(seq) = g::stream_seq(h) else {
                tracing::warn!(subject = %self.subject, "stream reply without a sequence number");
                return End::Failure(Failure::StreamBroken);
            };
            if seq < self.next_seq {
                continue; // a duplicate
            }
            if seq > self.next_seq {
                tracing::warn!(subject = %self.subject, expected = self.next_seq, got = seq, "stream frame lost");
                return End::Failure(Failure::StreamBroken);
            }
            self.next_seq += 1;
            if g::is_stream_end(h) {
                let trailers = g::metadata_from_nats(h, g::TRAILER_PREFIX);
                return match wire::service_error(h) {
                    Some(err) => {
                        let r = rescue(&Failure::Consumer(err));
                        End::Status(r.grpc, r.message, trailers)
                    }
                    None => End::Status(code::OK, String::new(), trailers),
                };
            }
            if msg.reply.is_some() {
                self.control = msg.reply.clone();
            }
            let frame = Frame::data(g::frame(&msg.payload));
            tokio::select! {
                sent = self.tx.send(frame) => if sent.is_err() {
                    return End::ClientGone;
                },
                _ = tokio::time::sleep_until(self.deadline) => return End::Failure(Failure::Timeout),
            }
            self.delivered += 1;
            let every = u64::from(g::DEFAULT_STREAM_WINDOW / 2).max(1);
            if self.delivered - self.acked >= every {
                self.ack().await;
            }
        }
    }

    /// Acknowledge every delivered frame.
    async fn ack(&mut self) {
        let Some(control) = self.control.clone() else {
            return;
        };
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            g::STREAM_ACK_HEADER,
            (self.delivered - 1).to_string().as_str(),
        );
        if let Err(e) = self
            .nats
            .publish_with_headers(control, h, Bytes::new())
            .await
        {
            tracing::debug!(error = %e, "cannot acknowledge stream frames");
        }
        self.acked = self.delivered;
    }
}

/// `HealthCheckResponse.ServingStatus` values.
mod serving {
    pub const SERVING: u8 = 1;
    pub const NOT_SERVING: u8 = 2;
    pub const SERVICE_UNKNOWN: u8 = 3;
}

/// The health of `service`: `""` is the gateway itself (SERVING while NATS
/// is connected), a routed service is SERVING while one of its consumers
/// answers `$SRV.PING.<subject>` within `wait`. `None`: not a routed service.
async fn serving_status(gw: &Gateway, service: &str, wait: Duration) -> Option<u8> {
    let connected = gw.nats.connection_state() == async_nats::connection::State::Connected;
    if service.is_empty() {
        return Some(if connected {
            serving::SERVING
        } else {
            serving::NOT_SERVING
        });
    }
    let route = gw.grpc_routes.get(service)?;
    if !connected {
        return Some(serving::NOT_SERVING);
    }
    let ping = gw
        .nats
        .send_request(
            format!("$SRV.PING.{}", route.subject),
            async_nats::Request::new().timeout(Some(wait)),
        )
        .await;
    Some(if ping.is_ok() {
        serving::SERVING
    } else {
        serving::NOT_SERVING
    })
}

/// A `HealthCheckResponse { status }` message.
fn health_message(status: u8) -> [u8; 2] {
    [0x08, status]
}

/// `grpc.health.v1.Health`, answered by the gateway itself: `Check`, and
/// `Watch` (the status now, then each change, checked every
/// [`HEALTH_WATCH_INTERVAL`], until the client leaves or the gateway stops).
async fn health(
    gw: &Arc<Gateway>,
    method: &str,
    req: Request<Incoming>,
    request_id: HeaderValue,
    record: Record,
) -> Response<Body> {
    if method != "Check" && method != "Watch" {
        let message = format!("unknown method {method} for service {}", g::HEALTH_SERVICE);
        record.done(code::UNIMPLEMENTED);
        return status_response(code::UNIMPLEMENTED, &message, HeaderMap::new(), &request_id);
    }
    let (parts, body) = req.into_parts();
    let deadline = match deadline(&parts.headers, record.start, gw.cfg.request_timeout) {
        Ok(d) => d,
        Err(f) => return fail(f, &request_id, record),
    };
    let body_deadline = record.start + gw.cfg.body_read_timeout;
    let message = match read_message(body, 4096, deadline, body_deadline).await {
        Ok(m) => m,
        Err(f) => return fail(f, &request_id, record),
    };
    let Ok(service) = g::proto_string_field(&message, 1) else {
        record.done(code::INVALID_ARGUMENT);
        return status_response(
            code::INVALID_ARGUMENT,
            "malformed HealthCheckRequest",
            HeaderMap::new(),
            &request_id,
        );
    };
    let service = service.unwrap_or_default();
    if method == "Watch" {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(watch_health(gw.clone(), service, tx, record));
        let mut r = Response::new(Body::channel(rx));
        *r.headers_mut() = grpc_headers(HeaderMap::new(), &request_id);
        return r;
    }
    let wait = HEALTH_PING_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
    match serving_status(gw, &service, wait).await {
        Some(status) => {
            record.done(code::OK);
            unary_response(
                &health_message(status),
                HeaderMap::new(),
                HeaderMap::new(),
                &request_id,
            )
        }
        None => {
            record.done(code::NOT_FOUND);
            status_response(
                code::NOT_FOUND,
                &format!("unknown service {service}"),
                HeaderMap::new(),
                &request_id,
            )
        }
    }
}

/// The `Watch` stream. An unknown service is SERVICE_UNKNOWN, not an error,
/// as the health protocol asks.
async fn watch_health(
    gw: Arc<Gateway>,
    service: String,
    tx: mpsc::Sender<Frame<Bytes>>,
    record: Record,
) {
    let mut stopping = gw.stopping.clone();
    let mut last = None;
    loop {
        if *stopping.borrow_and_update() {
            break;
        }
        let status = serving_status(&gw, &service, HEALTH_PING_TIMEOUT)
            .await
            .unwrap_or(serving::SERVICE_UNKNOWN);
        if last != Some(status) {
            let frame = Frame::data(g::frame(&health_message(status)));
            if tx.send(frame).await.is_err() {
                record.done(code::CANCELLED);
                return;
            }
            last = Some(status);
        }
        tokio::select! {
            _ = tx.closed() => {
                record.done(code::CANCELLED);
                return;
            }
            _ = stopping.changed() => {}
            _ = tokio::time::sleep(HEALTH_WATCH_INTERVAL) => {}
        }
    }
    // Shutting down: the watch ends so that draining need not wait for it.
    let mut trailers = HeaderMap::new();
    put_status(&mut trailers, code::UNAVAILABLE, "gateway shutting down");
    record.done(code::UNAVAILABLE);
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Frame::trailers(trailers))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_the_client_timeout_capped_by_the_route() {
        let start = Instant::now();
        let cap = Duration::from_secs(5);
        let mut h = HeaderMap::new();
        assert_eq!(deadline(&h, start, cap), Ok(start + cap));
        h.insert("grpc-timeout", HeaderValue::from_static("100m"));
        assert_eq!(
            deadline(&h, start, cap),
            Ok(start + Duration::from_millis(100))
        );
        h.insert("grpc-timeout", HeaderValue::from_static("1H"));
        assert_eq!(deadline(&h, start, cap), Ok(start + cap));
        h.insert("grpc-timeout", HeaderValue::from_static("soon"));
        assert_eq!(deadline(&h, start, cap), Err(Failure::BadTimeout));
    }

    #[test]
    fn status_headers_are_encoded() {
        let id = HeaderValue::from_static("rid");
        let r = status_response(
            code::INVALID_ARGUMENT,
            "Name cannot be empty",
            HeaderMap::new(),
            &id,
        );
        assert_eq!(r.headers()["grpc-status"], "3");
        assert_eq!(r.headers()["grpc-message"], "Name cannot be empty");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["x-request-id"], "rid");
        let r = status_response(code::INTERNAL, "100% \n", HeaderMap::new(), &id);
        assert_eq!(r.headers()["grpc-message"], "100%25 %0A");
    }
}
