//! Public reference data compiled into the binary: the 341 designated diseases and the 47
//! prefectures with their 2020 census population (see `data/README.md` for sources and licence).

use std::sync::OnceLock;

/// The embedded reference data could not be parsed (a build defect, reported rather than
/// panicking).
#[derive(Debug, Clone, thiserror::Error)]
#[error("embedded reference file {file} is malformed at line {line}: {reason}")]
pub struct ReferenceDataError {
    pub file: &'static str,
    pub line: usize,
    pub reason: String,
}

const DISEASES_CSV: &str = include_str!("../data/designated_diseases.csv");
const PREFECTURES_TSV: &str = include_str!("../data/prefectures_2020.tsv");

/// A designated intractable disease (指定難病).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disease {
    /// Official number, 1..=341.
    pub no: u16,
    pub name_ja: &'static str,
}

/// A prefecture with its JIS code and 2020 census population.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefecture {
    /// Two-digit JIS code, `01`..`47`.
    pub code: &'static str,
    pub name_ja: &'static str,
    pub population_2020: u64,
}

fn bad(file: &'static str, line: usize, reason: String) -> ReferenceDataError {
    ReferenceDataError { file, line, reason }
}

fn parse_diseases() -> Result<Vec<Disease>, ReferenceDataError> {
    const FILE: &str = "designated_diseases.csv";
    let mut out = Vec::with_capacity(341);
    for (i, line) in DISEASES_CSV.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (no, name) = line
            .split_once(',')
            .ok_or_else(|| bad(FILE, i + 1, format!("expected `no,name`, got {line:?}")))?;
        let no: u16 = no.trim().parse().map_err(|_| {
            bad(
                FILE,
                i + 1,
                format!("disease number {no:?} is not an integer"),
            )
        })?;
        if usize::from(no) != out.len() + 1 {
            return Err(bad(
                FILE,
                i + 1,
                format!("expected disease {}, got {no}", out.len() + 1),
            ));
        }
        out.push(Disease {
            no,
            name_ja: name.trim(),
        });
    }
    Ok(out)
}

fn parse_prefectures() -> Result<Vec<Prefecture>, ReferenceDataError> {
    const FILE: &str = "prefectures_2020.tsv";
    let mut out = Vec::with_capacity(47);
    for (i, line) in PREFECTURES_TSV.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split('\t');
        let (Some(code), Some(name), Some(pop)) = (cols.next(), cols.next(), cols.next()) else {
            return Err(bad(
                FILE,
                i + 1,
                format!("expected 3 tab-separated columns in {line:?}"),
            ));
        };
        let population_2020: u64 = pop
            .trim()
            .parse()
            .map_err(|_| bad(FILE, i + 1, format!("population {pop:?} is not an integer")))?;
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                FILE,
                i + 1,
                format!("prefecture code {code:?} is not 2 digits"),
            ));
        }
        out.push(Prefecture {
            code,
            name_ja: name,
            population_2020,
        });
    }
    if out.len() != 47 {
        return Err(bad(
            FILE,
            0,
            format!("expected 47 prefectures, found {}", out.len()),
        ));
    }
    Ok(out)
}

static DISEASES: OnceLock<Result<Vec<Disease>, ReferenceDataError>> = OnceLock::new();
static PREFECTURES: OnceLock<Result<Vec<Prefecture>, ReferenceDataError>> = OnceLock::new();

pub(crate) fn diseases_checked() -> Result<&'static [Disease], ReferenceDataError> {
    match DISEASES.get_or_init(parse_diseases) {
        Ok(v) => Ok(v),
        Err(e) => Err(e.clone()),
    }
}

pub(crate) fn prefectures_checked() -> Result<&'static [Prefecture], ReferenceDataError> {
    match PREFECTURES.get_or_init(parse_prefectures) {
        Ok(v) => Ok(v),
        Err(e) => Err(e.clone()),
    }
}

/// The 341 designated diseases, in official-number order. Empty only if the embedded file were
/// corrupt, which the crate's tests rule out; [`crate::generate`] reports that case as an error.
pub fn designated_diseases() -> &'static [Disease] {
    diseases_checked().unwrap_or(&[])
}

/// The 47 prefectures in JIS code order (see [`designated_diseases`] for the empty case).
pub fn prefectures() -> &'static [Prefecture] {
    prefectures_checked().unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tables_are_complete() {
        let d = diseases_checked().unwrap();
        assert_eq!(d.len(), 341);
        assert_eq!(d[96].no, 97);
        assert_eq!(d[96].name_ja, "潰瘍性大腸炎");
        let p = prefectures_checked().unwrap();
        assert_eq!(
            p.iter().map(|p| p.population_2020).sum::<u64>(),
            126_146_099
        );
        assert_eq!(p[12].code, "13");
        assert_eq!(p[12].name_ja, "東京都");
    }
}
