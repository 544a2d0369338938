//! The airlock: nothing leaves Kura except through it. This crate is its domain logic, without
//! HTTP (the server calls it after authorising and auditing each request):
//!
//! - [`staged`]: the staged Arrow file, hash-checked against the hash recorded at staging, as a
//!   [`kura_sdc::StagedTable`] (header convention of docs/sdc.md); refusals for non-tabular,
//!   oversized and identifying outputs.
//! - [`workflow`]: pure review logic: draft -> submitted -> approved / changes requested /
//!   rejected -> released, withdrawn; context before submission; two blind checker votes, a
//!   third to break ties; the author never reviews.
//! - [`model`]: the data (states, decisions, context, rounds, votes).
//! - `store`, `schema`, `reviews` and [`ledger`]: the `airlock_*` tables, in the state
//!   directory's `kura.sqlite` or in a PostgreSQL database shared by several nodes
//!   ([`AirlockDatabase`]), through the statement layer shared with kura-store (`kura-sql`); the persistent release
//!   ledger ([`PersistentLedger`]).
//! - [`release`]: the protected table, a signed manifest, the ledger; [`verify`] checks a
//!   release directory with the verifier key.
//! - [`report`]: what checkers see: the kura-sdc report and overlaps with earlier releases.
//!
//! See docs/airlock.md.

pub mod airlock;
pub mod error;
pub mod ledger;
pub mod model;
pub mod release;
pub mod report;
mod reviews;
mod schema;
pub mod staged;
mod store;
pub mod verify;
pub mod workflow;

pub use airlock::{valid_id, Airlock, AirlockConfig};
pub use error::AirlockError;
pub use ledger::{PersistentLedger, ReleaseRecord};
pub use release::{Manifest, Release, ReleasedFile};
pub use report::{CheckerReport, Overlap, Relation};
pub use staged::{load_staged, staged_path, table_from_arrow, StagedLimits};
pub use store::AirlockDatabase;
pub use verify::verify_release;
pub use workflow::{
    CheckStamp, Context, Decision, HistoryEntry, OpenRound, Outcome, Review, ReviewView, Round,
    StagedOutput, State, Vote,
};
