//! Staged outputs: a researcher saves a completed result of their own as the input of the
//! airlock. The result file is copied whole under `<state>/outputs/`, hashed, audited, then
//! recorded, and its review opens as a draft; nothing here lets it leave Kura (see
//! `reviews.rs` for the way out).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kura_airlock::StagedOutput;
use kura_audit::{Event, EventKind};
use kura_authz::{Action, Resource};
use kura_store::{OutputRecord, QueryStatus};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{authorize, visible_project};
use crate::error::ApiError;
use crate::results::result_path;
use crate::session::Caller;
use crate::state::AppState;
use crate::{audit, ApiJson};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageOutput {
    query_id: String,
    title: String,
    #[serde(default)]
    description: String,
}

fn output_json(o: &OutputRecord) -> Value {
    json!({"id": o.id, "query_id": o.query_id, "title": o.title, "description": o.description,
           "author": o.author, "status": o.status, "row_count": o.row_count, "sha256": o.sha256,
           "created_at": o.created_at})
}

pub async fn stage(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
    ApiJson(body): ApiJson<StageOutput>,
) -> Result<Response, ApiError> {
    let (project, facts) = visible_project(&app, &caller, &pid).await?;
    authorize(
        &app,
        &caller,
        Action::StageOutput,
        &Resource::Project(&facts),
        &format!("project:{pid}"),
    )
    .await?;
    let title = body.title.trim().to_string();
    if title.is_empty() || title.chars().count() > 200 || body.description.len() > 10_000 {
        return Err(ApiError::Unprocessable {
            code: "kura.output.invalid",
            message: "give a title (1-200 characters) and at most 10,000 bytes of description"
                .into(),
        });
    }
    let query = app
        .store
        .query(&project.id, &body.query_id)?
        .filter(|q| q.user == caller.id())
        .ok_or_else(|| ApiError::not_found(format!("query {:?}", body.query_id)))?;
    if query.status != QueryStatus::Completed {
        return Err(ApiError::Conflict(format!(
            "query {} is {}; only a completed result can be staged",
            query.id,
            query.status.as_str()
        )));
    }
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| ApiError::Internal(format!("random: {e}")))?;
    let id = format!("out-{}", hex::encode(&raw[..8]));
    let from = result_path(&app.config.state_dir, &query.id);
    let to = app
        .config
        .state_dir
        .join("outputs")
        .join(format!("{id}.arrow"));
    let copy_to = to.clone();
    let sha256 = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
        let io =
            |e: std::io::Error| ApiError::Internal(format!("staging {}: {e}", copy_to.display()));
        if let Some(dir) = copy_to.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = copy_to.with_extension("arrow.tmp");
        std::fs::copy(&from, &tmp).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, &copy_to).map_err(io)?;
        kura_snapshot::sha256_file(&copy_to)
            .map(|(h, _)| h)
            .map_err(|e| ApiError::Internal(format!("staging: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("staging task: {e}")))??;
    let record = OutputRecord {
        id: id.clone(),
        project: project.id.clone(),
        query_id: query.id.clone(),
        author: caller.id().to_string(),
        title,
        description: body.description,
        status: "staged".into(),
        row_count: query.row_count.unwrap_or(0),
        sha256,
        created_at: caller.now,
    };
    let event = Event::new(EventKind::OutputStaged, caller.id())
        .session(caller.session.id.clone())
        .project(project.id.clone())
        .object(format!("output:{id}"))
        .payload(
            json!({"output_id": id, "query_id": query.id, "sql": query.sql,
                        "sha256": record.sha256, "rows": record.row_count,
                        "snapshot_sha256": query.snapshot_sha256, "title": record.title}),
        );
    if let Err(e) = audit(&app, event).await {
        let _ = std::fs::remove_file(&to);
        return Err(e);
    }
    // The review opens in `draft` with the staged file's hash; the airlock re-checks that
    // hash whenever it reads the file.
    let staged = StagedOutput {
        id: record.id.clone(),
        project: record.project.clone(),
        author: record.author.clone(),
        title: record.title.clone(),
        sha256: record.sha256.clone(),
        query_id: query.id.clone(),
        sql: query.sql.clone(),
        snapshot_sha256: query.snapshot_sha256.clone(),
        staged_at: record.created_at,
    };
    app.airlock.open_review(staged, caller.id(), caller.now)?;
    app.store.insert_output(&record)?;
    let mut body = output_json(&record);
    body["status"] = json!(kura_airlock::State::Draft.as_str());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (project, _) = visible_project(&app, &caller, &pid).await?;
    // The review state is the airlock's; the stored row only says it was staged.
    let states: std::collections::HashMap<String, &'static str> = app
        .airlock
        .project_reviews(&project.id)?
        .into_iter()
        .map(|r| (r.output.id, r.state.as_str()))
        .collect();
    let outputs: Vec<Value> = app
        .store
        .outputs(&project.id)?
        .iter()
        .map(|o| {
            let mut v = output_json(o);
            if let Some(state) = states.get(&o.id) {
                v["status"] = json!(state);
            }
            v
        })
        .collect();
    Ok(Json(json!({ "outputs": outputs })))
}
