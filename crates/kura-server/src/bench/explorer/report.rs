//! The explorer benchmark's Markdown for docs/benchmarks.md.

use super::{Report, GOAL_CLIENTS};

fn cpu(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.0}"))
}

fn pair(x: Option<(f64, f64)>) -> String {
    x.map_or("- | -".to_string(), |(a, b)| format!("{a:.1} | {b:.1}"))
}

/// The tables: latency by class (server and DuckDB), CPU, each view under load, the profile,
/// the checks and the goal.
pub fn markdown(r: &Report) -> String {
    let forms = r.snapshot_rows.get("nanbyo_forms").copied().unwrap_or(0);
    let mut s = format!(
        "{} patients on {forms} nanbyo_forms rows; {} clients in projects of {} \
         (each its own account and session); think time {}; seed {}; {:.0} % of requests \
         without a disease filter; {} warm-up requests; worker limits {} DuckDB threads, {} MiB. \
         Catalog: {} treatments, fiscal years {}. Index: {} forms of {} patients, {:.0} MiB; \
         first GET .../explorer (reads it through the sandbox) {:.0} ms, the same export and \
         build in the profile {:.0} ms.\n\n",
        r.patients,
        r.clients,
        r.team_size,
        if r.think_ms == 0 {
            "none (closed loop)".to_string()
        } else {
            format!("{} ms mean (uniform 0.5-1.5x)", r.think_ms)
        },
        r.seed,
        r.national_share * 100.0,
        r.warmup,
        r.limits.threads,
        r.limits.memory_limit_mib,
        r.treatments,
        match (r.fiscal_years.first(), r.fiscal_years.last()) {
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => "none".into(),
        },
        r.index_forms,
        r.index_patients,
        r.index_heap_mib,
        r.first_get_ms,
        r.index_build_ms,
    );
    s.push_str(
        "Server: the explorer as served (index). DuckDB: the same requests as the views' SQL on \
         DuckDB directly, the same concurrency (what serving them by SQL costs).\n\n\
         | requests | n | server p50 (ms) | server p99 (ms) | server mean (ms) | server max (ms) \
         | server req/s | DuckDB p50 (ms) | DuckDB p99 (ms) | DuckDB mean (ms) | DuckDB max (ms) \
         | DuckDB req/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in &r.classes {
        let (a, b) = (&c.server, &c.duckdb);
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |\n",
            c.class,
            a.requests,
            a.p50_ms,
            a.p99_ms,
            a.mean_ms,
            a.max_ms,
            a.per_second,
            b.p50_ms,
            b.p99_ms,
            b.mean_ms,
            b.max_ms,
            b.per_second,
        ));
    }
    s.push_str(&format!(
        "\nThe server's own `duration_ms` of the same requests: p50 {:.0} ms, p99 {:.0} ms, \
         mean {:.0} ms.\n",
        r.server_reported.p50_ms, r.server_reported.p99_ms, r.server_reported.mean_ms
    ));
    if let Some(all) = r.classes.first() {
        s.push_str(&format!(
            "\n| CPU ms/request | server + clients (this process) | sandbox workers | DuckDB \
             directly |\n|---|---:|---:|---:|\n| all | {} | {} | {} |\n",
            cpu(all.server.cpu_ms_process),
            cpu(all.server.cpu_ms_workers),
            cpu(all.duckdb.cpu_ms_process),
        ));
    }
    s.push_str(
        "\nEach view's SQL in the baseline (DuckDB directly, under the same load).\n\n\
         | requests | view | DuckDB p50 (ms) | DuckDB p99 (ms) | DuckDB mean (ms) |\n\
         |---|---|---:|---:|---:|\n",
    );
    for v in &r.views {
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} |\n",
            v.class, v.view, v.duckdb.p50_ms, v.duckdb.p99_ms, v.duckdb.mean_ms,
        ));
    }
    s.push_str(&format!(
        "\nProfile: {} requests with a disease filter and {} without, from the timed ones, one at \
         a time after the timed run (the other users idle), each in turn through the server (one \
         client), the index alone, the protection step and DuckDB directly.\n\n\
         | step (1 request at a time) | disease p50 (ms) | disease p99 (ms) | national p50 (ms) \
         | national p99 (ms) |\n|---|---:|---:|---:|---:|\n",
        r.profile_requests.0, r.profile_requests.1
    ));
    for p in &r.profile {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            p.step,
            pair(p.disease),
            pair(p.national)
        ));
    }
    if !r.what_if.is_empty() {
        s.push_str(
            "\nWhat if (`--what-if`): the profile requests on DuckDB directly, one at a time, in \
             variants of the SQL and of the snapshot layout; every variant's rows equal the \
             generated SQL's (same record hash).\n\n\
             | variant | disease p50 (ms) | disease p99 (ms) | disease CPU ms/request \
             | national p50 (ms) | national p99 (ms) | national CPU ms/request |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        let three = |x: Option<(f64, f64, f64)>| {
            x.map_or("- | - | -".to_string(), |(a, b, c)| {
                format!("{a:.1} | {b:.1} | {c:.0}")
            })
        };
        for w in &r.what_if {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                w.variant,
                three(w.disease),
                three(w.national)
            ));
        }
    }
    let c = &r.checks;
    if c.failed > 0 {
        s.push_str(&format!(
            "\n**{} of {} timed requests failed** (error status; their time to the error answer \
             is in the latencies). First: {}\n",
            c.failed,
            c.answers,
            c.first_failure.as_deref().unwrap_or("-")
        ));
    }
    s.push_str(&format!(
        "\nChecked: {} timed answers with HTTP 200 (three views, one value per category) and the \
         profile's, {} cells (timed) of which \
         {} suppressed (none carries a value; no published number under the threshold); {} \
         published grand totals within 2 of DuckDB's raw total ({} suppressed); {} runs in \
         the audit log with the request's filters and the answer's queries; {} profile views \
         whose rows from the index equal DuckDB's rows of the view's SQL.\n",
        c.answers - c.failed,
        c.cells,
        c.suppressed_cells,
        c.totals_compared,
        c.totals_suppressed,
        c.runs_audited,
        c.rows_identical,
    ));
    if let Some(all) = r.classes.first() {
        let at = if r.clients == GOAL_CLIENTS {
            String::new()
        } else {
            format!(
                " (this run: {} clients, the goal is for {GOAL_CLIENTS})",
                r.clients
            )
        };
        s.push_str(&format!(
            "\nGoal: p99 under {:.0} ms with {GOAL_CLIENTS} users{at}, no failed request: {} \
             (p99 {:.0} ms, {} failed).\n",
            r.goal_p99_ms,
            if r.goal_met { "met" } else { "not met" },
            all.server.p99_ms,
            c.failed
        ));
    }
    s
}
