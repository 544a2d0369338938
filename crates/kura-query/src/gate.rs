//! The statement gate: DuckDB's own parser (`json_serialize_sql`) turns the SQL into a JSON
//! syntax tree, and the gate accepts exactly one read-only statement whose every table reference
//! is a granted view (or a CTE) and whose every function is on the allowlist. Using DuckDB's
//! parser, not a second one, means the gate sees exactly what DuckDB will run.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::duck::{Database, Split};
use crate::policy::FunctionPolicy;

/// The rule that refused a statement; its string form is stable (audit payloads, API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// No statement at all (empty or only comments).
    Empty,
    /// More than one statement.
    OneStatement,
    /// Not a read-only query (COPY, ATTACH, SET, PRAGMA, CREATE, INSERT, EXPLAIN, ...).
    ReadOnly,
    /// A function that is not on `policies/sql-functions.toml`.
    FunctionNotAllowed,
    /// A table function in FROM that is not on the allowlist.
    TableFunctionNotAllowed,
    /// A table, view, file path or catalog view that is not one of the project's granted views.
    TableNotGranted,
    /// A schema- or catalog-qualified name (`db.main.t`, `information_schema.tables`, `s.f()`).
    QualifiedName,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Empty => "empty",
            Rule::OneStatement => "one-statement",
            Rule::ReadOnly => "read-only",
            Rule::FunctionNotAllowed => "function-not-allowed",
            Rule::TableFunctionNotAllowed => "table-function-not-allowed",
            Rule::TableNotGranted => "table-not-granted",
            Rule::QualifiedName => "qualified-name",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the gate did not let a statement through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GateError {
    #[error("syntax error: {message}{}", .position.map(|p| format!(" (at character {p})")).unwrap_or_default())]
    Syntax {
        message: String,
        position: Option<u64>,
    },
    #[error("refused by rule {rule}: {detail}")]
    Refused { rule: Rule, detail: String },
    #[error("the statement gate could not parse DuckDB's syntax tree: {0}")]
    Internal(String),
}

fn refuse(rule: Rule, detail: impl Into<String>) -> GateError {
    GateError::Refused {
        rule,
        detail: detail.into(),
    }
}

/// Parses `sql` with DuckDB's parser on `conn` and checks it; `db` counts the statements (see
/// [`crate::duck`]). `granted` holds lower-case view names. Parsing runs no part of the
/// statement.
pub fn check(
    conn: &duckdb::Connection,
    db: &Database,
    sql: &str,
    granted: &BTreeSet<String>,
    policy: &FunctionPolicy,
) -> Result<(), GateError> {
    let json: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |r| r.get(0))
        .map_err(|e| GateError::Internal(format!("json_serialize_sql: {e}")))?;
    let tree: Value =
        serde_json::from_str(&json).map_err(|e| GateError::Internal(e.to_string()))?;
    syntax_error(&tree)?;
    // json_serialize_sql stops at the first statement that is not a SELECT, so it cannot tell
    // "one COPY" from "SELECT 1; COPY ...": count with the parser first.
    match db.split(sql) {
        Split::Error(message) => {
            return Err(GateError::Syntax {
                message,
                position: None,
            })
        }
        Split::Statements(0) => return Err(refuse(Rule::Empty, "the query contains no statement")),
        Split::Statements(1) => {}
        Split::Statements(n) => {
            return Err(refuse(
                Rule::OneStatement,
                format!("the query contains {n} statements; send exactly one"),
            ))
        }
    }
    check_tree(&tree, granted, policy)
}

/// DuckDB's parser error, with the character position it reports, if the tree is one.
fn syntax_error(tree: &Value) -> Result<(), GateError> {
    if tree.get("error").and_then(Value::as_bool) == Some(true)
        && tree.get("error_type").and_then(Value::as_str) == Some("parser")
    {
        let message = tree
            .get("error_message")
            .and_then(Value::as_str)
            .unwrap_or("unknown parser error")
            .to_string();
        let position = tree.get("position").and_then(|p| match p {
            Value::String(s) => s.parse().ok(),
            other => other.as_u64(),
        });
        return Err(GateError::Syntax { message, position });
    }
    Ok(())
}

/// Checks the JSON that `json_serialize_sql` returned.
pub fn check_tree(
    tree: &Value,
    granted: &BTreeSet<String>,
    policy: &FunctionPolicy,
) -> Result<(), GateError> {
    syntax_error(tree)?;
    if tree.get("error").and_then(Value::as_bool) == Some(true) {
        let message = tree
            .get("error_message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        // DuckDB serialises SELECT statements only: everything else lands here.
        return Err(refuse(
            Rule::ReadOnly,
            format!(
                "only one read-only query (SELECT, WITH, VALUES, DESCRIBE or SUMMARIZE) may run \
                 ({message})"
            ),
        ));
    }
    let statements = tree
        .get("statements")
        .and_then(Value::as_array)
        .ok_or_else(|| GateError::Internal("no `statements` in the syntax tree".into()))?;
    match statements.len() {
        0 => return Err(refuse(Rule::Empty, "the query contains no statement")),
        1 => {}
        n => {
            return Err(refuse(
                Rule::OneStatement,
                format!("the query contains {n} statements; send exactly one"),
            ))
        }
    }
    Walker { granted, policy }.walk(&statements[0], &Scope::default())
}

/// CTE names visible at a point of the tree. A CTE is visible in the query that defines it, in
/// the CTEs defined after it and, if recursive, in its own body; a reference anywhere else is a
/// real table. (Treating every CTE name as visible everywhere would let
/// `WITH x AS (SELECT * FROM x) ...` or a CTE in one subquery unlock a table of that name in
/// another.)
#[derive(Clone, Default)]
struct Scope(Vec<String>);

impl Scope {
    fn with(&self, name: String) -> Scope {
        let mut s = self.clone();
        s.0.push(name);
        s
    }

    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

struct Walker<'a> {
    granted: &'a BTreeSet<String>,
    policy: &'a FunctionPolicy,
}

fn str_field<'v>(o: &'v Map<String, Value>, key: &str) -> &'v str {
    o.get(key).and_then(Value::as_str).unwrap_or("")
}

impl Walker<'_> {
    fn walk(&self, v: &Value, scope: &Scope) -> Result<(), GateError> {
        match v {
            Value::Array(a) => a.iter().try_for_each(|x| self.walk(x, scope)),
            Value::Object(o) => self.walk_object(o, scope),
            _ => Ok(()),
        }
    }

    /// Walks the CTE definitions of a query node in order and returns the scope of its body.
    fn walk_ctes(&self, o: &Map<String, Value>, scope: &Scope) -> Result<Scope, GateError> {
        let mut scope = scope.clone();
        let entries = o
            .get("cte_map")
            .and_then(|m| m.get("map"))
            .and_then(Value::as_array);
        for entry in entries.into_iter().flatten() {
            let name = entry
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| GateError::Internal("a CTE without a name".into()))?
                .to_lowercase();
            let body = entry.get("value").unwrap_or(&Value::Null);
            let recursive = body
                .get("query_node")
                .and_then(|q| q.get("type"))
                .and_then(Value::as_str)
                == Some("RECURSIVE_CTE_NODE");
            if recursive {
                self.walk(body, &scope.with(name.clone()))?;
            } else {
                self.walk(body, &scope)?;
            }
            scope = scope.with(name);
        }
        Ok(scope)
    }

    fn walk_object(&self, o: &Map<String, Value>, scope: &Scope) -> Result<(), GateError> {
        let scope = &self.walk_ctes(o, scope)?;
        match str_field(o, "type") {
            "BASE_TABLE" => self.check_table(o, scope)?,
            "SHOW_REF" => {
                let name = str_field(o, "table_name");
                if !name.is_empty() && !self.granted.contains(&name.to_lowercase()) {
                    return Err(refuse(
                        Rule::TableNotGranted,
                        format!("DESCRIBE/SUMMARIZE/SHOW of {name:?}: only granted views"),
                    ));
                }
            }
            "TABLE_FUNCTION" => {
                let function = o.get("function").and_then(Value::as_object);
                let name = function
                    .map(|f| str_field(f, "function_name"))
                    .unwrap_or("");
                if !self.policy.allows_table_function(name) {
                    return Err(refuse(
                        Rule::TableFunctionNotAllowed,
                        format!("table function {name:?} is not on the allowlist"),
                    ));
                }
                if let Some(f) = function {
                    self.check_qualification(f, name)?;
                    // Arguments (`arguments` in DuckDB 2.0, `children` before) and anything
                    // else nested: every field but the table function's own name.
                    f.iter()
                        .filter(|(k, _)| k.as_str() != "function_name")
                        .try_for_each(|(_, x)| self.walk(x, scope))?;
                }
                // Alias, sample etc.: walk everything except the function already checked.
                return o
                    .iter()
                    .filter(|(k, _)| k.as_str() != "function" && k.as_str() != "cte_map")
                    .try_for_each(|(_, x)| self.walk(x, scope));
            }
            _ => {}
        }
        if let Some(name) = o.get("function_name").and_then(Value::as_str) {
            if !self.policy.allows_function(name) {
                return Err(refuse(
                    Rule::FunctionNotAllowed,
                    format!("function {name:?} is not on the allowlist"),
                ));
            }
            self.check_qualification(o, name)?;
        }
        o.iter()
            .filter(|(k, _)| k.as_str() != "cte_map")
            .try_for_each(|(_, x)| self.walk(x, scope))
    }

    fn check_qualification(&self, f: &Map<String, Value>, name: &str) -> Result<(), GateError> {
        // Any qualification could reach a function in another catalog or schema; DuckDB's
        // parser leaves built-ins unqualified, so only the researcher can add one.
        if !str_field(f, "catalog").is_empty()
            || !str_field(f, "schema").is_empty()
            || path_len(f) > 1
        {
            return Err(refuse(
                Rule::QualifiedName,
                format!("{}: call functions unqualified", dotted(f, name)),
            ));
        }
        Ok(())
    }

    fn check_table(&self, o: &Map<String, Value>, scope: &Scope) -> Result<(), GateError> {
        let name = str_field(o, "table_name");
        if !str_field(o, "schema_name").is_empty()
            || !str_field(o, "catalog_name").is_empty()
            || path_len(o) > 1
        {
            return Err(refuse(
                Rule::QualifiedName,
                format!(
                    "{}: refer to granted views by their plain name",
                    dotted(o, name)
                ),
            ));
        }
        let lower = name.to_lowercase();
        if self.granted.contains(&lower) || scope.contains(&lower) {
            return Ok(());
        }
        Err(refuse(
            Rule::TableNotGranted,
            format!("{name:?} is not one of the project's granted tables"),
        ))
    }
}

/// Length of DuckDB 2.0's `qualified_name.path` (0 when absent).
fn path_len(o: &Map<String, Value>) -> usize {
    o.get("qualified_name")
        .and_then(|q| q.get("path"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// The name as written, for messages: the qualified path if DuckDB gives one.
fn dotted(o: &Map<String, Value>, name: &str) -> String {
    let path: Vec<&str> = o
        .get("qualified_name")
        .and_then(|q| q.get("path"))
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if path.len() > 1 {
        path.join(".")
    } else {
        let parts = [
            str_field(o, "catalog_name"),
            str_field(o, "catalog"),
            str_field(o, "schema_name"),
            str_field(o, "schema"),
            name,
        ];
        parts
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(".")
    }
}
