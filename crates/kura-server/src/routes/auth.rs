//! Sign-in and sign-out: local accounts (argon2id, rate limited) and OpenID Connect
//! (authorization code flow with PKCE, state and nonce; the pending login is kept server-side
//! and used once). Every attempt, failed or not, is audited; a new session id is issued at
//! every sign-in and the previous session, if any, is ended (no fixation).

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use kura_audit::{Event, EventKind};
use kura_identity::oidc::PendingLogin;
use kura_identity::password;
use kura_store::Account;
use serde::Deserialize;
use serde_json::json;

use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::session::{
    check_origin, cookie, set_cookie, Caller, CSRF_HEADER, LOGIN_COOKIE, LOGIN_CSRF, SESSION_COOKIE,
};
use crate::state::AppState;
use crate::{audit, ApiJson};

pub async fn session(caller: Caller) -> Json<serde_json::Value> {
    Json(session_body(&caller.account, &caller.session))
}

fn session_body(account: &Account, session: &kura_store::Session) -> serde_json::Value {
    json!({
        "user": {"id": account.id, "name": account.name, "roles": account.roles},
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSignIn {
    username: String,
    password: String,
}

pub async fn local_sign_in(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LocalSignIn>,
) -> Result<Response, ApiError> {
    check_origin(&headers, &app.origin)?;
    if headers.get(CSRF_HEADER).map(|v| v.as_bytes()) != Some(LOGIN_CSRF.as_bytes()) {
        return Err(ApiError::Csrf);
    }
    if !app.config.local_accounts {
        return Err(ApiError::not_found("local sign-in"));
    }
    let username = body.username.trim().to_lowercase();
    if username.is_empty() || username.len() > 64 || body.password.len() > 1024 {
        return Err(ApiError::bad(
            "kura.request.invalid",
            "give a user name (at most 64 characters) and a password (at most 1024)",
        ));
    }
    let user_key = format!("user:{username}");
    let ip_key = format!("ip:{client}");
    let keys = [user_key.as_str(), ip_key.as_str()];
    // The attempted name is recorded only when it is a well-formed id, so a password typed
    // into the name field is not written to the log.
    let actor = if kura_store::valid_id(&username) {
        username.clone()
    } else {
        "-".to_string()
    };
    let failed = |reason: &str| {
        Event::new(EventKind::SignInFailed, actor.clone())
            .payload(json!({"method": "local", "reason": reason, "address": client.to_string()}))
    };
    if let Err(retry_after) = app.limiter.check(&keys, Instant::now()) {
        audit(&app, failed("rate_limited")).await?;
        return Err(ApiError::RateLimited { retry_after });
    }
    let store = app.store.clone();
    let name = username.clone();
    let candidate = body.password;
    let verified = tokio::task::spawn_blocking(move || -> Result<Option<Account>, ApiError> {
        match store.local_credentials(&name)? {
            Some((account, Some(phc))) => {
                let ok = password::verify_password(&phc, &candidate);
                Ok((ok && !account.disabled).then_some(account))
            }
            _ => {
                password::dummy_verify(&candidate);
                Ok(None)
            }
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("sign-in task: {e}")))??;
    let Some(account) = verified else {
        app.limiter.failed(&keys, Instant::now());
        audit(&app, failed("bad_credentials")).await?;
        return Err(ApiError::SignInFailed);
    };
    app.limiter.succeeded(&user_key);
    start_session(&app, &headers, &account, "local", client)
        .await
        .map(|(cookie, body)| {
            (StatusCode::OK, [(header::SET_COOKIE, cookie)], Json(body)).into_response()
        })
}

/// Ends any session the browser still has, creates a new one, audits the sign-in (the
/// session is deleted again if that fails), and returns its cookie and the session body.
async fn start_session(
    app: &AppState,
    headers: &HeaderMap,
    account: &Account,
    method: &str,
    client: IpAddr,
) -> Result<(axum::http::HeaderValue, serde_json::Value), ApiError> {
    let now = Utc::now();
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        if let Some(s) = app.store.session(old, app.config.session_limits(), now)? {
            app.store.end_session(&s.id)?;
        }
    }
    let (token, session) =
        app.store
            .create_session(&account.id, app.config.session_limits(), now)?;
    let event = Event::new(EventKind::SignIn, account.id.clone())
        .session(session.id.clone())
        .payload(json!({"method": method, "roles": account.roles, "address": client.to_string()}));
    if let Err(e) = audit(app, event).await {
        app.store.end_session(&session.id)?;
        return Err(e);
    }
    let max_age = (session.expires_at - now).num_seconds();
    Ok((
        set_cookie(SESSION_COOKIE, &token, max_age),
        session_body(account, &session),
    ))
}

pub async fn sign_out(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let event = Event::new(EventKind::SignOut, caller.id()).session(caller.session.id.clone());
    audit(&app, event).await?;
    app.store.end_session(&caller.session.id)?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0))],
    )
        .into_response())
}

pub async fn oidc_start(State(app): State<AppState>) -> Result<Response, ApiError> {
    let oidc = app
        .oidc
        .as_ref()
        .ok_or_else(|| ApiError::not_found("OpenID sign-in"))?;
    let now = Utc::now();
    let (url, pending) = oidc.begin(now);
    let body = serde_json::to_string(&pending)
        .map_err(|e| ApiError::Internal(format!("pending login: {e}")))?;
    let key = app.store.put_pending_login(&body, now)?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, header_value(url.as_str())?),
            (header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &key, 600)),
        ],
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

pub async fn oidc_callback(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Query(cb): Query<Callback>,
) -> Result<Response, ApiError> {
    let oidc = app
        .oidc
        .as_ref()
        .ok_or_else(|| ApiError::not_found("OpenID sign-in"))?;
    let clear_login = set_cookie(LOGIN_COOKIE, "", 0);
    let fail = |reason: String, code: &'static str| {
        let app = app.clone();
        let clear = clear_login.clone();
        async move {
            let event = Event::new(EventKind::SignInFailed, "-").payload(
                json!({"method": "oidc", "reason": reason, "address": client.to_string()}),
            );
            audit(&app, event).await?;
            Ok::<Response, ApiError>(
                (
                    StatusCode::SEE_OTHER,
                    [
                        (
                            header::LOCATION,
                            header_value(&format!("/?signin_error={code}"))?,
                        ),
                        (header::SET_COOKIE, clear),
                    ],
                )
                    .into_response(),
            )
        }
    };
    let pending = match cookie(&headers, LOGIN_COOKIE) {
        Some(key) => app.store.take_pending_login(key)?,
        None => None,
    };
    let Some(pending) = pending else {
        return fail(
            "no pending login for this browser".into(),
            "kura.auth.no_pending_login",
        )
        .await;
    };
    let pending: PendingLogin = serde_json::from_str(&pending)
        .map_err(|e| ApiError::Internal(format!("pending login: {e}")))?;
    if let Some(error) = cb.error {
        return fail(
            format!("provider answered {error}"),
            "kura.auth.provider_error",
        )
        .await;
    }
    let (Some(code), Some(state)) = (cb.code, cb.state) else {
        return fail(
            "callback without code or state".into(),
            "kura.auth.bad_callback",
        )
        .await;
    };
    let identity = match oidc
        .complete(&pending, &code, &state, cb.iss.as_deref(), Utc::now())
        .await
    {
        Ok(i) => i,
        Err(e) => return fail(e.to_string(), "kura.auth.oidc_failed").await,
    };
    let subject_key = format!("{}|{}", identity.issuer, identity.subject);
    let id = if kura_store::valid_id(&identity.subject) {
        identity.subject.clone()
    } else {
        format!("oidc-{}", &sha256_hex(&subject_key)[..16])
    };
    let name = identity
        .name
        .clone()
        .or(identity.email.clone())
        .unwrap_or_else(|| id.clone());
    let account =
        match app
            .store
            .upsert_oidc_account(&subject_key, &id, &name, &identity.roles, Utc::now())
        {
            Ok(a) => a,
            Err(e) => return fail(e.to_string(), "kura.auth.account_conflict").await,
        };
    if account.disabled {
        return fail(
            format!("account {} is disabled", account.id),
            "kura.auth.failed",
        )
        .await;
    }
    let (session_cookie, _) = start_session(&app, &headers, &account, "oidc", client).await?;
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, header_value("/#/projects")?)],
    )
        .into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, session_cookie);
    h.append(header::SET_COOKIE, clear_login);
    Ok(response)
}

fn header_value(s: &str) -> Result<axum::http::HeaderValue, ApiError> {
    axum::http::HeaderValue::from_str(s).map_err(|e| ApiError::Internal(format!("header: {e}")))
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}
