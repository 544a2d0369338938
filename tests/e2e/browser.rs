#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The web UI in headless Chromium against a real `kura serve`: a researcher signs in through
//! the real OpenID provider, is added to a project by the steward, runs a query, sees its rows,
//! stages the result and signs out; the audit log holds each step and verifies after a graceful
//! stop. The session cookie is out of the page's reach and the CSP is never violated. A second
//! test drives the Japanese password sign-in form.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use kura_e2e::browser::{problems, Chrome, WAIT};
use kura_e2e::oidc::{TestAccount, TestClient, TestProvider};
use kura_e2e::server::{free_port, snapshot_dir, Setup, TestServer, PASSWORD};
use serde_json::{json, Value};

const SECRET: &str = "kura-browser-test-client-secret-01234";
const OLIVE_PASSWORD: &str = "olive's real password";
const SESSION_COOKIE: &str = "__Host-kura_session";
const SQL: &str = "SELECT sex, count(*) AS n FROM nanbyo_forms GROUP BY sex ORDER BY sex";

/// The status `GET /api/v1/session` answers for a bare session token, outside the browser.
fn session_status(server: &TestServer, token: &str) -> u16 {
    server
        .client()
        .get(server.url("/api/v1/session"))
        .header("cookie", format!("{SESSION_COOKIE}={token}"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Rows of `table` in the test snapshot, from the manifest its builder wrote.
fn snapshot_rows(table: &str) -> u64 {
    let text = std::fs::read_to_string(snapshot_dir().join("demo.duckdb.manifest.json")).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    let t = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table);
    t.and_then(|t| t["rows"].as_u64())
        .unwrap_or_else(|| panic!("no {table} in the manifest"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

fn is_japanese(s: &str) -> bool {
    s.chars()
        .any(|c| matches!(c, '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}'))
}

#[test]
fn a_researcher_signs_in_with_openid_queries_stages_and_signs_out() {
    let port = free_port();
    let provider = TestProvider::start(
        &[TestAccount::new("olive", OLIVE_PASSWORD, &["researcher"])],
        &TestClient {
            client_id: "kura".into(),
            client_secret: SECRET.into(),
            redirect_uris: vec![format!("https://127.0.0.1:{port}/auth/oidc/callback")],
        },
    )
    .expect("start the OpenID provider (node and npm are needed; scripts/test installs them)");
    let mut server = TestServer::start(Setup {
        port,
        config: format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"kura\"\nclient_secret = \"{SECRET}\"\n\
             label = \"Test IdP\"\nallow_insecure_loopback = true\n",
            provider.issuer
        ),
        ..Setup::default()
    });
    let chrome = Chrome::start("oidc", "en-US");
    let mut log = Vec::new();

    // Kura's sign-in page, in English as the browser asks.
    chrome.goto(&server.url("/"));
    let signin = chrome.wait_for("#oidc-signin");
    assert_eq!(
        chrome.text(&signin),
        "Test IdP",
        "the button carries the configured label"
    );
    assert_eq!(
        chrome.js("return document.documentElement.lang", vec![]),
        "en"
    );
    chrome.click(&signin);

    // The provider's own login form, on another site.
    let login = chrome.wait_for("input[name=login]");
    assert!(
        chrome.url().starts_with(&provider.issuer),
        "at the provider: {}",
        chrome.url()
    );
    chrome.type_into(&login, "olive");
    chrome.type_into(&chrome.wait_for("input[name=password]"), OLIVE_PASSWORD);
    chrome.click(&chrome.wait_for("button[type=submit]"));

    // Back at Kura, signed in as a brand-new account with no project yet.
    let user = chrome.wait_for("#current-user[data-user-id=\"olive\"]");
    assert!(
        chrome.url().starts_with(&server.origin),
        "back at Kura: {}",
        chrome.url()
    );
    assert!(
        chrome.text(&user).contains("olive"),
        "{}",
        chrome.text(&user)
    );
    chrome.wait_for("#projects-empty");
    assert!(chrome.find_all(".project-item").is_empty());

    // The steward adds her to p1; a reload shows it (and only it).
    let stu = server.sign_in("stu");
    let expires =
        (Utc::now() + chrono::Duration::days(30)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (status, member) = stu.send(
        "PUT",
        "/api/v1/projects/p1/members/olive",
        Some(json!({"role": "researcher", "expires": expires})),
    );
    assert_eq!(status, 200, "{member}");
    log.extend(chrome.take_log());
    chrome.refresh();
    let project = chrome.wait_for(".project-item[data-project-id=\"p1\"]");
    assert_eq!(chrome.find_all(".project-item").len(), 1, "p2 is not hers");
    chrome.click(&project);

    // The catalog shows the granted columns only.
    chrome.wait_for("#catalog .catalog-table[data-table=\"nanbyo_forms\"]");
    let mut columns = strings(&chrome.js(
        "return Array.from(document.querySelectorAll('#catalog .catalog-column[data-table=\"nanbyo_forms\"]'))\
         .map((b) => b.dataset.column)",
        vec![],
    ));
    columns.sort();
    assert_eq!(
        columns,
        ["disease_no", "pref_code", "research_id", "severity", "sex"]
    );

    // A query through the sandbox; its rows on screen.
    let editor = chrome.wait_for("#sql-editor");
    chrome.type_into(&editor, SQL);
    assert_eq!(chrome.property(&editor, "value"), SQL);
    chrome.click(&chrome.wait_for("#run-query"));
    chrome.wait_for_within("#result-meta[data-row-count]", Duration::from_secs(120));
    chrome.wait_for("#result-table tbody tr");
    assert!(
        chrome
            .find_all("#query-error")
            .iter()
            .all(|e| !chrome.displayed(e)),
        "a query error is shown"
    );
    let meta = chrome.js(
        "return Object.assign({}, document.querySelector('#result-meta').dataset)",
        vec![],
    );
    assert_eq!(
        (meta["rowCount"].as_str(), meta["truncated"].as_str()),
        (Some("2"), Some("false")),
        "{meta}"
    );
    let head = strings(&chrome.js(
        "return Array.from(document.querySelectorAll('#result-table thead th')).map((th) => th.textContent)",
        vec![],
    ));
    assert_eq!(head, ["sex", "n"]);
    let rows: Vec<Vec<String>> = chrome
        .js(
            "return Array.from(document.querySelectorAll('#result-table tbody tr'))\
             .map((tr) => Array.from(tr.cells).map((td) => td.textContent))",
            vec![],
        )
        .as_array()
        .unwrap()
        .iter()
        .map(strings)
        .collect();
    let sexes: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        sexes,
        ["1", "2"],
        "the policy codes sex as 1 male, 2 female: {rows:?}"
    );
    let counts: Vec<u64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
    assert!(counts.iter().all(|&n| n > 0), "{rows:?}");
    assert_eq!(
        counts.iter().sum::<u64>(),
        snapshot_rows("nanbyo_forms"),
        "every form counted once"
    );
    let qid = meta["queryId"].as_str().unwrap().to_string();
    let result_sha = meta["resultSha256"].as_str().unwrap().to_string();

    // Stage the result for the airlock.
    let title = "Patients by sex (browser test)";
    chrome.type_into(&chrome.wait_for("#stage-title"), title);
    chrome.wait_js(
        "the stage button",
        "!document.querySelector('#stage-output').disabled",
        WAIT,
    );
    chrome.click(&chrome.wait_for("#stage-output"));
    let output = format!("#outputs .output-item[data-query-id=\"{qid}\"]");
    let item = chrome.wait_for(&output);
    assert_eq!(
        chrome.attribute(&item, "data-status").as_deref(),
        Some("draft")
    );
    assert_eq!(
        chrome.text(&chrome.wait_for(&format!("{output} .output-title"))),
        title
    );

    // The session cookie exists, is HttpOnly, Secure and Lax, and scripts cannot read it.
    let cookies = chrome.cookies();
    let Some(cookie) = cookies.iter().find(|c| c["name"] == SESSION_COOKIE) else {
        chrome.fail(&format!("no {SESSION_COOKIE} cookie: {cookies:?}"));
    };
    assert_eq!(
        (
            &cookie["httpOnly"],
            &cookie["secure"],
            &cookie["sameSite"],
            &cookie["path"]
        ),
        (&json!(true), &json!(true), &json!("Lax"), &json!("/")),
        "{cookie}"
    );
    let visible = chrome.js("return document.cookie", vec![]);
    assert!(
        !visible.as_str().unwrap().contains("kura_session"),
        "document.cookie = {visible}"
    );
    let token = cookie["value"].as_str().unwrap().to_string();
    assert_eq!(
        session_status(&server, &token),
        200,
        "the token is the live session"
    );

    // Sign out: the sign-in view returns, the session is dead on the server, and stays gone
    // after a reload.
    chrome.click(&chrome.wait_for("#signout"));
    chrome.wait_for("#oidc-signin");
    chrome.wait_gone("#current-user");
    assert_eq!(
        session_status(&server, &token),
        401,
        "the old session still works"
    );
    log.extend(chrome.take_log());
    chrome.refresh();
    chrome.wait_for("#oidc-signin");
    chrome.wait_gone("#current-user");
    assert!(
        chrome.cookies().iter().all(|c| c["name"] != SESSION_COOKIE),
        "the cookie was not cleared"
    );

    // No CSP violation or script error on any page, and the check can see one: an injected
    // inline script is blocked and reported.
    log.extend(chrome.take_log());
    assert_eq!(
        problems(&log),
        Vec::<String>::new(),
        "the browser reported problems"
    );
    let ran = chrome.js(
        "const s = document.createElement('script'); s.textContent = 'window.kuraInlineRan = true'; \
         document.head.append(s); return window.kuraInlineRan === true;",
        vec![],
    );
    assert_eq!(ran, false, "the CSP let an inline script run");
    let reported = chrome.take_log();
    assert!(
        problems(&reported)
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "the blocked inline script was not reported: {reported:?}"
    );
    drop(chrome);

    // The audit log holds her day in order.
    let entries = server.audit_entries();
    let olive: Vec<&Value> = entries.iter().filter(|e| e["actor"] == "olive").collect();
    let kinds: Vec<&str> = olive.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "signin",
            "query.submitted",
            "query.completed",
            "result.viewed",
            "output.staged",
            "signout"
        ],
        "{olive:#?}"
    );
    let (signin, submitted, completed, viewed, staged, signout) =
        (olive[0], olive[1], olive[2], olive[3], olive[4], olive[5]);
    assert_eq!(signin["payload"]["method"], "oidc");
    assert_eq!(signin["payload"]["roles"], json!(["researcher"]));
    assert!(
        signin["session"].is_string() && signout["session"] == signin["session"],
        "{signin} {signout}"
    );
    assert_eq!(submitted["payload"]["sql"], SQL);
    assert_eq!(
        (
            &completed["payload"]["rows"],
            &completed["payload"]["sha256"]
        ),
        (&json!(2), &json!(result_sha))
    );
    assert_eq!(
        (
            &viewed["payload"]["query_id"],
            &viewed["payload"]["result_sha256"]
        ),
        (&json!(qid), &json!(result_sha))
    );
    assert_eq!(
        (&staged["payload"]["query_id"], &staged["payload"]["title"]),
        (&json!(qid), &json!(title))
    );
    // The steward's change sits between her sign-in and her query.
    let at = |e: &Value| e["index"].as_u64().unwrap();
    let added = entries
        .iter()
        .find(|e| {
            e["actor"] == "stu"
                && e["type"] == "admin.action"
                && e["payload"]["action"] == "member.set"
                && e["payload"]["member"]["user"] == "olive"
        })
        .unwrap_or_else(|| panic!("the membership change is not audited: {entries:#?}"));
    assert!(
        at(signin) < at(added) && at(added) < at(submitted),
        "order: {entries:#?}"
    );

    server.stop_and_verify_audit();
}

#[test]
fn the_japanese_sign_in_form_refuses_a_wrong_password_then_signs_in() {
    let server = TestServer::start(Setup::default());
    let chrome = Chrome::start("ja", "ja");
    chrome.goto(&server.url("/"));
    chrome.wait_for("#login-form");
    let language = chrome.js("return navigator.language", vec![]);
    assert!(
        language.as_str().unwrap().starts_with("ja"),
        "the browser did not take --lang=ja: {language}"
    );
    assert_eq!(
        chrome.js("return document.documentElement.lang", vec![]),
        "ja"
    );
    assert!(
        chrome
            .find_all("#oidc-signin")
            .iter()
            .all(|e| !chrome.displayed(e)),
        "no OpenID button without [oidc]"
    );
    let text = |dict: &str, key: &str| -> String {
        let v = chrome.js(
            "return globalThis.KURA_I18N[arguments[0]][arguments[1]]",
            vec![json!(dict), json!(key)],
        );
        v.as_str()
            .unwrap_or_else(|| panic!("no {dict} text for {key}"))
            .to_string()
    };
    let heading = chrome.text(&chrome.wait_for("#signin-heading"));
    assert!(is_japanese(&heading), "{heading}");
    assert_eq!(heading, text("ja", "signin.heading"));
    assert_ne!(heading, text("en", "signin.heading"));
    assert_eq!(
        chrome.js("return document.title", vec![]),
        text("ja", "app.title").as_str()
    );

    // A wrong password: the Japanese error, still signed out.
    chrome.type_into(&chrome.wait_for("#login-username"), "alice");
    chrome.type_into(&chrome.wait_for("#login-password"), "not alice's password");
    chrome.click(&chrome.wait_for("#login-submit"));
    let error = chrome.text(&chrome.wait_for("#signin-error"));
    assert!(is_japanese(&error), "{error}");
    assert_eq!(error, text("ja", "signin.failed"));
    assert!(chrome
        .find_all("#current-user")
        .iter()
        .all(|e| !chrome.displayed(e)));

    // The right password: signed in, her project listed with her role in Japanese.
    chrome.type_into(&chrome.wait_for("#login-password"), PASSWORD);
    chrome.click(&chrome.wait_for("#login-submit"));
    chrome.wait_for("#current-user[data-user-id=\"alice\"]");
    chrome.wait_gone("#signin-error");
    let role = chrome.text(&chrome.wait_for(".project-item[data-project-id=\"p1\"] .project-role"));
    assert_eq!(role, text("ja", "role.researcher"));
    assert!(is_japanese(&role), "{role}");
    assert_eq!(
        problems(&chrome.take_log()),
        Vec::<String>::new(),
        "the browser reported problems"
    );

    let alice: Vec<Value> = server
        .audit_entries()
        .into_iter()
        .filter(|e| e["actor"] == "alice")
        .collect();
    let kinds: Vec<&str> = alice.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["signin.failed", "signin"], "{alice:#?}");
    assert!(
        alice.iter().all(|e| e["payload"]["method"] == "local"),
        "{alice:#?}"
    );
}
