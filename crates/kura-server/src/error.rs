//! Errors: `ApiError` is what a request can fail with, and the one place that chooses HTTP
//! status codes and stable error codes (`kura.<area>.<what>`). Internal failures are logged
//! with detail and answered without it.

use std::path::PathBuf;

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("sign in first (no session, or it has expired)")]
    Unauthenticated,
    #[error("the user name or password is wrong, or the account is disabled")]
    SignInFailed,
    #[error("{0}")]
    Forbidden(String),
    #[error("missing or wrong CSRF token or origin; reload the page and try again")]
    Csrf,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("send the request body as application/json")]
    NotJson,
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("too many failed sign-ins; try again in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    #[error("{0}")]
    Timeout(String),
    #[error("the query was cancelled")]
    Cancelled,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error; the operator can find it in the server log")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated | ApiError::SignInFailed => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::Cancelled => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Unprocessable { code, .. } => code,
            ApiError::Unauthenticated => "kura.auth.required",
            ApiError::SignInFailed => "kura.auth.failed",
            ApiError::Forbidden(_) => "kura.forbidden",
            ApiError::Csrf => "kura.csrf",
            ApiError::NotFound(_) => "kura.not_found",
            ApiError::Conflict(_) => "kura.conflict",
            ApiError::TooLarge(_) => "kura.request.too_large",
            ApiError::NotJson => "kura.request.not_json",
            ApiError::RateLimited { .. } => "kura.auth.rate_limited",
            ApiError::Timeout(_) => "kura.query.timeout",
            ApiError::Cancelled => "kura.query.cancelled",
            ApiError::Unavailable(_) => "kura.unavailable",
            ApiError::Internal(_) => "kura.internal",
        }
    }

    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::NotFound(what.into())
    }

    /// An audit append failed: the action must not happen.
    pub fn audit(e: kura_audit::AuditError) -> ApiError {
        tracing::error!("audit append failed, refusing the request: {e}");
        ApiError::Unavailable("the audit log is not accepting entries, so nothing was done".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!("internal error: {detail}");
        }
        let mut body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        // The request's id (also in the `x-request-id` header), so a user can quote it and the
        // operator find the request's log lines.
        if let Some(id) = crate::telemetry::current_request_id() {
            body["error"]["request_id"] = serde_json::Value::String(id.to_string());
        }
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::NotJson,
            JsonRejection::JsonSyntaxError(e) => ApiError::bad(
                "kura.request.malformed_json",
                format!("malformed JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => ApiError::bad(
                "kura.request.invalid",
                format!("invalid request: {}", e.body_text()),
            ),
            other => {
                if other.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(crate::MAX_BODY_BYTES)
                } else {
                    ApiError::bad("kura.request.unreadable", other.body_text())
                }
            }
        }
    }
}

impl From<kura_store::StoreError> for ApiError {
    fn from(e: kura_store::StoreError) -> ApiError {
        use kura_store::StoreError as S;
        match e {
            S::Conflict { .. } => ApiError::Conflict(e.to_string()),
            S::NotFound { what, id } => ApiError::NotFound(format!("{what} {id:?}")),
            S::Invalid { .. } => ApiError::Unprocessable {
                code: "kura.request.invalid",
                message: e.to_string(),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<kura_airlock::AirlockError> for ApiError {
    fn from(e: kura_airlock::AirlockError) -> ApiError {
        use kura_airlock::AirlockError as A;
        match e {
            A::NotFound { .. } => ApiError::NotFound(e.to_string()),
            A::NotAuthor { .. } | A::SelfReview { .. } => ApiError::Forbidden(e.to_string()),
            A::Conflict { .. }
            | A::AlreadyVoted { .. }
            | A::WrongState { .. }
            | A::CheckChanged { .. }
            | A::Raced { .. } => ApiError::Conflict(e.to_string()),
            A::Tampered { .. } => {
                tracing::error!("ALERT: {e}");
                ApiError::Conflict(e.to_string())
            }
            A::Invalid(_) => ApiError::Unprocessable {
                code: "kura.request.invalid",
                message: e.to_string(),
            },
            A::Refused { .. } => ApiError::Unprocessable {
                code: "kura.airlock.refused",
                message: e.to_string(),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("configuration field `{field}`: {why}")]
    Invalid { field: String, why: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("authorization policies: {0}")]
    Policies(String),
    #[error("audit log: {0}")]
    Audit(#[from] kura_audit::AuditError),
    #[error("control-plane store: {0}")]
    Store(#[from] kura_store::StoreError),
    #[error("query engine: {0}")]
    Query(#[from] kura_query::QueryError),
    #[error("OpenID provider: {0}")]
    Oidc(String),
    #[error("airlock: {0}")]
    Airlock(String),
    #[error("{0}")]
    Explorer(String),
    #[error("starting: {0}")]
    Start(String),
    #[error("shutting down: {0}")]
    Shutdown(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
