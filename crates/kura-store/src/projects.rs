//! Projects (approved research plans: a snapshot, the granted tables and columns, a start and
//! an expiry) and their members (a project role and a per-member expiry).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{parse_ts, ts, valid_id, Store, StoreError};
use kura_sql::{args, Row};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub title: String,
    pub description: String,
    /// Snapshot name: `<state>/snapshots/<snapshot>.duckdb`.
    pub snapshot: String,
    /// Granted table -> granted columns (`["*"]` = every column).
    pub tables: BTreeMap<String, Vec<String>>,
    pub starts: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub role: String,
    pub expires: DateTime<Utc>,
}

impl Project {
    /// Checks what a steward typed before anything is stored.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |what, why: String| Err(StoreError::Invalid { what, why });
        if !valid_id(&self.id) {
            return invalid(
                "project id",
                format!(
                    "{:?}: use 1-64 lower-case letters, digits, '-', '_' or '.'",
                    self.id
                ),
            );
        }
        if self.title.trim().is_empty() || self.title.len() > 200 {
            return invalid("project title", "give 1-200 characters".into());
        }
        if self.description.len() > 10_000 {
            return invalid("project description", "at most 10,000 characters".into());
        }
        if !valid_id(&self.snapshot) {
            return invalid(
                "snapshot",
                format!("{:?} is not a snapshot name", self.snapshot),
            );
        }
        if self.expires <= self.starts {
            return invalid("project dates", "expires must be after starts".into());
        }
        if self.tables.is_empty() {
            return invalid("tables", "grant at least one table".into());
        }
        for (table, columns) in &self.tables {
            if !is_identifier(table) {
                return invalid("tables", format!("{table:?} is not a table name"));
            }
            if columns.is_empty() {
                return invalid("tables", format!("table {table:?} grants no column"));
            }
            if let Some(c) = columns.iter().find(|c| *c != "*" && !is_identifier(c)) {
                return invalid("tables", format!("{c:?} in {table:?} is not a column name"));
            }
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const COLUMNS: &str =
    "id, title, description, snapshot, tables, starts, expires, created_by, created_at";

fn project(row: &Row) -> Result<Project, StoreError> {
    Ok(Project {
        id: row.text(0)?,
        title: row.text(1)?,
        description: row.text(2)?,
        snapshot: row.text(3)?,
        tables: serde_json::from_str(&row.text(4)?).map_err(|e| StoreError::Corrupt {
            what: "project tables",
            why: e.to_string(),
        })?,
        starts: parse_ts("project", &row.text(5)?)?,
        expires: parse_ts("project", &row.text(6)?)?,
        created_by: row.text(7)?,
        created_at: parse_ts("project", &row.text(8)?)?,
    })
}

impl Store {
    /// Creates a project; `Conflict` when the id is taken (also when two nodes race).
    pub fn create_project(&self, p: &Project) -> Result<(), StoreError> {
        p.validate()?;
        let tables = serde_json::to_string(&p.tables).map_err(|e| StoreError::Invalid {
            what: "tables",
            why: e.to_string(),
        })?;
        let (starts, expires, created_at) = (ts(p.starts), ts(p.expires), ts(p.created_at));
        let n = self.run(|c| {
            Ok(c.execute(
                &format!(
                    "INSERT INTO ctl_projects ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO NOTHING"
                ),
                args![
                    &p.id,
                    &p.title,
                    &p.description,
                    &p.snapshot,
                    &tables,
                    &starts,
                    &expires,
                    &p.created_by,
                    &created_at
                ],
            )?)
        })?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: "project",
                id: p.id.clone(),
            });
        }
        Ok(())
    }

    pub fn project(&self, id: &str) -> Result<Option<Project>, StoreError> {
        self.run(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM ctl_projects WHERE id = ?1"),
                args![id],
            )?)
        })?
        .map(|r| project(&r))
        .transpose()
    }

    pub fn projects(&self) -> Result<Vec<Project>, StoreError> {
        self.run(|c| {
            Ok(c.query(
                &format!("SELECT {COLUMNS} FROM ctl_projects ORDER BY id"),
                &[],
            )?)
        })?
        .iter()
        .map(project)
        .collect()
    }

    /// Projects where `user` is a member (expired memberships included: the caller decides).
    pub fn projects_of(&self, user: &str) -> Result<Vec<Project>, StoreError> {
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("p.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.run(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {columns} FROM ctl_projects p JOIN ctl_members m ON m.project = p.id
                     WHERE m.\"user\" = ?1 ORDER BY p.id"
                ),
                args![user],
            )?)
        })?
        .iter()
        .map(project)
        .collect()
    }

    pub fn members(&self, project: &str) -> Result<Vec<Member>, StoreError> {
        self.run(|c| {
            Ok(c.query(
                "SELECT \"user\", role, expires FROM ctl_members WHERE project = ?1
                 ORDER BY \"user\"",
                args![project],
            )?)
        })?
        .iter()
        .map(|r| {
            Ok(Member {
                user: r.text(0)?,
                role: r.text(1)?,
                expires: parse_ts("member", &r.text(2)?)?,
            })
        })
        .collect()
    }

    /// Adds a member or changes their role and expiry.
    pub fn set_member(&self, project: &str, m: &Member) -> Result<(), StoreError> {
        if self.project(project)?.is_none() {
            return Err(StoreError::NotFound {
                what: "project",
                id: project.to_string(),
            });
        }
        if self.account(&m.user)?.is_none() {
            return Err(StoreError::NotFound {
                what: "account",
                id: m.user.clone(),
            });
        }
        let expires = ts(m.expires);
        self.run(|c| {
            Ok(c.execute(
                "INSERT INTO ctl_members (project, \"user\", role, expires) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project, \"user\") DO UPDATE SET role = excluded.role,
                 expires = excluded.expires",
                args![project, &m.user, &m.role, &expires],
            )?)
        })?;
        Ok(())
    }

    /// Removes a member; false when they were not one.
    pub fn remove_member(&self, project: &str, user: &str) -> Result<bool, StoreError> {
        let n = self.run(|c| {
            Ok(c.execute(
                "DELETE FROM ctl_members WHERE project = ?1 AND \"user\" = ?2",
                args![project, user],
            )?)
        })?;
        Ok(n > 0)
    }
}
