//! Errors never turn into "allow": a request that does not fit the schema, inconsistent facts,
//! times Cedar cannot represent, and a forbid that fails to evaluate all deny, with the error
//! reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::{authz, now, person, project};
use kura_authz::{Action, Authorizer, Membership, ProjectRole, Resource, Role};

#[test]
fn action_on_the_wrong_kind_of_resource_is_denied_with_an_error() {
    let a = authz();
    let p = project(&[("alice", ProjectRole::Researcher)]);
    let stella = person("stella", &[Role::Steward]);
    // Allowed on System, but not on a project.
    let d = a.decide(
        &stella,
        Action::CreateProject,
        &Resource::Project(&p),
        now(),
    );
    assert!(!d.allowed);
    assert!(d.errors[0].contains("create_project"), "{d:?}");
    let alice = person("alice", &[Role::Researcher]);
    let d = a.decide(&alice, Action::RunQuery, &Resource::System, now());
    assert!(!d.allowed && !d.errors.is_empty(), "{d:?}");
}

#[test]
fn a_member_listed_twice_denies_with_an_error() {
    let a = authz();
    let mut p = project(&[("alice", ProjectRole::Observer)]);
    p.members.push(Membership {
        user: "alice".into(),
        role: ProjectRole::Researcher,
        expires: now() + common::days(1),
    });
    let d = a.decide(
        &person("alice", &[Role::Researcher]),
        Action::RunQuery,
        &Resource::Project(&p),
        now(),
    );
    assert!(!d.allowed);
    assert!(d.errors[0].contains("more than once"), "{d:?}");
}

#[test]
fn far_future_dates_clamp_and_stay_fail_closed() {
    let a = authz();
    let alice = person("alice", &[Role::Researcher]);
    let mut p = project(&[("alice", ProjectRole::Researcher)]);
    // "Never expires" stored as the largest time chrono has: still works.
    p.expires = DateTime::<Utc>::MAX_UTC;
    p.members[0].expires = DateTime::<Utc>::MAX_UTC;
    let d = a.decide(&alice, Action::RunQuery, &Resource::Project(&p), now());
    assert!(d.allowed, "{d:?}");
    // A clock at the end of time is never before any expiry.
    let d = a.decide(
        &alice,
        Action::RunQuery,
        &Resource::Project(&p),
        DateTime::<Utc>::MAX_UTC,
    );
    assert!(!d.allowed, "{d:?}");
    // A year Cedar cannot represent is an error, hence a denial.
    p.members[0].expires = DateTime::<Utc>::MIN_UTC;
    p.starts = DateTime::<Utc>::MIN_UTC;
    let d = a.decide(&alice, Action::ViewProject, &Resource::Project(&p), now());
    assert!(!d.allowed && !d.errors.is_empty(), "{d:?}");
}

#[test]
fn a_forbid_that_fails_to_evaluate_still_denies() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/authz");
    let builtin = Authorizer::from_dir(&dir).unwrap();
    let mut files: Vec<(String, String)> = builtin
        .policies()
        .into_iter()
        .map(|(id, _, text)| (format!("{id}.cedar"), text))
        .collect();
    // Validates (types are right) but overflows at run time: Cedar skips an erroring policy,
    // which for a forbid would mean "not forbidden".
    files.push((
        "overflow.cedar".into(),
        r#"@id("forbid-overflowing")
forbid (principal, action, resource)
when { context.now.toTime().toMilliseconds() + 9223372036854775807 > 0 };"#
            .into(),
    ));
    let a = Authorizer::from_sources(builtin.schema_text(), &files).unwrap();
    let stella = person("stella", &[Role::Steward]);
    let d = a.decide(&stella, Action::CreateProject, &Resource::System, now());
    assert!(!d.allowed, "{d:?}");
    assert!(
        d.errors.iter().any(|e| e.contains("forbid-overflowing")),
        "{d:?}"
    );
    // Without the faulty policy the same request is allowed: the error is what denied it.
    files.pop();
    let a = Authorizer::from_sources(builtin.schema_text(), &files).unwrap();
    assert!(
        a.decide(&stella, Action::CreateProject, &Resource::System, now())
            .allowed
    );
}
