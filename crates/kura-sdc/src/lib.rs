//! Statistical disclosure control: rule packs, per-cell checks, secondary suppression, differencing.
//!
//! The flow is: a [`StagedTable`] (dimension columns, count and statistic columns, marginal rows
//! marked [`TOTAL`], and per-row contributor data that never leaves Kura) is checked against a
//! [`RulePack`] by [`check`], optionally against a [`ReleaseLedger`] of cells already released
//! from the same snapshot. The result is a [`Report`]: per-cell failures with reasons, and a
//! suggested protected table. [`acro::results_json`] writes the report in ACRO's `results.json`
//! shape so SACRO tooling can read it.
//!
//! Architecture invariant: this crate does no IO except in [`pack`] (reading rule files),
//! [`csv_input`] (parsing a CSV the caller has read) and [`bench`] (`kura bench sdc`: writes
//! synthetic microdata and runs the ACRO baseline in Python); it knows nothing of DuckDB or HTTP.

pub mod acro;
pub mod bench;
pub mod check;
pub mod csv_input;
pub mod error;
pub mod ledger;
pub mod pack;
pub mod report;
pub mod secondary;
pub mod table;

pub use check::{check, CheckContext};
pub use error::SdcError;
pub use ledger::{InMemoryLedger, LedgerError, ReleaseLedger, Released, ReleasedCell};
pub use pack::{Rule, RulePack};
pub use report::{Action, CellReport, Failure, Report, RuleId};
pub use table::{Contributors, Measure, MeasureKind, Row, RowMeta, StagedTable, TOTAL};
