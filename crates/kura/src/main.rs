//! `kura`: the one binary. Parses the command line and hands each subcommand to its module in
//! `cmd/`; all domain logic lives in the library crates.

mod cmd;
mod malloc;

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
    cmd::init_logging(&cli.command);
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", render(&err));
            // Exit code 2: usage or I/O error, as every subcommand documents.
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line. Library errors often put their cause's text in their own
/// message too; a cause already said is not repeated.
fn render(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
