//! Prometheus metrics of the gateway: the Go metric names (§8 of the Go
//! reference) with bounded label values: the route pattern, never the raw
//! path; a fixed method set. gRPC methods are bounded too: a method label is
//! the full `/pkg.Service/Method` of a routed service, at most
//! [`MAX_GRPC_METHODS`] distinct ones (then [`OTHER`]), and [`UNROUTED`] for
//! calls to services without a route.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `path` label of requests that matched no route.
pub const UNMATCHED: &str = "<unmatched>";
/// `grpc_method` label of calls to services without a route (or malformed).
pub const UNROUTED: &str = "<unrouted>";
/// `grpc_method` label once [`MAX_GRPC_METHODS`] distinct methods are known.
pub const OTHER: &str = "<other>";
/// The most distinct `grpc_method` label values.
pub const MAX_GRPC_METHODS: usize = 1024;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    grpc_method: String,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcDurationLabels {
    grpc_method: String,
}

/// The method labels, in [`method_index`] order.
const METHOD_LABELS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// The metric handles of one HTTP route, taken from the families on first
/// use (the exposition shows a series once it has a sample, as before):
/// a request answered 200 costs a few atomic adds, no label built, hashed
/// or looked up.
#[derive(Default)]
struct RouteCache {
    /// Per method label: its duration histogram and its 200 counter.
    http: [OnceLock<(Histogram, Counter)>; METHOD_LABELS.len()],
    /// The route's subject, outcome `success`.
    nats_success: OnceLock<Counter>,
}

/// The gateway's metrics, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpDurationLabels, Histogram>,
    nats_requests: Family<NatsLabels, Counter>,
    in_flight: Gauge,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_duration: Family<GrpcDurationLabels, Histogram>,
    grpc_in_flight: Gauge,
    connections: Gauge,
    grpc_methods: Arc<Mutex<HashSet<String>>>,
    /// Per HTTP route, by its index in the route table.
    routes: Arc<[RouteCache]>,
}

fn histogram() -> Histogram {
    Histogram::new(DEF_BUCKETS)
}

/// A bounded method label: the standard methods, else `OTHER`.
pub fn method_label(m: &Method) -> &'static str {
    METHOD_LABELS[method_index(m)]
}

/// The index of `m`'s label in [`METHOD_LABELS`].
fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Metrics {
    /// The metrics of a gateway with `http_routes` HTTP routes (the
    /// indexes [`Metrics::http_routed`] takes).
    pub fn new(http_routes: usize) -> Self {
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
            "HTTP requests being handled right now (request body read included)",
            in_flight.clone(),
        );
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        let grpc_duration =
            Family::<GrpcDurationLabels, Histogram>::new_with_constructor(histogram as fn() -> _);
        let grpc_in_flight = Gauge::default();
        registry.register(
            "grpc_gateway_requests",
            "gRPC calls by method and status code",
            grpc_requests.clone(),
        );
        registry.register(
            "grpc_gateway_request_duration_seconds",
            "gRPC call duration (until the end of the response stream) by method",
            grpc_duration.clone(),
        );
        registry.register(
            "grpc_gateway_in_flight_requests",
            "gRPC calls being handled right now (request read included)",
            grpc_in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "gateway_open_connections",
            "Client connections open on the HTTP and gRPC listeners (at most max_connections)",
            connections.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            http_requests,
            http_duration,
            nats_requests,
            in_flight,
            grpc_requests,
            grpc_duration,
            grpc_in_flight,
            connections,
            grpc_methods: Arc::default(),
            routes: (0..http_routes).map(|_| RouteCache::default()).collect(),
        }
    }

    /// The `grpc_method` label for a call to a routed service: the method
    /// itself while fewer than [`MAX_GRPC_METHODS`] are known, else [`OTHER`].
    pub fn grpc_method_label(&self, method: &str) -> String {
        let mut known = self.grpc_methods.lock().unwrap_or_else(|e| e.into_inner());
        if known.contains(method) {
            return method.to_owned();
        }
        if known.len() >= MAX_GRPC_METHODS {
            return OTHER.to_owned();
        }
        known.insert(method.to_owned());
        method.to_owned()
    }

    /// Record a finished gRPC call with its final status code.
    pub fn grpc(&self, method: &str, code: u16, seconds: f64) {
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                grpc_method: method.to_owned(),
                grpc_code: crate::wire::grpc::code_name(code),
            })
            .inc();
        self.grpc_duration
            .get_or_create(&GrpcDurationLabels {
                grpc_method: method.to_owned(),
            })
            .observe(seconds);
    }

    /// Track one in-flight gRPC call until the guard drops.
    pub fn grpc_in_flight(&self) -> InFlight {
        self.grpc_in_flight.inc();
        InFlight(self.grpc_in_flight.clone())
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

    /// Record a finished HTTP request of the route at `index` (its
    /// `pattern`): [`Metrics::http`], with the route's handles cached.
    pub fn http_routed(
        &self,
        index: usize,
        method: &Method,
        pattern: &str,
        status: u16,
        seconds: f64,
    ) {
        let Some(cache) = self.routes.get(index).filter(|_| status == 200) else {
            return self.http(method, pattern, status, seconds);
        };
        let m = method_index(method);
        let (duration, ok) = cache.http[m].get_or_init(|| {
            let method = METHOD_LABELS[m];
            let ok = self
                .http_requests
                .get_or_create(&HttpLabels {
                    method,
                    path: pattern.to_owned(),
                    status_code: 200,
                })
                .clone();
            let duration = self
                .http_duration
                .get_or_create(&HttpDurationLabels {
                    method,
                    path: pattern.to_owned(),
                })
                .clone();
            (duration, ok)
        });
        ok.inc();
        duration.observe(seconds);
    }

    /// Record a successful NATS request of the route at `index` (its
    /// `subject`): [`Metrics::nats`] with `success`, the handle cached.
    pub fn nats_routed_success(&self, index: usize, subject: &str) {
        let Some(cache) = self.routes.get(index) else {
            return self.nats(subject, "success");
        };
        cache
            .nats_success
            .get_or_init(|| {
                self.nats_requests
                    .get_or_create(&NatsLabels {
                        subject: subject.to_owned(),
                        status: "success",
                    })
                    .clone()
            })
            .inc();
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

    /// Track one open client connection until the guard drops.
    pub fn connection(&self) -> InFlight {
        self.connections.inc();
        InFlight(self.connections.clone())
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Decrements its gauge (in-flight requests, open connections) when
/// dropped, also when the client goes away.
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
        let m = Metrics::new(0);
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
    fn cached_route_handles_feed_the_same_series() {
        let m = Metrics::new(2);
        // Nothing shown before a request.
        assert!(!m.encode().contains("/r/"), "{}", m.encode());
        // Route 0 and 1 share a pattern (GET and POST routes of /r/).
        m.http_routed(0, &Method::GET, "/r/", 200, 0.001);
        m.http_routed(1, &Method::POST, "/r/", 200, 0.001);
        m.http_routed(1, &Method::POST, "/r/", 200, 0.001);
        m.http(&Method::POST, "/r/", 200, 0.001);
        m.http_routed(1, &Method::POST, "/r/", 504, 0.001);
        // An index beyond the table: uncached, still counted.
        m.http_routed(7, &Method::POST, "/r/", 200, 0.001);
        m.nats_routed_success(1, "r");
        m.nats_routed_success(1, "r");
        m.nats("r", "success");
        m.nats("r", "timeout");
        let text = m.encode();
        for line in [
            r#"http_gateway_requests_total{method="GET",path="/r/",status_code="200"} 1"#,
            r#"http_gateway_requests_total{method="POST",path="/r/",status_code="200"} 4"#,
            r#"http_gateway_requests_total{method="POST",path="/r/",status_code="504"} 1"#,
            r#"http_gateway_request_duration_seconds_count{method="POST",path="/r/"} 5"#,
            r#"gateway_nats_requests_total{subject="r",status="success"} 3"#,
            r#"gateway_nats_requests_total{subject="r",status="timeout"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn grpc_metrics_use_go_names_and_bounded_labels() {
        let m = Metrics::new(0);
        let label = m.grpc_method_label("/hello.v1.Greeter/SayHello");
        m.grpc(&label, 3, 0.01);
        m.grpc(UNROUTED, 12, 0.001);
        let text = m.encode();
        assert!(text.contains(
            r#"grpc_gateway_requests_total{grpc_method="/hello.v1.Greeter/SayHello",grpc_code="InvalidArgument"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"grpc_gateway_requests_total{grpc_method="<unrouted>",grpc_code="Unimplemented"} 1"#
        ));
        assert!(text
            .contains("grpc_gateway_request_duration_seconds_count{grpc_method=\"<unrouted>\"} 1"));
        for i in 0..MAX_GRPC_METHODS + 10 {
            m.grpc_method_label(&format!("/a.B/M{i}"));
        }
        assert_eq!(m.grpc_method_label("/a.B/new"), OTHER);
        assert_eq!(
            m.grpc_method_label("/hello.v1.Greeter/SayHello"),
            "/hello.v1.Greeter/SayHello"
        );
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
        let m = Metrics::new(0);
        let g = m.in_flight();
        assert!(m.encode().contains("http_gateway_in_flight_requests 1"));
        drop(g);
        assert!(m.encode().contains("http_gateway_in_flight_requests 0"));
    }
}
