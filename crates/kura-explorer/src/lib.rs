//! The trial-feasibility explorer's domain logic (docs/explorer.md): no HTTP, no DuckDB.
//!
//! Flow, as the server drives it:
//! 1. Once per snapshot: the rows of [`index::export_sql`], read through the audited sandbox
//!    engine, into an [`IndexBuilder`] -> [`ExplorerIndex`] (the forms' columns the views read,
//!    in memory); its [`ExplorerIndex::catalog`] (treatment names, fiscal years) -> [`Explorer`].
//! 2. [`Explorer::validate`]: the form ([`Feasibility`], JSON) against closed lists -> [`Filters`].
//! 3. [`ExplorerIndex::raw_views`]: per view the unprotected per-cell counts, institution counts
//!    and contributor fingerprints ([`RawView`]), which stay in the server. They are exactly
//!    the rows of the views' SQL ([`Explorer::queries`], [`ViewQuery`]), which defines them and
//!    which the tests run through DuckDB to check the index.
//! 4. [`Explorer::protect`]: the rows -> perturbed (cell-key method, [`cellkey`]) and
//!    suppressed (kura-sdc's rule pack, default `japan-rare-disease`) [`ExplorerResult`]:
//!    chart series and a protected CSV per view.
//!
//! Invariant: nothing this crate returns to be shown carries an unperturbed count, an
//! institution count, a fingerprint or a cell key.

pub mod catalog;
pub mod cellkey;
pub mod error;
pub mod index;
mod protect;
pub mod query;
pub mod request;
pub mod result;
pub mod rows;

pub use catalog::{Catalog, Region};
pub use cellkey::{CellKey, CellKeySecret, RecordHash};
pub use error::ExplorerError;
pub use index::{ExplorerIndex, IndexBuilder, IndexRow};
pub use query::{View, ViewQuery};
pub use request::{Feasibility, Filters};
pub use result::{ExplorerResult, Label, Series, Shown, ViewResult};
pub use rows::{RawRow, RawView};

use kura_sdc::{CheckContext, RulePack};

/// The explorer of one deployment: its secret, its rule pack and the snapshot's catalog.
#[derive(Debug, Clone)]
pub struct Explorer {
    secret: CellKeySecret,
    pack: RulePack,
    catalog: Catalog,
    hash: RecordHash,
}

impl Explorer {
    /// With the default rule pack (`japan-rare-disease`, built in) and SHA-256 record values.
    /// `explorer_key`: at least 32 secret random bytes, stable for the deployment.
    pub fn new(explorer_key: &[u8], catalog: Catalog) -> Result<Explorer, ExplorerError> {
        let pack = RulePack::builtin(kura_sdc::pack::DEFAULT_PACK).map_err(|source| {
            ExplorerError::Sdc {
                view: "all",
                source,
            }
        })?;
        Ok(Explorer {
            secret: CellKeySecret::new(explorer_key)?,
            pack,
            catalog,
            hash: RecordHash::default(),
        })
    }

    pub fn with_pack(mut self, pack: RulePack) -> Explorer {
        self.pack = pack;
        self
    }

    pub fn with_record_hash(mut self, hash: RecordHash) -> Explorer {
        self.hash = hash;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// How record values are derived from research_ids (the index export must use the same).
    pub fn record_hash(&self) -> RecordHash {
        self.hash
    }

    pub fn pack(&self) -> &RulePack {
        &self.pack
    }

    pub fn validate(&self, request: &Feasibility) -> Result<Filters, ExplorerError> {
        request.validate(&self.catalog)
    }

    /// The three SQL texts, in [`View::ALL`] order.
    pub fn queries(&self, filters: &Filters) -> Vec<ViewQuery> {
        query::queries(filters, self.hash)
    }

    /// Protects the three views. `views` holds one [`RawView`] per [`View`] (any order).
    /// `ctx` names the snapshot and, optionally, a release ledger whose cells feed kura-sdc's
    /// differencing and secondary suppression.
    pub fn protect(
        &self,
        filters: &Filters,
        views: &[RawView],
        ctx: &CheckContext<'_>,
    ) -> Result<ExplorerResult, ExplorerError> {
        let one = |view: View| -> Result<ViewResult, ExplorerError> {
            let mut found = views.iter().filter(|v| v.view == view);
            let raw = found
                .next()
                .ok_or_else(|| ExplorerError::rows(view.name(), "no rows handed in"))?;
            if found.next().is_some() {
                return Err(ExplorerError::rows(view.name(), "rows handed in twice"));
            }
            protect::protect_view(
                view,
                filters,
                &self.catalog,
                &self.secret,
                &self.pack,
                ctx,
                raw,
            )
        };
        Ok(ExplorerResult {
            filters: filters.clone(),
            rule_pack: self.pack.name.clone(),
            rule_pack_version: self.pack.version.clone(),
            method: result::METHOD,
            by_prefecture: one(View::ByPrefecture)?,
            by_severity: one(View::BySeverity)?,
            by_institutions: one(View::ByInstitutions)?,
        })
    }
}
