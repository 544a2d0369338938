//! Server-side sign-in sessions and pending OpenID logins.
//!
//! The cookie carries a random 256-bit token; only its SHA-256 is stored, so a copy of the
//! database does not let anyone sign in. A session ends at whichever comes first: its idle
//! timeout since last use, or its absolute expiry since sign-in.

use chrono::{DateTime, Duration, Utc};

use crate::{parse_ts, random_token, sha256_hex, ts, Store, StoreError};
use kura_sql::args;

#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie token: safe to log and to put in audit entries.
    pub id: String,
    pub user: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Last-use times are written at most this often (or a quarter of the idle timeout, if
/// shorter), so reads do not each cost a write.
const TOUCH_EVERY: Duration = Duration::seconds(30);

impl Store {
    /// Starts a session for `user`; returns the cookie token (shown once) and the session.
    /// `NotFound` when the account does not exist or is disabled: the check and the insert are
    /// one statement, which on PostgreSQL locks the account row, so a session cannot be created
    /// past a concurrent `disable_account` or `set_password` on another node (those end every
    /// session of the account after their update, and this insert waits for them or they for it).
    pub fn create_session(
        &self,
        user: &str,
        limits: SessionLimits,
        now: DateTime<Utc>,
    ) -> Result<(String, Session), StoreError> {
        let token = random_token(32)?;
        let session = Session {
            id: sha256_hex(&token),
            user: user.to_string(),
            csrf_token: random_token(32)?,
            created_at: now,
            last_seen: now,
            expires_at: now + limits.absolute,
        };
        let (now_text, idle_since, expires) =
            (ts(now), ts(now - limits.idle), ts(session.expires_at));
        let n = self.run(|c| {
            // Expired sessions are swept on every sign-in: cheap, and nothing else needs a timer.
            c.execute(
                "DELETE FROM ctl_sessions WHERE expires_at <= ?1 OR last_seen <= ?2",
                args![&now_text, &idle_since],
            )?;
            let lock = if c.is_postgres() { " FOR SHARE" } else { "" };
            Ok(c.execute(
                &format!(
                    "INSERT INTO ctl_sessions
                     (token_hash, \"user\", csrf_token, created_at, last_seen, expires_at)
                     SELECT ?1, id, ?3, ?4, ?4, ?5 FROM ctl_accounts
                     WHERE id = ?2 AND NOT disabled{lock}"
                ),
                args![&session.id, user, &session.csrf_token, &now_text, &expires],
            )?)
        })?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "enabled account",
                id: user.to_string(),
            });
        }
        Ok((token, session))
    }

    /// The live session named by a cookie token, or None (unknown, idle too long, or past its
    /// absolute expiry; an ended session is deleted).
    pub fn session(
        &self,
        token: &str,
        limits: SessionLimits,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        let id = sha256_hex(token);
        self.run(|c| {
            let Some(row) = c.query_opt(
                "SELECT \"user\", csrf_token, created_at, last_seen, expires_at FROM ctl_sessions
                 WHERE token_hash = ?1",
                args![&id],
            )?
            else {
                return Ok(None);
            };
            let mut session = Session {
                id: id.clone(),
                user: row.text(0)?,
                csrf_token: row.text(1)?,
                created_at: parse_ts("session", &row.text(2)?)?,
                last_seen: parse_ts("session", &row.text(3)?)?,
                expires_at: parse_ts("session", &row.text(4)?)?,
            };
            if now >= session.expires_at || now - session.last_seen >= limits.idle {
                c.execute(
                    "DELETE FROM ctl_sessions WHERE token_hash = ?1",
                    args![&session.id],
                )?;
                return Ok(None);
            }
            if now - session.last_seen >= TOUCH_EVERY.min(limits.idle / 4) {
                // Never moves back: nodes touching one session at once keep the latest time.
                c.execute(
                    "UPDATE ctl_sessions SET last_seen = ?2 WHERE token_hash = ?1 AND last_seen < ?2",
                    args![&session.id, &ts(now)],
                )?;
                session.last_seen = now;
            }
            Ok(Some(session))
        })
    }

    /// Ends a session (sign-out); false when it did not exist.
    pub fn end_session(&self, session_id: &str) -> Result<bool, StoreError> {
        let n = self.run(|c| {
            Ok(c.execute(
                "DELETE FROM ctl_sessions WHERE token_hash = ?1",
                args![session_id],
            )?)
        })?;
        Ok(n > 0)
    }

    /// Keeps an OpenID login in progress (state, nonce, PKCE verifier) under a random key that
    /// goes into a short-lived cookie; returns the key.
    pub fn put_pending_login(&self, body: &str, now: DateTime<Utc>) -> Result<String, StoreError> {
        let key = random_token(32)?;
        let (hash, stale, now) = (sha256_hex(&key), ts(now - Duration::minutes(10)), ts(now));
        self.run(|c| {
            c.execute(
                "DELETE FROM ctl_pending_logins WHERE created_at <= ?1",
                args![&stale],
            )?;
            Ok(c.execute(
                "INSERT INTO ctl_pending_logins (key_hash, body, created_at) VALUES (?1, ?2, ?3)",
                args![&hash, body, &now],
            )?)
        })?;
        Ok(key)
    }

    /// Takes (and deletes) a pending login: each can complete at most once, whichever node
    /// the callback reaches (one `DELETE .. RETURNING`: of two racing, one gets the row).
    pub fn take_pending_login(&self, key: &str) -> Result<Option<String>, StoreError> {
        let hash = sha256_hex(key);
        self.run(|c| {
            Ok(c.query_opt(
                "DELETE FROM ctl_pending_logins WHERE key_hash = ?1 RETURNING body",
                args![&hash],
            )?)
        })?
        .map(|r| r.text(0))
        .transpose()
        .map_err(StoreError::from)
    }
}
