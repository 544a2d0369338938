//! Accounts: local ones with an argon2id password hash (hashed by the caller), and accounts
//! created on first OpenID sign-in, keyed by issuer and subject. Disabling an account ends its
//! sessions.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::{parse_ts, ts, valid_id, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountSource {
    Local,
    Oidc,
}

impl AccountSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountSource::Local => "local",
            AccountSource::Oidc => "oidc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub source: AccountSource,
    pub created_at: DateTime<Utc>,
}

/// A local account to create; `password_hash` is an argon2id PHC string.
#[derive(Debug, Clone)]
pub struct NewAccount<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub roles: &'a [String],
    pub password_hash: &'a str,
}

const COLUMNS: &str = "id, name, roles, disabled, source, created_at";

fn account(row: &Row<'_>) -> rusqlite::Result<(Account, String, String)> {
    let roles: String = row.get(2)?;
    let created: String = row.get(5)?;
    let source: String = row.get(4)?;
    Ok((
        Account {
            id: row.get(0)?,
            name: row.get(1)?,
            roles: Vec::new(),
            disabled: row.get(3)?,
            source: if source == "oidc" {
                AccountSource::Oidc
            } else {
                AccountSource::Local
            },
            created_at: DateTime::<Utc>::MIN_UTC,
        },
        roles,
        created,
    ))
}

fn finish((mut a, roles, created): (Account, String, String)) -> Result<Account, StoreError> {
    a.roles = serde_json::from_str(&roles).map_err(|e| StoreError::Corrupt {
        what: "account roles",
        why: e.to_string(),
    })?;
    a.created_at = parse_ts("account", &created)?;
    Ok(a)
}

fn check_new(id: &str, name: &str) -> Result<(), StoreError> {
    if !valid_id(id) {
        return Err(StoreError::Invalid {
            what: "account id",
            why: format!("{id:?}: use 1-64 lower-case letters, digits, '-', '_' or '.'"),
        });
    }
    if name.trim().is_empty() || name.len() > 200 {
        return Err(StoreError::Invalid {
            what: "account name",
            why: "give 1-200 characters".into(),
        });
    }
    Ok(())
}

impl Store {
    pub fn create_account(
        &self,
        new: &NewAccount<'_>,
        now: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        check_new(new.id, new.name)?;
        let roles = serde_json::to_string(new.roles).map_err(|e| StoreError::Invalid {
            what: "roles",
            why: e.to_string(),
        })?;
        let conn = self.conn();
        let n = conn
            .execute(
                "INSERT INTO ctl_accounts (id, name, roles, password, source, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'local', ?5) ON CONFLICT(id) DO NOTHING",
                params![new.id, new.name, roles, new.password_hash, ts(now)],
            )
            .map_err(|e| self.db(e))?;
        drop(conn);
        if n == 0 {
            return Err(StoreError::Conflict {
                what: "account",
                id: new.id.to_string(),
            });
        }
        self.account(new.id)?.ok_or_else(|| StoreError::NotFound {
            what: "account",
            id: new.id.to_string(),
        })
    }

    pub fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM ctl_accounts WHERE id = ?1"),
                [id],
                account,
            )
            .optional()
            .map_err(|e| self.db(e))?;
        row.map(finish).transpose()
    }

    /// The account and its password hash (None for OpenID accounts), for a local sign-in.
    pub fn local_credentials(
        &self,
        id: &str,
    ) -> Result<Option<(Account, Option<String>)>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {COLUMNS}, password FROM ctl_accounts WHERE id = ?1"),
                [id],
                |r| Ok((account(r)?, r.get::<_, Option<String>>(6)?)),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        row.map(|(a, p)| Ok((finish(a)?, p))).transpose()
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM ctl_accounts ORDER BY id"))
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map([], account)
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        rows.into_iter().map(finish).collect()
    }

    /// Replaces a local account's password hash and ends its sessions in one transaction.
    pub fn set_password(&self, id: &str, password_hash: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let n = tx
            .execute(
                "UPDATE ctl_accounts SET password = ?2 WHERE id = ?1 AND source = 'local'",
                params![id, password_hash],
            )
            .map_err(|e| self.db(e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "local account",
                id: id.to_string(),
            });
        }
        tx.execute("DELETE FROM ctl_sessions WHERE user = ?1", [id])
            .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))
    }

    /// Disables an account and deletes its sessions in one transaction.
    pub fn disable_account(&self, id: &str) -> Result<Account, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let n = tx
            .execute("UPDATE ctl_accounts SET disabled = 1 WHERE id = ?1", [id])
            .map_err(|e| self.db(e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                id: id.to_string(),
            });
        }
        tx.execute("DELETE FROM ctl_sessions WHERE user = ?1", [id])
            .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        drop(conn);
        self.account(id)?.ok_or_else(|| StoreError::NotFound {
            what: "account",
            id: id.to_string(),
        })
    }

    /// The account of an OpenID identity: created on first sign-in (id derived by the caller),
    /// name and roles refreshed from the provider on every sign-in. A disabled account stays
    /// disabled.
    pub fn upsert_oidc_account(
        &self,
        subject: &str,
        id: &str,
        name: &str,
        roles: &[String],
        now: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        check_new(id, name)?;
        let roles = serde_json::to_string(roles).map_err(|e| StoreError::Invalid {
            what: "roles",
            why: e.to_string(),
        })?;
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row(
                "SELECT id FROM ctl_accounts WHERE subject = ?1",
                [subject],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        let id = match existing {
            Some(id) => {
                conn.execute(
                    "UPDATE ctl_accounts SET name = ?2, roles = ?3 WHERE id = ?1",
                    params![id, name, roles],
                )
                .map_err(|e| self.db(e))?;
                id
            }
            None => {
                let n = conn
                    .execute(
                        "INSERT INTO ctl_accounts (id, name, roles, source, subject, created_at)
                         VALUES (?1, ?2, ?3, 'oidc', ?4, ?5) ON CONFLICT(id) DO NOTHING",
                        params![id, name, roles, subject, ts(now)],
                    )
                    .map_err(|e| self.db(e))?;
                if n == 0 {
                    // A local account already has this id: never merge an outside identity
                    // into it.
                    return Err(StoreError::Conflict {
                        what: "account",
                        id: id.to_string(),
                    });
                }
                id.to_string()
            }
        };
        drop(conn);
        self.account(&id)?.ok_or(StoreError::NotFound {
            what: "account",
            id,
        })
    }
}
