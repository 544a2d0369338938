//! The route table and the layers every response passes through: request id, trace context,
//! request span and HTTP metrics (`telemetry.rs`), body size limit, security headers (HSTS, CSP
//! without inline script, frame-ancestors none, no-store), panic catching. `/metrics` is not
//! here: it has its own listener (`metrics.rs`).

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;

use crate::routes::{accounts, auth, catalog, outputs, projects, queries, reviews, service};
use crate::routes::{console, explorer};
use crate::state::AppState;
use crate::MAX_BODY_BYTES;

/// Every route the server answers; `openapi.json` documents exactly these (a test checks).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/v1/config"),
    ("GET", "/api/v1/session"),
    ("POST", "/api/v1/session"),
    ("DELETE", "/api/v1/session"),
    ("GET", "/auth/oidc/start"),
    ("GET", "/auth/oidc/callback"),
    ("GET", "/api/v1/projects"),
    ("POST", "/api/v1/projects"),
    ("GET", "/api/v1/projects/{pid}"),
    ("PUT", "/api/v1/projects/{pid}/members/{uid}"),
    ("DELETE", "/api/v1/projects/{pid}/members/{uid}"),
    ("GET", "/api/v1/projects/{pid}/catalog"),
    ("GET", "/api/v1/projects/{pid}/explorer"),
    ("POST", "/api/v1/projects/{pid}/explorer"),
    ("POST", "/api/v1/projects/{pid}/queries"),
    ("GET", "/api/v1/projects/{pid}/queries"),
    ("POST", "/api/v1/projects/{pid}/queries/{qid}/cancel"),
    ("GET", "/api/v1/projects/{pid}/queries/{qid}/result"),
    ("POST", "/api/v1/projects/{pid}/outputs"),
    ("GET", "/api/v1/projects/{pid}/outputs"),
    ("GET", "/api/v1/projects/{pid}/outputs/{oid}"),
    ("PUT", "/api/v1/projects/{pid}/outputs/{oid}/context"),
    ("POST", "/api/v1/projects/{pid}/outputs/{oid}/submit"),
    ("POST", "/api/v1/projects/{pid}/outputs/{oid}/withdraw"),
    ("GET", "/api/v1/projects/{pid}/outputs/{oid}/report"),
    ("POST", "/api/v1/projects/{pid}/outputs/{oid}/votes"),
    ("GET", "/api/v1/projects/{pid}/outputs/{oid}/download"),
    ("GET", "/api/v1/projects/{pid}/outputs/{oid}/receipt"),
    ("GET", "/api/v1/reviews"),
    ("GET", "/api/v1/catalog"),
    ("GET", "/api/v1/catalog/codes"),
    ("GET", "/api/v1/accounts"),
    ("POST", "/api/v1/accounts"),
    ("POST", "/api/v1/accounts/{uid}/disable"),
    ("GET", "/api/v1/audit/entries"),
    ("GET", "/api/v1/audit/entries/{index}"),
    ("GET", "/api/v1/audit/checkpoint"),
    ("POST", "/api/v1/audit/verify"),
    ("GET", "/api/v1/audit/usage"),
];

/// The web UI's files (served from the binary).
pub const UI_ROUTES: &[&str] = &["/", "/ui/app.js", "/ui/i18n.js", "/ui/app.css"];

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/api/openapi.json", get(service::openapi))
        .route("/api/v1/config", get(service::config))
        .route(
            "/api/v1/session",
            get(auth::session)
                .post(auth::local_sign_in)
                .delete(auth::sign_out),
        )
        .route("/auth/oidc/start", get(auth::oidc_start))
        .route("/auth/oidc/callback", get(auth::oidc_callback))
        .route(
            "/api/v1/projects",
            get(projects::list).post(projects::create),
        )
        .route("/api/v1/projects/{pid}", get(projects::show))
        .route(
            "/api/v1/projects/{pid}/members/{uid}",
            put(projects::set_member).delete(projects::remove_member),
        )
        .route("/api/v1/projects/{pid}/catalog", get(projects::catalog))
        .route(
            "/api/v1/projects/{pid}/explorer",
            get(explorer::form).post(explorer::run),
        )
        .route(
            "/api/v1/projects/{pid}/queries",
            post(queries::run).get(queries::history),
        )
        .route(
            "/api/v1/projects/{pid}/queries/{qid}/cancel",
            post(queries::cancel),
        )
        .route(
            "/api/v1/projects/{pid}/queries/{qid}/result",
            get(queries::result),
        )
        .route(
            "/api/v1/projects/{pid}/outputs",
            post(outputs::stage).get(outputs::list),
        )
        .route("/api/v1/projects/{pid}/outputs/{oid}", get(reviews::show))
        .route(
            "/api/v1/projects/{pid}/outputs/{oid}/context",
            put(reviews::set_context),
        )
        .route(
            "/api/v1/projects/{pid}/outputs/{oid}/submit",
            post(reviews::submit),
        )
        .route(
            "/api/v1/projects/{pid}/outputs/{oid}/withdraw",
            post(reviews::withdraw),
        )
        .route(
            "/api/v1/projects/{pid}/outputs/{oid}/report",
            get(reviews::report),
        )
        .route(
            "/api/v1/projects/{pid}/outputs/{oid}/votes",
            post(reviews::vote),
        )
        .route(
            "/api/v1/projects/{pid}/outputs/{oid}/download",
            get(reviews::download),
        )
        .route(
            "/api/v1/projects/{pid}/outputs/{oid}/receipt",
            get(reviews::receipt),
        )
        .route("/api/v1/reviews", get(reviews::queue))
        .route("/api/v1/catalog", get(catalog::snapshots))
        .route("/api/v1/catalog/codes", get(catalog::codes))
        .route(
            "/api/v1/accounts",
            get(accounts::list).post(accounts::create),
        )
        .route("/api/v1/accounts/{uid}/disable", post(accounts::disable))
        .route("/api/v1/audit/entries", get(console::entries))
        .route("/api/v1/audit/entries/{index}", get(console::entry))
        .route("/api/v1/audit/checkpoint", get(console::checkpoint))
        .route("/api/v1/audit/verify", post(console::verify))
        .route("/api/v1/audit/usage", get(console::usage))
        .route("/", get(service::index))
        .route("/ui/{file}", get(service::asset))
        .fallback(service::not_found)
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost: it sees the matched route and every answer, and the request id it sets
        // is on every log line of the request.
        .layer(middleware::from_fn(crate::telemetry::trace_requests))
        .with_state(app)
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
     object-src 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/ui/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    // Data pages and API answers are never cached; the static UI code may be, briefly.
    set(
        h,
        header::CACHE_CONTROL,
        if is_asset {
            "private, max-age=300"
        } else {
            "no-store"
        },
    );
    response
}
