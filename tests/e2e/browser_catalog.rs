#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The data catalog in headless Chromium (issue 7): a researcher opens it from the header in
//! Japanese, sees the demo snapshot (build date, shortened hashes with the full ones in their
//! titles, tables with rounded row counts, columns with Japanese descriptions) and the code
//! lists; searching "パーキンソン" leaves only disease 6; a JIS code finds its prefecture; in
//! English the same page shows the manifest's English descriptions and names. No CSP violation.

use std::time::Duration;

use kura_e2e::browser::{problems, Chrome};
use kura_e2e::server::{snapshot_dir, Setup, TestServer, PASSWORD};
use serde_json::{json, Value};

/// The `data-*` attribute values of the elements matching `css` that are displayed now.
fn shown(chrome: &Chrome, css: &str, attr: &str) -> Vec<String> {
    let v = chrome.js(
        "return Array.from(document.querySelectorAll(arguments[0]))
           .filter((e) => e.getClientRects().length > 0)
           .map((e) => e.getAttribute(arguments[1]))",
        vec![json!(css), json!(attr)],
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Types into the search box and waits until the page has filtered for it (`text` is already
/// in the normalised form the page records).
fn search(chrome: &Chrome, text: &str) {
    chrome.type_into(&chrome.wait_for("#catalog-search"), text);
    chrome.wait_js(
        "the filtered catalog",
        &format!(
            "document.querySelector('#view-catalog').dataset.query === {}",
            json!(text)
        ),
        Duration::from_secs(10),
    );
}

#[test]
fn a_researcher_searches_the_catalog_and_reads_it_in_both_languages() {
    let server = TestServer::start(Setup::default());
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(snapshot_dir().join("demo.duckdb.manifest.json")).unwrap(),
    )
    .unwrap();
    let table_of = |name: &str| -> Value {
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    let forms = table_of("nanbyo_forms");
    let disease_no = forms["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "disease_no")
        .unwrap()
        .clone();

    let chrome = Chrome::start("catalog", "ja");
    chrome.sign_in(&server.origin, "alice", PASSWORD);
    chrome.click(&chrome.wait_for("#nav-catalog"));
    chrome.wait_for("#view-catalog[data-loaded=\"ja\"]");
    assert!(chrome.url().ends_with("#/catalog"), "{}", chrome.url());
    assert_eq!(
        chrome.attribute(&chrome.wait_for("#nav-catalog"), "aria-current"),
        Some("page".to_string())
    );

    // The snapshot: its hashes shortened on the page, whole in the title.
    let snap = ".catalog-snapshot[data-snapshot=\"demo\"]";
    let db_hash = chrome.wait_for(&format!("{snap} .catalog-db-hash"));
    let full = manifest["database"]["sha256"].as_str().unwrap();
    assert_eq!(chrome.attribute(&db_hash, "title").as_deref(), Some(full));
    let short = chrome.text(&db_hash);
    assert!(short.len() < full.len() && full.starts_with(short.trim_end_matches('…')));
    let manifest_hash = chrome.wait_for(&format!("{snap} .catalog-manifest-hash"));
    assert_eq!(chrome.attribute(&manifest_hash, "title").unwrap().len(), 64);
    assert!(!chrome.text_of(&format!("{snap} .catalog-built")).is_empty());

    // Every table with a rounded count; descriptions in Japanese.
    let tables = shown(
        &chrome,
        &format!("{snap} .catalog-entry-table"),
        "data-table",
    );
    let names: Vec<String> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tables, names);
    let rows = shown(
        &chrome,
        &format!("{snap} .catalog-entry-table[data-table=\"designated_diseases\"] .catalog-rows"),
        "data-rows",
    );
    assert_eq!(rows, ["340"], "341 rows, shown to two significant figures");
    let forms_css = format!("{snap} .catalog-entry-table[data-table=\"nanbyo_forms\"]");
    assert_eq!(
        chrome.text_of(&format!("{forms_css} .catalog-table-desc")),
        forms["ja"].as_str().unwrap()
    );
    let column_css = format!("{forms_css} .catalog-entry-column[data-column=\"disease_no\"]");
    assert_eq!(
        chrome.text_of(&format!("{column_css} .catalog-desc")),
        disease_no["ja"].as_str().unwrap()
    );

    // The code lists, whole.
    assert_eq!(
        shown(&chrome, "#catalog-codes .code-disease", "data-no").len(),
        341
    );
    assert_eq!(
        shown(&chrome, "#catalog-codes .code-pref", "data-code").len(),
        47
    );

    // Searching in Japanese leaves disease 6 alone; the other lists have nothing for it.
    search(&chrome, "パーキンソン");
    assert_eq!(
        shown(&chrome, "#catalog-codes .code-disease", "data-no"),
        ["6"]
    );
    assert_eq!(
        chrome.text_of(".code-disease[data-no=\"6\"] .code-name"),
        "パーキンソン病"
    );
    assert!(shown(&chrome, "#catalog-codes .code-pref", "data-code").is_empty());
    assert!(shown(&chrome, ".catalog-entry-table", "data-table").is_empty());

    // A number is a disease number or a JIS code; a word finds columns by description.
    search(&chrome, "13");
    assert_eq!(shown(&chrome, ".code-pref", "data-code"), ["13"]);
    assert_eq!(
        chrome.text_of(".code-pref[data-code=\"13\"] .code-name"),
        "東京都"
    );
    assert!(shown(&chrome, ".code-disease", "data-no").contains(&"13".to_string()));
    search(&chrome, "告示番号");
    assert!(shown(
        &chrome,
        &format!("{forms_css} .catalog-entry-column"),
        "data-column"
    )
    .contains(&"disease_no".to_string()));
    assert!(
        !shown(
            &chrome,
            &format!("{forms_css} .catalog-entry-column"),
            "data-column"
        )
        .contains(&"sex".to_string()),
        "columns that do not match are hidden"
    );

    // English: the manifest's English descriptions and the English disease names; the search
    // still finds Japanese words.
    chrome.click(&chrome.wait_for("#lang-toggle option[value=\"en\"]"));
    chrome.wait_for("#view-catalog[data-loaded=\"en\"]");
    search(&chrome, "parkinson");
    assert_eq!(shown(&chrome, ".code-disease", "data-no"), ["6"]);
    assert_eq!(
        chrome.text_of(".code-disease[data-no=\"6\"] .code-name"),
        "Parkinson's disease"
    );
    search(&chrome, "disease number");
    assert_eq!(
        chrome.text_of(&format!("{column_css} .catalog-desc")),
        disease_no["en"].as_str().unwrap()
    );
    search(&chrome, "nanbyo_forms");
    assert_eq!(
        chrome.text_of(&format!("{forms_css} .catalog-table-desc")),
        forms["en"].as_str().unwrap()
    );
    search(&chrome, "東京");
    assert_eq!(shown(&chrome, ".code-pref", "data-code"), ["13"]);
    assert_eq!(
        chrome.text_of(".code-pref[data-code=\"13\"] .code-name"),
        "Tokyo"
    );

    assert_eq!(
        problems(&chrome.take_log()),
        Vec::<String>::new(),
        "the browser reported problems"
    );
}
