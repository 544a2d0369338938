//! Timing of the generator for `kura bench registry`: the parallel generator, the same work on
//! one thread, and the baseline the issue cares about — writing the same number of bytes to the
//! same disk with nothing to compute — all in one run.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::{generate, GenerateOptions, RegistryError};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub patients: u64,
    pub seed: u64,
    /// Scratch directory; the extracts written there are removed afterwards.
    pub dir: PathBuf,
    /// Also time a single-thread run (doubles the bench's duration or more).
    pub single_thread: bool,
}

#[derive(Debug, Clone)]
pub struct BenchRow {
    pub label: String,
    pub threads: usize,
    pub seconds: f64,
    pub bytes: u64,
    pub rows: u64,
}

fn write_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Write {
        path: path.to_path_buf(),
        error: source,
    }
}

fn timed_generate(o: &BenchOptions, name: &str, threads: usize) -> Result<BenchRow, RegistryError> {
    let out = o.dir.join(name);
    let opts = GenerateOptions {
        patients: o.patients,
        seed: o.seed,
        out: out.clone(),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .ok();
    let start = Instant::now();
    let summary = match &pool {
        Some(p) => p.install(|| generate(&opts, &mut |_| {}))?,
        None => generate(&opts, &mut |_| {})?,
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut bytes = 0;
    for f in &summary.files {
        let p = out.join(&f.name);
        bytes += fs::metadata(&p).map_err(write_err(&p))?.len();
    }
    fs::remove_dir_all(&out).map_err(write_err(&out))?;
    Ok(BenchRow {
        label: format!(
            "kura registry generate ({threads} thread{})",
            if threads == 1 { "" } else { "s" }
        ),
        threads,
        seconds,
        bytes,
        rows: summary.files.iter().map(|f| f.rows).sum(),
    })
}

/// Writes `bytes` of CSV-like text through the same buffered, synced path: the I/O floor.
fn timed_write(o: &BenchOptions, bytes: u64) -> Result<BenchRow, RegistryError> {
    let path = o.dir.join("baseline.bin");
    let err = write_err(&path);
    let line = b"N00000123-2021,13004567,97,2021,2021-06-14,padding padding padding padding,0\n";
    let start = Instant::now();
    let file = fs::File::create(&path).map_err(&err)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(line.len() as u64) as usize;
        w.write_all(&line[..n]).map_err(&err)?;
        left -= n as u64;
    }
    let file = w.into_inner().map_err(|e| err(e.into_error()))?;
    file.sync_all().map_err(&err)?;
    let seconds = start.elapsed().as_secs_f64();
    fs::remove_file(&path).map_err(&err)?;
    Ok(BenchRow {
        label: "baseline: write the same bytes, no generation".into(),
        threads: 1,
        seconds,
        bytes,
        rows: 0,
    })
}

pub fn run(o: &BenchOptions) -> Result<Vec<BenchRow>, RegistryError> {
    fs::create_dir_all(&o.dir).map_err(|source| RegistryError::CreateDir {
        path: o.dir.clone(),
        error: source,
    })?;
    let threads = rayon::current_num_threads();
    let mut rows = vec![timed_generate(o, "parallel", threads)?];
    if o.single_thread && threads > 1 {
        rows.push(timed_generate(o, "single", 1)?);
    }
    let bytes = rows[0].bytes;
    rows.push(timed_write(o, bytes)?);
    Ok(rows)
}
