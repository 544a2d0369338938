//! Subcommands. Each module owns its argument types and turns library results into output and
//! exit codes; nothing here decides policy.

pub mod account;
pub mod audit;
pub mod bench;
pub mod demo;
pub mod query;
pub mod registry;
pub mod release;
pub mod sdc;
pub mod serve;
pub mod snapshot;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Kura's main job on embedded defaults: demo data, a snapshot, accounts, projects, and the
    /// HTTPS service with the web UI.
    Demo(demo::Args),
    /// The HTTPS service: sign-in, projects, the workspace API and web UI.
    Serve(serve::Args),
    /// Local accounts (the first steward of a new installation).
    #[command(subcommand)]
    Account(account::Command),
    /// Synthetic raw registry extracts (難病 and 小慢), as a data steward receives them.
    #[command(subcommand)]
    Registry(registry::Command),
    /// Build and verify pseudonymised DuckDB snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::Command),
    /// The tamper-evident audit log: verify, checkpoints, proofs, search, notes.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Released outputs: verify a release's signed manifest and hashes.
    #[command(subcommand)]
    Release(release::Command),
    /// Statistical disclosure control checks on an output table.
    #[command(subcommand)]
    Sdc(sdc::Command),
    /// Run one query through the sandbox, as the server would.
    Query(query::Args),
    /// Benchmarks that back the performance claims in docs/benchmarks.md.
    #[command(subcommand)]
    Bench(bench::Command),
    /// The query worker the engine re-executes (internal; talks its protocol on stdin/stdout).
    #[command(hide = true)]
    SandboxWorker(query::WorkerArgs),
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(a) => demo::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Account(c) => account::run(c),
        Command::Registry(c) => registry::run(c),
        Command::Snapshot(c) => snapshot::run(c),
        Command::Audit(c) => audit::run(c),
        Command::Sdc(c) => sdc::run(c),
        Command::Release(c) => release::run(c),
        Command::Query(a) => query::run(a),
        Command::Bench(c) => bench::run(c),
        Command::SandboxWorker(a) => query::worker(a),
    }
}

/// Logs go to stderr so that command output on stdout stays machine-readable.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KURA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
