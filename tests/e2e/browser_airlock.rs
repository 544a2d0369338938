#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The airlock in headless Chromium against a real `kura serve` (issue 6): `rc`, a researcher
//! who also holds the output-checker role, runs a query, stages the result, describes and
//! submits it; her own attempt to approve it is refused on screen and changes nothing; two other
//! checkers each see the automatic report (failing cells highlighted), the SQL and the context,
//! and approve blind; Kura releases the protected table and the author downloads it through her
//! browser session. The audit log holds each step in order and verifies after a graceful stop.

use std::time::Duration;

use chrono::Utc;
use kura_e2e::browser::{problems, Chrome, WAIT};
use kura_e2e::server::{project, Setup, TestServer, PASSWORD};
use serde_json::{json, Value};

const SQL: &str =
    "SELECT pref_code AS \"dim:prefecture\", count(DISTINCT research_id) AS \"count:patients\" \
     FROM nanbyo_forms GROUP BY pref_code ORDER BY pref_code";
const TITLE: &str = "Patients by prefecture (browser test)";
const DESCRIPTION: &str = "Patients with any designated disease by prefecture of residence";
const DENOMINATORS: &str = "All patients with a consenting form in the snapshot";
const METHOD: &str = "count(DISTINCT research_id) grouped by pref_code on nanbyo_forms";

/// alice a researcher of p1, carol and dave checkers, and rc, a researcher of p1 who is also a
/// checker: the author who could review if Kura let her.
fn setup() -> Setup {
    let now = Utc::now();
    let year = now + chrono::Duration::days(365);
    Setup {
        accounts: vec![
            ("alice", vec!["researcher"]),
            ("carol", vec!["checker"]),
            ("dave", vec!["checker"]),
            ("rc", vec!["researcher", "checker"]),
        ],
        projects: vec![project("p1", now)],
        members: vec![
            ("p1", "alice", "researcher", year),
            ("p1", "rc", "researcher", year),
        ],
        ..Setup::default()
    }
}

/// The fields of one CSV line (RFC 4180 quoting; no field of this table spans lines).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// A checker (a fresh browser) opens the output from the queue, where the round awaits them,
/// and waits for its report. Returns the browser and the number of suppressed cells the report
/// proposes.
fn open_for_review(server: &TestServer, user: &str, oid: &str, awaiting: &str) -> (Chrome, u64) {
    let chrome = Chrome::start(&format!("airlock-{user}"), "en-US");
    chrome.sign_in(&server.origin, user, PASSWORD);
    // An output checker and nothing else starts at the queue.
    let entry = format!(
        "#reviews a.review-item[data-output-id=\"{oid}\"][data-state=\"submitted\"][data-awaiting=\"{awaiting}\"]"
    );
    chrome.click(&chrome.wait_for(&entry));
    chrome.wait_for(&format!(
        "#review-detail[data-output-id=\"{oid}\"][data-state=\"submitted\"]"
    ));
    chrome.wait_for("#vote-form");

    // The automatic check: small cells fail and are highlighted.
    chrome.wait_for("#review-report .report-table td.report-cell.cell-fail");
    let report = chrome.wait_for("#review-report[data-passed=\"false\"]");
    let failing: u64 = chrome
        .attribute(&report, "data-failing-cells")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        failing > 0,
        "3,000 patients over 47 prefectures leave small cells"
    );
    assert_eq!(
        chrome.count("#review-report .report-table td.report-cell.cell-fail"),
        failing,
        "every failing cell is highlighted"
    );
    let suppressed =
        chrome.count("#review-report .report-table td.report-cell[data-action=\"suppress\"]");
    assert!(suppressed > 0, "the protected table suppresses cells");

    // The SQL and the context as submitted.
    assert_eq!(chrome.text(&chrome.wait_for("#review-sql")), SQL);
    assert_eq!(
        chrome.text(&chrome.wait_for("#review-context .ctx-description-text")),
        DESCRIPTION
    );
    assert_eq!(
        chrome.text(&chrome.wait_for("#review-context .ctx-method-text")),
        METHOD
    );
    (chrome, suppressed)
}

/// Casts an approval with `comment` from the open review.
fn approve(chrome: &Chrome, comment: &str) {
    chrome.click(&chrome.wait_for("#vote-decision option[value=\"approve\"]"));
    assert_eq!(
        chrome.property(&chrome.wait_for("#vote-decision"), "value"),
        "approve"
    );
    chrome.type_into(&chrome.wait_for("#vote-comment"), comment);
    chrome.click(&chrome.wait_for("#vote-submit"));
}

#[test]
fn an_output_is_submitted_refused_to_its_author_approved_by_two_checkers_and_downloaded() {
    let mut server = TestServer::start(setup());
    let mut log = Vec::new();

    // 1. rc runs the query, stages it, describes it and submits it.
    let rc = Chrome::start("airlock-rc", "en-US");
    rc.sign_in(&server.origin, "rc", PASSWORD);
    rc.click(&rc.wait_for(".project-item[data-project-id=\"p1\"]"));
    rc.type_into(&rc.wait_for("#sql-editor"), SQL);
    rc.click(&rc.wait_for("#run-query"));
    let meta = rc.wait_for_within("#result-meta[data-row-count]", Duration::from_secs(120));
    let qid = rc.attribute(&meta, "data-query-id").unwrap();
    rc.type_into(&rc.wait_for("#stage-title"), TITLE);
    rc.wait_js(
        "the stage button",
        "!document.querySelector('#stage-output').disabled",
        WAIT,
    );
    rc.click(&rc.wait_for("#stage-output"));
    let item = rc.wait_for(&format!(
        "#outputs .output-item[data-query-id=\"{qid}\"][data-status=\"draft\"]"
    ));
    let oid = rc.attribute(&item, "data-output-id").unwrap();
    let panel = format!("#output-detail[data-output-id=\"{oid}\"]");

    // Staging opens the new output's panel; close it and open it again from the list.
    rc.wait_for(&panel);
    rc.click(&rc.wait_for("#output-close"));
    rc.wait_gone("#output-detail");
    rc.click(&rc.wait_for(&format!(
        "#outputs .output-item[data-output-id=\"{oid}\"] .output-open"
    )));
    rc.wait_for(&format!("{panel}[data-state=\"draft\"]"));
    // The save button appears once the review has loaded: the author edits her draft.
    rc.wait_for("#ctx-save");
    assert_eq!(
        rc.js(
            "return document.querySelector('#output-sql').textContent",
            vec![]
        ),
        SQL
    );
    rc.type_into(&rc.wait_for("#ctx-description"), DESCRIPTION);
    rc.type_into(&rc.wait_for("#ctx-denominators"), DENOMINATORS);
    rc.type_into(&rc.wait_for("#ctx-method"), METHOD);
    rc.click(&rc.wait_for("#ctx-save"));
    rc.wait_text("#ctx-status", &rc.ui_text("ctx.saved"));
    rc.click(&rc.wait_for("#output-submit"));
    rc.wait_for(&format!("{panel}[data-state=\"submitted\"]"));
    rc.wait_text("#output-status", &rc.ui_text("airlock.submitted"));
    rc.wait_gone("#output-error");
    rc.wait_gone("#ctx-save"); // a submitted context is no longer editable
    rc.wait_for(&format!(
        "#outputs .output-item[data-output-id=\"{oid}\"][data-status=\"submitted\"]"
    ));

    // 2. rc holds the checker role, so her queue lists her own output; approving it is refused.
    rc.click(&rc.wait_for("#nav-reviews"));
    let entry = format!("#reviews a.review-item[data-output-id=\"{oid}\"]");
    rc.click(&rc.wait_for(&format!("{entry}[data-awaiting=\"first_checker\"]")));
    let detail = format!("#review-detail[data-output-id=\"{oid}\"]");
    rc.wait_for(&format!("{detail}[data-state=\"submitted\"]"));
    rc.wait_text("#vote-note", &rc.ui_text("vote.ownOutput"));
    approve(&rc, "Looks fine to me, the author.");
    rc.wait_for("#review-error");
    let code = rc.text(&rc.wait_for("#review-error .error-code"));
    let message = rc.text(&rc.wait_for("#review-error .error-message"));
    assert_eq!(code, "kura.forbidden", "{message}");
    assert!(
        message.contains("review_output") && message.contains("forbid-self-review"),
        "the refusal names the action and the separation-of-duties policy: {message}"
    );
    assert_eq!(
        rc.js(
            "return document.querySelector('#review-status').textContent",
            vec![]
        ),
        "",
        "no vote was recorded"
    );
    // A reload asks the server afresh: still submitted, still awaiting its first checker, and
    // rc has not voted.
    log.extend(rc.take_log());
    rc.refresh();
    rc.wait_for(&format!("{detail}[data-state=\"submitted\"]"));
    rc.wait_for(&format!(
        "{entry}[data-state=\"submitted\"][data-awaiting=\"first_checker\"]"
    ));
    rc.wait_for("#vote-form");
    assert_eq!(rc.count(&format!("{entry} .voted-badge")), 0);
    assert_eq!(rc.count("#review-votes .vote-item"), 0);

    // 3. carol and dave, each in their own browser, review and approve.
    let (carol, suppressed) = open_for_review(&server, "carol", &oid, "first_checker");
    approve(
        &carol,
        "Small cells are suppressed; the SQL matches the context.",
    );
    carol.wait_text("#review-status", &carol.ui_text("vote.done"));
    carol.wait_for(&format!("{detail}[data-state=\"submitted\"]"));
    carol.wait_text("#vote-note", &carol.ui_text("vote.alreadyVoted"));
    carol.wait_gone("#review-error");
    log.extend(carol.take_log());
    drop(carol);

    let (dave, _) = open_for_review(&server, "dave", &oid, "second_checker");
    assert_eq!(
        dave.count("#review-votes .vote-item"),
        0,
        "dave cannot see carol's vote before his own"
    );
    approve(&dave, "Agreed.");
    dave.wait_text("#review-status", &dave.ui_text("vote.doneReleased"));
    dave.wait_for(&format!("{detail}[data-state=\"released\"]"));
    dave.wait_for("#review-state[data-state=\"released\"]");
    dave.wait_gone("#review-error");
    // The round is closed: both votes are visible now.
    dave.wait_js(
        "both votes",
        "document.querySelectorAll('#review-votes .vote-item[data-decision=\"approve\"]').length === 2",
        WAIT,
    );
    let mut voters: Vec<String> = dave
        .js(
            "return Array.from(document.querySelectorAll('#review-votes .vote-item')).map((v) => v.dataset.checker)",
            vec![],
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    voters.sort();
    assert_eq!(voters, ["carol", "dave"]);
    log.extend(dave.take_log());
    drop(dave);

    // 4. rc opens the released output and downloads the protected table.
    rc.goto(&server.url("/#/projects/p1"));
    rc.click(&rc.wait_for(&format!(
        "#outputs .output-item[data-output-id=\"{oid}\"] .output-open"
    )));
    rc.wait_for(&format!("{panel}[data-state=\"released\"]"));
    rc.wait_for(&format!(
        "#outputs .output-item[data-output-id=\"{oid}\"][data-status=\"released\"]"
    ));
    rc.wait_text("#output-guide", &rc.ui_text("guide.author.released"));
    let link = rc.wait_for("#output-download");
    let href = rc.property(&link, "href").as_str().unwrap().to_string();
    assert_eq!(
        href,
        server.url(&format!("/api/v1/projects/p1/outputs/{oid}/download"))
    );
    let file_name = rc.attribute(&link, "download").unwrap();
    assert!(file_name.ends_with(".csv"), "{file_name}");
    rc.wait_for("#output-release-info dd");
    // Headless downloads are awkward; the page fetches the link with its own session instead.
    let got = rc.js(
        "return fetch(arguments[0], {credentials: 'same-origin', cache: 'no-store'})\
         .then(async (r) => ({status: r.status, type: r.headers.get('content-type'),\
         disposition: r.headers.get('content-disposition'), body: await r.text()}))",
        vec![json!(href)],
    );
    assert_eq!(got["status"], 200, "{got}");
    assert!(
        got["type"].as_str().unwrap().starts_with("text/csv"),
        "{got}"
    );
    assert_eq!(
        got["disposition"].as_str().unwrap(),
        format!("attachment; filename=\"{file_name}\"")
    );
    let csv = got["body"].as_str().unwrap().to_string();
    assert!(!csv.contains("research_id"), "{csv}");
    let mut lines = csv.lines();
    let header = csv_fields(lines.next().unwrap());
    // The released table names its columns without the kind prefixes.
    assert_eq!(header, ["prefecture", "patients"], "{csv}");
    let rows: Vec<Vec<String>> = lines.map(csv_fields).collect();
    assert!(rows.len() > 10, "{csv}");
    let mut markers = Vec::new();
    for row in &rows {
        assert_eq!(row.len(), 2, "{row:?}");
        match row[1].parse::<u64>() {
            Ok(n) => assert!(n == 0 || n >= 10, "a count under 10 was released: {row:?}"),
            Err(_) => markers.push(row[1].clone()),
        }
    }
    assert_eq!(
        markers.len() as u64,
        suppressed,
        "the cells the report suppresses are the ones hidden: {csv}"
    );
    let kinds: std::collections::BTreeSet<&String> = markers.iter().collect();
    assert_eq!(kinds.len(), 1, "one marker for suppressed cells: {kinds:?}");
    log.extend(rc.take_log());
    drop(rc);
    assert_eq!(
        problems(&log),
        Vec::<String>::new(),
        "the browser reported problems"
    );

    // 5. The audit log holds each step of this output, in order.
    let entries = server.audit_entries();
    let mine: Vec<&Value> = entries
        .iter()
        .filter(|e| e["objects"].to_string().contains(&oid))
        .collect();
    let steps: Vec<String> = mine
        .iter()
        .map(|e| {
            let phase = e["payload"]["phase"]
                .as_str()
                .or(e["payload"]["action"].as_str());
            format!(
                "{} {}{}",
                e["actor"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
                phase.map(|p| format!(":{p}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "rc output.staged",
            "rc export.requested:context",
            "rc export.requested:submit",
            "rc access.denied:review_output",
            "carol review.decision",
            "dave review.decision",
            "dave output.released:requested",
            "dave output.released:released",
            "rc output.downloaded",
        ],
        "{mine:#?}"
    );
    let (context, denied, released, downloaded) = (mine[1], mine[3], mine[6], mine[8]);
    assert_eq!(
        context["payload"]["context"]["description"], DESCRIPTION,
        "{context}"
    );
    assert_eq!(
        denied["payload"]["policies"],
        json!(["forbid-self-review"]),
        "{denied}"
    );
    for vote in &mine[4..6] {
        assert_eq!(vote["payload"]["decision"], "approve", "{vote}");
    }
    let mut approvers: Vec<&str> = released["payload"]["approved_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    approvers.sort_unstable();
    assert_eq!(approvers, ["carol", "dave"], "{released}");
    assert_eq!(
        (
            &downloaded["payload"]["file"],
            &downloaded["payload"]["bytes"]
        ),
        (&json!(file_name), &json!(csv.len())),
        "{downloaded}"
    );

    server.stop_and_verify_audit();
}
