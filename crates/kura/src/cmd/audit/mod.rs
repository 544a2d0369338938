//! `kura audit ...`: verify, checkpoint, public-key, proof, note, search (the benchmark is in
//! `bench.rs`), on the state directory's SQLite log or, with `--database-url`, on the
//! PostgreSQL log the server nodes share.
//! Exit codes of `verify`: 0 intact, 1 tampering, 2 usage or I/O error, 3 fork or rollback.

mod bench;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kura_audit::{
    AuditLocation, AuditLog, AuditOptions, AuditReader, AuditSink, Event, EventKind, SearchFilter,
};

use super::database::{describe_audit, DatabaseArgs};

pub use bench::{bench, BenchArgs};

#[derive(Subcommand)]
pub enum Command {
    /// Rebuild the tree from the stored leaves and check everything (exit 0/1/2/3).
    Verify {
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
        /// A checkpoint saved earlier; the log must be an append-only extension of it.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// Verifier key to check signatures with (default: the log's own key file).
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the latest signed checkpoint.
    Checkpoint {
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Print the verifier key (`name+keyid+base64key`).
    PublicKey {
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Print a `c2sp.org/tlog-proof@v1` receipt for one entry.
    Proof {
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        index: u64,
    },
    /// Verify a `c2sp.org/tlog-proof@v1` receipt (e.g. a release's) with the log's public key
    /// alone; prints the entry. Exit 0 valid, 1 not valid.
    VerifyReceipt {
        /// The receipt file.
        file: PathBuf,
        /// The log's verifier key (`kura audit public-key`), obtained independently.
        #[arg(long)]
        key: String,
    },
    /// Append an operator annotation (e.g. "maintenance started").
    Note {
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        actor: String,
        text: String,
    },
    /// Search entries; `--json` prints one object per line with the exact leaf bytes.
    Search {
        #[arg(long)]
        state: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long = "type")]
        kind: Option<String>,
        /// RFC 3339 time, inclusive.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time, exclusive.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Crash-test child: append forever, print acknowledged indices.
    #[command(hide = true)]
    Stress {
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value_t = 16)]
        writers: usize,
    },
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    kura_audit::leaf::parse_rfc3339_micros(s)
        .with_context(|| format!("{s:?} is not an RFC 3339 time (e.g. 2026-11-25T09:00:00Z)"))
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Verify {
            state,
            db,
            trusted_checkpoint,
            public_key,
            json,
        } => verify(
            &db.audit_location(&state)?,
            trusted_checkpoint.as_deref(),
            public_key.as_deref(),
            json,
        ),
        Command::Checkpoint { state, db } => {
            let at = db.audit_location(&state)?;
            let cp = open_reader(&at)?.latest_checkpoint()?.with_context(|| {
                format!(
                    "the log in {} has no signed checkpoint yet",
                    describe_audit(&at)
                )
            })?;
            print!("{}", cp.note);
            Ok(ExitCode::SUCCESS)
        }
        Command::PublicKey { state, db } => {
            println!("{}", db.audit_location(&state)?.verifier_key()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Proof { state, db, index } => {
            print!(
                "{}",
                open_reader(&db.audit_location(&state)?)?.receipt(index)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyReceipt { file, key } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the receipt {}", file.display()))?;
            let key = kura_audit::verify::note::VerifierKey::parse(&key)
                .map_err(|e| anyhow::anyhow!("the verifier key: {e}"))?;
            match kura_audit::verify::note::verify_receipt(&text, &key) {
                Ok(r) => {
                    let leaf = kura_audit::leaf::Leaf::decode(&r.leaf)
                        .map_err(|e| anyhow::anyhow!("the receipt's leaf: {e}"))?;
                    println!(
                        "valid: entry {} ({} by {}, objects {}) is in the log of {} at size {}",
                        r.index,
                        leaf.kind,
                        leaf.actor,
                        leaf.objects.join(","),
                        r.checkpoint.origin,
                        r.checkpoint.size
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("NOT VALID: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Note {
            state,
            db,
            actor,
            text,
        } => {
            let at = db.audit_location(&state)?;
            let log = AuditLog::open_at(&at, AuditOptions::default())
                .with_context(|| format!("opening the audit log in {}", describe_audit(&at)))?;
            let a = log.append(
                Event::new(EventKind::OperatorNote, actor)
                    .payload(serde_json::json!({ "text": text })),
            )?;
            log.close()?;
            println!("{}", a.index);
            Ok(ExitCode::SUCCESS)
        }
        Command::Search {
            state,
            db,
            actor,
            project,
            kind,
            since,
            until,
            json,
        } => {
            let filter = SearchFilter {
                actor,
                project,
                kind,
                since_micros: since.as_deref().map(parse_time).transpose()?,
                until_micros: until.as_deref().map(parse_time).transpose()?,
            };
            let mut out = std::io::stdout().lock();
            open_reader(&db.audit_location(&state)?)?.search(&filter, &mut |hit| {
                let line = if json {
                    hit.to_json().to_string()
                } else {
                    let l = &hit.leaf;
                    format!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        hit.index,
                        kura_audit::leaf::format_micros(l.timestamp_micros),
                        l.kind,
                        l.actor,
                        l.project.as_deref().unwrap_or("-"),
                        hit.payload
                            .as_ref()
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "(erased)".into())
                    )
                };
                writeln!(out, "{line}").map_err(|e| kura_audit::AuditError::Io {
                    path: "stdout".into(),
                    source: e,
                })
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stress { state, writers } => {
            kura_audit::stress::run_child(&state, writers)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A read-only view of the log; the error says which database it tried.
fn open_reader(at: &AuditLocation) -> anyhow::Result<AuditReader> {
    AuditReader::open_at(at)
        .with_context(|| format!("opening the audit log in {}", describe_audit(at)))
}

fn verify(
    at: &AuditLocation,
    trusted: Option<&Path>,
    key: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let trusted_text = trusted
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let report = kura_audit::verify::verify_at(at, key, trusted_text.as_deref())
        .with_context(|| format!("verifying the audit log in {}", describe_audit(at)))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        if let Some((index, what)) = &report.tampering {
            println!("TAMPERED: first bad entry {index}: {what}");
        }
        if let Some(c) = &report.conflict {
            println!("FORK OR ROLLBACK: {}", c.what);
            println!("--- trusted checkpoint ---\n{}", c.trusted_checkpoint);
            match &c.log_checkpoint {
                Some(l) => println!("--- log's checkpoint ---\n{l}"),
                None => println!("--- the log has no checkpoint ---"),
            }
        }
        if report.intact() {
            println!(
                "OK: {} entries, {} checkpoints, {} payloads erased ({})",
                report.entries,
                report.checkpoints,
                report.erased_payloads,
                describe_audit(at)
            );
        }
    }
    Ok(ExitCode::from(report.exit_code()))
}
