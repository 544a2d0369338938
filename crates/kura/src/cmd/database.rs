//! `--database-url` (env `KURA_DATABASE_URL`) and `--audit-key-file` for the commands that open
//! the control plane, the airlock or the audit log: where a deployment keeps them. Without a URL
//! everything is in the state directory's SQLite file, as for one `kura serve`; with one, the
//! commands work on the PostgreSQL database the server nodes share (the state directory still
//! holds the files: keys, snapshots, outputs, releases).

use std::path::{Path, PathBuf};

use anyhow::bail;
use kura_audit::AuditLocation;
use kura_store::StoreLocation;

/// The environment variable `kura serve` and these commands read the URL from.
pub const URL_ENV: &str = "KURA_DATABASE_URL";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct DatabaseArgs {
    /// PostgreSQL database shared by the server nodes (postgres://user@host:port/db); default:
    /// SQLite in the state directory. Same as `database_url` in kura.toml.
    #[arg(long, env = URL_ENV, hide_env_values = true)]
    pub database_url: Option<String>,
    /// The audit log's signing key file, with --database-url (default
    /// <state>/audit-signing.key; every node has a copy of the same file).
    #[arg(long)]
    pub audit_key_file: Option<PathBuf>,
}

impl DatabaseArgs {
    /// The PostgreSQL URL, None for SQLite (also when empty); an error naming the flag when
    /// it is not a PostgreSQL URL (never repeating it: it may hold a password).
    pub fn url(&self) -> anyhow::Result<Option<&str>> {
        let Some(url) = self
            .database_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(None);
        };
        if let Err(why) = kura_server::config::check_database_url(url) {
            bail!("--database-url ({URL_ENV}): {why}");
        }
        Ok(Some(url))
    }

    pub fn store_location(&self, state: &Path) -> anyhow::Result<StoreLocation> {
        Ok(StoreLocation::from_config(state, self.url()?))
    }

    pub fn audit_location(&self, state: &Path) -> anyhow::Result<AuditLocation> {
        Ok(match self.url()? {
            None if self.audit_key_file.is_some() => bail!(
                "--audit-key-file needs --database-url (or {URL_ENV}): a SQLite audit log keeps \
                 its key in the state directory"
            ),
            None => AuditLocation::State(state.to_path_buf()),
            Some(url) => AuditLocation::postgres(
                url,
                self.audit_key_file
                    .clone()
                    .unwrap_or_else(|| state.join(kura_audit::KEY_FILE)),
            ),
        })
    }

    /// Sets the server configuration's database (a flag or the environment wins over the file).
    pub fn apply(&self, config: &mut kura_server::ServerConfig) -> anyhow::Result<()> {
        if let Some(url) = self.url()? {
            config.database_url = Some(url.to_string());
        }
        if let Some(key) = &self.audit_key_file {
            config.audit.key_file = Some(key.clone());
        }
        Ok(())
    }
}

/// `PostgreSQL postgres://user@host:port/db` (no password) or `SQLite <state>/kura.sqlite`: for
/// messages that say which database a command used.
pub fn describe_store(location: &StoreLocation) -> String {
    match location {
        StoreLocation::State(dir) => format!("SQLite {}", dir.join("kura.sqlite").display()),
        StoreLocation::Postgres(url) => format!("PostgreSQL {}", kura_sql::label_of_url(url)),
    }
}

/// As `describe_store`, for the audit log.
pub fn describe_audit(location: &AuditLocation) -> String {
    match location {
        AuditLocation::State(dir) => format!("SQLite {}", dir.join("kura.sqlite").display()),
        AuditLocation::Postgres { url, .. } => {
            format!("PostgreSQL {}", kura_sql::label_of_url(url))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(url: Option<&str>, key: Option<&str>) -> DatabaseArgs {
        DatabaseArgs {
            database_url: url.map(str::to_string),
            audit_key_file: key.map(PathBuf::from),
        }
    }

    #[test]
    fn no_url_is_the_state_directory_and_a_url_is_postgres_everywhere() {
        let state = Path::new("/srv/kura");
        for none in [None, Some(""), Some("  ")] {
            let a = args(none, None);
            assert_eq!(
                a.store_location(state).unwrap(),
                StoreLocation::State(state.into())
            );
            assert_eq!(
                a.audit_location(state).unwrap(),
                AuditLocation::State(state.into())
            );
        }
        let url = "postgres://kura:s3cret@db:5432/kura";
        let a = args(Some(url), None);
        assert_eq!(
            a.audit_location(state).unwrap(),
            AuditLocation::postgres(url, "/srv/kura/audit-signing.key")
        );
        let described = describe_store(&a.store_location(state).unwrap());
        assert_eq!(described, "PostgreSQL postgres://kura@db:5432/kura");
        let a = args(Some(url), Some("/etc/kura/audit.key"));
        assert_eq!(
            a.audit_location(state).unwrap().key_file(),
            PathBuf::from("/etc/kura/audit.key")
        );
    }

    #[test]
    fn other_urls_and_a_lone_key_file_are_refused_without_the_password() {
        let e = args(Some("mysql://kura:s3cret@db/kura"), None)
            .url()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--database-url") && !e.contains("s3cret"), "{e}");
        let e = args(None, Some("k"))
            .audit_location(Path::new("s"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--audit-key-file"), "{e}");
    }
}
