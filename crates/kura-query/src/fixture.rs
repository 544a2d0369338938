//! A synthetic snapshot with the tables and key columns of `kura-snapshot` (docs/snapshot.md),
//! built with
//! DuckDB's own generators: for the engine's tests and `kura bench query` until real snapshots
//! of the wanted size exist. Deterministic: same `patients`, same content.

use std::path::Path;

/// Creates `path` (which must not exist) with `patients` 難病 patients (three fiscal years of
/// forms each), treatments for the severe ones, and 小慢 forms for every tenth patient.
pub fn create(path: &Path, patients: u64) -> Result<(), duckdb::Error> {
    let conn = duckdb::Connection::open(path)?;
    conn.execute_batch(&format!(
        "
        CREATE TABLE prefectures AS
          SELECT lpad(i::VARCHAR, 2, '0') AS code, 'pref_' || i AS name_ja,
                 (100000 + i * 1000)::INTEGER AS population_2020
          FROM range(1, 48) t(i);
        CREATE TABLE designated_diseases AS
          SELECT i::INTEGER AS no, 'disease_' || i AS name_ja FROM range(1, 342) t(i);
        CREATE TABLE institutions AS
          SELECT md5('inst' || i) AS institution_key, lpad((i % 47 + 1)::VARCHAR, 2, '0') AS pref_code,
                 lpad((i % 900)::VARCHAR, 3, '0') AS municipality_code, 'hospital' AS kind
          FROM range(0, 2000) t(i);
        CREATE TABLE nanbyo_forms AS
          SELECT md5('p' || p) AS research_id,
                 md5('f' || p || '-' || y) AS form_key,
                 (hash(p) % 341 + 1)::INTEGER AS disease_no,
                 y::INTEGER AS form_year,
                 (hash(p * 11) % 2 + 1)::INTEGER AS sex,
                 (1940 + hash(p * 3) % 80)::VARCHAR || '-04' AS birth_ym,
                 lpad((hash(p * 7) % 47 + 1)::VARCHAR, 2, '0') AS pref_code,
                 ['mild', 'moderate', 'severe'][(hash(p * 13 + y) % 3 + 1)::BIGINT] AS severity,
                 md5('inst' || (hash(p * 5) % 2000)) AS institution_key
          FROM range(0, {patients}) a(p), range(2021, 2024) b(y)
          ORDER BY research_id, form_year;
        CREATE TABLE nanbyo_treatments AS
          SELECT form_key, 'drug' AS kind, 'drug_' || (hash(form_key) % 50) AS name,
                 form_year || '-05' AS start_ym
          FROM nanbyo_forms WHERE severity <> 'mild';
        CREATE TABLE shoman_forms AS
          SELECT research_id, md5('s' || research_id) AS form_key, 2021 AS form_year,
                 (hash(research_id) % 16 + 1)::INTEGER AS disease_group,
                 lpad((hash(research_id) % 700)::VARCHAR, 3, '0') AS disease_code,
                 any_value(pref_code) AS pref_code
          FROM nanbyo_forms
          WHERE hash(research_id) % 10 = 0
          GROUP BY research_id;
        CHECKPOINT;
        "
    ))
}
