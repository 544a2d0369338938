//! OpenID Connect relying party: authorization URL with PKCE, state and nonce ([`OidcClient::begin`]),
//! and the callback ([`OidcClient::complete`]): state, RFC 9207 `iss`, age, code exchange, ID
//! token verification (refreshing the provider's keys once on a signature failure), identity.
//!
//! No HTTP server here: the caller keeps [`PendingLogin`] server-side (e.g. in the session)
//! between `begin` and `complete`.

mod claims;
mod discovery;

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::reqwest;
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClaimsVerificationError, CsrfToken, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RequestTokenError, Scope,
    TokenResponse,
};
use serde::{Deserialize, Serialize};

pub use claims::roles_at;
use discovery::{Discovered, KuraTokenResponse};

use crate::error::{chain, IdentityError};

/// How long a login may take between `begin` and `complete`.
pub const MAX_PENDING_AGE: Duration = Duration::minutes(10);
/// Clock difference tolerated for a pending login dated slightly in the future.
const FUTURE_SKEW: Duration = Duration::minutes(1);
/// A signature failure refreshes the provider's keys at most this often.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::seconds(30);

/// How to reach and trust one OpenID provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The provider's issuer identifier; `https://` unless `allow_insecure_loopback`.
    pub issuer: url::Url,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Kura's callback URL, registered at the provider.
    pub redirect_url: url::Url,
    /// Scopes besides `openid` (which is always requested), e.g. `profile`, `email`.
    pub scopes: Vec<String>,
    /// Dotted path of the claim holding Kura roles, e.g. "kura_roles".
    pub roles_claim: String,
    /// Allow http:// issuers only on loopback (tests).
    pub allow_insecure_loopback: bool,
}

/// The half of a login kept server-side between `begin` and `complete`. All fields but
/// `created` are secrets: never log them or send them to the browser.
#[derive(Serialize, Deserialize, Clone)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub created: DateTime<Utc>,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Who signed in, from the verified ID token. `(issuer, subject)` is the stable key of a person;
/// `name` and `email` are informational; `roles` come only from the configured claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcIdentity {
    pub issuer: String,
    pub subject: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<String>,
}

/// A relying party for one provider. Cheap to share (`Arc`), `Send + Sync`.
pub struct OidcClient {
    config: OidcConfig,
    http: reqwest::Client,
    current: RwLock<Arc<Discovered>>,
    /// Serialises key refreshes; holds when the last one happened.
    refresh: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.config.issuer.as_str())
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// Fetches the provider's discovery document and key set (see the module docs for checks).
    pub async fn discover(config: OidcConfig) -> Result<OidcClient, IdentityError> {
        discovery::check_config(&config)?;
        let http = discovery::http_client(&config)?;
        let found = discovery::discover(&config, &http).await?;
        tracing::info!(issuer = %found.issuer, keys = ?found.key_ids, "OpenID provider discovered");
        Ok(OidcClient {
            config,
            http,
            current: RwLock::new(Arc::new(found)),
            refresh: tokio::sync::Mutex::new(None),
        })
    }

    /// The issuer exactly as the provider spells it.
    pub fn issuer(&self) -> String {
        self.snapshot().issuer.clone()
    }

    /// The configuration this client was discovered with.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Authorization URL with PKCE (S256), state and nonce; the pending part is kept server-side by the caller.
    pub fn begin(&self, now: DateTime<Utc>) -> (url::Url, PendingLogin) {
        let found = self.snapshot();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = found.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            created: now,
        };
        (url, pending)
    }

    /// Checks `state` (constant-time), the RFC 9207 `iss` parameter when present (must equal the issuer),
    /// pending age (<= 10 min), exchanges the code with the PKCE verifier, verifies the ID token
    /// (signature, iss, aud, exp, nonce), and extracts the identity. On a signature/unknown-kid failure
    /// it rediscovers the provider's JWKS (at most once per 30 s) and retries the verification once.
    pub async fn complete(
        &self,
        pending: &PendingLogin,
        code: &str,
        state: &str,
        iss: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<OidcIdentity, IdentityError> {
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(IdentityError::StateMismatch);
        }
        let found = self.snapshot();
        if let Some(got) = iss {
            if got != found.issuer {
                return Err(IdentityError::IssuerMismatch {
                    got: got.to_string(),
                    expected: found.issuer.clone(),
                });
            }
        }
        let age = now - pending.created;
        if age > MAX_PENDING_AGE {
            return Err(IdentityError::LoginExpired(format!(
                "began {} s ago (limit {} s)",
                age.num_seconds(),
                MAX_PENDING_AGE.num_seconds()
            )));
        }
        if age < -FUTURE_SKEW {
            return Err(IdentityError::LoginExpired(format!(
                "is dated {} s in the future",
                -age.num_seconds()
            )));
        }
        if code.is_empty() {
            return Err(IdentityError::TokenExchange(
                "the callback carries no authorization code".into(),
            ));
        }

        let response = found
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;

        match self.verify(&found, &response, pending, now) {
            Err(IdentityError::Signature(first)) => {
                let fresh = self.refresh_keys(&found, now, &first).await?;
                self.verify(&fresh, &response, pending, now)
            }
            other => other,
        }
    }

    fn snapshot(&self) -> Arc<Discovered> {
        // A poisoned lock still holds a complete `Arc` (swaps are single assignments).
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Verifies the ID token of `response` with the keys of `found` and builds the identity.
    fn verify(
        &self,
        found: &Discovered,
        response: &KuraTokenResponse,
        pending: &PendingLogin,
        now: DateTime<Utc>,
    ) -> Result<OidcIdentity, IdentityError> {
        let id_token = response.id_token().ok_or(IdentityError::MissingIdToken)?;
        let verifier = found.client.id_token_verifier().set_time_fn(move || now);
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = id_token.claims(&verifier, &nonce).map_err(claims_error)?;

        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| IdentityError::IdToken(format!("signing algorithm: {e}")))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| IdentityError::Signature(e.to_string()))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| IdentityError::IdToken(format!("at_hash: {e}")))?;
            if !constant_time_eq(actual.as_bytes(), expected.as_bytes()) {
                return Err(IdentityError::IdToken(
                    "at_hash does not match the access token (token substitution)".into(),
                ));
            }
        }

        let roles = claims::roles_at(claims.additional_claims(), &self.config.roles_claim)?;
        Ok(OidcIdentity {
            issuer: claims.issuer().as_str().to_string(),
            subject: claims.subject().as_str().to_string(),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_string()),
            email: claims.email().map(|e| e.as_str().to_string()),
            roles,
        })
    }

    /// Rediscovers the provider after a signature failure seen with `stale`, unless another
    /// caller already did (then its result is used) or the last refresh was under 30 s ago.
    async fn refresh_keys(
        &self,
        stale: &Arc<Discovered>,
        now: DateTime<Utc>,
        first_error: &str,
    ) -> Result<Arc<Discovered>, IdentityError> {
        let mut last = self.refresh.lock().await;
        let current = self.snapshot();
        if !Arc::ptr_eq(&current, stale) {
            return Ok(current);
        }
        if let Some(at) = *last {
            if now - at < KEY_REFRESH_INTERVAL && now >= at {
                return Err(IdentityError::Signature(format!(
                    "{first_error} (keys were refreshed {} s ago; not again before {} s)",
                    (now - at).num_seconds(),
                    KEY_REFRESH_INTERVAL.num_seconds()
                )));
            }
        }
        *last = Some(now);
        tracing::warn!(issuer = %stale.issuer, error = first_error, "ID token signature failed; refreshing the provider's keys");
        let fresh = Arc::new(discovery::discover(&self.config, &self.http).await?);
        tracing::info!(issuer = %fresh.issuer, keys = ?fresh.key_ids, "provider keys refreshed");
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&fresh),
        }
        Ok(fresh)
    }
}

fn claims_error(err: ClaimsVerificationError) -> IdentityError {
    match err {
        ClaimsVerificationError::InvalidNonce(_) => IdentityError::NonceMismatch,
        ClaimsVerificationError::SignatureVerification(e) => IdentityError::Signature(chain(&e)),
        ClaimsVerificationError::Expired(d) => IdentityError::IdToken(format!("expired: {d}")),
        ClaimsVerificationError::InvalidAudience(d) => {
            IdentityError::IdToken(format!("audience is not this client: {d}"))
        }
        ClaimsVerificationError::InvalidIssuer(d) => {
            IdentityError::IdToken(format!("issuer claim is not the provider's issuer: {d}"))
        }
        other => IdentityError::IdToken(chain(&other)),
    }
}

type TokenRequestError = RequestTokenError<
    openidconnect::HttpClientError<reqwest::Error>,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
>;

fn token_error(err: TokenRequestError) -> IdentityError {
    match &err {
        RequestTokenError::ServerResponse(resp) => {
            let mut text = resp.error().to_string();
            if let Some(d) = resp.error_description() {
                text.push_str(&format!(" ({d})"));
            }
            IdentityError::TokenExchange(format!(
                "the provider refused the code: {text}; a code is single-use and short-lived"
            ))
        }
        _ => IdentityError::TokenExchange(chain(&err)),
    }
}

/// Compares two byte strings in time that depends only on their lengths (which are not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, OidcClient, PendingLogin};

    fn assert_send<T: Send>(_: &T) {}

    /// The server shares one client between tasks and awaits `complete` in axum handlers.
    #[allow(dead_code)]
    fn client_and_its_futures_are_send_and_sync(client: &OidcClient, pending: &PendingLogin) {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<OidcClient>();
        assert_send(&client.complete(pending, "", "", None, chrono::Utc::now()));
        assert_send(&OidcClient::discover(client.config().clone()));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
