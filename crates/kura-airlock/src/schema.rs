//! The airlock's tables (`airlock_*`), created at open if missing, on either database.
//!
//! One text for both, with the few column types that differ filled in per database
//! (`kura_sql::schema`, as kura-store's tables: on PostgreSQL text compares byte by byte,
//! integers are `BIGINT` and values `DOUBLE PRECISION`).
//!
//! Votes and ledger cells are read back in the order they were written, which SQLite gives by
//! its implicit `rowid`. PostgreSQL has none, so its two tables get an identity column of that
//! name: `ORDER BY rowid` is then the same statement on both (and an index on `(snapshot, rowid)`
//! for reading a snapshot's newest ledger rows). Other crates own `ctl_*`
//! (kura-store) and `audit_*` (kura-audit); this module touches only `airlock_*`.

use kura_sql::schema::{fill, POSTGRES, SQLITE};

/// The SQLite file in the state directory, shared with kura-store and kura-audit.
pub const DB_FILE: &str = "kura.sqlite";

/// Any fixed number: nodes create the tables one at a time under this advisory lock.
const DDL_LOCK: i64 = 0x6b75_7261_6169_726c; // "kuraairl"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS airlock_reviews (
    output_id       {text} PRIMARY KEY,
    project         {text} NOT NULL,
    author          {text} NOT NULL,
    title           {text} NOT NULL,
    output_sha256   {text} NOT NULL,      -- as recorded at staging
    query_id        {text} NOT NULL,
    sql             {text} NOT NULL,
    snapshot_sha256 {text} NOT NULL,
    staged_at       {text} NOT NULL,
    state           {text} NOT NULL,
    context         {text},               -- JSON: the author's current context
    created_at      {text} NOT NULL,
    updated_at      {text} NOT NULL
);
CREATE INDEX IF NOT EXISTS airlock_reviews_by_project ON airlock_reviews(project, created_at);
CREATE INDEX IF NOT EXISTS airlock_reviews_by_state ON airlock_reviews(state, updated_at);
CREATE TABLE IF NOT EXISTS airlock_rounds (
    output_id       {text} NOT NULL REFERENCES airlock_reviews(output_id),
    number          {int} NOT NULL,
    submitted_at    {text} NOT NULL,
    context         {text} NOT NULL,      -- JSON: the context as submitted
    check_stamp     {text} NOT NULL,      -- JSON: rule pack, version, protected-table SHA-256
    outcome         {text},
    closed_at       {text},
    PRIMARY KEY (output_id, number)
);
CREATE TABLE IF NOT EXISTS airlock_votes ({rowid}
    output_id       {text} NOT NULL REFERENCES airlock_reviews(output_id),
    round           {int} NOT NULL,
    checker         {text} NOT NULL,
    decision        {text} NOT NULL,
    comment         {text} NOT NULL,
    voted_at        {text} NOT NULL,
    PRIMARY KEY (output_id, round, checker)
);
CREATE TABLE IF NOT EXISTS airlock_history (
    output_id       {text} NOT NULL REFERENCES airlock_reviews(output_id),
    seq             {int} NOT NULL,
    at              {text} NOT NULL,
    actor           {text} NOT NULL,
    action          {text} NOT NULL,
    state           {text} NOT NULL,
    note            {text} NOT NULL,
    PRIMARY KEY (output_id, seq)
);
CREATE TABLE IF NOT EXISTS airlock_releases (
    output_id       {text} PRIMARY KEY REFERENCES airlock_reviews(output_id),
    project         {text} NOT NULL,
    file_name       {text} NOT NULL,
    file_sha256     {text} NOT NULL,
    manifest_sha256 {text} NOT NULL,
    released_at     {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS airlock_ledger ({rowid}
    snapshot        {text} NOT NULL,      -- snapshot SHA-256
    release         {text} NOT NULL,      -- output id of the release
    measure         {text} NOT NULL,
    definition      {text} NOT NULL,      -- JSON array of predicates, sorted
    value           {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS airlock_ledger_by_snapshot ON airlock_ledger(snapshot);
CREATE INDEX IF NOT EXISTS airlock_ledger_by_release ON airlock_ledger(release);{ledger_order}
";

/// The tables in SQLite's types (as before PostgreSQL was supported).
pub(crate) fn sqlite() -> String {
    fill(SCHEMA, &SQLITE)
        .replace("{rowid}", "")
        .replace("{ledger_order}", "")
}

/// The tables in PostgreSQL's types.
pub(crate) fn postgres() -> String {
    fill(SCHEMA, &POSTGRES)
        .replace(
            "{rowid}",
            "\n    rowid           BIGINT GENERATED ALWAYS AS IDENTITY,",
        )
        // The ledger cache reads a snapshot's rows after the last it read (SQLite's index on
        // `snapshot` holds the rowid already).
        .replace(
            "{ledger_order}",
            "\nCREATE INDEX IF NOT EXISTS airlock_ledger_by_snapshot_rowid \
             ON airlock_ledger(snapshot, rowid);",
        )
}

/// Creates the tables on PostgreSQL, one node at a time.
pub(crate) fn ensure_postgres(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    kura_sql::schema::ensure_postgres(client, DDL_LOCK, &postgres())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sqlite_text_is_the_one_before_postgres() {
        let s = super::sqlite();
        assert!(!s.contains('{') && !s.contains("rowid"), "{s}");
        assert!(s.contains("value           REAL NOT NULL"), "{s}");
        let p = super::postgres();
        assert!(!p.contains('{') && p.matches("rowid").count() == 4, "{p}");
    }
}
