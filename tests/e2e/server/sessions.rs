//! Sessions: cookie attributes, rotation at sign-in, sign-out, idle timeout, disabled accounts,
//! CSRF, security headers, and rate limiting of failed sign-ins (each audited).

use kura_e2e::server::{answer, Setup, TestServer, PASSWORD};
use serde_json::json;

#[test]
fn sign_in_sets_a_host_only_secure_cookie_and_rotates_it() {
    let server = TestServer::start(Setup::default());
    let client = server.client();
    let login = |c: &reqwest::blocking::Client| {
        c.post(server.url("/api/v1/session"))
            .header("origin", &server.origin)
            .header("x-kura-csrf", "login")
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
            .unwrap()
    };
    let r = login(&client);
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in [
        "__Host-kura_session=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{part} missing in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let first = cookie.split(';').next().unwrap().to_string();

    // Signing in again (same browser) issues a new session and ends the old one.
    let r = login(&client);
    let second = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(first, second, "the session id must change at sign-in");
    let stale = server.client();
    let r = stale
        .get(server.url("/api/v1/session"))
        .header("cookie", &first)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "the previous session must be gone");
    let r = stale
        .get(server.url("/api/v1/session"))
        .header("cookie", &second)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn sign_out_ends_the_session() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");
    assert_eq!(alice.get("/api/v1/session").0, 200);
    let (status, _) = alice.send("DELETE", "/api/v1/session", None);
    assert_eq!(status, 204);
    assert_eq!(alice.get("/api/v1/session").0, 401);
    assert_eq!(alice.get("/api/v1/projects").0, 401);
    let outs = server.audit_of("signout");
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0]["actor"], "alice");
}

#[test]
fn an_idle_session_expires() {
    let server = TestServer::start(Setup {
        config: "[session]\nidle_seconds = 2\n".into(),
        ..Setup::default()
    });
    let alice = server.sign_in("alice");
    assert_eq!(alice.get("/api/v1/projects").0, 200);
    std::thread::sleep(std::time::Duration::from_millis(3_000));
    let (status, body) = alice.get("/api/v1/projects");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "kura.auth.required");
}

#[test]
fn a_disabled_account_cannot_sign_in_and_loses_its_session() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");
    let stu = server.sign_in("stu");
    let (status, body) = stu.post("/api/v1/accounts/alice/disable", json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(alice.get("/api/v1/session").0, 401);
    let (status, body) = server.sign_in_attempt("alice", PASSWORD);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "kura.auth.failed");
}

#[test]
fn state_changes_need_the_csrf_token_and_our_origin() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");
    let sql = json!({"sql": "SELECT 1"});
    let url = server.url("/api/v1/projects/p1/queries");
    // No token.
    let r = alice.client.post(&url).json(&sql).send().unwrap();
    let (status, body) = answer(r);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("kura.csrf"))
    );
    // Wrong token.
    let r = alice
        .client
        .post(&url)
        .header("x-kura-csrf", "0000")
        .json(&sql)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // Right token, another site's Origin.
    let r = alice
        .client
        .post(&url)
        .header("x-kura-csrf", &alice.csrf)
        .header("origin", "https://evil.example")
        .json(&sql)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // The local sign-in needs its own marker header.
    let r = server
        .client()
        .post(server.url("/api/v1/session"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(server.audit_of("query.submitted").is_empty(), "nothing ran");
    // With both, it runs.
    let (status, body) = alice.post("/api/v1/projects/p1/queries", sql);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn every_answer_carries_the_security_headers() {
    let server = TestServer::start(Setup::default());
    let client = server.client();
    for path in [
        "/",
        "/api/v1/config",
        "/api/v1/projects",
        "/ui/app.js",
        "/nope",
    ] {
        let r = client.get(server.url(path)).send().unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(h["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age="));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        if !path.starts_with("/ui/") {
            assert_eq!(h["cache-control"], "no-store", "{path}");
        }
    }
    // The page loads no inline script: every <script> has a src.
    let html = client.get(server.url("/")).send().unwrap().text().unwrap();
    for tag in html.split("<script").skip(1) {
        assert!(
            tag.split('>').next().unwrap().contains("src="),
            "inline script in /"
        );
    }
}

#[test]
fn failed_sign_ins_are_audited_and_rate_limited() {
    let server = TestServer::start(Setup::default());
    for _ in 0..5 {
        let (status, _) = server.sign_in_attempt("alice", "wrong password!!");
        assert_eq!(status, 401);
    }
    let (status, body) = server.sign_in_attempt("alice", "wrong password!!");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "kura.auth.rate_limited");
    // Even the right password waits now.
    let (status, _) = server.sign_in_attempt("alice", PASSWORD);
    assert_eq!(status, 429);
    // An unknown user answers exactly like a wrong password.
    let (status, body) = server.sign_in_attempt("nobody", "whatever it is");
    assert_eq!(status, 429, "same address: {body}");
    let failed = server.audit_of("signin.failed");
    assert_eq!(failed.len(), 8, "{failed:#?}");
    assert_eq!(failed[0]["actor"], "alice");
    assert_eq!(failed[0]["payload"]["reason"], "bad_credentials");
    assert_eq!(failed[5]["payload"]["reason"], "rate_limited");
    assert!(server.audit_of("signin").is_empty());
}

/// The memory concurrent sign-ins use (argon2id's 19 MiB per password check) goes back to the
/// system: glibc would keep such a block in every arena that served one, so resident memory
/// would grow by about 19 MiB per concurrent sign-in ever seen (crates/kura/src/malloc.rs).
#[test]
fn memory_of_concurrent_sign_ins_is_given_back() {
    let server = TestServer::start(Setup::default());
    server.sign_in("alice");
    let before = server.rss_mib();
    for _ in 0..3 {
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| server.sign_in("alice"));
            }
        });
    }
    let after = server.rss_mib();
    // Kept blocks would be 12 x 19 MiB; what remains is the runtime's threads and caches.
    assert!(
        after - before < 80.0,
        "resident memory grew from {before:.0} to {after:.0} MiB over 36 sign-ins"
    );
}
