//! Secondary suppression: hand-computed masks, a table on which a naive single pass fails, and
//! the attack: try to recover every suppressed cell from every published total (by subtraction,
//! chained, and by exact linear algebra) and assert that it fails.

// Helpers outside #[test] functions panic on bad fixtures, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kura_sdc::csv_input::parse_csv;
use kura_sdc::secondary::{self, determined_cells, recoverable_by_subtraction, Groups};
use kura_sdc::{check, Action, CheckContext, Report, RulePack, StagedTable, TOTAL};

fn japan() -> RulePack {
    RulePack::builtin("japan-rare-disease").unwrap()
}

fn threshold_with_secondary(assume_public: bool) -> RulePack {
    let text = format!(
        "name = \"t\"\nversion = \"1\"\nmarker = \"-\"\n[[rules]]\nkind = \"threshold\"\nmin = 10\n\
         zero_allowed = true\n[[rules]]\nkind = \"secondary\"\nassume_public_totals = {assume_public}\n"
    );
    RulePack::from_toml(&text, "test").unwrap()
}

fn suppressed(r: &Report, measure: usize, n_rows: usize) -> Vec<bool> {
    (0..n_rows)
        .map(|row| r.cell(row, measure).unwrap().action == Action::Suppress)
        .collect()
}

/// The attacker's view: groups whose totals are published (in the table, or public).
fn attack(table: &StagedTable, assume_public: bool, hidden: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let groups: Groups = secondary::groups(table, &|_, _| assume_public);
    (
        recoverable_by_subtraction(&groups, hidden),
        determined_cells(&groups, hidden),
    )
}

/// Builds a 2-D table with all margins from a grid of interior counts.
fn grid_csv(grid: &[Vec<u64>]) -> String {
    let mut s = String::from("dim:prefecture,dim:age_band,count:patients\n");
    let cols = grid[0].len();
    let mut col_tot = vec![0; cols];
    for (i, row) in grid.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            s.push_str(&format!("P{i},{}-{},{v}\n", j * 5, j * 5 + 4));
            col_tot[j] += v;
        }
        s.push_str(&format!("P{i},TOTAL,{}\n", row.iter().sum::<u64>()));
    }
    for (j, v) in col_tot.iter().enumerate() {
        s.push_str(&format!("TOTAL,{}-{},{v}\n", j * 5, j * 5 + 4));
    }
    s.push_str(&format!("TOTAL,TOTAL,{}\n", col_tot.iter().sum::<u64>()));
    s
}

#[test]
fn ndb_style_hand_computed_mask() {
    //            0-4  5-9  10-14  TOTAL
    //   P0        5   30    40     75
    //   P1       20   12    50     82
    //   P2       25   60    15    100
    //   TOTAL    50  102   105    257
    // P0/0-4 (5) is primary. Its row's next smallest is P0/5-9 (30); its column's is P1/0-4
    // (20); the 5-9 column then has one hidden cell, whose next smallest is P1/5-9 (12), which
    // also completes row P1. Result: the rectangle P0,P1 x 0-4,5-9.
    let csv = grid_csv(&[vec![5, 30, 40], vec![20, 12, 50], vec![25, 60, 15]]);
    let table = parse_csv(&csv, "t.csv").unwrap();
    let r = check(&table, &japan(), &CheckContext::default()).unwrap();
    let got = suppressed(&r, 0, table.rows.len());
    let hidden_labels: Vec<String> = (0..table.rows.len())
        .filter(|&i| got[i])
        .map(|i| table.label(i))
        .collect();
    assert_eq!(
        hidden_labels,
        [
            "prefecture=P0, age_band=0-4",
            "prefecture=P0, age_band=5-9",
            "prefecture=P1, age_band=0-4",
            "prefecture=P1, age_band=5-9",
        ]
    );
    let protected = r.protected.as_ref().unwrap();
    assert_eq!(protected.rows[0][2], "－");
    let (sub, lin) = attack(&table, true, &got);
    assert!(sub.is_empty() && lin.is_empty(), "{sub:?} {lin:?}");
}

/// The single pass written the obvious way: rows, then columns, once.
fn naive_single_pass(grid: &[Vec<u64>], primary: &[(usize, usize)]) -> Vec<Vec<bool>> {
    let (n, m) = (grid.len(), grid[0].len());
    let mut s = vec![vec![false; m]; n];
    for &(i, j) in primary {
        s[i][j] = true;
    }
    for i in 0..n {
        if s[i].iter().filter(|&&x| x).count() == 1 {
            let j = (0..m)
                .filter(|&j| !s[i][j])
                .min_by_key(|&j| grid[i][j])
                .unwrap();
            s[i][j] = true;
        }
    }
    for j in 0..m {
        if (0..n).filter(|&i| s[i][j]).count() == 1 {
            let i = (0..n)
                .filter(|&i| !s[i][j])
                .min_by_key(|&i| grid[i][j])
                .unwrap();
            s[i][j] = true;
        }
    }
    s
}

#[test]
fn a_table_where_the_naive_single_pass_fails_is_protected() {
    // Primary P0/0-4. Naive: row P0 hides P0/5-9 (11); column 0-4 hides P1/0-4 (13); column
    // 5-9 hides P2/5-9 (14). Rows P1 and P2 are left with one hidden cell each.
    let grid = vec![
        vec![3, 11, 40, 50],
        vec![13, 60, 70, 80],
        vec![30, 14, 90, 95],
    ];
    let csv = grid_csv(&grid);
    let table = parse_csv(&csv, "t.csv").unwrap();
    let cols = grid[0].len();
    let row_of = |i: usize, j: usize| i * (cols + 1) + j;

    let naive = naive_single_pass(&grid, &[(0, 0)]);
    let mut naive_hidden = vec![false; table.rows.len()];
    for (i, r) in naive.iter().enumerate() {
        for (j, &h) in r.iter().enumerate() {
            naive_hidden[row_of(i, j)] = h;
        }
    }
    let (sub, _) = attack(&table, false, &naive_hidden);
    assert!(!sub.is_empty(), "this table must defeat the naive pass");
    // The attack recovers the primary cell itself through the chain.
    assert!(sub.contains(&row_of(0, 0)));

    let r = check(
        &table,
        &threshold_with_secondary(false),
        &CheckContext::default(),
    )
    .unwrap();
    let got = suppressed(&r, 0, table.rows.len());
    let (sub, lin) = attack(&table, false, &got);
    assert!(
        sub.is_empty() && lin.is_empty(),
        "recovered {sub:?} {lin:?}"
    );
    assert!(got[row_of(0, 0)]);
}

#[test]
fn a_bridge_between_two_protected_rectangles_is_also_closed() {
    // Two rectangles of small cells (rows 0-1 x cols 0-1 and rows 2-3 x cols 2-3) and one small
    // cell at (0, 2) joining them. Every row and column has 0 or >= 2 hidden cells, yet (0, 2)
    // equals (rows 0+1 hidden) - (cols 0+1 hidden): the linear attack recovers it.
    let grid = vec![
        vec![5, 6, 7, 100, 200],
        vec![6, 5, 100, 100, 200],
        vec![100, 100, 5, 6, 200],
        vec![100, 100, 6, 5, 200],
    ];
    let csv = grid_csv(&grid);
    let table = parse_csv(&csv, "t.csv").unwrap();
    let cols = grid[0].len();
    let mut only_primary = vec![false; table.rows.len()];
    for (i, r) in grid.iter().enumerate() {
        for (j, &v) in r.iter().enumerate() {
            only_primary[i * (cols + 1) + j] = v < 10;
        }
    }
    let (sub, lin) = attack(&table, false, &only_primary);
    assert!(sub.is_empty(), "no single group has one hidden cell");
    assert_eq!(lin, vec![2], "the bridge cell (0, 2) is determined");

    let r = check(
        &table,
        &threshold_with_secondary(false),
        &CheckContext::default(),
    )
    .unwrap();
    let got = suppressed(&r, 0, table.rows.len());
    let (sub, lin) = attack(&table, false, &got);
    assert!(
        sub.is_empty() && lin.is_empty(),
        "recovered {sub:?} {lin:?}"
    );
}

/// Deterministic pseudo-random numbers (no dependency needed for a test generator).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn random_tables_with_subtotals_resist_every_attack() {
    let mut rng = Lcg(7);
    for case in 0..60 {
        // Three dimensions (region > prefecture nesting expressed as region, pref; plus sex)
        // with every marginal and subtotal printed.
        let regions = 2 + rng.next(2) as usize;
        let prefs = 2 + rng.next(3) as usize;
        let sexes = 2;
        let mut cells = std::collections::BTreeMap::new();
        for r in 0..regions {
            for p in 0..prefs {
                for s in 0..sexes {
                    let v = if rng.next(4) == 0 {
                        rng.next(10)
                    } else {
                        10 + rng.next(60)
                    };
                    cells.insert((r, p, s), v);
                }
            }
        }
        let mut csv = String::from("dim:region,dim:prefecture,dim:sex,count:patients\n");
        let label = |i: Option<usize>, prefix: &str| match i {
            Some(i) => format!("{prefix}{i}"),
            None => TOTAL.to_string(),
        };
        let opts = |n: usize| (0..n).map(Some).chain([None]).collect::<Vec<_>>();
        // A true hierarchy: prefecture codes belong to one region, so the region total rows
        // only exist with prefecture TOTAL.
        for r in opts(regions) {
            let pref_opts = if r.is_some() { opts(prefs) } else { vec![None] };
            for p in pref_opts {
                for s in opts(sexes) {
                    let sum: u64 = cells
                        .iter()
                        .filter(|((a, b, c), _)| {
                            r.is_none_or(|x| x == *a)
                                && p.is_none_or(|x| x == *b)
                                && s.is_none_or(|x| x == *c)
                        })
                        .map(|(_, v)| v)
                        .sum();
                    let pref = match (r, p) {
                        (Some(r), Some(p)) => format!("R{r}P{p}"),
                        _ => TOTAL.to_string(),
                    };
                    csv.push_str(&format!(
                        "{},{pref},{},{sum}\n",
                        label(r, "R"),
                        label(s, "S")
                    ));
                }
            }
        }
        let table = parse_csv(&csv, "t.csv").unwrap();
        for assume_public in [false, true] {
            let r = check(
                &table,
                &threshold_with_secondary(assume_public),
                &CheckContext::default(),
            )
            .unwrap();
            let got = suppressed(&r, 0, table.rows.len());
            let (sub, lin) = attack(&table, assume_public, &got);
            assert!(
                sub.is_empty() && lin.is_empty(),
                "case {case}: recovered {sub:?} / {lin:?}\n{csv}"
            );
            // Every primary cell is still hidden.
            for c in &r.cells {
                if c.value > 0.0 && c.value < 10.0 {
                    assert_eq!(c.action, Action::Suppress, "case {case}: {}", c.label);
                }
            }
        }
    }
}

#[test]
fn without_secondary_suppression_the_attack_succeeds() {
    // Guards the attack itself: a primary-only mask of a table with margins is recoverable.
    let csv = grid_csv(&[vec![5, 30], vec![20, 40]]);
    let table = parse_csv(&csv, "t.csv").unwrap();
    let mut hidden = vec![false; table.rows.len()];
    hidden[0] = true;
    let (sub, lin) = attack(&table, false, &hidden);
    assert_eq!(sub, vec![0]);
    assert_eq!(lin, vec![0]);
}

#[test]
fn a_total_equal_to_its_only_member_is_hidden_with_it() {
    let text = "dim:prefecture,dim:disease,count:patients\nTottori,MG,4\nTOTAL,MG,4\n";
    let table = parse_csv(text, "t.csv").unwrap();
    let r = check(
        &table,
        &threshold_with_secondary(false),
        &CheckContext::default(),
    )
    .unwrap();
    assert_eq!(suppressed(&r, 0, 2), [true, true]);
    assert_eq!(r.cells[1].failures[0].rule, kura_sdc::RuleId::Threshold);
}
