//! The control-plane tables (`ctl_*`), created at open if missing, on either database.
//!
//! One text for both, with the few column types that differ filled in per database
//! (`kura_sql::schema`: on PostgreSQL text compares byte by byte, booleans are `BOOLEAN` and
//! integers `BIGINT`). `user` is a reserved word in PostgreSQL, hence `"user"`.

use kura_sql::schema::{fill, POSTGRES, SQLITE};

/// Any fixed number: nodes create the tables one at a time under this advisory lock.
const DDL_LOCK: i64 = 0x6b75_7261_6374_6c73; // "kuractls"

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS ctl_accounts (
    id          {text} PRIMARY KEY,
    name        {text} NOT NULL,
    roles       {text} NOT NULL,          -- JSON array
    password    {text},                   -- argon2id PHC string; NULL for OpenID accounts
    source      {text} NOT NULL,          -- local | oidc
    subject     {text},                   -- OpenID issuer + subject
    disabled    {bool} NOT NULL DEFAULT {false},
    created_at  {text} NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ctl_accounts_subject ON ctl_accounts(subject);
CREATE TABLE IF NOT EXISTS ctl_projects (
    id          {text} PRIMARY KEY,
    title       {text} NOT NULL,
    description {text} NOT NULL,
    snapshot    {text} NOT NULL,
    tables      {text} NOT NULL,          -- JSON object: table -> [columns]
    starts      {text} NOT NULL,
    expires     {text} NOT NULL,
    created_by  {text} NOT NULL,
    created_at  {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS ctl_members (
    project     {text} NOT NULL REFERENCES ctl_projects(id),
    "user"      {text} NOT NULL REFERENCES ctl_accounts(id),
    role        {text} NOT NULL,
    expires     {text} NOT NULL,
    PRIMARY KEY (project, "user")
);
CREATE TABLE IF NOT EXISTS ctl_sessions (
    token_hash  {text} PRIMARY KEY,       -- SHA-256 of the cookie value; the value is never stored
    "user"      {text} NOT NULL,
    csrf_token  {text} NOT NULL,
    created_at  {text} NOT NULL,
    last_seen   {text} NOT NULL,
    expires_at  {text} NOT NULL
);
CREATE INDEX IF NOT EXISTS ctl_sessions_user ON ctl_sessions("user");
CREATE TABLE IF NOT EXISTS ctl_pending_logins (
    key_hash    {text} PRIMARY KEY,
    body        {text} NOT NULL,
    created_at  {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS ctl_queries (
    id              {text} PRIMARY KEY,
    project         {text} NOT NULL,
    "user"          {text} NOT NULL,
    sql             {text} NOT NULL,
    status          {text} NOT NULL,
    row_count       {int},
    duration_ms     {int},
    result_sha256   {text},
    snapshot_sha256 {text} NOT NULL,
    error           {text},
    started_at      {text} NOT NULL
);
CREATE INDEX IF NOT EXISTS ctl_queries_by_user ON ctl_queries(project, "user", started_at);
CREATE TABLE IF NOT EXISTS ctl_outputs (
    id          {text} PRIMARY KEY,
    project     {text} NOT NULL,
    query_id    {text} NOT NULL REFERENCES ctl_queries(id),
    author      {text} NOT NULL,
    title       {text} NOT NULL,
    description {text} NOT NULL,
    status      {text} NOT NULL,
    row_count   {int} NOT NULL,
    sha256      {text} NOT NULL,
    created_at  {text} NOT NULL
);
CREATE INDEX IF NOT EXISTS ctl_outputs_by_project ON ctl_outputs(project, created_at);
"#;

/// The tables in SQLite's types (as before PostgreSQL was supported).
pub(crate) fn sqlite() -> String {
    fill(SCHEMA, &SQLITE)
}

/// The tables in PostgreSQL's types.
pub(crate) fn postgres() -> String {
    fill(SCHEMA, &POSTGRES)
}

/// Creates the tables on PostgreSQL, one node at a time.
pub(crate) fn ensure_postgres(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    kura_sql::schema::ensure_postgres(client, DDL_LOCK, &postgres())
}
