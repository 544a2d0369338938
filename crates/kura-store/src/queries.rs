//! Query history (every query a member ran, with its outcome) and staged outputs (results a
//! researcher saved for the airlock).

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::{parse_ts, ts, Store, StoreError};

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

const QUERY_COLUMNS: &str = "id, project, user, sql, status, row_count, duration_ms, \
    result_sha256, snapshot_sha256, error, started_at";

fn query_row(r: &Row<'_>) -> rusqlite::Result<(QueryRecord, String, String)> {
    Ok((
        QueryRecord {
            id: r.get(0)?,
            project: r.get(1)?,
            user: r.get(2)?,
            sql: r.get(3)?,
            status: QueryStatus::Running,
            row_count: r.get::<_, Option<i64>>(5)?.map(|n| n.max(0) as u64),
            duration_ms: r.get::<_, Option<i64>>(6)?.map(|n| n.max(0) as u64),
            result_sha256: r.get(7)?,
            snapshot_sha256: r.get(8)?,
            error: r.get(9)?,
            started_at: DateTime::<Utc>::MIN_UTC,
        },
        r.get(4)?,
        r.get(10)?,
    ))
}

fn finish_query(
    (mut q, status, started): (QueryRecord, String, String),
) -> Result<QueryRecord, StoreError> {
    q.status = QueryStatus::parse(&status)?;
    q.started_at = parse_ts("query", &started)?;
    Ok(q)
}

const OUTPUT_COLUMNS: &str =
    "id, project, query_id, author, title, description, status, row_count, sha256, created_at";

fn output_row(r: &Row<'_>) -> rusqlite::Result<(OutputRecord, String)> {
    Ok((
        OutputRecord {
            id: r.get(0)?,
            project: r.get(1)?,
            query_id: r.get(2)?,
            author: r.get(3)?,
            title: r.get(4)?,
            description: r.get(5)?,
            status: r.get(6)?,
            row_count: r.get::<_, i64>(7)?.max(0) as u64,
            sha256: r.get(8)?,
            created_at: DateTime::<Utc>::MIN_UTC,
        },
        r.get(9)?,
    ))
}

fn finish_output((mut o, created): (OutputRecord, String)) -> Result<OutputRecord, StoreError> {
    o.created_at = parse_ts("output", &created)?;
    Ok(o)
}

impl Store {
    /// Records a query as running; a second query with the same id is a conflict.
    pub fn insert_query(&self, q: &QueryRecord) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute(
                &format!(
                    "INSERT INTO ctl_queries ({QUERY_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(id) DO NOTHING"
                ),
                params![
                    q.id,
                    q.project,
                    q.user,
                    q.sql,
                    q.status.as_str(),
                    q.row_count.map(|n| n as i64),
                    q.duration_ms.map(|n| n as i64),
                    q.result_sha256,
                    q.snapshot_sha256,
                    q.error,
                    ts(q.started_at)
                ],
            )
            .map_err(|e| self.db(e))?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: "query",
                id: q.id.clone(),
            });
        }
        Ok(())
    }

    /// Records how a running query ended.
    pub fn finish_query(
        &self,
        id: &str,
        status: QueryStatus,
        row_count: Option<u64>,
        duration_ms: u64,
        result_sha256: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE ctl_queries SET status = ?2, row_count = ?3, duration_ms = ?4,
                 result_sha256 = ?5, error = ?6 WHERE id = ?1",
                params![
                    id,
                    status.as_str(),
                    row_count.map(|n| n as i64),
                    duration_ms as i64,
                    result_sha256,
                    error
                ],
            )
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// A query of `project` (None when it does not exist or belongs to another project).
    pub fn query(&self, project: &str, id: &str) -> Result<Option<QueryRecord>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {QUERY_COLUMNS} FROM ctl_queries WHERE id = ?1 AND project = ?2"),
                params![id, project],
                query_row,
            )
            .optional()
            .map_err(|e| self.db(e))?;
        row.map(finish_query).transpose()
    }

    /// `user`'s queries in `project`, newest first.
    pub fn queries(
        &self,
        project: &str,
        user: &str,
        limit: u32,
    ) -> Result<Vec<QueryRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {QUERY_COLUMNS} FROM ctl_queries WHERE project = ?1 AND user = ?2
                 ORDER BY started_at DESC, id LIMIT ?3"
            ))
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map(params![project, user, limit], query_row)
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        rows.into_iter().map(finish_query).collect()
    }

    pub fn insert_output(&self, o: &OutputRecord) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute(
                &format!(
                    "INSERT INTO ctl_outputs ({OUTPUT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(id) DO NOTHING"
                ),
                params![
                    o.id,
                    o.project,
                    o.query_id,
                    o.author,
                    o.title,
                    o.description,
                    o.status,
                    o.row_count as i64,
                    o.sha256,
                    ts(o.created_at)
                ],
            )
            .map_err(|e| self.db(e))?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: "output",
                id: o.id.clone(),
            });
        }
        Ok(())
    }

    pub fn outputs(&self, project: &str) -> Result<Vec<OutputRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {OUTPUT_COLUMNS} FROM ctl_outputs WHERE project = ?1
                 ORDER BY created_at DESC, id"
            ))
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([project], output_row)
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        rows.into_iter().map(finish_output).collect()
    }
}
