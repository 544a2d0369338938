//! Writers for query results in CSV and JSON, so callers need not depend on arrow-csv/json.

use std::io::Write;

/// CSV with a header row.
pub fn csv_writer<W: Write>(w: W) -> arrow_csv::Writer<W> {
    arrow_csv::WriterBuilder::new().with_header(true).build(w)
}

/// One JSON array of row objects.
pub fn json_writer<W: Write>(w: W) -> arrow_json::ArrayWriter<W> {
    arrow_json::ArrayWriter::new(w)
}
