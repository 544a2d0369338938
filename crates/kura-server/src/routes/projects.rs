//! Projects: list, create (stewards), show, members (stewards), and the catalog of granted
//! tables and columns. Every change is audited before it is stored.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use kura_audit::{Event, EventKind};
use kura_authz::{Action, ProjectFacts, ProjectRole, Resource};
use kura_store::{Member, Project};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{allowed, authorize, facts, visible_project};
use crate::error::ApiError;
use crate::session::Caller;
use crate::state::AppState;
use crate::{audit, ApiJson};

fn project_json(
    app: &AppState,
    p: &Project,
    f: &ProjectFacts,
    caller: &Caller,
    members: bool,
) -> Result<Value, ApiError> {
    let mine = f.members.iter().find(|m| m.user == caller.id());
    let mut v = json!({
        "id": p.id, "title": p.title, "description": p.description, "snapshot": p.snapshot,
        "tables": p.tables, "starts": p.starts, "expires": p.expires,
        "my_role": mine.map(|m| m.role.as_str()),
        "my_membership_expires": mine.map(|m| m.expires),
    });
    if members {
        let names: BTreeMap<String, String> = app
            .store
            .accounts()?
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect();
        v["members"] = f
            .members
            .iter()
            .map(|m| {
                json!({"user": m.user, "name": names.get(&m.user), "role": m.role.as_str(),
                       "expires": m.expires})
            })
            .collect();
    }
    Ok(v)
}

pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let all = allowed(&app, &caller, Action::ViewAllProjects, &Resource::System);
    let projects = if all {
        app.store.projects()?
    } else {
        app.store.projects_of(caller.id())?
    };
    let mut out = Vec::new();
    for p in &projects {
        let f = facts(&app, p)?;
        if allowed(&app, &caller, Action::ViewProject, &Resource::Project(&f)) {
            out.push(project_json(&app, p, &f, &caller, false)?);
        }
    }
    Ok(Json(json!({ "projects": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    id: String,
    title: String,
    #[serde(default)]
    description: String,
    snapshot: String,
    tables: BTreeMap<String, Vec<String>>,
    starts: DateTime<Utc>,
    expires: DateTime<Utc>,
}

pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewProject>,
) -> Result<Response, ApiError> {
    authorize(
        &app,
        &caller,
        Action::CreateProject,
        &Resource::System,
        "projects",
    )
    .await?;
    let project = Project {
        id: body.id,
        title: body.title,
        description: body.description,
        snapshot: body.snapshot,
        tables: body.tables,
        starts: body.starts,
        expires: body.expires,
        created_by: caller.id().to_string(),
        created_at: caller.now,
    };
    project.validate()?;
    if app.store.project(&project.id)?.is_some() {
        return Err(ApiError::Conflict(format!(
            "project {:?} already exists",
            project.id
        )));
    }
    check_grant(&app, &project).await?;
    let event = Event::new(EventKind::AdminAction, caller.id())
        .session(caller.session.id.clone())
        .project(project.id.clone())
        .object(format!("project:{}", project.id))
        .payload(json!({"action": "project.create", "project": project}));
    audit(&app, event).await?;
    app.store.create_project(&project)?;
    let f = facts(&app, &project)?;
    let body = project_json(&app, &project, &f, &caller, true)?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The granted tables and columns must exist in the snapshot, so a typo is caught when the
/// project is created, not when a researcher's first query fails.
async fn check_grant(app: &AppState, project: &Project) -> Result<(), ApiError> {
    let snapshots = app.clone();
    let name = project.snapshot.clone();
    let info = tokio::task::spawn_blocking(move || snapshots.snapshots.get(&name))
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot task: {e}")))?
        .map_err(|e| match e {
            ApiError::Unavailable(m) | ApiError::NotFound(m) => ApiError::Unprocessable {
                code: "kura.project.unknown_snapshot",
                message: m,
            },
            other => other,
        })?;
    for (table, columns) in &project.tables {
        let Some(t) = info.manifest.tables.iter().find(|t| &t.name == table) else {
            return Err(ApiError::Unprocessable {
                code: "kura.project.unknown_table",
                message: format!("snapshot {:?} has no table {table:?}", project.snapshot),
            });
        };
        if let Some(c) = columns
            .iter()
            .find(|c| *c != "*" && !t.columns.iter().any(|col| &col.name == *c))
        {
            return Err(ApiError::Unprocessable {
                code: "kura.project.unknown_column",
                message: format!("table {table:?} has no column {c:?}"),
            });
        }
    }
    Ok(())
}

pub async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (p, f) = visible_project(&app, &caller, &pid).await?;
    Ok(Json(project_json(&app, &p, &f, &caller, true)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    role: String,
    expires: DateTime<Utc>,
}

/// The project `pid`, when the caller may change it (stewards).
async fn managed_project(
    app: &AppState,
    caller: &Caller,
    pid: &str,
) -> Result<(Project, ProjectFacts), ApiError> {
    let (p, f) = visible_project(app, caller, pid).await?;
    let object = format!("project:{pid}");
    authorize(
        app,
        caller,
        Action::ManageProject,
        &Resource::Project(&f),
        &object,
    )
    .await?;
    Ok((p, f))
}

pub async fn set_member(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, uid)): Path<(String, String)>,
    ApiJson(body): ApiJson<MemberBody>,
) -> Result<Json<Value>, ApiError> {
    let (p, _) = managed_project(&app, &caller, &pid).await?;
    let role: ProjectRole = body.role.parse().map_err(|_| ApiError::Unprocessable {
        code: "kura.request.invalid",
        message: format!("role {:?}: use \"researcher\" or \"observer\"", body.role),
    })?;
    let Some(account) = app.store.account(&uid)? else {
        return Err(ApiError::not_found(format!("account {uid:?}")));
    };
    let member = Member {
        user: account.id.clone(),
        role: role.as_str().to_string(),
        expires: body.expires,
    };
    let event = Event::new(EventKind::AdminAction, caller.id())
        .session(caller.session.id.clone())
        .project(p.id.clone())
        .object(format!("member:{}", account.id))
        .payload(json!({"action": "member.set", "member": member}));
    audit(&app, event).await?;
    app.store.set_member(&p.id, &member)?;
    Ok(Json(
        json!({"user": member.user, "name": account.name, "role": member.role,
                   "expires": member.expires}),
    ))
}

pub async fn remove_member(
    State(app): State<AppState>,
    caller: Caller,
    Path((pid, uid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (p, f) = managed_project(&app, &caller, &pid).await?;
    if !f.members.iter().any(|m| m.user == uid) {
        return Err(ApiError::not_found(format!(
            "member {uid:?} of project {pid:?}"
        )));
    }
    let event = Event::new(EventKind::AdminAction, caller.id())
        .session(caller.session.id.clone())
        .project(p.id.clone())
        .object(format!("member:{uid}"))
        .payload(json!({"action": "member.remove", "user": uid}));
    audit(&app, event).await?;
    app.store.remove_member(&p.id, &uid)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn catalog(
    State(app): State<AppState>,
    caller: Caller,
    Path(pid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (p, _) = visible_project(&app, &caller, &pid).await?;
    let info = crate::routes::queries::snapshot_of(&app, &p).await?;
    let tables: Vec<Value> = info
        .manifest
        .tables
        .iter()
        .filter_map(|t| {
            let granted = p.tables.get(&t.name)?;
            let all = granted.iter().any(|c| c == "*");
            let columns: Vec<Value> = t
                .columns
                .iter()
                .filter(|c| all || granted.contains(&c.name))
                .map(|c| json!({"name": c.name, "type": c.sql_type, "en": c.en, "ja": c.ja}))
                .collect();
            Some(
                json!({"name": t.name, "rows": t.rows, "en": t.en, "ja": t.ja, "columns": columns}),
            )
        })
        .collect();
    Ok(Json(json!({
        "snapshot": {"name": info.name, "sha256": info.sha256(), "built_at": info.manifest.built_at},
        "tables": tables,
    })))
}
