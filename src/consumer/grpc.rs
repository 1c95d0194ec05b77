//! One gRPC call over NATS, consumer side (wire format in [`crate::wire::grpc`]):
//! rebuild the HTTP/2-style request a tonic server expects from the raw
//! message and the method header, call the service, and send back a unary
//! reply, a Micro error reply, or a flow-controlled stream of frames.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;

use async_nats::service;
use bytes::{Buf as _, Bytes};
use futures_util::{FutureExt, StreamExt};
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Service, ServiceExt as _};

use super::Ctx;
use crate::wire::{self, grpc as g, grpc::code};

/// Room left in a NATS message for our headers besides the metadata.
const HEADER_ALLOWANCE: usize = 512;

/// Serve one call. Never panics outward: a panicking handler becomes INTERNAL.
pub(super) async fn handle<S, B>(request: super::micro::Request, svc: S, ctx: Ctx)
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let headers = request.message.headers.clone();
    let h = headers.as_ref();
    let time_left = wire::request_timeout(h);
    let deadline = time_left.map(|t| Instant::now() + t);
    let mut out = Responder {
        window: g::stream_window(h).map(u64::from),
        max_payload: ctx.max_payload,
        client: request.client().clone(),
        request,
        control: None,
        seq: 0,
        acked: 0,
        initial: HeaderMap::new(),
        deadline,
    };
    let Some(method) = h.and_then(|h| h.get(g::METHOD_HEADER)) else {
        return out
            .fail(
                code::INVALID_ARGUMENT,
                "Missing required X-Original-Grpc-Method header",
            )
            .await;
    };
    let method = method.as_str().trim().to_owned();
    if g::parse_method(&method).is_none() {
        return out
            .fail(
                code::INVALID_ARGUMENT,
                &format!("invalid method name format: {method:?}"),
            )
            .await;
    }

    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(method.as_str())
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, g::CONTENT_TYPE)
        .header(http::header::TE, "trailers");
    if let Some(left) = time_left {
        builder = builder.header("grpc-timeout", g::encode_timeout(left));
    }
    let frame = g::frame(&out.request.message.payload);
    let mut req = match builder.body(Full::new(frame)) {
        Ok(r) => r,
        Err(_) => {
            return out
                .fail(
                    code::INVALID_ARGUMENT,
                    &format!("invalid method name format: {method:?}"),
                )
                .await
        }
    };
    match g::try_metadata_from_nats(h, g::METADATA_PREFIX) {
        Ok(metadata) => req.headers_mut().extend(metadata),
        Err(e) => {
            return out
                .fail(
                    code::RESOURCE_EXHAUSTED,
                    &format!("request metadata too large: {e}"),
                )
                .await
        }
    }

    match run(svc, req, &mut out, deadline).await {
        Ok(()) => {}
        Err(Stop::Cancelled) => tracing::debug!(%method, "call cancelled by the gateway"),
        Err(Stop::Publish(e)) => tracing::warn!(%method, error = %e, "cannot send reply"),
    }
}

/// One poll of the response body, without the body's error type (which
/// need not be `Send`).
enum Step<D> {
    Frame(Frame<D>),
    End,
    Failed,
    Panicked,
}

type Polled<D, E> = Result<Option<Result<Frame<D>, E>>, Box<dyn std::any::Any + Send>>;

fn step<D, E>(polled: Polled<D, E>) -> Step<D>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match polled {
        Err(_) => Step::Panicked,
        Ok(None) => Step::End,
        Ok(Some(Err(e))) => {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            tracing::warn!(error = %e, "gRPC response body failed");
            Step::Failed
        }
        Ok(Some(Ok(frame))) => Step::Frame(frame),
    }
}

/// Why a call stopped without a final reply.
enum Stop {
    /// The gateway cancelled the stream.
    Cancelled,
    /// Publishing failed.
    Publish(String),
}

/// The final status of a call.
struct Status {
    code: u16,
    message: String,
    trailers: HeaderMap,
}

impl Status {
    fn new(code: u16, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
            trailers: HeaderMap::new(),
        }
    }
}

/// Wait for `fut` until `deadline`; `None` once it has passed.
async fn until<F: std::future::Future>(deadline: Option<Instant>, fut: F) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, fut).await.ok(),
        None => Some(fut.await),
    }
}

async fn run<S, B>(
    svc: S,
    req: http::Request<Full<Bytes>>,
    out: &mut Responder,
    deadline: Option<Instant>,
) -> Result<(), Stop>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>, Error = Infallible>,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let call = AssertUnwindSafe(svc.oneshot(req)).catch_unwind();
    let resp = match until(deadline, call).await {
        None => return out.deadline_passed(VecDeque::new()).await,
        Some(Err(_)) => {
            tracing::error!("gRPC handler panicked");
            return out
                .finish(
                    Status::new(code::INTERNAL, "Internal error"),
                    VecDeque::new(),
                )
                .await;
        }
        Some(Ok(Ok(resp))) => resp,
    };
    let (parts, body) = resp.into_parts();
    if parts.status != http::StatusCode::OK {
        tracing::warn!(status = %parts.status, "gRPC service answered a non-200 HTTP status");
        return out
            .finish(
                Status::new(code::INTERNAL, "Internal error"),
                VecDeque::new(),
            )
            .await;
    }
    if let Some((c, message)) = g::status_of(&parts.headers) {
        // Trailers-only response: its metadata is trailing metadata.
        let mut status = Status::new(c, message);
        status.trailers = parts.headers;
        return out.finish(status, VecDeque::new()).await;
    }
    out.initial = parts.headers;

    let mut body = std::pin::pin!(body);
    let mut decoder = g::FrameDecoder::new(out.max_payload);
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    loop {
        // A frame that is ready now keeps a unary answer in one reply; only
        // when the body would wait are queued messages streamed.
        let ready = AssertUnwindSafe(body.frame())
            .catch_unwind()
            .map(step)
            .now_or_never();
        let next = match ready {
            Some(next) => next,
            None => {
                if out.window.is_some() && !queue.is_empty() {
                    if let Some(failed) = out.send_all(&mut queue).await? {
                        return out.finish(failed, VecDeque::new()).await;
                    }
                }
                let frame = AssertUnwindSafe(body.frame()).catch_unwind().map(step);
                match out.wait(frame).await? {
                    Some(next) => next,
                    None => return out.deadline_passed(queue).await,
                }
            }
        };
        let frame = match next {
            Step::Panicked => {
                tracing::error!("gRPC handler panicked while streaming");
                return out
                    .finish(Status::new(code::INTERNAL, "Internal error"), queue)
                    .await;
            }
            Step::End => {
                tracing::warn!("gRPC response ended without a grpc-status");
                return out
                    .finish(
                        Status::new(code::INTERNAL, "Response ended without a status"),
                        queue,
                    )
                    .await;
            }
            Step::Failed => {
                return out
                    .finish(Status::new(code::INTERNAL, "Internal error"), queue)
                    .await;
            }
            Step::Frame(frame) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let bytes = data.copy_to_bytes(data.remaining());
                decoder.push(&bytes);
                loop {
                    match decoder.next_message() {
                        Ok(Some(m)) => queue.push_back(m),
                        Ok(None) => break,
                        Err(g::FrameError::TooLarge { len, max }) => {
                            let msg = format!(
                                "Response message of {len} bytes exceeds the NATS max payload of {max}"
                            );
                            return out
                                .finish(Status::new(code::RESOURCE_EXHAUSTED, msg), VecDeque::new())
                                .await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "malformed gRPC response framing");
                            return out
                                .finish(
                                    Status::new(code::INTERNAL, "Internal error"),
                                    VecDeque::new(),
                                )
                                .await;
                        }
                    }
                }
                if out.window.is_none() && queue.len() > 1 && !out.streaming() {
                    return out.finish(Status::new(code::OK, ""), queue).await;
                }
                if out.streaming() {
                    if let Some(failed) = out.send_all(&mut queue).await? {
                        return out.finish(failed, VecDeque::new()).await;
                    }
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            if decoder.finish().is_err() {
                tracing::warn!("gRPC response ended inside a message");
                return out
                    .finish(
                        Status::new(code::INTERNAL, "Internal error"),
                        VecDeque::new(),
                    )
                    .await;
            }
            let (c, message) = g::status_of(&trailers)
                .unwrap_or((code::INTERNAL, "Response ended without a status".into()));
            let mut status = Status::new(c, message);
            status.trailers = trailers;
            return out.finish(status, queue).await;
        }
    }
}

/// Sends the replies of one call.
struct Responder {
    request: super::micro::Request,
    client: async_nats::Client,
    max_payload: usize,
    /// The gateway's stream credit; `None`: it cannot take a stream (Go).
    window: Option<u64>,
    /// Control subscription, once streaming.
    control: Option<(String, async_nats::Subscriber)>,
    /// Next frame sequence number.
    seq: u64,
    /// Frames acknowledged (all below this).
    acked: u64,
    /// Response initial metadata.
    initial: HeaderMap,
    /// When the gateway stops waiting.
    deadline: Option<Instant>,
}

impl Responder {
    fn streaming(&self) -> bool {
        self.control.is_some()
    }

    /// The gateway's deadline passed. Before anything was streamed, the
    /// gateway answers its own timeout at this same moment: the request is
    /// abandoned without a reply (counted in `$SRV.STATS`), as the HTTP
    /// path does, instead of racing that answer. A stream already started
    /// ends with DEADLINE_EXCEEDED.
    async fn deadline_passed(&mut self, queue: VecDeque<Bytes>) -> Result<(), Stop> {
        if !self.streaming() {
            tracing::debug!("deadline passed: gRPC request abandoned");
            self.request.abandon(service::error::Error {
                status: "Deadline exceeded before the response was ready".into(),
                code: 504,
            });
            return Ok(());
        }
        self.finish(
            Status::new(code::DEADLINE_EXCEEDED, "Deadline exceeded"),
            queue,
        )
        .await
    }

    /// Reply with an error and no metadata (before the service ran).
    async fn fail(mut self, c: u16, message: &str) {
        if let Err(Stop::Publish(e)) = self.finish(Status::new(c, message), VecDeque::new()).await {
            tracing::warn!(error = %e, "cannot send reply");
        }
    }

    /// Wait for `fut`, acting on control messages meanwhile. `Ok(None)`: the
    /// deadline passed.
    async fn wait<F: std::future::Future>(&mut self, fut: F) -> Result<Option<F::Output>, Stop> {
        let deadline = self.deadline;
        let mut fut = std::pin::pin!(fut);
        loop {
            let control = async {
                match self.control.as_mut() {
                    Some((_, sub)) => sub.next().await,
                    None => std::future::pending().await,
                }
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                out = &mut fut => return Ok(Some(out)),
                msg = control => match msg {
                    Some(msg) => self.on_control(&msg)?,
                    None => return Err(Stop::Cancelled),
                },
                _ = sleep => return Ok(None),
            }
        }
    }

    fn on_control(&mut self, msg: &async_nats::Message) -> Result<(), Stop> {
        let h = msg.headers.as_ref();
        if h.and_then(|h| h.get(g::STREAM_CANCEL_HEADER)).is_some() {
            return Err(Stop::Cancelled);
        }
        if let Some(n) = g::number(h, g::STREAM_ACK_HEADER) {
            self.acked = self.acked.max(n.saturating_add(1));
        }
        Ok(())
    }

    /// Subscribe the control subject (once).
    async fn start_stream(&mut self) -> Result<(), Stop> {
        if self.control.is_none() {
            let inbox = self.client.new_inbox();
            let sub = self
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| Stop::Publish(e.to_string()))?;
            self.control = Some((inbox, sub));
        }
        Ok(())
    }

    /// Stream every queued message, waiting for credit as needed.
    /// `Ok(Some(status))`: a message cannot be sent, end the stream with `status`.
    async fn send_all(&mut self, queue: &mut VecDeque<Bytes>) -> Result<Option<Status>, Stop> {
        self.start_stream().await?;
        while let Some(msg) = queue.pop_front() {
            let window = self.window.unwrap_or(1);
            while self.seq - self.acked >= window {
                let Some((_, sub)) = self.control.as_mut() else {
                    break;
                };
                match until(self.deadline, sub.next()).await {
                    Some(Some(m)) => self.on_control(&m)?,
                    // Control subject gone, or the deadline passed: the
                    // gateway has given up on this call too.
                    Some(None) | None => return Err(Stop::Cancelled),
                }
            }
            // Take pending acks or a cancel without waiting.
            while let Some(Some(m)) = self
                .control
                .as_mut()
                .and_then(|(_, sub)| sub.next().now_or_never())
            {
                self.on_control(&m)?;
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(g::STREAM_SEQ_HEADER, self.seq.to_string().as_str());
            if self.seq == 0 {
                g::metadata_to_nats(&self.initial, g::METADATA_PREFIX, &mut headers);
            }
            if msg.len() + header_len(&headers) + HEADER_ALLOWANCE > self.max_payload {
                let status = Status::new(
                    code::RESOURCE_EXHAUSTED,
                    format!(
                        "Response message of {} bytes exceeds the NATS max payload of {}",
                        msg.len(),
                        self.max_payload
                    ),
                );
                queue.clear();
                return Ok(Some(status));
            }
            let reply = self.reply_subject()?;
            let inbox = self
                .control
                .as_ref()
                .map(|(i, _)| i.clone())
                .unwrap_or_default();
            self.client
                .publish_with_reply_and_headers(reply, inbox, headers, msg)
                .await
                .map_err(|e| Stop::Publish(e.to_string()))?;
            self.seq += 1;
        }
        Ok(None)
    }

    fn reply_subject(&self) -> Result<async_nats::Subject, Stop> {
        self.request
            .message
            .reply
            .clone()
            .ok_or_else(|| Stop::Publish("request has no reply subject".into()))
    }

    /// Send the final answer: a unary reply, a Micro error reply, or the
    /// rest of the stream and its end frame.
    async fn finish(&mut self, status: Status, mut queue: VecDeque<Bytes>) -> Result<(), Stop> {
        if !self.streaming() {
            let single = status.code == code::OK && queue.len() == 1;
            let none = queue.is_empty() && (status.code != code::OK || self.window.is_none());
            if single || none {
                let mut headers = async_nats::HeaderMap::new();
                g::metadata_to_nats(&self.initial, g::METADATA_PREFIX, &mut headers);
                g::metadata_to_nats(&status.trailers, g::TRAILER_PREFIX, &mut headers);
                let payload = queue.pop_front().unwrap_or_default();
                if payload.len() + header_len(&headers) + HEADER_ALLOWANCE > self.max_payload {
                    let message = format!(
                        "Response message of {} bytes exceeds the NATS max payload of {}",
                        payload.len(),
                        self.max_payload
                    );
                    return self
                        .respond(
                            code::RESOURCE_EXHAUSTED,
                            &message,
                            Bytes::new(),
                            async_nats::HeaderMap::new(),
                        )
                        .await;
                }
                return self
                    .respond(status.code, &status.message, payload, headers)
                    .await;
            }
            if self.window.is_none() {
                // The gateway cannot take a stream (the Go gateway).
                let (c, message) = if status.code != code::OK {
                    (status.code, status.message)
                } else {
                    (
                        code::UNIMPLEMENTED,
                        "server-streaming responses need a gateway that supports the narun stream framing"
                            .to_owned(),
                    )
                };
                let mut headers = async_nats::HeaderMap::new();
                g::metadata_to_nats(&status.trailers, g::TRAILER_PREFIX, &mut headers);
                return self.respond(c, &message, Bytes::new(), headers).await;
            }
        }
        let status = match self.send_all(&mut queue).await? {
            Some(failed) => failed,
            None => status,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(g::STREAM_SEQ_HEADER, self.seq.to_string().as_str());
        headers.insert(g::STREAM_END_HEADER, "1");
        if self.seq == 0 {
            g::metadata_to_nats(&self.initial, g::METADATA_PREFIX, &mut headers);
        }
        g::metadata_to_nats(&status.trailers, g::TRAILER_PREFIX, &mut headers);
        let r = self
            .respond(status.code, &status.message, Bytes::new(), headers)
            .await;
        self.control = None;
        r
    }

    /// Publish the final reply through the Micro request (counted in its stats).
    async fn respond(
        &self,
        c: u16,
        message: &str,
        payload: Bytes,
        headers: async_nats::HeaderMap,
    ) -> Result<(), Stop> {
        let result = if c == code::OK {
            Ok(payload)
        } else {
            Err(service::error::Error {
                status: wire::header_safe(message),
                code: usize::from(c),
            })
        };
        self.request
            .respond_with_headers(result, headers)
            .await
            .map_err(Stop::Publish)
    }
}

/// Approximate size of NATS headers on the wire.
fn header_len(headers: &async_nats::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, vs)| {
            vs.iter()
                .map(|v| AsRef::<str>::as_ref(n).len() + v.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_len_counts_names_and_values() {
        let mut h = async_nats::HeaderMap::new();
        h.insert("A", "bc");
        h.append("A", "d");
        assert_eq!(header_len(&h), (1 + 2 + 4) + (1 + 1 + 4));
    }
}
