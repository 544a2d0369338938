//! The trial-feasibility explorer over HTTP (docs/explorer.md, docs/api.md): the form's options,
//! and a run. A run validates the form against closed lists, appends `explorer.run` (the caller,
//! the filters, the three view query ids) before anything is computed, computes the three views'
//! rows from the snapshot's in-memory index (read once per snapshot through the sandbox, audited
//! as the server's own query), protects them (kura-explorer: cell-key perturbation, then the
//! default rule pack, differencing against the airlock's release ledger included), keeps each
//! view's protected table as a completed query record (so a view can be staged for the airlock),
//! audits `result.viewed` per view and only then answers. The raw rows (true counts,
//! institutions, fingerprints) never leave this module.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use kura_audit::{Event, EventKind};
use kura_authz::{Action, Resource};
use kura_explorer::catalog::{
    AGE_BANDS, DIAGNOSIS_CATEGORIES, INSTITUTION_BUCKETS, SEVERITIES, SEXES,
};
use kura_explorer::{ExplorerError, Feasibility, View};
use kura_query::QueryRequest;
use kura_sdc::CheckContext;
use kura_store::{Project, QueryRecord, QueryStatus};
use serde_json::{json, Value};

use crate::access::{authorize, visible_project};
use crate::error::ApiError;
use crate::explorer::{
    index_limits, missing_columns, protected_batch, read_index, IndexError, Loaded, INDEX_ACTOR,
};
use crate::results;
use crate::routes::catalog::codes::code_lists;
use crate::routes::queries::{new_uuid, query_error, scope_of, snapshot_of};
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
) -> Result<(Project, Arc<SnapshotInfo>, Arc<Loaded>), ApiError> {
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
    let loaded = slot
        .get_or_try_init(|| load(app, &project, &snapshot))
        .await?
        .clone();
    Ok((project, snapshot, loaded))
}

/// Reads the snapshot's explorer index through the sandbox (one statement, audited as the
/// server's own query in the project whose request came first; only the columns the explorer
/// needs, which that grant holds) and builds the snapshot's explorer on it.
async fn load(
    app: &AppState,
    project: &Project,
    snapshot: &Arc<SnapshotInfo>,
) -> Result<Arc<Loaded>, ApiError> {
    let started = Instant::now();
    let worker_app = app.clone();
    let scope = scope_of(project);
    let snapshot = snapshot.clone();
    let id = new_uuid()?;
    let loaded = tokio::task::spawn_blocking(move || -> Result<Loaded, IndexError> {
        let sql = worker_app.explorers.export_sql();
        let request = QueryRequest {
            sql: &sql,
            project: &scope,
            user: INDEX_ACTOR,
            session: None,
            snapshot: &snapshot.path,
            snapshot_sha256: Some(snapshot.sha256()),
            id: Some(&id),
            limits: Some(index_limits(worker_app.config.query.limits())),
        };
        let index = read_index(&worker_app.engine, &request, worker_app.audit.as_ref())?;
        Ok(worker_app.explorers.build(index)?)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("explorer index task: {e}")))?
    .map_err(|e| match e {
        IndexError::Query(q) => query_error(q),
        other => ApiError::Internal(other.to_string()),
    })?;
    tracing::info!(
        snapshot = %project.snapshot,
        forms = loaded.index.forms(),
        patients = loaded.index.patients(),
        heap_mib = loaded.index.heap_bytes() / (1 << 20),
        ms = started.elapsed().as_millis() as u64,
        "explorer index read"
    );
    Ok(Arc::new(loaded))
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
    let (project, snapshot, loaded) = prepare(&app, &caller, &pid).await?;
    let explorer = &loaded.explorer;
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

/// `POST /api/v1/projects/{pid}/explorer`: one run of the form (see the module comment),
/// counted in the metrics with its outcome.
pub async fn run(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let result = run_form(app, caller, pid, body).await;
    crate::metrics::global().explorer_run(&result, started.elapsed());
    result
}

async fn run_form(
    app: AppState,
    caller: Caller,
    pid: String,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let (project, snapshot, loaded) = prepare(&app, &caller, &pid).await?;
    // serde would read a JSON array into the form's fields by position.
    if !body.is_object() {
        return Err(invalid(
            "the explorer form must be a JSON object of filters, e.g. {\"diseases\": [6]}".into(),
        ));
    }
    let request: Feasibility =
        serde_json::from_value(body).map_err(|e| invalid(format!("the explorer form: {e}")))?;
    let filters = loaded.explorer.validate(&request).map_err(|e| match e {
        ExplorerError::Invalid { .. } => invalid(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    })?;
    let started = Instant::now();
    let run_id = new_uuid()?;
    let mut qids = Vec::with_capacity(View::ALL.len());
    for _ in View::ALL {
        qids.push(new_uuid()?);
    }
    let queries: serde_json::Map<String, Value> = View::ALL
        .iter()
        .zip(&qids)
        .map(|(v, q)| (v.name().to_string(), json!(q)))
        .collect();
    // Before anything is computed: who asked what of which snapshot (the usage dashboard reads
    // the filters for its flags).
    let event = Event::new(EventKind::ExplorerRun, caller.id())
        .session(caller.session.id.clone())
        .project(project.id.clone())
        .object(format!("explorer_run:{run_id}"))
        .payload(json!({
            "run_id": run_id, "snapshot_sha256": snapshot.sha256(),
            "filters": &filters, "queries": queries,
            "rule_pack": loaded.explorer.pack().name,
        }));
    audit(&app, event).await?;

    let computed = loaded.clone();
    let protect_app = app.clone();
    let sha = snapshot.sha256().to_string();
    let protect_filters = filters.clone();
    let result = tokio::task::spawn_blocking(move || {
        let raws = computed.index.raw_views(&protect_filters);
        protect_app.airlock.with_ledger(|ledger| {
            computed.explorer.protect(
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
    let ms = started.elapsed().as_millis() as u64;

    // Each view's protected table is kept as a completed query of the caller.
    let mut kept = Vec::with_capacity(View::ALL.len());
    for (view, qid) in View::ALL.iter().zip(&qids) {
        let shown = result.view(*view);
        let (schema, batch) = protected_batch(&shown.protected_csv)
            .map_err(|e| ApiError::Internal(format!("explorer {}: {e}", view.name())))?;
        kept.push((
            *view,
            qid.clone(),
            results::result_path(&app.config.state_dir, qid),
            schema,
            batch,
        ));
    }
    // One blocking task per file, so that their fsyncs overlap.
    let writes = kept.into_iter().map(|(view, qid, path, schema, batch)| {
        tokio::task::spawn_blocking(move || {
            let rows = batch.num_rows() as u64;
            let sha256 = results::write(&path, &schema, &[batch])?;
            Ok::<_, ApiError>((view, qid, rows, sha256))
        })
    });
    let mut kept = Vec::with_capacity(View::ALL.len());
    for w in writes.collect::<Vec<_>>() {
        kept.push(
            w.await
                .map_err(|e| ApiError::Internal(format!("result task: {e}")))??,
        );
    }
    let explorer = &loaded.explorer;
    let mut body = serde_json::to_value(&result)
        .map_err(|e| ApiError::Internal(format!("explorer result: {e}")))?;
    let mut records = Vec::with_capacity(kept.len());
    let mut viewed = Vec::with_capacity(kept.len());
    let definitions = explorer.queries(&filters);
    for (view, qid, rows, sha256) in &kept {
        let sql = definitions
            .iter()
            .find(|q| q.view == *view)
            .map_or("", |q| q.sql.as_str());
        records.push(QueryRecord {
            id: qid.clone(),
            project: project.id.clone(),
            user: caller.id().to_string(),
            sql: format!(
                "-- explorer run {run_id}, view {}: the rows this SQL defines, computed from the \
                 snapshot's explorer index; the kept result holds only the published cells \
                 (perturbed, rule pack {})\n{sql}",
                view.name(),
                explorer.pack().name,
            ),
            status: QueryStatus::Completed,
            row_count: Some(*rows),
            duration_ms: Some(ms),
            result_sha256: Some(sha256.clone()),
            snapshot_sha256: snapshot.sha256().to_string(),
            error: None,
            started_at: caller.now,
        });
        viewed.push(
            Event::new(EventKind::ResultViewed, caller.id())
                .session(caller.session.id.clone())
                .project(project.id.clone())
                .object(format!("query:{qid}"))
                .payload(json!({
                    "query_id": qid, "explorer_run": run_id, "view": view.name(),
                    "rows_shown": rows, "row_count": rows, "result_sha256": sha256,
                    "suppressed_cells": result.view(*view).suppressed_cells,
                })),
        );
        body[view.name()]["query_id"] = json!(qid);
    }
    // One commit for the three records.
    app.store.insert_queries(&records)?;
    // The three views are shown together: their entries go in one group commit.
    let mut viewed = viewed.into_iter().map(|e| audit(&app, e));
    if let (Some(a), Some(b), Some(c)) = (viewed.next(), viewed.next(), viewed.next()) {
        let (a, b, c) = tokio::join!(a, b, c);
        a?;
        b?;
        c?;
    }
    Ok(Json(json!({
        "id": run_id,
        "duration_ms": started.elapsed().as_millis() as u64,
        "snapshot_sha256": snapshot.sha256(),
        "result": body,
    })))
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
