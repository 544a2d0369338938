//! What the crates' table definitions share: one text for both databases with the column types
//! that differ filled in per database, and creating the tables on PostgreSQL one node at a time.
//!
//! On PostgreSQL, text sorts and compares byte by byte (`COLLATE "C"`, as SQLite's `BINARY`, so
//! that ids and RFC 3339 times order the same whatever the database's locale), booleans are
//! `BOOLEAN`, integers `BIGINT` and doubles `DOUBLE PRECISION`.

use postgres::types::Type;

/// The column types that differ between the databases.
#[derive(Debug, Clone, Copy)]
pub struct ColumnTypes {
    pub text: &'static str,
    pub int: &'static str,
    pub real: &'static str,
    pub bool: &'static str,
    /// The literal of a false boolean (a column default).
    pub false_: &'static str,
}

pub const SQLITE: ColumnTypes = ColumnTypes {
    text: "TEXT",
    int: "INTEGER",
    real: "REAL",
    bool: "INTEGER",
    false_: "0",
};

pub const POSTGRES: ColumnTypes = ColumnTypes {
    text: "TEXT COLLATE \"C\"",
    int: "BIGINT",
    real: "DOUBLE PRECISION",
    bool: "BOOLEAN",
    false_: "FALSE",
};

/// `schema` with `{text}`, `{int}`, `{real}`, `{bool}` and `{false}` replaced by `types`.
pub fn fill(schema: &str, types: &ColumnTypes) -> String {
    schema
        .replace("{text}", types.text)
        .replace("{int}", types.int)
        .replace("{real}", types.real)
        .replace("{bool}", types.bool)
        .replace("{false}", types.false_)
}

/// Runs `ddl` in one transaction under the transaction-level advisory lock `lock`: concurrent
/// `CREATE TABLE IF NOT EXISTS` can still collide in PostgreSQL's catalog, so nodes create the
/// tables one at a time.
pub fn ensure_postgres(
    client: &mut postgres::Client,
    lock: i64,
    ddl: &str,
) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute_typed("SELECT pg_advisory_xact_lock($1)", &[(&lock, Type::INT8)])?;
    tx.batch_execute(ddl)?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_placeholder_is_filled() {
        let text = "a {text} b {int} c {real} d {bool} DEFAULT {false}";
        assert_eq!(
            super::fill(text, &super::SQLITE),
            "a TEXT b INTEGER c REAL d INTEGER DEFAULT 0"
        );
        assert!(!super::fill(text, &super::POSTGRES).contains('{'));
    }
}
