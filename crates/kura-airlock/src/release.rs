//! Release: an approved output is checked once more, written as its protected table with a
//! signed manifest under `<state>/releases/<id>/`, and its published cells go into the ledger.
//!
//! Order (all in one write transaction that first locks the review, then the snapshot's ledger,
//! so that no other release from the snapshot checks or records in between, on any node):
//! re-read and hash-check the staged file; re-run the rule pack against the ledger; if the
//! protected table is not the one the checkers approved (e.g. an earlier release now makes a
//! cell a differencing risk), nothing is written and the review goes back to
//! `changes_requested`. Otherwise the CSV, `manifest.json` and `manifest.sig` are written into a
//! temporary directory (each file fsynced, then the directory), the ledger rows, the release row
//! and the state change are inserted, the directory is renamed into place, and the transaction
//! commits. A failure before the commit removes what was written and rolls back; a crash (or a
//! failed commit) between the rename and the commit leaves a directory without a release row,
//! which the next release of that output moves aside (`releases/.orphaned/`) before writing its
//! own.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kura_audit::note::LogKey;
use kura_sdc::{Action, MeasureKind, ReleasedCell, Report, StagedTable};
use serde::{Deserialize, Serialize};

use crate::airlock::{load, Airlock};
use crate::error::AirlockError;
use crate::ledger::{self, ReleaseRecord};
use crate::reviews::{self, Load};
use crate::staged::sha256_hex;
use crate::store;
use crate::workflow::State;
use kura_sql::Sql;

pub const RELEASES_DIR: &str = "releases";
pub const MANIFEST_FILE: &str = "manifest.json";
/// The C2SP signed note over `manifest.json`'s exact bytes.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// `<state>/keys/release-signing.key`.
pub const KEY_FILE: &str = "release-signing.key";
pub const MANIFEST_FORMAT: &str = "kura-release/1";

/// What was released, by whom, from what. Its canonical text (pretty JSON in this field order,
/// plus a newline) is `manifest.json` and the body of the signed note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub output_id: String,
    pub project: String,
    pub title: String,
    pub author: String,
    /// The checkers who approved in the deciding round.
    pub reviewers: Vec<String>,
    pub round: u32,
    /// The released CSV, in the same directory.
    pub file: String,
    pub file_sha256: String,
    /// The staged Arrow file the table came from.
    pub output_sha256: String,
    pub query_id: String,
    /// SHA-256 of the SQL text.
    pub query_sha256: String,
    pub snapshot_sha256: String,
    pub rule_pack: String,
    pub rule_pack_version: String,
    /// RFC 3339 UTC.
    pub released_at: String,
}

impl Manifest {
    pub fn canonical_text(&self) -> Result<String, AirlockError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| AirlockError::Corrupt {
            what: "manifest",
            why: e.to_string(),
        })?;
        text.push('\n');
        Ok(text)
    }
}

/// The result of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub manifest_sha256: String,
    /// The signed note (the content of `manifest.sig`).
    pub signature: String,
    /// Count cells recorded in the ledger.
    pub cells_recorded: usize,
}

/// A released file, read and hash-checked, for the server to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedFile {
    pub path: PathBuf,
    pub file_name: String,
    pub sha256: String,
    /// Exactly the bytes that were checked: send these, not the file read again.
    pub bytes: Vec<u8>,
}

/// What a release transaction ends with; both commit.
enum Step {
    Released(Box<Release>),
    /// The check no longer gives what was approved: the review went back to the author.
    Refused(String),
}

impl Airlock {
    /// Releases an approved output (see the module comment for the order of steps).
    pub fn release(&self, output_id: &str, now: DateTime<Utc>) -> Result<Release, AirlockError> {
        match self.db().write(|c| self.release_in(c, output_id, now))? {
            Step::Released(release) => Ok(*release),
            Step::Refused(reason) => Err(AirlockError::CheckChanged {
                output: output_id.to_string(),
                reason,
            }),
        }
    }

    /// The release inside its write transaction. Whatever fails before the end removes the
    /// files it wrote, so that the transaction can be rolled back (and, on PostgreSQL after a
    /// deadlock, run again).
    fn release_in(
        &self,
        c: &mut dyn Sql,
        output_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Step, AirlockError> {
        // The review's row first (a second release of the same output waits, then finds it
        // released), then the snapshot's ledger (every other release from it waits).
        let (mut review, stored) = load(c, output_id, Load::ForUpdate)?;
        if review.state != State::Approved {
            return Err(AirlockError::WrongState {
                output: output_id.to_string(),
                state: review.state,
                action: "release",
                hint: "only an approved output is released",
            });
        }
        let round = review
            .approved_round()
            .cloned()
            .ok_or_else(|| AirlockError::Corrupt {
                what: "review",
                why: format!("{output_id} is approved but has no approving round"),
            })?;
        store::lock_ledger(c, &review.output.snapshot_sha256)?;
        let checked = match self.check_output(c, &review, Some(&round.context)) {
            Ok((table, report)) => match self.changed_since_review(&report, &round.check) {
                None => Ok((table, report)),
                Some(reason) => Err(reason),
            },
            // The limits or rules changed since approval: back to the author too.
            Err(AirlockError::Refused { reasons, .. }) => Err(format!(
                "the automatic check now refuses the output: {}",
                reasons.join("; ")
            )),
            Err(e) => return Err(e),
        };
        let (table, report) = match checked {
            Ok(x) => x,
            Err(reason) => {
                review.return_for_changes(&reason, now)?;
                reviews::save_review(c, &review, stored)?;
                return Ok(Step::Refused(reason));
            }
        };
        let csv = report.protected_csv().unwrap_or_default().into_bytes();
        let o = &review.output;
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_string(),
            output_id: o.id.clone(),
            project: o.project.clone(),
            title: o.title.clone(),
            author: o.author.clone(),
            reviewers: review.approvers(round.number),
            round: round.number,
            file: format!("{}.csv", file_stem(&o.title, &o.id)),
            file_sha256: sha256_hex(&csv),
            output_sha256: o.sha256.clone(),
            query_id: o.query_id.clone(),
            query_sha256: sha256_hex(o.sql.as_bytes()),
            snapshot_sha256: o.snapshot_sha256.clone(),
            rule_pack: report.pack.clone(),
            rule_pack_version: report.pack_version.clone(),
            released_at: store::ts(now),
        };
        let text = manifest.canonical_text()?;
        let signature = self.release_key()?.sign_note(&text);
        let cells = released_cells(&table, &report, output_id);
        let cells_recorded = cells.len();

        let releases = self.config.state_dir.join(RELEASES_DIR);
        std::fs::create_dir_all(&releases).map_err(AirlockError::io(&releases))?;
        let dir = releases.join(output_id);
        if dir.exists() {
            set_aside_orphan(&releases, output_id, now)?;
        }
        let tmp = Removal::new(releases.join(format!(".tmp-{output_id}")));
        if tmp.path.exists() {
            std::fs::remove_dir_all(&tmp.path).map_err(AirlockError::io(&tmp.path))?;
        }
        std::fs::create_dir(&tmp.path).map_err(AirlockError::io(&tmp.path))?;
        write_synced(&tmp.path.join(&manifest.file), &csv)?;
        write_synced(&tmp.path.join(MANIFEST_FILE), text.as_bytes())?;
        write_synced(&tmp.path.join(SIGNATURE_FILE), signature.as_bytes())?;
        sync_dir(&tmp.path)?;

        // Directly rather than through `ReleaseLedger::record`: a database error keeps its
        // SQLSTATE (a deadlock runs the release again).
        ledger::insert_cells(c, &o.snapshot_sha256, &cells)?;
        let manifest_sha256 = sha256_hex(text.as_bytes());
        ledger::insert_release(
            c,
            &ReleaseRecord {
                output_id: o.id.clone(),
                project: o.project.clone(),
                file_name: manifest.file.clone(),
                file_sha256: manifest.file_sha256.clone(),
                manifest_sha256: manifest_sha256.clone(),
                released_at: now,
            },
        )?;
        review.mark_released(&manifest.file, now)?;
        reviews::save_review(c, &review, stored)?;

        std::fs::rename(&tmp.path, &dir).map_err(AirlockError::io(&dir))?;
        tmp.disarm();
        let placed = Removal::new(dir.clone());
        sync_dir(&releases)?;
        // From here the directory stays: if the commit fails (or its answer is lost), it is a
        // directory without a release row, which the next release of the output sets aside.
        placed.disarm();
        Ok(Step::Released(Box::new(Release {
            dir,
            manifest,
            manifest_sha256,
            signature,
            cells_recorded,
        })))
    }

    /// Why the check at release no longer gives what the round approved, if it does not.
    fn changed_since_review(
        &self,
        report: &Report,
        approved: &crate::workflow::CheckStamp,
    ) -> Option<String> {
        let now = match self.stamp(&report.output, report) {
            Ok(s) => s,
            Err(e) => return Some(format!("the automatic check now refuses the output: {e}")),
        };
        if now.rule_pack != approved.rule_pack
            || now.rule_pack_version != approved.rule_pack_version
        {
            return Some(format!(
                "the rule pack is now {} {}, the checkers reviewed under {} {}",
                now.rule_pack,
                now.rule_pack_version,
                approved.rule_pack,
                approved.rule_pack_version
            ));
        }
        if now.protected_sha256 == approved.protected_sha256 {
            return None;
        }
        let failing: Vec<String> = report
            .failing_cells()
            .flat_map(|c| {
                c.failures.iter().map(move |f| {
                    format!(
                        "{} {} [{}] {}",
                        c.label,
                        c.measure_name,
                        f.rule.as_str(),
                        f.reason
                    )
                })
            })
            .take(5)
            .collect();
        Some(format!(
            "the protected table differs from the one the checkers approved (releases since then \
             change what may be published); failing now: {}",
            if failing.is_empty() {
                "no cell".to_string()
            } else {
                failing.join("; ")
            }
        ))
    }

    /// The release key's verifier key (`name+keyid+base64`), for supervisors.
    pub fn release_verifier_key(&self) -> Result<String, AirlockError> {
        Ok(self.release_key()?.verifier_key())
    }

    /// `<state>/keys/release-signing.key`, created on first use. Two releases may be the first
    /// at once (two nodes sharing the state directory, or two snapshots' releases on one node
    /// with PostgreSQL): the key is written whole under a name of its own, then linked into
    /// place, which only one of them can do; the others drop theirs and load the winner's.
    fn release_key(&self) -> Result<LogKey, AirlockError> {
        let dir = self.config.state_dir.join("keys");
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(AirlockError::io(&dir))?;
        }
        let path = dir.join(KEY_FILE);
        let name = &self.config.release_key_name;
        let key_error = |path: &Path, e: kura_audit::AuditError| AirlockError::Key {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        if path.exists() {
            return LogKey::load_or_create(&path, name).map_err(|e| key_error(&path, e));
        }
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| AirlockError::Key {
            path: path.clone(),
            why: format!("no randomness for a new key: {e}"),
        })?;
        let mine = dir.join(format!(".{KEY_FILE}.{}", hex::encode(nonce)));
        let created = LogKey::load_or_create(&mine, name).map_err(|e| key_error(&mine, e));
        let linked = created.and_then(|key| match std::fs::hard_link(&mine, &path) {
            Ok(()) => sync_dir(&dir).map(|()| Some(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(AirlockError::Io {
                path: path.clone(),
                source: e,
            }),
        });
        let _ = std::fs::remove_file(&mine);
        match linked? {
            Some(key) => Ok(key),
            None => LogKey::load_or_create(&path, name).map_err(|e| key_error(&path, e)),
        }
    }

    /// The released CSV of `output_id`, re-read and checked against the hash recorded at release;
    /// a mismatch is [`AirlockError::Tampered`] and nothing may be served.
    pub fn released_file(&self, output_id: &str) -> Result<ReleasedFile, AirlockError> {
        let record = self
            .db()
            .read(|c| ledger::release_record(c, output_id))?
            .ok_or_else(|| AirlockError::NotFound {
                what: "release of output",
                id: output_id.to_string(),
            })?;
        let path = self
            .config
            .state_dir
            .join(RELEASES_DIR)
            .join(&record.output_id)
            .join(&record.file_name);
        let bytes = std::fs::read(&path).map_err(AirlockError::io(&path))?;
        let sha256 = sha256_hex(&bytes);
        if sha256 != record.file_sha256 {
            return Err(AirlockError::Tampered {
                path,
                expected: record.file_sha256,
                found: sha256,
            });
        }
        Ok(ReleasedFile {
            path,
            file_name: record.file_name,
            sha256,
            bytes,
        })
    }

    /// The release record of an output, if it was released.
    pub fn release_record(&self, output_id: &str) -> Result<Option<ReleaseRecord>, AirlockError> {
        self.db().read(|c| ledger::release_record(c, output_id))
    }
}

/// The count cells the protected table publishes (rounded where the pack rounds), as ledger
/// entries with their population definitions.
pub fn released_cells(table: &StagedTable, report: &Report, release: &str) -> Vec<ReleasedCell> {
    report
        .cells
        .iter()
        .filter(|c| table.measures.get(c.measure).map(|m| m.kind) == Some(MeasureKind::Count))
        .filter_map(|c| {
            let value = match c.action {
                Action::Publish => c.value,
                Action::Round { to } => to,
                Action::Suppress => return None,
            };
            Some(ReleasedCell {
                release: release.to_string(),
                measure: c.measure_name.clone(),
                definition: table.definition(c.row),
                value,
            })
        })
        .collect()
}

/// A file name from the title: ASCII letters and digits, other runs as `-`, at most 60
/// characters; the output id when nothing is left (e.g. a Japanese title).
fn file_stem(title: &str, id: &str) -> String {
    let mut stem = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            stem.push(c.to_ascii_lowercase());
        } else if !stem.ends_with('-') && !stem.is_empty() {
            stem.push('-');
        }
        if stem.len() >= 60 {
            break;
        }
    }
    let stem = stem.trim_matches('-').to_string();
    if stem.is_empty() {
        id.to_string()
    } else {
        stem
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), AirlockError> {
    let mut f = File::create(path).map_err(AirlockError::io(path))?;
    f.write_all(bytes).map_err(AirlockError::io(path))?;
    f.sync_all().map_err(AirlockError::io(path))
}

fn sync_dir(dir: &Path) -> Result<(), AirlockError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(AirlockError::io(dir))
}

/// A directory left by a crash between rename and commit: it was never released (no row), so
/// it is kept for inspection but out of the way.
fn set_aside_orphan(releases: &Path, id: &str, now: DateTime<Utc>) -> Result<(), AirlockError> {
    let aside = releases.join(".orphaned");
    std::fs::create_dir_all(&aside).map_err(AirlockError::io(&aside))?;
    let to = aside.join(format!("{id}-{}", now.format("%Y%m%dT%H%M%S%.6fZ")));
    std::fs::rename(releases.join(id), &to).map_err(AirlockError::io(&to))
}

/// Removes a directory when dropped, unless disarmed: nothing half-written stays behind.
struct Removal {
    path: PathBuf,
    armed: bool,
}

impl Removal {
    fn new(path: PathBuf) -> Removal {
        Removal { path, armed: true }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
