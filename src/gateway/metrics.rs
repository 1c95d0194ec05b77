//! Prometheus metrics of the gateway: the Go metric names (§8 of the Go
//! reference) with bounded label values: the route pattern, never the raw
//! path; a fixed method set.

use std::sync::Arc;

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `path` label of requests that matched no route.
pub const UNMATCHED: &str = "<unmatched>";

/// Prometheus' default buckets (`prometheus.DefBuckets`), as in Go.
const DEF_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    path: String,
    status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpDurationLabels {
    method: &'static str,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NatsLabels {
    subject: String,
    status: &'static str,
}

/// The gateway's metrics, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpDurationLabels, Histogram>,
    nats_requests: Family<NatsLabels, Counter>,
    in_flight: Gauge,
}

fn histogram() -> Histogram {
    Histogram::new(DEF_BUCKETS)
}

/// A bounded method label: the standard methods, else `OTHER`.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpDurationLabels, Histogram>::new_with_constructor(histogram as fn() -> _);
        let nats_requests = Family::<NatsLabels, Counter>::default();
        let in_flight = Gauge::default();
        registry.register(
            "http_gateway_requests",
            "HTTP requests by method, route pattern and status code",
            http_requests.clone(),
        );
        registry.register(
            "http_gateway_request_duration_seconds",
            "HTTP request duration by method and route pattern",
            http_duration.clone(),
        );
        registry.register(
            "gateway_nats_requests",
            "NATS requests by subject and outcome (success, timeout, error)",
            nats_requests.clone(),
        );
        registry.register(
            "http_gateway_in_flight_requests",
            "HTTP requests being forwarded right now",
            in_flight.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            http_requests,
            http_duration,
            nats_requests,
            in_flight,
        }
    }

    /// Record a finished HTTP request. `path` is a route pattern or [`UNMATCHED`].
    pub fn http(&self, method: &Method, path: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                path: path.to_owned(),
                status_code: status,
            })
            .inc();
        self.http_duration
            .get_or_create(&HttpDurationLabels {
                method,
                path: path.to_owned(),
            })
            .observe(seconds);
    }

    /// Record a NATS request outcome (`success`, `timeout`, `error`).
    pub fn nats(&self, subject: &str, outcome: &'static str) {
        self.nats_requests
            .get_or_create(&NatsLabels {
                subject: subject.to_owned(),
                status: outcome,
            })
            .inc();
    }

    /// Track one in-flight request until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Decrements the in-flight gauge when dropped (also when the client goes away).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_go_metric_names_with_route_pattern_labels() {
        let m = Metrics::new();
        m.http(&Method::POST, "/hello/", 200, 0.01);
        m.nats("hello", "success");
        let text = m.encode();
        assert!(text.contains(
            r#"http_gateway_requests_total{method="POST",path="/hello/",status_code="200"} 1"#
        ));
        assert!(text.contains(
            r#"http_gateway_request_duration_seconds_bucket{le="0.025",method="POST",path="/hello/"} 1"#
        ) || text.contains(r#"http_gateway_request_duration_seconds_bucket{method="POST",path="/hello/",le="0.025"} 1"#));
        assert!(text.contains(r#"gateway_nats_requests_total{subject="hello",status="success"} 1"#));
        assert!(text.contains("http_gateway_in_flight_requests 0"));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(
            method_label(&Method::from_bytes(b"PURGE").unwrap()),
            "OTHER"
        );
        assert_eq!(method_label(&Method::GET), "GET");
    }

    #[test]
    fn in_flight_guard_decrements() {
        let m = Metrics::new();
        let g = m.in_flight();
        assert!(m.encode().contains("http_gateway_in_flight_requests 1"));
        drop(g);
        assert!(m.encode().contains("http_gateway_in_flight_requests 0"));
    }
}
