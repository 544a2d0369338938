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
    /// `tls/` and the keys.
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    /// The origin browsers use (`https://host:port`); defaults to `https://<listen>`. Used for
    /// the Origin check and the OpenID redirect URL.
    pub public_url: Option<url::Url>,
    pub tls: TlsConfig,
    pub session: SessionConfig,
    pub signin: SigninConfig,
    pub query: QueryConfig,
    pub explorer: ExplorerConfig,
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
pub struct ExplorerConfig {
    /// The trial-feasibility explorer's secret (at least 32 bytes): it keys the cell-key
    /// perturbation, so it must stay the same for as long as the snapshots are served (a new key
    /// gives every cell fresh noise that can be averaged with the old) and be the same on every
    /// node. Default `<state>/keys/explorer.key`, created with 32 random bytes on first start.
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
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            tls: TlsConfig::default(),
            session: SessionConfig::default(),
            signin: SigninConfig::default(),
            query: QueryConfig::default(),
            explorer: ExplorerConfig::default(),
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
            ("local_accounts = false", "oidc"),
            ("[query]\nmax_rows_shown = \"many\"", "max_rows_shown"),
        ];
        for (text, field) in cases {
            match load(text) {
                Ok(_) => panic!("{text:?} was accepted"),
                Err(e) => assert!(e.to_string().contains(field), "{text:?}: {e}"),
            }
        }
    }
}
