//! The airlock over HTTP: an output's review (context, submit, withdraw), the automatic report,
//! checkers' votes, the release that follows the second approval, downloads of released files,
//! and the checkers' queue. The review rules themselves are `kura-airlock`'s; the Cedar
//! policies decide who may ask (an author never reviews their own output). Every request is
//! audited before it takes effect; a request the airlock then refuses gets a second entry
//! saying so.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kura_airlock::{Context, Decision, Outcome, Review};
use kura_audit::{Event, EventKind};
use kura_authz::{Action, ProjectFacts, Resource};
use kura_store::Project;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{allowed, authorize, facts};
use crate::error::ApiError;
use crate::session::Caller;
use crate::state::AppState;
use crate::{audit, ApiJson};

/// The review of output `oid` in project `pid`, if the caller may see it (ViewOutput);
/// otherwise 404, audited as a probe when the output exists.
async fn visible_review(
    app: &AppState,
    caller: &Caller,
    pid: &str,
    oid: &str,
) -> Result<(Project, ProjectFacts, Review), ApiError> {
    let not_found = || ApiError::not_found(format!("output {oid:?} of project {pid:?}"));
    let Some(project) = app.store.project(pid)? else {
        return Err(not_found());
    };
    let review = match app.airlock.review(oid) {
        Ok(r) if r.output.project == project.id => r,
        Ok(_) | Err(kura_airlock::AirlockError::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    let f = facts(app, &project)?;
    let resource = Resource::Output {
        project: &f,
        id: oid,
        author: &review.output.author,
    };
    if !allowed(app, caller, Action::ViewOutput, &resource) {
        authorize(
            app,
            caller,
            Action::ViewOutput,
            &resource,
            &format!("output:{oid}"),
        )
        .await
        .ok();
        return Err(not_found());
    }
    Ok((project, f, review))
}

/// What the caller may see of a review, with its release when there is one.
pub fn review_json(app: &AppState, review: &Review, viewer: &str) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(review.view(viewer))
        .map_err(|e| ApiError::Internal(format!("review: {e}")))?;
    v["release"] = match app.airlock.release_record(&review.output.id)? {
        Some(r) => json!({"manifest_sha256": r.manifest_sha256, "file_name": r.file_name,
                          "file_sha256": r.file_sha256, "released_at": r.released_at}),
        None => Value::Null,
    };
    Ok(v)
}

fn event(caller: &Caller, kind: EventKind, project: &str, oid: &str) -> Event {
    Event::new(kind, caller.id())
        .session(caller.session.id.clone())
        .project(project.to_string())
        .object(format!("output:{oid}"))
}

/// Audits the request, runs it, and audits a refusal.
async fn audited<T>(
    app: &AppState,
    request: Event,
    act: impl FnOnce() -> Result<T, kura_airlock::AirlockError>,
) -> Result<T, ApiError> {
    audit(app, request.clone()).await?;
    match act() {
        Ok(v) => Ok(v),
        Err(e) => {
            let mut payload = request.payload.clone();
            payload["result"] = json!("refused");
            payload["reason"] = json!(e.to_string());
            audit(app, request.payload(payload)).await?;
            Err(e.into())
        }
    }
}

pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, oid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (_, _, review) = visible_review(&app, &caller, &pid, &oid).await?;
    Ok(Json(review_json(&app, &review, caller.id())?))
}

pub async fn report(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, oid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    visible_review(&app, &caller, &pid, &oid).await?;
    let shared = app.clone();
    let id = oid.clone();
    let report = tokio::task::spawn_blocking(move || shared.airlock.report(&id))
        .await
        .map_err(|e| ApiError::Internal(format!("report task: {e}")))??;
    Ok(Json(
        serde_json::to_value(report).map_err(|e| ApiError::Internal(format!("report: {e}")))?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextBody {
    description: String,
    denominators: String,
    method: String,
    #[serde(default)]
    population_filters: Vec<String>,
}

/// The author's own actions on the review: context, submit, withdraw.
async fn author_action(
    app: &AppState,
    caller: &Caller,
    pid: &str,
    oid: &str,
    action: &str,
    payload: Value,
    act: impl FnOnce(&AppState) -> Result<Review, kura_airlock::AirlockError>,
) -> Result<Json<Value>, ApiError> {
    let (project, f, review) = visible_review(app, caller, pid, oid).await?;
    let resource = Resource::Output {
        project: &f,
        id: oid,
        author: &review.output.author,
    };
    authorize(
        app,
        caller,
        Action::SubmitOutput,
        &resource,
        &format!("output:{oid}"),
    )
    .await?;
    let mut payload = payload;
    payload["action"] = json!(action);
    payload["output_id"] = json!(oid);
    let request = event(caller, EventKind::ExportRequested, &project.id, oid).payload(payload);
    let review = audited(app, request, || act(app)).await?;
    Ok(Json(review_json(app, &review, caller.id())?))
}

pub async fn set_context(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, oid)): Path<(String, String)>,
    ApiJson(body): ApiJson<ContextBody>,
) -> Result<Json<Value>, ApiError> {
    let context = Context {
        description: body.description,
        denominators: body.denominators,
        method: body.method,
        population_filters: body.population_filters,
    };
    let payload = json!({"context": context});
    let now = caller.now;
    let who = caller.id().to_string();
    let id = oid.clone();
    author_action(&app, &caller, &pid, &oid, "context", payload, move |app| {
        app.airlock.set_context(&id, &who, context, now)
    })
    .await
}

pub async fn submit(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, oid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let now = caller.now;
    let who = caller.id().to_string();
    let id = oid.clone();
    author_action(&app, &caller, &pid, &oid, "submit", json!({}), move |app| {
        app.airlock.submit(&id, &who, now)
    })
    .await
}

pub async fn withdraw(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, oid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let now = caller.now;
    let who = caller.id().to_string();
    let id = oid.clone();
    author_action(
        &app,
        &caller,
        &pid,
        &oid,
        "withdraw",
        json!({}),
        move |app| app.airlock.withdraw(&id, &who, now),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    decision: String,
    #[serde(default)]
    comment: String,
}

pub async fn vote(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, oid)): Path<(String, String)>,
    ApiJson(body): ApiJson<VoteBody>,
) -> Result<Json<Value>, ApiError> {
    let (project, f, review) = visible_review(&app, &caller, &pid, &oid).await?;
    let resource = Resource::Output {
        project: &f,
        id: &oid,
        author: &review.output.author,
    };
    authorize(
        &app,
        &caller,
        Action::ReviewOutput,
        &resource,
        &format!("output:{oid}"),
    )
    .await?;
    let decision = Decision::parse(&body.decision).ok_or_else(|| ApiError::Unprocessable {
        code: "kura.request.invalid",
        message: format!(
            "decision {:?}: use approve, request_changes or reject",
            body.decision
        ),
    })?;
    // The decision is sealed in the log like in the review: the entry is written before the
    // vote counts; other checkers cannot read the payload through the API.
    let request = event(&caller, EventKind::ReviewDecision, &project.id, &oid).payload(json!({
        "output_id": oid, "decision": decision.as_str(), "comment": body.comment,
    }));
    let (now, who) = (caller.now, caller.id().to_string());
    let (review, outcome) = audited(&app, request, || {
        app.airlock.vote(&oid, &who, decision, &body.comment, now)
    })
    .await?;
    if outcome == Some(Outcome::Approved) {
        release(&app, &caller, &project.id, &review).await?;
    }
    let review = app.airlock.review(&oid)?;
    Ok(Json(review_json(&app, &review, caller.id())?))
}

/// Releases an approved output: audited before (what is released, by whose approval) and after
/// (the signed manifest's hash; the entry's index is the release's receipt in the log).
async fn release(
    app: &AppState,
    caller: &Caller,
    project: &str,
    review: &Review,
) -> Result<(), ApiError> {
    let oid = review.output.id.clone();
    let approvers: Vec<String> = review
        .visible_votes(caller.id())
        .into_iter()
        .filter(|v| v.decision == Decision::Approve)
        .map(|v| v.checker)
        .collect();
    let request = event(caller, EventKind::OutputReleased, project, &oid).payload(json!({
        "phase": "requested", "output_id": oid, "output_sha256": review.output.sha256,
        "snapshot_sha256": review.output.snapshot_sha256, "approved_by": approvers,
    }));
    let shared = app.clone();
    let id = oid.clone();
    let now = caller.now;
    audit(app, request.clone()).await?;
    let released = tokio::task::spawn_blocking(move || shared.airlock.release(&id, now))
        .await
        .map_err(|e| ApiError::Internal(format!("release task: {e}")))?;
    match released {
        Ok(r) => {
            let done = request.payload(json!({
                "phase": "released", "output_id": oid, "manifest_sha256": r.manifest_sha256,
                "directory": r.dir.display().to_string(),
            }));
            audit(app, done).await
        }
        Err(e) => {
            let refused = request.payload(json!({
                "phase": "refused", "output_id": oid, "reason": e.to_string(),
            }));
            audit(app, refused).await?;
            Err(e.into())
        }
    }
}

pub async fn download(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, oid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (project, f, review) = visible_review(&app, &caller, &pid, &oid).await?;
    let resource = Resource::Output {
        project: &f,
        id: &oid,
        author: &review.output.author,
    };
    authorize(
        &app,
        &caller,
        Action::DownloadRelease,
        &resource,
        &format!("output:{oid}"),
    )
    .await?;
    let shared = app.clone();
    let id = oid.clone();
    let file = tokio::task::spawn_blocking(move || shared.airlock.released_file(&id))
        .await
        .map_err(|e| ApiError::Internal(format!("download task: {e}")))??;
    let bytes = tokio::fs::read(&file.path)
        .await
        .map_err(|e| ApiError::Internal(format!("{}: {e}", file.path.display())))?;
    let e = event(&caller, EventKind::OutputDownloaded, &project.id, &oid).payload(json!({
        "output_id": oid, "file": file.file_name, "sha256": file.sha256, "bytes": bytes.len(),
    }));
    audit(&app, e).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file.file_name.replace('"', "")
    );
    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// The checkers' queue: submitted outputs of every project the caller may review or oversee.
pub async fn queue(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for review in app
        .airlock
        .reviews_in_state(kura_airlock::State::Submitted)?
    {
        let Some(project) = app.store.project(&review.output.project)? else {
            continue;
        };
        let f = facts(&app, &project)?;
        let resource = Resource::Output {
            project: &f,
            id: &review.output.id,
            author: &review.output.author,
        };
        if allowed(&app, &caller, Action::ViewOutput, &resource) {
            out.push(review_json(&app, &review, caller.id())?);
        }
    }
    Ok(Json(json!({ "reviews": out })))
}

/// The release's receipt: a C2SP `tlog-proof@v1` that the `output.released` entry of this
/// output is in the audit log under the latest signed checkpoint (check it with
/// `kura audit verify-receipt` or any tlog-proof verifier and the log's public key).
pub async fn receipt(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, oid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    visible_review(&app, &caller, &pid, &oid).await?;
    let audit_log = app.audit.clone();
    let object = format!("output:{oid}");
    let receipt = tokio::task::spawn_blocking(move || -> Result<Option<String>, ApiError> {
        let mut reader = audit_log
            .reader()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let filter = kura_audit::SearchFilter {
            project: Some(pid),
            kind: Some(EventKind::OutputReleased.as_str().to_string()),
            ..kura_audit::SearchFilter::default()
        };
        let mut index = None;
        reader
            .search(&filter, &mut |hit| {
                let released = hit
                    .payload
                    .as_ref()
                    .is_some_and(|p| p["phase"] == "released");
                if released && hit.leaf.objects.contains(&object) {
                    index = Some(hit.index);
                }
                Ok(())
            })
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        match index {
            None => Ok(None),
            Some(i) => reader.receipt(i).map(Some).map_err(|e| match e {
                kura_audit::AuditError::NotFound(m) => ApiError::Unavailable(m),
                other => ApiError::Internal(other.to_string()),
            }),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("receipt task: {e}")))??;
    let receipt =
        receipt.ok_or_else(|| ApiError::not_found(format!("release of output {oid:?}")))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        receipt,
    )
        .into_response())
}
