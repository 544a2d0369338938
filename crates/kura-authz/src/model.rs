//! The facts the server hands to the authorizer: who asks ([`Principal`]), what for ([`Action`]),
//! on what ([`Resource`]), and the answer ([`Decision`]). Plain data; no Cedar types leak out.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::AuthzError;

/// A global role, held across all projects. The Cedar schema lists the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Researcher,
    /// Output checker.
    Checker,
    Supervisor,
    /// Data steward.
    Steward,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Researcher,
        Role::Checker,
        Role::Supervisor,
        Role::Steward,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Researcher => "researcher",
            Role::Checker => "checker",
            Role::Supervisor => "supervisor",
            Role::Steward => "steward",
        }
    }
}

impl FromStr for Role {
    type Err = AuthzError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| AuthzError::UnknownName {
                kind: "role",
                name: s.to_owned(),
                expected: "researcher, checker, supervisor, steward",
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member's role inside one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    /// Queries, stages and submits outputs.
    Researcher,
    /// Views only.
    Observer,
}

impl ProjectRole {
    pub const ALL: [ProjectRole; 2] = [ProjectRole::Researcher, ProjectRole::Observer];

    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Researcher => "researcher",
            ProjectRole::Observer => "observer",
        }
    }
}

impl FromStr for ProjectRole {
    type Err = AuthzError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProjectRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| AuthzError::UnknownName {
                kind: "project role",
                name: s.to_owned(),
                expected: "researcher, observer",
            })
    }
}

impl fmt::Display for ProjectRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything Kura asks permission for. `as_str` is the Cedar action id (`Action::"run_query"`)
/// and the name written to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// See a project, its catalog, one's own query history and its outputs list.
    ViewProject,
    /// List every project.
    ViewAllProjects,
    /// Read the audit log.
    ReadAudit,
    /// List and view accounts.
    ViewAccounts,
    /// See an output (its tables and checker report).
    ViewOutput,
    /// Download a released output.
    DownloadRelease,
    /// Run or cancel a query.
    RunQuery,
    /// Stage an output from a query result.
    StageOutput,
    /// Submit a staged output for review.
    SubmitOutput,
    /// Approve or reject an output.
    ReviewOutput,
    CreateProject,
    /// Change a project: dates, members, grants.
    ManageProject,
    /// Change accounts: roles, disabling.
    ManageAccounts,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::ViewProject,
        Action::ViewAllProjects,
        Action::ReadAudit,
        Action::ViewAccounts,
        Action::ViewOutput,
        Action::DownloadRelease,
        Action::RunQuery,
        Action::StageOutput,
        Action::SubmitOutput,
        Action::ReviewOutput,
        Action::CreateProject,
        Action::ManageProject,
        Action::ManageAccounts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ViewProject => "view_project",
            Action::ViewAllProjects => "view_all_projects",
            Action::ReadAudit => "read_audit",
            Action::ViewAccounts => "view_accounts",
            Action::ViewOutput => "view_output",
            Action::DownloadRelease => "download_release",
            Action::RunQuery => "run_query",
            Action::StageOutput => "stage_output",
            Action::SubmitOutput => "submit_output",
            Action::ReviewOutput => "review_output",
            Action::CreateProject => "create_project",
            Action::ManageProject => "manage_project",
            Action::ManageAccounts => "manage_accounts",
        }
    }

    /// True for actions that change something. Must agree with the schema's `write` group
    /// (checked when policies are loaded).
    pub fn is_write(self) -> bool {
        match self {
            Action::ViewProject
            | Action::ViewAllProjects
            | Action::ReadAudit
            | Action::ViewAccounts
            | Action::ViewOutput
            | Action::DownloadRelease => false,
            Action::RunQuery
            | Action::StageOutput
            | Action::SubmitOutput
            | Action::ReviewOutput
            | Action::CreateProject
            | Action::ManageProject
            | Action::ManageAccounts => true,
        }
    }
}

impl FromStr for Action {
    type Err = AuthzError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| AuthzError::UnknownName {
                kind: "action",
                name: s.to_owned(),
                expected: "an action id such as view_project or run_query",
            })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed-in person asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    pub roles: BTreeSet<Role>,
    /// False for a disabled account: it is refused everything.
    pub active: bool,
}

/// One member of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub user: String,
    pub role: ProjectRole,
    /// The membership counts while `now < expires`.
    pub expires: DateTime<Utc>,
}

/// What the authorizer needs to know about a project. Each user appears at most once in
/// `members` (a repeated user makes every decision on the project a denial with an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectFacts {
    pub id: String,
    /// The project is live while `starts <= now < expires`.
    pub starts: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub members: Vec<Membership>,
}

/// The object of an action. Which actions apply to which resource kind is fixed by the schema;
/// a mismatch (e.g. `RunQuery` on `System`) is denied with an error.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// Kura as a whole: `CreateProject`, `ViewAllProjects`, `ReadAudit`, `ViewAccounts`,
    /// `ManageAccounts`.
    System,
    /// `ViewProject`, `RunQuery`, `StageOutput`, `SubmitOutput`, `ManageProject`.
    Project(&'a ProjectFacts),
    /// `ViewOutput`, `DownloadRelease`, `SubmitOutput`, `ReviewOutput`.
    Output {
        project: &'a ProjectFacts,
        id: &'a str,
        /// User id of the researcher who staged the output.
        author: &'a str,
    },
    /// One account (by user id): `ViewAccounts`, `ManageAccounts`.
    Account(&'a str),
}

/// The answer. `allowed` is true only when a permit matched, no forbid matched and evaluation
/// raised no error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// Ids (`@id`) of the policies that decided, sorted: the permits that allowed, or the
    /// forbids that denied. Empty when nothing matched (default deny) or evaluation failed.
    pub policies: Vec<String>,
    /// Errors met while building the request or evaluating policies; any error means denial.
    pub errors: Vec<String>,
}

impl Decision {
    pub(crate) fn error(message: String) -> Decision {
        Decision {
            allowed: false,
            policies: Vec::new(),
            errors: vec![message],
        }
    }
}
