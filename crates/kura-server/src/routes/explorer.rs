//! The trial-feasibility explorer over HTTP (docs/explorer.md, docs/api.md): the form's options,
//! and a run. A run validates the form against closed lists, runs the three views' SQL through
//! the sandbox as the caller (each audited by the engine like any query), protects the rows
//! (kura-explorer: cell-key perturbation, then the default rule pack, differencing against the
//! airlock's release ledger included), keeps each view's protected table as a completed query
//! record (so a view can be staged for the airlock), audits `result.viewed` per view and only
//! then answers. The raw rows (true counts, institutions, fingerprints) never leave this module.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use kura_audit::{Event, EventKind};
use kura_authz::{Action, Resource};
use kura_explorer::catalog::{
    AGE_BANDS, DIAGNOSIS_CATEGORIES, INSTITUTION_BUCKETS, SEVERITIES, SEXES,
};
use kura_explorer::{Catalog, Explorer, ExplorerError, Feasibility, RawView, View};
use kura_query::arrow::record_batch::RecordBatch;
use kura_query::{CancelHandle, QueryOutcome};
use kura_sdc::CheckContext;
use kura_store::{Project, QueryStatus};
use serde_json::{json, Value};

use crate::access::{authorize, visible_project};
use crate::error::ApiError;
use crate::explorer::{missing_columns, protected_batch};
use crate::results;
use crate::routes::catalog::codes::code_lists;
use crate::routes::queries::{
    execute, new_uuid, query_error, record_running, scope_of, snapshot_of,
};
use crate::session::Caller;
use crate::snapshots::SnapshotInfo;
use crate::state::AppState;
use crate::{audit, ApiJson};

/// The project, its verified snapshot and the snapshot's explorer, once the caller may run
/// queries in the project and its grant holds every column the explorer reads.
async fn prepare(
    app: &AppState,
    caller: &Caller,
    pid: &str,
) -> Result<(Project, Arc<SnapshotInfo>, Arc<Explorer>), ApiError> {
    let (project, facts) = visible_project(app, caller, pid).await?;
    authorize(
        app,
        caller,
        Action::RunQuery,
        &Resource::Project(&facts),
        &format!("project:{pid}"),
    )
    .await?;
    let missing = missing_columns(&project.tables);
    if !missing.is_empty() {
        return Err(ApiError::Unprocessable {
            code: "kura.explorer.unavailable",
            message: format!(
                "the explorer needs columns this project's grant does not include: {}; ask a \
                 data steward to extend the grant",
                missing.join(", ")
            ),
        });
    }
    let snapshot = snapshot_of(app, &project).await?;
    let slot = app.explorers.slot(snapshot.sha256());
    let explorer = slot
        .get_or_try_init(|| read_catalog(app, caller, &project, &snapshot))
        .await?
        .clone();
    Ok((project, snapshot, explorer))
}

/// Reads the snapshot's treatment names and fiscal years through the sandbox, as the first
/// caller (audited as that caller's queries), and builds the snapshot's explorer.
async fn read_catalog(
    app: &AppState,
    caller: &Caller,
    project: &Project,
    snapshot: &Arc<SnapshotInfo>,
) -> Result<Arc<Explorer>, ApiError> {
    let mut lists = Vec::with_capacity(2);
    for sql in [Catalog::TREATMENTS_SQL, Catalog::FISCAL_YEARS_SQL] {
        let (outcome, batches) = execute(
            app,
            caller,
            scope_of(project),
            snapshot.clone(),
            sql.to_string(),
            new_uuid()?,
            CancelHandle::default(),
        )
        .await?
        .map_err(query_error)?;
        lists.push(first_column(&outcome, &batches)?);
    }
    let years = lists[1]
        .iter()
        .map(|y| {
            y.parse::<u16>()
                .map_err(|_| ApiError::Internal(format!("explorer catalog: fiscal year {y:?}")))
        })
        .collect::<Result<Vec<u16>, _>>()?;
    let treatments = std::mem::take(&mut lists[0]);
    let explorer = app
        .explorers
        .build(treatments, years)
        .map_err(|e| ApiError::Internal(format!("explorer catalog: {e}")))?;
    Ok(Arc::new(explorer))
}

/// The CSV text of a result, as `kura_query::export::csv_writer` renders it.
fn csv_text(batches: &[RecordBatch]) -> Result<String, ApiError> {
    let mut out = Vec::new();
    {
        let mut w = kura_query::export::csv_writer(&mut out);
        for b in batches {
            w.write(b)
                .map_err(|e| ApiError::Internal(format!("explorer rows: {e}")))?;
        }
    }
    String::from_utf8(out).map_err(|e| ApiError::Internal(format!("explorer rows: {e}")))
}

/// The values of a one-column result as text.
fn first_column(outcome: &QueryOutcome, batches: &[RecordBatch]) -> Result<Vec<String>, ApiError> {
    let text = csv_text(batches)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let mut values = Vec::with_capacity(outcome.rows as usize);
    for record in reader.records() {
        let record = record.map_err(|e| ApiError::Internal(format!("explorer catalog: {e}")))?;
        if let Some(v) = record.get(0) {
            values.push(v.to_string());
        }
    }
    Ok(values)
}

fn labelled<K: serde::Serialize>(items: impl IntoIterator<Item = (K, String, String)>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|(key, ja, en)| json!({"key": key, "ja": ja, "en": en}))
            .collect(),
    )
}

fn age_band_label(band: &str) -> (String, String) {
    match band.strip_suffix('+') {
        Some(lo) => (format!("{lo}歳以上"), format!("{lo}+")),
        None => {
            let (lo, hi) = band.split_once('-').unwrap_or((band, band));
            let trim = |s: &str| s.trim_start_matches('0').to_string();
            let lo = if trim(lo).is_empty() {
                "0".to_string()
            } else {
                trim(lo)
            };
            (format!("{lo}-{}歳", trim(hi)), format!("{lo}-{}", trim(hi)))
        }
    }
}

/// `GET /api/v1/projects/{pid}/explorer`: the form's options (closed lists with Japanese and
/// English labels; treatments and fiscal years from the snapshot).
pub async fn form(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (project, snapshot, explorer) = prepare(&app, &caller, &pid).await?;
    let codes = code_lists()?;
    let diseases = labelled(codes["diseases"].as_array().into_iter().flatten().map(|d| {
        let ja = d["name_ja"].as_str().unwrap_or_default().to_string();
        let en = d["name_en"]
            .as_str()
            .map_or_else(|| ja.clone(), str::to_string);
        (d["no"].clone(), ja, en)
    }));
    let prefectures: Vec<Value> = codes["prefectures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!({"key": p["code"], "ja": p["name_ja"], "en": p["name_en"],
                   "region": p["region"]})
        })
        .collect();
    let regions = labelled(codes["regions"].as_array().into_iter().flatten().map(|r| {
        (
            r["id"].clone(),
            r["ja"].as_str().unwrap_or_default().to_string(),
            r["en"].as_str().unwrap_or_default().to_string(),
        )
    }));
    let catalog = explorer.catalog();
    let fields = json!({
        "diseases": diseases,
        "severity": labelled(SEVERITIES.iter().map(|(k, ja, en)| (*k, ja.to_string(), en.to_string()))),
        "age_bands": labelled(AGE_BANDS.iter().map(|b| {
            let (ja, en) = age_band_label(b);
            (*b, ja, en)
        })),
        "sex": labelled(SEXES.iter().map(|(k, _)| {
            let (ja, en) = if *k == "male" { ("男性", "Male") } else { ("女性", "Female") };
            (*k, ja.to_string(), en.to_string())
        })),
        "prefectures": prefectures,
        "regions": regions,
        "diagnosis_category": labelled(DIAGNOSIS_CATEGORIES.iter().map(|k| {
            let (ja, en) = if *k == "definite" {
                ("Definite（確実）", "Definite")
            } else {
                ("Probable（ほぼ確実）", "Probable")
            };
            (*k, ja.to_string(), en.to_string())
        })),
        "ventilator": labelled([
            (true, "あり".to_string(), "Yes".to_string()),
            (false, "なし".to_string(), "No".to_string()),
        ]),
        "treatments": labelled(catalog.treatments().iter().map(|t| (t.clone(), t.clone(), t.clone()))),
        "fiscal_years": labelled(catalog.fiscal_years().iter().map(|y| (*y, format!("{y}年度"), format!("FY{y}")))),
        "treating_institutions": labelled(INSTITUTION_BUCKETS.iter().map(|b| (b.0, b.1.to_string(), b.2.to_string()))),
    });
    Ok(Json(json!({
        "project": project.id,
        "snapshot": snapshot.name,
        "snapshot_sha256": snapshot.sha256(),
        "rule_pack": explorer.pack().name,
        "rule_pack_version": explorer.pack().version,
        "marker": explorer.pack().marker,
        // Counts under this are shown as `<threshold`; null when the pack has no threshold rule.
        "threshold": explorer.pack().rule(|r| match r {
            kura_sdc::Rule::Threshold { min, .. } => Some(*min),
            _ => None,
        }),
        "fields": fields,
    })))
}

fn invalid(message: String) -> ApiError {
    ApiError::Unprocessable {
        code: "kura.explorer.invalid",
        message,
    }
}

/// `POST /api/v1/projects/{pid}/explorer`: one run of the form (see the module comment).
pub async fn run(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (project, snapshot, explorer) = prepare(&app, &caller, &pid).await?;
    // serde would read a JSON array into the form's fields by position.
    if !body.is_object() {
        return Err(invalid(
            "the explorer form must be a JSON object of filters, e.g. {\"diseases\": [6]}".into(),
        ));
    }
    let request: Feasibility =
        serde_json::from_value(body).map_err(|e| invalid(format!("the explorer form: {e}")))?;
    let filters = explorer.validate(&request).map_err(|e| match e {
        ExplorerError::Invalid { .. } => invalid(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    })?;
    let run = Run {
        app: &app,
        caller: &caller,
        project: &project,
        snapshot: &snapshot,
        explorer: &explorer,
        id: new_uuid()?,
    };
    let started = Instant::now();
    // Query records inserted and not yet finished: failed if the run stops half-way, so the
    // history never shows a run that is not running.
    let mut unfinished: Vec<String> = Vec::new();
    let views = match run.views(&filters, &mut unfinished).await {
        Ok(v) => v,
        Err(e) => {
            for qid in &unfinished {
                if let Err(store) = app.store.finish_query(
                    qid,
                    QueryStatus::Failed,
                    None,
                    0,
                    None,
                    Some(&e.to_string()),
                ) {
                    tracing::warn!("explorer run {}: query {qid}: {store}", run.id);
                }
            }
            return Err(e);
        }
    };
    Ok(Json(json!({
        "id": run.id,
        "duration_ms": started.elapsed().as_millis() as u64,
        "snapshot_sha256": snapshot.sha256(),
        "result": views,
    })))
}

/// One explorer run of one caller.
struct Run<'a> {
    app: &'a AppState,
    caller: &'a Caller,
    project: &'a Project,
    snapshot: &'a Arc<SnapshotInfo>,
    explorer: &'a Arc<Explorer>,
    id: String,
}

impl Run<'_> {
    /// Runs, protects, keeps and audits the three views; returns the result to show.
    async fn views(
        &self,
        filters: &kura_explorer::Filters,
        unfinished: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let (app, caller, project, snapshot, explorer) = (
            self.app,
            self.caller,
            self.project,
            self.snapshot,
            self.explorer,
        );
        let run_id = &self.id;
        let mut raws = Vec::with_capacity(View::ALL.len());
        let mut records = Vec::with_capacity(View::ALL.len());
        for q in explorer.queries(filters) {
            let qid = new_uuid()?;
            let view_started = Instant::now();
            unfinished.push(qid.clone());
            record_running(
                app,
                caller,
                project,
                snapshot,
                &qid,
                format!(
                    "-- explorer run {run_id}, view {}: the kept result holds only the published \
                     cells (perturbed, rule pack {})\n{}",
                    q.view.name(),
                    explorer.pack().name,
                    q.sql
                ),
            )?;
            let outcome = execute(
                app,
                caller,
                scope_of(project),
                snapshot.clone(),
                q.sql.clone(),
                qid.clone(),
                CancelHandle::default(),
            )
            .await?;
            let ms = view_started.elapsed().as_millis() as u64;
            let batches = match outcome {
                Ok((_, batches)) => batches,
                Err(e) => {
                    unfinished.retain(|u| u != &qid);
                    let status = if e.refusal_rule().is_some() {
                        QueryStatus::Refused
                    } else {
                        QueryStatus::Failed
                    };
                    app.store
                        .finish_query(&qid, status, None, ms, None, Some(&e.to_string()))?;
                    return Err(query_error(e));
                }
            };
            raws.push(
                RawView::from_csv(q.view, &csv_text(&batches)?)
                    .map_err(|e| ApiError::Internal(format!("explorer: {e}")))?,
            );
            records.push((q.view, qid, ms));
        }
        let protect_app = app.clone();
        let sha = snapshot.sha256().to_string();
        let protect_filters = filters.clone();
        let protect_explorer = explorer.clone();
        let result = tokio::task::spawn_blocking(move || {
            protect_app.airlock.with_ledger(|ledger| {
                protect_explorer.protect(
                    &protect_filters,
                    &raws,
                    &CheckContext {
                        snapshot: &sha,
                        ledger: Some(ledger),
                    },
                )
            })
        })
        .await
        .map_err(|e| ApiError::Internal(format!("explorer task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("explorer: {e}")))?;
        let mut body = serde_json::to_value(&result)
            .map_err(|e| ApiError::Internal(format!("explorer result: {e}")))?;
        for (view, qid, ms) in &records {
            let shown = result.view(*view);
            let (schema, batch) = protected_batch(&shown.protected_csv)
                .map_err(|e| ApiError::Internal(format!("explorer {}: {e}", view.name())))?;
            let rows = batch.num_rows() as u64;
            let path = results::result_path(&app.config.state_dir, qid);
            let sha256 =
                tokio::task::spawn_blocking(move || results::write(&path, &schema, &[batch]))
                    .await
                    .map_err(|e| ApiError::Internal(format!("result task: {e}")))??;
            unfinished.retain(|u| u != qid);
            app.store.finish_query(
                qid,
                QueryStatus::Completed,
                Some(rows),
                *ms,
                Some(&sha256),
                None,
            )?;
            let event = Event::new(EventKind::ResultViewed, caller.id())
                .session(caller.session.id.clone())
                .project(project.id.clone())
                .object(format!("query:{qid}"))
                .payload(json!({
                    "query_id": qid, "explorer_run": run_id, "view": view.name(),
                    "rows_shown": rows, "row_count": rows, "result_sha256": sha256,
                    "suppressed_cells": shown.suppressed_cells,
                }));
            audit(app, event).await?;
            body[view.name()]["query_id"] = json!(qid);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::age_band_label;

    #[test]
    fn age_bands_read_as_years() {
        assert_eq!(age_band_label("00-04"), ("0-4歳".into(), "0-4".into()));
        assert_eq!(age_band_label("35-39"), ("35-39歳".into(), "35-39".into()));
        assert_eq!(age_band_label("100+"), ("100歳以上".into(), "100+".into()));
    }
}
