//! Every combination of global roles (all 16 sets), account state, membership state, project
//! window, action and resource, checked against an independent restatement of the written rules
//! (docs/authz.md) in plain Rust. The restatement is written from the rules, not from the
//! policies, so a policy that drifts from the rules fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{authz, days, now};
use kura_authz::{Action, Membership, Principal, ProjectFacts, ProjectRole, Resource, Role};

#[derive(Debug, Clone, Copy)]
enum Member {
    None,
    Current(ProjectRole),
    Expired(ProjectRole),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Window {
    Live,
    NotStarted,
    Ended,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    System,
    Project,
    /// An output; true when the principal is its author.
    Output(bool),
    /// An account; true when it is the principal's own.
    Account(bool),
}

/// The rules as written in the brief and docs/authz.md.
fn expected(
    roles: &BTreeSet<Role>,
    active: bool,
    member: Member,
    window: Window,
    action: Action,
    target: Target,
) -> bool {
    let has = |r| roles.contains(&r);
    // Rule 4: disabled accounts get nothing.
    if !active {
        return false;
    }
    // Rule 2: supervisors never write.
    if has(Role::Supervisor) && action.is_write() {
        return false;
    }
    // Rule 3: membership counts only while current and while the project is live.
    let current = match (member, window) {
        (Member::Current(role), Window::Live) => Some(role),
        _ => None,
    };
    let oversight = has(Role::Steward) || has(Role::Supervisor);
    // Rule 5 (and the role table): who may do what.
    match action {
        Action::ViewProject => current.is_some() || oversight,
        Action::ViewAllProjects | Action::ReadAudit | Action::ViewAccounts => oversight,
        Action::ViewOutput => current.is_some() || has(Role::Checker) || has(Role::Supervisor),
        Action::DownloadRelease => current.is_some(),
        Action::RunQuery | Action::StageOutput | Action::SubmitOutput => {
            current == Some(ProjectRole::Researcher)
        }
        // Rule 1: never one's own output.
        Action::ReviewOutput => has(Role::Checker) && !matches!(target, Target::Output(true)),
        Action::CreateProject | Action::ManageProject => has(Role::Steward),
        Action::ManageAccounts => has(Role::Steward) && !matches!(target, Target::Account(true)),
    }
}

fn targets(action: Action) -> Vec<Target> {
    match action {
        Action::ViewAllProjects | Action::ReadAudit | Action::CreateProject => vec![Target::System],
        Action::ViewAccounts | Action::ManageAccounts => {
            vec![
                Target::System,
                Target::Account(false),
                Target::Account(true),
            ]
        }
        Action::ViewProject | Action::RunQuery | Action::StageOutput | Action::ManageProject => {
            vec![Target::Project]
        }
        Action::SubmitOutput => vec![Target::Project, Target::Output(true), Target::Output(false)],
        Action::ViewOutput | Action::DownloadRelease | Action::ReviewOutput => {
            vec![Target::Output(true), Target::Output(false)]
        }
    }
}

fn facts(member: Member, window: Window) -> ProjectFacts {
    let (starts, expires) = match window {
        Window::Live => (now() - days(10), now() + days(10)),
        Window::NotStarted => (now() + days(1), now() + days(10)),
        Window::Ended => (now() - days(10), now() - days(1)),
    };
    // Another member is always present, so "not a member" is not "empty project".
    let mut members = vec![Membership {
        user: "other".into(),
        role: ProjectRole::Researcher,
        expires: now() + days(5),
    }];
    let mine = match member {
        Member::None => None,
        Member::Current(role) => Some((role, now() + days(5))),
        Member::Expired(role) => Some((role, now() - days(5))),
    };
    if let Some((role, expires)) = mine {
        members.push(Membership {
            user: "me".into(),
            role,
            expires,
        });
    }
    ProjectFacts {
        id: "p".into(),
        starts,
        expires,
        members,
    }
}

#[test]
fn every_combination_matches_the_written_rules() {
    let a = authz();
    let members = [
        Member::None,
        Member::Current(ProjectRole::Researcher),
        Member::Current(ProjectRole::Observer),
        Member::Expired(ProjectRole::Researcher),
        Member::Expired(ProjectRole::Observer),
    ];
    let windows = [Window::Live, Window::NotStarted, Window::Ended];
    let (mut checked, mut allowed) = (0, 0);
    let mut failures = Vec::new();
    for mask in 0u8..16 {
        let roles: BTreeSet<Role> = Role::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, r)| r)
            .collect();
        for active in [true, false] {
            let me = Principal {
                id: "me".into(),
                roles: roles.clone(),
                active,
            };
            for member in members {
                for window in windows {
                    let p = facts(member, window);
                    for action in Action::ALL {
                        for target in targets(action) {
                            let resource = match target {
                                Target::System => Resource::System,
                                Target::Project => Resource::Project(&p),
                                Target::Output(mine) => Resource::Output {
                                    project: &p,
                                    id: "o",
                                    author: if mine { "me" } else { "other" },
                                },
                                Target::Account(mine) => {
                                    Resource::Account(if mine { "me" } else { "other" })
                                }
                            };
                            let d = a.decide(&me, action, &resource, now());
                            assert!(d.errors.is_empty(), "{d:?}");
                            let want = expected(&roles, active, member, window, action, target);
                            checked += 1;
                            allowed += usize::from(d.allowed);
                            if d.allowed != want {
                                failures.push(format!(
                                    "{roles:?} active={active} {member:?} {window:?} {action} {target:?}: \
                                     want {want}, got {d:?}"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    // Not vacuous: a substantial share of both outcomes.
    assert!(checked > 10_000, "{checked}");
    assert!(
        allowed > 1_000 && allowed < checked / 2,
        "{allowed} of {checked}"
    );
}
