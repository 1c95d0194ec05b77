//! A NATS Micro v1 service with one endpoint that can stop without losing
//! a request.
//!
//! async-nats's `service` module stops an endpoint with a plain UNSUB: the
//! client forgets the subscription at once, so a request the server routed
//! to this replica just before it saw the UNSUB is dropped on arrival and
//! its caller waits for its whole timeout. During a zero-downtime
//! replacement (the old replica stops while the new one serves) that is a
//! lost request. Here the endpoint is a plain queue subscription stopped
//! with `drain` (UNSUB, then a PING round trip: everything the server sent
//! before the UNSUB is still delivered; this needs the async-nats patch in
//! `vendor/`, see its README), and the `$SRV.PING|INFO|STATS`
//! verbs are answered with async-nats's own Micro v1 types, so `nats micro`
//! and the Go gateway see the same service as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::service::{endpoint, error, Info, PingResponse, Stats};
use async_nats::{Client, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;

/// What the service says about itself.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub name: String,
    pub version: String,
    pub description: String,
    /// The endpoint's name (`handler`, `grpc_handler`); its subject is the
    /// service name.
    pub endpoint: String,
    pub queue_group: String,
}

/// Counters of the endpoint (`$SRV.STATS`).
#[derive(Debug, Default)]
struct Counters {
    requests: usize,
    errors: usize,
    processing: Duration,
    last_error: Option<error::Error>,
}

/// A running service: the endpoint's request stream plus the verb task.
pub(crate) struct MicroService {
    requests: Subscriber,
    verbs: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

/// What every request of the service answers with: one reference per
/// request (not a client clone and a counters clone).
struct Shared {
    counters: Arc<Mutex<Counters>>,
    client: Client,
}

/// One request, answered through the Micro conventions.
pub(crate) struct Request {
    pub message: Message,
    issued: Instant,
    shared: Arc<Shared>,
}

impl Request {
    /// Reply; an `Err` becomes the `Nats-Service-Error` headers.
    pub async fn respond_with_headers(
        &self,
        response: Result<Bytes, error::Error>,
        mut headers: HeaderMap,
    ) -> Result<(), String> {
        let reply = self
            .message
            .reply
            .clone()
            .ok_or("the request has no reply subject")?;
        let payload = match response {
            Ok(p) => p,
            Err(e) => {
                headers.insert(async_nats::service::NATS_SERVICE_ERROR, e.status.as_str());
                headers.insert(
                    async_nats::service::NATS_SERVICE_ERROR_CODE,
                    e.code.to_string().as_str(),
                );
                if let Ok(mut c) = self.shared.counters.lock() {
                    c.errors += 1;
                    c.last_error = Some(e);
                }
                Bytes::new()
            }
        };
        if let Ok(mut c) = self.shared.counters.lock() {
            c.requests += 1;
            c.processing += self.issued.elapsed();
        }
        let r = if headers.is_empty() {
            self.shared.client.publish(reply, payload).await
        } else {
            self.shared
                .client
                .publish_with_headers(reply, headers, payload)
                .await
        };
        r.map_err(|e| e.to_string())
    }

    /// When the request was taken from the subscription.
    pub fn received(&self) -> tokio::time::Instant {
        self.issued.into()
    }

    /// The client the request came on (and is answered on).
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    pub async fn respond(&self, response: Result<Bytes, error::Error>) -> Result<(), String> {
        self.respond_with_headers(response, HeaderMap::new()).await
    }

    /// Count `e` in the endpoint's stats without replying (the requester
    /// has stopped waiting).
    pub fn abandon(&self, e: error::Error) {
        if let Ok(mut c) = self.shared.counters.lock() {
            c.requests += 1;
            c.errors += 1;
            c.processing += self.issued.elapsed();
            c.last_error = Some(e);
        }
    }
}

/// A service instance id: unique per process start.
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}

impl MicroService {
    /// Subscribe the endpoint and the verbs; when this returns, the server
    /// has the subscriptions (a flush round trip), so a request sent now
    /// can reach this replica.
    pub async fn start(client: &Client, cfg: Config) -> Result<Self, String> {
        let id = instance_id();
        let started = time::OffsetDateTime::now_utc();
        let requests = client
            .queue_subscribe(cfg.name.clone(), cfg.queue_group.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut verbs = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in [
                format!("$SRV.{verb}"),
                format!("$SRV.{verb}.{}", cfg.name),
                format!("$SRV.{verb}.{}.{id}", cfg.name),
            ] {
                let sub = client.subscribe(subject).await.map_err(|e| e.to_string())?;
                verbs.push((verb, sub));
            }
        }
        client.flush().await.map_err(|e| e.to_string())?;
        let counters = Arc::new(Mutex::new(Counters::default()));
        let verbs = tokio::spawn(answer_verbs(
            client.clone(),
            cfg,
            id,
            started,
            counters.clone(),
            verbs,
        ));
        Ok(MicroService {
            requests,
            verbs,
            shared: Arc::new(Shared {
                counters,
                client: client.clone(),
            }),
        })
    }

    /// The next request; `None` once drained.
    pub async fn next(&mut self) -> Option<Request> {
        let message = self.requests.next().await?;
        Some(Request {
            message,
            issued: Instant::now(),
            shared: self.shared.clone(),
        })
    }

    /// Stop taking requests without losing one: drain the endpoint (every
    /// request the server routed here before the UNSUB stays readable from
    /// [`MicroService::next`] until it returns `None`) and stop answering
    /// the verbs (discovery no longer lists this replica).
    pub async fn drain(&mut self) {
        self.verbs.abort();
        if let Err(e) = self.requests.drain().await {
            tracing::warn!(error = %e, "cannot drain the endpoint subscription");
        }
    }
}

impl Drop for MicroService {
    fn drop(&mut self) {
        self.verbs.abort();
    }
}

async fn answer_verbs(
    client: Client,
    cfg: Config,
    id: String,
    started: time::OffsetDateTime,
    counters: Arc<Mutex<Counters>>,
    subs: Vec<(&'static str, Subscriber)>,
) {
    let mut all = futures_util::stream::select_all(
        subs.into_iter()
            .map(|(verb, sub)| sub.map(move |m| (verb, m))),
    );
    let endpoint_info = endpoint::Info {
        name: cfg.endpoint.clone(),
        subject: cfg.name.clone(),
        queue_group: cfg.queue_group.clone(),
        metadata: HashMap::new(),
    };
    while let Some((verb, msg)) = all.next().await {
        let Some(reply) = msg.reply else { continue };
        let body = match verb {
            "PING" => serde_json::to_vec(&PingResponse {
                kind: "io.nats.micro.v1.ping_response".into(),
                name: cfg.name.clone(),
                id: id.clone(),
                version: cfg.version.clone(),
                metadata: HashMap::new(),
            }),
            "INFO" => serde_json::to_vec(&Info {
                kind: "io.nats.micro.v1.info_response".into(),
                name: cfg.name.clone(),
                id: id.clone(),
                description: cfg.description.clone(),
                version: cfg.version.clone(),
                metadata: HashMap::new(),
                endpoints: vec![endpoint_info.clone()],
            }),
            _ => {
                let stats = {
                    let c = counters.lock().map_err(|_| ()).ok();
                    let (requests, errors, processing, last_error) = c
                        .map(|c| (c.requests, c.errors, c.processing, c.last_error.clone()))
                        .unwrap_or_default();
                    endpoint::Stats {
                        name: cfg.endpoint.clone(),
                        subject: cfg.name.clone(),
                        requests,
                        errors,
                        processing_time: processing,
                        average_processing_time: processing
                            .checked_div(requests.max(1) as u32)
                            .unwrap_or_default(),
                        last_error,
                        data: None,
                        queue_group: cfg.queue_group.clone(),
                    }
                };
                serde_json::to_vec(&Stats {
                    kind: "io.nats.micro.v1.stats_response".into(),
                    name: cfg.name.clone(),
                    id: id.clone(),
                    version: cfg.version.clone(),
                    started,
                    endpoints: vec![stats],
                })
            }
        };
        if let Ok(body) = body {
            let _ = client.publish(reply, body.into()).await;
        }
    }
}
