//! Subcommands. Each module owns its argument types and turns library results into output and
//! exit codes; nothing here decides policy.

pub mod account;
pub mod audit;
pub mod bench;
pub mod database;
pub mod demo;
pub mod query;
pub mod registry;
pub mod release;
pub mod sdc;
pub mod serve;
pub mod snapshot;
pub mod state;

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
    /// Backups of a state directory (backup while the server runs, check, restore) and the keys
    /// nodes share (keygen).
    #[command(subcommand)]
    State(state::Command),
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
        Command::State(c) => state::run(c),
        Command::Bench(c) => bench::run(c),
        Command::SandboxWorker(a) => query::worker(a),
    }
}

/// Logs go to stderr so that command output on stdout stays machine-readable. `KURA_LOG` is the
/// filter (default `info`); `KURA_LOG_FORMAT=json` writes one JSON object per line instead of
/// text (docs/server.md, "Logs, request ids"). Kura's trace spans (target
/// `kura::trace`) stay on at every level: their fields (request id, trace id) are on every log
/// line of a request, and the OTLP exporter, inert unless the server configures it, sends them.
/// Benchmarks leave out the per-request access lines by default (thousands a second).
pub fn init_logging(command: &Command) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter};

    let default = match command {
        Command::Bench(_) => format!("info,{}=warn", kura_server::telemetry::ACCESS_TARGET),
        _ => "info".to_string(),
    };
    let mut filter =
        EnvFilter::try_from_env("KURA_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    if let Ok(spans) = format!("{}=info", kura_server::telemetry::SPAN_TARGET).parse() {
        filter = filter.add_directive(spans);
    }
    let format = std::env::var("KURA_LOG_FORMAT").unwrap_or_default();
    let format = format.trim().to_ascii_lowercase();
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(kura_server::otlp::SpanExportLayer);
    let _ = if format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        let done = registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init();
        if !format.is_empty() && format != "text" {
            tracing::warn!("KURA_LOG_FORMAT={format:?} is neither json nor text: logging text");
        }
        done
    };
}
