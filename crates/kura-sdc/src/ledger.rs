//! The release ledger and differencing: cells already released from a snapshot, and the check
//! that a new table's cells, combined with them, do not reveal a small group.
//!
//! A cell's *definition* is a set of predicates whose conjunction is its population:
//! `dim=value` for each non-total dimension and `filter:...` for each population filter. Two cells
//! over the same snapshot and measure are *nested* when one definition is a strict subset of the
//! other: the larger set describes a sub-population of the smaller, so the difference of their
//! counts is the count of a published-nowhere group (those in the outer cell but not the inner).
//! That difference is checked against the pack's minimum. See docs/sdc.md for what is not
//! detected.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleasedCell {
    /// Release that published the cell (e.g. an output id).
    pub release: String,
    /// The measure counted (e.g. `patients`): only cells of the same measure are compared.
    pub measure: String,
    pub definition: BTreeSet<String>,
    pub value: f64,
}

impl ReleasedCell {
    pub fn describe(&self) -> String {
        let def: Vec<&str> = self.definition.iter().map(String::as_str).collect();
        format!(
            "{} [{}] = {} (release {})",
            self.measure,
            if def.is_empty() {
                "everyone".to_string()
            } else {
                def.join(" & ")
            },
            crate::report::format_value(self.value),
            self.release
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LedgerError(pub String);

/// Everything released from each snapshot. The server persists it; [`InMemoryLedger`] is for
/// tests and the command line.
pub trait ReleaseLedger {
    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError>;
    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError>;
}

#[derive(Debug, Clone, Default)]
pub struct InMemoryLedger {
    by_snapshot: HashMap<String, Vec<ReleasedCell>>,
}

impl ReleaseLedger for InMemoryLedger {
    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        Ok(self.by_snapshot.get(snapshot).cloned().unwrap_or_default())
    }

    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        self.by_snapshot
            .entry(snapshot.to_string())
            .or_default()
            .extend(cells);
        Ok(())
    }
}

/// Definitions with more predicates than this are compared pairwise instead of through the
/// subset index (2^n subsets per cell).
const SUBSET_INDEX_LIMIT: usize = 10;

/// Index over released cells answering "which released cells are nested with this definition".
pub struct NestIndex<'a> {
    cells: &'a [ReleasedCell],
    exact: HashMap<(&'a str, &'a BTreeSet<String>), Vec<usize>>,
    /// (measure, subset) -> released cells whose definition contains that subset strictly.
    supersets: HashMap<(&'a str, Vec<&'a str>), Vec<usize>>,
    large: Vec<usize>,
}

impl<'a> NestIndex<'a> {
    pub fn new(cells: &'a [ReleasedCell]) -> Self {
        let mut exact: HashMap<(&str, &BTreeSet<String>), Vec<usize>> = HashMap::new();
        let mut supersets: HashMap<(&str, Vec<&str>), Vec<usize>> = HashMap::new();
        let mut large = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            exact
                .entry((c.measure.as_str(), &c.definition))
                .or_default()
                .push(i);
            if c.definition.len() > SUBSET_INDEX_LIMIT {
                large.push(i);
                continue;
            }
            let items: Vec<&str> = c.definition.iter().map(String::as_str).collect();
            for subset in strict_subsets(&items) {
                supersets
                    .entry((c.measure.as_str(), subset))
                    .or_default()
                    .push(i);
            }
        }
        NestIndex {
            cells,
            exact,
            supersets,
            large,
        }
    }

    /// Released cells of `measure` nested with `definition` (strict subset or strict superset).
    pub fn nested(&self, measure: &str, definition: &BTreeSet<String>) -> Vec<&'a ReleasedCell> {
        let mut out: Vec<usize> = Vec::new();
        let items: Vec<&str> = definition.iter().map(String::as_str).collect();
        // Released cells whose definition is a strict superset of ours (sub-populations).
        if let Some(v) = self.supersets.get(&(measure, items.clone())) {
            out.extend(v);
        }
        if items.len() <= SUBSET_INDEX_LIMIT {
            // Released cells whose definition is a strict subset of ours (super-populations).
            for subset in strict_subsets(&items) {
                let set: BTreeSet<String> = subset.iter().map(|s| s.to_string()).collect();
                if let Some(v) = self.exact.get(&(measure, &set)) {
                    out.extend(v);
                }
            }
        } else {
            for (i, c) in self.cells.iter().enumerate() {
                if c.measure == measure
                    && c.definition.len() < definition.len()
                    && c.definition.is_subset(definition)
                {
                    out.push(i);
                }
            }
        }
        for &i in &self.large {
            let c = &self.cells[i];
            if c.measure == measure
                && c.definition.len() > definition.len()
                && definition.is_subset(&c.definition)
            {
                out.push(i);
            }
        }
        out.sort_unstable();
        out.dedup();
        out.into_iter().map(|i| &self.cells[i]).collect()
    }
}

/// Every strict subset of `items` (which is sorted), each sorted.
fn strict_subsets<'s>(items: &[&'s str]) -> Vec<Vec<&'s str>> {
    let n = items.len();
    let full = (1u32 << n) - 1;
    (0..full)
        .map(|mask| {
            (0..n)
                .filter(|b| mask & (1 << b) != 0)
                .map(|b| items[b])
                .collect()
        })
        .collect()
}
