//! The supervisor console's usage dashboard, computed from audit entries: per-day counts
//! (queries per project, refusals, export requests and their outcomes, review turnaround,
//! failed sign-ins) and flags for suspicious patterns with the entries behind them.
//!
//! Pure functions over a list of entries: the caller reads the log, passes the window and the
//! outputs whose votes are still sealed, and serialises the answer. Days and night hours are
//! those of Japan Standard Time (UTC+9, no daylight saving), where the registries' users work.
//!
//! Flags (each lists the actor, the time span and the entries):
//! - `differencing`: at least [`NEAR_IDENTICAL_MIN`] queries by one user in one project within
//!   [`WINDOW_MINUTES`] that have the same shape once literals are stripped but different
//!   literals (`... WHERE disease_no = 11`, `= 12`, ...): slicing a population to recover
//!   counts that would be suppressed. An explorer run (`explorer.run`) is a query whose shape
//!   is the set of fields it filters on and whose literals are each field's values.
//! - `small_groups`: at least [`SMALL_RESULT_MIN`] queries by one user within the window whose
//!   result had 1 to [`SMALL_RESULT_ROWS`]` - 1` rows (the log keeps row counts, not cell
//!   values; a one-row aggregate without `GROUP BY` always has one row and is not counted).
//! - `unusual_hours`: queries (explorer runs included) submitted between 22:00 and 06:00 JST,
//!   one flag per user and night.
//!
//! Queries per project count SQL queries and explorer runs. Queries of the server's own actors
//! (`system:...`, e.g. the explorer's index export) are neither counted nor flagged.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde::Serialize;
use serde_json::Value;

/// Near-identical queries (same shape, other literals) that make a differencing flag.
pub const NEAR_IDENTICAL_MIN: usize = 3;
/// Small results that make a small-groups flag.
pub const SMALL_RESULT_MIN: usize = 3;
/// A result with fewer rows than this (and at least one) is small.
pub const SMALL_RESULT_ROWS: u64 = 10;
/// The span within which repeated queries count together.
pub const WINDOW_MINUTES: i64 = 60;
/// Night in JST: from this hour...
pub const NIGHT_START_HOUR: u32 = 22;
/// ...to this hour (exclusive).
pub const NIGHT_END_HOUR: u32 = 6;
/// At most this many entry indices are listed per flag.
pub const MAX_FLAG_ENTRIES: usize = 100;
const JST_HOURS: i64 = 9;

/// One audit entry, as far as the dashboard needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub index: u64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub actor: String,
    pub project: Option<String>,
    pub objects: Vec<String>,
    /// `None` once erased.
    pub payload: Option<Value>,
}

/// The event types the dashboard reads; the caller may drop every other entry.
pub const KINDS: &[&str] = &[
    "query.submitted",
    "explorer.run",
    "query.completed",
    "query.refused",
    "export.requested",
    "review.decision",
    "output.released",
    "signin.failed",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decisions {
    pub approve: u64,
    pub request_changes: u64,
    pub reject: u64,
    /// Votes in rounds that are still open, hidden from a caller who is a checker.
    pub sealed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// `query.submitted` per project.
    pub queries: BTreeMap<String, u64>,
    pub refusals: u64,
    /// Submissions to the airlock (`export.requested`, action `submit`).
    pub export_requests: u64,
    /// Submissions the airlock's automatic check refused.
    pub export_refused: u64,
    pub decisions: Decisions,
    pub releases: u64,
    pub failed_signins: u64,
}

/// Review turnaround: from a submission to the vote that closed its round (two agreeing votes
/// or the tie-breaker's), in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Turnaround {
    pub count: u64,
    pub median_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD` in JST.
    pub date: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub turnaround: Turnaround,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    #[serde(flatten)]
    pub counts: Counts,
    pub turnaround: Turnaround,
    /// Submitted in the window, round not closed yet.
    pub reviews_open: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    Differencing,
    SmallGroups,
    UnusualHours,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub kind: FlagKind,
    pub actor: String,
    pub project: Option<String>,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub count: usize,
    /// `differencing`: the query shape (`?` for each literal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// Per listed entry: the literals that vary (`differencing`) or the row count
    /// (`small_groups`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The entries behind the flag, oldest first (at most [`MAX_FLAG_ENTRIES`]).
    pub entries: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub timezone: &'static str,
    pub days: Vec<Day>,
    pub totals: Totals,
    pub flags: Vec<Flag>,
}

/// The JST wall-clock time of `t`.
pub fn jst(t: DateTime<Utc>) -> NaiveDateTime {
    (t + Duration::hours(JST_HOURS)).naive_utc()
}

pub fn jst_date(t: DateTime<Utc>) -> NaiveDate {
    jst(t).date()
}

/// Between 22:00 and 06:00 JST.
pub fn is_unusual_hour(t: DateTime<Utc>) -> bool {
    let h = jst(t).hour();
    !(NIGHT_END_HOUR..NIGHT_START_HOUR).contains(&h)
}

/// A query with its literals taken out: `shape` has `?` for each string or number literal,
/// lower-case keywords and identifiers (quoted identifiers kept as written), single spaces
/// between tokens and no comments; `literals` are the literals in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub shape: String,
    pub literals: Vec<String>,
}

pub fn sql_shape(sql: &str) -> Shape {
    let c: Vec<char> = sql.chars().collect();
    let mut tokens: Vec<String> = Vec::new();
    let mut literals = Vec::new();
    let mut i = 0;
    let at = |j: usize| c.get(j).copied();
    while let Some(ch) = at(i) {
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '-' && at(i + 1) == Some('-') {
            while at(i).is_some_and(|x| x != '\n') {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == Some('*') {
            i += 2;
            while at(i).is_some() && !(at(i) == Some('*') && at(i + 1) == Some('/')) {
                i += 1;
            }
            i += 2;
        } else if ch == '\'' || ch == '"' {
            // A string literal or a quoted identifier; a doubled quote is one quote.
            let mut text = String::new();
            i += 1;
            while let Some(x) = at(i) {
                if x == ch {
                    if at(i + 1) == Some(ch) {
                        text.push(ch);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                text.push(x);
                i += 1;
            }
            if ch == '\'' {
                tokens.push("?".into());
                literals.push(text);
            } else {
                tokens.push(format!("\"{}\"", text.replace('"', "\"\"")));
            }
        } else if ch.is_ascii_digit()
            || (ch == '.' && at(i + 1).is_some_and(|x| x.is_ascii_digit()))
        {
            let start = i;
            while at(i).is_some_and(|x| x.is_ascii_digit() || x == '.') {
                i += 1;
            }
            if at(i).is_some_and(|x| x == 'e' || x == 'E') {
                let mut j = i + 1;
                if at(j).is_some_and(|x| x == '+' || x == '-') {
                    j += 1;
                }
                if at(j).is_some_and(|x| x.is_ascii_digit()) {
                    i = j;
                    while at(i).is_some_and(|x| x.is_ascii_digit()) {
                        i += 1;
                    }
                }
            }
            tokens.push("?".into());
            literals.push(c[start..i].iter().collect());
        } else if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let start = i;
            while at(i).is_some_and(|x| x.is_alphanumeric() || x == '_' || x == '$') {
                i += 1;
            }
            tokens.push(c[start..i].iter().collect::<String>().to_lowercase());
        } else {
            tokens.push(ch.to_string());
            i += 1;
        }
    }
    Shape {
        shape: tokens.join(" "),
        literals,
    }
}

/// Whether a query always answers exactly one row: an aggregate without `GROUP BY`, so its
/// row count says nothing about group sizes.
fn single_row_aggregate(shape: &str) -> bool {
    let aggregate = ["count (", "sum (", "avg (", "min (", "max ("]
        .iter()
        .any(|f| shape.contains(f));
    aggregate && !shape.contains("group by")
}

fn str_field<'a>(e: &'a Entry, key: &str) -> Option<&'a str> {
    e.payload
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_str)
}

fn refused(e: &Entry) -> bool {
    str_field(e, "result") == Some("refused")
}

/// The output an airlock entry is about.
fn output_of(e: &Entry) -> Option<String> {
    e.objects
        .iter()
        .find_map(|o| o.strip_prefix("output:").map(str::to_string))
        .or_else(|| str_field(e, "output_id").map(str::to_string))
}

/// A request the airlock refused after it was audited has a second entry with `result:
/// refused`; both are left out here (the refusal is returned separately, by request index).
fn without_refused(entries: &[Entry]) -> (Vec<&Entry>, BTreeSet<u64>) {
    let mut dropped = BTreeSet::new();
    let mut refused_requests = BTreeSet::new();
    for (pos, r) in entries.iter().enumerate() {
        if !refused(r) {
            continue;
        }
        dropped.insert(r.index);
        let request = entries[..pos].iter().rev().find(|e| {
            e.kind == r.kind
                && e.actor == r.actor
                && e.objects == r.objects
                && !refused(e)
                && !dropped.contains(&e.index)
        });
        if let Some(q) = request {
            dropped.insert(q.index);
            refused_requests.insert(q.index);
        }
    }
    let kept = entries
        .iter()
        .filter(|e| !dropped.contains(&e.index))
        .collect();
    (kept, refused_requests)
}

fn turnaround(seconds: &mut [f64]) -> Turnaround {
    if seconds.is_empty() {
        return Turnaround::default();
    }
    seconds.sort_by(f64::total_cmp);
    let n = seconds.len();
    let median = if n % 2 == 1 {
        seconds[n / 2]
    } else {
        (seconds[n / 2 - 1] + seconds[n / 2]) / 2.0
    };
    Turnaround {
        count: n as u64,
        median_seconds: Some(median),
        max_seconds: seconds.last().copied(),
    }
}

/// Closed review rounds as (closing time, seconds since submission), and the rounds still open.
fn review_rounds(entries: &[&Entry]) -> (Vec<(DateTime<Utc>, f64)>, u64) {
    struct Open {
        submitted: DateTime<Utc>,
        votes: Vec<String>,
    }
    let mut open: HashMap<String, Open> = HashMap::new();
    let mut closed = Vec::new();
    for e in entries {
        let Some(output) = output_of(e) else { continue };
        match e.kind.as_str() {
            "export.requested" => match str_field(e, "action") {
                Some("submit") => {
                    open.insert(
                        output,
                        Open {
                            submitted: e.at,
                            votes: Vec::new(),
                        },
                    );
                }
                Some("withdraw") => {
                    open.remove(&output);
                }
                _ => {}
            },
            "review.decision" => {
                let Some(round) = open.get_mut(&output) else {
                    continue;
                };
                round
                    .votes
                    .push(str_field(e, "decision").unwrap_or("").to_string());
                // The airlock's rule: two agreeing votes close a round, else the third does.
                let done = match round.votes.as_slice() {
                    [a, b] => a == b,
                    v => v.len() >= 3,
                };
                if done {
                    let seconds = (e.at - round.submitted).num_milliseconds() as f64 / 1000.0;
                    closed.push((e.at, seconds));
                    open.remove(&output);
                }
            }
            "output.released" if str_field(e, "phase") == Some("released") => {
                if let Some(round) = open.remove(&output) {
                    let seconds = (e.at - round.submitted).num_milliseconds() as f64 / 1000.0;
                    closed.push((e.at, seconds));
                }
            }
            _ => {}
        }
    }
    (closed, open.len() as u64)
}

fn count(
    counts: &mut Counts,
    e: &Entry,
    refused_requests: &BTreeSet<u64>,
    sealed: &BTreeSet<String>,
) {
    match e.kind.as_str() {
        "query.submitted" | "explorer.run" if is_query(e) => {
            let project = e.project.clone().unwrap_or_else(|| "-".into());
            *counts.queries.entry(project).or_default() += 1;
        }
        "query.refused" => counts.refusals += 1,
        "export.requested" if str_field(e, "action") == Some("submit") => {
            counts.export_requests += 1;
            if refused_requests.contains(&e.index) {
                counts.export_refused += 1;
            }
        }
        "review.decision" if !refused_requests.contains(&e.index) => {
            let d = &mut counts.decisions;
            if output_of(e).is_some_and(|o| sealed.contains(&o)) {
                d.sealed += 1;
            } else {
                match str_field(e, "decision") {
                    Some("approve") => d.approve += 1,
                    Some("request_changes") => d.request_changes += 1,
                    Some("reject") => d.reject += 1,
                    _ => {}
                }
            }
        }
        "output.released" if str_field(e, "phase") == Some("released") => counts.releases += 1,
        "signin.failed" => counts.failed_signins += 1,
        _ => {}
    }
}

/// The dashboard for entries in `[since, until)` (others are ignored), in index order.
/// Decisions on the outputs in `sealed` are counted without saying what they were.
pub fn summarize(
    entries: &[Entry],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    sealed: &BTreeSet<String>,
) -> Usage {
    let inside: Vec<Entry> = entries
        .iter()
        .filter(|e| e.at >= since && e.at < until)
        .cloned()
        .collect();
    let mut days: BTreeMap<NaiveDate, (Counts, Vec<f64>)> = BTreeMap::new();
    let last_day = jst_date(until - Duration::microseconds(1));
    let mut d = jst_date(since);
    while d <= last_day {
        days.insert(d, Default::default());
        d = match d.succ_opt() {
            Some(next) => next,
            None => break,
        };
    }
    let mut totals = Counts::default();
    // Refused requests are counted (as refused submissions); their refusal entries are not.
    let (kept, refused_requests) = without_refused(&inside);
    for e in inside.iter().filter(|e| !refused(e)) {
        count(&mut totals, e, &refused_requests, sealed);
        if let Some((c, _)) = days.get_mut(&jst_date(e.at)) {
            count(c, e, &refused_requests, sealed);
        }
    }
    let (closed, reviews_open) = review_rounds(&kept);
    let mut all: Vec<f64> = Vec::new();
    for (at, seconds) in &closed {
        all.push(*seconds);
        if let Some((_, s)) = days.get_mut(&jst_date(*at)) {
            s.push(*seconds);
        }
    }
    Usage {
        since,
        until,
        timezone: "+09:00",
        days: days
            .into_iter()
            .map(|(date, (counts, mut seconds))| Day {
                date: date.format("%Y-%m-%d").to_string(),
                counts,
                turnaround: turnaround(&mut seconds),
            })
            .collect(),
        totals: Totals {
            counts: totals,
            turnaround: turnaround(&mut all),
            reviews_open,
        },
        flags: flags(&inside),
    }
}

/// Every flag raised by `entries` (in index order), newest first.
pub fn flags(entries: &[Entry]) -> Vec<Flag> {
    let mut out = differencing(entries);
    out.extend(small_groups(entries));
    out.extend(unusual_hours(entries));
    out.sort_by(|a, b| b.first.cmp(&a.first).then(a.kind.cmp(&b.kind)));
    out
}

fn flag(kind: FlagKind, group: &[&Entry], shape: Option<String>, values: Vec<String>) -> Flag {
    let first = group.first().map(|e| e.at).unwrap_or_default();
    let last = group.last().map(|e| e.at).unwrap_or_default();
    let actor = group.first().map(|e| e.actor.clone()).unwrap_or_default();
    let project = group.first().and_then(|e| e.project.clone());
    Flag {
        kind,
        actor,
        project,
        first,
        last,
        count: group.len(),
        shape,
        values: values.into_iter().take(MAX_FLAG_ENTRIES).collect(),
        entries: group
            .iter()
            .take(MAX_FLAG_ENTRIES)
            .map(|e| e.index)
            .collect(),
    }
}

/// Splits time-ordered `items` into non-overlapping windows of at most [`WINDOW_MINUTES`]
/// from their first item that satisfy `enough`, scanning from the oldest.
fn windows<T>(
    items: &[T],
    at: impl Fn(&T) -> DateTime<Utc>,
    enough: impl Fn(&[T]) -> bool,
) -> Vec<&[T]> {
    let span = Duration::minutes(WINDOW_MINUTES);
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let mut j = i;
        while j + 1 < items.len() && at(&items[j + 1]) - at(&items[i]) <= span {
            j += 1;
        }
        if enough(&items[i..=j]) {
            out.push(&items[i..=j]);
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn sql_of(e: &Entry) -> Option<&str> {
    str_field(e, "sql")
}

/// A query a user asked for: SQL, or an explorer run.
fn is_query(e: &Entry) -> bool {
    (e.kind == "query.submitted" || e.kind == "explorer.run") && !e.actor.starts_with("system:")
}

/// The shape of an explorer run: `explorer: ` and the fields it filters on, by name; its
/// literals: each field's values, comma-separated.
pub fn explorer_shape(filters: &Value) -> Option<Shape> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut fields: Vec<(&str, String)> = filters
        .as_object()?
        .iter()
        .filter_map(|(name, value)| {
            let shown = match value {
                Value::Null => return None,
                Value::Array(items) if items.is_empty() => return None,
                Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
                other => text(other),
            };
            Some((name.as_str(), shown))
        })
        .collect();
    fields.sort();
    Some(Shape {
        shape: format!(
            "explorer: {}",
            fields
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        literals: fields.into_iter().map(|(_, l)| l).collect(),
    })
}

/// The shape of a query entry (`None` when it has none to compare).
fn shape_of(e: &Entry) -> Option<Shape> {
    match e.kind.as_str() {
        "query.submitted" => sql_of(e).map(sql_shape),
        "explorer.run" => explorer_shape(e.payload.as_ref()?.get("filters")?),
        _ => None,
    }
}

fn differencing(entries: &[Entry]) -> Vec<Flag> {
    // (actor, project, shape) -> the queries with their literals.
    type Key = (String, Option<String>, String);
    let mut groups: BTreeMap<Key, Vec<(&Entry, Vec<String>)>> = BTreeMap::new();
    for e in entries.iter().filter(|e| is_query(e)) {
        let Some(s) = shape_of(e) else { continue };
        if s.literals.is_empty() {
            continue;
        }
        groups
            .entry((e.actor.clone(), e.project.clone(), s.shape))
            .or_default()
            .push((e, s.literals));
    }
    let mut out = Vec::new();
    for ((_, _, shape), items) in groups {
        let distinct = |w: &[(&Entry, Vec<String>)]| {
            w.iter().map(|(_, l)| l).collect::<BTreeSet<_>>().len() >= NEAR_IDENTICAL_MIN
        };
        for w in windows(&items, |(e, _)| e.at, distinct) {
            // The positions whose literal is not the same in every query of the window.
            let first = &w[0].1;
            let varying: Vec<usize> = (0..first.len())
                .filter(|&p| w.iter().any(|(_, l)| l.get(p) != first.get(p)))
                .collect();
            let values = w
                .iter()
                .map(|(_, l)| {
                    varying
                        .iter()
                        .filter_map(|&p| l.get(p).cloned())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .collect();
            let group: Vec<&Entry> = w.iter().map(|(e, _)| *e).collect();
            out.push(flag(
                FlagKind::Differencing,
                &group,
                Some(shape.clone()),
                values,
            ));
        }
    }
    out
}

fn small_groups(entries: &[Entry]) -> Vec<Flag> {
    let sql: HashMap<&Vec<String>, &str> = entries
        .iter()
        .filter(|e| e.kind == "query.submitted")
        .filter_map(|e| sql_of(e).map(|s| (&e.objects, s)))
        .collect();
    let mut by_actor: BTreeMap<&str, Vec<(&Entry, u64)>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == "query.completed") {
        let payload = e.payload.as_ref();
        let ok = payload
            .and_then(|p| p.get("status"))
            .and_then(Value::as_str)
            == Some("ok");
        let Some(rows) = payload.and_then(|p| p.get("rows")).and_then(Value::as_u64) else {
            continue;
        };
        let uninformative = sql
            .get(&e.objects)
            .is_some_and(|s| single_row_aggregate(&sql_shape(s).shape));
        if ok && (1..SMALL_RESULT_ROWS).contains(&rows) && !uninformative {
            by_actor.entry(&e.actor).or_default().push((e, rows));
        }
    }
    let mut out = Vec::new();
    for items in by_actor.values() {
        for w in windows(items, |(e, _)| e.at, |w| w.len() >= SMALL_RESULT_MIN) {
            let group: Vec<&Entry> = w.iter().map(|(e, _)| *e).collect();
            let values = w.iter().map(|(_, r)| r.to_string()).collect();
            let mut f = flag(FlagKind::SmallGroups, &group, None, values);
            // One project only when all of them are in it.
            if group.iter().any(|e| e.project != f.project) {
                f.project = None;
            }
            out.push(f);
        }
    }
    out
}

fn unusual_hours(entries: &[Entry]) -> Vec<Flag> {
    // A night runs from 22:00 on its date to 06:00 the next morning.
    let mut nights: BTreeMap<(&str, NaiveDate), Vec<&Entry>> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| is_query(e) && is_unusual_hour(e.at))
    {
        let night = (jst(e.at) - Duration::hours(i64::from(NIGHT_END_HOUR))).date();
        nights.entry((&e.actor, night)).or_default().push(e);
    }
    nights
        .values()
        .map(|group| {
            let mut f = flag(FlagKind::UnusualHours, group, None, Vec::new());
            if group.iter().any(|e| e.project != f.project) {
                f.project = None;
            }
            f
        })
        .collect()
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
