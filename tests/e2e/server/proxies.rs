//! Behind a reverse proxy (`trusted_proxies`): the sign-in limit counts each forwarded client
//! address on its own and audit entries record it; without the setting, or from a client that
//! is not a trusted proxy, `X-Forwarded-For` is ignored. The tests connect from 127.0.0.1, so
//! they play the proxy (and the clients behind it) themselves.

use kura_e2e::server::{answer, serve_refused, Setup, TestServer, PASSWORD};
use serde_json::{json, Value};

/// One local sign-in from a fresh browser, sent with these `X-Forwarded-For` values (one
/// header line each): (status, body).
fn sign_in_via(
    server: &TestServer,
    forwarded: &[&str],
    user: &str,
    password: &str,
) -> (u16, Value) {
    let mut request = server
        .client()
        .post(server.url("/api/v1/session"))
        .header("origin", &server.origin)
        .header("x-kura-csrf", "login");
    for value in forwarded {
        request = request.header("x-forwarded-for", *value);
    }
    answer(
        request
            .json(&json!({"username": user, "password": password}))
            .send()
            .unwrap(),
    )
}

fn addresses(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["payload"]["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit_and_audited_address() {
    let server = TestServer::start(Setup {
        config: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Setup::default()
    });
    // Five failures of one client behind the proxy (as nginx's $proxy_add_x_forwarded_for
    // sends it: the client's address appended last).
    for _ in 0..5 {
        let (status, body) = sign_in_via(&server, &["203.0.113.5"], "alice", "wrong password!!");
        assert_eq!(status, 401, "{body}");
    }
    // That client is now limited, under any name, even with the right password...
    let (status, body) = sign_in_via(&server, &["203.0.113.5"], "bob", PASSWORD);
    assert_eq!(status, 429, "{body}");
    // ...and cannot get out by sending its own X-Forwarded-For through the proxy, which
    // appends the address it really comes from.
    let (status, body) = sign_in_via(&server, &["203.0.113.6, 203.0.113.5"], "bob", PASSWORD);
    assert_eq!(
        status, 429,
        "a client-written entry is not its address: {body}"
    );
    let (status, body) = sign_in_via(&server, &["203.0.113.6", "203.0.113.5"], "bob", PASSWORD);
    assert_eq!(status, 429, "nor is one on its own header line: {body}");

    // Another client behind the same proxy signs in: it is not locked out by the first one.
    let (status, body) = sign_in_via(&server, &["203.0.113.6"], "bob", PASSWORD);
    assert_eq!(
        status, 200,
        "a correct sign-in from another address: {body}"
    );
    // The proxy's own address (a request it makes itself, without the header) is free too.
    let (status, body) = sign_in_via(&server, &[], "carol", PASSWORD);
    assert_eq!(status, 200, "{body}");

    let failed = server.audit_of("signin.failed");
    let reasons: Vec<&str> = failed
        .iter()
        .map(|e| e["payload"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [["bad_credentials"; 5].as_slice(), &["rate_limited"; 3]].concat(),
        "{failed:#?}"
    );
    assert_eq!(addresses(&failed), vec!["203.0.113.5"; 8], "{failed:#?}");
    let signed_in = server.audit_of("signin");
    let who: Vec<(&str, &str)> = signed_in
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["payload"]["address"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(who, [("bob", "203.0.113.6"), ("carol", "127.0.0.1")]);
}

#[test]
fn without_trusted_proxies_x_forwarded_for_is_ignored() {
    let server = TestServer::start(Setup::default());
    // A client sends a different forwarded address at every attempt: all are one address.
    for i in 1..=5 {
        let forwarded = format!("203.0.113.{i}");
        let (status, body) = sign_in_via(&server, &[&forwarded], "alice", "wrong password!!");
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = sign_in_via(&server, &["198.51.100.9"], "bob", PASSWORD);
    assert_eq!(status, 429, "the connection's address is limited: {body}");
    let failed = server.audit_of("signin.failed");
    assert_eq!(failed.len(), 6, "{failed:#?}");
    assert_eq!(addresses(&failed), vec!["127.0.0.1"; 6], "{failed:#?}");
}

#[test]
fn a_proxy_block_that_is_not_one_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kura.toml");
    for (bad, why) in [
        ("10.0.0/8", "not a CIDR block"),
        ("0.0.0.0/0", "trusts every address"),
        ("10.0.0.1/8", "10.0.0.0/8"),
    ] {
        let stderr = serve_refused(
            &config,
            &format!("state_dir = \"state\"\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\", \"{bad}\"]\n"),
        );
        assert!(stderr.contains(&format!("\"{bad}\"")), "{bad}: {stderr}");
        assert!(stderr.contains(why), "{bad}: {stderr}");
    }
}
