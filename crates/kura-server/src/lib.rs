//! The HTTPS service (docs/server.md): sign-in (local accounts and OpenID Connect), sessions,
//! projects and members, the workspace API (catalog, sandboxed queries, history, staged
//! outputs), accounts, the OpenAPI document and the web UI.
//!
//! This is the only crate that knows HTTP. Every handler goes: identify the caller (session,
//! CSRF) -> authorize with the Cedar policies -> append the audit entry (durable) -> act ->
//! answer. Status codes are chosen in `error.rs` only.

pub mod access;
pub mod bench;
pub mod client_addr;
pub mod config;
pub mod error;
pub mod explorer;
pub mod metrics;
pub mod otlp;
mod ratelimit;
pub mod results;
pub mod router;
mod routes;
pub mod serve;
pub mod session;
pub mod snapshots;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod usage;

use axum::extract::{FromRequest, Request};
use kura_audit::Event;

pub use config::ServerConfig;
pub use error::{ApiError, ConfigError, ServeError};
pub use serve::{serve, Server};

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body whose rejections (malformed, wrong type, too large, not JSON) are `ApiError`s.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(v))
    }
}

/// Appends an audit entry and waits until it is durable; an error means the action the
/// entry describes must not happen. Timed into `kura_audit_append_duration_seconds` and traced
/// as a child span of the request (`telemetry.rs`).
pub async fn audit(app: &state::AppState, event: Event) -> Result<(), ApiError> {
    use tracing::Instrument;
    let kind = event.kind;
    let payload = if telemetry::kind_counts_payload(kind) {
        event.payload.clone()
    } else {
        serde_json::Value::Null
    };
    let started = std::time::Instant::now();
    let result = app
        .audit
        .append_async(event)
        .instrument(telemetry::audit_span(metrics::AppendSource::Server))
        .await;
    let m = metrics::global();
    m.audit_append(
        metrics::AppendSource::Server,
        result.is_ok(),
        started.elapsed(),
    );
    if result.is_ok() {
        m.audited(kind, &payload);
    }
    result.map(|_| ()).map_err(ApiError::audit)
}
