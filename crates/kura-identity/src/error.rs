//! The crate's one error type: every sign-in failure says what failed, and where it helps, what
//! to do. Messages never contain a password, a code, a token, a state or a nonce value.

use thiserror::Error;

/// Why a password operation or an OpenID Connect sign-in failed.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Hashing a password failed (bad parameters or no randomness).
    #[error("password hashing failed: {0}")]
    PasswordHash(String),

    /// A new password does not meet the policy.
    #[error("password rejected: {0}")]
    PasswordPolicy(String),

    /// The operating system's random number generator failed.
    #[error("no randomness available from the operating system: {0}")]
    Random(String),

    /// The OpenID Connect configuration is unusable.
    #[error("OpenID Connect configuration: {0}")]
    Config(String),

    /// The provider's discovery document or key set could not be fetched or is invalid.
    #[error("OpenID provider discovery at {issuer} failed: {detail}")]
    Discovery { issuer: String, detail: String },

    /// The callback's `state` is not the one sent with this login (forged, or another tab's).
    #[error("the state parameter does not match this login; start the sign-in again")]
    StateMismatch,

    /// The RFC 9207 `iss` callback parameter names another issuer (mix-up attack).
    #[error("issuer parameter '{got}' is not the configured issuer '{expected}'")]
    IssuerMismatch { got: String, expected: String },

    /// The pending login is older than allowed (or dated in the future).
    #[error("the sign-in attempt {0}; start the sign-in again")]
    LoginExpired(String),

    /// The provider answered the callback with an error instead of a code.
    #[error("the provider refused the sign-in: {0}")]
    ProviderRefused(String),

    /// Exchanging the authorization code at the token endpoint failed.
    #[error("code exchange at the token endpoint failed: {0}")]
    TokenExchange(String),

    /// The token response had no ID token.
    #[error("the token response contains no ID token (is the 'openid' scope granted?)")]
    MissingIdToken,

    /// The ID token's nonce is not the one sent with this login (replay or mix-up).
    #[error("ID token nonce does not match the nonce of this login")]
    NonceMismatch,

    /// The ID token's signature could not be verified, even after refreshing the provider's keys.
    #[error("ID token signature not verified: {0}")]
    Signature(String),

    /// Another ID token check failed (issuer, audience, expiry, algorithm, ...).
    #[error("ID token rejected: {0}")]
    IdToken(String),

    /// The configured roles claim is present but not a string or a list of strings.
    #[error("roles claim '{claim}' is malformed: {detail}")]
    RolesClaim { claim: String, detail: String },
}

/// Joins an error and its sources into one line, since the OpenID crates keep details in sources.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
