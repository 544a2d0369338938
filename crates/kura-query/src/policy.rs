//! The function allowlist of the statement gate, compiled in from `policies/sql-functions.toml`.

use std::collections::BTreeSet;

use serde::Deserialize;

const ALLOWLIST_TOML: &str = include_str!("../../../policies/sql-functions.toml");

/// Which functions a researcher's query may call.
#[derive(Debug, Clone)]
pub struct FunctionPolicy {
    functions: BTreeSet<String>,
    table_functions: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistFile {
    functions: Vec<String>,
    table_functions: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("policies/sql-functions.toml is invalid: {0}")]
pub struct PolicyError(String);

impl FunctionPolicy {
    /// The compiled-in allowlist.
    pub fn builtin() -> Result<FunctionPolicy, PolicyError> {
        FunctionPolicy::from_toml(ALLOWLIST_TOML)
    }

    pub fn from_toml(text: &str) -> Result<FunctionPolicy, PolicyError> {
        let file: AllowlistFile = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let lower = |v: Vec<String>| v.into_iter().map(|s| s.to_lowercase()).collect();
        Ok(FunctionPolicy {
            functions: lower(file.functions),
            table_functions: lower(file.table_functions),
        })
    }

    pub fn allows_function(&self, name: &str) -> bool {
        self.functions.contains(&name.to_lowercase())
    }

    pub fn allows_table_function(&self, name: &str) -> bool {
        self.table_functions.contains(&name.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_allowlist_keeps_file_and_settings_functions_out() {
        let p = FunctionPolicy::builtin().unwrap();
        assert!(p.allows_function("count") && p.allows_function("SUM"));
        for f in [
            "read_csv",
            "read_csv_auto",
            "read_parquet",
            "read_json",
            "read_text",
            "read_blob",
            "glob",
            "getenv",
            "current_setting",
            "duckdb_settings",
            "query",
            "query_table",
            "json_serialize_sql",
            "getvariable",
        ] {
            assert!(!p.allows_function(f), "{f} must not be allowed");
            assert!(
                !p.allows_table_function(f),
                "{f} must not be allowed in FROM"
            );
        }
    }
}
