//! The server's side of the trial-feasibility explorer (docs/explorer.md): the explorer's secret
//! (`[explorer] key_file`), one [`Explorer`] per snapshot (its catalog read once through the
//! sandbox), the grant check, and the protected table of a view as the Arrow result a query
//! record keeps. The HTTP handlers are in `routes/explorer.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kura_explorer::{query::REQUIRED_COLUMNS, Catalog, Explorer, ExplorerError};
use kura_query::arrow::array::{ArrayRef, Int64Array, StringArray};
use kura_query::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use kura_query::arrow::record_batch::RecordBatch;
use tokio::sync::OnceCell;

/// Hex digits a key file must hold at least (32 bytes).
const MIN_KEY_HEX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ExplorerKeyError {
    #[error("explorer key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "explorer key file {path}: expected at least {MIN_KEY_HEX} hexadecimal digits (32 bytes) \
         on one line, e.g. the output of `openssl rand -hex 32`"
    )]
    Format { path: PathBuf },
    #[error(
        "explorer key file {path} does not exist; every node must use the same key: copy it \
         from the first node, or create it with `openssl rand -hex 32 > {path}` on a new deployment"
    )]
    Missing { path: PathBuf },
}

/// Reads the explorer's secret from `path` (hex text). The default path (`default == true`) is
/// created with 32 random bytes when absent; a configured path must exist, since a node that
/// made up its own key would perturb the same cells differently from the others.
pub fn load_or_create_key(path: &Path, default: bool) -> Result<Vec<u8>, ExplorerKeyError> {
    let io = |source| ExplorerKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && default => {
            if let Some(dir) = path.parent() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
            let mut key = [0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| io(std::io::Error::other(format!("random: {e}"))))?;
            match write_new_private(path, format!("{}\n", hex::encode(key)).as_bytes()) {
                Ok(()) => Ok(key.to_vec()),
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    parse_key(path, &std::fs::read_to_string(path).map_err(io)?)
                }
                Err(e) => Err(io(e)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ExplorerKeyError::Missing {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io(e)),
    }
}

fn parse_key(path: &Path, text: &str) -> Result<Vec<u8>, ExplorerKeyError> {
    let text = text.trim();
    match hex::decode(text) {
        Ok(key) if text.len() >= MIN_KEY_HEX => Ok(key),
        _ => Err(ExplorerKeyError::Format {
            path: path.to_path_buf(),
        }),
    }
}

/// Creates `path` (never overwrites), owner-only, synced.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// One explorer per snapshot (by SHA-256), each built once: its catalog (treatment names,
/// fiscal years) comes from the immutable snapshot, so it never changes.
pub struct Explorers {
    key: Vec<u8>,
    by_snapshot: Mutex<HashMap<String, Arc<OnceCell<Arc<Explorer>>>>>,
}

impl Explorers {
    pub fn new(key: Vec<u8>) -> Explorers {
        Explorers {
            key,
            by_snapshot: Mutex::new(HashMap::new()),
        }
    }

    /// The slot of snapshot `sha256`; the caller fills it once with [`Explorers::build`].
    pub fn slot(&self, sha256: &str) -> Arc<OnceCell<Arc<Explorer>>> {
        let mut map = match self.by_snapshot.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.entry(sha256.to_string()).or_default().clone()
    }

    pub fn build(
        &self,
        treatments: Vec<String>,
        fiscal_years: Vec<u16>,
    ) -> Result<Explorer, ExplorerError> {
        Explorer::new(&self.key, Catalog::new(treatments, fiscal_years)?)
    }
}

/// The `table.column`s the explorer needs that the grant does not give.
pub fn missing_columns(tables: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut missing = Vec::new();
    for (table, columns) in REQUIRED_COLUMNS {
        let granted = tables.get(table);
        for column in columns {
            let ok = granted.is_some_and(|g| g.iter().any(|c| c == "*" || c == column));
            if !ok {
                missing.push(format!("{table}.{column}"));
            }
        }
    }
    missing
}

/// The protected CSV of a view (kura-sdc's `kind:name` header, published cells only) as one
/// Arrow batch: `count:` columns as Int64, the others as text. This, never the raw rows, is
/// what the view's query record keeps and what staging copies.
pub fn protected_batch(csv_text: &str) -> Result<(SchemaRef, RecordBatch), String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("protected table header: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() {
        return Err("protected table without columns".into());
    }
    let is_count: Vec<bool> = header.iter().map(|h| h.starts_with("count:")).collect();
    let mut text: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    let mut numbers: Vec<Vec<i64>> = vec![Vec::new(); header.len()];
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("protected table line {}: {e}", line + 2))?;
        if record.len() != header.len() {
            return Err(format!(
                "protected table line {}: {} fields, expected {}",
                line + 2,
                record.len(),
                header.len()
            ));
        }
        for (i, field) in record.iter().enumerate() {
            if is_count[i] {
                let n = field.parse::<i64>().map_err(|_| {
                    format!(
                        "protected table line {}: {}: {field:?} is not a count",
                        line + 2,
                        header[i]
                    )
                })?;
                numbers[i].push(n);
            } else {
                text[i].push(field.to_string());
            }
        }
    }
    let fields: Vec<Field> = header
        .iter()
        .zip(&is_count)
        .map(|(h, &count)| {
            Field::new(
                h,
                if count {
                    DataType::Int64
                } else {
                    DataType::Utf8
                },
                false,
            )
        })
        .collect();
    let columns: Vec<ArrayRef> = is_count
        .iter()
        .enumerate()
        .map(|(i, &count)| -> ArrayRef {
            if count {
                Arc::new(Int64Array::from(std::mem::take(&mut numbers[i])))
            } else {
                Arc::new(StringArray::from(std::mem::take(&mut text[i])))
            }
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| format!("protected table: {e}"))?;
    Ok((schema, batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_query::arrow::array::Array;

    #[test]
    fn the_default_key_is_created_once_and_a_configured_one_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys").join("explorer.key");
        let first = load_or_create_key(&path, true).expect("created");
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create_key(&path, true).expect("read"), first);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let other = dir.path().join("shared.key");
        assert!(matches!(
            load_or_create_key(&other, false),
            Err(ExplorerKeyError::Missing { .. })
        ));
        std::fs::write(&other, "abcd\n").expect("write");
        let e = load_or_create_key(&other, false).expect_err("too short");
        assert!(e.to_string().contains("openssl rand -hex 32"), "{e}");
    }

    #[test]
    fn missing_columns_names_each_one() {
        let mut tables = BTreeMap::new();
        tables.insert("nanbyo_forms".to_string(), vec!["*".to_string()]);
        assert_eq!(
            missing_columns(&tables),
            vec!["nanbyo_treatments.form_key", "nanbyo_treatments.name"]
        );
        tables.insert(
            "nanbyo_treatments".to_string(),
            vec!["form_key".to_string(), "name".to_string()],
        );
        assert!(missing_columns(&tables).is_empty());
        tables.insert("nanbyo_forms".to_string(), vec!["research_id".to_string()]);
        let missing = missing_columns(&tables);
        assert_eq!(missing.len(), 11);
        assert!(missing.contains(&"nanbyo_forms.severity".to_string()));
    }

    #[test]
    fn the_protected_table_keeps_its_header_and_counts() {
        let refused = protected_batch("dim:prefecture,count:patients\n01,120\n13,\"4,5\"\n");
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("line 3")),
            "a non-count is refused, naming its line"
        );
        let (schema, batch) =
            protected_batch("dim:fiscal_year,dim:severity,count:patients\n2020,mild,12\n")
                .expect("parsed");
        assert_eq!(schema.field(2).name(), "count:patients");
        assert_eq!(schema.field(2).data_type(), &DataType::Int64);
        assert_eq!(batch.num_rows(), 1);
        let (_, empty) = protected_batch("dim:prefecture,count:patients\n").expect("empty");
        assert_eq!(empty.num_rows(), 0);
        assert_eq!(empty.column(0).len(), 0);
    }
}
