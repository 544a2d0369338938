//! `kura bench ...`: each benchmark compares Kura against the baseline its issue names, in the
//! same run, and prints a Markdown table ready for docs/benchmarks.md.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Synthetic extract generation (patients/s) against writing the same bytes without generating.
    Registry(super::registry::BenchArgs),
    /// Snapshot build rows/s against a plain DuckDB `read_csv` load of the same extract.
    Snapshot(super::snapshot::BenchArgs),
    /// Durable audit appends/s and verification speed against the disk's raw fsync rate.
    Audit(super::audit::BenchArgs),
    /// Disclosure checks (cells/s) on a 1,000,000-cell table against the `acro` Python package.
    Sdc(super::sdc::BenchArgs),
    /// Analytical queries through the sandbox against a plain DuckDB connection.
    Query(super::query::BenchArgs),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Registry(a) => super::registry::bench(a),
        Command::Snapshot(a) => super::snapshot::bench(a),
        Command::Audit(a) => super::audit::bench(a),
        Command::Sdc(a) => super::sdc::bench(a),
        Command::Query(a) => super::query::bench(a),
    }
}
