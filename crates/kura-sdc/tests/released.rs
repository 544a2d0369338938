//! `Released`, the index the checks compare a new table with, against a pairwise reference:
//! the same nested cells (one per distinct definition and value), the same related cells, the
//! same exact definitions, whether built at once or grown release by release.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};

use kura_sdc::{Released, ReleasedCell};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const MEASURES: [&str; 3] = ["patients", "forms", "never-released"];

/// A definition of up to `max` predicates over a few dimensions; `wide` adds predicates enough
/// to pass the subset index's limit.
fn definition(rng: &mut Rng, max: usize, wide: bool) -> BTreeSet<String> {
    let dims = ["pref", "sex", "age", "disease", "year", "filter:stage"];
    let mut d = BTreeSet::new();
    for _ in 0..rng.below(max + 1) {
        let dim = dims[rng.below(dims.len())];
        d.insert(format!("{dim}={}", rng.below(4)));
    }
    if wide {
        for i in 0..11 + rng.below(3) {
            d.insert(format!("wide{i}={}", rng.below(2)));
        }
    }
    d
}

fn cell(rng: &mut Rng, release: usize) -> ReleasedCell {
    let wide = rng.below(20) == 0;
    ReleasedCell {
        release: format!("r{release}"),
        measure: MEASURES[rng.below(2)].to_string(),
        definition: definition(rng, 4, wide),
        value: [3.0, 10.0, 12.0, 40.0][rng.below(4)],
    }
}

fn strictly_nested(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    (a.len() < b.len() && a.is_subset(b)) || (b.len() < a.len() && b.is_subset(a))
}

/// Pairwise: the first cell of each nested (definition, value), in release order.
fn reference_nested<'a>(
    cells: &'a [ReleasedCell],
    measure: &str,
    def: &BTreeSet<String>,
) -> Vec<&'a ReleasedCell> {
    let mut seen: HashSet<(Vec<String>, u64)> = HashSet::new();
    cells
        .iter()
        .filter(|c| c.measure == measure && strictly_nested(&c.definition, def))
        .filter(|c| seen.insert((c.definition.iter().cloned().collect(), c.value.to_bits())))
        .collect()
}

fn reference_related(cells: &[ReleasedCell], measure: &str, def: &BTreeSet<String>) -> Vec<usize> {
    cells
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.measure == measure && (c.definition == *def || strictly_nested(&c.definition, def))
        })
        .map(|(i, _)| i)
        .collect()
}

fn assert_same(released: &Released, cells: &[ReleasedCell], rng: &mut Rng, queries: usize) {
    assert_eq!(released.len(), cells.len());
    for q in 0..queries {
        let measure = MEASURES[rng.below(3)];
        // Half the queries ask for a released definition, half for a new one (which may hold
        // predicates never released).
        let def = if q % 2 == 0 && !cells.is_empty() {
            cells[rng.below(cells.len())].definition.clone()
        } else {
            let wide = rng.below(8) == 0;
            let mut d = definition(rng, 5, wide);
            if rng.below(4) == 0 {
                d.insert("pref=unreleased".into());
            }
            d
        };
        let got: Vec<&ReleasedCell> = released.nested(measure, &def);
        let want = reference_nested(cells, measure, &def);
        assert_eq!(got, want, "nested {measure} {def:?}");
        assert_eq!(
            released.related(measure, &def),
            reference_related(cells, measure, &def),
            "related {measure} {def:?}"
        );
        assert_eq!(
            released.contains(measure, &def),
            cells
                .iter()
                .any(|c| c.measure == measure && c.definition == def),
            "contains {measure} {def:?}"
        );
    }
}

#[test]
fn the_index_answers_as_the_pairwise_comparison_does() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let cells: Vec<ReleasedCell> = (0..400).map(|i| cell(&mut rng, i / 8)).collect();
        let released = Released::new(cells.clone());
        assert_same(&released, &cells, &mut rng, 300);
    }
}

#[test]
fn growing_release_by_release_gives_the_index_built_at_once() {
    let mut rng = Rng(7);
    let mut grown = Released::default();
    let mut cells = Vec::new();
    for release in 0..60 {
        let batch: Vec<ReleasedCell> = (0..1 + rng.below(12))
            .map(|_| cell(&mut rng, release))
            .collect();
        cells.extend(batch.clone());
        grown.extend(batch);
        assert_same(&grown, &cells, &mut rng, 20);
    }
    assert_eq!(grown.len(), cells.len());
}

#[test]
fn a_table_released_again_adds_nothing_to_compare() {
    let table = |release: usize| -> Vec<ReleasedCell> {
        ["pref=13", "pref=27", ""]
            .iter()
            .map(|p| ReleasedCell {
                release: format!("r{release}"),
                measure: "patients".into(),
                definition: p
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                value: if p.is_empty() { 90.0 } else { 45.0 },
            })
            .collect()
    };
    let released = Released::new((0..500).flat_map(table));
    assert_eq!(released.len(), 1500);
    let total = BTreeSet::new();
    let nested = released.nested("patients", &total);
    // The first release's two prefecture cells, not a thousand.
    assert_eq!(nested.len(), 2);
    assert!(nested.iter().all(|c| c.release == "r0"));
    // The overlap report still sees every release.
    assert_eq!(released.related("patients", &total).len(), 1500);
}
