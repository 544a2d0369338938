//! `kura state backup / check / restore`: backups of a state directory; `kura state keygen`: the
//! keys several nodes share (docs/operations.md).
//! Exit codes: 0 done (and the audit log intact); 1 the backup is damaged (nothing restored) or
//! the audit log is not intact; 2 usage or I/O error.

mod backup;
mod manifest;
mod restore;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use manifest::{AuditSummary, Damaged, Manifest};

#[derive(Subcommand)]
pub enum Command {
    /// Copies a state directory, consistently while the server runs, into a new directory with
    /// a manifest of every file's size and SHA-256 (written last).
    Backup {
        /// The state directory.
        #[arg(long)]
        state: PathBuf,
        /// The backup directory: new, or empty.
        #[arg(long)]
        to: PathBuf,
        /// Also copy the snapshot databases (`snapshots/*.duckdb`: large and immutable, so by
        /// default only their manifests are copied).
        #[arg(long)]
        with_snapshots: bool,
    },
    /// Checks a backup against its manifest (every file's size and SHA-256). Exit 0 intact,
    /// 1 damaged.
    Check {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
    },
    /// Creates the secrets a deployment shares between nodes, for a secret store: the audit
    /// log's signing key (`audit-signing.key`) and the explorer's secret (`explorer.key`).
    /// Prints the audit verifier key for supervisors. Never overwrites a file.
    Keygen {
        /// Directory to write the two files into (created, mode 0700).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restores a backup into a new (or empty) state directory: checks every file first, then
    /// copies, then verifies the restored audit log and prints its size and latest checkpoint.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// The state directory to create: new, or empty.
        #[arg(long)]
        state: PathBuf,
    },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let result = match command {
        Command::Backup {
            state,
            to,
            with_snapshots,
        } => run_backup(&backup::Options {
            state: &state,
            to: &to,
            with_snapshots,
        }),
        Command::Check { from } => Manifest::read(&from).and_then(|m| {
            m.check(&from)?;
            let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
            println!(
                "intact: {} files, {} bytes, backed up from {} at {}",
                m.files.len(),
                bytes,
                m.source,
                m.created_at
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Restore { from, state } => run_restore(&from, &state),
        Command::Keygen { out } => keygen(&out),
    };
    match result {
        Err(e) if e.downcast_ref::<Damaged>().is_some() => {
            eprintln!("NOT INTACT: {e}");
            Ok(ExitCode::from(1))
        }
        other => other,
    }
}

fn run_backup(options: &backup::Options) -> anyhow::Result<ExitCode> {
    let m = backup::backup(options)?;
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    println!(
        "backed up {} files ({} bytes) of {} into {}",
        m.files.len(),
        bytes,
        m.source,
        options.to.display()
    );
    for l in &m.left_out {
        println!(
            "left out (no --with-snapshots): {} ({} bytes)",
            l.path, l.bytes
        );
    }
    Ok(print_audit(&m.audit, "the backup's"))
}

fn run_restore(from: &std::path::Path, state: &std::path::Path) -> anyhow::Result<ExitCode> {
    let r = restore::restore(from, state)?;
    let m = &r.manifest;
    println!(
        "restored {} files into {} (backup of {} taken at {})",
        m.files.len(),
        state.display(),
        m.source,
        m.created_at
    );
    for l in &m.left_out {
        println!(
            "not in the backup: {} ({} bytes): copy it from your snapshot store, then check it \
             with `kura snapshot verify`",
            l.path, l.bytes
        );
    }
    print_audit(&r.audit, "the restored");
    if r.audit
        .as_ref()
        .is_some_and(|a| a.latest_checkpoint.is_some())
    {
        println!(
            "Compare this checkpoint with the last one a supervisor witnessed: if theirs is \
             larger, this restore rolled the log back (`kura audit verify --state {} \
             --trusted-checkpoint THEIRS` exits 3) and entries after this size are lost.",
            state.display()
        );
    }
    Ok(ExitCode::from(r.audit_exit))
}

/// Prints the log's size and latest checkpoint; exit 1 when the verifier found damage.
fn print_audit(audit: &Option<AuditSummary>, whose: &str) -> ExitCode {
    let Some(a) = audit else {
        println!("{whose} state holds no audit log");
        return ExitCode::SUCCESS;
    };
    let state = if a.intact { "intact" } else { "NOT INTACT" };
    println!(
        "{whose} audit log: {state}, {} entries, {} signed checkpoints",
        a.entries, a.checkpoints
    );
    if let Some(p) = &a.problem {
        println!("  {p}");
    }
    match (&a.latest_checkpoint, a.checkpoint_size()) {
        (Some(note), Some(size)) => {
            println!("latest signed checkpoint (tree size {size}):");
            print!("{note}");
            if a.entries > size {
                println!(
                    "({} entries after it are not signed yet; the server signs them when it \
                     opens the log)",
                    a.entries - size
                );
            }
        }
        _ => println!("no signed checkpoint yet"),
    }
    if a.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let audit = out.join(kura_audit::KEY_FILE);
    let explorer = out.join("explorer.key");
    for f in [&audit, &explorer] {
        if f.exists() {
            anyhow::bail!("{} exists: keygen never replaces a key", f.display());
        }
    }
    manifest::private_dir(out)?;
    // The name must be the log's origin (the default every node uses), or the log refuses it.
    let key = kura_audit::note::LogKey::load_or_create(
        &audit,
        &kura_audit::AuditOptions::default().origin,
    )?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&explorer)
        .with_context(|| format!("creating {}", explorer.display()))?;
    f.write_all(format!("{}\n", hex::encode(secret)).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", explorer.display()))?;
    manifest::sync_dir(out)?;
    println!("wrote {} and {}", audit.display(), explorer.display());
    println!(
        "audit verifier key (give it to supervisors): {}",
        key.verifier_key()
    );
    Ok(ExitCode::SUCCESS)
}
