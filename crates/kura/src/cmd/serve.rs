//! `kura serve`: the HTTPS service on a configuration file (or embedded defaults), until
//! SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kura_server::ServerConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML, see docs/server.md); embedded defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides `state_dir` of the configuration.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Overrides `listen` (e.g. 127.0.0.1:8443; port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides `database_url` and `[audit] key_file`: several nodes share one PostgreSQL.
    #[command(flatten)]
    database: super::database::DatabaseArgs,
}

impl Args {
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::load(path)?,
            None => ServerConfig::default(),
        };
        if let Some(state) = &self.state {
            config.state_dir = state.clone();
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        self.database.apply(&mut config)?;
        config.check()?;
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    serve(args.config()?)
}

/// Serves until a signal; prints one line `kura: serving <origin>` on stdout when ready.
pub fn serve(config: ServerConfig) -> anyhow::Result<ExitCode> {
    crate::malloc::return_large_blocks();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(kura_server::serve(config, |ready| {
        println!("kura: serving {}", ready.origin);
    }))?;
    Ok(ExitCode::SUCCESS)
}
