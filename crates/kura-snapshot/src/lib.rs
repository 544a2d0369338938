//! Pseudonymised, immutable DuckDB snapshots built from raw registry extracts
//! (`docs/snapshot.md`). A policy says, for every raw column, what reaches the snapshot; keyed
//! HMACs replace identifiers; the manifest records what was built and from what; `verify` checks
//! a snapshot against its manifest.
//!
//! Invariants: the master key never reaches the snapshot or the manifest; no unkeyed hash of an
//! identifier is ever computed; a failed build leaves the output path untouched.

mod bench;
mod build;
mod codelists;
mod error;
mod keys;
mod load;
mod manifest;
pub mod normalise;
mod plan;
pub mod policy;
mod raw;
mod sql;
mod transform;
mod verify;

use std::path::Path;

pub use bench::{plain_load, PlainLoad};
pub use build::{build, BuildOptions, BuildSummary};
pub use error::{Result, SnapshotError};
pub use keys::{MasterKey, MIN_KEY_BYTES};
pub use manifest::{manifest_path, sha256_file, ColumnInfo, KReport, Manifest, TableInfo};
pub use verify::{verify, VerifyReport};

/// Progress of a build, for a command line to show.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    Table {
        table: &'a str,
        file: &'a Path,
    },
    Rows {
        table: &'a str,
        rows_read: u64,
        rows_kept: u64,
        seconds: f64,
    },
    TableDone {
        table: &'a str,
        rows_read: u64,
        rows_kept: u64,
        seconds: f64,
    },
    Step(&'a str),
}
