//! Loading one raw table into the snapshot: a three-stage pipeline (read CSV and hash the file ->
//! validate and transform into Arrow batches -> append into DuckDB), one thread per stage, so the
//! two cores of the steward's machine both work. Bounded channels keep memory flat; if any stage
//! fails, dropping its channel ends the others.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

use csv::ByteRecord;
use sha2::{Digest, Sha256};

use crate::error::{Result, SnapshotError};
use crate::keys::hex;
use crate::plan::TablePlan;
use crate::transform::{arrow_schema, Chunk, KeySet, Transformer};
use crate::Progress;

const CHUNK_ROWS: usize = 16 * 1024;
const PROGRESS_EVERY: u64 = 500_000;

/// Hashes every byte the CSV parser reads, so the source hash costs no second pass.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A raw file opened, with its header read.
pub struct RawFile {
    reader: csv::Reader<HashingReader<File>>,
    pub header: Vec<String>,
}

pub fn open_raw(path: &Path) -> Result<RawFile> {
    let file = File::open(path).map_err(|e| SnapshotError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(HashingReader {
            inner: file,
            hasher: Sha256::new(),
            bytes: 0,
        });
    let raw = reader
        .byte_headers()
        .map_err(|e| csv_error(path, &e))?
        .clone();
    let mut header = Vec::with_capacity(raw.len());
    for field in raw.iter() {
        let name = std::str::from_utf8(field).map_err(|_| SnapshotError::InvalidUtf8 {
            file: path.to_path_buf(),
            line: 1,
            column: format!("(header field {})", header.len() + 1),
            bytes: hex(field),
        })?;
        // Spreadsheet exports put a byte-order mark before the first name.
        header.push(name.trim_start_matches('\u{feff}').to_string());
    }
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(SnapshotError::Csv {
            file: path.to_path_buf(),
            line: 1,
            message: "no header row".into(),
        });
    }
    Ok(RawFile { reader, header })
}

fn csv_error(path: &Path, e: &csv::Error) -> SnapshotError {
    SnapshotError::Csv {
        file: path.to_path_buf(),
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    }
}

/// What loading one table produced.
pub struct Loaded {
    pub rows_read: u64,
    pub rows_kept: u64,
    pub source_sha256: String,
    pub source_bytes: u64,
    pub keys: KeySet,
}

pub fn load_table(
    conn: &duckdb::Connection,
    plan: &TablePlan,
    raw: RawFile,
    diseases: &[bool],
    parent_keys: Option<&KeySet>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Loaded> {
    let started = Instant::now();
    let schema = arrow_schema(plan);
    let path = plan.file.clone();
    std::thread::scope(|s| {
        let (rec_tx, rec_rx) = sync_channel::<Result<Vec<ByteRecord>>>(4);
        let (batch_tx, batch_rx) = sync_channel::<Result<Chunk>>(4);
        // Processed record buffers go back to the reader, saving an allocation per field row.
        let (pool_tx, pool_rx) = sync_channel::<Vec<ByteRecord>>(8);
        let reader = s.spawn(move || read_stage(raw, &path, rec_tx, pool_rx));
        let transformer = s.spawn(move || {
            let mut t = Transformer {
                plan,
                schema,
                diseases,
                parent_keys,
                own_keys: KeySet::new(),
            };
            transform_stage(&mut t, rec_rx, batch_tx, pool_tx);
            t.own_keys
        });
        let appended = append_stage(conn, plan, batch_rx, started, progress);
        let read = reader
            .join()
            .map_err(|_| SnapshotError::Other("the CSV reader thread panicked".into()))?;
        let keys = transformer
            .join()
            .map_err(|_| SnapshotError::Other("the transform thread panicked".into()))?;
        let (rows_read, rows_kept) = appended?;
        let (source_sha256, source_bytes) = read?;
        Ok(Loaded {
            rows_read,
            rows_kept,
            source_sha256,
            source_bytes,
            keys,
        })
    })
}

fn read_stage(
    mut raw: RawFile,
    path: &Path,
    tx: SyncSender<Result<Vec<ByteRecord>>>,
    pool: Receiver<Vec<ByteRecord>>,
) -> Result<(String, u64)> {
    loop {
        let mut chunk = pool.try_recv().unwrap_or_default();
        let mut n = 0;
        while n < CHUNK_ROWS {
            if n == chunk.len() {
                chunk.push(ByteRecord::new());
            }
            match raw.reader.read_byte_record(&mut chunk[n]) {
                Ok(true) => n += 1,
                Ok(false) => break,
                Err(e) => {
                    let err = csv_error(path, &e);
                    let _ = tx.send(Err(csv_error(path, &e)));
                    return Err(err);
                }
            }
        }
        chunk.truncate(n);
        let last = n < CHUNK_ROWS;
        if !chunk.is_empty() && tx.send(Ok(chunk)).is_err() {
            // The next stage failed and reports why.
            return Ok((String::new(), 0));
        }
        if last {
            break;
        }
    }
    let inner = raw.reader.into_inner();
    Ok((hex(&inner.hasher.finalize()), inner.bytes))
}

fn transform_stage(
    t: &mut Transformer<'_>,
    rx: Receiver<Result<Vec<ByteRecord>>>,
    tx: SyncSender<Result<Chunk>>,
    pool: SyncSender<Vec<ByteRecord>>,
) {
    let mut busy = std::time::Duration::ZERO;
    for chunk in rx {
        let t0 = Instant::now();
        let out = chunk.and_then(|records| {
            let out = t.chunk(&records);
            let _ = pool.try_send(records);
            out
        });
        busy += t0.elapsed();
        let failed = out.is_err();
        if tx.send(out).is_err() || failed {
            return;
        }
    }
    tracing::debug!(table = %t.plan.table, busy_ms = busy.as_millis() as u64, "transform");
}

fn append_stage(
    conn: &duckdb::Connection,
    plan: &TablePlan,
    rx: Receiver<Result<Chunk>>,
    started: Instant,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(u64, u64)> {
    let mut app = conn
        .appender(&plan.table)
        .map_err(SnapshotError::db(format!("appender for {}", plan.table)))?;
    let (mut read, mut kept, mut next_report) = (0u64, 0u64, PROGRESS_EVERY);
    let mut busy = std::time::Duration::ZERO;
    for chunk in rx {
        let chunk = chunk?;
        let t0 = Instant::now();
        read += chunk.rows_read;
        kept += chunk.rows_kept;
        if chunk.batch.num_rows() > 0 {
            app.append_record_batch(chunk.batch)
                .map_err(SnapshotError::db(format!("appending to {}", plan.table)))?;
        }
        busy += t0.elapsed();
        if read >= next_report {
            next_report += PROGRESS_EVERY;
            progress(Progress::Rows {
                table: &plan.table,
                rows_read: read,
                rows_kept: kept,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    let t0 = Instant::now();
    app.flush()
        .map_err(SnapshotError::db(format!("flushing {}", plan.table)))?;
    tracing::debug!(table = %plan.table, append_ms = busy.as_millis() as u64, flush_ms = t0.elapsed().as_millis() as u64, "append");
    Ok((read, kept))
}
