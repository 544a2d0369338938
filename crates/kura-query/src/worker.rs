//! The worker process (`kura sandbox-worker`): reads its trusted setup, confines itself, opens
//! the locked session, and only then reads the researcher's SQL, gates it, runs it and streams
//! Arrow IPC frames to stdout. A worker may then read further queries for the same setup (the
//! engine decides whether to send one, see `engine.rs`); it stops after the first failure that
//! is not a gate refusal, and exits when its stdin closes.

use std::io::{BufRead, BufReader, BufWriter, Write};

use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::gate;
use crate::policy::FunctionPolicy;
use crate::protocol::{
    write_frame, WorkerDone, WorkerFailure, WorkerQuery, WorkerSetup, TAG_BATCH, TAG_DONE,
    TAG_FAILURE, TAG_PROBES, TAG_READY, TAG_SCHEMA,
};
use crate::sandbox::{self, ConfinementPlan, ConfinementReport};
use crate::session::Session;

/// Entry point of the hidden subcommand. Returns the process exit code: 0 done, 1 the query
/// failed (a failure frame was sent), 2 the worker could not even talk the protocol.
pub fn worker_main(self_test: bool) -> u8 {
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin.lock());
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let setup: WorkerSetup = match read_json_line(&mut input) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!("kura sandbox-worker: no setup line");
            return 2;
        }
        Err(e) => {
            eprintln!("kura sandbox-worker: unreadable setup: {e}");
            return 2;
        }
    };
    if self_test {
        let outcome = run_self_test(&setup, &mut out);
        return finish_one(&mut out, outcome).unwrap_or(2);
    }
    let mut served = 0u64;
    let ready = open(&setup, &mut out);
    let (session, confinement) = match ready {
        Ok(s) => s,
        Err(failure) => return finish_one(&mut out, Err(failure)).unwrap_or(2),
    };
    loop {
        // Only now does untrusted input enter the process.
        let query: WorkerQuery = match read_json_line(&mut input) {
            Ok(Some(q)) => q,
            // The engine closed stdin: no more queries for this worker.
            Ok(None) => return 0,
            Err(message) => {
                let failure = WorkerFailure::Setup {
                    message: format!("unreadable query: {message}"),
                };
                return finish_one(&mut out, Err(failure)).unwrap_or(2);
            }
        };
        served += 1;
        let outcome =
            run_query(&setup, &session, &query, &mut out).map(|(rows, bytes)| WorkerDone {
                rows,
                bytes,
                confinement: confinement.clone(),
                served,
                cpu_ms: crate::sandbox::sys::cpu_used_ms(),
            });
        // Only a worker whose query succeeded may get another (the engine decides whether it
        // does); after any failure it exits.
        let keep_going = outcome.is_ok();
        match finish_one(&mut out, outcome) {
            Some(0) if keep_going => {}
            Some(c) => return c,
            None => return 2,
        }
    }
}

/// Sends the final frame of one query; the exit code it stands for, or `None` if the engine
/// cannot be written to.
fn finish_one(out: &mut impl Write, outcome: Result<WorkerDone, WorkerFailure>) -> Option<u8> {
    let code = match outcome {
        Ok(done) => send_json(out, TAG_DONE, &done).map(|()| 0),
        Err(failure) => send_json(out, TAG_FAILURE, &failure).map(|()| 1),
    };
    match code.and_then(|c| out.flush().map(|()| c)) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("kura sandbox-worker: cannot write to the engine: {e}");
            None
        }
    }
}

/// One JSON line; `Ok(None)` at the end of input.
fn read_json_line<T: for<'de> Deserialize<'de>>(r: &mut impl BufRead) -> Result<Option<T>, String> {
    let mut line = String::new();
    if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn send_json(out: &mut impl Write, tag: u8, v: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    write_frame(out, tag, &bytes)
}

fn plan(setup: &WorkerSetup) -> ConfinementPlan {
    let l = &setup.limits;
    ConfinementPlan {
        snapshot: setup.snapshot.clone(),
        temp_dir: setup.temp_dir.clone(),
        memory_limit_mib: l.memory_limit_mib,
        // RLIMIT_CPU counts the whole process, across every query a reused worker serves:
        // twice one query's budget, and the engine reuses a worker only while it has used at
        // most one budget, so the limit can never cut a legitimate query short.
        cpu_seconds: 2 * l.cpu_budget_seconds(),
        max_temp_mib: l.max_temp_mib,
        allow_missing: setup.allow_missing.clone(),
    }
}

fn confine(setup: &WorkerSetup) -> Result<ConfinementReport, WorkerFailure> {
    if !setup.layers.confinement {
        return Ok(ConfinementReport::default());
    }
    sandbox::confine(&plan(setup)).map_err(|e| WorkerFailure::Sandbox {
        message: e.to_string(),
    })
}

fn random_alias() -> Result<String, WorkerFailure> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| WorkerFailure::Setup {
        message: format!("no randomness for the snapshot alias: {e}"),
    })?;
    Ok(format!(
        "snap_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Confines the process, opens the locked session and tells the engine it is ready.
fn open(
    setup: &WorkerSetup,
    out: &mut impl Write,
) -> Result<(Session, ConfinementReport), WorkerFailure> {
    // Alias before confinement: getrandom may need /dev/urandom on old kernels.
    let alias = random_alias()?;
    let confinement = confine(setup)?;
    let session = Session::open(setup, &alias).map_err(|e| WorkerFailure::Setup {
        message: e.to_string(),
    })?;
    if setup.warm_up {
        session.warm_up();
    }
    write_frame(out, TAG_READY, &[])
        .and_then(|()| out.flush())
        .map_err(|e| WorkerFailure::Setup {
            message: format!("writing to the engine: {e}"),
        })?;
    Ok((session, confinement))
}

/// Gates and runs one query, streaming its schema and batches; returns rows and bytes sent.
fn run_query(
    setup: &WorkerSetup,
    session: &Session,
    query: &WorkerQuery,
    out: &mut impl Write,
) -> Result<(u64, u64), WorkerFailure> {
    if setup.layers.gate {
        let policy = FunctionPolicy::builtin().map_err(|e| WorkerFailure::Setup {
            message: e.to_string(),
        })?;
        gate::check(
            &session.conn,
            &session.db,
            &query.sql,
            &session.granted,
            &policy,
        )
        .map_err(|error| WorkerFailure::Gate { error })?;
    }
    let exec = |e: duckdb::Error| WorkerFailure::Execution {
        message: e.to_string(),
    };
    // Not a policy layer but a guard against the `duckdb` crate: `prepare` executes every
    // statement of a string but the last, so even with the gate off nothing runs unless the
    // parser sees exactly one statement.
    if let crate::duck::Split::Statements(n @ (0 | 2..)) = session.db.split(&query.sql) {
        return Err(WorkerFailure::Gate {
            error: gate::GateError::Refused {
                rule: if n == 0 {
                    gate::Rule::Empty
                } else {
                    gate::Rule::OneStatement
                },
                detail: format!("the query contains {n} statements; send exactly one"),
            },
        });
    }
    let mut stmt = session.conn.prepare(&query.sql).map_err(exec)?;
    let stream = stmt.stream_arrow([]).map_err(exec)?;
    send_ipc(out, TAG_SCHEMA, &stream.get_schema(), None)?;
    let (mut rows, mut bytes) = (0u64, 0u64);
    for batch in stream {
        let batch = batch.map_err(exec)?;
        rows += batch.num_rows() as u64;
        if rows > setup.limits.max_rows {
            return Err(WorkerFailure::RowCap {
                cap: setup.limits.max_rows,
            });
        }
        bytes += send_ipc(out, TAG_BATCH, &batch.schema(), Some(&batch))? as u64;
        if bytes > setup.limits.max_bytes {
            return Err(WorkerFailure::ByteCap {
                cap: setup.limits.max_bytes,
            });
        }
    }
    Ok((rows, bytes))
}

/// Encodes a schema (and optionally one batch) as a self-contained Arrow IPC stream frame;
/// returns the payload size.
fn send_ipc(
    out: &mut impl Write,
    tag: u8,
    schema: &SchemaRef,
    batch: Option<&RecordBatch>,
) -> Result<usize, WorkerFailure> {
    let ipc = |e: duckdb::arrow::error::ArrowError| WorkerFailure::Execution {
        message: format!("encoding the result as Arrow IPC: {e}"),
    };
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), schema).map_err(ipc)?;
    if let Some(b) = batch {
        writer.write(b).map_err(ipc)?;
    }
    writer.finish().map_err(ipc)?;
    let payload = writer.into_inner().map_err(ipc)?;
    write_frame(out, tag, &payload).map_err(|e| WorkerFailure::Execution {
        message: format!("writing to the engine: {e}"),
    })?;
    Ok(payload.len())
}

/// One probe of the confined worker: what it tried and whether the OS let it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub succeeded: bool,
    pub detail: String,
}

/// Confines like a query worker, then tries things a hostile query would want (and two it
/// must still be able to do). The probes go out as one `P` frame (a JSON list) before `D`,
/// so operators can check a kernel with `QueryEngine::self_test`.
fn run_self_test(setup: &WorkerSetup, out: &mut impl Write) -> Result<WorkerDone, WorkerFailure> {
    let confinement = confine(setup)?;
    let probes = crate::probes::run_all(setup);
    send_json(out, TAG_PROBES, &probes).map_err(|e| WorkerFailure::Setup {
        message: e.to_string(),
    })?;
    Ok(WorkerDone {
        rows: probes.len() as u64,
        bytes: 0,
        confinement,
        served: 0,
        cpu_ms: crate::sandbox::sys::cpu_used_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Layers, Limits};

    #[test]
    fn cpu_rlimit_leaves_a_reused_worker_a_full_query_budget() {
        let limits = Limits {
            timeout_ms: 1_500,
            threads: 3,
            ..Limits::default()
        };
        // 1.5 s rounds up to 2 s of wall clock on each of 3 threads.
        assert_eq!(limits.cpu_budget_seconds(), 6);
        let setup = WorkerSetup {
            snapshot: "/snap.duckdb".into(),
            temp_dir: "/tmp/x".into(),
            tables: Default::default(),
            layers: Layers::ALL,
            limits,
            allow_missing: Vec::new(),
            warm_up: false,
        };
        // The engine reuses a worker only while it used <= one budget, so the process limit
        // must be at least two budgets for the next query to get a whole one.
        assert_eq!(plan(&setup).cpu_seconds, 12);
    }

    #[test]
    fn cpu_time_used_is_reported_and_grows() {
        let before = crate::sandbox::sys::cpu_used_ms();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = crate::sandbox::sys::cpu_used_ms();
        assert!(
            before < u64::MAX && after >= before + 20,
            "{before} -> {after}"
        );
    }
}
