//! Query history (every query a member ran, with its outcome) and staged outputs (results a
//! researcher saved for the airlock).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{parse_ts, ts, Store, StoreError};
use kura_sql::{args, int, Row, Sql};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryStatus {
    Running,
    Completed,
    Refused,
    Failed,
    Cancelled,
}

impl QueryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryStatus::Running => "running",
            QueryStatus::Completed => "completed",
            QueryStatus::Refused => "refused",
            QueryStatus::Failed => "failed",
            QueryStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<QueryStatus, StoreError> {
        Ok(match s {
            "running" => QueryStatus::Running,
            "completed" => QueryStatus::Completed,
            "refused" => QueryStatus::Refused,
            "failed" => QueryStatus::Failed,
            "cancelled" => QueryStatus::Cancelled,
            other => {
                return Err(StoreError::Corrupt {
                    what: "query status",
                    why: other.to_string(),
                })
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryRecord {
    pub id: String,
    pub project: String,
    pub user: String,
    pub sql: String,
    pub status: QueryStatus,
    pub row_count: Option<u64>,
    pub duration_ms: Option<u64>,
    pub result_sha256: Option<String>,
    pub snapshot_sha256: String,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputRecord {
    pub id: String,
    pub project: String,
    pub query_id: String,
    pub author: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub row_count: u64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

const QUERY_COLUMNS: &str = "id, project, \"user\", sql, status, row_count, duration_ms, \
    result_sha256, snapshot_sha256, error, started_at";

fn query_record(r: &Row) -> Result<QueryRecord, StoreError> {
    Ok(QueryRecord {
        id: r.text(0)?,
        project: r.text(1)?,
        user: r.text(2)?,
        sql: r.text(3)?,
        status: QueryStatus::parse(&r.text(4)?)?,
        row_count: r.opt_count(5)?,
        duration_ms: r.opt_count(6)?,
        result_sha256: r.opt_text(7)?,
        snapshot_sha256: r.text(8)?,
        error: r.opt_text(9)?,
        started_at: parse_ts("query", &r.text(10)?)?,
    })
}

const OUTPUT_COLUMNS: &str =
    "id, project, query_id, author, title, description, status, row_count, sha256, created_at";

fn output_record(r: &Row) -> Result<OutputRecord, StoreError> {
    Ok(OutputRecord {
        id: r.text(0)?,
        project: r.text(1)?,
        query_id: r.text(2)?,
        author: r.text(3)?,
        title: r.text(4)?,
        description: r.text(5)?,
        status: r.text(6)?,
        row_count: r.count(7)?,
        sha256: r.text(8)?,
        created_at: parse_ts("output", &r.text(9)?)?,
    })
}

impl Store {
    /// Records a query as running; a second query with the same id is a conflict.
    pub fn insert_query(&self, q: &QueryRecord) -> Result<(), StoreError> {
        self.run(|c| insert_one(c, q))
    }

    /// Records several queries in one transaction (one commit): all of them, or none when one
    /// id is taken (a conflict naming it).
    pub fn insert_queries(&self, queries: &[QueryRecord]) -> Result<(), StoreError> {
        self.transaction(|c| queries.iter().try_for_each(|q| insert_one(c, q)))
    }

    /// Records how a running query ended. Only a running query can end, once: when two
    /// callers (two nodes) finish one query, the first outcome stays and the second gets
    /// `Conflict`; an unknown id is `NotFound`.
    pub fn finish_query(
        &self,
        id: &str,
        status: QueryStatus,
        row_count: Option<u64>,
        duration_ms: u64,
        result_sha256: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished = self.run(|c| {
            let n = c.execute(
                "UPDATE ctl_queries SET status = ?2, row_count = ?3, duration_ms = ?4,
                 result_sha256 = ?5, error = ?6 WHERE id = ?1 AND status = 'running'",
                args![
                    id,
                    status.as_str(),
                    row_count.map(int),
                    int(duration_ms),
                    result_sha256,
                    error
                ],
            )?;
            if n > 0 {
                return Ok(None);
            }
            let exists = c
                .query_opt("SELECT 1 FROM ctl_queries WHERE id = ?1", args![id])?
                .is_some();
            Ok(Some(exists))
        })?;
        match finished {
            None => Ok(()),
            Some(true) => Err(StoreError::Conflict {
                what: "outcome of query",
                id: id.to_string(),
            }),
            Some(false) => Err(StoreError::NotFound {
                what: "query",
                id: id.to_string(),
            }),
        }
    }

    /// A query of `project` (None when it does not exist or belongs to another project).
    pub fn query(&self, project: &str, id: &str) -> Result<Option<QueryRecord>, StoreError> {
        self.run(|c| {
            Ok(c.query_opt(
                &format!("SELECT {QUERY_COLUMNS} FROM ctl_queries WHERE id = ?1 AND project = ?2"),
                args![id, project],
            )?)
        })?
        .map(|r| query_record(&r))
        .transpose()
    }

    /// `user`'s queries in `project`, newest first.
    pub fn queries(
        &self,
        project: &str,
        user: &str,
        limit: u32,
    ) -> Result<Vec<QueryRecord>, StoreError> {
        self.run(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {QUERY_COLUMNS} FROM ctl_queries WHERE project = ?1 AND \"user\" = ?2
                     ORDER BY started_at DESC, id LIMIT ?3"
                ),
                args![project, user, i64::from(limit)],
            )?)
        })?
        .iter()
        .map(query_record)
        .collect()
    }

    /// Stages an output; a second output with the same id is a conflict.
    pub fn insert_output(&self, o: &OutputRecord) -> Result<(), StoreError> {
        let created_at = ts(o.created_at);
        let n = self.run(|c| {
            Ok(c.execute(
                &format!(
                    "INSERT INTO ctl_outputs ({OUTPUT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING"
                ),
                args![
                    &o.id,
                    &o.project,
                    &o.query_id,
                    &o.author,
                    &o.title,
                    &o.description,
                    &o.status,
                    int(o.row_count),
                    &o.sha256,
                    &created_at
                ],
            )?)
        })?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: "output",
                id: o.id.clone(),
            });
        }
        Ok(())
    }

    pub fn outputs(&self, project: &str) -> Result<Vec<OutputRecord>, StoreError> {
        self.run(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {OUTPUT_COLUMNS} FROM ctl_outputs WHERE project = ?1
                     ORDER BY created_at DESC, id"
                ),
                args![project],
            )?)
        })?
        .iter()
        .map(output_record)
        .collect()
    }
}

fn insert_one(c: &mut dyn Sql, q: &QueryRecord) -> Result<(), StoreError> {
    let n = c.execute(
        &format!(
            "INSERT INTO ctl_queries ({QUERY_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO NOTHING"
        ),
        args![
            &q.id,
            &q.project,
            &q.user,
            &q.sql,
            q.status.as_str(),
            q.row_count.map(int),
            q.duration_ms.map(int),
            &q.result_sha256,
            &q.snapshot_sha256,
            &q.error,
            &ts(q.started_at)
        ],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict {
            what: "query",
            id: q.id.clone(),
        });
    }
    Ok(())
}
