//! The one error type of couchgate and its mapping to CouchDB-shaped responses.
//!
//! Every variant records who is at fault: the client (4xx), the backend (502/503/504 or the
//! backend's own CouchDB error, passed on), or couchgate itself (500). The mapping to status and
//! CouchDB error name lives in [`Error::status`] and [`Error::name`] and nowhere else.

use http::StatusCode;
use serde_json::json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- the client's fault ---
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    IllegalDocId(String),
    /// A document CouchDB's document parser refuses (`Bad special document member`, ...).
    #[error("{0}")]
    DocValidation(String),
    /// A view or `_all_docs` query parameter CouchDB cannot use.
    #[error("{0}")]
    QueryParse(String),
    #[error("{0}")]
    IllegalPartition(String),
    #[error("{0}")]
    IllegalDatabaseName(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    FileExists(String),
    /// An attachment stub that names no attachment of the revision it builds on.
    #[error("{0}")]
    MissingStub(String),
    #[error("{0}")]
    TooLarge(String),
    /// The request body stopped arriving.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    BadContentType(String),
    #[error("{0}")]
    NotImplemented(String),
    /// A Mango query or index CouchDB would refuse, with Mango's own error name
    /// (`bad_arg`, `invalid_operator`, `missing_required_key`, ...).
    #[error("{reason}")]
    Mango { name: &'static str, reason: String },
    /// Too many failed authentication attempts; answered with `Retry-After` (seconds).
    #[error("{reason}")]
    TooManyRequests { reason: String, retry_after: u64 },

    // --- the backend's fault ---
    /// The backend answered with a CouchDB error; passed on with its status.
    #[error("backend answered {status}: {error}: {reason}")]
    Backend {
        status: StatusCode,
        error: String,
        reason: String,
    },
    /// The backend could not be reached.
    #[error("{0}")]
    BackendUnavailable(String),
    /// The backend did not answer in time.
    #[error("{0}")]
    BackendTimeout(String),
    /// The backend answered something that is not CouchDB's protocol.
    #[error("{0}")]
    BadGateway(String),

    // --- our own fault ---
    /// couchgate cannot answer yet (its changes index is still being built); retry shortly.
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Internal(String),
}

/// Who caused an error; decides the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Backend,
    Couchgate,
}

impl Error {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Error::BadRequest(reason.into())
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Error::NotFound(reason.into())
    }

    pub fn fault(&self) -> Fault {
        match self {
            Error::BadRequest(_)
            | Error::IllegalDocId(_)
            | Error::DocValidation(_)
            | Error::QueryParse(_)
            | Error::IllegalPartition(_)
            | Error::IllegalDatabaseName(_)
            | Error::Unauthorized(_)
            | Error::Forbidden(_)
            | Error::NotFound(_)
            | Error::MethodNotAllowed(_)
            | Error::Conflict(_)
            | Error::FileExists(_)
            | Error::MissingStub(_)
            | Error::TooLarge(_)
            | Error::RequestTimeout(_)
            | Error::BadContentType(_)
            | Error::NotImplemented(_)
            | Error::Mango { .. }
            | Error::TooManyRequests { .. } => Fault::Client,
            Error::Backend { status, .. } if status.is_client_error() => Fault::Client,
            Error::Backend { .. }
            | Error::BackendUnavailable(_)
            | Error::BackendTimeout(_)
            | Error::BadGateway(_) => Fault::Backend,
            Error::NotReady(_) | Error::Internal(_) => Fault::Couchgate,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_)
            | Error::IllegalDocId(_)
            | Error::DocValidation(_)
            | Error::QueryParse(_)
            | Error::IllegalPartition(_)
            | Error::IllegalDatabaseName(_)
            | Error::Mango { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::FileExists(_) | Error::MissingStub(_) => StatusCode::PRECONDITION_FAILED,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::BadContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Backend { status, .. } => *status,
            Error::BackendUnavailable(_) | Error::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::BackendTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// CouchDB's error name, the `"error"` member of the body.
    pub fn name(&self) -> &str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::IllegalDocId(_) => "illegal_docid",
            Error::DocValidation(_) => "doc_validation",
            Error::QueryParse(_) => "query_parse_error",
            Error::IllegalPartition(_) => "illegal_partition",
            Error::IllegalDatabaseName(_) => "illegal_database_name",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Conflict(_) => "conflict",
            Error::FileExists(_) => "file_exists",
            Error::MissingStub(_) => "missing_stub",
            Error::TooLarge(_) => "too_large",
            Error::RequestTimeout(_) => "request_timeout",
            Error::BadContentType(_) => "bad_content_type",
            Error::NotImplemented(_) => "not_implemented",
            Error::Mango { name, .. } => name,
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::Backend { error, .. } => error,
            Error::BackendUnavailable(_) | Error::NotReady(_) => "service_unavailable",
            Error::BackendTimeout(_) => "gateway_timeout",
            Error::BadGateway(_) => "bad_gateway",
            Error::Internal(_) => "internal_server_error",
        }
    }

    /// The `"reason"` member of the body.
    pub fn reason(&self) -> String {
        match self {
            Error::Backend { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }

    /// The same error with the reason of a backend's CouchDB error rewritten (backing names
    /// in it become the client's); any other error as it is.
    pub fn with_backend_reason(self, rewrite: impl FnOnce(&str) -> String) -> Error {
        match self {
            Error::Backend {
                status,
                error,
                reason,
            } => Error::Backend {
                status,
                error,
                reason: rewrite(&reason),
            },
            other => other,
        }
    }

    /// The CouchDB-shaped JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": self.name(), "reason": self.reason() })
    }
}

impl From<crate::mango::MangoError> for Error {
    fn from(e: crate::mango::MangoError) -> Self {
        Error::Mango {
            name: e.name,
            reason: e.reason,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::BadRequest(format!("invalid JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the status, name and fault of every variant.
    #[test]
    fn every_variant_maps_to_couchdb() {
        let s = String::new;
        let cases: Vec<(Error, u16, &str, Fault)> = vec![
            (Error::BadRequest(s()), 400, "bad_request", Fault::Client),
            (
                Error::Mango {
                    name: "bad_arg",
                    reason: s(),
                },
                400,
                "bad_arg",
                Fault::Client,
            ),
            (
                Error::IllegalDocId(s()),
                400,
                "illegal_docid",
                Fault::Client,
            ),
            (
                Error::DocValidation(s()),
                400,
                "doc_validation",
                Fault::Client,
            ),
            (
                Error::QueryParse(s()),
                400,
                "query_parse_error",
                Fault::Client,
            ),
            (
                Error::IllegalPartition(s()),
                400,
                "illegal_partition",
                Fault::Client,
            ),
            (
                Error::IllegalDatabaseName(s()),
                400,
                "illegal_database_name",
                Fault::Client,
            ),
            (Error::Unauthorized(s()), 401, "unauthorized", Fault::Client),
            (Error::Forbidden(s()), 403, "forbidden", Fault::Client),
            (Error::NotFound(s()), 404, "not_found", Fault::Client),
            (
                Error::MethodNotAllowed(s()),
                405,
                "method_not_allowed",
                Fault::Client,
            ),
            (Error::Conflict(s()), 409, "conflict", Fault::Client),
            (Error::FileExists(s()), 412, "file_exists", Fault::Client),
            (Error::MissingStub(s()), 412, "missing_stub", Fault::Client),
            (Error::TooLarge(s()), 413, "too_large", Fault::Client),
            (
                Error::RequestTimeout(s()),
                408,
                "request_timeout",
                Fault::Client,
            ),
            (
                Error::BadContentType(s()),
                415,
                "bad_content_type",
                Fault::Client,
            ),
            (
                Error::NotImplemented(s()),
                501,
                "not_implemented",
                Fault::Client,
            ),
            (
                Error::TooManyRequests {
                    reason: s(),
                    retry_after: 1,
                },
                429,
                "too_many_requests",
                Fault::Client,
            ),
            (
                Error::Backend {
                    status: StatusCode::CONFLICT,
                    error: "conflict".into(),
                    reason: "Document update conflict.".into(),
                },
                409,
                "conflict",
                Fault::Client,
            ),
            (
                Error::Backend {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    error: "unknown_error".into(),
                    reason: "x".into(),
                },
                500,
                "unknown_error",
                Fault::Backend,
            ),
            (
                Error::BackendUnavailable(s()),
                503,
                "service_unavailable",
                Fault::Backend,
            ),
            (
                Error::BackendTimeout(s()),
                504,
                "gateway_timeout",
                Fault::Backend,
            ),
            (Error::BadGateway(s()), 502, "bad_gateway", Fault::Backend),
            (
                Error::NotReady(s()),
                503,
                "service_unavailable",
                Fault::Couchgate,
            ),
            (
                Error::Internal(s()),
                500,
                "internal_server_error",
                Fault::Couchgate,
            ),
        ];
        for (err, status, name, fault) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.name(), name, "{err:?}");
            assert_eq!(err.fault(), fault, "{err:?}");
            assert_eq!(err.body()["error"], name);
        }
    }
}
