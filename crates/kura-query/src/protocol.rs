//! The pipe protocol between the engine and its worker.
//!
//! stdin (engine -> worker): one JSON line [`WorkerSetup`] (trusted: paths, grant, limits), then
//! one JSON line [`WorkerQuery`] (the researcher's SQL), read only after the worker confined
//! itself. stdout (worker -> engine): frames of `tag: u8, len: u32 LE, payload`:
//! `R` (empty, once: ready for the first query), then per query `S` (Arrow IPC stream holding
//! the schema), `B` (Arrow IPC stream holding one batch), then exactly one of `D`
//! ([`WorkerDone`] JSON) or `E` ([`WorkerFailure`] JSON).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::gate::GateError;
use crate::sandbox::{ConfinementReport, Mechanism};

pub const TAG_SCHEMA: u8 = b'S';
pub const TAG_BATCH: u8 = b'B';
pub const TAG_DONE: u8 = b'D';
pub const TAG_FAILURE: u8 = b'E';
/// Sent (empty) once the worker is confined, DuckDB is open and locked and it waits for the
/// query line; lets the engine keep a spare worker and know when its setup is done.
pub const TAG_READY: u8 = b'R';
/// Self-test only: the JSON list of probes.
pub const TAG_PROBES: u8 = b'P';

/// The largest frame the engine accepts; a batch is far smaller (DuckDB's 2048-row chunks).
pub const MAX_FRAME: u32 = 256 * 1024 * 1024;

/// Which defence layers are on. All on in production; tests switch all but one off to show
/// each holds on its own. Not reachable from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layers {
    pub gate: bool,
    pub settings: bool,
    pub views: bool,
    pub confinement: bool,
}

impl Layers {
    pub const ALL: Layers = Layers {
        gate: true,
        settings: true,
        views: true,
        confinement: true,
    };
    pub const NONE: Layers = Layers {
        gate: false,
        settings: false,
        views: false,
        confinement: false,
    };
}

impl Default for Layers {
    fn default() -> Self {
        Layers::ALL
    }
}

/// Resource limits of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout_ms: u64,
    pub max_rows: u64,
    pub max_bytes: u64,
    pub memory_limit_mib: u64,
    pub threads: u32,
    pub max_temp_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 60_000,
            max_rows: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            memory_limit_mib: 2048,
            threads: 2,
            max_temp_mib: 4096,
        }
    }
}

impl Limits {
    /// CPU seconds one query may use: its wall-clock timeout on every thread.
    pub fn cpu_budget_seconds(&self) -> u64 {
        self.timeout_ms.div_ceil(1000).max(1) * u64::from(self.threads.max(1))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSetup {
    pub snapshot: PathBuf,
    pub temp_dir: PathBuf,
    /// Granted table -> granted columns (`*` = all).
    pub tables: BTreeMap<String, Vec<String>>,
    pub layers: Layers,
    pub limits: Limits,
    pub allow_missing: Vec<Mechanism>,
    /// Warm DuckDB up before reporting ready: only for a spare, whose setup nobody waits on.
    #[serde(default)]
    pub warm_up: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerQuery {
    pub sql: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerDone {
    pub rows: u64,
    pub bytes: u64,
    pub confinement: ConfinementReport,
    /// How many queries this worker process has received, this one included.
    #[serde(default)]
    pub served: u64,
    /// CPU time the worker process has used so far (all queries, all threads).
    #[serde(default)]
    pub cpu_ms: u64,
}

/// Why the worker did not complete the query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerFailure {
    Gate { error: GateError },
    Execution { message: String },
    RowCap { cap: u64 },
    ByteCap { cap: u64 },
    Setup { message: String },
    Sandbox { message: String },
}

pub fn write_frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("frame larger than 4 GiB"))?;
    w.write_all(&[tag])?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)?;
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "worker sent a {len}-byte frame (limit {MAX_FRAME})"
        )));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}
