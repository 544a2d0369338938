//! Shared helpers for the end-to-end tests: locating the `kura` binary and running it, a real
//! `kura serve` with an HTTPS client (`server`), the real OpenID provider (`oidc`), and headless
//! Chromium through WebDriver (`browser`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod cluster;
pub mod oidc;
pub mod server;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of the `kura` binary built in the same target directory as the running test.
///
/// Test binaries live in `<target>/<profile>/deps/`; the binary is in `<target>/<profile>/`.
/// `scripts/test` builds it before running the tests.
pub fn kura_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let bin = profile_dir.join(format!("kura{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "the kura binary is not built at {}: run `cargo build --bin kura` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// Runs `kura` with the given arguments and returns its output. The caller's
/// `KURA_DATABASE_URL` is not passed on: a test names its database itself.
pub fn kura(args: &[&str]) -> Output {
    Command::new(kura_bin())
        .args(args)
        .env_remove("KURA_DATABASE_URL")
        .output()
        .unwrap_or_else(|e| panic!("cannot run kura: {e}"))
}

/// The repository root (policies, UI sources, the test OpenID provider live there).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
