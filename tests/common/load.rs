//! A bounded steady HTTP load through the gateway, every request recorded
//! (when it was sent, how long it took, what it got), so a test can say
//! which answers are acceptable when.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// What the load waits for an answer before it calls the request hung.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(6);

/// What one request got.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An HTTP status and the start of the body.
    Status(u16, String),
    /// No HTTP answer: connection refused or reset, or no answer within
    /// [`CLIENT_TIMEOUT`].
    Error(String),
}

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Rec {
    pub sent: Instant,
    pub done: Instant,
    pub outcome: Outcome,
}

impl Rec {
    pub fn status(&self) -> Option<u16> {
        match self.outcome {
            Outcome::Status(s, _) => Some(s),
            Outcome::Error(_) => None,
        }
    }
    pub fn ok(&self) -> bool {
        self.status() == Some(200)
    }
    pub fn took(&self) -> Duration {
        self.done - self.sent
    }
    /// Short label for the tallies: `200`, `503: No backend ...`, `error: ...`.
    pub fn label(&self) -> String {
        match &self.outcome {
            Outcome::Status(200, _) => "200".into(),
            Outcome::Status(s, body) => format!("{s}: {}", body.trim()),
            Outcome::Error(e) => format!("error: {e}"),
        }
    }
}

/// Count the records by [`Rec::label`].
pub fn tally<'a>(recs: impl IntoIterator<Item = &'a Rec>) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for r in recs {
        *t.entry(r.label()).or_insert(0) += 1;
    }
    t
}

/// A bounded steady load: `workers` keep-alive HTTP/1.1 connections, each
/// sending at most one request every `every`, every request recorded.
pub struct Load {
    stop: Arc<AtomicBool>,
    recs: Arc<Mutex<Vec<Rec>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, workers: usize, every: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let recs = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|_| {
                let (stop, recs) = (stop.clone(), recs.clone());
                tokio::spawn(async move { worker(addr, every, stop, recs).await })
            })
            .collect();
        Load {
            stop,
            recs,
            workers,
        }
    }

    pub fn records(&self) -> Vec<Rec> {
        self.recs.lock().unwrap().clone()
    }

    /// Wait until `check` holds for the records so far, at most 60 s.
    pub async fn until(&self, what: &str, check: impl Fn(&[Rec]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let recs = self.records();
            if check(&recs) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the load got {:?}",
                tally(&recs)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until `n` requests sent after `since` succeeded.
    pub async fn served_since(&self, n: usize, since: Instant) {
        self.until(&format!("{n} requests served"), |recs| {
            recs.iter().filter(|r| r.sent >= since && r.ok()).count() >= n
        })
        .await
    }

    /// Wait until `n` more requests succeeded.
    pub async fn served(&self, n: usize) {
        self.served_since(n, Instant::now()).await
    }

    pub async fn finish(self) -> Vec<Rec> {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            w.await.unwrap();
        }
        let recs = self.recs.lock().unwrap().clone();
        recs
    }
}

async fn worker(
    addr: SocketAddr,
    every: Duration,
    stop: Arc<AtomicBool>,
    recs: Arc<Mutex<Vec<Rec>>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    let record = |sent: Instant, outcome: Outcome| {
        recs.lock().unwrap().push(Rec {
            sent,
            done: Instant::now(),
            outcome,
        })
    };
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let sent = Instant::now();
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    record(sent, Outcome::Error(format!("connect: {e}")));
                    continue;
                }
            };
            match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
            {
                Ok((sender, c)) => {
                    tokio::spawn(c);
                    conn = Some(sender);
                }
                Err(e) => {
                    record(sent, Outcome::Error(format!("handshake: {e}")));
                    continue;
                }
            }
        }
        let sender = conn.as_mut().unwrap();
        if sender.ready().await.is_err() {
            conn = None;
            continue; // the connection closed between requests: not a request
        }
        let sent = Instant::now();
        let req = http::Request::builder()
            .method("POST")
            .uri("/hello/")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"name":"chaos"}"#)))
            .unwrap();
        let exchange = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match tokio::time::timeout(CLIENT_TIMEOUT, exchange).await {
            Ok(Ok((status, body))) => {
                let body = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
                record(sent, Outcome::Status(status, body));
            }
            Ok(Err(e)) => {
                record(sent, Outcome::Error(format!("request: {e}")));
                conn = None;
            }
            Err(_) => {
                record(
                    sent,
                    Outcome::Error(format!("no answer within {CLIENT_TIMEOUT:?}")),
                );
                conn = None;
            }
        }
    }
}

/// Print how many requests the load sent, failed and the slowest.
pub fn print_figures(what: &str, recs: &[Rec]) {
    let slowest = recs.iter().map(Rec::took).max().unwrap_or_default();
    eprintln!(
        "{what}: {} requests, {} failed, slowest {slowest:?}: {:?}",
        recs.len(),
        recs.iter().filter(|r| !r.ok()).count(),
        tally(recs)
    );
}
