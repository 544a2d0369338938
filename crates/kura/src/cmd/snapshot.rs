//! `kura snapshot build|verify` and `kura bench snapshot`. Exit codes: 0 success; 1 `verify`
//! found a mismatch; 2 usage, input or I/O error (the message names file, line, column, value).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use kura_snapshot::{BuildOptions, BuildSummary, Progress};

#[derive(Subcommand)]
pub enum Command {
    /// Build a pseudonymised snapshot (DuckDB file + manifest) from a raw extract.
    Build(BuildArgs),
    /// Check a snapshot against its manifest; exit 1 and say what differs on mismatch.
    Verify {
        /// The snapshot file (its manifest is FILE.manifest.json).
        file: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Directory of the raw extract (docs/raw-extract.md).
    #[arg(long)]
    raw: PathBuf,
    /// Pseudonymisation policy (docs/snapshot.md).
    #[arg(long, default_value = "policies/pseudonymise.toml")]
    policy: PathBuf,
    /// File holding the secret master key (at least 32 random bytes).
    #[arg(long)]
    key_file: PathBuf,
    /// Output snapshot; must not exist yet.
    #[arg(long)]
    out: PathBuf,
    /// Release id recorded in the manifest; the linkage key is re-keyed per release.
    #[arg(long)]
    release_id: Option<String>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(a) => {
            let opts = BuildOptions {
                raw_dir: a.raw,
                policy: a.policy,
                key_file: a.key_file,
                out: a.out,
                release_id: a.release_id,
            };
            let summary = kura_snapshot::build(&opts, &mut print_progress)?;
            print_summary(&summary);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { file } => {
            let report = kura_snapshot::verify(&file)?;
            if report.ok() {
                println!(
                    "ok: {} matches its manifest (sha256 {}, release {})",
                    file.display(),
                    report.sha256,
                    report.manifest.release_id
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("MISMATCH: {} does not match its manifest:", file.display());
                for p in &report.problems {
                    eprintln!("  - {p}");
                }
                Ok(ExitCode::from(1))
            }
        }
    }
}

fn print_progress(p: Progress<'_>) {
    match p {
        Progress::Table { table, file } => eprintln!("{table}: reading {}", file.display()),
        Progress::Rows {
            table,
            rows_read,
            rows_kept,
            seconds,
        } => eprintln!(
            "{table}: {rows_read} rows read, {rows_kept} kept ({:.0} rows/s)",
            rows_read as f64 / seconds.max(1e-9)
        ),
        Progress::TableDone {
            table,
            rows_read,
            rows_kept,
            seconds,
        } => eprintln!("{table}: done, {rows_read} rows read, {rows_kept} kept in {seconds:.1} s"),
        Progress::Step(s) => eprintln!("{s}"),
    }
}

fn print_summary(s: &BuildSummary) {
    let m = &s.manifest;
    println!("snapshot  {}", s.out.display());
    println!("manifest  {}", s.manifest_path.display());
    println!("sha256    {}", m.database.sha256);
    println!("release   {}", m.release_id);
    for t in &m.tables {
        println!("table     {:<20} {:>10} rows", t.name, t.rows);
    }
    for k in &m.k_anonymity {
        println!(
            "k-anon    {:<20} k={} over {:?}: {} of {} rows in classes below k (smallest {:?})",
            k.table,
            k.k,
            k.quasi_identifiers,
            k.rows_in_classes_below_k,
            k.rows,
            k.smallest_class_sizes
        );
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Patients in the generated extract.
    #[arg(long, default_value_t = 1_000_000)]
    patients: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Working directory (kept afterwards); default a temporary directory that is removed.
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long, default_value = "policies/pseudonymise.toml")]
    policy: PathBuf,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let (work, remove) = match &args.work {
        Some(w) => (w.clone(), false),
        None => (
            std::env::temp_dir().join(format!("kura-bench-snapshot-{}", std::process::id())),
            true,
        ),
    };
    let result = run_bench(&args, &work);
    if remove {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn run_bench(args: &BenchArgs, work: &Path) -> anyhow::Result<ExitCode> {
    let raw = work.join("raw");
    let snapshot = work.join("snapshot.duckdb");
    let plain = work.join("plain.duckdb");
    for p in [&snapshot, &plain] {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(kura_snapshot::manifest_path(p));
    }
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    eprintln!(
        "generating {} patients (seed {}) into {} (not timed)",
        args.patients,
        args.seed,
        raw.display()
    );
    let t = Instant::now();
    kura_registry::generate(
        &kura_registry::GenerateOptions {
            patients: args.patients,
            seed: args.seed,
            out: raw.clone(),
        },
        &mut |_| {},
    )?;
    eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());
    let key_file = work.join("bench.key");
    std::fs::write(&key_file, bench_key(args.seed)).context("writing the bench key")?;

    let opts = BuildOptions {
        raw_dir: raw.clone(),
        policy: args.policy.clone(),
        key_file,
        out: snapshot,
        release_id: Some("bench".into()),
    };
    let built = kura_snapshot::build(&opts, &mut print_progress)?;
    eprintln!("plain DuckDB load of the same CSVs");
    let loaded = kura_snapshot::plain_load(&raw, &plain)?;

    let rate = |rows: u64, s: f64| rows as f64 / s.max(1e-9);
    println!("| step | rows | seconds | rows/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `kura snapshot build` (validate, pseudonymise, load, k-anonymity, manifest) | {} | {:.1} | {:.0} |",
        built.rows_read,
        built.seconds,
        rate(built.rows_read, built.seconds)
    );
    println!(
        "| DuckDB `CREATE TABLE AS SELECT * FROM read_csv(...)` | {} | {:.1} | {:.0} |",
        loaded.rows,
        loaded.seconds,
        rate(loaded.rows, loaded.seconds)
    );
    println!();
    println!(
        "build / plain load = {:.2}x (goal: <= 2x); {} patients, seed {}",
        built.seconds / loaded.seconds.max(1e-9),
        args.patients,
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}

/// A fixed, seed-derived key: benchmark data only, never a real key.
fn bench_key(seed: u64) -> Vec<u8> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..32)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
