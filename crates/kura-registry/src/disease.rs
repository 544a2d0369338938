//! Per-disease model of the 難病 population: prevalence (a few large diseases in roughly their
//! FY2016 proportions, then a Zipf tail), age and sex, severity scale, drift, treatments and
//! ventilator use.

use crate::rng::{normal, Cumulative, PatientRng};

/// Approximate certificate holders of the largest designated diseases (FY2016 public
/// statistics, rounded; UC, Parkinson's and SLE are the figures quoted in docs/domain.md).
/// Every other disease shares a Zipf tail.
const LARGE: &[(u16, f64)] = &[
    (97, 167_872.0),
    (6, 127_347.0),
    (49, 63_792.0),
    (96, 42_789.0),
    (69, 34_000.0),
    (18, 27_000.0),
    (90, 27_000.0),
    (51, 25_000.0),
    (63, 24_000.0),
    (11, 22_000.0),
    (50, 22_000.0),
    (93, 21_000.0),
    (84, 20_000.0),
    (56, 20_000.0),
    (13, 19_000.0),
    (53, 17_000.0),
    (85, 17_000.0),
    (57, 17_000.0),
    (71, 16_000.0),
    (22, 15_000.0),
    (17, 11_000.0),
    (66, 11_000.0),
    (5, 10_000.0),
    (60, 10_000.0),
    (67, 10_000.0),
    (2, 9_600.0),
    (43, 9_000.0),
    (46, 6_000.0),
    (70, 5_500.0),
    (40, 5_000.0),
    (14, 5_000.0),
    (113, 4_500.0),
    (58, 4_000.0),
    (88, 4_000.0),
    (86, 3_500.0),
    (271, 3_000.0),
    (28, 3_000.0),
    (95, 3_000.0),
    (300, 3_000.0),
];
/// Mass of the Zipf tail relative to the listed diseases, and its exponent.
const TAIL_SHARE: f64 = 0.08;
const TAIL_EXPONENT: f64 = 1.15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    Mrs,
    Barthel,
    Edss,
    Mgfa,
    HoehnYahr,
    Mayo,
    Sledai,
    Nyha,
    Gaf,
    General,
}

impl Scale {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Scale::Mrs => "mRS",
            Scale::Barthel => "Barthel",
            Scale::Edss => "EDSS",
            Scale::Mgfa => "MGFA",
            Scale::HoehnYahr => "Hoehn-Yahr",
            Scale::Mayo => "Mayo",
            Scale::Sledai => "SLEDAI",
            Scale::Nyha => "NYHA",
            Scale::Gaf => "GAF",
            Scale::General => "general",
        }
    }

    /// The score for latent severity `s` in 0..=1; empty for the general scale, which has none.
    pub(crate) fn score(self, s: f64) -> String {
        let s = s.clamp(0.0, 1.0);
        let r = |k: f64| (s * k).round() as usize;
        match self {
            Scale::Mrs => r(5.0).to_string(),
            Scale::Barthel => (100 - 5 * r(20.0)).to_string(),
            Scale::Edss => format!("{:.1}", (r(19.0) as f64) / 2.0),
            Scale::Mgfa => ["I", "IIa", "IIb", "IIIa", "IIIb", "IVa", "IVb", "V"][r(7.0)].into(),
            Scale::HoehnYahr => (1 + r(4.0)).to_string(),
            Scale::Mayo => r(12.0).to_string(),
            Scale::Sledai => ((s * s * 30.0).round() as u32).to_string(),
            Scale::Nyha => ["I", "II", "III", "IV"][r(3.0)].into(),
            Scale::Gaf => (100 - r(80.0)).to_string(),
            Scale::General => String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum AgeModel {
    Normal(f64, f64),
    /// Onset in childhood: adults skewed young.
    Childhood,
    /// Generic adult disease: the national age structure of certificate holders.
    Adult,
}

#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub no: u16,
    pub weight: f64,
    pub age: AgeModel,
    pub female: f64,
    pub scale: Scale,
    /// Yearly drift of latent severity (progressive diseases drift up).
    pub drift: f64,
    /// Relapsing-remitting diseases pull back towards a mean instead of drifting.
    pub relapsing: bool,
    pub inflammatory: bool,
    pub renal: bool,
    pub hereditary: bool,
    /// Probability of ventilation when severe.
    pub ventilation: f64,
    pub rare: bool,
    pub treatments: &'static [(&'static str, &'static str)],
}

fn in_ranges(no: u16, ranges: &[(u16, u16)]) -> bool {
    ranges.iter().any(|&(a, b)| (a..=b).contains(&no))
}

fn treatments(no: u16) -> &'static [(&'static str, &'static str)] {
    match no {
        97 => &[
            ("drug", "mesalazine"),
            ("drug", "prednisolone"),
            ("drug", "azathioprine"),
            ("drug", "infliximab"),
            ("drug", "adalimumab"),
            ("drug", "vedolizumab"),
            ("drug", "ustekinumab"),
            ("drug", "tofacitinib"),
            ("other", "leukocytapheresis"),
            ("surgery", "total colectomy"),
        ],
        96 => &[
            ("drug", "infliximab"),
            ("drug", "adalimumab"),
            ("drug", "ustekinumab"),
            ("drug", "azathioprine"),
            ("drug", "mesalazine"),
            ("other", "elemental diet"),
            ("surgery", "bowel resection"),
        ],
        6 => &[
            ("drug", "levodopa/carbidopa"),
            ("drug", "pramipexole"),
            ("drug", "ropinirole"),
            ("drug", "rotigotine"),
            ("drug", "rasagiline"),
            ("drug", "safinamide"),
            ("drug", "istradefylline"),
            ("drug", "entacapone"),
            ("drug", "amantadine"),
            ("drug", "zonisamide"),
            ("surgery", "deep brain stimulation"),
        ],
        49 => &[
            ("drug", "prednisolone"),
            ("drug", "hydroxychloroquine"),
            ("drug", "mycophenolate mofetil"),
            ("drug", "tacrolimus"),
            ("drug", "belimumab"),
            ("drug", "anifrolumab"),
            ("drug", "cyclophosphamide"),
        ],
        11 => &[
            ("drug", "pyridostigmine"),
            ("drug", "prednisolone"),
            ("drug", "tacrolimus"),
            ("drug", "eculizumab"),
            ("drug", "efgartigimod alfa"),
            ("drug", "rozanolixizumab"),
            ("drug", "intravenous immunoglobulin"),
            ("other", "plasmapheresis"),
            ("surgery", "thymectomy"),
        ],
        13 => &[
            ("drug", "interferon beta-1a"),
            ("drug", "fingolimod"),
            ("drug", "natalizumab"),
            ("drug", "dimethyl fumarate"),
            ("drug", "ofatumumab"),
            ("drug", "glatiramer acetate"),
            ("drug", "satralizumab"),
        ],
        2 => &[
            ("drug", "riluzole"),
            ("drug", "edaravone"),
            ("surgery", "gastrostomy"),
            ("surgery", "tracheostomy"),
            ("other", "rehabilitation"),
        ],
        _ => &[
            ("drug", "prednisolone"),
            ("drug", "immunosuppressant"),
            ("drug", "symptomatic drug"),
            ("other", "rehabilitation"),
            ("other", "supportive care"),
        ],
    }
}

pub(crate) fn profile(no: u16, name: &str, tail_rank: Option<usize>) -> Profile {
    let large = LARGE.iter().find(|(n, _)| *n == no).map(|(_, w)| *w);
    let large_total: f64 = LARGE.iter().map(|(_, w)| w).sum();
    let weight = large.unwrap_or_else(|| {
        let rank = tail_rank.unwrap_or(0) as f64 + 1.0;
        large_total * TAIL_SHARE * tail_norm() / rank.powf(TAIL_EXPONENT)
    });
    let childhood = in_ranges(
        no,
        &[
            (100, 106),
            (108, 112),
            (129, 160),
            (169, 217),
            (233, 264),
            (291, 299),
            (307, 341),
        ],
    );
    let age = match no {
        6 => AgeModel::Normal(73.0, 8.5),
        5 | 7 | 17 => AgeModel::Normal(71.0, 7.5),
        2 => AgeModel::Normal(67.0, 10.0),
        18 => AgeModel::Normal(62.0, 14.0),
        97 => AgeModel::Normal(48.0, 16.0),
        96 => AgeModel::Normal(38.0, 13.0),
        49 => AgeModel::Normal(49.0, 15.0),
        11 => AgeModel::Normal(61.0, 15.0),
        13 => AgeModel::Normal(45.0, 12.0),
        51 | 53 | 50 => AgeModel::Normal(64.0, 12.0),
        69 => AgeModel::Normal(69.0, 10.0),
        70 => AgeModel::Normal(74.0, 8.0),
        85 => AgeModel::Normal(74.0, 8.0),
        93 => AgeModel::Normal(67.0, 11.0),
        86 => AgeModel::Normal(50.0, 16.0),
        _ if childhood => AgeModel::Childhood,
        _ => AgeModel::Adult,
    };
    let female = match no {
        1 => 0.0,
        97 => 0.45,
        6 => 0.58,
        49 => 0.88,
        96 => 0.28,
        11 => 0.64,
        13 => 0.72,
        51 => 0.86,
        50 => 0.72,
        53 => 0.92,
        93 | 95 => 0.86,
        40 => 0.88,
        2 | 85 => 0.38,
        69 => 0.35,
        113 => 0.30,
        _ => 0.60,
    };
    let scale = match no {
        6 => Scale::HoehnYahr,
        11 | 12 => Scale::Mgfa,
        13 => Scale::Edss,
        97 => Scale::Mayo,
        49 => Scale::Sledai,
        57..=59 | 86..=88 | 207..=217 | 311..=314 => Scale::Nyha,
        140..=155 | 309 => Scale::Gaf,
        68..=71 | 270..=276 | 326 => Scale::Barthel,
        1..=5 | 7..=10 | 14..=34 | 111..=139 | 156..=158 | 307 | 308 => Scale::Mrs,
        _ => Scale::General,
    };
    let progressive = matches!(no, 1..=10 | 17 | 18 | 23 | 85 | 113 | 127);
    let relapsing = matches!(no, 13 | 49 | 96 | 97 | 11 | 56);
    let ventilation = match no {
        2 => 0.6,
        3 => 0.4,
        113 => 0.3,
        1 | 4 | 15 | 17 | 111 | 112 | 131 | 156 | 307 => 0.10,
        228 | 230 => 0.08,
        85 => 0.02,
        _ => 0.004,
    };
    Profile {
        no,
        weight,
        age,
        female,
        scale,
        drift: if progressive { 0.07 } else { 0.015 },
        relapsing,
        inflammatory: matches!(no, 40..=46 | 49 | 54 | 56 | 96 | 97 | 106 | 107 | 108 | 325),
        renal: matches!(no, 66 | 67 | 109 | 218..=225 | 335),
        hereditary: name.contains("遺伝性") || name.contains("家族性") || no == 8 || no == 1,
        ventilation,
        rare: large.is_none() || large.is_some_and(|w| w < 6_000.0),
        treatments: treatments(no),
    }
}

fn tail_norm() -> f64 {
    let n = 341 - LARGE.len();
    1.0 / (1..=n)
        .map(|r| 1.0 / (r as f64).powf(TAIL_EXPONENT))
        .sum::<f64>()
}

/// All 341 profiles plus a sampler over them. The tail order is a fixed pseudo-random
/// permutation of the remaining disease numbers, independent of the seed.
pub(crate) struct DiseaseModel {
    pub profiles: Vec<Profile>,
    pub sampler: Cumulative,
}

impl DiseaseModel {
    pub(crate) fn new(diseases: &[crate::Disease]) -> Self {
        let mut tail: Vec<u16> = diseases
            .iter()
            .map(|d| d.no)
            .filter(|no| !LARGE.iter().any(|(n, _)| n == no))
            .collect();
        tail.sort_by_key(|&no| crate::rng::mix(u64::from(no) ^ 0x7461_696C));
        let profiles: Vec<Profile> = diseases
            .iter()
            .map(|d| profile(d.no, d.name_ja, tail.iter().position(|&n| n == d.no)))
            .collect();
        let sampler = Cumulative::new(profiles.iter().map(|p| p.weight));
        DiseaseModel { profiles, sampler }
    }

    pub(crate) fn by_no(&self, no: u16) -> Option<&Profile> {
        self.profiles.get(usize::from(no).wrapping_sub(1))
    }
}

/// Age at the first form for a patient with this profile.
pub(crate) fn sample_age(rng: &mut PatientRng, model: AgeModel) -> i32 {
    use rand::Rng;
    let age = match model {
        AgeModel::Normal(m, sd) => normal(rng, m, sd),
        AgeModel::Childhood => 19.0 - 12.0 * rng.random::<f64>().max(1e-9).ln(),
        AgeModel::Adult => {
            // Bands (from, to, weight): the largest groups are 75+ and 60-69.
            const BANDS: [(f64, f64, f64); 7] = [
                (20.0, 30.0, 5.0),
                (30.0, 40.0, 8.0),
                (40.0, 50.0, 12.0),
                (50.0, 60.0, 15.0),
                (60.0, 70.0, 21.0),
                (70.0, 75.0, 12.0),
                (75.0, 97.0, 27.0),
            ];
            let c = Cumulative::new(BANDS.iter().map(|b| b.2));
            let (lo, hi, _) = BANDS[c.sample(rng)];
            lo + (hi - lo) * rng.random::<f64>()
        }
    };
    age.clamp(18.0, 99.0) as i32
}
