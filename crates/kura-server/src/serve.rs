//! Starting and stopping the service: policies validated (a policy error stops the start),
//! control-plane store, audit log and airlock opened where the configuration says (SQLite in
//! the state directory, or one PostgreSQL database shared with other nodes), query engine and
//! OpenID client ready, TLS bound;
//! on SIGTERM or Ctrl-C the server stops accepting, lets in-flight requests finish (their
//! audit appends included), then closes the audit log, which signs a final checkpoint.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use kura_airlock::Airlock;
use kura_audit::{AuditLog, AuditOptions};
use kura_authz::Authorizer;
use kura_identity::oidc::{OidcClient, OidcConfig};
use kura_query::{EngineConfig, QueryEngine};
use kura_store::Store;

use crate::config::ServerConfig;
use crate::error::ServeError;
use crate::router::router;
use crate::state::App;

/// What a started server tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub addr: SocketAddr,
    pub origin: String,
    /// The plain-HTTP Prometheus listener (`[metrics] listen`), when configured.
    pub metrics: Option<SocketAddr>,
}

/// A server that has opened everything and bound its port, not yet serving.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    tls: axum_server::tls_rustls::RustlsConfig,
    ready: Ready,
}

impl Server {
    pub async fn start(
        mut config: ServerConfig,
        engine: EngineConfig,
    ) -> Result<Server, ServeError> {
        config.check()?;
        let authz = match &config.authz_policies {
            Some(dir) => Authorizer::from_dir(dir),
            None => Authorizer::builtin(),
        }
        .map_err(|e| ServeError::Policies(e.to_string()))?;
        std::fs::create_dir_all(&config.state_dir).map_err(|source| ServeError::Io {
            path: config.state_dir.clone(),
            source,
        })?;
        let listener = TcpListener::bind(config.listen).map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServeError::Listen { addr, source })?;
        // Port 0 picks a free port; the origin must name the real one.
        config.listen = addr;
        let metrics_listener = match config.metrics.listen {
            None => None,
            Some(at) => {
                let l = TcpListener::bind(at)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|source| ServeError::Listen { addr: at, source })?;
                Some(l)
            }
        };
        let metrics_addr = match &metrics_listener {
            None => None,
            Some(l) => Some(l.local_addr().map_err(|source| ServeError::Listen {
                addr: config.listen,
                source,
            })?),
        };
        let traces_url =
            crate::otlp::traces_url(config.telemetry.otlp_endpoint.as_ref()).map_err(|why| {
                crate::error::ConfigError::Invalid {
                    field: "telemetry.otlp_endpoint".into(),
                    why,
                }
            })?;
        crate::metrics::global();
        let tls = crate::tls::rustls_config(&config).await?;
        let (store, audit, airlock) = open_stores(&config).await?;
        let engine = Arc::new(QueryEngine::new(engine)?);
        let oidc = match &config.oidc {
            None => None,
            Some(o) => {
                let redirect = format!("{}/auth/oidc/callback", config.origin());
                let oidc_config = OidcConfig {
                    issuer: o.issuer.clone(),
                    client_id: o.client_id.clone(),
                    client_secret: o.client_secret.clone(),
                    redirect_url: url::Url::parse(&redirect)
                        .map_err(|e| ServeError::Oidc(format!("redirect URL {redirect}: {e}")))?,
                    scopes: vec!["openid".into(), "profile".into(), "email".into()],
                    roles_claim: o.roles_claim.clone(),
                    allow_insecure_loopback: o.allow_insecure_loopback,
                };
                Some(
                    OidcClient::discover(oidc_config)
                        .await
                        .map_err(|e| ServeError::Oidc(format!("{}: {e}", o.issuer)))?,
                )
            }
        };
        let key_file = config.explorer_key_file();
        let key =
            crate::explorer::load_or_create_key(&key_file, config.explorer.key_file.is_none())
                .map_err(|e| ServeError::Explorer(e.to_string()))?;
        let explorers = crate::explorer::Explorers::new(key);
        let app = Arc::new(App::new(
            config, store, audit, authz, engine, airlock, oidc, explorers,
        ));
        if let Some(url) = traces_url {
            crate::otlp::start(url, addr.to_string()).map_err(|why| {
                crate::error::ConfigError::Invalid {
                    field: "telemetry.otlp_endpoint".into(),
                    why,
                }
            })?;
        }
        let ready = Ready {
            addr,
            origin: app.origin.clone(),
            metrics: metrics_addr,
        };
        Ok(Server {
            app,
            listener,
            metrics_listener,
            tls,
            ready,
        })
    }

    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (at most 30 s) and
    /// closes the audit log.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            stopper.graceful_shutdown(Some(Duration::from_secs(30)));
        });
        let service = router(self.app.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let addr = self.ready.addr;
        // Metrics are served until the HTTPS side has drained, so the drain can be watched.
        let metrics = match self.metrics_listener {
            None => None,
            Some(l) => {
                let at = self.ready.metrics.unwrap_or(addr);
                let l = tokio::net::TcpListener::from_std(l)
                    .map_err(|source| ServeError::Listen { addr: at, source })?;
                tracing::info!("metrics on http://{at}/metrics");
                let routes = crate::metrics::router(self.app.clone());
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    let served = axum::serve(l, routes)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("metrics listener {at} stopped: {e}");
                    }
                });
                Some((stop, task))
            }
        };
        let served = axum_server::from_tcp_rustls(self.listener, self.tls)
            .handle(handle)
            .serve(service)
            .await
            .map_err(|source| ServeError::Listen { addr, source });
        // Its connections hold the app too: they must end before the audit log can close.
        if let Some((stop, task)) = metrics {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("the metrics listener did not stop within 5 s");
            }
        }
        crate::otlp::flush(Duration::from_secs(5)).await;
        served?;
        let app = self.app;
        // Requests are done; queries still running in blocking tasks hold the app until they
        // end (their worker is killed by its own timeout at the latest).
        let audit = app.audit.clone();
        drop(app);
        tokio::task::spawn_blocking(move || {
            if let Ok(log) = Arc::try_unwrap(audit) {
                log.close()
            } else {
                Ok(())
            }
        })
        .await
        .map_err(|e| ServeError::Shutdown(e.to_string()))??;
        Ok(())
    }
}

/// The control plane, the audit log and the airlock, where the configuration says. Opened on a
/// blocking thread: PostgreSQL's synchronous client must not start inside the async runtime,
/// and the audit log reads every stored entry when it opens.
async fn open_stores(
    config: &ServerConfig,
) -> Result<(Arc<Store>, Arc<AuditLog>, Arc<Airlock>), ServeError> {
    let store_at = config.store_location();
    let audit_at = config.audit_location();
    let airlock_config = config.airlock_config();
    if config.database_url().is_none() && config.audit.key_file.is_some() {
        tracing::warn!(
            "[audit] key_file is ignored: a SQLite audit log keeps its key in the state directory"
        );
    }
    type Opened = (Arc<Store>, Arc<AuditLog>, Arc<Airlock>);
    tokio::task::spawn_blocking(move || -> Result<Opened, ServeError> {
        let store = Store::open_at(&store_at)?;
        let audit = AuditLog::open_at(&audit_at, AuditOptions::default())?;
        let airlock =
            Airlock::open(airlock_config).map_err(|e| ServeError::Airlock(e.to_string()))?;
        if store.is_postgres() {
            tracing::info!(
                database = store.label(),
                audit_key = %audit_at.key_file().display(),
                entries = audit.size(),
                "control plane, airlock and audit log in PostgreSQL (shared by every node)"
            );
        } else {
            tracing::info!(
                database = store.label(),
                "control plane and audit log in SQLite"
            );
        }
        Ok((Arc::new(store), Arc::new(audit), Arc::new(airlock)))
    })
    .await
    .map_err(|e| ServeError::Start(format!("opening the stores: {e}")))?
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The engine settings a server uses: `base` (which binary runs the workers) with the
/// configuration's query limits and idle-worker pool.
pub fn engine_config(config: &ServerConfig, base: EngineConfig) -> EngineConfig {
    EngineConfig {
        limits: config.query.limits(),
        max_idle_workers: config.query.idle_workers,
        ..base
    }
}

/// Starts with the running binary as the query worker and serves until a signal.
pub async fn serve(config: ServerConfig, on_ready: impl FnOnce(&Ready)) -> Result<(), ServeError> {
    let engine = engine_config(&config, EngineConfig::from_current_exe()?);
    let server = Server::start(config, engine).await?;
    on_ready(server.ready());
    server.run(shutdown_signal()).await
}
