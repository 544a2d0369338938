//! Query results kept inside Kura: each completed result is written whole as an Arrow IPC
//! file under `<state>/results/` (temp + rename), so it can be viewed again and staged for the
//! airlock without re-running the query; the browser only ever gets the first rows as JSON.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use kura_query::arrow::array::{Array, ArrayRef, AsArray};
use kura_query::arrow::compute::cast;
use kura_query::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, UInt64Type};
use kura_query::arrow::record_batch::RecordBatch;
use kura_query::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{json, Value};

use crate::error::ApiError;

pub fn result_path(state_dir: &Path, query_id: &str) -> PathBuf {
    state_dir.join("results").join(format!("{query_id}.arrow"))
}

/// Writes the whole result; returns the file's SHA-256.
pub fn write(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<String, ApiError> {
    let io = |e: std::io::Error| ApiError::Internal(format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .ok_or_else(|| ApiError::Internal("result path".into()))?;
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("arrow.tmp");
    {
        let file = File::create(&tmp).map_err(io)?;
        let mut w = arrow_ipc::writer::FileWriter::try_new(BufWriter::new(file), schema)
            .map_err(|e| ApiError::Internal(format!("result file: {e}")))?;
        for b in batches {
            w.write(b)
                .map_err(|e| ApiError::Internal(format!("result file: {e}")))?;
        }
        let buf = w
            .into_inner()
            .map_err(|e| ApiError::Internal(format!("result file: {e}")))?;
        let file = buf
            .into_inner()
            .map_err(|e| ApiError::Internal(format!("result file: {e}")))?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    let (sha, _) = kura_snapshot::sha256_file(path)
        .map_err(|e| ApiError::Internal(format!("result file: {e}")))?;
    Ok(sha)
}

pub fn read(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>), ApiError> {
    let file =
        File::open(path).map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?;
    let reader = arrow_ipc::reader::FileReader::try_new(file, None)
        .map_err(|e| ApiError::Internal(format!("result file: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Internal(format!("result file: {e}")))?;
    Ok((schema, batches))
}

/// Column names and SQL-ish type names.
pub fn columns(schema: &SchemaRef) -> Value {
    schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect()
}

/// The first `limit` rows as JSON arrays: integers and floats as numbers (integers beyond
/// 2^53 as strings, so no digit is silently lost in JavaScript), booleans, null, and every
/// other type as its display string.
pub fn rows(batches: &[RecordBatch], limit: usize) -> Result<Vec<Vec<Value>>, ApiError> {
    let mut out = Vec::new();
    for batch in batches {
        if out.len() >= limit {
            break;
        }
        let take = (limit - out.len()).min(batch.num_rows());
        let cols: Vec<Vec<Value>> = batch
            .columns()
            .iter()
            .map(|c| column(&c.slice(0, take)))
            .collect::<Result<_, _>>()?;
        for i in 0..take {
            out.push(
                cols.iter()
                    .map(|c| c.get(i).cloned().unwrap_or(Value::Null))
                    .collect(),
            );
        }
    }
    Ok(out)
}

const MAX_SAFE: i64 = (1 << 53) - 1;

fn column(a: &ArrayRef) -> Result<Vec<Value>, ApiError> {
    let err = |e: kura_query::arrow::error::ArrowError| ApiError::Internal(format!("result: {e}"));
    let dt = a.data_type();
    let values = if dt.is_signed_integer()
        || matches!(dt, DataType::UInt8 | DataType::UInt16 | DataType::UInt32)
    {
        let c = cast(a, &DataType::Int64).map_err(err)?;
        let c = c.as_primitive::<Int64Type>();
        (0..c.len())
            .map(|i| match c.is_null(i) {
                true => Value::Null,
                false if c.value(i).abs() <= MAX_SAFE => json!(c.value(i)),
                false => json!(c.value(i).to_string()),
            })
            .collect()
    } else if *dt == DataType::UInt64 {
        let c = a.as_primitive::<UInt64Type>();
        (0..c.len())
            .map(|i| match c.is_null(i) {
                true => Value::Null,
                false if c.value(i) <= MAX_SAFE as u64 => json!(c.value(i)),
                false => json!(c.value(i).to_string()),
            })
            .collect()
    } else if dt.is_floating() {
        let c = cast(a, &DataType::Float64).map_err(err)?;
        let c = c.as_primitive::<Float64Type>();
        (0..c.len())
            .map(|i| {
                if c.is_null(i) {
                    Value::Null
                } else {
                    serde_json::Number::from_f64(c.value(i))
                        .map(Value::Number)
                        .unwrap_or_else(|| json!(c.value(i).to_string()))
                }
            })
            .collect()
    } else if *dt == DataType::Boolean {
        let c = a.as_boolean();
        (0..c.len())
            .map(|i| {
                if c.is_null(i) {
                    Value::Null
                } else {
                    json!(c.value(i))
                }
            })
            .collect()
    } else {
        let f = ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()).map_err(err)?;
        (0..a.len())
            .map(|i| {
                if a.is_null(i) {
                    Value::Null
                } else {
                    json!(f.value(i).to_string())
                }
            })
            .collect()
    };
    Ok(values)
}
