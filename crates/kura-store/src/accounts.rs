//! Accounts: local ones with an argon2id password hash (hashed by the caller), and accounts
//! created on first OpenID sign-in, keyed by issuer and subject. Disabling an account ends its
//! sessions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{parse_ts, ts, valid_id, Store, StoreError};
use kura_sql::{args, Row};

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

fn account(row: &Row) -> Result<Account, StoreError> {
    let roles = row.text(2)?;
    Ok(Account {
        id: row.text(0)?,
        name: row.text(1)?,
        roles: serde_json::from_str(&roles).map_err(|e| StoreError::Corrupt {
            what: "account roles",
            why: e.to_string(),
        })?,
        disabled: row.bool(3)?,
        source: if row.text(4)? == "oidc" {
            AccountSource::Oidc
        } else {
            AccountSource::Local
        },
        created_at: parse_ts("account", &row.text(5)?)?,
    })
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

fn roles_json(roles: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(roles).map_err(|e| StoreError::Invalid {
        what: "roles",
        why: e.to_string(),
    })
}

impl Store {
    /// Creates a local account; `Conflict` when the id is taken (also when two nodes race).
    pub fn create_account(
        &self,
        new: &NewAccount<'_>,
        now: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        check_new(new.id, new.name)?;
        let roles = roles_json(new.roles)?;
        let now = ts(now);
        let row = self.run(|c| {
            Ok(c.query_opt(
                &format!(
                    "INSERT INTO ctl_accounts (id, name, roles, password, source, created_at)
                     VALUES (?1, ?2, ?3, ?4, 'local', ?5) ON CONFLICT (id) DO NOTHING
                     RETURNING {COLUMNS}"
                ),
                args![new.id, new.name, &roles, new.password_hash, &now],
            )?)
        })?;
        match row {
            Some(row) => account(&row),
            None => Err(StoreError::Conflict {
                what: "account",
                id: new.id.to_string(),
            }),
        }
    }

    pub fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.run(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS} FROM ctl_accounts WHERE id = ?1"),
                args![id],
            )?)
        })?
        .map(|r| account(&r))
        .transpose()
    }

    /// The account and its password hash (None for OpenID accounts), for a local sign-in.
    pub fn local_credentials(
        &self,
        id: &str,
    ) -> Result<Option<(Account, Option<String>)>, StoreError> {
        self.run(|c| {
            Ok(c.query_opt(
                &format!("SELECT {COLUMNS}, password FROM ctl_accounts WHERE id = ?1"),
                args![id],
            )?)
        })?
        .map(|r| Ok((account(&r)?, r.opt_text(6)?)))
        .transpose()
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.run(|c| {
            Ok(c.query(
                &format!("SELECT {COLUMNS} FROM ctl_accounts ORDER BY id"),
                &[],
            )?)
        })?
        .iter()
        .map(account)
        .collect()
    }

    /// Replaces a local account's password hash and ends its sessions in one transaction.
    pub fn set_password(&self, id: &str, password_hash: &str) -> Result<(), StoreError> {
        self.transaction(|c| {
            let n = c.execute(
                "UPDATE ctl_accounts SET password = ?2 WHERE id = ?1 AND source = 'local'",
                args![id, password_hash],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "local account",
                    id: id.to_string(),
                });
            }
            c.execute("DELETE FROM ctl_sessions WHERE \"user\" = ?1", args![id])?;
            Ok(())
        })
    }

    /// Disables an account and deletes its sessions in one transaction.
    pub fn disable_account(&self, id: &str) -> Result<Account, StoreError> {
        let row = self.transaction(|c| {
            let row = c.query_opt(
                &format!(
                    "UPDATE ctl_accounts SET disabled = TRUE WHERE id = ?1 RETURNING {COLUMNS}"
                ),
                args![id],
            )?;
            if row.is_some() {
                c.execute("DELETE FROM ctl_sessions WHERE \"user\" = ?1", args![id])?;
            }
            Ok(row)
        })?;
        match row {
            Some(row) => account(&row),
            None => Err(StoreError::NotFound {
                what: "account",
                id: id.to_string(),
            }),
        }
    }

    /// The account of an OpenID identity: created on first sign-in (id derived by the caller),
    /// name and roles refreshed from the provider on every sign-in. A disabled account stays
    /// disabled. Nodes racing through the first sign-in of one identity get the same account.
    pub fn upsert_oidc_account(
        &self,
        subject: &str,
        id: &str,
        name: &str,
        roles: &[String],
        now: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        check_new(id, name)?;
        let roles = roles_json(roles)?;
        let now = ts(now);
        let row = self.run(|c| {
            // A conflict on the id or on the subject inserts nothing; a node that loses the
            // race for a new identity waits for the winner's row and then updates it.
            if let Some(row) = c.query_opt(
                &format!(
                    "INSERT INTO ctl_accounts (id, name, roles, source, subject, created_at)
                     VALUES (?1, ?2, ?3, 'oidc', ?4, ?5) ON CONFLICT DO NOTHING
                     RETURNING {COLUMNS}"
                ),
                args![id, name, &roles, subject, &now],
            )? {
                return Ok(Some(row));
            }
            Ok(c.query_opt(
                &format!(
                    "UPDATE ctl_accounts SET name = ?2, roles = ?3 WHERE subject = ?1
                     RETURNING {COLUMNS}"
                ),
                args![subject, name, &roles],
            )?)
        })?;
        match row {
            Some(row) => account(&row),
            // Another account (a local one) already has this id: never merge an outside
            // identity into it.
            None => Err(StoreError::Conflict {
                what: "account",
                id: id.to_string(),
            }),
        }
    }
}
