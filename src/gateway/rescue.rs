//! Every failure of a forwarded request becomes an HTTP status and a gRPC
//! code here, and nowhere else.

use http::StatusCode;

use crate::wire::ServiceError;

/// gRPC status codes (grpc/doc/statuscodes.md).
pub mod grpc {
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

/// Why a request could not be answered by a consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The request body is larger than `max_body_bytes`.
    BodyTooLarge,
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
