#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Unit tests of the usage dashboard and its flags.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Log {
    entries: Vec<Entry>,
}

impl Log {
    fn new() -> Log {
        Log {
            entries: Vec::new(),
        }
    }

    fn add(
        &mut self,
        when: DateTime<Utc>,
        kind: &str,
        actor: &str,
        project: Option<&str>,
        object: Option<&str>,
        payload: Value,
    ) -> u64 {
        let index = self.entries.len() as u64;
        self.entries.push(Entry {
            index,
            at: when,
            kind: kind.into(),
            actor: actor.into(),
            project: project.map(str::to_string),
            objects: object.map(|o| vec![o.to_string()]).unwrap_or_default(),
            payload: Some(payload),
        });
        index
    }

    /// A query by `actor` in `project`: submitted, then completed with `rows` rows.
    fn query(
        &mut self,
        when: DateTime<Utc>,
        actor: &str,
        project: &str,
        sql: &str,
        rows: u64,
    ) -> u64 {
        let object = format!("query:{}", self.entries.len());
        let i = self.add(
            when,
            "query.submitted",
            actor,
            Some(project),
            Some(&object),
            json!({"sql": sql}),
        );
        self.add(
            when + Duration::seconds(1),
            "query.completed",
            actor,
            Some(project),
            Some(&object),
            json!({"status": "ok", "rows": rows}),
        );
        i
    }

    fn airlock(
        &mut self,
        when: DateTime<Utc>,
        kind: &str,
        actor: &str,
        oid: &str,
        payload: Value,
    ) -> u64 {
        self.add(
            when,
            kind,
            actor,
            Some("p1"),
            Some(&format!("output:{oid}")),
            payload,
        )
    }
}

fn kinds(flags: &[Flag], kind: FlagKind) -> Vec<&Flag> {
    flags.iter().filter(|f| f.kind == kind).collect()
}

// ------------------------------------------------------------------ sql_shape

#[test]
fn shapes_strip_literals_comments_case_and_spacing_but_keep_identifiers() {
    let a = sql_shape("SELECT count(*) FROM nanbyo_forms WHERE disease_no = 11 AND sex = '2'");
    let b = sql_shape(
        "select COUNT( * )\n  from nanbyo_forms -- slice\n where disease_no=12 /* x */ and sex='1'",
    );
    assert_eq!(a.shape, b.shape);
    assert_eq!(a.literals, vec!["11", "2"]);
    assert_eq!(b.literals, vec!["12", "1"]);
    assert!(a.shape.contains("disease_no = ?"), "{}", a.shape);

    // Digits inside identifiers are part of the name; quoted identifiers stay as written.
    let c = sql_shape("SELECT col1, \"Dim:Pref\" FROM t2 WHERE x > 1.5e3 AND y = 'it''s'");
    assert_eq!(c.literals, vec!["1.5e3", "it's"]);
    assert_eq!(
        c.shape,
        "select col1 , \"Dim:Pref\" from t2 where x > ? and y = ?"
    );
    // Another column is another shape.
    assert_ne!(
        sql_shape("SELECT 1 FROM t WHERE a = 1").shape,
        sql_shape("SELECT 1 FROM t WHERE b = 1").shape
    );
}

// ------------------------------------------------------------------ differencing

const SLICE: &str = "SELECT count(*) AS \"count:n\" FROM nanbyo_forms WHERE disease_no = ";

#[test]
fn near_identical_queries_differing_in_one_literal_are_flagged() {
    let mut log = Log::new();
    let t0 = at("2025-05-01T01:00:00Z");
    let mut ids = Vec::new();
    for (i, d) in [11, 12, 13, 14].iter().enumerate() {
        let sql = format!("{SLICE}{d} AND sex = 1");
        ids.push(log.query(
            t0 + Duration::minutes(10 * i as i64),
            "mallory",
            "p1",
            &sql,
            1,
        ));
    }
    let flags = flags(&log.entries);
    let diff = kinds(&flags, FlagKind::Differencing);
    assert_eq!(diff.len(), 1, "{flags:?}");
    let f = diff[0];
    assert_eq!(f.actor, "mallory");
    assert_eq!(f.project.as_deref(), Some("p1"));
    assert_eq!(f.entries, ids);
    assert_eq!(f.count, 4);
    assert_eq!(
        f.values,
        vec!["11", "12", "13", "14"],
        "only the varying literal"
    );
    assert_eq!(f.first, t0);
    assert_eq!(f.last, t0 + Duration::minutes(30));
    assert!(f.shape.as_deref().unwrap().contains("disease_no = ?"));
}

#[test]
fn repeats_spread_out_or_split_across_users_or_projects_are_not_flagged() {
    let t0 = at("2025-05-01T01:00:00Z");
    // (minute, user, project, disease number) per query.
    type Queries<'a> = Vec<(i64, &'a str, &'a str, i32)>;
    let cases: Vec<(&str, Queries)> = vec![
        (
            "the same literal again",
            vec![
                (0, "m", "p1", 11),
                (5, "m", "p1", 11),
                (9, "m", "p1", 11),
                (12, "m", "p1", 11),
            ],
        ),
        (
            "two literals only",
            vec![
                (0, "m", "p1", 11),
                (5, "m", "p1", 12),
                (9, "m", "p1", 11),
                (12, "m", "p1", 12),
            ],
        ),
        (
            "more than an hour apart",
            vec![
                (0, "m", "p1", 11),
                (50, "m", "p1", 12),
                (111, "m", "p1", 13),
                (172, "m", "p1", 14),
            ],
        ),
        (
            "three users",
            vec![(0, "a", "p1", 11), (5, "b", "p1", 12), (9, "c", "p1", 13)],
        ),
        (
            "three projects",
            vec![(0, "m", "p1", 11), (5, "m", "p2", 12), (9, "m", "p3", 13)],
        ),
    ];
    for (what, queries) in cases {
        let mut log = Log::new();
        for (minute, who, project, d) in queries {
            log.query(
                t0 + Duration::minutes(minute),
                who,
                project,
                &format!("{SLICE}{d}"),
                1,
            );
        }
        let flags = flags(&log.entries);
        assert!(
            kinds(&flags, FlagKind::Differencing).is_empty(),
            "{what}: {flags:?}"
        );
    }
}

#[test]
fn a_long_differencing_run_gives_one_flag_per_hour() {
    let mut log = Log::new();
    let t0 = at("2025-05-01T01:00:00Z");
    for d in 0..12 {
        log.query(
            t0 + Duration::minutes(15 * d),
            "m",
            "p1",
            &format!("{SLICE}{d}"),
            1,
        );
    }
    let diff = flags(&log.entries);
    let diff = kinds(&diff, FlagKind::Differencing);
    // 0-60 min (5 queries), 75-135 (5), 150-165 (2: not enough).
    assert_eq!(diff.iter().map(|f| f.count).collect::<Vec<_>>(), vec![5, 5]);
}

// ------------------------------------------------------------------ small groups

#[test]
fn repeated_small_results_are_flagged_but_single_row_aggregates_are_not() {
    let t0 = at("2025-05-01T01:00:00Z");
    let rows_sql = "SELECT research_id, sex FROM nanbyo_forms WHERE disease_no = 300";
    let mut log = Log::new();
    let mut completed = Vec::new();
    for (i, rows) in [3u64, 1, 9].iter().enumerate() {
        let q = log.query(t0 + Duration::minutes(i as i64), "m", "p1", rows_sql, *rows);
        completed.push(q + 1);
    }
    let f = flags(&log.entries);
    let small = kinds(&f, FlagKind::SmallGroups);
    assert_eq!(small.len(), 1, "{f:?}");
    assert_eq!(small[0].entries, completed);
    assert_eq!(small[0].values, vec!["3", "1", "9"]);

    for (what, sql, rows) in [
        (
            "a count without GROUP BY",
            "SELECT count(*) FROM nanbyo_forms WHERE sex = 1",
            1u64,
        ),
        ("empty results", rows_sql, 0),
        ("ten rows", rows_sql, 10),
    ] {
        let mut log = Log::new();
        for i in 0..4 {
            log.query(t0 + Duration::minutes(i), "m", "p1", sql, rows);
        }
        let f = flags(&log.entries);
        assert!(kinds(&f, FlagKind::SmallGroups).is_empty(), "{what}: {f:?}");
    }
}

// ------------------------------------------------------------------ unusual hours

#[test]
fn night_hours_are_judged_in_japan_time_and_grouped_per_night() {
    // 13:00 UTC = 22:00 JST; 20:59 UTC = 05:59 JST; 21:00 UTC = 06:00 JST.
    assert!(!is_unusual_hour(at("2025-05-01T12:59:59Z")));
    assert!(is_unusual_hour(at("2025-05-01T13:00:00Z")));
    assert!(is_unusual_hour(at("2025-05-01T20:59:59Z")));
    assert!(!is_unusual_hour(at("2025-05-01T21:00:00Z")));
    assert!(
        !is_unusual_hour(at("2025-05-01T03:00:00Z")),
        "noon in Tokyo"
    );

    let mut log = Log::new();
    let sql = "SELECT 1";
    let a = log.query(at("2025-05-01T14:00:00Z"), "m", "p1", sql, 1); // 23:00
    let b = log.query(at("2025-05-01T17:00:00Z"), "m", "p2", sql, 1); // 02:00 next day
    log.query(at("2025-05-02T02:00:00Z"), "m", "p1", sql, 1); // 11:00: fine
    let c = log.query(at("2025-05-02T14:30:00Z"), "m", "p1", sql, 1); // the next night
    log.query(at("2025-05-01T15:00:00Z"), "other", "p1", sql, 1);
    let f = flags(&log.entries);
    let night = kinds(&f, FlagKind::UnusualHours);
    let mine: Vec<&&Flag> = night.iter().filter(|f| f.actor == "m").collect();
    assert_eq!(mine.len(), 2, "{night:?}");
    // Newest first.
    assert_eq!(mine[0].entries, vec![c]);
    assert_eq!(mine[1].entries, vec![a, b]);
    assert_eq!(mine[1].project, None, "two projects");
    assert_eq!(night.iter().filter(|f| f.actor == "other").count(), 1);
}

// ------------------------------------------------------------------ summary

#[test]
fn days_are_japan_days_and_count_what_the_dashboard_shows() {
    let since = at("2025-04-30T15:00:00Z"); // 2025-05-01 00:00 JST
    let until = since + Duration::days(3);
    let mut log = Log::new();
    log.query(since - Duration::seconds(1), "m", "p1", "SELECT 1", 1); // before the window
    log.query(at("2025-05-01T00:00:00Z"), "m", "p1", "SELECT 1", 1); // 05-01 JST
    log.query(at("2025-05-01T14:59:00Z"), "m", "p2", "SELECT 1", 1); // 05-01 23:59 JST
    log.query(at("2025-05-01T15:00:00Z"), "m", "p1", "SELECT 1", 1); // 05-02 00:00 JST
    log.add(
        at("2025-05-01T15:01:00Z"),
        "query.refused",
        "m",
        Some("p1"),
        None,
        json!({}),
    );
    log.add(
        at("2025-05-01T16:00:00Z"),
        "signin.failed",
        "-",
        None,
        None,
        json!({}),
    );
    log.add(
        at("2025-05-01T16:00:01Z"),
        "signin.failed",
        "x",
        None,
        None,
        json!({}),
    );
    log.query(until, "m", "p1", "SELECT 1", 1); // after the window

    let u = summarize(&log.entries, since, until, &BTreeSet::new());
    let dates: Vec<&str> = u.days.iter().map(|d| d.date.as_str()).collect();
    assert_eq!(dates, vec!["2025-05-01", "2025-05-02", "2025-05-03"]);
    let q = |d: usize, p: &str| u.days[d].counts.queries.get(p).copied().unwrap_or(0);
    assert_eq!(
        (q(0, "p1"), q(0, "p2"), q(1, "p1"), q(2, "p1")),
        (1, 1, 1, 0)
    );
    assert_eq!(u.days[1].counts.refusals, 1);
    assert_eq!(u.days[1].counts.failed_signins, 2);
    assert_eq!(u.totals.counts.queries.values().sum::<u64>(), 3);
    assert_eq!(u.totals.counts.failed_signins, 2);
    assert_eq!(u.timezone, "+09:00");
}

#[test]
fn exports_outcomes_and_review_turnaround() {
    let since = at("2025-05-01T00:00:00Z");
    let until = since + Duration::days(2);
    let t = |h: i64| since + Duration::hours(h);
    let submit = json!({"action": "submit"});
    let vote = |d: &str| json!({"decision": d});
    let mut log = Log::new();
    // o1: two approvals 3 h after submission, then released.
    log.airlock(t(1), "export.requested", "a", "o1", submit.clone());
    log.airlock(t(2), "review.decision", "c1", "o1", vote("approve"));
    log.airlock(t(4), "review.decision", "c2", "o1", vote("approve"));
    log.airlock(
        t(4),
        "output.released",
        "c2",
        "o1",
        json!({"phase": "requested"}),
    );
    log.airlock(
        t(4),
        "output.released",
        "c2",
        "o1",
        json!({"phase": "released"}),
    );
    // o2: a split; the tie-breaker closes the round 9 h after submission.
    log.airlock(t(1), "export.requested", "a", "o2", submit.clone());
    log.airlock(t(2), "review.decision", "c1", "o2", vote("approve"));
    log.airlock(t(3), "review.decision", "c2", "o2", vote("reject"));
    // A vote the airlock refused (already voted) is not a vote.
    log.airlock(t(5), "review.decision", "c2", "o2", vote("approve"));
    log.airlock(
        t(5),
        "review.decision",
        "c2",
        "o2",
        json!({"decision": "approve", "result": "refused"}),
    );
    log.airlock(t(10), "review.decision", "c3", "o2", vote("reject"));
    // o3: the automatic check refused the submission: a request, refused, no round.
    log.airlock(t(1), "export.requested", "a", "o3", submit.clone());
    log.airlock(
        t(1),
        "export.requested",
        "a",
        "o3",
        json!({"action": "submit", "result": "refused"}),
    );
    // o4: submitted, one vote so far: open, and sealed for a checker.
    log.airlock(t(30), "export.requested", "a", "o4", submit.clone());
    log.airlock(
        t(31),
        "review.decision",
        "c1",
        "o4",
        vote("request_changes"),
    );

    let u = summarize(&log.entries, since, until, &BTreeSet::new());
    let c = &u.totals.counts;
    assert_eq!((c.export_requests, c.export_refused), (4, 1));
    assert_eq!(
        c.decisions,
        Decisions {
            approve: 3,
            request_changes: 1,
            reject: 2,
            sealed: 0
        }
    );
    assert_eq!(c.releases, 1);
    let tt = &u.totals.turnaround;
    assert_eq!(tt.count, 2);
    assert_eq!(tt.max_seconds, Some(9.0 * 3600.0));
    assert_eq!(
        tt.median_seconds,
        Some(6.0 * 3600.0),
        "median of 3 h and 9 h"
    );
    assert_eq!(u.totals.reviews_open, 1);
    // Rounds are counted on the day they closed (JST): o1 and o2 on 05-01.
    let day = u.days.iter().find(|d| d.date == "2025-05-01").unwrap();
    assert_eq!(day.turnaround.count, 2);

    // For a checker, votes on an output still under review are counted but not told.
    let sealed = BTreeSet::from(["o4".to_string()]);
    let u = summarize(&log.entries, since, until, &sealed);
    assert_eq!(
        u.totals.counts.decisions,
        Decisions {
            approve: 3,
            request_changes: 0,
            reject: 2,
            sealed: 1
        }
    );
}

#[test]
fn a_withdrawn_submission_has_no_turnaround() {
    let since = at("2025-05-01T00:00:00Z");
    let mut log = Log::new();
    log.airlock(
        since,
        "export.requested",
        "a",
        "o1",
        json!({"action": "submit"}),
    );
    log.airlock(
        since + Duration::hours(1),
        "review.decision",
        "c1",
        "o1",
        json!({"decision": "reject"}),
    );
    log.airlock(
        since + Duration::hours(2),
        "export.requested",
        "a",
        "o1",
        json!({"action": "withdraw"}),
    );
    log.airlock(
        since + Duration::hours(3),
        "review.decision",
        "c2",
        "o1",
        json!({"decision": "reject"}),
    );
    let u = summarize(
        &log.entries,
        since,
        since + Duration::days(1),
        &BTreeSet::new(),
    );
    assert_eq!(u.totals.turnaround, Turnaround::default());
    assert_eq!(u.totals.reviews_open, 0);
}

#[test]
fn explorer_runs_shifting_one_filter_are_flagged_and_counted_as_queries() {
    let mut log = Log::new();
    let t0 = at("2026-04-01T03:00:00Z");
    let run = |d: u64| {
        json!({"filters": {"diseases": [d], "sex": ["female"], "severity": [],
                                          "ventilator": null}})
    };
    let mut runs = Vec::new();
    for (k, d) in [11u64, 12, 13].iter().enumerate() {
        let when = t0 + Duration::minutes(k as i64);
        runs.push(log.add(when, "explorer.run", "alice", Some("px"), None, run(*d)));
    }
    // The same filters again, another user, and the server's own export: no more flags.
    log.add(t0, "explorer.run", "bob", Some("px"), None, run(11));
    for d in [21u64, 22, 23] {
        log.add(
            t0,
            "explorer.run",
            "system:explorer",
            Some("px"),
            None,
            run(d),
        );
    }
    let flags = flags(&log.entries);
    let diff = kinds(&flags, FlagKind::Differencing);
    assert_eq!(diff.len(), 1, "{flags:?}");
    assert_eq!(diff[0].actor, "alice");
    assert_eq!(diff[0].shape.as_deref(), Some("explorer: diseases, sex"));
    assert_eq!(diff[0].values, vec!["11", "12", "13"]);
    assert_eq!(diff[0].entries, runs);
    let usage = summarize(
        &log.entries,
        t0 - Duration::hours(1),
        t0 + Duration::hours(1),
        &BTreeSet::new(),
    );
    assert_eq!(usage.totals.counts.queries.get("px"), Some(&4));
}

#[test]
fn explorer_shapes_ignore_empty_fields_and_keep_value_lists_together() {
    let s = explorer_shape(
        &json!({"diseases": [11, 12], "regions": [], "ventilator": true,
                                   "prefectures": ["13", "14"]}),
    )
    .unwrap();
    assert_eq!(s.shape, "explorer: diseases, prefectures, ventilator");
    assert_eq!(s.literals, vec!["11,12", "13,14", "true"]);
    assert!(explorer_shape(&json!({})).unwrap().literals.is_empty());
    assert!(explorer_shape(&json!([1])).is_none());
}
