//! `kura account`: local accounts from the command line, for the first steward of a new
//! installation (later ones are made in the web UI). Audited like the UI's changes. With
//! `--database-url` they work on the PostgreSQL database the server nodes share, while the
//! nodes run (the shared audit log takes several writers); on SQLite, with the server stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use kura_audit::{AuditLog, AuditOptions, AuditSink, Event, EventKind};
use kura_store::{NewAccount, Store};

use super::database::{describe_audit, describe_store, DatabaseArgs};

#[derive(Subcommand)]
pub enum Command {
    /// Creates a local account and prints its generated password once.
    Create {
        #[arg(long, default_value = "state")]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// researcher, checker, supervisor or steward (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// Gives a local account a new generated password (printed once); its sessions end.
    ResetPassword {
        #[arg(long, default_value = "state")]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        id: String,
    },
    /// Disables an account; its sessions end.
    Disable {
        #[arg(long, default_value = "state")]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        id: String,
    },
    /// Lists accounts.
    List {
        #[arg(long, default_value = "state")]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

const OPERATOR: &str = "kura-cli";

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create {
            state,
            db,
            id,
            name,
            roles,
        } => {
            if let Some(bad) = roles
                .iter()
                .find(|r| r.parse::<kura_authz::Role>().is_err())
            {
                bail!("unknown role {bad:?}: use researcher, checker, supervisor or steward");
            }
            let password = create(&state, &db, &id, &name, &roles)?;
            println!("created {id}; password (shown once): {password}");
        }
        Command::ResetPassword { state, db, id } => {
            let (store, at) = open_store(&state, &db)?;
            if !matches!(store.local_credentials(&id)?, Some((_, Some(_)))) {
                bail!("no local account {id:?} in {}", describe_store(&at));
            }
            let password = kura_identity::password::generate_password()?;
            let hash = kura_identity::password::hash_password(&password)?;
            let audit = open_audit(&state, &db)?;
            audit.append(
                Event::new(EventKind::AdminAction, OPERATOR)
                    .object(format!("account:{id}"))
                    .payload(serde_json::json!({"action": "account.reset_password", "id": id})),
            )?;
            store.set_password(&id, &hash)?;
            audit.close()?;
            println!("new password for {id} (shown once): {password}");
        }
        Command::Disable { state, db, id } => {
            let (store, at) = open_store(&state, &db)?;
            if store.account(&id)?.is_none() {
                bail!("no account {id:?} in {}", describe_store(&at));
            }
            let audit = open_audit(&state, &db)?;
            audit.append(
                Event::new(EventKind::AdminAction, OPERATOR)
                    .object(format!("account:{id}"))
                    .payload(serde_json::json!({"action": "account.disable", "id": id})),
            )?;
            store.disable_account(&id)?;
            audit.close()?;
            println!("disabled {id}");
        }
        Command::List { state, db } => {
            for a in open_store(&state, &db)?.0.accounts()? {
                println!(
                    "{}\t{}\t{}\t{}{}",
                    a.id,
                    a.name,
                    a.roles.join(","),
                    a.source.as_str(),
                    if a.disabled { "\tdisabled" } else { "" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The control plane where `db` says, and that location (for messages).
fn open_store(
    state: &Path,
    db: &DatabaseArgs,
) -> anyhow::Result<(Store, kura_store::StoreLocation)> {
    let at = db.store_location(state)?;
    let store = Store::open_at(&at)
        .with_context(|| format!("opening the accounts in {}", describe_store(&at)))?;
    Ok((store, at))
}

fn open_audit(state: &Path, db: &DatabaseArgs) -> anyhow::Result<AuditLog> {
    let at = db.audit_location(state)?;
    AuditLog::open_at(&at, AuditOptions::default())
        .with_context(|| format!("opening the audit log in {}", describe_audit(&at)))
}

/// Creates a local account with a generated password (audited first); returns the password.
pub fn create(
    state: &Path,
    db: &DatabaseArgs,
    id: &str,
    name: &str,
    roles: &[String],
) -> anyhow::Result<String> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let (store, at) = open_store(state, db)?;
    if store.account(id)?.is_some() {
        bail!("account {id:?} already exists in {}", describe_store(&at));
    }
    let password = kura_identity::password::generate_password()?;
    let hash = kura_identity::password::hash_password(&password)?;
    let audit = open_audit(state, db)?;
    audit.append(
        Event::new(EventKind::AdminAction, OPERATOR)
            .object(format!("account:{id}"))
            .payload(serde_json::json!({"action": "account.create", "id": id, "name": name, "roles": roles})),
    )?;
    store.create_account(
        &NewAccount {
            id,
            name,
            roles,
            password_hash: &hash,
        },
        chrono::Utc::now(),
    )?;
    audit.close()?;
    Ok(password)
}
