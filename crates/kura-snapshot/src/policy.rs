//! The pseudonymisation policy (`policies/pseudonymise.toml`, format in `docs/snapshot.md`): for
//! every raw table and every raw column, what reaches the snapshot. This module parses it and
//! checks what can be checked without the raw files; `plan.rs` matches it against the headers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SnapshotError};

/// The only policy format this build understands.
pub const POLICY_FORMAT: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub format_version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub research_id: ResearchId,
    #[serde(default)]
    pub linkage: Linkage,
    #[serde(default)]
    pub date_shift: DateShift,
    pub tables: BTreeMap<String, TablePolicy>,
}

/// Which raw columns make the research ID (HMAC over their normalised values).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResearchId {
    pub kana_name: String,
    pub sex: String,
    pub birth_date: String,
    pub en: String,
    pub ja: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Linkage {
    /// Off unless the release is approved for linkage: `linkage` columns are then dropped.
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DateShift {
    /// `shift_days` moves a person's dates by the same keyed offset in `-max_days..=max_days`.
    #[serde(default)]
    pub max_days: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TablePolicy {
    /// The raw file, relative to `--raw`.
    pub file: String,
    pub en: String,
    pub ja: String,
    /// Only rows whose column holds `1` are kept (the consent flag).
    #[serde(default)]
    pub consent_column: Option<String>,
    /// Only rows whose column value is a kept row of the parent table (treatments of consenting
    /// forms).
    #[serde(default)]
    pub parent: Option<Parent>,
    /// Add a `research_id` column made from the policy's `[research_id]` columns.
    #[serde(default)]
    pub research_id: bool,
    /// The date ages are computed at (`age_band_5y`).
    #[serde(default)]
    pub reference_date: Option<String>,
    /// Output columns forming the equivalence classes of the k-anonymity report.
    #[serde(default)]
    pub quasi_identifiers: Vec<String>,
    #[serde(default)]
    pub k: Option<u64>,
    pub columns: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Parent {
    pub table: String,
    pub column: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(ColumnRule),
    Many(Vec<ColumnRule>),
}

impl OneOrMany {
    pub fn rules(&self) -> &[ColumnRule] {
        match self {
            OneOrMany::One(r) => std::slice::from_ref(r),
            OneOrMany::Many(v) => v,
        }
    }
}

/// One output made from one raw column.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    pub action: ActionName,
    /// For `prefix`: how many characters to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<usize>,
    /// For `hmac`: the pseudonym domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Output column name; the raw name when absent.
    #[serde(default)]
    pub out: Option<String>,
    #[serde(default)]
    pub en: Option<String>,
    #[serde(default)]
    pub ja: Option<String>,
}

/// The action names of the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    Drop,
    Keep,
    YearMonth,
    Year,
    #[serde(rename = "age_band_5y")]
    AgeBand5y,
    Prefix,
    ShiftDays,
    Hmac,
    Linkage,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Not in the snapshot.
    Drop,
    /// Unaltered (typed by the raw column's rules).
    Keep,
    /// A date truncated to `YYYY-MM`.
    YearMonth,
    /// A date or year-month truncated to its year (INTEGER).
    Year,
    /// A date of birth as a 5-year age band at the table's reference date (`100+` pooled).
    AgeBand5y,
    /// The first `len` characters of a code.
    Prefix { len: usize },
    /// A date moved by the person's keyed offset (see `[date_shift]`).
    ShiftDays,
    /// A keyed pseudonym; equal `domain`s give equal pseudonyms (joins across tables).
    Hmac { domain: String },
    /// The per-release linkage key (only when `[linkage] enabled = true`).
    Linkage,
}

impl ColumnRule {
    /// The action with its parameters; `Err` when a parameter is missing or does not belong.
    pub fn action(&self) -> std::result::Result<Action, String> {
        let a = match (self.action, self.len, &self.domain) {
            (ActionName::Prefix, Some(0), None) => return Err("prefix len must be > 0".into()),
            (ActionName::Prefix, Some(len), None) => Action::Prefix { len },
            (ActionName::Prefix, None, _) => return Err("prefix needs `len`".into()),
            (ActionName::Hmac, None, Some(d)) if !d.is_empty() => {
                Action::Hmac { domain: d.clone() }
            }
            (ActionName::Hmac, _, _) => return Err("hmac needs a non-empty `domain`".into()),
            (_, Some(_), _) | (_, _, Some(_)) => {
                return Err("`len` belongs to prefix and `domain` to hmac only".into())
            }
            (ActionName::Drop, ..) => Action::Drop,
            (ActionName::Keep, ..) => Action::Keep,
            (ActionName::YearMonth, ..) => Action::YearMonth,
            (ActionName::Year, ..) => Action::Year,
            (ActionName::AgeBand5y, ..) => Action::AgeBand5y,
            (ActionName::ShiftDays, ..) => Action::ShiftDays,
            (ActionName::Linkage, ..) => Action::Linkage,
        };
        Ok(a)
    }
}

impl Policy {
    /// Reads and checks the policy; also returns its exact bytes (hashed into the manifest).
    pub fn load(path: &Path) -> Result<(Policy, String)> {
        let text = std::fs::read_to_string(path).map_err(|e| SnapshotError::io(path, e))?;
        let policy = Self::parse(&text).map_err(|message| SnapshotError::Policy {
            path: path.to_path_buf(),
            message,
        })?;
        Ok((policy, text))
    }

    pub fn parse(text: &str) -> std::result::Result<Policy, String> {
        let policy: Policy = toml::from_str(text).map_err(|e| e.to_string())?;
        policy.check()?;
        Ok(policy)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.format_version != POLICY_FORMAT {
            return Err(format!(
                "format_version {} is not supported (this build reads {POLICY_FORMAT})",
                self.format_version
            ));
        }
        let mut files = BTreeSet::new();
        for (tname, t) in &self.tables {
            if !files.insert(&t.file) {
                return Err(format!("file {} is named by two tables", t.file));
            }
            let mut outs = BTreeSet::new();
            if t.research_id {
                outs.insert("research_id".to_string());
            }
            for (col, rules) in &t.columns {
                let rules = rules.rules();
                if rules.is_empty() {
                    return Err(format!("table `{tname}` column `{col}`: no action"));
                }
                for r in rules {
                    let action = r
                        .action()
                        .map_err(|e| format!("table `{tname}` column `{col}`: {e}"))?;
                    if action == Action::Drop {
                        if rules.len() > 1 {
                            return Err(format!(
                                "table `{tname}` column `{col}`: `drop` cannot be combined"
                            ));
                        }
                        continue;
                    }
                    if r.en.as_deref().unwrap_or("").is_empty()
                        || r.ja.as_deref().unwrap_or("").is_empty()
                    {
                        return Err(format!(
                            "table `{tname}` column `{col}`: every output needs `en` and `ja` \
                             descriptions (for the catalog)"
                        ));
                    }
                    if action == Action::ShiftDays && self.date_shift.max_days == 0 {
                        return Err(format!(
                            "table `{tname}` column `{col}`: shift_days needs [date_shift] \
                             max_days > 0"
                        ));
                    }
                    let out = r.out.clone().unwrap_or_else(|| col.clone());
                    if !outs.insert(out.clone()) {
                        return Err(format!("table `{tname}`: output column `{out}` twice"));
                    }
                }
            }
            for q in &t.quasi_identifiers {
                if !outs.contains(q) {
                    return Err(format!(
                        "table `{tname}`: quasi-identifier `{q}` is not an output column"
                    ));
                }
            }
            if let Some(p) = &t.parent {
                if !self.tables.contains_key(&p.table) || p.table == *tname {
                    return Err(format!(
                        "table `{tname}`: unknown parent table `{}`",
                        p.table
                    ));
                }
                if self
                    .tables
                    .get(&p.table)
                    .and_then(|pt| pt.parent.as_ref())
                    .is_some()
                {
                    return Err(format!(
                        "table `{tname}`: parent `{}` has a parent",
                        p.table
                    ));
                }
            }
        }
        Ok(())
    }

    /// Tables in build order: parents before the tables that filter on them.
    pub fn build_order(&self) -> Vec<&str> {
        let (mut top, child): (Vec<_>, Vec<_>) = self
            .tables
            .iter()
            .map(|(n, t)| (n.as_str(), t.parent.is_some()))
            .partition(|(_, has_parent)| !has_parent);
        top.extend(child);
        top.into_iter().map(|(n, _)| n).collect()
    }
}

/// The path shown in errors for a table's raw file.
pub fn raw_path(raw_dir: &Path, table: &TablePolicy) -> PathBuf {
    raw_dir.join(&table.file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
format_version = 1
name = "t"
[research_id]
kana_name = "k"
sex = "s"
birth_date = "b"
en = "id"
ja = "ID"
[tables.a]
file = "a.csv"
en = "a"
ja = "a"
quasi_identifiers = ["x"]
[tables.a.columns]
k = { action = "drop" }
x = { action = "prefix", len = 2, en = "x", ja = "x" }
"#;

    #[test]
    fn a_small_policy_parses() {
        let p = Policy::parse(MINI).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.tables["a"].columns["x"].rules()[0].action(),
            Ok(Action::Prefix { len: 2 })
        );
    }

    #[test]
    fn mistakes_are_refused() {
        let bad = [
            MINI.replace("format_version = 1", "format_version = 2"),
            MINI.replace("\"prefix\", len = 2", "\"unknown\""),
            MINI.replace(", en = \"x\"", ""),
            MINI.replace("[\"x\"]", "[\"nope\"]"),
            MINI.replace("action = \"drop\"", "action = \"drop\", colour = 1"),
            MINI.replace("action = \"drop\"", "action = \"drop\", len = 1"),
            MINI.replace(", len = 2", ""),
        ];
        for b in bad {
            assert!(Policy::parse(&b).is_err(), "{b}");
        }
    }
}
