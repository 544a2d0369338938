//! Each written rule tried as an attack: the request a rule exists to stop is made, and the test
//! asserts it is denied by the policy named for that rule (and that the legitimate request next
//! to it is allowed, so the denial is not an accident of something else).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::TimeDelta;
use common::{authz, days, now, person, project};
use kura_authz::{Action, Decision, ProjectFacts, ProjectRole, Resource, Role};

fn output<'a>(p: &'a ProjectFacts, author: &'a str) -> Resource<'a> {
    Resource::Output {
        project: p,
        id: "out-7",
        author,
    }
}

/// The resource each action is checked on in these tests.
fn resource_for<'a>(action: Action, p: &'a ProjectFacts, author: &'a str) -> Resource<'a> {
    match action {
        Action::ViewAllProjects
        | Action::ReadAudit
        | Action::ViewAccounts
        | Action::CreateProject
        | Action::ManageAccounts => Resource::System,
        Action::ViewProject
        | Action::RunQuery
        | Action::StageOutput
        | Action::SubmitOutput
        | Action::ManageProject => Resource::Project(p),
        Action::ViewOutput | Action::DownloadRelease | Action::ReviewOutput => output(p, author),
    }
}

/// Actions whose object is a project or one of its outputs.
const PROJECT_ACTIONS: [Action; 8] = [
    Action::ViewProject,
    Action::ViewOutput,
    Action::DownloadRelease,
    Action::RunQuery,
    Action::StageOutput,
    Action::SubmitOutput,
    Action::ReviewOutput,
    Action::ManageProject,
];

fn denied_by(d: &Decision, policy: &str) {
    assert!(!d.allowed, "expected denial by {policy}, got {d:?}");
    assert!(d.errors.is_empty(), "denied by an error, not a rule: {d:?}");
    assert!(
        d.policies.iter().any(|p| p == policy),
        "expected {policy} among {:?}",
        d.policies
    );
}

fn allowed(d: &Decision) {
    assert!(d.allowed, "expected allow, got {d:?}");
    assert!(d.errors.is_empty());
    assert!(!d.policies.is_empty(), "an allow names its permit");
}

#[test]
fn author_holding_checker_cannot_review_own_output() {
    let a = authz();
    let p = project(&[("alice", ProjectRole::Researcher)]);
    // Every role but supervisor (which would be refused for another reason).
    let alice = person("alice", &[Role::Checker, Role::Researcher, Role::Steward]);
    let d = a.decide(&alice, Action::ReviewOutput, &output(&p, "alice"), now());
    denied_by(&d, "forbid-self-review");
    assert_eq!(d.policies, ["forbid-self-review"]);
    // She may still review someone else's output.
    allowed(&a.decide(&alice, Action::ReviewOutput, &output(&p, "bob"), now()));
}

#[test]
fn another_checker_may_review_and_view() {
    let a = authz();
    let p = project(&[("alice", ProjectRole::Researcher)]);
    let carol = person("carol", &[Role::Checker]);
    let d = a.decide(&carol, Action::ReviewOutput, &output(&p, "alice"), now());
    allowed(&d);
    assert_eq!(d.policies, ["permit-checker-outputs"]);
    allowed(&a.decide(&carol, Action::ViewOutput, &output(&p, "alice"), now()));
    // A checker gets nothing else in a project they are not a member of.
    for action in [
        Action::ViewProject,
        Action::RunQuery,
        Action::DownloadRelease,
    ] {
        let d = a.decide(&carol, action, &resource_for(action, &p, "alice"), now());
        assert!(!d.allowed, "checker {action}: {d:?}");
    }
}

#[test]
fn supervisor_who_is_also_steward_cannot_write() {
    let a = authz();
    let p = project(&[("sam", ProjectRole::Researcher)]);
    let sam = person("sam", &[Role::Supervisor, Role::Steward]);
    denied_by(
        &a.decide(&sam, Action::CreateProject, &Resource::System, now()),
        "forbid-supervisor-writes",
    );
    denied_by(
        &a.decide(&sam, Action::ManageProject, &Resource::Project(&p), now()),
        "forbid-supervisor-writes",
    );
    denied_by(
        &a.decide(
            &sam,
            Action::ManageAccounts,
            &Resource::Account("bob"),
            now(),
        ),
        "forbid-supervisor-writes",
    );
    // Current researcher member of the project, yet may not query.
    denied_by(
        &a.decide(&sam, Action::RunQuery, &Resource::Project(&p), now()),
        "forbid-supervisor-writes",
    );
}

#[test]
fn supervisor_with_every_role_reads_everything_and_writes_nothing() {
    let a = authz();
    let p = project(&[("sam", ProjectRole::Researcher)]);
    let sam = person("sam", &Role::ALL);
    for action in Action::ALL {
        let d = a.decide(&sam, action, &resource_for(action, &p, "alice"), now());
        if action.is_write() {
            denied_by(&d, "forbid-supervisor-writes");
        } else {
            allowed(&d);
        }
    }
}

#[test]
fn plain_supervisor_views() {
    let a = authz();
    let p = project(&[("alice", ProjectRole::Researcher)]);
    let sue = person("sue", &[Role::Supervisor]);
    for action in [
        Action::ViewProject,
        Action::ViewAllProjects,
        Action::ReadAudit,
        Action::ViewAccounts,
        Action::ViewOutput,
    ] {
        allowed(&a.decide(&sue, action, &resource_for(action, &p, "alice"), now()));
    }
    allowed(&a.decide(
        &sue,
        Action::ViewAccounts,
        &Resource::Account("alice"),
        now(),
    ));
    // Not a member: no release download.
    assert!(
        !a.decide(&sue, Action::DownloadRelease, &output(&p, "alice"), now())
            .allowed
    );
}

#[test]
fn expired_membership_gives_no_project_action() {
    let a = authz();
    for role in ProjectRole::ALL {
        let mut p = project(&[("alice", role)]);
        p.members[0].expires = now() - days(1);
        let alice = person("alice", &[Role::Researcher]);
        for action in PROJECT_ACTIONS {
            let d = a.decide(&alice, action, &resource_for(action, &p, "alice"), now());
            assert!(!d.allowed, "expired {role} {action}: {d:?}");
            assert!(d.errors.is_empty(), "{d:?}");
        }
        // The work actions are refused by the named prohibition, not just by default.
        denied_by(
            &a.decide(&alice, Action::DownloadRelease, &output(&p, "bob"), now()),
            "forbid-expired-membership",
        );
    }
}

#[test]
fn membership_ends_exactly_at_expires() {
    let a = authz();
    let alice = person("alice", &[Role::Researcher]);
    let mut p = project(&[("alice", ProjectRole::Researcher)]);
    p.members[0].expires = now();
    denied_by(
        &a.decide(&alice, Action::RunQuery, &Resource::Project(&p), now()),
        "forbid-expired-membership",
    );
    // Sub-millisecond remainders round towards denial.
    p.members[0].expires = now() + TimeDelta::nanoseconds(1);
    assert!(
        !a.decide(&alice, Action::RunQuery, &Resource::Project(&p), now())
            .allowed
    );
    p.members[0].expires = now() + TimeDelta::milliseconds(1);
    allowed(&a.decide(&alice, Action::RunQuery, &Resource::Project(&p), now()));
}

#[test]
fn project_outside_its_window_gives_members_nothing() {
    let a = authz();
    let alice = person("alice", &[Role::Researcher]);
    let live = project(&[("alice", ProjectRole::Researcher)]);
    let mut before = live.clone();
    before.starts = now() + days(1);
    let mut ended = live.clone();
    ended.expires = now() - days(1);
    let mut ends_now = live.clone();
    ends_now.expires = now();
    let mut starts_in_a_nanosecond = live.clone();
    starts_in_a_nanosecond.starts = now() + TimeDelta::nanoseconds(1);
    for p in [&before, &ended, &ends_now, &starts_in_a_nanosecond] {
        for action in PROJECT_ACTIONS {
            let d = a.decide(&alice, action, &resource_for(action, p, "alice"), now());
            assert!(!d.allowed, "{action} on {p:?}: {d:?}");
        }
        denied_by(
            &a.decide(&alice, Action::RunQuery, &Resource::Project(p), now()),
            "forbid-outside-project-window",
        );
    }
    // The window includes its start.
    let mut starts_now = live.clone();
    starts_now.starts = now();
    allowed(&a.decide(
        &alice,
        Action::RunQuery,
        &Resource::Project(&starts_now),
        now(),
    ));
}

#[test]
fn oversight_continues_outside_the_window() {
    let a = authz();
    let mut ended = project(&[("alice", ProjectRole::Researcher)]);
    ended.expires = now() - days(1);
    let steward = person("stella", &[Role::Steward]);
    let sue = person("sue", &[Role::Supervisor]);
    allowed(&a.decide(
        &steward,
        Action::ManageProject,
        &Resource::Project(&ended),
        now(),
    ));
    allowed(&a.decide(&sue, Action::ViewProject, &Resource::Project(&ended), now()));
    allowed(&a.decide(&sue, Action::ViewOutput, &output(&ended, "alice"), now()));
}

#[test]
fn observer_views_but_cannot_query_stage_or_submit() {
    let a = authz();
    let p = project(&[("olga", ProjectRole::Observer)]);
    let olga = person("olga", &[Role::Researcher]);
    for action in [Action::RunQuery, Action::StageOutput, Action::SubmitOutput] {
        denied_by(
            &a.decide(&olga, action, &Resource::Project(&p), now()),
            "forbid-observer-work",
        );
    }
    denied_by(
        &a.decide(&olga, Action::SubmitOutput, &output(&p, "olga"), now()),
        "forbid-observer-work",
    );
    allowed(&a.decide(&olga, Action::ViewProject, &Resource::Project(&p), now()));
    allowed(&a.decide(&olga, Action::ViewOutput, &output(&p, "alice"), now()));
}

#[test]
fn non_member_researcher_gets_nothing_in_the_project() {
    let a = authz();
    let p = project(&[("alice", ProjectRole::Researcher)]);
    let mallory = person("mallory", &[Role::Researcher]);
    for action in PROJECT_ACTIONS {
        let d = a.decide(&mallory, action, &resource_for(action, &p, "alice"), now());
        assert!(!d.allowed, "{action}: {d:?}");
    }
    denied_by(
        &a.decide(&mallory, Action::RunQuery, &Resource::Project(&p), now()),
        "forbid-non-member-work",
    );
    // A stored membership for someone else cannot be borrowed by matching a prefix or case.
    for id in ["Alice", "alice ", "alic", ""] {
        let d = a.decide(
            &person(id, &[Role::Researcher]),
            Action::RunQuery,
            &Resource::Project(&p),
            now(),
        );
        assert!(!d.allowed, "{id:?}: {d:?}");
    }
}

#[test]
fn disabled_steward_gets_nothing() {
    let a = authz();
    let p = project(&[("stella", ProjectRole::Researcher)]);
    let mut stella = person("stella", &[Role::Steward, Role::Checker]);
    stella.active = false;
    for action in Action::ALL {
        denied_by(
            &a.decide(&stella, action, &resource_for(action, &p, "alice"), now()),
            "forbid-inactive-account",
        );
    }
}

#[test]
fn steward_creates_and_manages_projects_and_accounts() {
    let a = authz();
    let p = project(&[]);
    let stella = person("stella", &[Role::Steward]);
    let d = a.decide(&stella, Action::CreateProject, &Resource::System, now());
    allowed(&d);
    assert_eq!(d.policies, ["permit-steward-create-project"]);
    allowed(&a.decide(
        &stella,
        Action::ManageProject,
        &Resource::Project(&p),
        now(),
    ));
    allowed(&a.decide(
        &stella,
        Action::ManageAccounts,
        &Resource::Account("bob"),
        now(),
    ));
    // Stewards are not output checkers and do no project work without membership.
    for action in [
        Action::ReviewOutput,
        Action::RunQuery,
        Action::DownloadRelease,
    ] {
        assert!(
            !a.decide(&stella, action, &resource_for(action, &p, "bob"), now())
                .allowed
        );
    }
}

#[test]
fn steward_cannot_administer_own_account() {
    let a = authz();
    let stella = person("stella", &[Role::Steward]);
    denied_by(
        &a.decide(
            &stella,
            Action::ManageAccounts,
            &Resource::Account("stella"),
            now(),
        ),
        "forbid-self-account-management",
    );
}

#[test]
fn researcher_cannot_create_or_manage() {
    let a = authz();
    let p = project(&[("alice", ProjectRole::Researcher)]);
    let alice = person("alice", &[Role::Researcher, Role::Checker]);
    for action in [
        Action::CreateProject,
        Action::ManageProject,
        Action::ManageAccounts,
        Action::ViewAllProjects,
        Action::ReadAudit,
        Action::ViewAccounts,
    ] {
        let d = a.decide(&alice, action, &resource_for(action, &p, "alice"), now());
        assert!(!d.allowed, "{action}: {d:?}");
    }
}
