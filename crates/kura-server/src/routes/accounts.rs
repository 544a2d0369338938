//! Accounts: stewards create local accounts and disable any account (its sessions end at
//! once); stewards and supervisors list them. Changes are audited before they are stored.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kura_audit::{Event, EventKind};
use kura_authz::{Action, Resource, Role};
use kura_identity::password;
use kura_store::{Account, NewAccount};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::authorize;
use crate::error::ApiError;
use crate::session::Caller;
use crate::state::AppState;
use crate::{audit, ApiJson};

fn account_json(a: &Account) -> Value {
    json!({"id": a.id, "name": a.name, "roles": a.roles, "disabled": a.disabled,
           "source": a.source.as_str(), "created_at": a.created_at})
}

pub async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    authorize(
        &app,
        &caller,
        Action::ViewAccounts,
        &Resource::System,
        "accounts",
    )
    .await?;
    let accounts: Vec<Value> = app.store.accounts()?.iter().map(account_json).collect();
    Ok(Json(json!({ "accounts": accounts })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccountBody {
    id: String,
    name: String,
    roles: Vec<String>,
    password: String,
}

pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewAccountBody>,
) -> Result<Response, ApiError> {
    authorize(
        &app,
        &caller,
        Action::ManageAccounts,
        &Resource::Account(&body.id),
        &format!("account:{}", body.id),
    )
    .await?;
    if let Some(bad) = body.roles.iter().find(|r| r.parse::<Role>().is_err()) {
        return Err(ApiError::Unprocessable {
            code: "kura.request.invalid",
            message: format!(
                "unknown role {bad:?}: use researcher, checker, supervisor or steward"
            ),
        });
    }
    password::check_password_policy(&body.password).map_err(|e| ApiError::Unprocessable {
        code: "kura.account.weak_password",
        message: e.to_string(),
    })?;
    if app.store.account(&body.id)?.is_some() {
        return Err(ApiError::Conflict(format!(
            "account {:?} already exists",
            body.id
        )));
    }
    let pw = body.password;
    let hash = tokio::task::spawn_blocking(move || password::hash_password(&pw))
        .await
        .map_err(|e| ApiError::Internal(format!("hash task: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let event = Event::new(EventKind::AdminAction, caller.id())
        .session(caller.session.id.clone())
        .object(format!("account:{}", body.id))
        .payload(
            json!({"action": "account.create", "id": body.id, "name": body.name,
                        "roles": body.roles}),
        );
    audit(&app, event).await?;
    let account = app.store.create_account(
        &NewAccount {
            id: &body.id,
            name: &body.name,
            roles: &body.roles,
            password_hash: &hash,
        },
        caller.now,
    )?;
    Ok((StatusCode::CREATED, Json(account_json(&account))).into_response())
}

pub async fn disable(
    State(app): State<AppState>,
    caller: Caller,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(
        &app,
        &caller,
        Action::ManageAccounts,
        &Resource::Account(&uid),
        &format!("account:{uid}"),
    )
    .await?;
    if app.store.account(&uid)?.is_none() {
        return Err(ApiError::not_found(format!("account {uid:?}")));
    }
    let event = Event::new(EventKind::AdminAction, caller.id())
        .session(caller.session.id.clone())
        .object(format!("account:{uid}"))
        .payload(json!({"action": "account.disable", "id": uid}));
    audit(&app, event).await?;
    let account = app.store.disable_account(&uid)?;
    Ok(Json(account_json(&account)))
}
