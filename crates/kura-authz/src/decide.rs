//! Turning Kura's facts into Cedar entities and a request, asking Cedar, and reading the answer
//! fail-closed: any error while building the request or evaluating a policy is a denial.
//!
//! Encoding (see docs/authz.md): the principal is `User::"<id>"` with attributes `id` and
//! `active` and its global roles as parents (`Role::"steward"`); a project is `Project::"<id>"`
//! with `starts`, `expires`, `project` (itself) and one tag per member, keyed by user id, holding
//! `{role, expires}`; an output is `Output::"<id>"` with `project` and `author`.

use std::collections::BTreeSet;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use chrono::{DateTime, TimeDelta, Utc};

use crate::model::{Action, Decision, Principal, ProjectFacts, Resource};

/// The id of the single `System` entity.
const SYSTEM_ID: &str = "kura";

type Result<T> = std::result::Result<T, String>;

pub(crate) fn decide(
    loaded: &crate::load::Loaded,
    principal: &Principal,
    action: Action,
    resource: &Resource<'_>,
    now: DateTime<Utc>,
) -> Decision {
    let built = build(loaded, principal, action, resource, now);
    let (request, entities) = match built {
        Ok(pair) => pair,
        Err(message) => return Decision::error(message),
    };
    let response =
        cedar_policy::Authorizer::new().is_authorized(&request, &loaded.policies, &entities);
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| e.to_string())
        .collect();
    if !errors.is_empty() {
        // Cedar skips a policy whose evaluation errors; a skipped forbid must not let a permit
        // through, so any error denies.
        return Decision {
            allowed: false,
            policies: Vec::new(),
            errors,
        };
    }
    let policies: BTreeSet<String> = response
        .diagnostics()
        .reason()
        .map(|id| id.to_string())
        .collect();
    Decision {
        allowed: response.decision() == cedar_policy::Decision::Allow,
        policies: policies.into_iter().collect(),
        errors,
    }
}

fn build(
    loaded: &crate::load::Loaded,
    principal: &Principal,
    action: Action,
    resource: &Resource<'_>,
    now: DateTime<Utc>,
) -> Result<(Request, Entities)> {
    let user = uid("User", &principal.id)?;
    let roles = principal
        .roles
        .iter()
        .map(|r| uid("Role", r.as_str()))
        .collect::<Result<Vec<_>>>()?;
    let mut entities = vec![entity(
        user.clone(),
        [
            ("id", RestrictedExpression::new_string(principal.id.clone())),
            ("active", RestrictedExpression::new_bool(principal.active)),
        ],
        roles,
        Vec::new(),
    )?];

    let target = match resource {
        Resource::System => {
            let system = uid("System", SYSTEM_ID)?;
            entities.push(Entity::new_no_attrs(system.clone(), Default::default()));
            system
        }
        Resource::Project(project) => {
            let (euid, e) = project_entity(project)?;
            entities.push(e);
            euid
        }
        Resource::Output {
            project,
            id,
            author,
        } => {
            let (project_uid, e) = project_entity(project)?;
            entities.push(e);
            let output = uid("Output", id)?;
            entities.push(entity(
                output.clone(),
                [
                    ("project", RestrictedExpression::new_entity_uid(project_uid)),
                    (
                        "author",
                        RestrictedExpression::new_entity_uid(uid("User", author)?),
                    ),
                ],
                Vec::new(),
                Vec::new(),
            )?);
            output
        }
        Resource::Account(id) => {
            let account = uid("Account", id)?;
            entities.push(entity(
                account.clone(),
                [("id", RestrictedExpression::new_string((*id).to_owned()))],
                Vec::new(),
                Vec::new(),
            )?);
            account
        }
    };

    let schema = Some(&loaded.schema);
    // Validating entities against the schema catches any drift between this encoding and it.
    let entities =
        Entities::from_entities(entities, schema).map_err(|e| format!("building entities: {e}"))?;
    let context = Context::from_pairs([("now".to_owned(), datetime(now, Round::Down))])
        .map_err(|e| format!("building context: {e}"))?;
    let request = Request::new(
        user,
        uid("Action", action.as_str())?,
        target,
        context,
        schema,
    )
    .map_err(|e| format!("{} on this resource: {e}", action.as_str()))?;
    Ok((request, entities))
}

fn project_entity(project: &ProjectFacts) -> Result<(EntityUid, Entity)> {
    let euid = uid("Project", &project.id)?;
    let mut seen = BTreeSet::new();
    let mut tags = Vec::with_capacity(project.members.len());
    for m in &project.members {
        if !seen.insert(m.user.as_str()) {
            return Err(format!(
                "project {:?} lists member {:?} more than once",
                project.id, m.user
            ));
        }
        let value = RestrictedExpression::new_record([
            (
                "role".to_owned(),
                RestrictedExpression::new_entity_uid(uid("ProjectRole", m.role.as_str())?),
            ),
            ("expires".to_owned(), datetime(m.expires, Round::Down)),
        ])
        .map_err(|e| format!("membership of {:?}: {e}", m.user))?;
        tags.push((m.user.clone(), value));
    }
    let e = entity(
        euid.clone(),
        [
            (
                "project",
                RestrictedExpression::new_entity_uid(euid.clone()),
            ),
            // Rounded up so that "starts <= now" at millisecond precision never admits early.
            ("starts", datetime(project.starts, Round::Up)),
            ("expires", datetime(project.expires, Round::Down)),
        ],
        Vec::new(),
        tags,
    )?;
    Ok((euid, e))
}

fn entity<const N: usize>(
    euid: EntityUid,
    attrs: [(&str, RestrictedExpression); N],
    parents: Vec<EntityUid>,
    tags: Vec<(String, RestrictedExpression)>,
) -> Result<Entity> {
    let name = euid.to_string();
    Entity::new_with_tags(
        euid,
        attrs.into_iter().map(|(k, v)| (k.to_owned(), v)),
        parents,
        tags,
    )
    .map_err(|e| format!("entity {name}: {e}"))
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid> {
    let ty: EntityTypeName = type_name
        .parse()
        .map_err(|e| format!("entity type {type_name}: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// Cedar datetimes have millisecond precision and years 0000..=9999. Times are rounded towards
/// denial (see callers) and later times clamp to the last representable millisecond, which is
/// also fail-closed: a clamped `now` is never before any `expires`.
fn datetime(t: DateTime<Utc>, round: Round) -> RestrictedExpression {
    let max = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let millis = t.timestamp_millis();
    let mut ms = DateTime::from_timestamp_millis(millis).unwrap_or(t);
    if matches!(round, Round::Up) && ms < t {
        ms = ms
            .checked_add_signed(TimeDelta::milliseconds(1))
            .unwrap_or(ms);
    }
    let ms = ms.min(max);
    // Years before 0000 format as "-0001-..", which Cedar rejects: an error, hence a denial.
    RestrictedExpression::new_datetime(ms.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}
