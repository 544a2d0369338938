#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The trial-feasibility explorer in headless Chromium against a real `kura serve`: a researcher
//! opens the explorer of a project whose grant lacks the explorer's columns and sees the server's
//! refusal named on the page; then opens it from the workspace of a project that has them, picks
//! one disease (small cells in the 3,000-patient snapshot) and shows the counts. Every cell of the
//! three tables is checked against the API's answer to the same form: suppressed cells show their
//! marker (never a number) and are counted as the API counts them, published ones show the API's
//! value; the bar charts draw one rect per published cell and none for a suppressed one, the line
//! chart one point per published cell and lines only between neighbouring published points. One
//! view is staged for the airlock and the output (published cells only) is there through the API.
//! English labels replace the Japanese ones, the API's category labels included. No CSP violation
//! or script error; the audit log verifies after a graceful stop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use kura_e2e::browser::{problems, Chrome};
use kura_e2e::server::{explorer_project, project, Browser, Setup, TestServer, PASSWORD};
use serde_json::{json, Value};

/// The disease chosen in the form: ulcerative colitis, the largest disease of the synthetic
/// registry (a few hundred of the 3,000 patients): many prefectures under the threshold, a few
/// above it.
const DISEASE: u64 = 97;
const TITLE: &str = "Patients with disease 97 by prefecture (explorer)";
const VIEWS: [&str; 3] = ["by_prefecture", "by_severity", "by_institutions"];
/// How long a page state may take (the first explorer call reads the snapshot's catalog
/// through the sandbox; a run is three sandboxed queries).
const LONG: Duration = Duration::from_secs(90);

/// alice, a researcher of `p1` (the default grant: too few columns for the explorer) and of
/// `feas` (granted every column the explorer reads).
fn setup() -> Setup {
    let now = Utc::now();
    let year = now + chrono::Duration::days(365);
    let feas = kura_store::Project {
        title: "Feasibility study".into(),
        ..explorer_project("feas", now)
    };
    Setup {
        accounts: vec![("alice", vec!["researcher"])],
        projects: vec![project("p1", now), feas],
        members: vec![
            ("p1", "alice", "researcher", year),
            ("feas", "alice", "researcher", year),
        ],
        ..Setup::default()
    }
}

fn wait_state(chrome: &Chrome, state: &str) {
    chrome.wait_js(
        &format!("the explorer in state {state:?}"),
        &format!("document.querySelector('#view-explorer').dataset.state === {state:?}"),
        LONG,
    );
}

/// One cell as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageCell {
    suppressed: Option<String>,
    value: Option<String>,
    text: String,
}

/// The table cells of a view, keyed by (category key or "total", series key).
fn page_cells(chrome: &Chrome, view: &str) -> BTreeMap<(String, String), PageCell> {
    let v = chrome.js(
        "return Array.from(document.querySelectorAll(
             `.explorer-table[data-view=\"${arguments[0]}\"] td[data-x]`)).map((td) => ({
           x: td.dataset.x, series: td.dataset.series, suppressed: td.dataset.suppressed || null,
           value: td.dataset.value === undefined ? null : td.dataset.value,
           cls: td.className, text: td.textContent.trim() }))",
        vec![json!(view)],
    );
    let mut cells = BTreeMap::new();
    for c in v.as_array().unwrap() {
        let suppressed = c["suppressed"].as_str().map(str::to_string);
        if suppressed.as_deref() == Some("true") {
            assert!(
                c["cls"].as_str().unwrap().contains("cell-suppressed"),
                "a suppressed cell has the class cell-suppressed: {c}"
            );
        }
        let key = (
            c["x"].as_str().unwrap().to_string(),
            c["series"].as_str().unwrap().to_string(),
        );
        let cell = PageCell {
            suppressed,
            value: c["value"].as_str().map(str::to_string),
            text: c["text"].as_str().unwrap().to_string(),
        };
        assert!(cells.insert(key.clone(), cell).is_none(), "{key:?} twice");
    }
    cells
}

/// The API's cells of a view with the same keys: every series value and every total.
fn api_cells(view: &Value) -> BTreeMap<(String, String), Value> {
    let x: Vec<String> = view["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| key_text(&c["key"]))
        .collect();
    let mut cells = BTreeMap::new();
    for s in view["series"].as_array().unwrap() {
        let series = key_text(&s["label"]["key"]);
        let values = s["values"].as_array().unwrap();
        assert_eq!(values.len(), x.len(), "one value per category: {s}");
        for (xk, v) in x.iter().zip(values) {
            cells.insert((xk.clone(), series.clone()), v.clone());
        }
        if !s["total"].is_null() {
            cells.insert(("total".to_string(), series), s["total"].clone());
        }
    }
    cells
}

fn key_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn is_suppressed(cell: &Value) -> bool {
    cell["suppressed"] == true
}

/// A data attribute of every element matching `css`, as (attr_a, attr_b) pairs.
fn attr_pairs(chrome: &Chrome, css: &str, a: &str, b: &str) -> Vec<(String, String)> {
    let v = chrome.js(
        "return Array.from(document.querySelectorAll(arguments[0]))
           .map((e) => [e.getAttribute(arguments[1]) || '', e.getAttribute(arguments[2]) || ''])",
        vec![json!(css), json!(a), json!(b)],
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

/// Checks the page's table, counts and charts of one view against the API's view.
fn check_view(chrome: &Chrome, name: &str, api: &Value) {
    let want = api_cells(api);
    let got = page_cells(chrome, name);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{name}: the table has exactly the API's cells"
    );
    let mut suppressed = 0;
    for (key, cell) in &want {
        let page = &got[key];
        if is_suppressed(cell) {
            suppressed += 1;
            let display = cell["display"].as_str().unwrap();
            let is_marker = display == "－"
                || display
                    .strip_prefix('<')
                    .is_some_and(|n| n.parse::<u64>().is_ok());
            assert!(is_marker, "{name} {key:?}: marker {display:?}");
            assert_eq!(page.suppressed.as_deref(), Some("true"), "{name} {key:?}");
            assert_eq!(page.text, display, "{name} {key:?}: the marker, no number");
            assert_eq!(page.value, None, "{name} {key:?}: no value attribute");
        } else {
            let value = cell["value"].as_u64().unwrap_or_else(|| panic!("{cell}"));
            assert_eq!(page.suppressed.as_deref(), Some("false"), "{name} {key:?}");
            assert_eq!(page.value, Some(value.to_string()), "{name} {key:?}");
            assert_eq!(
                page.text.replace(',', ""),
                value.to_string(),
                "{name} {key:?}: the published number"
            );
        }
    }
    let api_count = api["suppressed_cells"].as_u64().unwrap();
    assert_eq!(
        suppressed, api_count,
        "{name}: the API counts what it hides"
    );
    let page_count = chrome.js(
        "return [document.querySelectorAll(`.explorer-table[data-view=\"${arguments[0]}\"] td[data-suppressed=\"true\"]`).length,
                 document.querySelector(`.explorer-view[data-view=\"${arguments[0]}\"]`).dataset.suppressedCells,
                 document.querySelector(`.explorer-suppressed-count[data-view=\"${arguments[0]}\"]`).textContent]",
        vec![json!(name)],
    );
    assert_eq!(page_count[0].as_u64(), Some(api_count), "{name}");
    assert_eq!(page_count[1].as_str(), Some(api_count.to_string().as_str()));
    let badge = page_count[2].as_str().unwrap();
    assert!(
        badge.contains(&api_count.to_string()),
        "{name}: the badge {badge:?} says {api_count}"
    );

    // The chart: published cells only (totals are in the table, not drawn).
    let published: Vec<(String, String)> = want
        .iter()
        .filter(|((x, _), c)| x != "total" && !is_suppressed(c))
        .map(|(k, _)| k.clone())
        .collect();
    let hidden: Vec<(String, String)> = want
        .iter()
        .filter(|((x, _), c)| x != "total" && is_suppressed(c))
        .map(|(k, _)| k.clone())
        .collect();
    let chart = format!(".explorer-chart[data-view=\"{name}\"] svg");
    chrome.wait_for(&chart);
    if name == "by_severity" {
        assert_eq!(
            sorted(attr_pairs(
                chrome,
                &format!("{chart} circle"),
                "data-x",
                "data-series"
            )),
            published,
            "{name}: one point per published cell"
        );
        assert_eq!(
            chrome
                .js(
                    &format!("return document.querySelectorAll('{chart} rect').length"),
                    vec![]
                )
                .as_u64(),
            Some(0)
        );
        // A line joins neighbouring published points of a series; a suppressed point is a gap.
        let x: Vec<String> = api["x"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| key_text(&c["key"]))
            .collect();
        let mut with_line = BTreeSet::new();
        for s in api["series"].as_array().unwrap() {
            let values = s["values"].as_array().unwrap();
            let segments = values
                .windows(2)
                .filter(|w| !is_suppressed(&w[0]) && !is_suppressed(&w[1]))
                .count();
            let runs = (0..values.len())
                .filter(|&i| {
                    i + 1 < values.len()
                        && !is_suppressed(&values[i])
                        && !is_suppressed(&values[i + 1])
                        && (i == 0 || is_suppressed(&values[i - 1]))
                })
                .count();
            let key = key_text(&s["label"]["key"]);
            let d = chrome.js(
                "const p = document.querySelector(`${arguments[0]} path.chart-line[data-series=\"${arguments[1]}\"]`);
                 return p ? p.getAttribute('d') : null",
                vec![json!(chart), json!(key)],
            );
            if segments == 0 {
                assert!(d.is_null(), "{name} {key}: no line without two neighbours");
                continue;
            }
            with_line.insert(key.clone());
            let d = d
                .as_str()
                .unwrap_or_else(|| panic!("{name} {key}: no line"));
            assert_eq!(
                d.matches('M').count(),
                runs,
                "{name} {key}: one stroke per run of published points ({d}) over {x:?}"
            );
            assert_eq!(
                d.matches('L').count(),
                segments,
                "{name} {key}: one segment per pair of neighbouring published points"
            );
        }
        assert!(
            !with_line.is_empty(),
            "the chosen disease should give at least one line over the fiscal years"
        );
    } else {
        let bars = sorted(attr_pairs(
            chrome,
            &format!("{chart} rect"),
            "data-x",
            "data-series",
        ));
        assert_eq!(bars, published, "{name}: one rect per published cell");
        let markers = sorted(attr_pairs(
            chrome,
            &format!("{chart} .explorer-bar-suppressed"),
            "data-x",
            "data-series",
        ));
        assert_eq!(
            markers, hidden,
            "{name}: a marker, not a bar, per hidden cell"
        );
        for (x, series) in &published {
            let value = chrome.js(
                "return document.querySelector(`${arguments[0]} rect[data-x=\"${arguments[1]}\"][data-series=\"${arguments[2]}\"]`).getAttribute('data-value')",
                vec![json!(chart), json!(x), json!(series)],
            );
            assert_eq!(
                value.as_str().map(str::to_string),
                want[&(x.clone(), series.clone())]["value"]
                    .as_u64()
                    .map(|v| v.to_string()),
                "{name} {x}: the bar's value"
            );
        }
    }
}

fn outputs(api: &Browser, pid: &str) -> Vec<Value> {
    let (status, body) = api.get(&format!("/api/v1/projects/{pid}/outputs"));
    assert_eq!(status, 200, "{body}");
    body["outputs"].as_array().unwrap().clone()
}

#[test]
fn a_researcher_explores_feasibility_and_stages_a_view() {
    let mut server = TestServer::start(setup());
    let api = server.sign_in("alice");
    let chrome = Chrome::start("explorer", "ja");
    chrome.sign_in(&server.origin, "alice", PASSWORD);

    // A project without the explorer's columns: the server's refusal, named on the page.
    chrome.goto(&server.url("/#/projects/p1/explorer"));
    wait_state(&chrome, "error");
    let (status, refusal) = api.get("/api/v1/projects/p1/explorer");
    assert_eq!(status, 422, "{refusal}");
    assert_eq!(refusal["error"]["code"], "kura.explorer.unavailable");
    assert_eq!(
        chrome.text_of("#explorer-error .error-code"),
        "kura.explorer.unavailable"
    );
    let message = chrome.text_of("#explorer-error .error-message");
    assert!(
        message.starts_with(&chrome.ui_text("explorer.error.unavailable"))
            && message.contains(refusal["error"]["message"].as_str().unwrap()),
        "{message}"
    );
    assert!(
        message.contains("form_key"),
        "names a missing column: {message}"
    );

    // From the workspace of the project that has them.
    chrome.goto(&server.url("/#/projects"));
    chrome.click(&chrome.wait_for(".project-item[data-project-id=\"feas\"]"));
    chrome.click(&chrome.wait_for("#workspace-explorer-link"));
    wait_state(&chrome, "loaded");
    assert!(
        chrome.url().ends_with("#/projects/feas/explorer"),
        "{}",
        chrome.url()
    );
    let (status, form) = api.get("/api/v1/projects/feas/explorer");
    assert_eq!(status, 200, "{form}");
    assert_eq!(
        chrome
            .js(
                "return document.querySelectorAll('#explorer-disease-list .explorer-disease').length",
                vec![]
            )
            .as_u64(),
        Some(form["fields"]["diseases"].as_array().unwrap().len() as u64)
    );
    assert_eq!(
        chrome.text_of("#explorer-submit"),
        chrome.ui_text("explorer.submit")
    );

    // One disease, found by its number.
    chrome.type_into(
        &chrome.wait_for("#explorer-disease-search"),
        &DISEASE.to_string(),
    );
    chrome.wait_js(
        "the disease list filtered",
        &format!("document.querySelector('#view-explorer').dataset.diseaseQuery === '{DISEASE}'"),
        LONG,
    );
    chrome.click(&chrome.wait_for(&format!(
        "#explorer-disease-list input[value=\"{DISEASE}\"]"
    )));
    chrome.wait_for(&format!(".explorer-chip[data-key=\"{DISEASE}\"]"));
    chrome.click(&chrome.wait_for("#explorer-submit"));
    wait_state(&chrome, "shown");

    // The same form through the API: the same patients get the same noise, so the same numbers.
    let (status, run) = api.post(
        "/api/v1/projects/feas/explorer",
        json!({"diseases": [DISEASE]}),
    );
    assert_eq!(status, 200, "{run}");
    let result = &run["result"];
    assert_eq!(result["filters"]["diseases"], json!([DISEASE]));
    let prefectures = api_cells(&result["by_prefecture"]);
    assert!(
        prefectures
            .iter()
            .any(|((x, _), c)| x != "total" && is_suppressed(c))
            && prefectures
                .iter()
                .any(|((x, _), c)| x != "total" && !is_suppressed(c)),
        "disease {DISEASE} should give both hidden and published prefectures: {}",
        result["by_prefecture"]
    );
    for view in VIEWS {
        check_view(&chrome, view, &result[view]);
    }
    assert_eq!(
        chrome.text_of(".explorer-view[data-view=\"by_prefecture\"] .detail-head h3"),
        chrome.ui_text("explorer.view.by_prefecture")
    );
    assert_eq!(
        chrome.text_of(".explorer-table[data-view=\"by_prefecture\"] tr[data-x=\"13\"] th"),
        "東京都"
    );
    assert!(chrome
        .text_of("#explorer-summary")
        .contains(result["rule_pack"].as_str().unwrap()));
    assert!(!chrome.text_of("#explorer-method p").is_empty());

    // Stage the prefecture view with a title typed into the page's own small form.
    let query_id = chrome
        .attribute(
            &chrome.wait_for(".explorer-view[data-view=\"by_prefecture\"]"),
            "data-query-id",
        )
        .expect("the view names its query");
    chrome.click(&chrome.wait_for(".explorer-stage-open[data-view=\"by_prefecture\"]"));
    chrome.type_into(
        &chrome.wait_for(".explorer-stage-form[data-view=\"by_prefecture\"] input"),
        TITLE,
    );
    chrome.click(&chrome.wait_for(".explorer-stage-submit[data-view=\"by_prefecture\"]"));
    let status_el =
        chrome.wait_for(".explorer-stage-status[data-view=\"by_prefecture\"][data-output-id]");
    let output_id = chrome.attribute(&status_el, "data-output-id").unwrap();
    assert!(
        chrome.text(&status_el).contains(&output_id),
        "{}",
        chrome.text(&status_el)
    );
    let staged = outputs(&api, "feas");
    let out = staged
        .iter()
        .find(|o| o["id"] == output_id.as_str())
        .unwrap_or_else(|| panic!("output {output_id} not listed: {staged:?}"));
    assert_eq!(out["query_id"], query_id.as_str());
    assert_eq!(out["title"], TITLE);
    assert_eq!(out["author"], "alice");
    assert_eq!(out["status"], "draft");
    // What was staged is the protected table: the published cells only.
    let (status, kept) = api.get(&format!("/api/v1/projects/feas/queries/{query_id}/result"));
    assert_eq!(status, 200, "{kept}");
    let published = prefectures.values().filter(|c| !is_suppressed(c)).count() as u64;
    let csv_rows = result["by_prefecture"]["protected_csv"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .count() as u64
        - 1;
    assert_eq!(kept["row_count"].as_u64(), Some(csv_rows), "{kept}");
    assert_eq!(out["row_count"].as_u64(), Some(csv_rows), "{out}");
    assert_eq!(
        csv_rows, published,
        "the protected table holds the published cells"
    );

    // English: the page's labels and the API's category labels.
    chrome.click(&chrome.wait_for("#lang-toggle option[value=\"en\"]"));
    chrome.wait_for("#view-explorer[data-lang=\"en\"]");
    assert_eq!(chrome.text_of("#explorer-submit"), "Show counts");
    assert_eq!(
        chrome.text_of(".explorer-view[data-view=\"by_prefecture\"] .detail-head h3"),
        "Patients by prefecture"
    );
    let tokyo = form["fields"]["prefectures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "13")
        .unwrap();
    assert_eq!(
        chrome.text_of(".explorer-table[data-view=\"by_prefecture\"] tr[data-x=\"13\"] th"),
        tokyo["en"].as_str().unwrap()
    );
    check_view(&chrome, "by_prefecture", &result["by_prefecture"]);
    assert_eq!(
        chrome.attribute(
            &chrome.wait_for(".explorer-stage-status[data-view=\"by_prefecture\"]"),
            "data-output-id"
        ),
        Some(output_id)
    );

    assert_eq!(
        problems(&chrome.take_log()),
        Vec::<String>::new(),
        "the browser reported problems"
    );
    drop(chrome);
    server.stop_and_verify_audit();
}
