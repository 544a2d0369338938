//! Talking to the provider before any user arrives: the locked-down HTTP client (no redirects,
//! timeouts, https unless loopback is allowed), fetching and checking the discovery document and
//! the key set, and building the typed `openidconnect` client from them.

use std::net::IpAddr;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::reqwest;
use openidconnect::{
    Client, ClientId, ClientSecret, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenFields, JsonWebKeySet, RedirectUrl, StandardErrorResponse,
    StandardTokenResponse,
};
use url::Url;

use super::claims::RawClaims;
use super::OidcConfig;
use crate::error::{chain, IdentityError};

/// Whole-request timeout for discovery, key set and token requests.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WELL_KNOWN: &str = ".well-known/openid-configuration";

pub(crate) type KuraIdTokenFields = IdTokenFields<
    RawClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub(crate) type KuraTokenResponse = StandardTokenResponse<KuraIdTokenFields, CoreTokenType>;

/// The typed client with the authorization and token endpoints known to be set.
pub(crate) type KuraClient = Client<
    RawClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    KuraTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;

/// One discovery's result: the client (with the key set of that moment) and the issuer exactly
/// as the provider spells it (compared byte for byte with `iss` values later).
pub(crate) struct Discovered {
    pub client: KuraClient,
    pub issuer: String,
    pub key_ids: Vec<String>,
}

/// An HTTP client that never follows redirects (SSRF) and gives up after [`HTTP_TIMEOUT`].
pub(crate) fn http_client(config: &OidcConfig) -> Result<reqwest::Client, IdentityError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .https_only(!config.allow_insecure_loopback)
        .build()
        .map_err(|e| IdentityError::Config(format!("cannot build the HTTP client: {}", chain(&e))))
}

/// True for `https://`, or `http://` to a loopback address when `allow_insecure_loopback`.
pub(crate) fn url_allowed(url: &Url, allow_insecure_loopback: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" if allow_insecure_loopback => match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

/// Checks the configuration before any request is made.
pub(crate) fn check_config(config: &OidcConfig) -> Result<(), IdentityError> {
    if !url_allowed(&config.issuer, config.allow_insecure_loopback) {
        return Err(IdentityError::Config(format!(
            "issuer {} must use https:// (http:// is allowed only for loopback addresses, and only \
             when allow_insecure_loopback is set, for tests)",
            config.issuer
        )));
    }
    if config.issuer.query().is_some() || config.issuer.fragment().is_some() {
        return Err(IdentityError::Config(format!(
            "issuer {} must not have a query or fragment",
            config.issuer
        )));
    }
    if config.client_id.is_empty() {
        return Err(IdentityError::Config("client_id is empty".into()));
    }
    if config.roles_claim.is_empty() || config.roles_claim.split('.').any(str::is_empty) {
        return Err(IdentityError::Config(format!(
            "roles_claim '{}' must be a claim name or a dotted path like 'realm_access.roles'",
            config.roles_claim
        )));
    }
    Ok(())
}

/// Fetches the discovery document and the key set and builds a client from them.
///
/// The document's `issuer` must be the configured issuer (compared as URLs, so a trailing `/` on
/// a bare origin does not matter); from then on the provider's own spelling is used for exact
/// comparisons. Every endpoint must pass the same https/loopback rule as the issuer.
pub(crate) async fn discover(
    config: &OidcConfig,
    http: &reqwest::Client,
) -> Result<Discovered, IdentityError> {
    let fail = |detail: String| IdentityError::Discovery {
        issuer: config.issuer.to_string(),
        detail,
    };
    let mut base = config.issuer.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let doc_url = base
        .join(WELL_KNOWN)
        .map_err(|e| fail(format!("cannot form the discovery URL: {e}")))?;
    let response = http
        .get(doc_url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fail(format!("GET {doc_url}: {}", chain(&e))))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(fail(format!(
            "GET {doc_url} answered HTTP {}",
            response.status()
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| fail(format!("reading {doc_url}: {}", chain(&e))))?;
    let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
        .map_err(|e| fail(format!("{doc_url} is not a valid discovery document: {e}")))?;

    let issuer = metadata.issuer().as_str().to_string();
    if metadata.issuer().url() != &config.issuer {
        return Err(fail(format!(
            "the discovery document names issuer '{issuer}', not the configured '{}'",
            config.issuer
        )));
    }
    let token_url = metadata
        .token_endpoint()
        .cloned()
        .ok_or_else(|| fail("the discovery document has no token_endpoint".into()))?;
    for (what, url) in [
        (
            "authorization_endpoint",
            metadata.authorization_endpoint().url(),
        ),
        ("token_endpoint", token_url.url()),
        ("jwks_uri", metadata.jwks_uri().url()),
    ] {
        if !url_allowed(url, config.allow_insecure_loopback) {
            return Err(fail(format!("{what} {url} must use https://")));
        }
    }

    let jwks = JsonWebKeySet::fetch_async(metadata.jwks_uri(), http)
        .await
        .map_err(|e| {
            fail(format!(
                "key set {}: {}",
                metadata.jwks_uri().as_str(),
                chain(&e)
            ))
        })?;
    if jwks.keys().is_empty() {
        return Err(fail(format!(
            "key set {} has no keys",
            metadata.jwks_uri().as_str()
        )));
    }
    let key_ids = jwks
        .keys()
        .iter()
        .filter_map(|k| openidconnect::JsonWebKey::key_id(k).map(|id| id.as_str().to_string()))
        .collect();
    let metadata = metadata.set_jwks(jwks);

    let redirect = RedirectUrl::from_url(config.redirect_url.clone());
    let client = Client::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        config.client_secret.clone().map(ClientSecret::new),
    )
    .set_token_uri(token_url)
    .set_redirect_uri(redirect);
    Ok(Discovered {
        client,
        issuer,
        key_ids,
    })
}
