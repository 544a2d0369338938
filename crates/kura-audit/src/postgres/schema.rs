//! The PostgreSQL tables of the log, created by the first writer to connect, and the record of
//! the log's verifier key that keeps nodes with different key files from signing one log.
//! The three entry tables are SQLite's (`sqlite.rs`) in PostgreSQL types; the one-row tables
//! exist only here, for coordinating several writers.

use std::path::Path;

use postgres::types::Type;
use postgres::Client;

use super::pg_error;
use crate::note::LogKey;
use crate::AuditError;

/// Version of the tables below; a log written by a newer version is refused.
pub const SCHEMA_VERSION: i32 = 1;

/// Any fixed number: concurrent `CREATE TABLE IF NOT EXISTS` can still collide in the catalog,
/// so writers create the tables one at a time under this transaction-level advisory lock.
const DDL_LOCK: i64 = 0x6b75_7261_6175_6474; // "kuraaudt"

const DDL: &str = "
CREATE TABLE IF NOT EXISTS audit_leaves (
    idx  BIGINT PRIMARY KEY,
    leaf BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_payloads (
    idx     BIGINT PRIMARY KEY,
    salt    BYTEA NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size      BIGINT PRIMARY KEY,
    root      BYTEA NOT NULL,
    note      TEXT NOT NULL,
    term      BIGINT NOT NULL DEFAULT 0,
    signer    TEXT NOT NULL DEFAULT '',
    signed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS audit_head (
    id        SMALLINT PRIMARY KEY CHECK (id = 1),
    size      BIGINT NOT NULL,
    last_hash BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_lease (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    holder     TEXT,
    term       BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_meta (
    id           SMALLINT PRIMARY KEY CHECK (id = 1),
    version      INTEGER NOT NULL,
    verifier_key TEXT NOT NULL
);
INSERT INTO audit_head (id, size, last_hash)
    VALUES (1, 0, decode(repeat('00', 32), 'hex')) ON CONFLICT (id) DO NOTHING;
INSERT INTO audit_lease (id, holder, term, expires_at)
    VALUES (1, NULL, 0, '-infinity') ON CONFLICT (id) DO NOTHING;
";

/// Creates the tables and their one-row tables if missing.
pub fn ensure(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute_typed(
        "SELECT pg_advisory_xact_lock($1)",
        &[(&DDL_LOCK, Type::INT8)],
    )?;
    tx.batch_execute(DDL)?;
    tx.commit()
}

/// Returns the log's signing key. The first writer of an empty database loads or creates
/// `key_file` and records its verifier key; every later writer must load a key file with that
/// same key (a node with another key would sign a second, conflicting history).
pub fn log_key(
    client: &mut Client,
    label: &str,
    key_file: &Path,
    origin: &str,
) -> Result<LogKey, AuditError> {
    let read = |client: &mut Client| -> Result<Option<(i32, String)>, AuditError> {
        let rows = client
            .query(
                "SELECT version, verifier_key FROM audit_meta WHERE id = 1",
                &[],
            )
            .map_err(|e| pg_error(label, "reading the log's key record", &e))?;
        rows.first()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .transpose()
            .map_err(|e: postgres::Error| pg_error(label, "reading the log's key record", &e))
    };
    let key = match read(client)? {
        Some(_) => LogKey::load(key_file, origin).map_err(|e| match e {
            AuditError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                AuditError::Key {
                    path,
                    why: format!(
                        "missing: the audit log in {label} already has a signing key; copy the \
                         key file of the node that created it to this path"
                    ),
                }
            }
            other => other,
        })?,
        None => {
            let key = LogKey::load_or_create(key_file, origin)?;
            client
                .execute_typed(
                    "INSERT INTO audit_meta (id, version, verifier_key) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        (&SCHEMA_VERSION, Type::INT4),
                        (&key.verifier_key(), Type::TEXT),
                    ],
                )
                .map_err(|e| pg_error(label, "recording the log's key", &e))?;
            key
        }
    };
    let Some((version, recorded)) = read(client)? else {
        return Err(AuditError::Store(format!(
            "{label}: the log's key record vanished while opening"
        )));
    };
    if version > SCHEMA_VERSION {
        return Err(AuditError::Config(format!(
            "{label}: the audit tables are version {version}, this kura knows up to \
             {SCHEMA_VERSION}: upgrade kura"
        )));
    }
    if recorded != key.verifier_key() {
        return Err(AuditError::Key {
            path: key_file.to_path_buf(),
            why: format!(
                "this is not the key of the audit log in {label} (the log's verifier key is \
                 {recorded}, this file's is {}); every node needs a copy of the same key file",
                key.verifier_key()
            ),
        });
    }
    Ok(key)
}
