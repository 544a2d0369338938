//! ACRO-compatible `results.json`, so SACRO's viewer and other ACRO tooling can read Kura's
//! report. Field names follow `acro/record.py` (`Records.finalise_json`): a top-level `version`
//! and `results`, each output keyed by its uid with `uid`, `status`, `type`, `properties`,
//! `files` (each `{name, sdc}`), `outcome` (pandas `to_json` of a frame shaped like the table:
//! column -> row label -> `"ok"` or the failed checks), `command`, `summary`, `timestamp`,
//! `comments` and `exception`.

use serde_json::{json, Map, Value};

use crate::report::{Report, RuleId};

/// ACRO's name for a rule in `sdc.summary` / `sdc.cells` and in `outcome` strings.
fn acro_name(rule: RuleId) -> &'static str {
    match rule {
        RuleId::Threshold => "threshold",
        RuleId::PRatio => "p-ratio",
        RuleId::Dominance => "nk-rule",
        other => other.as_str(),
    }
}

/// One output's record. `file` is the protected table's file name beside results.json;
/// `timestamp` is ISO 8601 (a parameter so that tests control time).
pub fn record(report: &Report, uid: &str, file: &str, command: &str, timestamp: &str) -> Value {
    let failing = report.failing_cells().count();
    let status = if report.passed() { "pass" } else { "fail" };
    let mut counts: Map<String, Value> = Map::new();
    let mut positions: Map<String, Value> = Map::new();
    // ACRO always writes these keys; keep them so its readers find what they expect.
    for k in [
        "negative",
        "missing",
        "threshold",
        "p-ratio",
        "nk-rule",
        "all-values-are-same",
    ] {
        counts.insert(k.into(), json!(0));
        positions.insert(k.into(), json!([]));
    }
    let mut outcome: Map<String, Value> = Map::new();
    for cell in &report.cells {
        let column = outcome
            .entry(cell.measure_name.clone())
            .or_insert_with(|| json!({}));
        let text = if cell.failures.is_empty() {
            "ok".to_string()
        } else {
            cell.failures
                .iter()
                .map(|f| format!("{}; ", acro_name(f.rule)))
                .collect::<String>()
        };
        if let Some(col) = column.as_object_mut() {
            col.insert(cell.label.clone(), json!(text));
        }
        for f in &cell.failures {
            let name = acro_name(f.rule);
            let n = counts.get(name).and_then(Value::as_u64).unwrap_or(0);
            counts.insert(name.into(), json!(n + 1));
            if let Some(list) = positions
                .entry(name.to_string())
                .or_insert_with(|| json!([]))
                .as_array_mut()
            {
                list.push(json!([cell.row, cell.measure]));
            }
        }
    }
    let suppressed = report
        .cells
        .iter()
        .any(|c| c.action == crate::report::Action::Suppress);
    counts.insert("suppressed".into(), json!(suppressed));
    let summary = if report.passed() {
        "pass".to_string()
    } else if !report.refusals.is_empty() {
        format!(
            "fail; refused: {}",
            report
                .refusals
                .iter()
                .map(|f| f.reason.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    } else {
        let mut parts = vec!["fail".to_string()];
        for (k, v) in &counts {
            if let Some(n) = v.as_u64().filter(|n| *n > 0) {
                parts.push(format!("{k}: {n} cells"));
            }
        }
        parts.join("; ")
    };
    json!({
        "uid": uid,
        "status": status,
        "type": "table",
        "properties": {
            "method": "kura-sdc",
            "rule_pack": report.pack,
            "rule_pack_version": report.pack_version,
            "failing_cells": failing,
            "refusals": report.refusals,
        },
        "files": [{"name": file, "sdc": {"summary": counts, "cells": positions}}],
        "outcome": outcome,
        "command": command,
        "summary": summary,
        "timestamp": timestamp,
        "comments": [],
        "exception": "",
    })
}

/// The whole `results.json` document for a set of records (uid -> record).
pub fn results_json(records: Vec<(String, Value)>) -> Value {
    let results: Map<String, Value> = records.into_iter().collect();
    json!({
        "version": format!("kura-sdc {}", env!("CARGO_PKG_VERSION")),
        "results": results,
    })
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the Unix epoch, without a date library.
pub fn iso8601_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_are_right() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(iso8601_utc(1_700_000_000), "2023-11-14T22:13:20");
    }
}
