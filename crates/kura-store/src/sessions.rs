//! Server-side sign-in sessions and pending OpenID logins.
//!
//! The cookie carries a random 256-bit token; only its SHA-256 is stored, so a copy of the
//! database does not let anyone sign in. A session ends at whichever comes first: its idle
//! timeout since last use, or its absolute expiry since sign-in.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, OptionalExtension};

use crate::{parse_ts, random_token, sha256_hex, ts, Store, StoreError};

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
        let conn = self.conn();
        // Expired sessions are swept on every sign-in: cheap, and nothing else needs a timer.
        conn.execute(
            "DELETE FROM ctl_sessions WHERE expires_at <= ?1 OR last_seen <= ?2",
            params![ts(now), ts(now - limits.idle)],
        )
        .map_err(|e| self.db(e))?;
        conn.execute(
            "INSERT INTO ctl_sessions (token_hash, user, csrf_token, created_at, last_seen, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![session.id, user, session.csrf_token, ts(now), ts(session.expires_at)],
        )
        .map_err(|e| self.db(e))?;
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
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT user, csrf_token, created_at, last_seen, expires_at FROM ctl_sessions
                 WHERE token_hash = ?1",
                [&id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db(e))?;
        let Some((user, csrf_token, created, seen, expires)) = row else {
            return Ok(None);
        };
        let mut session = Session {
            id,
            user,
            csrf_token,
            created_at: parse_ts("session", &created)?,
            last_seen: parse_ts("session", &seen)?,
            expires_at: parse_ts("session", &expires)?,
        };
        if now >= session.expires_at || now - session.last_seen >= limits.idle {
            conn.execute(
                "DELETE FROM ctl_sessions WHERE token_hash = ?1",
                [&session.id],
            )
            .map_err(|e| self.db(e))?;
            return Ok(None);
        }
        if now - session.last_seen >= TOUCH_EVERY.min(limits.idle / 4) {
            conn.execute(
                "UPDATE ctl_sessions SET last_seen = ?2 WHERE token_hash = ?1",
                params![session.id, ts(now)],
            )
            .map_err(|e| self.db(e))?;
            session.last_seen = now;
        }
        Ok(Some(session))
    }

    /// Ends a session (sign-out); false when it did not exist.
    pub fn end_session(&self, session_id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM ctl_sessions WHERE token_hash = ?1",
                [session_id],
            )
            .map_err(|e| self.db(e))?;
        Ok(n > 0)
    }

    /// Keeps an OpenID login in progress (state, nonce, PKCE verifier) under a random key that
    /// goes into a short-lived cookie; returns the key.
    pub fn put_pending_login(&self, body: &str, now: DateTime<Utc>) -> Result<String, StoreError> {
        let key = random_token(32)?;
        let conn = self.conn();
        conn.execute(
            "DELETE FROM ctl_pending_logins WHERE created_at <= ?1",
            [ts(now - Duration::minutes(10))],
        )
        .map_err(|e| self.db(e))?;
        conn.execute(
            "INSERT INTO ctl_pending_logins (key_hash, body, created_at) VALUES (?1, ?2, ?3)",
            params![sha256_hex(&key), body, ts(now)],
        )
        .map_err(|e| self.db(e))?;
        Ok(key)
    }

    /// Takes (and deletes) a pending login: each can complete at most once.
    pub fn take_pending_login(&self, key: &str) -> Result<Option<String>, StoreError> {
        let hash = sha256_hex(key);
        let conn = self.conn();
        let body: Option<String> = conn
            .query_row(
                "DELETE FROM ctl_pending_logins WHERE key_hash = ?1 RETURNING body",
                [hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        Ok(body)
    }
}
