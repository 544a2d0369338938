//! What every request handler shares: configuration, the stores, the audit log, the policies,
//! the query engine, the OpenID client, the sign-in limiter, the explorers and the running
//! queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kura_airlock::Airlock;
use kura_audit::AuditLog;
use kura_authz::Authorizer;
use kura_identity::oidc::OidcClient;
use kura_query::{CancelHandle, QueryEngine};
use kura_store::Store;

use crate::config::ServerConfig;
use crate::explorer::Explorers;
use crate::ratelimit::SigninLimiter;
use crate::snapshots::Snapshots;

pub type AppState = Arc<App>;

pub struct App {
    pub config: ServerConfig,
    /// `https://host:port` as browsers see it.
    pub origin: String,
    pub store: Arc<Store>,
    pub audit: Arc<AuditLog>,
    pub authz: Authorizer,
    pub engine: Arc<QueryEngine>,
    pub airlock: Arc<Airlock>,
    pub oidc: Option<OidcClient>,
    pub snapshots: Snapshots,
    pub limiter: SigninLimiter,
    pub explorers: Explorers,
    running: Mutex<HashMap<String, Running>>,
}

/// A query in flight, cancellable by its author.
#[derive(Clone)]
pub struct Running {
    pub user: String,
    pub project: String,
    pub cancel: CancelHandle,
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ServerConfig,
        store: Arc<Store>,
        audit: Arc<AuditLog>,
        authz: Authorizer,
        engine: Arc<QueryEngine>,
        airlock: Arc<Airlock>,
        oidc: Option<OidcClient>,
        explorers: Explorers,
    ) -> App {
        let origin = config.origin();
        let snapshots = Snapshots::new(config.state_dir.join("snapshots"));
        let limiter = SigninLimiter::new(
            config.signin.max_failures,
            std::time::Duration::from_secs(config.signin.window_seconds),
        );
        App {
            config,
            origin,
            store,
            audit,
            authz,
            engine,
            airlock,
            oidc,
            snapshots,
            limiter,
            explorers,
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn running(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        match self.running.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}
