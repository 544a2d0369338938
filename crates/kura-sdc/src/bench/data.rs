//! Synthetic microdata for `kura bench sdc`, its aggregation into a staged crosstab, and the
//! per-cell primary masks that are compared with ACRO's.
//!
//! The microdata is one row per contributor: row category `r`, column category `c`, value `v`.
//! Cells are drawn so that every primary rule fires somewhere, including on its boundary: empty
//! cells, counts 1-9, one dominant contributor, two large contributors, top two holding exactly
//! 90% of the total (nk-dominance must fail: ACRO tests `>= k`) and a remainder of exactly 10% of
//! the largest contribution (p-ratio must pass: ACRO tests `< p`). Values are whole numbers, so
//! sums are exact in `f64` and both sides divide the same operands. Every fourth row has exactly
//! one small count, so secondary suppression has work on every such row.

use std::path::Path;

use crate::report::{Report, RuleId};
use crate::table::{Contributors, Measure, MeasureKind, Row, RowMeta, StagedTable, TOTAL};

/// Bits of a primary mask.
pub const THRESHOLD: u8 = 1;
pub const NK: u8 = 2;
pub const P_RATIO: u8 = 4;

/// (bit, name as reported) for each primary rule compared with ACRO.
pub const PRIMARY_RULES: [(u8, &str); 3] = [
    (THRESHOLD, "threshold"),
    (NK, "nk-dominance"),
    (P_RATIO, "p-ratio"),
];

/// Contributor-level data behind a `rows` x `cols` crosstab.
#[derive(Debug, Clone, PartialEq)]
pub struct Microdata {
    pub rows: u32,
    pub cols: u32,
    pub r: Vec<u32>,
    pub c: Vec<u32>,
    pub v: Vec<f64>,
}

/// SplitMix64: a fixed, dependency-free generator so the table is the same on every machine.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

impl Microdata {
    pub fn generate(rows: u32, cols: u32, seed: u64) -> Self {
        let mut m = Microdata {
            rows,
            cols,
            r: Vec::new(),
            c: Vec::new(),
            v: Vec::new(),
        };
        let mut rng = Mix(seed);
        let mut values: Vec<u64> = Vec::with_capacity(64);
        for i in 0..rows {
            for j in 0..cols {
                values.clear();
                let mut kind = rng.next() % 1000;
                if i % 4 == 0 {
                    // A quarter of the rows have exactly one small count, so that secondary
                    // suppression has lines with a single hidden cell to protect.
                    kind = if j == (i * 7 + 3) % cols {
                        30
                    } else {
                        150 + kind % 850
                    };
                }
                match kind {
                    // Empty cell.
                    0..=29 => {}
                    // Small count: fails the threshold.
                    30..=149 => {
                        for _ in 0..rng.range(1, 9) {
                            values.push(rng.range(1, 100));
                        }
                    }
                    // One dominant contributor: nk and p-ratio.
                    150..=189 => {
                        values.push(5000);
                        for _ in 0..rng.range(9, 24) {
                            values.push(rng.range(1, 50));
                        }
                    }
                    // Two large contributors: nk, p-ratio passes or not depending on the rest.
                    190..=219 => {
                        values.extend([100, 100]);
                        for _ in 0..rng.range(8, 18) {
                            values.push(rng.range(1, 3));
                        }
                    }
                    // Top two exactly 90% of 100: nk fails at the boundary, p-ratio passes.
                    220..=229 => values.extend([45, 45, 1, 1, 1, 1, 1, 1, 2, 2]),
                    // Rest exactly 10% of the largest: p-ratio passes at the boundary.
                    230..=239 => values.extend([100, 50, 1, 1, 1, 1, 1, 1, 2, 2]),
                    _ => {
                        for _ in 0..rng.range(10, 30) {
                            values.push(rng.range(1, 100));
                        }
                    }
                }
                for &v in &values {
                    m.r.push(i);
                    m.c.push(j);
                    m.v.push(v as f64);
                }
            }
        }
        m
    }

    pub fn len(&self) -> usize {
        self.v.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// Writes `meta.json`, `r.u32`, `c.u32`, `v.f64` (little-endian) for `bench/acro_bench.py`.
    pub fn write_raw(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let meta = format!(
            "{{\"n\": {}, \"rows\": {}, \"cols\": {}}}",
            self.len(),
            self.rows,
            self.cols
        );
        std::fs::write(dir.join("meta.json"), meta)?;
        let r: Vec<u8> = self.r.iter().flat_map(|x| x.to_le_bytes()).collect();
        let c: Vec<u8> = self.c.iter().flat_map(|x| x.to_le_bytes()).collect();
        let v: Vec<u8> = self.v.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(dir.join("r.u32"), r)?;
        std::fs::write(dir.join("c.u32"), c)?;
        std::fs::write(dir.join("v.f64"), v)
    }
}

/// Row of the staged table holding grid position (`i`, `j`); `i == rows` / `j == cols` are the
/// margins (`TOTAL`), in the order `pd.crosstab(..., margins=True)` prints them.
pub fn row_index(cols: u32, i: u32, j: u32) -> usize {
    i as usize * (cols as usize + 1) + j as usize
}

#[derive(Clone, Copy, Default)]
struct Acc {
    n: u64,
    sum: f64,
    top1: f64,
    top2: f64,
}

impl Acc {
    fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        if v > self.top1 {
            self.top2 = self.top1;
            self.top1 = v;
        } else if v > self.top2 {
            self.top2 = v;
        }
    }
}

/// The staged table a query would hand to the airlock: `count:n` and `stat:mean_v` per cell,
/// with row, column and grand totals, and the top-two contributions kept as contributor data.
pub fn aggregate(m: &Microdata) -> StagedTable {
    let (rows, cols) = (m.rows, m.cols);
    let mut acc = vec![Acc::default(); (rows as usize + 1) * (cols as usize + 1)];
    for ((&i, &j), &v) in m.r.iter().zip(&m.c).zip(&m.v) {
        for (a, b) in [(i, j), (i, cols), (rows, j), (rows, cols)] {
            acc[row_index(cols, a, b)].add(v);
        }
    }
    let label = |x: u32, last: u32| {
        if x == last {
            TOTAL.to_string()
        } else {
            x.to_string()
        }
    };
    let mut out = Vec::with_capacity(acc.len());
    for i in 0..=rows {
        for j in 0..=cols {
            let a = acc[row_index(cols, i, j)];
            let top = match a.n {
                0 => Vec::new(),
                1 => vec![a.top1],
                _ => vec![a.top1, a.top2],
            };
            let mean = if a.n == 0 { 0.0 } else { a.sum / a.n as f64 };
            out.push(Row {
                dims: vec![label(i, rows), label(j, cols)],
                values: vec![a.n as f64, mean],
                meta: RowMeta {
                    contributors: Some(Contributors {
                        top,
                        total: Some(a.sum),
                    }),
                    ..RowMeta::default()
                },
                line: None,
            });
        }
    }
    StagedTable {
        name: format!("bench_{rows}x{cols}"),
        dimensions: vec!["r".into(), "c".into()],
        measures: vec![
            Measure {
                name: "n".into(),
                kind: MeasureKind::Count,
            },
            Measure {
                name: "mean_v".into(),
                kind: MeasureKind::Statistic,
            },
        ],
        rows: out,
        ..StagedTable::default()
    }
}

/// Primary mask of one measure's cells (one byte per table row), before secondary suppression.
pub fn kura_mask(report: &Report, measure: usize, n_rows: usize) -> Vec<u8> {
    let mut mask = vec![0u8; n_rows];
    for c in report.cells.iter().filter(|c| c.measure == measure) {
        let Some(slot) = mask.get_mut(c.row) else {
            continue;
        };
        for f in &c.failures {
            *slot |= match f.rule {
                RuleId::Threshold => THRESHOLD,
                RuleId::Dominance => NK,
                RuleId::PRatio => P_RATIO,
                _ => 0,
            };
        }
    }
    mask
}

/// A cell where the two masks disagree on one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub row: usize,
    pub rule: &'static str,
    pub kura: bool,
    pub acro: bool,
}

pub fn compare(kura: &[u8], acro: &[u8]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for (row, (&k, &a)) in kura.iter().zip(acro).enumerate() {
        for (bit, rule) in PRIMARY_RULES {
            if (k & bit) != (a & bit) {
                out.push(Mismatch {
                    row,
                    rule,
                    kura: k & bit != 0,
                    acro: a & bit != 0,
                });
            }
        }
    }
    out
}

/// How many cells each rule flags in a mask.
pub fn rule_counts(mask: &[u8]) -> [usize; 3] {
    PRIMARY_RULES.map(|(bit, _)| mask.iter().filter(|&&m| m & bit != 0).count())
}
