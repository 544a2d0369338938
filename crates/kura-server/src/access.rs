//! Authorization glue: turns stored projects and members into the facts the Cedar policies
//! decide on, asks the policies, and audits refusals. A project the caller may not even view
//! answers 404, the same as a project that does not exist, so ids of other projects reveal
//! nothing (IDOR).

use kura_audit::{Event, EventKind};
use kura_authz::{Action, Membership, ProjectFacts, ProjectRole, Resource};
use kura_store::Project;
use serde_json::json;

use crate::audit;
use crate::error::ApiError;
use crate::session::Caller;
use crate::state::AppState;

pub fn facts(app: &AppState, project: &Project) -> Result<ProjectFacts, ApiError> {
    let members = app
        .store
        .members(&project.id)?
        .into_iter()
        .filter_map(|m| {
            // A role the policies do not know gives nothing.
            let role = m.role.parse::<ProjectRole>().ok()?;
            Some(Membership {
                user: m.user,
                role,
                expires: m.expires,
            })
        })
        .collect();
    Ok(ProjectFacts {
        id: project.id.clone(),
        starts: project.starts,
        expires: project.expires,
        members,
    })
}

/// Whether the policies allow it (no audit).
pub fn allowed(app: &AppState, caller: &Caller, action: Action, resource: &Resource<'_>) -> bool {
    app.authz
        .decide(&caller.principal, action, resource, caller.now)
        .allowed
}

/// Allows or refuses; a refusal is audited as `access.denied` and answered 403.
pub async fn authorize(
    app: &AppState,
    caller: &Caller,
    action: Action,
    resource: &Resource<'_>,
    object: &str,
) -> Result<(), ApiError> {
    let decision = app
        .authz
        .decide(&caller.principal, action, resource, caller.now);
    if decision.allowed {
        return Ok(());
    }
    deny(app, caller, action, object, &decision.policies).await?;
    Err(ApiError::Forbidden(format!(
        "you may not {} here{}",
        action.as_str(),
        if decision.policies.is_empty() {
            String::new()
        } else {
            format!(" (policy: {})", decision.policies.join(", "))
        }
    )))
}

async fn deny(
    app: &AppState,
    caller: &Caller,
    action: Action,
    object: &str,
    policies: &[String],
) -> Result<(), ApiError> {
    let event = Event::new(EventKind::AccessDenied, caller.id())
        .session(caller.session.id.clone())
        .object(object.to_string())
        .payload(json!({"action": action.as_str(), "policies": policies}));
    audit(app, event).await
}

/// The project `pid` with its facts, if the caller may view it; otherwise 404 (audited when
/// the project exists, since that is a probe of someone else's project).
pub async fn visible_project(
    app: &AppState,
    caller: &Caller,
    pid: &str,
) -> Result<(Project, ProjectFacts), ApiError> {
    let not_found = || ApiError::not_found(format!("project {pid:?}"));
    let Some(project) = app.store.project(pid)? else {
        return Err(not_found());
    };
    let facts = facts(app, &project)?;
    if allowed(app, caller, Action::ViewProject, &Resource::Project(&facts)) {
        Ok((project, facts))
    } else {
        deny(
            app,
            caller,
            Action::ViewProject,
            &format!("project:{pid}"),
            &[],
        )
        .await?;
        Err(not_found())
    }
}
