//! `kura registry generate` and `kura bench registry`: synthetic raw registry extracts
//! (docs/raw-extract.md, model in docs/registry.md). Exit codes: 0 success; 2 usage or I/O error
//! (the message names the path).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kura_registry::{GenerateOptions, Progress};

#[derive(Subcommand)]
pub enum Command {
    /// Write a deterministic synthetic raw extract (難病 and 小慢 forms, treatments,
    /// institutions) into a directory.
    Generate(GenerateArgs),
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Number of patients (about 85% adult 難病, 15% 小慢 children).
    #[arg(long, default_value_t = 100_000)]
    patients: u64,
    /// RNG seed: the same seed and patient count give byte-identical files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (created if missing; existing files of the extract are replaced).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Patients per run.
    #[arg(long, default_value_t = 1_000_000)]
    patients: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scratch directory on the disk to measure (emptied of the bench's files afterwards).
    #[arg(long, default_value = "target/bench-registry")]
    dir: PathBuf,
    /// Also time a single-thread run.
    #[arg(long)]
    single_thread: bool,
}

/// Prints to stderr each time another 5% of patients is done.
fn progress_printer() -> impl FnMut(Progress) {
    let mut last_step = 0;
    move |p: Progress| {
        let step = (p.patients_done * 20)
            .checked_div(p.patients_total)
            .unwrap_or(20);
        if step > last_step {
            last_step = step;
            eprintln!(
                "generate: {}/{} patients ({}%)",
                p.patients_done,
                p.patients_total,
                step * 5
            );
        }
    }
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Generate(a) => {
            let opts = GenerateOptions {
                patients: a.patients,
                seed: a.seed,
                out: a.out,
            };
            let summary = kura_registry::generate(&opts, &mut progress_printer())
                .with_context(|| format!("generating a raw extract into {}", opts.out.display()))?;
            println!(
                "wrote a raw extract of {} patients (seed {}) to {}",
                summary.patients,
                opts.seed,
                opts.out.display()
            );
            for f in &summary.files {
                println!("  {:<24} {:>10} rows", f.name, f.rows);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let opts = kura_registry::bench::BenchOptions {
        patients: a.patients,
        seed: a.seed,
        dir: a.dir,
        single_thread: a.single_thread,
    };
    let rows = kura_registry::bench::run(&opts)
        .with_context(|| format!("benchmarking in {}", opts.dir.display()))?;
    println!("| run | patients | seconds | patients/s | rows/s | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let per = |x: f64| if r.seconds > 0.0 { x / r.seconds } else { 0.0 };
        let (patients, pps, rps) = if r.rows == 0 {
            ("-".to_string(), "-".to_string(), "-".to_string())
        } else {
            (
                opts.patients.to_string(),
                format!("{:.0}", per(opts.patients as f64)),
                format!("{:.0}", per(r.rows as f64)),
            )
        };
        println!(
            "| {} | {patients} | {:.2} | {pps} | {rps} | {:.1} |",
            r.label,
            r.seconds,
            per(r.bytes as f64 / 1e6)
        );
    }
    Ok(ExitCode::SUCCESS)
}
