//! The explorer benchmark's requests: a seeded generator of feasibility forms as pharma teams and
//! researchers fill them in (docs/explorer.md lists the fields). Most requests name 1-3
//! designated diseases, drawn by prevalence (patients per disease in the snapshot, which follow
//! kura-registry's disease model: a few large diseases, then a Zipf tail), often narrowed by
//! severity, an age range, sex, a region or a few prefectures, ventilator use, recent fiscal
//! years or a treatment; a configurable share has no disease filter at all (the national
//! overview, the most expensive request). Each client has its own stream, a function of the seed
//! and the client's index only, so the server and the DuckDB baseline get the same requests.

use kura_explorer::catalog::{AGE_BANDS, MAX_DISEASE, PREFECTURES};
use kura_explorer::Region;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// What a request is, for the per-class statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Names 1-3 diseases.
    Disease,
    /// No disease filter: every patient of the snapshot is scanned.
    National,
}

impl Class {
    pub const ALL: [Class; 2] = [Class::Disease, Class::National];

    pub fn label(self) -> &'static str {
        match self {
            Class::Disease => "with a disease filter",
            Class::National => "without (national overview)",
        }
    }
}

/// One form as the page POSTs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub class: Class,
    /// The JSON body (a `kura_explorer::Feasibility`).
    pub body: Value,
    /// How long the user looks at the previous answer before sending this one.
    pub think_ms: u64,
}

/// How likely each optional filter is (per request, independently).
const P_SEVERITY: f64 = 0.30;
const P_AGE: f64 = 0.35;
const P_SEX: f64 = 0.15;
const P_PLACE: f64 = 0.30;
const P_CATEGORY: f64 = 0.15;
const P_VENTILATOR: f64 = 0.08;
const P_YEARS: f64 = 0.30;
const P_TREATMENT: f64 = 0.15;

/// What requests are drawn from: the diseases with their weights, the snapshot's catalog
/// (treatments and fiscal years, as `GET .../explorer` lists them) and the mix.
#[derive(Debug, Clone)]
pub struct Workload {
    diseases: Vec<u16>,
    /// Cumulative weights of `diseases`, ending at their sum.
    cumulative: Vec<f64>,
    treatments: Vec<String>,
    fiscal_years: Vec<u16>,
    national_share: f64,
    think_ms: u64,
}

impl Workload {
    /// `prevalence`: (disease number, weight), e.g. patients per disease; numbers outside
    /// 1..=341 and weights that are not positive are left out. `national_share`: the share of
    /// requests without a disease filter (0..=1). `think_ms`: mean pause before each request
    /// (each pause is uniform in 0.5..1.5 times it; 0: none).
    pub fn new(
        prevalence: &[(u16, f64)],
        treatments: Vec<String>,
        mut fiscal_years: Vec<u16>,
        national_share: f64,
        think_ms: u64,
    ) -> Result<Workload, String> {
        if !(0.0..=1.0).contains(&national_share) {
            return Err(format!(
                "the share of requests without a disease filter must be in 0..=1, not {national_share}"
            ));
        }
        let mut diseases = Vec::new();
        let mut cumulative = Vec::new();
        let mut sum = 0.0;
        for &(no, w) in prevalence {
            if (1..=MAX_DISEASE).contains(&no) && w.is_finite() && w > 0.0 {
                sum += w;
                diseases.push(no);
                cumulative.push(sum);
            }
        }
        if diseases.is_empty() && national_share < 1.0 {
            return Err("no disease has patients: cannot draw disease filters".into());
        }
        fiscal_years.sort_unstable();
        fiscal_years.dedup();
        Ok(Workload {
            diseases,
            cumulative,
            treatments,
            fiscal_years,
            national_share,
            think_ms,
        })
    }

    /// The request stream of client `client` for `seed`.
    pub fn stream(&self, seed: u64, client: usize) -> Stream<'_> {
        // Two rounds of SplitMix64 over (seed, client) so neighbouring clients and seeds start
        // far apart.
        let mut rng = Rng(seed ^ (client as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        Stream {
            workload: self,
            rng,
        }
    }
}

/// An endless, reproducible sequence of requests.
pub struct Stream<'a> {
    workload: &'a Workload,
    rng: Rng,
}

impl Iterator for Stream<'_> {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        Some(self.request())
    }
}

impl Stream<'_> {
    fn request(&mut self) -> Request {
        let w = self.workload;
        let rng = &mut self.rng;
        let mut body = Map::new();
        let class = if w.diseases.is_empty() || rng.chance(w.national_share) {
            Class::National
        } else {
            Class::Disease
        };
        if class == Class::Disease {
            // Feasibility questions are about one disease, sometimes a group of related ones.
            let k = match rng.unit() {
                x if x < 0.6 => 1,
                x if x < 0.9 => 2,
                _ => 3,
            };
            let mut picked: Vec<u16> = Vec::with_capacity(k);
            // Redraws of an already picked disease are bounded: a table dominated by one
            // disease may give fewer than k.
            for _ in 0..k * 20 {
                if picked.len() == k {
                    break;
                }
                let no = w.diseases[rng.weighted(&w.cumulative)];
                if !picked.contains(&no) {
                    picked.push(no);
                }
            }
            body.insert("diseases".into(), json!(picked));
        }
        if rng.chance(P_SEVERITY) {
            let v: &[&str] = match rng.unit() {
                x if x < 0.6 => &["severe"],
                x if x < 0.9 => &["moderate", "severe"],
                _ => &["mild"],
            };
            body.insert("severity".into(), json!(v));
        }
        if rng.chance(P_AGE) {
            // A trial's age range: contiguous 5-year bands.
            let from = rng.below(AGE_BANDS.len());
            let len = 2 + rng.below(9);
            let to = (from + len).min(AGE_BANDS.len());
            body.insert("age_bands".into(), json!(AGE_BANDS[from..to]));
        }
        if rng.chance(P_SEX) {
            let sex = if rng.chance(0.5) { "female" } else { "male" };
            body.insert("sex".into(), json!([sex]));
        }
        if rng.chance(P_PLACE) {
            if rng.chance(0.6) {
                let n = 1 + rng.below(2);
                let regions: Vec<&str> = (0..n)
                    .map(|_| Region::ALL[rng.below(Region::ALL.len())].key())
                    .collect();
                body.insert("regions".into(), json!(regions));
            } else {
                let n = 1 + rng.below(3);
                let prefs: Vec<&str> = (0..n)
                    .map(|_| PREFECTURES[rng.below(PREFECTURES.len())].code)
                    .collect();
                body.insert("prefectures".into(), json!(prefs));
            }
        }
        if rng.chance(P_CATEGORY) {
            body.insert("diagnosis_category".into(), json!(["definite"]));
        }
        if rng.chance(P_VENTILATOR) {
            body.insert("ventilator".into(), json!(rng.chance(0.8)));
        }
        if !w.fiscal_years.is_empty() && rng.chance(P_YEARS) {
            // The most recent 1-3 years.
            let n = (1 + rng.below(3)).min(w.fiscal_years.len());
            let years = &w.fiscal_years[w.fiscal_years.len() - n..];
            body.insert("fiscal_years".into(), json!(years));
        }
        if !w.treatments.is_empty() && rng.chance(P_TREATMENT) {
            let t = &w.treatments[rng.below(w.treatments.len())];
            body.insert("treatments".into(), json!([t]));
        }
        let think_ms = if w.think_ms == 0 {
            0
        } else {
            (w.think_ms as f64 * (0.5 + rng.unit())).round() as u64
        };
        Request {
            class,
            body: Value::Object(body),
            think_ms,
        }
    }
}

/// SplitMix64: small, fast and good enough to draw requests; no dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An index of `cumulative` (non-empty, increasing) drawn with its weight.
    fn weighted(&mut self, cumulative: &[f64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(0.0);
        let x = self.unit() * total;
        cumulative
            .partition_point(|&c| c <= x)
            .min(cumulative.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::{BTreeMap, BTreeSet};

    use kura_explorer::{Catalog, Feasibility};

    use super::*;

    /// A prevalence like the registry's: a few large diseases, a long tail, some numbers absent.
    fn prevalence() -> Vec<(u16, f64)> {
        (1..=341u16)
            .filter(|no| no % 7 != 0)
            .map(|no| {
                let w = match no {
                    97 => 167_872.0,
                    6 => 127_347.0,
                    49 => 63_792.0,
                    _ => 20_000.0 / f64::from(no),
                };
                (no, w)
            })
            .chain([(0, 1e9), (342, 1e9), (7, 0.0)])
            .collect()
    }

    fn treatments() -> Vec<String> {
        [
            "prednisolone",
            "levodopa/carbidopa",
            "it's quoted",
            "エクリズマブ",
        ]
        .map(String::from)
        .to_vec()
    }

    fn workload(national_share: f64, think_ms: u64) -> Workload {
        Workload::new(
            &prevalence(),
            treatments(),
            vec![2022, 2019, 2020, 2021, 2021],
            national_share,
            think_ms,
        )
        .unwrap()
    }

    #[test]
    fn every_generated_request_validates_against_the_catalog() {
        let catalog = Catalog::new(treatments(), 2019..=2022).unwrap();
        let w = workload(0.2, 0);
        let drawable: BTreeSet<u16> = prevalence()
            .into_iter()
            .filter(|&(no, w)| (1..=341).contains(&no) && w > 0.0)
            .map(|(no, _)| no)
            .collect();
        let mut fields = BTreeSet::new();
        for client in 0..20 {
            for r in w.stream(7, client).take(200) {
                let form: Feasibility = serde_json::from_value(r.body.clone())
                    .unwrap_or_else(|e| panic!("{}: {e}", r.body));
                let filters = form
                    .validate(&catalog)
                    .unwrap_or_else(|e| panic!("{}: {e}", r.body));
                assert_eq!(filters.diseases.is_empty(), r.class == Class::National);
                assert!(filters.diseases.len() <= 3, "{}", r.body);
                let asked = r.body["diseases"].as_array().map_or(0, Vec::len);
                assert_eq!(filters.diseases.len(), asked, "duplicates in {}", r.body);
                for no in &filters.diseases {
                    assert!(drawable.contains(no), "disease {no} has no patients");
                }
                fields.extend(r.body.as_object().unwrap().keys().cloned());
            }
        }
        // Every kind of filter the generator knows occurs.
        let expected: BTreeSet<String> = [
            "diseases",
            "severity",
            "age_bands",
            "sex",
            "regions",
            "prefectures",
            "diagnosis_category",
            "ventilator",
            "fiscal_years",
            "treatments",
        ]
        .map(String::from)
        .into();
        assert_eq!(fields, expected);
    }

    #[test]
    fn streams_are_reproducible_per_seed_and_client() {
        let w = workload(0.1, 2000);
        let a: Vec<Request> = w.stream(1, 3).take(100).collect();
        let b: Vec<Request> = workload(0.1, 2000).stream(1, 3).take(100).collect();
        assert_eq!(a, b);
        let other_client: Vec<Request> = w.stream(1, 4).take(100).collect();
        let other_seed: Vec<Request> = w.stream(2, 3).take(100).collect();
        assert_ne!(a, other_client);
        assert_ne!(a, other_seed);
        for r in &a {
            assert!((1000..=3000).contains(&r.think_ms), "{}", r.think_ms);
        }
        assert!(workload(0.1, 0)
            .stream(1, 3)
            .take(50)
            .all(|r| r.think_ms == 0));
    }

    #[test]
    fn diseases_follow_prevalence_and_the_national_share_holds() {
        let w = workload(0.1, 0);
        let mut national = 0usize;
        let mut first: BTreeMap<u64, usize> = BTreeMap::new();
        let n = 4000;
        for r in w.stream(11, 0).take(n) {
            match r.body["diseases"].as_array() {
                None => national += 1,
                Some(d) => *first.entry(d[0].as_u64().unwrap()).or_default() += 1,
            }
        }
        let share = national as f64 / n as f64;
        assert!((0.07..=0.13).contains(&share), "national share {share}");
        // The largest disease is drawn most often, and more often than a small one by far.
        let top = first.iter().max_by_key(|(_, c)| **c).map(|(no, _)| *no);
        assert_eq!(top, Some(97));
        assert!(first.get(&97) > Some(&(10 * first.get(&300).copied().unwrap_or(0))));
        // Only national requests without any disease weight.
        let all_national = Workload::new(&[], treatments(), vec![2020], 1.0, 0).unwrap();
        assert!(all_national
            .stream(1, 0)
            .take(50)
            .all(|r| r.class == Class::National && r.body.get("diseases").is_none()));
        assert!(Workload::new(&[], treatments(), vec![2020], 0.5, 0).is_err());
        assert!(Workload::new(&prevalence(), treatments(), vec![], 1.5, 0).is_err());
    }
}
