//! `kura.toml`: where the state lives, where to listen, TLS, session timeouts, sign-in limits,
//! query limits and the OpenID provider. Every field has an embedded default, so an empty file
//! (or none) serves the state directory on 127.0.0.1:8443 with a self-signed certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Holds `kura.sqlite` (control plane and audit log), `snapshots/`, `results/`, `outputs/`,
    /// `tls/` and the keys. Nodes sharing a `database_url` share this directory too.
    pub state_dir: PathBuf,
    /// `postgres://user@host:port/db`: the control plane, the airlock's tables and the audit log
    /// in one PostgreSQL database that several nodes share. Absent or empty: SQLite
    /// (`<state>/kura.sqlite`), one node. `KURA_DATABASE_URL` overrides it (`kura serve`).
    pub database_url: Option<String>,
    pub audit: AuditConfig,
    pub listen: SocketAddr,
    /// The origin browsers use (`https://host:port`); defaults to `https://<listen>`. Used for
    /// the Origin check and the OpenID redirect URL.
    pub public_url: Option<url::Url>,
    /// Reverse proxies (CIDR blocks or addresses) whose `X-Forwarded-For` gives the client's
    /// address for the sign-in limit and audit entries (`client_addr.rs`); empty: the TCP peer.
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    pub tls: TlsConfig,
    pub session: SessionConfig,
    pub signin: SigninConfig,
    pub query: QueryConfig,
    pub explorer: ExplorerConfig,
    /// The Prometheus listener (`docs/server.md#metrics`); off when absent.
    pub metrics: MetricsConfig,
    /// Trace export (`docs/server.md#traces`).
    pub telemetry: TelemetryConfig,
    pub oidc: Option<OidcSection>,
    /// Directory with `kura.cedarschema` and `*.cedar`; default: the policies built into the
    /// binary (the repository's `policies/authz/`).
    pub authz_policies: Option<PathBuf>,
    /// Local (password) accounts may sign in.
    pub local_accounts: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain and private key; when both are absent a self-signed certificate
    /// for the listen address and `localhost` is generated once under `<state>/tls/`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session unused this long ends (default 30 minutes).
    pub idle_seconds: i64,
    /// A session ends this long after sign-in, used or not (default 12 hours).
    pub absolute_seconds: i64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_seconds: 30 * 60,
            absolute_seconds: 12 * 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigninConfig {
    /// Failed sign-ins allowed per account name, and per client address, in `window_seconds`.
    pub max_failures: u32,
    pub window_seconds: u64,
}

impl Default for SigninConfig {
    fn default() -> Self {
        SigninConfig {
            max_failures: 5,
            window_seconds: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Rows of a result sent to the browser.
    pub max_rows_shown: usize,
    pub timeout_seconds: u64,
    pub max_rows: u64,
    pub max_bytes: u64,
    pub memory_limit_mib: u64,
    pub threads: u32,
    /// Confined workers kept idle, one per (user, project, grant) that queried recently, so
    /// a returning user's next query skips the worker's start-up.
    pub idle_workers: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_rows_shown: 1000,
            timeout_seconds: 60,
            max_rows: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            memory_limit_mib: 2048,
            threads: 2,
            idle_workers: 64,
        }
    }
}

impl QueryConfig {
    /// The sandbox limits of one query.
    pub fn limits(&self) -> kura_query::Limits {
        kura_query::Limits {
            timeout_ms: self.timeout_seconds.saturating_mul(1000),
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            memory_limit_mib: self.memory_limit_mib,
            threads: self.threads,
            ..kura_query::Limits::default()
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served, in plain HTTP and without authentication, for
    /// Prometheus on a private network (e.g. `127.0.0.1:9464`); never the researchers' port.
    /// Absent: no metrics listener.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (e.g. `http://127.0.0.1:4318`); spans are posted to
    /// `<otlp_endpoint>/v1/traces`. Absent: `OTEL_EXPORTER_OTLP_ENDPOINT`, else no export.
    pub otlp_endpoint: Option<url::Url>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplorerConfig {
    /// The trial-feasibility explorer's secret (at least 32 bytes): it keys the cell-key
    /// perturbation, so it must stay the same for as long as the snapshots are served (a new key
    /// gives every cell fresh noise that can be averaged with the old) and be the same on every
    /// node. Default `<state>/keys/explorer.key`, created with 32 random bytes on first start.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The audit log's signing key (PostgreSQL only): every node needs a copy of the same
    /// file. Default `<state>/audit-signing.key`, created by the first node of an empty log.
    /// A SQLite log always keeps its key there.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    pub issuer: url::Url,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Text of the sign-in button.
    #[serde(default = "default_label")]
    pub label: String,
    /// Claim of the ID token holding the user's Kura roles.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Allow an `http://` issuer on a loopback address (tests only).
    #[serde(default)]
    pub allow_insecure_loopback: bool,
}

fn default_label() -> String {
    "OpenID Connect".into()
}

fn default_roles_claim() -> String {
    "kura_roles".into()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            state_dir: PathBuf::from("state"),
            database_url: None,
            audit: AuditConfig::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            trusted_proxies: crate::client_addr::TrustedProxies::default(),
            tls: TlsConfig::default(),
            session: SessionConfig::default(),
            signin: SigninConfig::default(),
            query: QueryConfig::default(),
            explorer: ExplorerConfig::default(),
            metrics: MetricsConfig::default(),
            telemetry: TelemetryConfig::default(),
            oidc: None,
            authz_policies: None,
            local_accounts: true,
        }
    }
}

impl ServerConfig {
    /// Reads a config file; relative paths in it are relative to the file's directory.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: ServerConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut config.state_dir);
        if let Some(p) = config.tls.cert.as_mut() {
            rebase(p);
        }
        if let Some(p) = config.tls.key.as_mut() {
            rebase(p);
        }
        if let Some(p) = config.authz_policies.as_mut() {
            rebase(p);
        }
        if let Some(p) = config.explorer.key_file.as_mut() {
            rebase(p);
        }
        if let Some(p) = config.audit.key_file.as_mut() {
            rebase(p);
        }
        config.check()?;
        Ok(config)
    }

    /// Refuses settings that cannot work, naming the field.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, why: &str| {
            Err(ConfigError::Invalid {
                field: field.to_string(),
                why: why.to_string(),
            })
        };
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("tls", "give both cert and key, or neither");
        }
        if self.session.idle_seconds <= 0 || self.session.absolute_seconds <= 0 {
            return bad("session", "timeouts must be positive");
        }
        if self.signin.max_failures == 0 || self.signin.window_seconds == 0 {
            return bad("signin", "max_failures and window_seconds must be positive");
        }
        if self.query.max_rows_shown == 0 || self.query.timeout_seconds == 0 {
            return bad(
                "query",
                "max_rows_shown and timeout_seconds must be positive",
            );
        }
        if let Some(u) = &self.public_url {
            if u.scheme() != "https" {
                return bad("public_url", "must be an https:// URL");
            }
        }
        if let Some(url) = &self.database_url {
            if let Err(why) = check_database_url(url) {
                return bad("database_url", &why);
            }
        }
        if let Some(u) = &self.telemetry.otlp_endpoint {
            if let Err(why) = crate::otlp::check_endpoint(u) {
                return bad("telemetry.otlp_endpoint", &why);
            }
        }
        if self
            .metrics
            .listen
            .is_some_and(|m| m == self.listen && m.port() != 0)
        {
            return bad(
                "metrics.listen",
                "must differ from listen: metrics are never served on the HTTPS port",
            );
        }
        if !self.local_accounts && self.oidc.is_none() {
            return bad(
                "oidc",
                "with local_accounts = false an [oidc] provider is required",
            );
        }
        Ok(())
    }

    /// The origin browsers use, without a trailing slash.
    pub fn origin(&self) -> String {
        match &self.public_url {
            Some(u) => u.origin().ascii_serialization(),
            None => format!("https://{}", self.listen),
        }
    }

    /// The PostgreSQL URL, or None for SQLite in the state directory (also when empty).
    pub fn database_url(&self) -> Option<&str> {
        self.database_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
    }

    /// Where the control plane lives.
    pub fn store_location(&self) -> kura_store::StoreLocation {
        kura_store::StoreLocation::from_config(&self.state_dir, self.database_url())
    }

    /// Where the audit log lives, with its signing key file.
    pub fn audit_location(&self) -> kura_audit::AuditLocation {
        match self.database_url() {
            None => kura_audit::AuditLocation::State(self.state_dir.clone()),
            Some(url) => kura_audit::AuditLocation::postgres(
                url,
                self.audit
                    .key_file
                    .clone()
                    .unwrap_or_else(|| self.state_dir.join(kura_audit::KEY_FILE)),
            ),
        }
    }

    /// The airlock's settings: its files in the state directory, its tables where the control
    /// plane's are.
    pub fn airlock_config(&self) -> kura_airlock::AirlockConfig {
        kura_airlock::AirlockConfig::new(&self.state_dir).with_database_url(self.database_url())
    }

    /// Where the explorer's secret is read from (and created, for the default path).
    pub fn explorer_key_file(&self) -> PathBuf {
        self.explorer
            .key_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join("keys").join("explorer.key"))
    }

    pub fn session_limits(&self) -> kura_store::SessionLimits {
        kura_store::SessionLimits {
            idle: chrono::Duration::seconds(self.session.idle_seconds),
            absolute: chrono::Duration::seconds(self.session.absolute_seconds),
        }
    }
}

/// Refuses a `database_url` that is not a PostgreSQL URL; the reason never repeats the URL
/// (it may hold a password).
pub fn check_database_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(());
    }
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(()),
        Some(other) if other.len() <= 20 && other.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Err(format!(
                "{other}:// is not supported: give a PostgreSQL URL \
                 (postgres://user@host:port/db), or leave it out for SQLite in the state directory"
            ))
        }
        _ => Err(
            "not a URL: give a PostgreSQL URL (postgres://user@host:port/db), or leave \
                  it out for SQLite in the state directory"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ServerConfig, ConfigError> {
        let dir = tempfile::tempdir().map_err(|source| ConfigError::Read {
            path: PathBuf::from("tmp"),
            source,
        })?;
        let path = dir.path().join("kura.toml");
        std::fs::write(&path, text).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let c = ServerConfig::load(&path)?;
        assert!(c.state_dir.starts_with(dir.path()), "relative to the file");
        Ok(c)
    }

    #[test]
    fn an_empty_file_is_the_embedded_defaults() {
        let c = load("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(
            c.store_location(),
            kura_store::StoreLocation::State(c.state_dir.clone()),
            "SQLite in the state directory unless database_url is set"
        );
        assert_eq!(
            c.audit_location(),
            kura_audit::AuditLocation::State(c.state_dir.clone())
        );
        assert_eq!(c.origin(), "https://127.0.0.1:8443");
        assert_eq!(c.query.max_rows_shown, 1000);
        assert!(c.oidc.is_none() && c.local_accounts);
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            ("listne = \"127.0.0.1:1\"", "listne"),
            ("[session]\nidle_seconds = 0", "session"),
            ("[tls]\ncert = \"a.pem\"", "tls"),
            ("public_url = \"http://x.example\"", "public_url"),
            ("trusted_proxies = [\"10.0.0/8\"]", "\"10.0.0/8\""),
            ("local_accounts = false", "oidc"),
            ("[query]\nmax_rows_shown = \"many\"", "max_rows_shown"),
            ("[metrics]\nlisten = \"localhost\"", "listen"),
            (
                "listen = \"127.0.0.1:9000\"\n[metrics]\nlisten = \"127.0.0.1:9000\"",
                "metrics.listen",
            ),
            (
                "[telemetry]\notlp_endpoint = \"grpc://127.0.0.1:4317\"",
                "otlp_endpoint",
            ),
            (
                "database_url = \"mysql://kura:s3cret@db/kura\"",
                "database_url",
            ),
            ("database_url = \"kura:s3cret@db/kura\"", "database_url"),
            ("[audit]\nkey = \"k\"", "key"),
        ];
        for (text, field) in cases {
            match load(text) {
                Ok(_) => panic!("{text:?} was accepted"),
                Err(e) => assert!(e.to_string().contains(field), "{text:?}: {e}"),
            }
        }
        let e = load("database_url = \"mysql://kura:s3cret@db/kura\"")
            .err()
            .unwrap();
        assert!(
            !e.to_string().contains("s3cret"),
            "the password is never shown: {e}"
        );
    }

    #[test]
    fn database_url_selects_postgres_for_every_store_and_empty_means_sqlite() {
        let c = load("database_url = \"\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.database_url(), None, "empty is SQLite");
        let c = load(
            "database_url = \"postgresql://kura@db:5432/kura\"\n[audit]\nkey_file = \"k/audit.key\"",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let url = "postgresql://kura@db:5432/kura";
        assert_eq!(
            c.store_location(),
            kura_store::StoreLocation::Postgres(url.into())
        );
        let kura_audit::AuditLocation::Postgres { url: u, key_file } = c.audit_location() else {
            panic!("{:?}", c.audit_location());
        };
        assert_eq!(u, url);
        assert!(
            key_file.ends_with("k/audit.key") && key_file.is_absolute(),
            "relative to the file: {key_file:?}"
        );
        assert_eq!(
            c.airlock_config().database,
            kura_airlock::AirlockDatabase::Postgres(url.into())
        );
        let c =
            load("database_url = \"postgres://kura@db/kura\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.audit_location().key_file(),
            c.state_dir.join("audit-signing.key"),
            "the default key file is the state directory's"
        );
    }
}
