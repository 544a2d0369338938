//! Staged outputs: the Arrow IPC file a researcher staged (`<state>/outputs/<id>.arrow`), checked
//! against the SHA-256 recorded at staging and turned into a [`kura_sdc::StagedTable`].
//!
//! The file is read once into memory; the hash and the table come from the same bytes, so the
//! file cannot change between the check and the use. Columns follow the `kind:name` header
//! convention of docs/sdc.md (researchers alias their SQL columns, e.g. `count(*) AS
//! "count:patients"`). The table is rendered as CSV (every field quoted) and parsed by
//! `kura_sdc::csv_input::parse_csv`, so the rules for kinds, numbers and empty cells are
//! kura-sdc's own. Line numbers in messages count the header as line 1 (the first row is line
//! 2). On top of the rule pack's `row_level` rule, the airlock refuses row-level identifiers
//! whatever the pack: `research_id` and `*_key` columns, and values containing a Kura pseudonym
//! (a run of 32 or more hex digits).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type};
use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_ipc::reader::FileReader;
use arrow_schema::DataType;
use kura_sdc::{csv_input, SdcError, StagedTable};
use sha2::{Digest, Sha256};

use crate::error::AirlockError;

/// Limits on a staged output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedLimits {
    /// More rows than this is row-level data, not a table.
    pub max_rows: usize,
    /// Largest staged file read into memory.
    pub max_bytes: u64,
}

impl Default for StagedLimits {
    fn default() -> Self {
        StagedLimits {
            max_rows: 10_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A dimension value longer than this is not a category (e.g. an aggregated list of values).
pub const MAX_DIMENSION_CHARS: usize = 256;

/// A run of this many hex digits is the shape of a Kura pseudonym (research_id, *_key).
const PSEUDONYM_HEX_DIGITS: usize = 32;

/// Where the server staged output `id`.
pub fn staged_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("outputs").join(format!("{id}.arrow"))
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads the staged file, checks its hash against `recorded_sha256` (a mismatch is
/// [`AirlockError::Tampered`]) and converts it. `name` names the output in messages.
pub fn load_staged(
    path: &Path,
    recorded_sha256: &str,
    name: &str,
    limits: &StagedLimits,
) -> Result<StagedTable, AirlockError> {
    let size = std::fs::metadata(path)
        .map_err(AirlockError::io(path))?
        .len();
    if size > limits.max_bytes {
        return Err(AirlockError::Refused {
            output: name.to_string(),
            reasons: vec![format!(
                "the staged file is {size} bytes, more than the limit of {}: aggregate further",
                limits.max_bytes
            )],
        });
    }
    let bytes = std::fs::read(path).map_err(AirlockError::io(path))?;
    let found = sha256_hex(&bytes);
    if !found.eq_ignore_ascii_case(recorded_sha256) {
        return Err(AirlockError::Tampered {
            path: path.to_path_buf(),
            expected: recorded_sha256.to_string(),
            found,
        });
    }
    table_from_arrow(&bytes, name, limits)
}

/// Converts an Arrow IPC file (already hash-checked) into a staged table, refusing what cannot
/// be an aggregate output.
pub fn table_from_arrow(
    bytes: &[u8],
    name: &str,
    limits: &StagedLimits,
) -> Result<StagedTable, AirlockError> {
    let refuse = |reasons: Vec<String>| AirlockError::Refused {
        output: name.to_string(),
        reasons,
    };
    let reader = FileReader::try_new(Cursor::new(bytes), None).map_err(|e| {
        refuse(vec![format!(
            "the staged file is not an Arrow IPC file: {e}"
        )])
    })?;
    let schema = reader.schema();
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| refuse(vec![format!("the staged file is damaged: {e}")]))?;
        rows += batch.num_rows();
        if rows > limits.max_rows {
            return Err(refuse(vec![format!(
                "more than {} rows: an output this long is row-level data, not a table; \
                 aggregate further (GROUP BY fewer or coarser categories)",
                limits.max_rows
            )]));
        }
        batches.push(batch);
    }
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let kind_of = |n: &str| n.split_once(':').map(|(k, _)| k.trim().to_lowercase());
    let mut reasons = Vec::new();
    if !names
        .iter()
        .any(|n| matches!(kind_of(n).as_deref(), Some("count" | "stat")))
    {
        reasons.push(
            "the output is not a table of counts or statistics: no column is named `count:...` \
             or `stat:...`. Alias the columns in the SQL, e.g. SELECT pref AS \"dim:prefecture\", \
             count(*) AS \"count:patients\", count(DISTINCT institution_key) AS \
             \"institutions:n_inst\" ... GROUP BY ALL (docs/sdc.md)"
                .to_string(),
        );
    }
    for n in &names {
        let bare = n
            .split_once(':')
            .map_or(n.as_str(), |(_, b)| b)
            .trim()
            .to_lowercase();
        if bare == "research_id" || bare.ends_with("_key") || bare == "key" {
            reasons.push(format!(
                "column `{n}` holds row-level identifiers (pseudonyms): outputs must be \
                 aggregates; count them (count(DISTINCT ...)) instead of listing them"
            ));
        }
    }
    let csv = render_csv(name, &names, &batches, &mut reasons)?;
    if !reasons.is_empty() {
        return Err(refuse(reasons));
    }
    let table = csv_input::parse_csv(&csv, name).map_err(|e| refusal(name, e))?;
    Ok(table)
}

/// Maps a kura-sdc error about the table to a refusal the author can act on; other errors
/// (rule packs, ledger) stay internal.
pub(crate) fn refusal(name: &str, e: SdcError) -> AirlockError {
    match e {
        SdcError::Cell { .. } | SdcError::Line { .. } | SdcError::Table { .. } => {
            AirlockError::Refused {
                output: name.to_string(),
                reasons: vec![e.to_string()],
            }
        }
        other => AirlockError::Sdc(other),
    }
}

/// Renders the batches as CSV with every field quoted (a value starting with `#` is then not a
/// comment line). Values that are pseudonym-shaped or too long for a category add reasons.
fn render_csv(
    name: &str,
    names: &[String],
    batches: &[RecordBatch],
    reasons: &mut Vec<String>,
) -> Result<String, AirlockError> {
    let mut out = String::new();
    push_record(&mut out, names.iter().map(String::as_str));
    let options = FormatOptions::new().with_display_error(false);
    let mut flagged = vec![false; names.len()];
    for batch in batches {
        let columns: Vec<Column<'_>> = batch
            .columns()
            .iter()
            .map(|a| Column::new(a.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| AirlockError::Refused {
                output: name.to_string(),
                reasons: vec![format!("a column cannot be read as text: {e}")],
            })?;
        for row in 0..batch.num_rows() {
            let mut fields = Vec::with_capacity(columns.len());
            for (c, col) in columns.iter().enumerate() {
                let value = col.value(row).map_err(|e| AirlockError::Refused {
                    output: name.to_string(),
                    reasons: vec![format!("column `{}` row {}: {e}", names[c], row + 1)],
                })?;
                if !flagged[c] && col.textual {
                    let is_dim = names[c].to_lowercase().starts_with("dim:");
                    if has_hex_run(&value) {
                        flagged[c] = true;
                        reasons.push(format!(
                            "column `{}` has values containing a pseudonym (a run of \
                             {PSEUDONYM_HEX_DIGITS}+ hex digits, like research_id): outputs \
                             must not list identifiers",
                            names[c]
                        ));
                    } else if is_dim && value.chars().count() > MAX_DIMENSION_CHARS {
                        flagged[c] = true;
                        reasons.push(format!(
                            "column `{}` has a value longer than {MAX_DIMENSION_CHARS} \
                             characters: a dimension holds category labels, not lists",
                            names[c]
                        ));
                    }
                }
                fields.push(value);
            }
            push_record(&mut out, fields.iter().map(String::as_str));
        }
    }
    Ok(out)
}

/// One column, formatted: floats by Rust's shortest round-trip form with whole numbers written
/// without a decimal point (so a whole-valued float count parses as a count), everything else
/// by Arrow's display.
struct Column<'a> {
    array: &'a dyn Array,
    formatter: ArrayFormatter<'a>,
    textual: bool,
}

impl<'a> Column<'a> {
    fn new(
        array: &'a dyn Array,
        options: &FormatOptions<'a>,
    ) -> Result<Column<'a>, arrow_schema::ArrowError> {
        let dt = array.data_type();
        let textual = !(dt.is_numeric() || matches!(dt, DataType::Boolean | DataType::Null));
        Ok(Column {
            array,
            formatter: ArrayFormatter::try_new(array, options)?,
            textual,
        })
    }

    fn value(&self, row: usize) -> Result<String, arrow_schema::ArrowError> {
        if self.array.is_null(row) {
            return Ok(String::new());
        }
        let float = match self.array.data_type() {
            DataType::Float64 => Some(self.array.as_primitive::<Float64Type>().value(row)),
            DataType::Float32 => Some(f64::from(
                self.array.as_primitive::<Float32Type>().value(row),
            )),
            DataType::Float16 => Some(f64::from(
                self.array.as_primitive::<Float16Type>().value(row),
            )),
            _ => None,
        };
        match float {
            Some(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 => {
                Ok(format!("{}", v as i64))
            }
            Some(v) => Ok(format!("{v}")),
            None => self.formatter.value(row).try_to_string(),
        }
    }
}

fn push_record<'s>(out: &mut String, fields: impl Iterator<Item = &'s str>) {
    let mut first = true;
    for f in fields {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    }
    out.push('\n');
}

fn has_hex_run(s: &str) -> bool {
    let mut run = 0;
    for c in s.chars() {
        if c.is_ascii_hexdigit() {
            run += 1;
            if run >= PSEUDONYM_HEX_DIGITS {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_runs_are_found_inside_values() {
        assert!(has_hex_run("a;0123456789abcdef0123456789ABCDEF;b"));
        assert!(!has_hex_run("0123456789abcdef0123456789abcde"));
        assert!(!has_hex_run("Tokyo"));
    }

    #[test]
    fn fields_are_quoted_so_hash_values_are_not_comments() {
        let mut s = String::new();
        push_record(&mut s, ["#1", "a\"b"].into_iter());
        assert_eq!(s, "\"#1\",\"a\"\"b\"\n");
    }
}
