//! A project's grant: which tables and columns of which snapshot its members may query, until
//! when. The server keeps scopes in its database; the CLI loads them from TOML files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The granted part of one snapshot for one project.
///
/// `tables` maps a snapshot table name to its granted columns; `["*"]` grants every column the
/// table has in the snapshot the query runs against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectScope {
    pub name: String,
    /// The snapshot this grant is for: the snapshot file's name without extension
    /// (`snap-2026-11.duckdb` -> `snap-2026-11`). `None` = any snapshot.
    #[serde(default)]
    pub snapshot: Option<String>,
    pub tables: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("cannot read the project scope {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the project scope {path} is not valid TOML for a scope: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the scope file {path} is for project {found:?}, not {expected:?}")]
    WrongProject {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("project {project:?}'s grant expired at {expires}")]
    Expired {
        project: String,
        expires: DateTime<Utc>,
    },
    #[error("project {project:?} is granted snapshot {granted:?}, not {requested:?}")]
    WrongSnapshot {
        project: String,
        granted: String,
        requested: String,
    },
    #[error("project {project:?}: {detail}")]
    Invalid { project: String, detail: String },
}

impl ProjectScope {
    /// Loads a scope file and checks it is for `project`.
    pub fn load(path: &Path, project: &str) -> Result<ProjectScope, ScopeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScopeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let scope: ProjectScope = toml::from_str(&text).map_err(|e| ScopeError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if scope.name != project {
            return Err(ScopeError::WrongProject {
                path: path.to_path_buf(),
                expected: project.to_string(),
                found: scope.name,
            });
        }
        Ok(scope)
    }

    /// `<state>/projects/<project>.toml`, the CLI's default place for a scope.
    pub fn default_path(state: &Path, project: &str) -> PathBuf {
        state.join("projects").join(format!("{project}.toml"))
    }

    /// Checks the grant is usable now for `snapshot`: not expired, right snapshot, and every
    /// name a plain identifier (names are quoted when views are built, but a grant naming
    /// `a"b` is a mistake worth refusing).
    pub fn check(&self, snapshot: &Path, now: DateTime<Utc>) -> Result<(), ScopeError> {
        if let Some(expires) = self.expires {
            if now >= expires {
                return Err(ScopeError::Expired {
                    project: self.name.clone(),
                    expires,
                });
            }
        }
        if let Some(granted) = &self.snapshot {
            let requested = snapshot
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if *granted != requested {
                return Err(ScopeError::WrongSnapshot {
                    project: self.name.clone(),
                    granted: granted.clone(),
                    requested,
                });
            }
        }
        if self.tables.is_empty() {
            return Err(self.invalid("no tables are granted".into()));
        }
        for (table, columns) in &self.tables {
            if !is_identifier(table) {
                return Err(self.invalid(format!("table name {table:?} is not an identifier")));
            }
            if columns.is_empty() {
                return Err(self.invalid(format!("table {table:?} has no granted columns")));
            }
            for c in columns {
                if c != "*" && !is_identifier(c) {
                    return Err(self.invalid(format!(
                        "column {c:?} of table {table:?} is not an identifier"
                    )));
                }
            }
        }
        Ok(())
    }

    fn invalid(&self, detail: String) -> ScopeError {
        ScopeError::Invalid {
            project: self.name.clone(),
            detail,
        }
    }
}

/// ASCII letters, digits and `_`, not starting with a digit: every name the snapshot uses.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(toml_text: &str) -> ProjectScope {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn parses_and_checks_expiry_and_snapshot() {
        let s = scope(
            "name = \"p1\"\nsnapshot = \"snap-a\"\nexpires = \"2030-01-01T00:00:00Z\"\n\
             [tables]\nnanbyo_forms = [\"research_id\", \"severity\"]\n",
        );
        let before: DateTime<Utc> = "2029-12-31T23:59:59Z".parse().unwrap();
        let after: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        assert!(s.check(Path::new("/x/snap-a.duckdb"), before).is_ok());
        assert!(matches!(
            s.check(Path::new("/x/snap-a.duckdb"), after),
            Err(ScopeError::Expired { .. })
        ));
        assert!(matches!(
            s.check(Path::new("/x/snap-b.duckdb"), before),
            Err(ScopeError::WrongSnapshot { .. })
        ));
    }

    #[test]
    fn refuses_names_that_are_not_identifiers() {
        let s = scope("name = \"p\"\n[tables]\n\"t\\\"x\" = [\"a\"]\n");
        assert!(matches!(
            s.check(Path::new("s.duckdb"), Utc::now()),
            Err(ScopeError::Invalid { .. })
        ));
        let s = scope("name = \"p\"\n[tables]\nt = [\"a b\"]\n");
        assert!(s.check(Path::new("s.duckdb"), Utc::now()).is_err());
        assert!(!is_identifier("1a") && is_identifier("_a1") && !is_identifier(""));
    }
}
