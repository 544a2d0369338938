//! `kura release`: supervisors check a released output on their own: the signed manifest, the
//! released file's hash, and the key that signed it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use kura_airlock::{Airlock, AirlockConfig};

#[derive(Subcommand)]
pub enum Command {
    /// Verifies a release directory (`<state>/releases/<output>/`): signature, hashes, files.
    /// Exit 0 intact, 1 not intact, 2 bad input.
    Verify {
        /// The release directory.
        dir: PathBuf,
        /// The release verifier key (`kura release public-key`), obtained independently.
        #[arg(long)]
        key: String,
    },
    /// Prints the release verifier key of a state directory.
    PublicKey {
        #[arg(long, default_value = "state")]
        state: PathBuf,
        #[command(flatten)]
        db: super::database::DatabaseArgs,
    },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Verify { dir, key } => match kura_airlock::verify_release(&dir, &key) {
            Ok(m) => {
                println!(
                    "intact: output {} of project {} ({}), file {} sha256 {}, approved by {}, rule pack {} {}",
                    m.output_id,
                    m.project,
                    m.title,
                    m.file,
                    m.file_sha256,
                    m.reviewers.join(" and "),
                    m.rule_pack,
                    m.rule_pack_version
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ kura_airlock::AirlockError::Verify { .. }) => {
                eprintln!("NOT INTACT: {e}");
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e.into()),
        },
        Command::PublicKey { state, db } => {
            let airlock = Airlock::open(AirlockConfig::new(&state).with_database_url(db.url()?))?;
            println!("{}", airlock.release_verifier_key()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
