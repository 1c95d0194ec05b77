//! Every failure of a forwarded request becomes an HTTP status and a gRPC
//! code here, and nowhere else.

use http::StatusCode;

use super::routes::BadPath;
use crate::wire::ServiceError;

/// gRPC status codes (grpc/doc/statuscodes.md), owned by the wire contract.
pub use crate::wire::grpc::code as grpc;

/// Why a request could not be answered by a consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The request body is larger than `max_body_bytes`.
    BodyTooLarge,
    /// The request body did not arrive within `body_read_timeout_seconds`.
    BodyTimeout,
    /// The request path is rejected before routing (see
    /// [`super::routes::check_path`]).
    BadPath(BadPath),
    /// The encoded request is larger than the NATS server's max payload.
    PayloadTooLarge,
    /// The request cannot be expressed in BHTTP within the Go decoder's limits.
    Unencodable,
    /// `max_in_flight` requests are already waiting.
    Overloaded,
    /// The gateway is not connected to NATS right now.
    Disconnected,
    /// No reply within the route's timeout.
    Timeout,
    /// No consumer subscribed to the subject.
    NoResponders,
    /// Any other NATS failure (details are logged, never sent to clients).
    Nats,
    /// The reply was not a BHTTP response.
    BadReply,
    /// The consumer answered with a NATS Micro error.
    Consumer(ServiceError),
    /// gRPC: no `grpc:` route for the service.
    NotRouted(String),
    /// gRPC: the path is not `/pkg.Service/Method`.
    MalformedMethod(String),
    /// gRPC: the client sent several messages (client-streaming or bidi).
    StreamingRequest,
    /// gRPC: a compressed request (no compression is negotiated).
    Compression(String),
    /// gRPC: a `grpc-timeout` header that does not parse.
    BadTimeout,
    /// gRPC: a response stream from the consumer broke off (lost frame).
    StreamBroken,
    /// The client went away or cancelled the call.
    Cancelled,
}

impl Failure {
    /// The failure of a NATS request that got no reply. Which kinds are the
    /// gateway's own fault (`Nats`) is decided here only; the caller logs
    /// those.
    pub fn of_request(kind: async_nats::RequestErrorKind) -> Self {
        use async_nats::RequestErrorKind as K;
        match kind {
            K::TimedOut => Failure::Timeout,
            K::NoResponders => Failure::NoResponders,
            K::MaxPayloadExceeded => Failure::PayloadTooLarge,
            K::InvalidSubject | K::Other => Failure::Nats,
        }
    }

    /// The failure of a NATS publish (a gRPC call's request).
    pub fn of_publish(kind: async_nats::client::PublishErrorKind) -> Self {
        use async_nats::client::PublishErrorKind as K;
        match kind {
            K::MaxPayloadExceeded => Failure::PayloadTooLarge,
            _ => Failure::Nats,
        }
    }
}

/// What the client gets for a [`Failure`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rescue {
    pub http: StatusCode,
    pub grpc: u16,
    pub message: String,
    /// `status` label of `gateway_nats_requests_total`: success, timeout or error.
    pub nats_outcome: &'static str,
}

/// The single error table.
pub fn rescue(failure: &Failure) -> Rescue {
    use grpc::*;
    let fixed = |http: StatusCode, grpc: u16, message: &str, nats_outcome| Rescue {
        http,
        grpc,
        message: message.to_owned(),
        nats_outcome,
    };
    match failure {
        Failure::BodyTooLarge => fixed(
            StatusCode::PAYLOAD_TOO_LARGE,
            RESOURCE_EXHAUSTED,
            "Request body too large",
            "error",
        ),
        Failure::BodyTimeout => fixed(
            StatusCode::REQUEST_TIMEOUT,
            DEADLINE_EXCEEDED,
            "Request body not received in time",
            "error",
        ),
        Failure::BadPath(bad) => Rescue {
            http: StatusCode::BAD_REQUEST,
            grpc: INVALID_ARGUMENT,
            message: format!("Bad Request: {} in the path", bad.reason()),
            nats_outcome: "error",
        },
        Failure::PayloadTooLarge => fixed(
            StatusCode::PAYLOAD_TOO_LARGE,
            RESOURCE_EXHAUSTED,
            "Request too large for the NATS max payload",
            "error",
        ),
        Failure::Unencodable => fixed(
            StatusCode::BAD_REQUEST,
            INVALID_ARGUMENT,
            "Request exceeds the protocol limits",
            "error",
        ),
        Failure::Overloaded => fixed(
            StatusCode::SERVICE_UNAVAILABLE,
            RESOURCE_EXHAUSTED,
            "Gateway overloaded, retry later",
            "error",
        ),
        Failure::Disconnected => fixed(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "Gateway not connected to NATS",
            "error",
        ),
        Failure::Timeout => fixed(
            StatusCode::GATEWAY_TIMEOUT,
            DEADLINE_EXCEEDED,
            "Request timed out waiting for backend processor",
            "timeout",
        ),
        Failure::NoResponders => fixed(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "No backend service available",
            "error",
        ),
        Failure::Nats => fixed(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL,
            "Internal server error (NATS communication)",
            "error",
        ),
        Failure::BadReply => fixed(
            StatusCode::BAD_GATEWAY,
            INTERNAL,
            "Failed to decode backend response",
            "success",
        ),
        Failure::NotRouted(service) => Rescue {
            http: StatusCode::NOT_FOUND,
            grpc: UNIMPLEMENTED,
            message: format!("service {service} not implemented or routed"),
            nats_outcome: "error",
        },
        Failure::MalformedMethod(path) => Rescue {
            http: StatusCode::BAD_REQUEST,
            grpc: UNIMPLEMENTED,
            message: format!("malformed method name: {path:?}"),
            nats_outcome: "error",
        },
        Failure::StreamingRequest => fixed(
            StatusCode::NOT_IMPLEMENTED,
            UNIMPLEMENTED,
            "client-streaming and bidirectional RPCs are not supported by the narun gateway \
             (unary and server-streaming only)",
            "error",
        ),
        Failure::Compression(encoding) => Rescue {
            http: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            grpc: UNIMPLEMENTED,
            message: format!("grpc-encoding {encoding:?} is not supported (identity only)"),
            nats_outcome: "error",
        },
        Failure::BadTimeout => fixed(
            StatusCode::BAD_REQUEST,
            INTERNAL,
            "malformed grpc-timeout",
            "error",
        ),
        Failure::StreamBroken => fixed(
            StatusCode::BAD_GATEWAY,
            INTERNAL,
            "Response stream from the backend was interrupted",
            "error",
        ),
        Failure::Cancelled => fixed(
            StatusCode::from_u16(499).expect("499 is a valid status"),
            CANCELLED,
            "Request cancelled by the client",
            "error",
        ),
        Failure::Consumer(e) => Rescue {
            http: consumer_http_status(e.code),
            grpc: consumer_grpc_code(e.code),
            message: e.message.clone(),
            nats_outcome: "success",
        },
    }
}

/// `Nats-Service-Error-Code` → HTTP status. Consumers send HTTP statuses
/// (400, 500, ...) or, from gRPC handlers, gRPC code numbers (0..=16).
fn consumer_http_status(code: u32) -> StatusCode {
    use grpc::*;
    let http = match code {
        400..=599 => code as u16,
        c if c <= 16 => match c as u16 {
            CANCELLED => 499,
            INVALID_ARGUMENT | FAILED_PRECONDITION | OUT_OF_RANGE => 400,
            DEADLINE_EXCEEDED => 504,
            NOT_FOUND => 404,
            ALREADY_EXISTS | ABORTED => 409,
            PERMISSION_DENIED => 403,
            RESOURCE_EXHAUSTED => 429,
            UNIMPLEMENTED => 501,
            UNAVAILABLE => 503,
            UNAUTHENTICATED => 401,
            // OK in an error reply, UNKNOWN, INTERNAL, DATA_LOSS
            _ => 500,
        },
        _ => 502,
    };
    StatusCode::from_u16(http).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// `Nats-Service-Error-Code` → gRPC code. Never OK: an error reply is an error.
fn consumer_grpc_code(code: u32) -> u16 {
    use grpc::*;
    match code {
        0 => UNKNOWN,
        c if c <= 16 => c as u16,
        400 => INVALID_ARGUMENT,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => NOT_FOUND,
        409 => ALREADY_EXISTS,
        429 => RESOURCE_EXHAUSTED,
        499 => CANCELLED,
        501 => UNIMPLEMENTED,
        503 => UNAVAILABLE,
        504 => DEADLINE_EXCEEDED,
        500..=599 => INTERNAL,
        _ => UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_errors_map_to_failures() {
        use async_nats::client::PublishErrorKind as P;
        use async_nats::RequestErrorKind as R;
        for (kind, want) in [
            (R::TimedOut, Failure::Timeout),
            (R::NoResponders, Failure::NoResponders),
            (R::MaxPayloadExceeded, Failure::PayloadTooLarge),
            (R::InvalidSubject, Failure::Nats),
            (R::Other, Failure::Nats),
        ] {
            assert_eq!(Failure::of_request(kind), want, "{kind:?}");
        }
        assert_eq!(
            Failure::of_publish(P::MaxPayloadExceeded),
            Failure::PayloadTooLarge
        );
        assert_eq!(Failure::of_publish(P::Send), Failure::Nats);
    }

    fn consumer(code: u32) -> Failure {
        Failure::Consumer(ServiceError {
            code,
            message: "msg".into(),
        })
    }

    #[test]
    fn the_error_table() {
        use grpc::*;
        let table: &[(Failure, u16, u16, &str)] = &[
            (Failure::Timeout, 504, DEADLINE_EXCEEDED, "timeout"),
            (Failure::NoResponders, 503, UNAVAILABLE, "error"),
            (Failure::Disconnected, 503, UNAVAILABLE, "error"),
            (Failure::PayloadTooLarge, 413, RESOURCE_EXHAUSTED, "error"),
            (Failure::BodyTooLarge, 413, RESOURCE_EXHAUSTED, "error"),
            (Failure::BodyTimeout, 408, DEADLINE_EXCEEDED, "error"),
            (
                Failure::BadPath(BadPath::EncodedDotSegment),
                400,
                INVALID_ARGUMENT,
                "error",
            ),
            (Failure::Overloaded, 503, RESOURCE_EXHAUSTED, "error"),
            (Failure::Nats, 500, INTERNAL, "error"),
            (Failure::BadReply, 502, INTERNAL, "success"),
            (Failure::Unencodable, 400, INVALID_ARGUMENT, "error"),
            // consumer errors keep their meaning (Go turns them into 502 / OK)
            (consumer(400), 400, INVALID_ARGUMENT, "success"),
            (consumer(404), 404, NOT_FOUND, "success"),
            (consumer(500), 500, INTERNAL, "success"),
            (consumer(501), 501, UNIMPLEMENTED, "success"),
            (consumer(503), 503, UNAVAILABLE, "success"),
            (consumer(418), 418, UNKNOWN, "success"),
            (consumer(3), 400, INVALID_ARGUMENT, "success"),
            (consumer(5), 404, NOT_FOUND, "success"),
            (consumer(14), 503, UNAVAILABLE, "success"),
            (consumer(16), 401, UNAUTHENTICATED, "success"),
            (consumer(0), 500, UNKNOWN, "success"),
            (consumer(200), 502, UNKNOWN, "success"),
            (consumer(9999), 502, UNKNOWN, "success"),
            (consumer(12), 501, UNIMPLEMENTED, "success"),
            (consumer(4), 504, DEADLINE_EXCEEDED, "success"),
            (
                Failure::NotRouted("x.Y".into()),
                404,
                UNIMPLEMENTED,
                "error",
            ),
            (
                Failure::MalformedMethod("/x".into()),
                400,
                UNIMPLEMENTED,
                "error",
            ),
            (Failure::StreamingRequest, 501, UNIMPLEMENTED, "error"),
            (
                Failure::Compression("gzip".into()),
                415,
                UNIMPLEMENTED,
                "error",
            ),
            (Failure::BadTimeout, 400, INTERNAL, "error"),
            (Failure::StreamBroken, 502, INTERNAL, "error"),
            (Failure::Cancelled, 499, CANCELLED, "error"),
        ];
        for (failure, http, grpc, outcome) in table {
            let r = rescue(failure);
            assert_eq!(r.http.as_u16(), *http, "{failure:?}");
            assert_eq!(r.grpc, *grpc, "{failure:?}");
            assert_eq!(r.nats_outcome, *outcome, "{failure:?}");
        }
    }

    #[test]
    fn no_error_is_ever_grpc_ok() {
        for code in 0..1000 {
            assert_ne!(rescue(&consumer(code)).grpc, grpc::OK, "code {code}");
        }
        for f in [
            Failure::BodyTooLarge,
            Failure::BodyTimeout,
            Failure::BadPath(BadPath::Nul),
            Failure::PayloadTooLarge,
            Failure::Unencodable,
            Failure::Overloaded,
            Failure::Disconnected,
            Failure::Timeout,
            Failure::NoResponders,
            Failure::Nats,
            Failure::BadReply,
            Failure::NotRouted("a.B".into()),
            Failure::MalformedMethod("/".into()),
            Failure::StreamingRequest,
            Failure::Compression("gzip".into()),
            Failure::BadTimeout,
            Failure::StreamBroken,
            Failure::Cancelled,
        ] {
            let r = rescue(&f);
            assert_ne!(r.grpc, grpc::OK, "{f:?}");
            assert!(r.http.as_u16() >= 400, "{f:?}");
        }
    }

    #[test]
    fn consumer_message_reaches_the_client_and_internals_do_not() {
        assert_eq!(rescue(&consumer(400)).message, "msg");
        assert_eq!(
            rescue(&Failure::Nats).message,
            "Internal server error (NATS communication)"
        );
    }
}
