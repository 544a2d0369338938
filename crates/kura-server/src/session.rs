//! Who is calling: the session cookie, the signed-in caller extractor, and the CSRF check.
//!
//! The cookie `__Host-kura_session` (Secure, HttpOnly, SameSite=Lax, Path=/, no Domain) holds
//! a random token; the server keeps the session. Every extraction of a `Caller` re-reads the
//! session and the account, so a disabled account or an ended session stops at the next
//! request. For state-changing methods the extractor also requires the session's CSRF token in
//! `X-Kura-CSRF` and, when the browser sent one, our own `Origin`.

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use chrono::{DateTime, Utc};
use kura_authz::{Principal, Role};
use kura_store::{Account, Session};

use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "__Host-kura_session";
pub const LOGIN_COOKIE: &str = "__Host-kura_login";
pub const CSRF_HEADER: &str = "x-kura-csrf";
/// The CSRF header value of the local sign-in request, which has no session yet: a
/// cross-site form cannot set a custom header, and fetch from another origin cannot without a
/// CORS preflight that Kura never grants.
pub const LOGIN_CSRF: &str = "login";

/// A signed-in caller with a live session.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    pub session: Session,
    pub principal: Principal,
    pub now: DateTime<Utc>,
}

impl Caller {
    pub fn id(&self) -> &str {
        &self.account.id
    }

    pub fn has(&self, role: Role) -> bool {
        self.principal.roles.contains(&role)
    }
}

/// The principal an account acts as in authorization decisions. Unknown role names (from an
/// OpenID provider) grant nothing.
pub fn principal(account: &Account) -> Principal {
    let roles: BTreeSet<Role> = account
        .roles
        .iter()
        .filter_map(|r| r.parse::<Role>().ok())
        .collect();
    Principal {
        id: account.id.clone(),
        roles,
        active: !account.disabled,
    }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for a `__Host-` cookie; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let v = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The Origin header, when present, must be ours.
pub fn check_origin(headers: &HeaderMap, origin: &str) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(v) if v.as_bytes() == origin.as_bytes() => Ok(()),
        Some(_) => Err(ApiError::Csrf),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Caller, ApiError> {
        let now = Utc::now();
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(ApiError::Unauthenticated)?;
        let session = app
            .store
            .session(token, app.config.session_limits(), now)?
            .ok_or(ApiError::Unauthenticated)?;
        let account = app
            .store
            .account(&session.user)?
            .filter(|a| !a.disabled)
            .ok_or(ApiError::Unauthenticated)?;
        if is_state_changing(&parts.method) {
            check_origin(&parts.headers, &app.origin)?;
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !constant_time_eq(sent, session.csrf_token.as_bytes()) {
                return Err(ApiError::Csrf);
            }
        }
        let principal = principal(&account);
        Ok(Caller {
            account,
            session,
            principal,
            now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-kura_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
    }

    #[test]
    fn origin_must_match_when_sent() {
        let mut h = HeaderMap::new();
        assert!(check_origin(&h, "https://127.0.0.1:8443").is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_origin(&h, "https://127.0.0.1:8443").is_err());
    }
}
