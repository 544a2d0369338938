//! `kura account`: local accounts from the command line, for the first steward of a new
//! installation (later ones are made in the web UI). Audited like the UI's changes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use kura_audit::{AuditLog, AuditOptions, AuditSink, Event, EventKind};
use kura_store::{NewAccount, Store};

#[derive(Subcommand)]
pub enum Command {
    /// Creates a local account and prints its generated password once.
    Create {
        #[arg(long, default_value = "state")]
        state: PathBuf,
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
        #[arg(long)]
        id: String,
    },
    /// Disables an account; its sessions end.
    Disable {
        #[arg(long, default_value = "state")]
        state: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// Lists accounts.
    List {
        #[arg(long, default_value = "state")]
        state: PathBuf,
    },
}

const OPERATOR: &str = "kura-cli";

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create {
            state,
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
            let password = create(&state, &id, &name, &roles)?;
            println!("created {id}; password (shown once): {password}");
        }
        Command::ResetPassword { state, id } => {
            let store = Store::open(&state)?;
            if !matches!(store.local_credentials(&id)?, Some((_, Some(_)))) {
                bail!("no local account {id:?} in {}", state.display());
            }
            let password = kura_identity::password::generate_password()?;
            let hash = kura_identity::password::hash_password(&password)?;
            let audit = AuditLog::open(&state, AuditOptions::default())?;
            audit.append(
                Event::new(EventKind::AdminAction, OPERATOR)
                    .object(format!("account:{id}"))
                    .payload(serde_json::json!({"action": "account.reset_password", "id": id})),
            )?;
            store.set_password(&id, &hash)?;
            audit.close()?;
            println!("new password for {id} (shown once): {password}");
        }
        Command::Disable { state, id } => {
            let store = Store::open(&state)?;
            if store.account(&id)?.is_none() {
                bail!("no account {id:?} in {}", state.display());
            }
            let audit = AuditLog::open(&state, AuditOptions::default())?;
            audit.append(
                Event::new(EventKind::AdminAction, OPERATOR)
                    .object(format!("account:{id}"))
                    .payload(serde_json::json!({"action": "account.disable", "id": id})),
            )?;
            store.disable_account(&id)?;
            audit.close()?;
            println!("disabled {id}");
        }
        Command::List { state } => {
            for a in Store::open(&state)?.accounts()? {
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

/// Creates a local account with a generated password (audited first); returns the password.
pub fn create(
    state: &std::path::Path,
    id: &str,
    name: &str,
    roles: &[String],
) -> anyhow::Result<String> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let store = Store::open(state)?;
    if store.account(id)?.is_some() {
        bail!("account {id:?} already exists");
    }
    let password = kura_identity::password::generate_password()?;
    let hash = kura_identity::password::hash_password(&password)?;
    let audit = AuditLog::open(state, AuditOptions::default())?;
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
