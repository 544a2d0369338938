//! Rule packs: versioned TOML files in `policies/sdc/`, each a list of parametrised rules.
//!
//! The engine is generic; a pack only chooses rules and their parameters, so adding a jurisdiction
//! is adding a file. The shipped packs are also compiled in, so the binary works from any
//! directory; a file in the policies directory with the same name takes precedence.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::SdcError;

/// Packs compiled into the binary: (name, TOML text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "japan-rare-disease",
        include_str!("../../../policies/sdc/japan-rare-disease.toml"),
    ),
    (
        "uk-acro",
        include_str!("../../../policies/sdc/uk-acro.toml"),
    ),
    (
        "opensafely",
        include_str!("../../../policies/sdc/opensafely.toml"),
    ),
];

/// The pack used when none is named.
pub const DEFAULT_PACK: &str = "japan-rare-disease";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePack {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// What a suppressed cell shows in the protected table (e.g. `－`, `<10`).
    pub marker: String,
    pub rules: Vec<Rule>,
}

/// The minimum for a municipality band: a count, or `"none"` (no count may be shown at all).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum BandMin {
    Count(u64),
    Word(NoCounts),
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoCounts {
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationBand {
    /// The band applies to populations strictly below this.
    pub below: u64,
    pub min: BandMin,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// The whole output is refused if it has a row-level identifier column or too many rows.
    RowLevel {
        identifier_columns: Vec<String>,
        max_rows: usize,
    },
    /// Age dimensions must use exactly `width`-year bands, pooled from `pooled_from` (`100+`).
    AgeBands {
        dimensions: Vec<String>,
        width: u32,
        pooled_from: u32,
    },
    /// Counts (and the `n` behind statistics) below `min` fail; 0 passes if `zero_allowed`.
    Threshold { min: u64, zero_allowed: bool },
    /// Rows built from 1..`min`-1 institutions fail (0 institutions, i.e. an empty cell, passes).
    Institutions { min: u64 },
    /// Municipality rows: the band for the municipality's population sets the minimum count.
    Municipality { bands: Vec<PopulationBand> },
    /// nk-dominance: the top `n` contributors holding more than `k` of the cell's total fail.
    Dominance { n: usize, k: f64 },
    /// p-ratio: fail when the rest (total minus the top two) is under `p` times the largest, so
    /// the second largest could estimate the largest to within `p`.
    PRatio { p: f64 },
    /// Model outputs need at least `min` residual degrees of freedom.
    Dof { min: f64 },
    /// Cells nested in an earlier release (same snapshot) must not differ by 1..`min`-1.
    Differencing { min: u64, zero_allowed: bool },
    /// Suppress more cells until no suppressed cell can be recovered from a published total.
    Secondary {
        /// Treat every marginal as known even when the table does not print it.
        assume_public_totals: bool,
    },
    /// Publish every count rounded to the nearest `base`.
    Rounding { base: u64 },
}

impl RulePack {
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SdcError> {
        let pack: RulePack = toml::from_str(text).map_err(|e| SdcError::PackParse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        pack.validate(origin)?;
        Ok(pack)
    }

    pub fn load(path: &Path) -> Result<Self, SdcError> {
        let text = std::fs::read_to_string(path).map_err(|source| SdcError::PackRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Resolves `name_or_path`: an existing file path, else `<dir>/<name>.toml` for each
    /// directory in `dirs`, else a built-in pack.
    pub fn find(name_or_path: &str, dirs: &[PathBuf]) -> Result<Self, SdcError> {
        let as_path = Path::new(name_or_path);
        if as_path.is_file() {
            return Self::load(as_path);
        }
        for dir in dirs {
            let candidate = dir.join(format!("{name_or_path}.toml"));
            if candidate.is_file() {
                return Self::load(&candidate);
            }
        }
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_toml(text, &format!("built-in pack {name}"));
        }
        Err(SdcError::PackNotFound {
            name: name_or_path.to_string(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            builtin: BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn builtin(name: &str) -> Result<Self, SdcError> {
        Self::find(name, &[])
    }

    /// Rejects parameters that would make a rule meaningless or silently permissive.
    fn validate(&self, origin: &str) -> Result<(), SdcError> {
        let bad = |message: String| SdcError::PackInvalid {
            origin: origin.to_string(),
            message,
        };
        if self.version.trim().is_empty() {
            return Err(bad("`version` must not be empty".into()));
        }
        let mut singletons = (0, 0);
        for (i, rule) in self.rules.iter().enumerate() {
            let n = i + 1;
            match rule {
                Rule::Threshold { min, .. } | Rule::Differencing { min, .. } if *min == 0 => {
                    return Err(bad(format!("rule {n}: `min` must be at least 1")))
                }
                Rule::Institutions { min } if *min == 0 => {
                    return Err(bad(format!("rule {n}: `min` must be at least 1")))
                }
                Rule::AgeBands { width, .. } if *width == 0 => {
                    return Err(bad(format!("rule {n}: `width` must be at least 1")))
                }
                Rule::Dominance { n: top, k } if *top == 0 || !(*k > 0.0 && *k <= 1.0) => {
                    return Err(bad(format!(
                        "rule {n}: dominance needs n >= 1 and 0 < k <= 1, got n = {top}, k = {k}"
                    )))
                }
                Rule::PRatio { p } if !(*p > 0.0 && *p < 1.0) => {
                    return Err(bad(format!("rule {n}: p-ratio needs 0 < p < 1, got {p}")))
                }
                Rule::Rounding { base } if *base < 2 => {
                    return Err(bad(format!("rule {n}: rounding `base` must be at least 2")))
                }
                Rule::Municipality { bands }
                    if bands.windows(2).any(|w| w[0].below >= w[1].below) =>
                {
                    return Err(bad(format!(
                        "rule {n}: municipality bands must be in increasing `below` order"
                    )))
                }
                Rule::Secondary { .. } => singletons.0 += 1,
                Rule::Rounding { .. } => singletons.1 += 1,
                _ => {}
            }
        }
        if singletons.0 > 1 || singletons.1 > 1 {
            return Err(bad(
                "at most one `secondary` and one `rounding` rule per pack".into(),
            ));
        }
        Ok(())
    }

    /// The first rule matching `f`, for rules that act once per table.
    pub fn rule<T>(&self, f: impl Fn(&Rule) -> Option<T>) -> Option<T> {
        self.rules.iter().find_map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_packs_parse_and_are_what_the_rules_say() {
        let jp = RulePack::builtin("japan-rare-disease").unwrap();
        assert!(jp.rules.contains(&Rule::Threshold {
            min: 10,
            zero_allowed: true
        }));
        assert!(jp.rules.contains(&Rule::Institutions { min: 3 }));
        let uk = RulePack::builtin("uk-acro").unwrap();
        assert!(uk.rules.contains(&Rule::Dominance { n: 2, k: 0.9 }));
        assert!(uk.rules.contains(&Rule::PRatio { p: 0.1 }));
        let os = RulePack::builtin("opensafely").unwrap();
        assert!(os.rules.contains(&Rule::Rounding { base: 5 }));
    }

    #[test]
    fn the_policies_directory_overrides_and_unknown_names_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("strict.toml"),
            "name = \"strict\"\nversion = \"2\"\nmarker = \"x\"\n[[rules]]\nkind = \"threshold\"\nmin = 50\nzero_allowed = false\n",
        )
        .unwrap();
        let p = RulePack::find("strict", &[dir.path().to_path_buf()]).unwrap();
        assert_eq!(p.version, "2");
        let err = RulePack::find("nope", &[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains("japan-rare-disease"), "{err}");
    }

    #[test]
    fn meaningless_parameters_are_rejected() {
        let text = "name = \"x\"\nversion = \"1\"\nmarker = \"x\"\n[[rules]]\nkind = \"p_ratio\"\np = 1.5\n";
        let err = RulePack::from_toml(text, "x.toml").unwrap_err();
        assert!(err.to_string().contains("p-ratio"), "{err}");
        let unknown =
            "name = \"x\"\nversion = \"1\"\nmarker = \"x\"\n[[rules]]\nkind = \"magic\"\n";
        assert!(RulePack::from_toml(unknown, "x.toml").is_err());
    }
}
