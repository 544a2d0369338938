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
    /// Calls `f` once with the cells released from `snapshot`, indexed.
    fn with_released(
        &self,
        snapshot: &str,
        f: &mut dyn FnMut(&Released),
    ) -> Result<(), LedgerError>;

    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError>;

    /// Every cell recorded for `snapshot`, in the order recorded.
    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError>;
}

#[derive(Debug, Clone, Default)]
pub struct InMemoryLedger {
    by_snapshot: HashMap<String, (Vec<ReleasedCell>, Released)>,
}

impl ReleaseLedger for InMemoryLedger {
    fn with_released(
        &self,
        snapshot: &str,
        f: &mut dyn FnMut(&Released),
    ) -> Result<(), LedgerError> {
        match self.by_snapshot.get(snapshot) {
            Some((_, r)) => f(r),
            None => f(&Released::default()),
        }
        Ok(())
    }

    fn record(&mut self, snapshot: &str, cells: Vec<ReleasedCell>) -> Result<(), LedgerError> {
        let (all, index) = self.by_snapshot.entry(snapshot.to_string()).or_default();
        all.extend(cells.iter().cloned());
        index.extend(cells);
        Ok(())
    }

    fn released(&self, snapshot: &str) -> Result<Vec<ReleasedCell>, LedgerError> {
        Ok(self
            .by_snapshot
            .get(snapshot)
            .map(|(all, _)| all.clone())
            .unwrap_or_default())
    }
}

/// Definitions with more predicates than this are compared pairwise instead of through the
/// subset index (2^n subsets per definition).
const SUBSET_INDEX_LIMIT: usize = 10;

/// A measure or a definition as interned predicate numbers, in the definition's (sorted) order.
type Key = (u32, Vec<u32>);

/// The cells of one measure and definition.
#[derive(Debug, Clone)]
struct Group {
    key: Key,
    /// The position (in the order added) of every cell of the group, ascending.
    positions: Vec<usize>,
    /// Its distinct values, as indexes into [`Released::distinct`]: the only cells the checks
    /// compare with.
    distinct: Vec<usize>,
}

/// The cells released from one snapshot, indexed by nesting of their definitions: what
/// differencing and secondary suppression compare a new table with, and what the checkers'
/// overlap report lists.
///
/// It grows by [`Released::extend`] (the server keeps one per snapshot and adds each release's
/// cells as they appear in the ledger) and never shrinks. Cells of one measure and definition
/// form a group; a check compares with one cell per distinct value of a group, so a table
/// released again adds nothing to compare, and a check costs what the distinct populations
/// cost, not what the number of releases does. Only the first cell of each distinct value is
/// kept whole; any other costs its position (the overlap report lists every cell by position).
#[derive(Debug, Clone, Default)]
pub struct Released {
    /// Cells added.
    len: usize,
    /// The first cell of each distinct (measure, definition, value), in the order added.
    distinct: Vec<ReleasedCell>,
    /// Measures and predicates, numbered in order of appearance.
    symbols: HashMap<String, u32>,
    groups: Vec<Group>,
    by_key: HashMap<Key, usize>,
    /// (measure, strict subset) -> groups whose definition strictly contains that subset.
    supersets: HashMap<Key, Vec<usize>>,
    /// Groups whose definition is too long for the subset index.
    large: Vec<usize>,
}

impl Released {
    pub fn new(cells: impl IntoIterator<Item = ReleasedCell>) -> Released {
        let mut r = Released::default();
        r.extend(cells);
        r
    }

    /// Adds cells released after those already here.
    pub fn extend(&mut self, cells: impl IntoIterator<Item = ReleasedCell>) {
        for cell in cells {
            self.push(cell);
        }
    }

    fn push(&mut self, cell: ReleasedCell) {
        let position = self.len;
        self.len += 1;
        let key = (
            self.intern(&cell.measure),
            cell.definition.iter().map(|p| self.intern(p)).collect(),
        );
        let group = match self.by_key.get(&key) {
            Some(&g) => g,
            None => self.add_group(key),
        };
        let g = &mut self.groups[group];
        g.positions.push(position);
        let value = cell.value.to_bits();
        let known = g
            .distinct
            .iter()
            .any(|&d| self.distinct[d].value.to_bits() == value);
        if !known {
            g.distinct.push(self.distinct.len());
            self.distinct.push(cell);
        }
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&n) = self.symbols.get(s) {
            return n;
        }
        let n = self.symbols.len() as u32;
        self.symbols.insert(s.to_string(), n);
        n
    }

    fn add_group(&mut self, key: Key) -> usize {
        let g = self.groups.len();
        if key.1.len() > SUBSET_INDEX_LIMIT {
            self.large.push(g);
        } else {
            for subset in strict_subsets(&key.1) {
                self.supersets.entry((key.0, subset)).or_default().push(g);
            }
        }
        self.by_key.insert(key.clone(), g);
        self.groups.push(Group {
            key,
            positions: Vec::new(),
            distinct: Vec::new(),
        });
        g
    }

    /// Cells added (each counts, also one equal to an earlier one).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a cell of `measure` with exactly this definition was released.
    pub fn contains(&self, measure: &str, definition: &BTreeSet<String>) -> bool {
        self.lookup(measure, definition)
            .is_some_and(|(m, items)| match full_key(m, &items) {
                Some(key) => self.by_key.contains_key(&key),
                None => false,
            })
    }

    /// Released cells of `measure` nested with `definition` (strict subset or strict superset),
    /// one per distinct definition and value (the first released), in release order.
    pub fn nested(&self, measure: &str, definition: &BTreeSet<String>) -> Vec<&ReleasedCell> {
        let mut out: Vec<usize> = self
            .nested_groups(measure, definition)
            .into_iter()
            .flat_map(|g| self.groups[g].distinct.iter().copied())
            .collect();
        // Distinct cells are numbered in the order they were added.
        out.sort_unstable();
        out.into_iter().map(|d| &self.distinct[d]).collect()
    }

    /// Positions (0 for the first cell added) of every released cell of `measure` whose
    /// definition equals `definition` or is nested with it, ascending.
    pub fn related(&self, measure: &str, definition: &BTreeSet<String>) -> Vec<usize> {
        let mut groups = self.nested_groups(measure, definition);
        if let Some((m, items)) = self.lookup(measure, definition) {
            if let Some(&g) = full_key(m, &items).and_then(|k| self.by_key.get(&k)) {
                groups.push(g);
            }
        }
        let mut out: Vec<usize> = groups
            .into_iter()
            .flat_map(|g| self.groups[g].positions.iter().copied())
            .collect();
        out.sort_unstable();
        out
    }

    /// The measure's number and each predicate's (`None`: never released), or `None` when the
    /// measure was never released.
    fn lookup(
        &self,
        measure: &str,
        definition: &BTreeSet<String>,
    ) -> Option<(u32, Vec<Option<u32>>)> {
        let m = *self.symbols.get(measure)?;
        Some((
            m,
            definition
                .iter()
                .map(|p| self.symbols.get(p.as_str()).copied())
                .collect(),
        ))
    }

    /// Groups of `measure` whose definition is a strict subset or a strict superset of
    /// `definition`, each once.
    fn nested_groups(&self, measure: &str, definition: &BTreeSet<String>) -> Vec<usize> {
        let Some((m, items)) = self.lookup(measure, definition) else {
            return Vec::new();
        };
        let mut out: Vec<usize> = Vec::new();
        let full = full_key(m, &items);
        // Strict supersets (sub-populations): none contains a predicate never released.
        if let Some(key) = &full {
            if let Some(v) = self.supersets.get(key) {
                out.extend(v);
            }
            for &g in &self.large {
                let k = &self.groups[g].key;
                if k.0 == m && k.1.len() > key.1.len() && is_subset(&key.1, &k.1) {
                    out.push(g);
                }
            }
        }
        // Strict subsets (super-populations).
        if items.len() <= SUBSET_INDEX_LIMIT {
            let all = (1u32 << items.len()) - 1;
            'subsets: for mask in 0..all {
                let mut subset = Vec::new();
                for (b, item) in items.iter().enumerate() {
                    if mask & (1 << b) != 0 {
                        match item {
                            Some(p) => subset.push(*p),
                            // Released definitions hold only released predicates.
                            None => continue 'subsets,
                        }
                    }
                }
                if let Some(&g) = self.by_key.get(&(m, subset)) {
                    out.push(g);
                }
            }
        } else {
            let known: Vec<u32> = items.iter().flatten().copied().collect();
            for (g, group) in self.groups.iter().enumerate() {
                let k = &group.key;
                if k.0 == m && k.1.len() < items.len() && k.1.iter().all(|p| known.contains(p)) {
                    out.push(g);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The key of a definition whose every predicate was released.
fn full_key(m: u32, items: &[Option<u32>]) -> Option<Key> {
    let items: Option<Vec<u32>> = items.iter().copied().collect();
    items.map(|i| (m, i))
}

/// Whether every predicate of `small` is in `big`.
fn is_subset(small: &[u32], big: &[u32]) -> bool {
    small.iter().all(|p| big.contains(p))
}

/// Every strict subset of `items`, each in `items`' order.
fn strict_subsets(items: &[u32]) -> Vec<Vec<u32>> {
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
