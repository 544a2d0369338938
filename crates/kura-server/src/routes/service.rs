//! Service endpoints: liveness, readiness, the public client configuration, the OpenAPI
//! document and the web UI's static files (compiled into the binary).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

pub const OPENAPI: &str = include_str!("../../openapi.json");

const INDEX: &str = include_str!("../../ui/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/i18n.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/app.css"),
    ),
];

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(app): State<AppState>) -> Response {
    let store = app.store.clone();
    let audit = app.audit.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let store = match store.ping() {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        let audit = match audit.checkpoint() {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        (store, audit)
    })
    .await;
    let (store, audit) = match checks {
        Ok(c) => c,
        Err(e) => (format!("check failed: {e}"), "unknown".into()),
    };
    let ready = store == "ok" && audit == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "checks": {"store": store, "audit": audit}})),
    )
        .into_response()
}

pub async fn config(State(app): State<AppState>) -> Json<serde_json::Value> {
    let oidc = match &app.config.oidc {
        Some(o) if app.oidc.is_some() => json!({"enabled": true, "label": o.label}),
        _ => json!({"enabled": false}),
    };
    Json(json!({
        "oidc": oidc,
        "local_accounts": app.config.local_accounts,
        "max_rows_shown": app.config.query.max_rows_shown,
        "languages": ["ja", "en"],
    }))
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, body)) => ([(header::CONTENT_TYPE, *mime)], *body).into_response(),
        None => ApiError::not_found(format!("/ui/{file}")).into_response(),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("this path")
}
