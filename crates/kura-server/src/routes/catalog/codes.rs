//! The catalog's code lists: the designated diseases (official number and Japanese name from
//! `kura-registry`'s embedded list, with Kura's English translation from
//! `data/designated_diseases_en.tsv`) and the prefectures (JIS code, Japanese name and 2020
//! population from `kura-registry`, English name and the conventional eight regions from
//! `kura-explorer`, whose closed lists the explorer validates against).

use std::sync::OnceLock;

use kura_explorer::catalog::PREFECTURES;
use kura_explorer::Region;
use serde_json::{json, Value};

use crate::error::ApiError;

const DISEASES_EN: &str = include_str!("../../../data/designated_diseases_en.tsv");

/// English disease names indexed by number (index 0 unused); `None` where the file has none.
fn diseases_en() -> &'static [Option<&'static str>] {
    static NAMES: OnceLock<Vec<Option<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = Vec::new();
        for line in DISEASES_EN.lines().skip(1) {
            let Some((no, name)) = line.split_once('\t') else {
                continue;
            };
            let (Ok(no), name) = (no.trim().parse::<usize>(), name.trim()) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            if names.len() <= no {
                names.resize(no + 1, None);
            }
            names[no] = Some(name);
        }
        names
    })
}

/// The answer of `GET /api/v1/catalog/codes`. The embedded lists come from `kura-registry`; an
/// empty or inconsistent one is a build defect, reported as an internal error.
pub fn code_lists() -> Result<Value, ApiError> {
    let registry_diseases = kura_registry::designated_diseases();
    let registry_prefectures = kura_registry::prefectures();
    if registry_diseases.is_empty() || registry_prefectures.len() != PREFECTURES.len() {
        return Err(ApiError::Internal(
            "the embedded code lists of kura-registry are empty or incomplete".into(),
        ));
    }
    let en = diseases_en();
    let diseases: Vec<Value> = registry_diseases
        .iter()
        .map(|d| {
            let name_en = en.get(usize::from(d.no)).copied().flatten();
            json!({"no": d.no, "name_ja": d.name_ja, "name_en": name_en})
        })
        .collect();
    let mut prefectures = Vec::with_capacity(PREFECTURES.len());
    for (p, ours) in registry_prefectures.iter().zip(PREFECTURES.iter()) {
        let code = ours.code;
        if p.code != code {
            return Err(ApiError::Internal(format!(
                "prefecture code {} of kura-registry does not match the catalog's {code}",
                p.code
            )));
        }
        prefectures.push(json!({
            "code": p.code, "name_ja": p.name_ja, "name_en": ours.en, "region": ours.region.key(),
            "population_2020": p.population_2020,
        }));
    }
    let regions: Vec<Value> = Region::ALL
        .iter()
        .map(|r| json!({"id": r.key(), "ja": r.ja(), "en": r.en()}))
        .collect();
    Ok(json!({"diseases": diseases, "prefectures": prefectures, "regions": regions}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_designated_disease_has_an_english_name_and_no_number_is_invented() {
        let en = diseases_en();
        let registry = kura_registry::designated_diseases();
        assert_eq!(registry.len(), 341);
        assert_eq!(
            en.len(),
            registry.len() + 1,
            "numbers beyond the official list"
        );
        for d in registry {
            assert!(
                en[usize::from(d.no)].is_some(),
                "disease {} has no name",
                d.no
            );
        }
        assert_eq!(en[6], Some("Parkinson's disease"));
        assert_eq!(en[97], Some("Ulcerative colitis"));
    }

    #[test]
    fn the_lists_line_up_with_the_registry() {
        let v = code_lists().unwrap();
        assert_eq!(v["diseases"].as_array().unwrap().len(), 341);
        assert_eq!(v["diseases"][5]["no"], 6);
        assert_eq!(v["diseases"][5]["name_ja"], "パーキンソン病");
        let prefs = v["prefectures"].as_array().unwrap();
        assert_eq!(prefs.len(), 47);
        assert_eq!(prefs[12]["name_ja"], "東京都");
        assert_eq!(prefs[12]["name_en"], "Tokyo");
        assert_eq!(prefs[12]["region"], "kanto");
        let regions: Vec<&str> = Region::ALL.iter().map(|r| r.key()).collect();
        for p in prefs {
            assert!(regions.contains(&p["region"].as_str().unwrap()), "{p}");
        }
        for r in Region::ALL {
            assert!(
                prefs.iter().any(|p| p["region"] == r.key()),
                "region {} is empty",
                r.key()
            );
        }
    }
}
