//! Queries through the sandbox: run (audited by the engine before the worker starts and after
//! it ends), cancel, history, and viewing a kept result again (audited as `result.viewed`).
//! The answer carries at most `max_rows_shown` rows; nothing here offers a download.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kura_audit::{Event, EventKind};
use kura_authz::{Action, Resource};
use kura_query::arrow::record_batch::RecordBatch;
use kura_query::{CancelHandle, ProjectScope, QueryError, QueryOutcome, QueryRequest};
use kura_store::{QueryRecord, QueryStatus};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{authorize, visible_project};
use crate::error::ApiError;
use crate::results;
use crate::session::Caller;
use crate::snapshots::SnapshotInfo;
use crate::state::{AppState, Running};
use crate::{audit, ApiJson};

/// Longest SQL text accepted.
const MAX_SQL: usize = 32 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    sql: String,
    #[serde(default)]
    id: Option<String>,
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

/// A random lower-case UUID (version 4).
pub(crate) fn new_uuid() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| ApiError::Internal(format!("random: {e}")))?;
    Ok(crate::telemetry::uuid_v4_text(b))
}

pub async fn run(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
    ApiJson(body): ApiJson<RunQuery>,
) -> Result<Response, ApiError> {
    let (project, facts) = visible_project(&app, &caller, &pid).await?;
    authorize(
        &app,
        &caller,
        Action::RunQuery,
        &Resource::Project(&facts),
        &format!("project:{pid}"),
    )
    .await?;
    if body.sql.trim().is_empty() || body.sql.len() > MAX_SQL {
        return Err(ApiError::bad(
            "kura.query.invalid",
            format!("give the SQL text (at most {MAX_SQL} bytes)"),
        ));
    }
    let id = match body.id {
        Some(id) if is_uuid(&id) => id,
        Some(_) => {
            return Err(ApiError::bad(
                "kura.query.invalid",
                "id must be a lower-case UUID",
            ))
        }
        None => new_uuid()?,
    };
    let snapshot = snapshot_of(&app, &project).await?;
    record_running(&app, &caller, &project, &snapshot, &id, body.sql.clone())?;
    let cancel = CancelHandle::default();
    app.running().insert(
        id.clone(),
        Running {
            user: caller.id().to_string(),
            project: project.id.clone(),
            cancel: cancel.clone(),
        },
    );
    let started = Instant::now();
    let outcome = execute(
        &app,
        &caller,
        scope_of(&project),
        snapshot.clone(),
        body.sql.clone(),
        id.clone(),
        cancel,
    )
    .await;
    app.running().remove(&id);
    let ms = started.elapsed().as_millis() as u64;
    let (outcome, batches) = match outcome? {
        Ok(r) => r,
        Err(e) => {
            let status = match &e {
                QueryError::Cancelled => QueryStatus::Cancelled,
                e if e.refusal_rule().is_some() => QueryStatus::Refused,
                _ => QueryStatus::Failed,
            };
            let message = e.to_string();
            app.store
                .finish_query(&id, status, None, ms, None, Some(&message))?;
            return Err(query_error(e));
        }
    };
    let path = results::result_path(&app.config.state_dir, &id);
    let schema = outcome.schema.clone();
    let writer_batches = batches.clone();
    let write_path = path.clone();
    tokio::task::spawn_blocking(move || results::write(&write_path, &schema, &writer_batches))
        .await
        .map_err(|e| ApiError::Internal(format!("result task: {e}")))??;
    app.store.finish_query(
        &id,
        QueryStatus::Completed,
        Some(outcome.rows),
        ms,
        Some(&outcome.sha256),
        None,
    )?;
    let body = view(
        &app,
        &caller,
        &project.id,
        &id,
        &outcome.schema,
        &batches,
        outcome.rows,
        ms,
        &outcome.sha256,
        snapshot.sha256(),
    )
    .await?;
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// The project's verified snapshot (hashed against its manifest on first use, off the async
/// threads).
pub(crate) async fn snapshot_of(
    app: &AppState,
    project: &kura_store::Project,
) -> Result<Arc<SnapshotInfo>, ApiError> {
    let shared = app.clone();
    let name = project.snapshot.clone();
    tokio::task::spawn_blocking(move || shared.snapshots.get(&name))
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot task: {e}")))?
}

/// Records query `id` as running (the history shows it at once; it is finished later).
pub(crate) fn record_running(
    app: &AppState,
    caller: &Caller,
    project: &kura_store::Project,
    snapshot: &SnapshotInfo,
    id: &str,
    sql: String,
) -> Result<(), ApiError> {
    app.store.insert_query(&QueryRecord {
        id: id.to_string(),
        project: project.id.clone(),
        user: caller.id().to_string(),
        sql,
        status: QueryStatus::Running,
        row_count: None,
        duration_ms: None,
        result_sha256: None,
        snapshot_sha256: snapshot.sha256().to_string(),
        error: None,
        started_at: caller.now,
    })?;
    Ok(())
}

/// The sandbox scope of a project's grant.
pub(crate) fn scope_of(project: &kura_store::Project) -> ProjectScope {
    ProjectScope {
        name: project.id.clone(),
        snapshot: Some(project.snapshot.clone()),
        tables: project.tables.clone(),
        expires: Some(project.expires),
    }
}

/// Runs `sql` through the sandbox engine as the caller (the engine audits `query.submitted`
/// before the worker starts and `query.completed` or `query.refused` after), collecting the
/// Arrow batches. The outer error is the server's own; the inner one the query's.
pub(crate) async fn execute(
    app: &AppState,
    caller: &Caller,
    scope: ProjectScope,
    snapshot: Arc<SnapshotInfo>,
    sql: String,
    id: String,
    cancel: CancelHandle,
) -> Result<Result<(QueryOutcome, Vec<RecordBatch>), QueryError>, ApiError> {
    let limits = app.config.query.limits();
    let worker_app = app.clone();
    let user = caller.id().to_string();
    let session = caller.session.id.clone();
    // Metrics and the trace: the run's outcome and time, its audit appends as child spans.
    let context = crate::telemetry::current();
    let span = context
        .as_ref()
        .map_or_else(tracing::Span::none, |c| c.query_span());
    let run_span = span.clone();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let _entered = run_span.enter();
        let audit =
            crate::telemetry::MeasuredAudit::new(worker_app.audit.as_ref(), context.as_ref());
        let mut batches = Vec::new();
        let request = QueryRequest {
            sql: &sql,
            project: &scope,
            user: &user,
            session: Some(&session),
            snapshot: &snapshot.path,
            snapshot_sha256: Some(snapshot.sha256()),
            id: Some(&id),
            limits: Some(limits),
        };
        worker_app
            .engine
            .run_streaming(&request, &audit, &cancel, &mut |b| batches.push(b.clone()))
            .map(|o| (o, batches))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("query task: {e}")))?;
    let outcome = crate::metrics::query_outcome(&result);
    span.record("outcome", outcome);
    crate::metrics::global().query(outcome, started.elapsed());
    Ok(result)
}

/// Audits that the caller is shown the first rows of a result, then builds the answer.
#[allow(clippy::too_many_arguments)]
async fn view(
    app: &AppState,
    caller: &Caller,
    project: &str,
    id: &str,
    schema: &kura_query::arrow::datatypes::SchemaRef,
    batches: &[kura_query::arrow::record_batch::RecordBatch],
    row_count: u64,
    duration_ms: u64,
    sha256: &str,
    snapshot_sha256: &str,
) -> Result<Value, ApiError> {
    let limit = app.config.query.max_rows_shown;
    let rows = results::rows(batches, limit)?;
    let event = Event::new(EventKind::ResultViewed, caller.id())
        .session(caller.session.id.clone())
        .project(project.to_string())
        .object(format!("query:{id}"))
        .payload(
            json!({"query_id": id, "rows_shown": rows.len(), "row_count": row_count,
                        "result_sha256": sha256}),
        );
    audit(app, event).await?;
    Ok(json!({
        "id": id,
        "columns": results::columns(schema),
        "rows_shown": rows.len(),
        "rows": rows,
        "row_count": row_count,
        "truncated": (row_count as usize) > limit,
        "duration_ms": duration_ms,
        "result_sha256": sha256,
        "snapshot_sha256": snapshot_sha256,
    }))
}

pub(crate) fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Audit(a) => ApiError::audit(a),
        QueryError::Timeout(_) => ApiError::Timeout(e.to_string()),
        QueryError::Cancelled => ApiError::Cancelled,
        QueryError::RowCap { .. } | QueryError::ByteCap { .. } => ApiError::Unprocessable {
            code: "kura.query.too_large",
            message: e.to_string(),
        },
        QueryError::Execution { .. } => ApiError::Unprocessable {
            code: "kura.query.failed",
            message: e.to_string(),
        },
        e if e.refusal_rule().is_some() => ApiError::Unprocessable {
            code: "kura.query.refused",
            message: e.to_string(),
        },
        other => ApiError::Internal(other.to_string()),
    }
}

pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, qid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, facts) = visible_project(&app, &caller, &pid).await?;
    authorize(
        &app,
        &caller,
        Action::RunQuery,
        &Resource::Project(&facts),
        &format!("query:{qid}"),
    )
    .await?;
    let Some(record) = app.store.query(&pid, &qid)? else {
        return Err(ApiError::not_found(format!("query {qid:?}")));
    };
    if record.user != caller.id() {
        return Err(ApiError::not_found(format!("query {qid:?}")));
    }
    let running = app.running().get(&qid).cloned();
    let cancelled = match running {
        Some(r) if r.user == caller.id() && r.project == pid => {
            r.cancel.cancel();
            true
        }
        _ => false,
    };
    Ok((StatusCode::ACCEPTED, Json(json!({"cancelled": cancelled}))).into_response())
}

pub async fn history(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (project, _) = visible_project(&app, &caller, &pid).await?;
    let queries: Vec<Value> = app
        .store
        .queries(&project.id, caller.id(), 100)?
        .into_iter()
        .map(|q| {
            json!({"id": q.id, "sql": q.sql, "status": q.status, "row_count": q.row_count,
                   "duration_ms": q.duration_ms, "started_at": q.started_at, "error": q.error,
                   "result_sha256": q.result_sha256})
        })
        .collect();
    Ok(Json(json!({ "queries": queries })))
}

pub async fn result(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, qid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (project, _) = visible_project(&app, &caller, &pid).await?;
    let record = app
        .store
        .query(&project.id, &qid)?
        .filter(|q| q.user == caller.id() && q.status == QueryStatus::Completed)
        .ok_or_else(|| ApiError::not_found(format!("result of query {qid:?}")))?;
    let path = results::result_path(&app.config.state_dir, &qid);
    let (schema, batches) = tokio::task::spawn_blocking(move || results::read(&path))
        .await
        .map_err(|e| ApiError::Internal(format!("result task: {e}")))??;
    let body = view(
        &app,
        &caller,
        &project.id,
        &qid,
        &schema,
        &batches,
        record.row_count.unwrap_or(0),
        record.duration_ms.unwrap_or(0),
        record.result_sha256.as_deref().unwrap_or_default(),
        &record.snapshot_sha256,
    )
    .await?;
    Ok(Json(body))
}
