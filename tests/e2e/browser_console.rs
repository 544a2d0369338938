#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The supervisor console in headless Chromium against a real `kura serve` (issue 7): a
//! researcher slices a population by changing one literal; the supervisor opens the console,
//! sees the flag with the researcher's queries, opens one with its inclusion proof, filters the
//! log, presses "verify now" (intact), and after the test alters a stored leaf presses it again
//! (tampering reported). The page keeps its CSP, switches to Japanese, and a researcher who
//! opens the console's address sees nothing of it.

use std::time::Duration;

use kura_e2e::browser::{problems, Chrome};
use kura_e2e::server::{Setup, TestServer, PASSWORD};
use serde_json::json;

const SLICE: &str = "SELECT count(*) AS n FROM nanbyo_forms WHERE disease_no = ";

/// Flips one bit of the commitment of stored leaf `index` in the state's `kura.sqlite`.
fn tamper(server: &TestServer, index: u64) {
    let db = rusqlite::Connection::open(server.state.path().join("kura.sqlite")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut leaf: Vec<u8> = db
        .query_row(
            "SELECT leaf FROM audit_leaves WHERE idx = ?1",
            [index as i64],
            |r| r.get(0),
        )
        .unwrap();
    let last = leaf.len() - 1;
    leaf[last] ^= 0x01;
    db.execute(
        "UPDATE audit_leaves SET leaf = ?1 WHERE idx = ?2",
        rusqlite::params![leaf, index as i64],
    )
    .unwrap();
}

#[test]
fn a_supervisor_sees_a_differencing_flag_and_verify_now_reports_intact_then_tampering() {
    let server = TestServer::start(Setup::default());
    let alice = server.sign_in("alice");
    for d in [21, 22, 23, 24] {
        let (status, body) = alice.query("p1", &format!("{SLICE}{d}"));
        assert_eq!(status, 200, "{body}");
    }
    let mut submitted: Vec<u64> = server
        .audit_of("query.submitted")
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    submitted.sort();
    assert_eq!(submitted.len(), 4);

    let chrome = Chrome::start("console-sue", "en-US");
    let mut log = Vec::new();
    chrome.sign_in(&server.origin, "sue", PASSWORD);
    chrome.click(&chrome.wait_for("#nav-console"));
    chrome.wait_for("#view-console");

    // The flag names alice, the values she changed and the entries behind it.
    let flag_css = ".usage-flag[data-kind=\"differencing\"][data-actor=\"alice\"]";
    let flag = chrome.wait_for(flag_css);
    let text = chrome.text(&flag);
    assert!(text.contains("21 / 22 / 23 / 24"), "{text}");
    assert!(
        text.contains(&chrome.ui_text("console.flag.differencing")),
        "{text}"
    );
    let listed: Vec<u64> = chrome
        .js(
            "return Array.from(document.querySelectorAll(arguments[0] + ' .flag-entry'), b => Number(b.dataset.index))",
            vec![json!(flag_css)],
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(listed, submitted);
    // The charts are drawn: one bar per day with queries, in p1's colour.
    chrome.wait_for("#usage-chart-queries svg.chart-svg rect.chart-bar.series-0");
    assert!(chrome.count("#usage-chart-exports svg.chart-svg") == 1);

    // One of the flagged entries, with its payload and a proof the server checked.
    let target = submitted[2];
    chrome.click(&chrome.wait_for(&format!("{flag_css} .flag-entry[data-index=\"{target}\"]")));
    chrome.wait_for(&format!(
        "#audit-entry-detail[data-index=\"{target}\"][data-proof=\"valid\"]"
    ));
    let payload = chrome.text(&chrome.wait_for("#audit-entry-payload"));
    assert!(payload.contains(&format!("{SLICE}23")), "{payload}");
    let proof = chrome.text(&chrome.wait_for("#audit-entry-proof"));
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1"), "{proof}");

    // The browser: alice's submitted queries only.
    chrome.type_into(&chrome.wait_for("#audit-filter-actor"), "alice");
    chrome.click(&chrome.wait_for("#audit-filter-type option[value=\"query.submitted\"]"));
    chrome.click(&chrome.wait_for("#audit-search"));
    chrome.wait_js(
        "four entries of alice",
        "document.querySelectorAll('#audit-entries .audit-entry').length === 4 && \
         Array.from(document.querySelectorAll('#audit-entries .audit-entry')).every(e => e.dataset.type === 'query.submitted')",
        Duration::from_secs(30),
    );
    let shown: Vec<u64> = chrome
        .js(
            "return Array.from(document.querySelectorAll('#audit-entries .audit-entry'), e => Number(e.dataset.index))",
            vec![],
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut newest_first = submitted.clone();
    newest_first.reverse();
    assert_eq!(shown, newest_first);
    chrome.wait_for("#audit-checkpoint .checkpoint-note");

    // Verify now: intact.
    chrome.click(&chrome.wait_for("#audit-verify"));
    let result = chrome.wait_for("#audit-verify-result[data-intact=\"true\"]");
    assert!(chrome
        .text(&result)
        .contains(&chrome.ui_text("console.verify.intact")));

    // Someone changes a stored leaf; verify now reports it and where.
    tamper(&server, target);
    chrome.click(&chrome.wait_for("#audit-verify"));
    let result = chrome.wait_for("#audit-verify-result[data-intact=\"false\"]");
    let said = chrome.text(&result);
    assert!(
        said.contains(&chrome.ui_text("console.verify.tampered"))
            && said.contains(&format!("#{target}")),
        "{said}"
    );

    // Japanese: the console re-renders in the chosen language.
    chrome.click(&chrome.wait_for("#lang-toggle option[value=\"ja\"]"));
    chrome.wait_text("#nav-console", &chrome.ui_text("console.nav"));
    assert_eq!(
        chrome.js("return document.documentElement.lang", vec![]),
        "ja"
    );
    chrome.wait_text(
        "#audit-verify-result .verify-verdict",
        &chrome.ui_text("console.verify.tampered"),
    );
    chrome.wait_for(".usage-flag[data-kind=\"differencing\"]");
    log.extend(chrome.take_log());

    // A researcher who opens the console's address sees none of it.
    chrome.click(&chrome.wait_for("#signout"));
    chrome.sign_in(&server.origin, "alice", PASSWORD);
    assert!(!chrome.displayed(&chrome.find_all("#nav-console")[0]));
    chrome.goto(&format!("{}/#/console", server.origin));
    chrome.wait_text("#console-error", &chrome.ui_text("console.notAllowed"));
    assert_eq!(chrome.count("#audit-entries .audit-entry"), 0);
    assert_eq!(chrome.count(".usage-flag"), 0);
    log.extend(chrome.take_log());
    assert!(
        problems(&log).is_empty(),
        "CSP violations or script errors: {:?}",
        problems(&log)
    );
}
