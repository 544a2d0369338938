//! What every HTTPS benchmark needs before and around its measurement: the state directory
//! (the bench accounts' password, the snapshot `demo`, researcher accounts, projects and their
//! members, all reused when they exist) and the real server running in this process on its own
//! tokio runtime, with a second runtime for the clients.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use kura_query::EngineConfig;
use kura_store::{Member, NewAccount, Project, Store};

use super::load::Target;
use super::{BenchError, SnapshotSource, SNAPSHOT};
use crate::config::ServerConfig;
use crate::serve::Server;

/// Holds the bench accounts' random password; its presence marks a state dir made by the bench.
const PASSWORD_FILE: &str = "bench-password";

fn setup_err(what: &str, e: &dyn std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("{what}: {e}"))
}

/// A prepared state directory: the snapshot, its tables' row counts and the accounts' password.
pub(super) struct State {
    pub(super) snapshot: PathBuf,
    pub(super) rows: BTreeMap<String, u64>,
    pub(super) password: String,
    pub(super) store: Store,
}

/// Creates (or reuses) the state directory: password file, snapshot `demo` from `source`, the
/// control-plane store.
pub(super) fn prepare_state(state: &Path, source: &SnapshotSource) -> Result<State, BenchError> {
    prepare_state_at(
        state,
        source,
        &kura_store::StoreLocation::State(state.to_path_buf()),
    )
}

/// `prepare_state` with the control-plane store at `store` (PostgreSQL for `kura bench load`).
pub(super) fn prepare_state_at(
    state: &Path,
    source: &SnapshotSource,
    store: &kura_store::StoreLocation,
) -> Result<State, BenchError> {
    std::fs::create_dir_all(state).map_err(|e| setup_err(&state.display().to_string(), &e))?;
    check_state_dir(state)?;
    let password_file = state.join(PASSWORD_FILE);
    let password = match std::fs::read_to_string(&password_file) {
        Ok(p) => p.trim().to_string(),
        Err(_) => {
            let p = kura_identity::password::generate_password()
                .map_err(|e| setup_err("password", &e))?;
            crate::tls::write_private(&password_file, p.as_bytes())
                .map_err(|e| setup_err("password file", &e))?;
            p
        }
    };
    let snapshot = state.join("snapshots").join(format!("{SNAPSHOT}.duckdb"));
    install_snapshot(source, state, &snapshot)?;
    let manifest = kura_snapshot::Manifest::read(&kura_snapshot::manifest_path(&snapshot))
        .map_err(|e| setup_err("snapshot manifest", &e))?;
    let rows = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.rows))
        .collect();
    let store = Store::open_at(store).map_err(|e| setup_err("store", &e))?;
    Ok(State {
        snapshot,
        rows,
        password,
        store,
    })
}

impl State {
    /// Researcher accounts `ids` with the bench password; existing ones are kept.
    pub(super) fn ensure_accounts(&self, ids: &[String]) -> Result<(), BenchError> {
        let now = Utc::now();
        let roles = vec!["researcher".to_string()];
        let mut hash = None;
        for id in ids {
            if self
                .store
                .account(id)
                .map_err(|e| setup_err("store", &e))?
                .is_some()
            {
                continue;
            }
            // Hashing is deliberately slow: once for all new accounts.
            if hash.is_none() {
                hash = Some(
                    kura_identity::password::hash_password(&self.password)
                        .map_err(|e| setup_err("password hash", &e))?,
                );
            }
            let new = NewAccount {
                id,
                name: &format!("Benchmark {id}"),
                roles: &roles,
                password_hash: hash.as_deref().unwrap_or_default(),
            };
            self.store
                .create_account(&new, now)
                .map_err(|e| setup_err("account", &e))?;
        }
        Ok(())
    }

    /// Project `id` on the snapshot `demo` granting `tables` (created if missing; an existing
    /// one is used as it is), with `members` as researchers.
    pub(super) fn ensure_project(
        &self,
        id: &str,
        description: &str,
        tables: &BTreeMap<String, Vec<String>>,
        members: &[String],
    ) -> Result<Project, BenchError> {
        let now = Utc::now();
        let project = match self.store.project(id).map_err(|e| setup_err("store", &e))? {
            Some(p) => p,
            None => {
                let p = Project {
                    id: id.to_string(),
                    title: format!("Benchmark {id}"),
                    description: description.into(),
                    snapshot: SNAPSHOT.into(),
                    tables: tables.clone(),
                    starts: now - chrono::Duration::days(1),
                    expires: now + chrono::Duration::days(365),
                    created_by: "kura-bench".into(),
                    created_at: now,
                };
                self.store
                    .create_project(&p)
                    .map_err(|e| setup_err("project", &e))?;
                p
            }
        };
        for user in members {
            let member = Member {
                user: user.clone(),
                role: "researcher".into(),
                expires: project.expires,
            };
            self.store
                .set_member(&project.id, &member)
                .map_err(|e| setup_err("member", &e))?;
        }
        Ok(project)
    }
}

/// Refuses a state directory holding a Kura state the benchmark did not create: it adds
/// accounts whose password it keeps in the clear there.
pub fn check_state_dir(state: &Path) -> Result<(), BenchError> {
    if state.join(kura_store::DB_FILE).exists() && !state.join(PASSWORD_FILE).exists() {
        return Err(BenchError::Setup(format!(
            "{} holds a Kura state the benchmark did not create; the benchmark adds accounts \
             with a password stored in the clear, so give it a new directory",
            state.display()
        )));
    }
    Ok(())
}

fn install_snapshot(
    source: &SnapshotSource,
    state: &Path,
    target: &Path,
) -> Result<(), BenchError> {
    let err = setup_err;
    let dir = state.join("snapshots");
    std::fs::create_dir_all(&dir).map_err(|e| err(&dir.display().to_string(), &e))?;
    match source {
        SnapshotSource::Installed if target.is_file() => Ok(()),
        SnapshotSource::Installed => Err(BenchError::Setup(format!(
            "{} does not exist: give --snapshot FILE or let the benchmark build one",
            target.display()
        ))),
        SnapshotSource::File(file) => {
            for (from, to) in [
                (file.clone(), target.to_path_buf()),
                (
                    kura_snapshot::manifest_path(file),
                    kura_snapshot::manifest_path(target),
                ),
            ] {
                std::fs::copy(&from, &to).map_err(|e| err(&from.display().to_string(), &e))?;
            }
            Ok(())
        }
        SnapshotSource::Build { .. } if target.is_file() => Ok(()),
        SnapshotSource::Build { raw, policy } => {
            let key_file = state.join("keys").join("pseudonym.key");
            if !key_file.exists() {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| err("random key", &e))?;
                if let Some(d) = key_file.parent() {
                    std::fs::create_dir_all(d).map_err(|e| err("keys", &e))?;
                }
                crate::tls::write_private(&key_file, &key).map_err(|e| err("key file", &e))?;
            }
            let options = kura_snapshot::BuildOptions {
                raw_dir: raw.clone(),
                policy: policy.clone(),
                key_file,
                out: target.to_path_buf(),
                release_id: Some("bench".into()),
            };
            kura_snapshot::build(&options, &mut |_| {}).map_err(|e| err("snapshot build", &e))?;
            Ok(())
        }
    }
}

/// The server of a state directory, configured as `kura serve` would be on 127.0.0.1 with a
/// free port and the configuration's defaults, not yet started.
pub(super) struct InProcess {
    config: ServerConfig,
    /// The engine as the server uses it (its limits and idle-worker pool applied).
    pub(super) engine: EngineConfig,
}

fn runtime(name: &str, threads: Option<usize>) -> Result<tokio::runtime::Runtime, BenchError> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n);
    }
    b.enable_all()
        .thread_name(name)
        .build()
        .map_err(|e| BenchError::Setup(format!("async runtime: {e}")))
}

impl InProcess {
    /// `engine` starts the workers (`EngineConfig::from_current_exe` in `kura`).
    pub(super) fn new(state_dir: &Path, engine: EngineConfig) -> Result<InProcess, BenchError> {
        let config = ServerConfig {
            state_dir: state_dir.to_path_buf(),
            listen: ([127, 0, 0, 1], 0).into(),
            ..ServerConfig::default()
        };
        config
            .check()
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let engine = crate::serve::engine_config(&config, engine);
        Ok(InProcess { config, engine })
    }

    /// Starts the server on its own runtime (as under `kura serve`), calls `measure` with the
    /// clients' view of it and a second runtime for the clients, then stops the server (which
    /// closes the audit log) and returns what `measure` returned.
    pub(super) fn serve<T>(
        &self,
        password: &str,
        measure: impl FnOnce(&Target, &tokio::runtime::Runtime) -> Result<T, BenchError>,
    ) -> Result<T, BenchError> {
        let server_rt = runtime("kura-server", None)?;
        let client_rt = runtime("bench-client", Some(2))?;
        let server = server_rt.block_on(Server::start(self.config.clone(), self.engine.clone()))?;
        let origin = server.ready().origin.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = server_rt.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let measured = std::fs::read(self.config.state_dir.join("tls/cert.pem"))
            .map_err(|e| BenchError::Client(format!("reading the server certificate: {e}")))
            .and_then(|pem| {
                let target = Target {
                    origin,
                    pem,
                    password: password.to_string(),
                };
                measure(&target, &client_rt)
            });
        drop(client_rt);
        let _ = stop.send(());
        let served = server_rt.block_on(serving);
        drop(server_rt);
        let measured = measured?;
        served.map_err(|e| BenchError::Client(format!("server task: {e}")))??;
        Ok(measured)
    }
}
