//! The relying party against a REAL OpenID provider (tests/oidc, npm oidc-provider 9) on
//! 127.0.0.2: a Rust HTTP client plays the browser through the provider's own login page.
//! Each attack (forged state, mixed-up issuer, replayed code, swapped nonce or PKCE verifier,
//! wrong password) is tried and must fail; key rotation must be survived by one key refresh.
//! Needs Node.js 20+ and npm; without them every test here fails with a message saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../../../tests/support/oidc.rs"]
mod oidc;

use chrono::{DateTime, Duration, Utc};
use kura_identity::{IdentityError, OidcClient, OidcConfig, PendingLogin};
use oidc::{TestAccount, TestClient, TestProvider};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:1/oidc/callback";
const ALICE_PASSWORD: &str = "Alice-correct-horse-7";

fn start_provider() -> TestProvider {
    let accounts = [
        TestAccount::new("alice", ALICE_PASSWORD, &["steward", "researcher"]),
        TestAccount::new("bob", "Bob-battery-staple-9", &[]),
    ];
    let client = TestClient {
        client_id: "kura-test".into(),
        client_secret: "kura-test-secret-0123456789".into(),
        redirect_uris: vec![REDIRECT.into()],
    };
    TestProvider::start(&accounts, &client)
        .unwrap_or_else(|e| panic!("cannot start the test OpenID provider: {e}"))
}

fn config(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer: Url::parse(issuer).unwrap(),
        client_id: "kura-test".into(),
        client_secret: Some("kura-test-secret-0123456789".into()),
        redirect_url: Url::parse(REDIRECT).unwrap(),
        scopes: vec!["openid".into(), "profile".into(), "email".into()],
        roles_claim: "kura_roles".into(),
        allow_insecure_loopback: true,
    }
}

async fn discover(provider: &TestProvider) -> OidcClient {
    OidcClient::discover(config(&provider.issuer))
        .await
        .unwrap_or_else(|e| panic!("discovery failed: {e}\nprovider log:\n{}", provider.logs()))
}

/// What the provider sent back to Kura's callback.
#[derive(Debug)]
struct Callback {
    code: String,
    state: String,
    iss: Option<String>,
}

#[derive(Debug)]
enum Outcome {
    Callback(Callback),
    /// The login page was shown again with an error; no redirect to the callback.
    LoginRefused(String),
}

/// Plays the browser: follows redirects by hand (cookies kept), fills the login form, stops at
/// the first redirect to Kura's callback without requesting it.
async fn sign_in(auth_url: &Url, login: &str, password: &str) -> Outcome {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut response = http.get(auth_url.clone()).send().await.unwrap();
    let mut submitted = false;
    for _ in 0..20 {
        let here = response.url().clone();
        let status = response.status();
        if status.is_redirection() {
            let location = response.headers()["location"].to_str().unwrap().to_string();
            let next = here.join(&location).unwrap();
            if next.as_str().starts_with(REDIRECT) {
                let q = |k: &str| {
                    next.query_pairs()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.into_owned())
                };
                assert!(q("error").is_none(), "provider error: {next}");
                return Outcome::Callback(Callback {
                    code: q("code").expect("code in callback"),
                    state: q("state").expect("state in callback"),
                    iss: q("iss"),
                });
            }
            response = http.get(next).send().await.unwrap();
            continue;
        }
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("<script"),
            "the login page must work without script"
        );
        if submitted {
            assert_eq!(status, 401, "{body}");
            return Outcome::LoginRefused(body);
        }
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("name=\"login\"") && body.contains("name=\"password\""));
        assert!(body.contains("button type=\"submit\""));
        let action = body
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("form action");
        let target = here.join(action).unwrap();
        submitted = true;
        response = http
            .post(target)
            .form(&[("login", login), ("password", password)])
            .send()
            .await
            .unwrap();
    }
    panic!("too many redirects");
}

async fn callback_for(client: &OidcClient, now: DateTime<Utc>) -> (PendingLogin, Callback) {
    let (url, pending) = client.begin(now);
    match sign_in(&url, "alice", ALICE_PASSWORD).await {
        Outcome::Callback(cb) => (pending, cb),
        Outcome::LoginRefused(body) => panic!("correct password refused: {body}"),
    }
}

#[tokio::test]
async fn sign_in_yields_identity_with_roles_from_the_id_token() {
    let provider = start_provider();
    let client = discover(&provider).await;
    assert_eq!(client.issuer(), provider.issuer);
    let now = Utc::now();

    let (url, pending) = client.begin(now);
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["state"], pending.state);
    assert_eq!(params["nonce"], pending.nonce);
    assert!(
        !url.as_str().contains(&pending.pkce_verifier),
        "verifier must stay server-side"
    );
    let scopes: Vec<_> = params["scope"].split(' ').collect();
    assert_eq!(
        scopes.iter().filter(|s| **s == "openid").count(),
        1,
        "{scopes:?}"
    );
    assert!(
        !format!("{pending:?}").contains(&pending.state),
        "Debug must not print secrets"
    );

    let Outcome::Callback(cb) = sign_in(&url, "alice", ALICE_PASSWORD).await else {
        panic!("login refused")
    };
    assert_eq!(
        cb.iss.as_deref(),
        Some(provider.issuer.as_str()),
        "provider sends RFC 9207 iss"
    );
    let identity = client
        .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), now)
        .await
        .unwrap();
    assert_eq!(identity.issuer, provider.issuer);
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.roles, ["researcher", "steward"]);
    assert_eq!(identity.email.as_deref(), Some("alice@example.org"));
    assert_eq!(identity.name.as_deref(), Some("Test user alice"));

    // A user without roles gets none; `iss` may be absent (providers without RFC 9207).
    let (url, pending) = client.begin(now);
    let Outcome::Callback(cb) = sign_in(&url, "bob", "Bob-battery-staple-9").await else {
        panic!("login refused")
    };
    let bob = client
        .complete(&pending, &cb.code, &cb.state, None, now)
        .await
        .unwrap();
    assert_eq!(bob.subject, "bob");
    assert!(bob.roles.is_empty());
}

#[tokio::test]
async fn wrong_password_or_unknown_user_gets_no_code() {
    let provider = start_provider();
    let client = discover(&provider).await;
    for (login, password) in [
        ("alice", "Alice-wrong-horse-7"),
        ("alice", ""),
        ("mallory", ALICE_PASSWORD),
    ] {
        let (url, _pending) = client.begin(Utc::now());
        match sign_in(&url, login, password).await {
            Outcome::LoginRefused(body) => {
                assert!(body.contains("Invalid user name or password"), "{body}")
            }
            Outcome::Callback(cb) => panic!("{login}/{password:?} got a code: {cb:?}"),
        }
    }
    assert!(provider.logs().contains("login refused"));
}

#[tokio::test]
async fn forged_state_is_rejected_before_the_code_is_used() {
    let provider = start_provider();
    let client = discover(&provider).await;
    let now = Utc::now();
    let (pending, cb) = callback_for(&client, now).await;

    let mut forged = cb.state.clone();
    forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
    for state in [forged.as_str(), "", &cb.state[1..]] {
        let err = client
            .complete(&pending, &cb.code, state, cb.iss.as_deref(), now)
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::StateMismatch), "{err}");
    }
    // The code was not spent by the refused attempts.
    client
        .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), now)
        .await
        .unwrap();
}

#[tokio::test]
async fn issuer_parameter_of_another_provider_is_rejected() {
    let provider = start_provider();
    let client = discover(&provider).await;
    let now = Utc::now();
    let (pending, cb) = callback_for(&client, now).await;
    for iss in ["https://evil.example", &format!("{}/", provider.issuer), ""] {
        let err = client
            .complete(&pending, &cb.code, &cb.state, Some(iss), now)
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::IssuerMismatch { .. }), "{err}");
        let text = err.to_string();
        assert_eq!(
            text,
            format!(
                "issuer parameter '{iss}' is not the configured issuer '{}'",
                provider.issuer
            )
        );
    }
}

#[tokio::test]
async fn replayed_code_is_rejected() {
    let provider = start_provider();
    let client = discover(&provider).await;
    let now = Utc::now();
    let (pending, cb) = callback_for(&client, now).await;
    client
        .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), now)
        .await
        .unwrap();
    let err = client
        .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), now)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::TokenExchange(_)), "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn nonce_or_verifier_of_another_login_is_rejected() {
    let provider = start_provider();
    let client = discover(&provider).await;
    let now = Utc::now();
    let (pending, cb) = callback_for(&client, now).await;
    let (_, other) = client.begin(now);

    // The other login's pending state as a whole: caught by the state check.
    let err = client
        .complete(&other, &cb.code, &cb.state, cb.iss.as_deref(), now)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::StateMismatch), "{err}");

    // Only the PKCE verifier swapped: the provider refuses the exchange.
    let swapped_verifier = PendingLogin {
        pkce_verifier: other.pkce_verifier.clone(),
        ..pending.clone()
    };
    let err = client
        .complete(
            &swapped_verifier,
            &cb.code,
            &cb.state,
            cb.iss.as_deref(),
            now,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_grant"), "{err}");

    // Only the nonce swapped (state and verifier right): the ID token's nonce does not match.
    // The failed PKCE attempt above may have consumed the code, so use a fresh login.
    let (pending, cb) = callback_for(&client, now).await;
    let swapped_nonce = PendingLogin {
        nonce: other.nonce.clone(),
        ..pending.clone()
    };
    let err = client
        .complete(&swapped_nonce, &cb.code, &cb.state, cb.iss.as_deref(), now)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::NonceMismatch), "{err}");
    assert_eq!(
        err.to_string(),
        "ID token nonce does not match the nonce of this login"
    );
}

#[tokio::test]
async fn stale_pending_login_is_rejected() {
    let provider = start_provider();
    let client = discover(&provider).await;
    let now = Utc::now();
    let (pending, cb) = callback_for(&client, now).await;
    for later in [now + Duration::minutes(11), now - Duration::minutes(5)] {
        let err = client
            .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), later)
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::LoginExpired(_)), "{err}");
    }
    client
        .complete(
            &pending,
            &cb.code,
            &cb.state,
            cb.iss.as_deref(),
            now + Duration::minutes(9),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn rotated_signing_keys_are_refreshed_at_most_every_30_seconds() {
    let provider = start_provider();
    let client = discover(&provider).await;
    let t0 = Utc::now();
    let (pending, cb) = callback_for(&client, t0).await;
    client
        .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), t0)
        .await
        .unwrap();

    // New key set; the client still holds the old one and must refresh once.
    provider.rotate_keys().unwrap();
    let (pending, cb) = callback_for(&client, t0).await;
    let identity = client
        .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), t0)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", provider.logs()));
    assert_eq!(identity.subject, "alice");

    // Rotated again 10 s later: no second refresh within 30 s, so the token is refused...
    provider.rotate_keys().unwrap();
    let t1 = t0 + Duration::seconds(10);
    let (pending, cb) = callback_for(&client, t1).await;
    let err = client
        .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), t1)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Signature(_)), "{err}");
    assert!(err.to_string().contains("refreshed"), "{err}");

    // ...and accepted once 30 s have passed since the last refresh.
    let t2 = t0 + Duration::seconds(31);
    let (pending, cb) = callback_for(&client, t2).await;
    client
        .complete(&pending, &cb.code, &cb.state, cb.iss.as_deref(), t2)
        .await
        .unwrap();
}

#[tokio::test]
async fn insecure_or_unknown_issuers_are_refused() {
    let mut plain = config("http://127.0.0.2:9/");
    plain.allow_insecure_loopback = false;
    let err = OidcClient::discover(plain).await.unwrap_err();
    assert!(matches!(err, IdentityError::Config(_)), "{err}");

    let remote = config("http://idp.example.org/");
    let err = OidcClient::discover(remote).await.unwrap_err();
    assert!(matches!(err, IdentityError::Config(_)), "{err}");

    // A real provider, but configured under another path: its document is not found.
    let provider = start_provider();
    let err = OidcClient::discover(config(&format!("{}/other", provider.issuer)))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Discovery { .. }), "{err}");
}
