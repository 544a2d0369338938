//! One chunk of raw CSV records -> one Arrow record batch of the snapshot table. Every field is
//! validated here (UTF-8, field count, the column's value rules), rows without consent or without
//! a kept parent are skipped, and the policy's operations are applied.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use csv::ByteRecord;
use duckdb::arrow::array::{ArrayRef, Date32Builder, Float64Builder, Int32Builder, StringBuilder};
use duckdb::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use duckdb::arrow::record_batch::RecordBatch;

use crate::error::{Result, SnapshotError};
use crate::keys::hex_into;
use crate::normalise::{normalise_kana, Date};
use crate::plan::{DType, Op, TablePlan};
use crate::raw::{parse, Value};

/// Keys of kept parent rows (randomly keyed 128-bit tags, never raw identifiers).
pub type KeySet = HashSet<u128>;

pub fn arrow_schema(plan: &TablePlan) -> SchemaRef {
    let fields: Vec<Field> = plan
        .outputs
        .iter()
        .map(|o| {
            let dt = match o.dtype {
                DType::Text => DataType::Utf8,
                DType::Int => DataType::Int32,
                DType::Double => DataType::Float64,
                DType::Date => DataType::Date32,
            };
            Field::new(&o.name, dt, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

enum Builder {
    Text(StringBuilder),
    Int(Int32Builder),
    Double(Float64Builder),
    Date(Date32Builder),
}

impl Builder {
    fn new(dtype: DType, rows: usize) -> Builder {
        match dtype {
            DType::Text => Builder::Text(StringBuilder::with_capacity(rows, rows * 16)),
            DType::Int => Builder::Int(Int32Builder::with_capacity(rows)),
            DType::Double => Builder::Double(Float64Builder::with_capacity(rows)),
            DType::Date => Builder::Date(Date32Builder::with_capacity(rows)),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Double(mut b) => Arc::new(b.finish()),
            Builder::Date(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The result of one chunk.
pub struct Chunk {
    pub batch: RecordBatch,
    pub rows_read: u64,
    pub rows_kept: u64,
}

pub struct Transformer<'a> {
    pub plan: &'a TablePlan,
    pub schema: SchemaRef,
    pub diseases: &'a [bool],
    pub parent_keys: Option<&'a KeySet>,
    /// Filled with the keys of kept rows when children filter on this table.
    pub own_keys: KeySet,
}

impl Transformer<'_> {
    pub fn chunk(&mut self, records: &[ByteRecord]) -> Result<Chunk> {
        let plan = self.plan;
        let file = plan.file.as_path();
        let mut builders: Vec<Builder> = plan
            .outputs
            .iter()
            .map(|o| Builder::new(o.dtype, records.len()))
            .collect();
        let mut kept = 0u64;
        let mut values: Vec<Value<'_>> = Vec::with_capacity(plan.columns.len());
        for rec in records {
            let line = rec.position().map_or(0, |p| p.line());
            values.clear();
            if rec.len() != plan.columns.len() {
                return Err(SnapshotError::FieldCount {
                    file: file.to_path_buf(),
                    line,
                    expected: plan.columns.len(),
                    found: rec.len(),
                });
            }
            for (field, (name, kind)) in rec.iter().zip(&plan.columns) {
                let s = std::str::from_utf8(field).map_err(|_| SnapshotError::InvalidUtf8 {
                    file: file.to_path_buf(),
                    line,
                    column: name.clone(),
                    bytes: hex_preview(field),
                })?;
                let v = parse(*kind, s, self.diseases).map_err(|reason| SnapshotError::Value {
                    file: file.to_path_buf(),
                    line,
                    column: name.clone(),
                    value: s.to_string(),
                    reason: reason.to_string(),
                })?;
                values.push(v);
            }
            if let Some(c) = plan.consent {
                if values[c] != Value::Int(1) {
                    continue;
                }
            }
            if let (Some(c), Some(keys)) = (plan.parent, self.parent_keys) {
                if !keys.contains(&set_tag(plan, rec, c)) {
                    continue;
                }
            }
            if let Some(c) = plan.key_for_children {
                self.own_keys.insert(set_tag(plan, rec, c));
            }
            let rid = match plan.research_id {
                Some(cols) => Some(research_tag(plan, file, line, rec, &values, cols)?),
                None => None,
            };
            for (o, b) in plan.outputs.iter().zip(builders.iter_mut()) {
                let v = values[o.src];
                let raw = rec.get(o.src).unwrap_or_default();
                apply(&o.op, v, raw, &values, rid.as_ref(), plan, b).map_err(|reason| {
                    SnapshotError::Value {
                        file: file.to_path_buf(),
                        line,
                        column: plan.columns[o.src].0.clone(),
                        value: String::from_utf8_lossy(raw).into_owned(),
                        reason,
                    }
                })?;
            }
            kept += 1;
        }
        let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| {
            SnapshotError::Other(format!("building a batch of {}: {e}", plan.table))
        })?;
        Ok(Chunk {
            batch,
            rows_read: records.len() as u64,
            rows_kept: kept,
        })
    }
}

fn set_tag(plan: &TablePlan, rec: &ByteRecord, col: usize) -> u128 {
    plan.set_hasher.tag(rec.get(col).unwrap_or_default())
}

/// HMAC over the normalised kana name, sex and ISO date of birth.
fn research_tag(
    plan: &TablePlan,
    file: &Path,
    line: u64,
    rec: &ByteRecord,
    values: &[Value<'_>],
    [name, sex, dob]: [usize; 3],
) -> Result<[u8; 32]> {
    let missing = |col: usize| SnapshotError::Value {
        file: file.to_path_buf(),
        line,
        column: plan.columns[col].0.clone(),
        value: String::new(),
        reason: "needed for the research ID but empty".into(),
    };
    let kana = match values[name] {
        Value::Str(s) => normalise_kana(s),
        _ => return Err(missing(name)),
    };
    if kana.is_empty() {
        return Err(missing(name));
    }
    // The validated field as written (`1` or `2`).
    let sex: &[u8] = match values[sex] {
        Value::Null => return Err(missing(sex)),
        Value::Int(1) => b"1",
        Value::Int(2) => b"2",
        _ => rec.get(sex).unwrap_or_default(),
    };
    let Value::Date(d) = values[dob] else {
        return Err(missing(dob));
    };
    Ok(plan
        .rid_key
        .tag(&[kana.as_bytes(), sex, d.iso().as_bytes()]))
}

/// `YYYY-MM` without allocating (years are validated to four digits).
fn append_ym(b: &mut StringBuilder, v: Value<'_>) {
    let (y, m) = match v {
        Value::Date(d) => (d.year, d.month),
        Value::YearMonth(y, m) => (y, m),
        _ => return b.append_null(),
    };
    let (y, m) = (y.clamp(0, 9999) as u32, m.min(99));
    let digit = |n: u32| b'0' + (n % 10) as u8;
    let buf = [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
    ];
    b.append_value(std::str::from_utf8(&buf).unwrap_or_default());
}

const AGE_BANDS: [&str; 21] = [
    "00-04", "05-09", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49",
    "50-54", "55-59", "60-64", "65-69", "70-74", "75-79", "80-84", "85-89", "90-94", "95-99",
    "100+",
];

fn age_band(age: i32) -> &'static str {
    AGE_BANDS[(age.max(0) / 5).min(20) as usize]
}

fn apply(
    op: &Op,
    v: Value<'_>,
    raw: &[u8],
    values: &[Value<'_>],
    rid: Option<&[u8; 32]>,
    plan: &TablePlan,
    b: &mut Builder,
) -> std::result::Result<(), String> {
    match (op, b) {
        (Op::ResearchId, Builder::Text(b)) => match rid {
            Some(t) => b.append_value(hex_into(t, &mut [0u8; 32])),
            None => b.append_null(),
        },
        (Op::Pseudonym(key), Builder::Text(b)) => {
            if v == Value::Null {
                b.append_null();
            } else {
                b.append_value(key.pseudonym_into(&[raw], &mut [0u8; 32]));
            }
        }
        (Op::Keep, Builder::Text(b)) => match v {
            Value::Str(s) => b.append_value(s),
            Value::YearMonth(..) => append_ym(b, v),
            _ => b.append_null(),
        },
        (Op::Keep, Builder::Int(b)) => match v {
            Value::Int(n) => b.append_value(n as i32),
            _ => b.append_null(),
        },
        (Op::Keep, Builder::Double(b)) => match v {
            Value::Float(x) => b.append_value(x),
            _ => b.append_null(),
        },
        (Op::Keep, Builder::Date(b)) => match v {
            Value::Date(d) => b.append_value(d.epoch_days()),
            _ => b.append_null(),
        },
        (Op::YearMonth, Builder::Text(b)) => append_ym(b, v),
        (Op::Year, Builder::Int(b)) => match v {
            Value::Date(d) => b.append_value(d.year),
            Value::YearMonth(y, _) => b.append_value(y),
            _ => b.append_null(),
        },
        (Op::AgeBand5y { reference }, Builder::Text(b)) => match (v, values[*reference]) {
            (Value::Date(dob), Value::Date(at)) => {
                let age = dob.age_on(at);
                if age < 0 {
                    return Err(format!(
                        "date of birth after the reference date {}",
                        at.iso()
                    ));
                }
                b.append_value(age_band(age));
            }
            _ => b.append_null(),
        },
        (Op::Prefix(len), Builder::Text(b)) => match v {
            Value::Str(s) => b.append_value(s.chars().take(*len).collect::<String>()),
            _ => b.append_null(),
        },
        (Op::ShiftDays, Builder::Date(b)) => match (v, rid) {
            (Value::Date(d), Some(t)) => {
                let shift = plan.shift_key.offset(&[t], plan.shift_max);
                let days = i64::from(d.epoch_days()) + shift;
                b.append_value(Date::from_epoch_days(days).epoch_days());
            }
            _ => b.append_null(),
        },
        _ => return Err("internal: output type does not match its operation".into()),
    }
    Ok(())
}

fn hex_preview(field: &[u8]) -> String {
    let mut s = crate::keys::hex(&field[..field.len().min(24)]);
    if field.len() > 24 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::age_band;

    #[test]
    fn age_bands_pool_100_and_over() {
        assert_eq!(age_band(0), "00-04");
        assert_eq!(age_band(4), "00-04");
        assert_eq!(age_band(5), "05-09");
        assert_eq!(age_band(63), "60-64");
        assert_eq!(age_band(99), "95-99");
        assert_eq!(age_band(100), "100+");
        assert_eq!(age_band(112), "100+");
    }
}
