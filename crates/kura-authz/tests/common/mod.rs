//! Builders shared by the authorization tests: people, projects and a fixed clock.
#![allow(dead_code)]

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use kura_authz::{Authorizer, Membership, Principal, ProjectFacts, ProjectRole, Role};

/// The fixed "now" of every test.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

pub fn authz() -> Authorizer {
    Authorizer::builtin().unwrap()
}

pub fn person(id: &str, roles: &[Role]) -> Principal {
    Principal {
        id: id.to_owned(),
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        active: true,
    }
}

/// A live project (started 30 days ago, ends in 300) with the given members, each current for
/// another 100 days.
pub fn project(members: &[(&str, ProjectRole)]) -> ProjectFacts {
    ProjectFacts {
        id: "p-2026-001".to_owned(),
        starts: now() - days(30),
        expires: now() + days(300),
        members: members
            .iter()
            .map(|(user, role)| Membership {
                user: (*user).to_owned(),
                role: *role,
                expires: now() + days(100),
            })
            .collect(),
    }
}
