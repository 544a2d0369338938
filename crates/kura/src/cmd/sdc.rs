//! `kura sdc ...`: statistical disclosure control checks on an output table from the command line.
//! Exit codes: 0 every cell passes, 1 some cell fails or the output is refused, 2 bad input.
//! Also `kura bench sdc` (cells/s against the `acro` Python package, masks compared cell by cell).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kura_sdc::{acro, check, csv_input, CheckContext, InMemoryLedger, ReleaseLedger, RulePack};

#[derive(Subcommand)]
pub enum Command {
    /// Check a CSV table (header convention: docs/sdc.md) against a rule pack.
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Rule pack: a name from the policies directory (or built in), or a path to a .toml file.
    #[arg(long, default_value = kura_sdc::pack::DEFAULT_PACK)]
    pub rules: String,
    /// Directory of rule packs, searched before the built-in ones.
    #[arg(long, env = "KURA_SDC_POLICIES", default_value = "policies/sdc")]
    pub policies: PathBuf,
    /// The table, as CSV.
    pub file: PathBuf,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write an ACRO-compatible results.json here (the protected table is written beside
    /// it as `<file stem>_protected.csv`).
    #[arg(long, value_name = "OUT")]
    pub results_json: Option<PathBuf>,
    /// Cells already released from the same snapshot (JSON array of
    /// `{release, measure, definition, value}`), for the differencing check.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// A filter that defines the table's population beyond its dimensions (repeatable), e.g.
    /// `--filter "disease != 11"`; used to compare definitions with released cells.
    #[arg(long = "filter")]
    pub filters: Vec<String>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => run_check(args),
    }
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let pack = RulePack::find(&args.rules, std::slice::from_ref(&args.policies))?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut table = csv_input::parse_csv(&text, &args.file.display().to_string())?;
    table.population_filters = args.filters.clone();
    let mut ledger = InMemoryLedger::default();
    if let Some(path) = &args.ledger {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read ledger {}", path.display()))?;
        let cells: Vec<kura_sdc::ReleasedCell> = serde_json::from_str(&raw).with_context(|| {
            format!(
                "ledger {} is not a JSON array of released cells",
                path.display()
            )
        })?;
        ledger.record("cli", cells)?;
    }
    let ctx = CheckContext {
        snapshot: "cli",
        ledger: Some(&ledger),
    };
    let report = check(&table, &pack, &ctx)?;

    if let Some(out) = &args.results_json {
        let stem = args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let protected_name = format!("{stem}_protected.csv");
        let dir = out.parent().map(PathBuf::from).unwrap_or_default();
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        if let Some(csv) = report.protected_csv() {
            let path = dir.join(&protected_name);
            std::fs::write(&path, csv)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let command = format!(
            "kura sdc check --rules {} {}",
            args.rules,
            args.file.display()
        );
        let record = acro::record(
            &report,
            "output_0",
            &protected_name,
            &command,
            &acro::iso8601_utc(secs),
        );
        let doc = acro::results_json(vec![("output_0".into(), record)]);
        std::fs::write(out, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Grid cells of the main run (the largest square grid not above it; margins come on top).
    #[arg(long, default_value_t = 1_000_000)]
    pub cells: u64,
    /// Largest grid on which ACRO's suppression (one pandas query per failing cell) is timed;
    /// when `--cells` is larger, both tools also run at this size.
    #[arg(long, default_value_t = 10_000)]
    pub suppress_cells: u64,
    /// Seconds each ACRO run may take before it is stopped.
    #[arg(long, default_value_t = 600)]
    pub acro_timeout: u64,
    /// A Python interpreter with `acro` installed (default: the venv below, created if absent).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Virtual environment for acro (default `$HOME/.cache/kura/acro-venv`).
    #[arg(long)]
    pub venv: Option<PathBuf>,
    /// Do not create the venv or `pip install acro` when missing; report ACRO as unavailable.
    #[arg(long)]
    pub no_install: bool,
    /// Measure Kura only.
    #[arg(long)]
    pub no_acro: bool,
    /// Runs of Kura's check (median reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Directory for the microdata handed to ACRO (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let scratch = std::env::temp_dir().join(format!("kura-bench-sdc-{}", std::process::id()));
    let work_dir = args.dir.clone().unwrap_or_else(|| scratch.clone());
    let opts = kura_sdc::bench::Options {
        cells: args.cells,
        suppress_cells: args.suppress_cells,
        seed: args.seed,
        repeat: args.repeat,
        timeout: std::time::Duration::from_secs(args.acro_timeout),
        python: args.python,
        venv: args
            .venv
            .unwrap_or_else(|| home.join(".cache/kura/acro-venv")),
        install: !args.no_install,
        skip_acro: args.no_acro,
        work_dir,
    };
    let result = kura_sdc::bench::run(&opts, &mut |line| eprintln!("{line}"));
    if args.dir.is_none() {
        // The microdata is hundreds of MB at full size; keep it only when asked to.
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let report = result?;
    println!("{}", report.to_markdown());
    Ok(if report.masks_identical() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
