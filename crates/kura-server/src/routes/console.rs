//! The supervisor console (stewards too): the audit log browser (search, one entry with its
//! inclusion proof, the latest checkpoint), "verify now" (the independent verifier over the
//! whole log) and the usage dashboard with its flags (`usage.rs`).
//!
//! Everything here reads: each handler is authorized with `read_audit` on the system, which the
//! policies grant to supervisors and stewards (a refusal is audited as `access.denied`). The
//! log is read through `AuditLog::reader` (the running log's own location: the state
//! directory's SQLite file or the shared PostgreSQL database), opened per request. A
//! verification is a POST (an action, so CSRF-protected) that changes nothing but is audited
//! with its result. A caller who is also an output checker never sees the decisions in a review
//! round that is still open: blind votes stay blind here too.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use kura_audit::{AuditError, Event, EventKind, LeafStore, SearchFilter, SearchHit};
use kura_authz::{Action, Resource, Role};
use serde_json::{json, Value};

use crate::access::authorize;
use crate::audit;
use crate::error::ApiError;
use crate::session::Caller;
use crate::state::AppState;
use crate::usage;

/// Entries per page unless the caller asks for fewer or more.
pub const DEFAULT_LIMIT: usize = 100;
/// Most entries per page.
pub const MAX_LIMIT: usize = 500;
/// Longest usage window, in days.
pub const MAX_DAYS: i64 = 366;

/// One verification at a time: it reads the whole log on every core.
static VERIFYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn may_read_audit(app: &AppState, caller: &Caller, object: &str) -> Result<(), ApiError> {
    authorize(app, caller, Action::ReadAudit, &Resource::System, object).await
}

fn invalid(message: String) -> ApiError {
    ApiError::bad("kura.request.invalid", message)
}

/// The query string as name -> value; unknown or repeated names are refused, empty values are
/// left out (an empty filter field means "any").
fn params(raw: Option<&str>, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(invalid(format!(
                "unknown parameter {k:?}: use {}",
                allowed.join(", ")
            )));
        }
        if v.len() > 256 {
            return Err(invalid(format!("parameter {k:?} is longer than 256 bytes")));
        }
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(invalid(format!("parameter {k:?} is given twice")));
        }
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(
    p: &BTreeMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    p.get(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| invalid(format!("{name} {v:?}: give {what}")))
        })
        .transpose()
}

fn micros(p: &BTreeMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    p.get(name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_micros())
                .map_err(|_| {
                    invalid(format!(
                        "{name} {v:?}: give an RFC 3339 time, e.g. 2025-05-01T00:00:00Z"
                    ))
                })
        })
        .transpose()
}

fn audit_error(e: AuditError) -> ApiError {
    match e {
        AuditError::NotFound(m) => ApiError::not_found(m),
        AuditError::Damaged { index, what } => ApiError::Conflict(format!(
            "the audit log cannot be read at entry {index} ({what}); run the verification"
        )),
        other => ApiError::Internal(other.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("audit reader task: {e}")))?
        .map_err(audit_error)
}

/// Outputs whose review round is open, when the caller is an output checker: the decisions on
/// them are blind until the round closes.
fn sealed_outputs(app: &AppState, caller: &Caller) -> Result<BTreeSet<String>, ApiError> {
    if !caller.has(Role::Checker) {
        return Ok(BTreeSet::new());
    }
    Ok(app
        .airlock
        .reviews_in_state(kura_airlock::State::Submitted)?
        .into_iter()
        .map(|r| r.output.id)
        .collect())
}

fn entry_json(hit: &SearchHit, sealed: &BTreeSet<String>) -> Value {
    let mut v = hit.to_json();
    let blind = hit.leaf.kind == EventKind::ReviewDecision.as_str()
        && hit.leaf.objects.iter().any(|o| {
            o.strip_prefix("output:")
                .is_some_and(|id| sealed.contains(id))
        });
    if blind {
        v["payload"] = Value::Null;
    }
    v["payload_sealed"] = json!(blind);
    v
}

fn checkpoint_json(cp: &kura_audit::StoredCheckpoint) -> Value {
    json!({"size": cp.size, "root": hex::encode(cp.root), "note": cp.note})
}

/// `GET /api/v1/audit/entries`: matching entries, newest first, a page at a time.
pub async fn entries(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    may_read_audit(&app, &caller, "audit:log").await?;
    let p = params(
        raw.as_deref(),
        &[
            "actor", "project", "type", "since", "until", "limit", "before",
        ],
    )?;
    if let Some(t) = p.get("type") {
        if EventKind::parse(t).is_none() {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(invalid(format!(
                "type {t:?} is not an event type: use one of {}",
                known.join(", ")
            )));
        }
    }
    let filter = SearchFilter {
        actor: p.get("actor").cloned(),
        project: p.get("project").cloned(),
        kind: p.get("type").cloned(),
        since_micros: micros(&p, "since")?,
        until_micros: micros(&p, "until")?,
    };
    let limit: usize = number(&p, "limit", "a whole number")?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(format!("limit {limit}: give 1 to {MAX_LIMIT}")));
    }
    let before: Option<u64> = number(&p, "before", "an entry index")?;
    let sealed = sealed_outputs(&app, &caller)?;
    let audit_log = app.audit.clone();
    let (page, matched) = blocking(move || {
        let mut reader = audit_log.reader()?;
        // Search visits in index order; keep the newest `limit` below `before`.
        let mut page: VecDeque<SearchHit> = VecDeque::with_capacity(limit + 1);
        let mut matched = 0u64;
        reader.search(&filter, &mut |hit| {
            if before.is_none_or(|b| hit.index < b) {
                matched += 1;
                page.push_back(hit);
                if page.len() > limit {
                    page.pop_front();
                }
            }
            Ok(())
        })?;
        Ok((page, matched))
    })
    .await?;
    let more = matched > page.len() as u64;
    let next_before = if more {
        page.front().map(|h| h.index)
    } else {
        None
    };
    let entries: Vec<Value> = page.iter().rev().map(|h| entry_json(h, &sealed)).collect();
    Ok(Json(json!({
        "entries": entries,
        "matched": matched,
        "next_before": next_before,
    })))
}

/// `GET /api/v1/audit/entries/{index}`: one entry, its inclusion proof (a `tlog-proof@v1`
/// receipt) against the latest checkpoint, and that checkpoint.
pub async fn entry(
    State(app): State<AppState>,
    caller: Caller,
    Path(index): Path<String>,
) -> Result<Json<Value>, ApiError> {
    may_read_audit(&app, &caller, "audit:log").await?;
    let index: u64 = index.parse().map_err(|_| {
        invalid(format!(
            "entry {index:?}: give the entry's index, a whole number"
        ))
    })?;
    let sealed = sealed_outputs(&app, &caller)?;
    let audit_log = app.audit.clone();
    let key = app.audit.verifier_key().to_string();
    let (hit, receipt, checkpoint) = blocking(move || {
        let mut reader = audit_log.reader()?;
        let stored = reader
            .store()
            .entry(index)?
            .ok_or_else(|| AuditError::NotFound(format!("audit entry {index}")))?;
        let leaf = kura_audit::leaf::Leaf::decode(&stored.leaf)
            .map_err(|what| AuditError::Damaged { index, what })?;
        let payload = stored
            .payload
            .map(|p| serde_json::from_str(&p.payload).unwrap_or(Value::Null));
        let hit = SearchHit {
            index,
            leaf_bytes: stored.leaf,
            leaf,
            payload,
        };
        let receipt = match reader.receipt(index) {
            Ok(text) => Ok(text),
            Err(AuditError::NotFound(why)) => Err(why),
            Err(e) => return Err(e),
        };
        Ok((hit, receipt, reader.latest_checkpoint()?))
    })
    .await?;
    // The server's own check of the proof, for the screen; supervisors check it with their own
    // copy of the key (`kura audit verify-receipt`).
    let (receipt_text, proof) = match &receipt {
        Ok(text) => {
            let check = kura_audit::verify::VerifierKey::parse(&key)
                .and_then(|k| kura_audit::verify::verify_receipt(text, &k));
            let proof = match check {
                Ok(r) if r.index == index => {
                    json!({"valid": true, "checkpoint_size": r.checkpoint.size})
                }
                Ok(r) => {
                    json!({"valid": false, "error": format!("the proof is for entry {}", r.index)})
                }
                Err(e) => json!({"valid": false, "error": e}),
            };
            (Some(text.clone()), proof)
        }
        Err(why) => (None, json!({"valid": null, "pending": why})),
    };
    Ok(Json(json!({
        "entry": entry_json(&hit, &sealed),
        "receipt": receipt_text,
        "proof": proof,
        "checkpoint": checkpoint.as_ref().map(checkpoint_json),
        "verifier_key": key,
    })))
}

/// `GET /api/v1/audit/checkpoint`: the latest signed checkpoint and the log's verifier key.
pub async fn checkpoint(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    may_read_audit(&app, &caller, "audit:checkpoint").await?;
    let audit_log = app.audit.clone();
    let cp = blocking(move || audit_log.reader()?.latest_checkpoint()).await?;
    Ok(Json(json!({
        "checkpoint": cp.as_ref().map(checkpoint_json),
        "verifier_key": app.audit.verifier_key(),
        "entries": app.audit.size(),
    })))
}

/// `POST /api/v1/audit/verify`: the full independent verification, with the running log's
/// key (not the key file, which whoever altered the store could have replaced). Audited with
/// its result as `audit.verified` of `audit:verify`.
pub async fn verify(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    may_read_audit(&app, &caller, "audit:verify").await?;
    let _one_at_a_time = VERIFYING.lock().await;
    let location = app.audit.location().clone();
    let key = app.audit.verifier_key().to_string();
    let started = Instant::now();
    let report =
        blocking(move || kura_audit::verify::verify_at(&location, Some(&key), None)).await?;
    let ms = started.elapsed().as_millis() as u64;
    let problem = report
        .tampering
        .as_ref()
        .map(|(index, what)| json!({"index": index, "what": what}));
    let event = Event::new(EventKind::AuditVerified, caller.id())
        .session(caller.session.id.clone())
        .object("audit:verify")
        .payload(json!({
            "action": "audit.verify", "intact": report.intact(), "entries": report.entries,
            "checkpoints": report.checkpoints, "problem": problem,
        }));
    audit(&app, event).await?;
    Ok(Json(json!({
        "intact": report.intact(),
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "erased_payloads": report.erased_payloads,
        "latest_checkpoint": report.latest_checkpoint,
        "problem": problem,
        "conflict": report.conflict,
        "duration_ms": ms,
        "verified_at": caller.now,
    })))
}

/// `GET /api/v1/audit/usage?days=30`: the usage dashboard over the last `days` days.
pub async fn usage(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    may_read_audit(&app, &caller, "audit:usage").await?;
    let p = params(raw.as_deref(), &["days"])?;
    let days: i64 = number(&p, "days", "a whole number of days")?.unwrap_or(30);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(invalid(format!("days {days}: give 1 to {MAX_DAYS}")));
    }
    let until: DateTime<Utc> = caller.now;
    let since = until - Duration::days(days);
    let sealed = sealed_outputs(&app, &caller)?;
    let audit_log = app.audit.clone();
    let entries = blocking(move || {
        let mut reader = audit_log.reader()?;
        let filter = SearchFilter {
            since_micros: Some(since.timestamp_micros()),
            until_micros: Some(until.timestamp_micros()),
            ..SearchFilter::default()
        };
        let mut entries = Vec::new();
        reader.search(&filter, &mut |hit| {
            if usage::KINDS.contains(&hit.leaf.kind.as_str()) {
                let at = DateTime::<Utc>::from_timestamp_micros(hit.leaf.timestamp_micros)
                    .unwrap_or_default();
                entries.push(usage::Entry {
                    index: hit.index,
                    at,
                    kind: hit.leaf.kind,
                    actor: hit.leaf.actor,
                    project: hit.leaf.project,
                    objects: hit.leaf.objects,
                    payload: hit.payload,
                });
            }
            Ok(())
        })?;
        Ok(entries)
    })
    .await?;
    let summary = usage::summarize(&entries, since, until, &sealed);
    serde_json::to_value(summary)
        .map(Json)
        .map_err(|e| ApiError::Internal(format!("usage: {e}")))
}
