//! The worker's DuckDB database, opened through DuckDB's C API so the worker also holds a raw
//! connection for counting statements.
//!
//! Why: the `duckdb` crate's `Connection::prepare` *executes* every statement of a
//! multi-statement string but the last, and `json_serialize_sql` stops at the first non-SELECT
//! statement without saying how many there were. `duckdb_extract_statements` splits the SQL with
//! DuckDB's own parser and runs nothing, so the worker knows the exact statement count before
//! anything is prepared. Every call here passes pointers DuckDB created and that stay valid for
//! the duration of the call, or `CString`s that outlive it.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::ptr;

use duckdb::ffi;

/// An in-memory DuckDB database plus a second, raw connection used only to split SQL.
/// Declare it after the `duckdb::Connection` in a struct so that connection drops first.
pub struct Database {
    raw: ffi::duckdb_database,
    parser: ffi::duckdb_connection,
}

fn cstring(what: &str, s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL character"))
}

/// How DuckDB's parser split a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// The number of statements (0 for only whitespace or comments).
    Statements(u64),
    /// The parser's message.
    Error(String),
}

impl Database {
    /// Opens `:memory:` with `settings` applied at open (as DuckDB's `duckdb_set_config` takes
    /// them) and returns it with a `duckdb::Connection` to it.
    pub fn open_in_memory(
        settings: &[(&str, String)],
    ) -> Result<(Database, duckdb::Connection), String> {
        let mut config: ffi::duckdb_config = ptr::null_mut();
        // SAFETY: `config` is a valid out-pointer; DuckDB allocates the config.
        if unsafe { ffi::duckdb_create_config(&mut config) } != ffi::DuckDBSuccess {
            return Err("DuckDB could not create a configuration".into());
        }
        let mut result = Ok(());
        for (key, value) in settings {
            let (k, v) = match (cstring("setting", key), cstring("setting", value)) {
                (Ok(k), Ok(v)) => (k, v),
                (Err(e), _) | (_, Err(e)) => {
                    result = Err(e);
                    break;
                }
            };
            // SAFETY: `config` is live; `k` and `v` are NUL-terminated and outlive the call.
            if unsafe { ffi::duckdb_set_config(config, k.as_ptr(), v.as_ptr()) }
                != ffi::DuckDBSuccess
            {
                result = Err(format!("DuckDB refused the setting {key} = {value:?}"));
                break;
            }
        }
        let mut raw: ffi::duckdb_database = ptr::null_mut();
        if result.is_ok() {
            let mut err: *mut std::os::raw::c_char = ptr::null_mut();
            // SAFETY: a NUL-terminated path, a live config and valid out-pointers.
            let rc =
                unsafe { ffi::duckdb_open_ext(c":memory:".as_ptr(), &mut raw, config, &mut err) };
            if rc != ffi::DuckDBSuccess {
                let message = if err.is_null() {
                    "unknown error".to_string()
                } else {
                    // SAFETY: DuckDB returned a NUL-terminated string it allocated; we copy it
                    // and free it with duckdb_free as its API says.
                    let m = unsafe { CStr::from_ptr(err) }
                        .to_string_lossy()
                        .into_owned();
                    unsafe { ffi::duckdb_free(err.cast()) };
                    m
                };
                result = Err(format!("opening DuckDB: {message}"));
            }
        }
        // SAFETY: the config was copied by duckdb_open_ext; we own it and destroy it once.
        unsafe { ffi::duckdb_destroy_config(&mut config) };
        result?;

        let mut parser: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: `raw` is an open database; `parser` a valid out-pointer.
        if unsafe { ffi::duckdb_connect(raw, &mut parser) } != ffi::DuckDBSuccess {
            // SAFETY: closing the database we just opened, once.
            unsafe { ffi::duckdb_close(&mut raw) };
            return Err("DuckDB could not open a connection".into());
        }
        let db = Database { raw, parser };
        // SAFETY: `raw` stays open until `db` drops, and `db` is declared after the returned
        // connection by every holder (see the type's doc), so it outlives the connection; the
        // crate does not close a database it did not open (close_on_drop = false).
        let conn = unsafe { duckdb::Connection::open_from_raw(db.raw) }
            .map_err(|e| format!("connecting to DuckDB: {e}"))?;
        Ok((db, conn))
    }

    /// Splits `sql` into statements with DuckDB's parser without running any of them.
    pub fn split(&self, sql: &str) -> Split {
        let query = match cstring("the query", sql) {
            Ok(q) => q,
            Err(e) => return Split::Error(e),
        };
        let mut extracted: ffi::duckdb_extracted_statements = ptr::null_mut();
        // SAFETY: a live connection, a NUL-terminated query and a valid out-pointer.
        let n =
            unsafe { ffi::duckdb_extract_statements(self.parser, query.as_ptr(), &mut extracted) };
        let mut out = Split::Statements(n);
        if n == 0 && !extracted.is_null() {
            // SAFETY: `extracted` is live; the error string belongs to it and is copied before
            // it is destroyed below.
            let err = unsafe { ffi::duckdb_extract_statements_error(extracted) };
            if !err.is_null() {
                let message = unsafe { CStr::from_ptr(err) }
                    .to_string_lossy()
                    .into_owned();
                if !message.is_empty() {
                    out = Split::Error(message);
                }
            }
        }
        if !extracted.is_null() {
            // SAFETY: destroyed exactly once; nothing refers to it after this.
            unsafe { ffi::duckdb_destroy_extracted(&mut extracted) };
        }
        out
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: both handles were opened by `open_in_memory` and are released exactly once;
        // DuckDB keeps the instance alive for connections that still exist.
        unsafe {
            ffi::duckdb_disconnect(&mut self.parser);
            ffi::duckdb_close(&mut self.raw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_without_running_anything() {
        let (db, conn) = Database::open_in_memory(&[("threads", "1".into())]).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        assert_eq!(db.split("SELECT 1"), Split::Statements(1));
        assert_eq!(db.split("-- only a comment"), Split::Statements(0));
        assert_eq!(db.split(""), Split::Statements(0));
        assert_eq!(
            db.split("SELECT ';' ; INSERT INTO t VALUES (1)"),
            Split::Statements(2)
        );
        assert_eq!(db.split("SELECT $$;$$; DROP TABLE t"), Split::Statements(2));
        assert!(matches!(db.split("SELEC 1"), Split::Error(_)));
        assert!(matches!(db.split("SELECT '\0'"), Split::Error(_)));
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "splitting must not execute the INSERT");
        drop(conn);
        drop(db);
    }
}
