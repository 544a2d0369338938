//! Secondary suppression across a table's hierarchy, and the attacks that test it.
//!
//! Each additive relation of the table is a *group*: for a dimension `j` and fixed values of the
//! other dimensions, the member rows (every non-total value of `j`) sum to the total row (value
//! [`TOTAL`](crate::TOTAL) at `j`). Subtotals are groups too: a `region=Kanto, prefecture=TOTAL`
//! row is the total of the prefecture line inside Kanto and a member of the region line. A group
//! gives an attacker an equation when its total is published: printed in the table, known from
//! public statistics (`assume_public_totals`), or already released (ledger).
//!
//! Protection runs in two passes:
//! 1. NDB style: while some group with an equation has exactly one suppressed cell, also suppress
//!    its next smallest cell (preferring non-zero cells, since a suppressed zero next to a
//!    suppressed count hides little). This iterates to a fixpoint, so a suppression made for one
//!    group that leaves another group with a single hidden cell is itself covered.
//! 2. Linear: "zero or at least two per group" can still leave a cell determined by combining
//!    several equations (a *bridge* between two protected rectangles). [`determined_cells`] runs
//!    Gaussian elimination over the hidden cells; any determined cell gets its next smallest
//!    neighbour suppressed, and both passes repeat.

use std::collections::HashMap;

use crate::table::{StagedTable, TOTAL};

/// Above this many hidden cells in one connected component, the exact linear check is skipped
/// (the cubic elimination would dominate); the component is still protected by pass 1.
pub const EXACT_CHECK_LIMIT: usize = 1500;

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The dimension the group sums over.
    pub dim: usize,
    pub members: Vec<usize>,
    /// The total row, when the table prints it.
    pub total: Option<usize>,
    /// The total is known outside the table (public statistics or an earlier release).
    pub external_total: bool,
}

impl Group {
    /// Whether the group gives an attacker an equation.
    pub fn has_equation(&self) -> bool {
        self.total.is_some() || self.external_total
    }

    pub fn cells(&self) -> impl Iterator<Item = usize> + '_ {
        self.members.iter().copied().chain(self.total)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    pub groups: Vec<Group>,
    /// For each row, the group it belongs to along each dimension (as member or as total).
    pub of_row: Vec<Vec<usize>>,
}

/// Builds the groups of `table`. `external(dim, row)` says whether the total of the group along
/// `dim` through `row` is known outside the table.
pub fn groups(table: &StagedTable, external: &dyn Fn(usize, usize) -> bool) -> Groups {
    let k = table.dimensions.len();
    // Interning the values keeps the keys small: u32 per dimension, TOTAL as u32::MAX.
    let mut dicts: Vec<HashMap<&str, u32>> = vec![HashMap::new(); k];
    let ids: Vec<Vec<u32>> = table
        .rows
        .iter()
        .map(|row| {
            row.dims
                .iter()
                .zip(dicts.iter_mut())
                .map(|(v, dict)| {
                    if v == TOTAL {
                        u32::MAX
                    } else {
                        let next = dict.len() as u32;
                        *dict.entry(v.as_str()).or_insert(next)
                    }
                })
                .collect()
        })
        .collect();
    let mut index: HashMap<(usize, Vec<u32>), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut of_row = vec![Vec::with_capacity(k); table.rows.len()];
    for (r, row_ids) in ids.iter().enumerate() {
        for j in 0..k {
            let mut key = row_ids.clone();
            key[j] = u32::MAX;
            let g = *index.entry((j, key)).or_insert_with(|| {
                groups.push(Group {
                    dim: j,
                    members: Vec::new(),
                    total: None,
                    external_total: false,
                });
                groups.len() - 1
            });
            if row_ids[j] == u32::MAX {
                groups[g].total = Some(r);
            } else {
                groups[g].members.push(r);
            }
            of_row[r].push(g);
        }
    }
    for g in &mut groups {
        // A lone member's "total" along a nested dimension is the cell itself, and the check
        // cannot know which categories a public total covers beyond the table: only lines of
        // two or more members get an external total.
        if g.total.is_none() && g.members.len() >= 2 {
            if let Some(&first) = g.members.first() {
                g.external_total = external(g.dim, first);
            }
        }
    }
    Groups { groups, of_row }
}

/// Why a cell was suppressed by this module.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// It was the next smallest cell of a group left with one hidden cell (`hidden`).
    SingleInGroup { group: usize, hidden: usize },
    /// Cell `determined` could be computed by combining several published totals.
    Determined { group: usize, determined: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub suppressed: Vec<bool>,
    /// Cells suppressed here, with why.
    pub secondary: Vec<(usize, Cause)>,
    /// Hidden cells that stay recoverable whatever else is hidden (e.g. the only member of a
    /// group whose total is public).
    pub unprotectable: Vec<usize>,
}

/// Extends `primary` (one flag per row) until no hidden cell is recoverable from the groups.
pub fn protect(values: &[f64], groups: &Groups, primary: &[bool]) -> Outcome {
    let mut out = Outcome {
        suppressed: primary.to_vec(),
        secondary: Vec::new(),
        unprotectable: Vec::new(),
    };
    loop {
        single_pass(values, groups, &mut out);
        let determined = determined_cells(groups, &out.suppressed);
        let mut progressed = false;
        for cell in determined {
            if out.unprotectable.contains(&cell) {
                continue;
            }
            let choice = groups.of_row[cell]
                .iter()
                .filter(|&&g| groups.groups[g].has_equation())
                .filter_map(|&g| {
                    smallest_open(values, &groups.groups[g], &out.suppressed).map(|c| (c, g))
                })
                .min_by(|a, b| {
                    rank(values, a.0)
                        .total_cmp(&rank(values, b.0))
                        .then(a.0.cmp(&b.0))
                });
            match choice {
                Some((c, g)) if !out.suppressed[c] => {
                    out.suppressed[c] = true;
                    out.secondary.push((
                        c,
                        Cause::Determined {
                            group: g,
                            determined: cell,
                        },
                    ));
                    progressed = true;
                    // One fix can change what the others need: re-run both passes.
                    break;
                }
                _ => out.unprotectable.push(cell),
            }
        }
        if !progressed {
            return out;
        }
    }
}

/// Sort key for choosing the next cell to hide: smallest value first, zeros last.
fn rank(values: &[f64], cell: usize) -> f64 {
    let v = values.get(cell).copied().unwrap_or(0.0);
    if v == 0.0 {
        f64::INFINITY
    } else {
        v
    }
}

fn smallest_open(values: &[f64], group: &Group, suppressed: &[bool]) -> Option<usize> {
    group
        .cells()
        .filter(|&c| !suppressed[c])
        .min_by(|&a, &b| rank(values, a).total_cmp(&rank(values, b)).then(a.cmp(&b)))
}

fn single_pass(values: &[f64], groups: &Groups, out: &mut Outcome) {
    let hidden = |g: &Group, s: &[bool]| g.cells().filter(|&c| s[c]).count();
    let mut queue: Vec<usize> = (0..groups.groups.len())
        .filter(|&g| groups.groups[g].has_equation())
        .collect();
    while let Some(g) = queue.pop() {
        let group = &groups.groups[g];
        if hidden(group, &out.suppressed) != 1 {
            continue;
        }
        let lone = group.cells().find(|&c| out.suppressed[c]).unwrap_or(0);
        let Some(c) = smallest_open(values, group, &out.suppressed) else {
            if !out.unprotectable.contains(&lone) {
                out.unprotectable.push(lone);
            }
            continue;
        };
        out.suppressed[c] = true;
        out.secondary.push((
            c,
            Cause::SingleInGroup {
                group: g,
                hidden: lone,
            },
        ));
        for &h in &groups.of_row[c] {
            if groups.groups[h].has_equation() {
                queue.push(h);
            }
        }
    }
}

/// The solver-free attack: repeatedly take a group with exactly one hidden cell, compute that
/// cell by subtraction from the total, and treat it as known. Returns every cell recovered.
pub fn recoverable_by_subtraction(groups: &Groups, suppressed: &[bool]) -> Vec<usize> {
    let mut hidden = suppressed.to_vec();
    let mut recovered = Vec::new();
    loop {
        let mut changed = false;
        for g in groups.groups.iter().filter(|g| g.has_equation()) {
            let unknown: Vec<usize> = g.cells().filter(|&c| hidden[c]).collect();
            if let [only] = unknown[..] {
                hidden[only] = false;
                recovered.push(only);
                changed = true;
            }
        }
        if !changed {
            return recovered;
        }
    }
}

/// The linear attack: hidden cells whose value follows from the published totals by any linear
/// combination (Gaussian elimination per connected component of hidden cells).
pub fn determined_cells(groups: &Groups, suppressed: &[bool]) -> Vec<usize> {
    let hidden: Vec<usize> = (0..suppressed.len()).filter(|&c| suppressed[c]).collect();
    if hidden.is_empty() {
        return Vec::new();
    }
    let var_of: HashMap<usize, usize> = hidden.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    // Equations restricted to hidden cells: members +1, total -1 (published cells are constants).
    let equations: Vec<Vec<(usize, f64)>> = groups
        .groups
        .iter()
        .filter(|g| g.has_equation())
        .map(|g| {
            let mut eq: Vec<(usize, f64)> = g
                .members
                .iter()
                .filter_map(|c| var_of.get(c).map(|&v| (v, 1.0)))
                .collect();
            if let Some(v) = g.total.and_then(|t| var_of.get(&t)) {
                eq.push((*v, -1.0));
            }
            eq
        })
        .filter(|eq| !eq.is_empty())
        .collect();
    // Union-find over variables that share an equation.
    let mut parent: Vec<usize> = (0..hidden.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for eq in &equations {
        if let Some(&(first, _)) = eq.first() {
            for &(v, _) in &eq[1..] {
                let (a, b) = (find(&mut parent, first), find(&mut parent, v));
                parent[a] = b;
            }
        }
    }
    let mut components: HashMap<usize, Vec<usize>> = HashMap::new();
    for v in 0..hidden.len() {
        let root = find(&mut parent, v);
        components.entry(root).or_default().push(v);
    }
    let mut eqs_of: HashMap<usize, Vec<&Vec<(usize, f64)>>> = HashMap::new();
    for eq in &equations {
        if let Some(&(first, _)) = eq.first() {
            let root = find(&mut parent, first);
            eqs_of.entry(root).or_default().push(eq);
        }
    }
    let mut determined = Vec::new();
    for (root, vars) in components {
        if vars.len() > EXACT_CHECK_LIMIT {
            continue;
        }
        let Some(eqs) = eqs_of.get(&root) else {
            continue;
        };
        let local: HashMap<usize, usize> = vars.iter().enumerate().map(|(i, &v)| (v, i)).collect();
        let mut m: Vec<Vec<f64>> = eqs
            .iter()
            .map(|eq| {
                let mut row = vec![0.0; vars.len()];
                for &(v, a) in eq.iter() {
                    if let Some(&i) = local.get(&v) {
                        row[i] += a;
                    }
                }
                row
            })
            .collect();
        for i in determined_in(&mut m, vars.len()) {
            if let Some(&v) = vars.get(i) {
                determined.push(hidden[v]);
            }
        }
    }
    determined.sort_unstable();
    determined
}

/// Reduced row echelon form; a variable is determined when it is a pivot whose row has no entry
/// in any free column (every null-space vector is zero there).
fn determined_in(m: &mut [Vec<f64>], n: usize) -> Vec<usize> {
    const EPS: f64 = 1e-9;
    let mut pivots: Vec<(usize, usize)> = Vec::new();
    let mut r = 0;
    for c in 0..n {
        if r >= m.len() {
            break;
        }
        let Some(p) = (r..m.len()).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs())) else {
            break;
        };
        if m[p][c].abs() < EPS {
            continue;
        }
        m.swap(r, p);
        let pv = m[r][c];
        for x in m[r].iter_mut() {
            *x /= pv;
        }
        let pivot_row = m[r].clone();
        for (i, row) in m.iter_mut().enumerate() {
            if i != r && row[c].abs() > EPS {
                let f = row[c];
                for (x, p) in row.iter_mut().zip(&pivot_row) {
                    *x -= f * p;
                }
            }
        }
        pivots.push((r, c));
        r += 1;
    }
    let pivot_cols: Vec<bool> = {
        let mut v = vec![false; n];
        for &(_, c) in &pivots {
            v[c] = true;
        }
        v
    };
    pivots
        .iter()
        .filter(|&&(row, _)| (0..n).all(|c| pivot_cols[c] || m[row][c].abs() < EPS))
        .map(|&(_, c)| c)
        .collect()
}
