//! Sign-in through a real OpenID provider (npm `oidc-provider` on 127.0.0.2): the code flow
//! with PKCE, state and nonce ends in a Kura session with the roles from the ID token; a wrong
//! password, a tampered state and a replayed callback do not.

use kura_e2e::oidc::{TestAccount, TestClient, TestProvider};
use kura_e2e::server::{free_port, Setup, TestServer};

const SECRET: &str = "kura-test-client-secret-0123456789";

struct Fixture {
    server: TestServer,
    _provider: TestProvider,
}

fn start() -> Fixture {
    let port = free_port();
    let provider = TestProvider::start(
        &[
            TestAccount::new("olive", "olive's real password", &["researcher"]),
            TestAccount::new(
                "oscar",
                "oscar's real password",
                &["steward", "unknown-role"],
            ),
        ],
        &TestClient {
            client_id: "kura".into(),
            client_secret: SECRET.into(),
            redirect_uris: vec![format!("https://127.0.0.1:{port}/auth/oidc/callback")],
        },
    )
    .expect("start the OpenID provider (node and npm are needed)");
    let server = TestServer::start(Setup {
        port,
        config: format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"kura\"\nclient_secret = \"{SECRET}\"\n\
             label = \"Test IdP\"\nallow_insecure_loopback = true\n",
            provider.issuer
        ),
        ..Setup::default()
    });
    Fixture {
        server,
        _provider: provider,
    }
}

fn location(r: &reqwest::blocking::Response, base: &str) -> String {
    let loc = r.headers()["location"].to_str().unwrap();
    if loc.starts_with("http") {
        loc.to_string()
    } else {
        format!("{}{loc}", base.trim_end_matches('/'))
    }
}

fn origin_of(url: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    u.origin().ascii_serialization()
}

/// Starts at Kura, signs in at the provider, and returns the callback URL the provider sends
/// the browser to (not yet visited), or None when the provider did not issue a code.
fn sign_in_at_provider(
    f: &Fixture,
    client: &reqwest::blocking::Client,
    user: &str,
    password: &str,
) -> Option<String> {
    let r = client.get(f.server.url("/auth/oidc/start")).send().unwrap();
    assert_eq!(r.status(), 303);
    let mut url = location(&r, &f.server.origin);
    assert!(
        url.contains("code_challenge_method=S256")
            && url.contains("nonce=")
            && url.contains("state="),
        "{url}"
    );
    // Follow the provider's redirects to its login page.
    let page;
    loop {
        let r = client.get(&url).send().unwrap();
        if r.status().is_redirection() {
            url = location(&r, &origin_of(&url));
            continue;
        }
        page = r.text().unwrap();
        break;
    }
    let action = page
        .split("action=\"")
        .nth(1)?
        .split('"')
        .next()?
        .replace("&amp;", "&");
    let post_url = format!("{}{action}", origin_of(&url));
    let mut r = client
        .post(&post_url)
        .form(&[("login", user), ("password", password)])
        .send()
        .unwrap();
    loop {
        if !r.status().is_redirection() {
            return None;
        }
        let next = location(&r, &origin_of(r.url().as_str()));
        if next.starts_with(&format!("{}/auth/oidc/callback", f.server.origin)) {
            return Some(next);
        }
        r = client.get(&next).send().unwrap();
    }
}

#[test]
fn oidc_sign_in_gives_a_session_with_the_providers_roles() {
    let f = start();
    let client = f.server.client();
    let (_, config) =
        kura_e2e::server::answer(client.get(f.server.url("/api/v1/config")).send().unwrap());
    assert_eq!(config["oidc"]["enabled"], true);
    let callback =
        sign_in_at_provider(&f, &client, "olive", "olive's real password").expect("a code");
    let r = client.get(&callback).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/#/projects");
    let (status, session) =
        kura_e2e::server::answer(client.get(f.server.url("/api/v1/session")).send().unwrap());
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["id"], "olive");
    assert_eq!(session["user"]["roles"], serde_json::json!(["researcher"]));

    // The same callback again: the pending login was used up.
    let replay = f.server.client();
    let r = replay.get(&callback).send().unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("signin_error="));
    let (status, _) =
        kura_e2e::server::answer(replay.get(f.server.url("/api/v1/session")).send().unwrap());
    assert_eq!(status, 401);

    let signins = f.server.audit_of("signin");
    assert_eq!(signins.len(), 1);
    assert_eq!(signins[0]["actor"], "olive");
    assert_eq!(signins[0]["payload"]["method"], "oidc");
    assert!(
        !f.server.audit_of("signin.failed").is_empty(),
        "the replay is audited"
    );
}

#[test]
fn wrong_password_or_tampered_state_gives_no_session() {
    let f = start();
    let client = f.server.client();
    assert!(sign_in_at_provider(&f, &client, "olive", "not her password").is_none());

    let client = f.server.client();
    let callback =
        sign_in_at_provider(&f, &client, "oscar", "oscar's real password").expect("a code");
    let mut url = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let r = client.get(url.as_str()).send().unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("signin_error=kura.auth.oidc_failed"));
    let (status, _) =
        kura_e2e::server::answer(client.get(f.server.url("/api/v1/session")).send().unwrap());
    assert_eq!(status, 401);
    let failed = f.server.audit_of("signin.failed");
    assert!(
        failed.iter().any(|e| e["payload"]["method"] == "oidc"),
        "{failed:#?}"
    );
    assert!(f.server.audit_of("signin").is_empty());
}
