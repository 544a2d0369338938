//! Running the ACRO baseline: finding (or creating) a Python with `acro` installed, running
//! `bench/acro_bench.py` under a time limit, and reading the cells ACRO flagged.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::data::{row_index, NK, P_RATIO, THRESHOLD};

/// The driver script, compiled in so the binary works from any directory.
pub const DRIVER: &str = include_str!("../../bench/acro_bench.py");

/// What `acro_bench.py` writes.
#[derive(Debug, Clone, Deserialize)]
pub struct AcroResult {
    pub acro_version: String,
    pub pandas_version: String,
    pub suppress: bool,
    /// Wall time of the `crosstab` call (checks, and suppression when on).
    pub seconds: f64,
    pub microdata_rows: u64,
    /// Row and column labels of ACRO's outcome table, `All` for the margins.
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// `[row, col]` positions per check: `threshold`, `nk`, `p_ratio`.
    pub cells: AcroCells,
    /// NaN cells of the table ACRO returns (its suppression, zeros included).
    pub suppressed_after: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AcroCells {
    #[serde(default)]
    pub threshold: Vec<[usize; 2]>,
    #[serde(default)]
    pub nk: Vec<[usize; 2]>,
    #[serde(default)]
    pub p_ratio: Vec<[usize; 2]>,
}

#[derive(Debug)]
pub enum AcroOutcome {
    Done(AcroResult),
    TimedOut(Duration),
    Failed(String),
}

/// A Python interpreter that can `import acro`. Tries `explicit`, else `venv/bin/python`; if
/// neither works and `install` is set, creates the venv with `python3 -m venv` and
/// `pip install acro`. `Err` says why acro is unavailable.
pub fn find_python(
    explicit: Option<&Path>,
    venv: &Path,
    install: bool,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return imports_acro(p).map(|()| p.to_path_buf());
    }
    let python = venv.join("bin").join("python");
    if imports_acro(&python).is_ok() {
        return Ok(python);
    }
    if !install {
        return Err(format!(
            "no Python with acro at {} (pass --python PATH, or allow the bench to install it)",
            python.display()
        ));
    }
    log(&format!(
        "creating {} and installing acro from PyPI ...",
        venv.display()
    ));
    if !python.exists() {
        run_quiet(
            Command::new("python3").arg("-m").arg("venv").arg(venv),
            "python3 -m venv",
        )?;
    }
    run_quiet(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "acro"]),
        "pip install acro",
    )?;
    imports_acro(&python).map(|()| python)
}

fn imports_acro(python: &Path) -> Result<(), String> {
    run_quiet(
        Command::new(python).args(["-c", "import acro"]),
        &format!("{} -c 'import acro'", python.display()),
    )
}

fn run_quiet(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(3).collect();
    Err(format!(
        "{what} failed ({}): {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}

/// Runs the driver on the microdata in `data_dir`; kills it after `timeout`.
pub fn run(python: &Path, data_dir: &Path, suppress: bool, timeout: Duration) -> AcroOutcome {
    let script = data_dir.join("acro_bench.py");
    let out = data_dir.join(if suppress {
        "acro_suppress.json"
    } else {
        "acro_checks.json"
    });
    let stderr_path = data_dir.join("acro_stderr.txt");
    if let Err(e) = std::fs::write(&script, DRIVER) {
        return AcroOutcome::Failed(format!("cannot write {}: {e}", script.display()));
    }
    let stderr = match std::fs::File::create(&stderr_path) {
        Ok(f) => f,
        Err(e) => {
            return AcroOutcome::Failed(format!("cannot create {}: {e}", stderr_path.display()))
        }
    };
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(data_dir).arg(&out);
    if !suppress {
        cmd.arg("--no-suppress");
    }
    // ACRO writes its own logs and warnings; a file cannot fill up and block the child.
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return AcroOutcome::Failed(format!("cannot run {}: {e}", python.display())),
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return AcroOutcome::TimedOut(start.elapsed());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return AcroOutcome::Failed(format!("waiting for acro: {e}")),
        }
    };
    if !status.success() {
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return AcroOutcome::Failed(format!(
            "acro_bench.py exited with {status}: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let parsed = std::fs::read_to_string(&out)
        .map_err(|e| format!("cannot read {}: {e}", out.display()))
        .and_then(|text| {
            serde_json::from_str::<AcroResult>(&text)
                .map_err(|e| format!("{} is not the driver's output: {e}", out.display()))
        });
    match parsed {
        Ok(r) => AcroOutcome::Done(r),
        Err(e) => AcroOutcome::Failed(e),
    }
}

/// ACRO's flagged cells as a mask over Kura's staged-table rows ([`row_index`] layout). Fails if
/// ACRO's table does not have the labels Kura's has, in the same order.
pub fn mask(result: &AcroResult, rows: u32, cols: u32) -> Result<Vec<u8>, String> {
    let expect = |n: u32| -> Vec<String> {
        (0..n)
            .map(|x| x.to_string())
            .chain(std::iter::once("All".to_string()))
            .collect()
    };
    if result.rows != expect(rows) || result.cols != expect(cols) {
        return Err(format!(
            "ACRO's table is {} x {} with labels that differ from Kura's 0..{rows} / 0..{cols} + All",
            result.rows.len(),
            result.cols.len()
        ));
    }
    let mut out = vec![0u8; (rows as usize + 1) * (cols as usize + 1)];
    for (cells, bit) in [
        (&result.cells.threshold, THRESHOLD),
        (&result.cells.nk, NK),
        (&result.cells.p_ratio, P_RATIO),
    ] {
        for &[i, j] in cells {
            let (Ok(i), Ok(j)) = (u32::try_from(i), u32::try_from(j)) else {
                return Err(format!("ACRO cell [{i}, {j}] is out of range"));
            };
            if i > rows || j > cols {
                return Err(format!("ACRO cell [{i}, {j}] is outside the table"));
            }
            out[row_index(cols, i, j)] |= bit;
        }
    }
    Ok(out)
}
