//! The server's side of the trial-feasibility explorer (docs/explorer.md): the explorer's secret
//! (`[explorer] key_file`), one index and [`Explorer`] per snapshot (the index read once through
//! the sandbox, its Arrow rows fed to kura-explorer's builder here), the grant check, and the
//! protected table of a view as the Arrow result a query record keeps. The HTTP handlers are in
//! `routes/explorer.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kura_explorer::index::EXPORT_COLUMNS;
use kura_explorer::{
    query::REQUIRED_COLUMNS, Explorer, ExplorerError, ExplorerIndex, IndexBuilder, IndexRow,
    RecordHash,
};
use kura_query::arrow::array::{Array, ArrayRef, AsArray, Int64Array, PrimitiveArray, StringArray};
use kura_query::arrow::compute::cast as arrow_cast;
use kura_query::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
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
            match kura_audit::note::write_new_private(
                path,
                format!("{}\n", hex::encode(key)).as_bytes(),
            ) {
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

/// The actor of the index export in the audit log: the server itself, not the caller whose
/// request happened to come first (the rows never reach that caller).
pub const INDEX_ACTOR: &str = "system:explorer";

/// The explorer of one snapshot: the index of its forms and the explorer built on the index's
/// catalog.
pub struct Loaded {
    pub explorer: Explorer,
    pub index: ExplorerIndex,
}

/// One [`Loaded`] explorer per snapshot (by SHA-256), each built once: the snapshot is immutable,
/// so its index never changes.
pub struct Explorers {
    key: Vec<u8>,
    hash: RecordHash,
    by_snapshot: Mutex<HashMap<String, Arc<OnceCell<Arc<Loaded>>>>>,
}

impl Explorers {
    pub fn new(key: Vec<u8>) -> Explorers {
        Explorers {
            key,
            hash: RecordHash::default(),
            by_snapshot: Mutex::new(HashMap::new()),
        }
    }

    /// The slot of snapshot `sha256`; the caller fills it once with [`read_index`] and
    /// [`Explorers::build`].
    pub fn slot(&self, sha256: &str) -> Arc<OnceCell<Arc<Loaded>>> {
        let mut map = match self.by_snapshot.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.entry(sha256.to_string()).or_default().clone()
    }

    /// The statement that reads the index (with this deployment's record hash).
    pub fn export_sql(&self) -> String {
        kura_explorer::index::export_sql(self.hash)
    }

    pub fn build(&self, index: ExplorerIndex) -> Result<Loaded, ExplorerError> {
        let explorer = Explorer::new(&self.key, index.catalog()?)?.with_record_hash(self.hash);
        Ok(Loaded { explorer, index })
    }
}

/// Reading the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("reading the explorer index through the sandbox: {0}")]
    Query(#[from] kura_query::QueryError),
    #[error("{0}")]
    Rows(#[from] ExplorerError),
    #[error("explorer index: column {column}: {problem}")]
    Column {
        column: &'static str,
        problem: String,
    },
}

/// Limits of the one index export: the whole table comes back, once per snapshot.
pub fn index_limits(query: kura_query::Limits) -> kura_query::Limits {
    kura_query::Limits {
        timeout_ms: query.timeout_ms.max(600_000),
        max_rows: u64::MAX,
        max_bytes: u64::MAX,
        ..query
    }
}

/// Reads a snapshot's explorer index: `request` (the export statement, see
/// [`Explorers::export_sql`], with [`index_limits`]) through `engine`, each batch into the
/// builder. A batch that does not fit stops the query.
pub fn read_index(
    engine: &kura_query::QueryEngine,
    request: &kura_query::QueryRequest<'_>,
    audit: &dyn kura_audit::AuditSink,
) -> Result<ExplorerIndex, IndexError> {
    let mut builder = IndexBuilder::new();
    let mut failed: Option<IndexError> = None;
    let cancel = kura_query::CancelHandle::default();
    let outcome = engine.run_streaming(request, audit, &cancel, &mut |batch| {
        if failed.is_none() {
            if let Err(e) = push_batch(&mut builder, batch) {
                failed = Some(e);
                cancel.cancel();
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    outcome?;
    Ok(builder.finish())
}

/// Feeds the rows of one batch of the export to `builder`.
pub fn push_batch(builder: &mut IndexBuilder, batch: &RecordBatch) -> Result<(), IndexError> {
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    if names != EXPORT_COLUMNS {
        return Err(IndexError::Column {
            column: "*",
            problem: format!("the export returned columns {names:?}, expected {EXPORT_COLUMNS:?}"),
        });
    }
    let cast = |i: usize, to: &DataType| -> Result<ArrayRef, IndexError> {
        arrow_cast(batch.column(i), to).map_err(|e| IndexError::Column {
            column: EXPORT_COLUMNS[i],
            problem: e.to_string(),
        })
    };
    let list_type = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let ints: Vec<ArrayRef> = [0, 1, 2, 3, 4, 9, 10]
        .iter()
        .map(|&i| cast(i, &DataType::Int64))
        .collect::<Result<_, _>>()?;
    let strs: Vec<ArrayRef> = [5, 6, 7, 8]
        .iter()
        .map(|&i| cast(i, &DataType::Utf8))
        .collect::<Result<_, _>>()?;
    let treatments = cast(11, &list_type)?;
    let int = |k: usize| ints[k].as_primitive::<Int64Type>();
    let text = |k: usize| strs[k].as_string::<i32>();
    let (patient, record_value, disease, year, sex, vent, inst) =
        (int(0), int(1), int(2), int(3), int(4), int(5), int(6));
    let (age, pref, diag, sev) = (text(0), text(1), text(2), text(3));
    let lists = treatments.as_list::<i32>();
    let names = lists.values().as_string::<i32>();
    let offsets = lists.value_offsets();
    let opt_i = |a: &PrimitiveArray<Int64Type>, r: usize| (!a.is_null(r)).then(|| a.value(r));
    fn opt_s(a: &StringArray, r: usize) -> Option<&str> {
        (!a.is_null(r)).then(|| a.value(r))
    }
    let unsigned = |column: &'static str, v: Option<i64>| -> Result<u64, IndexError> {
        v.and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| IndexError::Column {
                column,
                problem: format!("{v:?} is not a whole number >= 0"),
            })
    };
    for r in 0..batch.num_rows() {
        let row = IndexRow {
            patient: unsigned("patient", opt_i(patient, r))?,
            record_value: unsigned("record_value", opt_i(record_value, r))?,
            disease_no: opt_i(disease, r),
            form_year: opt_i(year, r),
            sex: opt_i(sex, r),
            age_band: opt_s(age, r),
            pref_code: opt_s(pref, r),
            diagnosis_category: opt_s(diag, r),
            severity: opt_s(sev, r),
            ventilator: opt_i(vent, r),
            institution: opt_i(inst, r),
        };
        let (a, b) = if lists.is_null(r) {
            (0, 0)
        } else {
            (offsets[r] as usize, offsets[r + 1] as usize)
        };
        let given = (a..b)
            .filter(|&k| !names.is_null(k))
            .map(|k| names.value(k));
        builder.push(&row, given)?;
    }
    Ok(())
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
    fn nodes_creating_the_default_key_at_once_agree_on_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys").join("explorer.key");
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_key(&path, true).expect("key")))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "one key for all");
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("explorer.key")],
            "no temporary files"
        );
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

    /// A batch shaped like DuckDB's answer to the export (integers of several widths, a list).
    fn export_batch(patients: Vec<i64>, names: Vec<&str>) -> RecordBatch {
        use kura_query::arrow::array::{Int16Array, Int32Array, ListBuilder, StringBuilder};
        let n = patients.len();
        let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![Some(v); n])) };
        let mut lists = ListBuilder::new(StringBuilder::new());
        for i in 0..n {
            if i % 2 == 0 {
                lists.values().append_value("prednisolone");
                lists.values().append_null();
                lists.append(true);
            } else {
                lists.append(false);
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(patients)),
            Arc::new(Int64Array::from(vec![5; n])),
            Arc::new(Int16Array::from(vec![11; n])),
            Arc::new(Int32Array::from(vec![2021; n])),
            Arc::new(Int64Array::from(vec![2; n])),
            text("40-44"),
            text("13"),
            text("definite"),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(Int32Array::from(vec![0; n])),
            Arc::new(Int64Array::from((1..=n as i64).collect::<Vec<_>>())),
            Arc::new(lists.finish()),
        ];
        let fields: Vec<Field> = names
            .iter()
            .zip(&columns)
            .map(|(name, c)| Field::new(*name, c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
    }

    #[test]
    fn the_export_rows_feed_the_index() {
        let mut builder = IndexBuilder::new();
        push_batch(
            &mut builder,
            &export_batch(vec![1, 1, 2], EXPORT_COLUMNS.to_vec()),
        )
        .expect("pushed");
        let index = builder.finish();
        assert_eq!((index.forms(), index.patients()), (3, 2));
        let rows = index.raw_views(&kura_explorer::Filters::default());
        let by_severity = &rows[1].rows;
        assert_eq!(by_severity[0].dims, ["2021", "TOTAL"]);
        assert_eq!(by_severity[1].dims, ["2021", "unknown"]);
        assert_eq!(by_severity[1].patients, 2);
        // Patient 1 saw institutions 1 and 2, patient 2 institution 3.
        let by_inst = &rows[2].rows;
        assert_eq!(by_inst[0].dims, ["1"]);
        assert_eq!(by_inst[1].dims, ["2"]);
        assert_eq!(by_inst[2].institutions, 3);
    }

    #[test]
    fn an_export_of_another_shape_is_refused() {
        let mut names = EXPORT_COLUMNS.to_vec();
        names[0] = "research_id";
        let e = push_batch(&mut IndexBuilder::new(), &export_batch(vec![1], names))
            .expect_err("other columns");
        assert!(e.to_string().contains("research_id"), "{e}");
        let e = push_batch(
            &mut IndexBuilder::new(),
            &export_batch(vec![-1], EXPORT_COLUMNS.to_vec()),
        )
        .expect_err("negative patient");
        assert!(e.to_string().contains("patient"), "{e}");
        let e = push_batch(
            &mut IndexBuilder::new(),
            &export_batch(vec![2, 1], EXPORT_COLUMNS.to_vec()),
        )
        .expect_err("out of order");
        assert!(e.to_string().contains("order"), "{e}");
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
