//! The code lists every snapshot carries, from the reference data compiled into
//! `kura-registry`: `designated_diseases` (no, name_ja) and `prefectures` (code, name_ja,
//! population_2020). The disease list is also what `disease_no` is validated against.

use crate::error::{Result, SnapshotError};
use crate::manifest::{ColumnInfo, TableInfo};
use crate::sql;

/// `mask[n]` is true when `n` is a designated disease number.
pub fn disease_mask() -> Result<Vec<bool>> {
    let diseases = kura_registry::designated_diseases();
    if diseases.is_empty() {
        return Err(SnapshotError::Other(
            "the embedded list of designated diseases is empty".into(),
        ));
    }
    let max = diseases
        .iter()
        .map(|d| usize::from(d.no))
        .max()
        .unwrap_or(0);
    let mut mask = vec![false; max + 1];
    for d in diseases {
        mask[usize::from(d.no)] = true;
    }
    Ok(mask)
}

struct Col(&'static str, &'static str, &'static str, &'static str);

const DISEASES: (&str, &str, &str, &[Col]) = (
    "designated_diseases",
    "Designated intractable diseases (official list)",
    "指定難病の一覧",
    &[
        Col(
            "no",
            "INTEGER",
            "Official designated disease number",
            "告示番号",
        ),
        Col("name_ja", "VARCHAR", "Disease name in Japanese", "疾病名"),
    ],
);

const PREFECTURES: (&str, &str, &str, &[Col]) = (
    "prefectures",
    "Prefectures with 2020 census population",
    "都道府県と2020年国勢調査人口",
    &[
        Col(
            "code",
            "VARCHAR",
            "JIS prefecture code 01..47",
            "都道府県コード",
        ),
        Col("name_ja", "VARCHAR", "Prefecture name", "都道府県名"),
        Col(
            "population_2020",
            "BIGINT",
            "Population, 2020 census",
            "2020年国勢調査人口",
        ),
    ],
);

pub fn create(conn: &duckdb::Connection) -> Result<()> {
    for (name, _, _, cols) in [DISEASES, PREFECTURES] {
        let defs: Vec<String> = cols.iter().map(|c| format!("{} {}", c.0, c.1)).collect();
        conn.execute_batch(&format!("CREATE TABLE {name} ({})", defs.join(", ")))
            .map_err(SnapshotError::db(format!("creating {name}")))?;
    }
    let ctx = "filling the code lists";
    let mut app = conn
        .appender("designated_diseases")
        .map_err(SnapshotError::db(ctx))?;
    for d in kura_registry::designated_diseases() {
        app.append_row(duckdb::params![i32::from(d.no), d.name_ja])
            .map_err(SnapshotError::db(ctx))?;
    }
    app.flush().map_err(SnapshotError::db(ctx))?;
    drop(app);
    let mut app = conn
        .appender("prefectures")
        .map_err(SnapshotError::db(ctx))?;
    for p in kura_registry::prefectures() {
        app.append_row(duckdb::params![p.code, p.name_ja, p.population_2020 as i64])
            .map_err(SnapshotError::db(ctx))?;
    }
    app.flush().map_err(SnapshotError::db(ctx))?;
    Ok(())
}

pub fn comment(conn: &duckdb::Connection) -> Result<()> {
    for (name, en, ja, cols) in [DISEASES, PREFECTURES] {
        sql::comment(conn, name, None, en, ja)?;
        for c in cols {
            sql::comment(conn, name, Some(c.0), c.2, c.3)?;
        }
    }
    Ok(())
}

/// Manifest entries of the code lists (row counts filled in by the caller).
pub fn table_infos() -> Vec<TableInfo> {
    [DISEASES, PREFECTURES]
        .iter()
        .map(|(name, en, ja, cols)| TableInfo {
            name: name.to_string(),
            en: en.to_string(),
            ja: ja.to_string(),
            rows: 0,
            columns: cols
                .iter()
                .map(|c| ColumnInfo {
                    name: c.0.into(),
                    sql_type: c.1.into(),
                    en: c.2.into(),
                    ja: c.3.into(),
                })
                .collect(),
        })
        .collect()
}
