//! `kura`: the one binary. Parses the command line and hands each subcommand to its module in
//! `cmd/`; all domain logic lives in the library crates.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kura",
    version,
    about = "Kura (蔵): secure remote analysis of health registries"
)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_logging();
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            // Exit code 2: usage or I/O error, as every subcommand documents.
            ExitCode::from(2)
        }
    }
}
