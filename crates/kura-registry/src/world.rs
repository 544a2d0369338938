//! The fixed synthetic "world" patients live in: municipalities per prefecture, institutions,
//! designated doctors, postcode ranges and area codes. It does not depend on the user's seed, so
//! two extracts made with different seeds name the same hospitals and towns, as two real
//! registry years would.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use crate::names::{NameTables, SURNAMES};
use crate::reference::{prefectures_checked, Prefecture, ReferenceDataError};
use crate::rng::{between, chance, index, patient_rng, Cumulative, PatientRng};

/// Seed of the world; changing it changes every institution and municipality name.
const WORLD_SEED: u64 = 0x6B75_7261_776F_726C;

/// First three postcode digits of each prefecture (JIS order), as real 〒 ranges run.
const POSTCODE_RANGES: [(u16, u16); 47] = [
    (40, 99),
    (30, 39),
    (20, 29),
    (980, 989),
    (10, 19),
    (990, 999),
    (960, 979),
    (300, 319),
    (320, 329),
    (370, 379),
    (330, 369),
    (260, 299),
    (100, 208),
    (210, 259),
    (940, 959),
    (930, 939),
    (920, 929),
    (910, 919),
    (400, 409),
    (380, 399),
    (500, 509),
    (410, 439),
    (440, 499),
    (510, 519),
    (520, 529),
    (600, 629),
    (530, 599),
    (650, 679),
    (630, 639),
    (640, 649),
    (680, 689),
    (690, 699),
    (700, 719),
    (720, 739),
    (740, 759),
    (770, 779),
    (760, 769),
    (790, 799),
    (780, 789),
    (800, 839),
    (840, 849),
    (850, 859),
    (860, 869),
    (870, 879),
    (880, 889),
    (890, 899),
    (900, 909),
];

/// Area code of each prefecture's capital (JIS order).
const AREA_CODES: [&str; 47] = [
    "011", "017", "019", "022", "018", "023", "024", "029", "028", "027", "048", "043", "03",
    "045", "025", "076", "076", "0776", "055", "026", "058", "054", "052", "059", "077", "075",
    "06", "078", "0742", "073", "0857", "0852", "086", "082", "083", "088", "087", "089", "088",
    "092", "0952", "095", "096", "097", "0985", "099", "098",
];

/// Prefectures with a designated city (政令指定都市), whose municipalities include wards.
const DESIGNATED_CITY: &[&str] = &[
    "01", "04", "11", "12", "13", "14", "15", "22", "23", "26", "27", "28", "33", "34", "40", "43",
];

const STEM_A: &[&str] = &[
    "大", "高", "新", "西", "東", "北", "南", "上", "下", "中", "本", "石", "松", "竹", "桜", "川",
    "山", "長", "富", "福", "安", "吉", "豊", "白", "青", "赤", "黒", "小", "若", "平", "岩", "金",
];
const STEM_B: &[&str] = &[
    "田", "川", "山", "野", "原", "岡", "島", "浜", "崎", "沢", "宮", "津", "井", "木", "松", "橋",
    "倉", "里", "見", "瀬", "谷", "城", "根", "尾",
];
const WARD_STEMS: &[&str] = &[
    "中央",
    "北",
    "南",
    "東",
    "西",
    "港",
    "青葉",
    "緑",
    "若葉",
    "中",
    "花見川",
    "桜",
    "泉",
    "旭",
    "栄",
    "清水",
    "大宮",
    "本郷",
    "新田",
    "富士見",
    "平和",
    "山手",
    "美浜",
    "稲毛",
    "浦和",
];
const STREETS: &[&str] = &[
    "本町",
    "中町",
    "栄町",
    "緑町",
    "旭町",
    "幸町",
    "東町",
    "西町",
    "南町",
    "北町",
    "大手町",
    "駅前",
    "元町",
    "新町",
    "宮前",
    "桜台",
    "若松町",
    "松原",
    "泉町",
    "日の出町",
    "錦町",
    "寿町",
    "昭和町",
    "柳町",
];

#[derive(Debug, Clone)]
pub(crate) struct Municipality {
    pub code: String,
    /// Full name as written in an address, e.g. `青葉市` or `横浜市青葉区`.
    pub name: String,
    /// Name without the 市/町/村/区 suffix, used to name hospitals.
    pub stem: String,
    postcode3: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstitutionKind {
    University,
    General,
    Clinic,
}

impl InstitutionKind {
    pub(crate) fn code(self) -> &'static str {
        match self {
            InstitutionKind::University => "university",
            InstitutionKind::General => "general",
            InstitutionKind::Clinic => "clinic",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Doctor {
    pub number: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Institution {
    pub code: String,
    pub name: String,
    pub pref: usize,
    pub municipality: usize,
    pub kind: InstitutionKind,
    pub phone: String,
    pub doctors: Vec<Doctor>,
}

pub(crate) struct PrefWorld {
    pub municipalities: Vec<Municipality>,
    pub muni_weights: Cumulative,
    /// Global institution indices in this prefecture, with sampling weights for common and for
    /// rare diseases (rare ones concentrate in university hospitals).
    pub institutions: Vec<usize>,
    pub common_weights: Cumulative,
    pub rare_weights: Cumulative,
}

pub(crate) struct World {
    pub prefs: &'static [Prefecture],
    pub pref_weights: Cumulative,
    pub pref_worlds: Vec<PrefWorld>,
    pub institutions: Vec<Institution>,
    pub names: NameTables,
}

static WORLD: OnceLock<Result<World, ReferenceDataError>> = OnceLock::new();

pub(crate) fn world() -> Result<&'static World, ReferenceDataError> {
    match WORLD.get_or_init(build) {
        Ok(w) => Ok(w),
        Err(e) => Err(e.clone()),
    }
}

fn stem_name(rng: &mut PatientRng, taken: &mut BTreeSet<String>) -> String {
    loop {
        let s = format!(
            "{}{}",
            STEM_A[index(rng, STEM_A.len())],
            STEM_B[index(rng, STEM_B.len())]
        );
        if taken.insert(s.clone()) {
            return s;
        }
    }
}

fn municipalities(rng: &mut PatientRng, pref: &Prefecture, p: usize) -> Vec<Municipality> {
    let pop = pref.population_2020;
    let count = 8 + (pop / 200_000) as usize;
    // Prefectures with a designated city list its wards first (codes 1xx), then cities (2xx),
    // then towns and villages (3xx and up), like the JIS table.
    let wards = if DESIGNATED_CITY.contains(&pref.code) {
        (5 + pop / 1_000_000) as usize
    } else {
        0
    }
    .min(23);
    let cities = (count - wards) * 3 / 5;
    let (lo, hi) = POSTCODE_RANGES[p];
    let mut taken = BTreeSet::new();
    let capital = stem_name(rng, &mut taken);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let (code, name, stem) = if i < wards {
            let stem = WARD_STEMS[i % WARD_STEMS.len()].to_string();
            let name = if pref.code == "13" {
                format!("{stem}区")
            } else {
                format!("{capital}市{stem}区")
            };
            (101 + i, name, stem)
        } else if i < wards + cities {
            let stem = if i == wards && wards == 0 {
                capital.clone()
            } else {
                stem_name(rng, &mut taken)
            };
            (201 + i - wards, format!("{stem}市"), stem)
        } else {
            let stem = stem_name(rng, &mut taken);
            let suffix = if chance(rng, 0.8) { "町" } else { "村" };
            (
                301 + 3 * (i - wards - cities),
                format!("{stem}{suffix}"),
                stem,
            )
        };
        let span = u64::from(hi - lo + 1);
        let postcode3 = lo + (i as u64 * span / count as u64) as u16;
        out.push(Municipality {
            code: format!("{}{code:03}", pref.code),
            name,
            stem,
            postcode3,
        });
    }
    out
}

pub(crate) fn phone_in(rng: &mut PatientRng, pref: usize) -> String {
    let area = AREA_CODES[pref % 47];
    let middle_len = 6 - area.len();
    let middle = between(
        rng,
        10i64.pow(middle_len as u32 - 1),
        10i64.pow(middle_len as u32) - 1,
    );
    format!("{area}-{middle}-{:04}", between(rng, 0, 9999))
}

fn build() -> Result<World, ReferenceDataError> {
    let prefs = prefectures_checked()?;
    let mut rng = patient_rng(WORLD_SEED, 0);
    let names = NameTables::new();
    let mut institutions = Vec::new();
    let mut pref_worlds = Vec::with_capacity(prefs.len());
    let mut doctor_serial = 0u64;
    for (p, pref) in prefs.iter().enumerate() {
        let munis = municipalities(&mut rng, pref, p);
        // Populous municipalities dominate: weight falls with rank, wards and cities first.
        let muni_weights = Cumulative::new(munis.iter().enumerate().map(|(i, m)| {
            let base = 1.0 / (i as f64 + 1.5);
            if m.name.ends_with('村') {
                base * 0.3
            } else {
                base
            }
        }));
        let pop = pref.population_2020;
        let n_univ = 1 + (pop / 2_000_000) as usize;
        let n_general = 2 + (pop / 250_000) as usize;
        let n_clinic = 2 + (pop / 150_000) as usize;
        let mut own = Vec::new();
        let mut taken = BTreeSet::new();
        for k in 0..n_univ + n_general + n_clinic {
            let kind = if k < n_univ {
                InstitutionKind::University
            } else if k < n_univ + n_general {
                InstitutionKind::General
            } else {
                InstitutionKind::Clinic
            };
            let muni = match kind {
                InstitutionKind::University => k % 3,
                _ => muni_weights.sample(&mut rng),
            };
            let m = &munis[muni];
            let pref_short = pref.name_ja.trim_end_matches(['都', '府', '県']);
            let mut name = match kind {
                InstitutionKind::University => match k {
                    0 => format!("{pref_short}大学医学部附属病院"),
                    1 => format!("{pref_short}医科大学病院"),
                    _ => {
                        const S: [&str; 4] = ["医科", "総合医療", "医療", "保健医療"];
                        format!("{}{}大学病院", m.stem, S[k % 4])
                    }
                },
                InstitutionKind::General => {
                    const S: &[&str] = &[
                        "総合病院",
                        "市民病院",
                        "中央病院",
                        "赤十字病院",
                        "医療センター",
                        "記念病院",
                    ];
                    format!("{}{}", m.stem, S[index(&mut rng, S.len())])
                }
                InstitutionKind::Clinic => {
                    const S: &[&str] = &[
                        "内科クリニック",
                        "神経内科クリニック",
                        "消化器内科",
                        "整形外科医院",
                        "眼科クリニック",
                        "皮膚科医院",
                        "内科医院",
                    ];
                    let sn = SURNAMES[names.surname(&mut rng)].0;
                    format!("{sn}{}", S[index(&mut rng, S.len())])
                }
            };
            let mut ordinal = 2;
            let base = name.clone();
            while !taken.insert(name.clone()) {
                name = format!("{base}第{ordinal}分院");
                ordinal += 1;
            }
            let n_doctors = match kind {
                InstitutionKind::University => 12,
                InstitutionKind::General => 5,
                InstitutionKind::Clinic => 1,
            };
            let doctors = (0..n_doctors)
                .map(|_| {
                    doctor_serial += 1;
                    let female = chance(&mut rng, 0.25);
                    let birth_year = between(&mut rng, 1955, 1995) as i32;
                    let n = names.person(&mut rng, female, birth_year);
                    Doctor {
                        // An affine bijection keeps numbers unique but not sequential.
                        number: format!(
                            "D{}-{:06}",
                            pref.code,
                            (doctor_serial * 7919 + 104_729) % 1_000_000
                        ),
                        name: n.kanji(),
                    }
                })
                .collect();
            let serial = (own.len() as u64 * 7919 + 10_007) % 10_000_000;
            own.push(institutions.len());
            institutions.push(Institution {
                code: format!("{}1{serial:07}", pref.code),
                name,
                pref: p,
                municipality: muni,
                kind,
                phone: phone_in(&mut rng, p),
                doctors,
            });
        }
        let weight = |rare: bool| {
            Cumulative::new(own.iter().map(|&i| match (institutions[i].kind, rare) {
                (InstitutionKind::University, false) => 6.0,
                (InstitutionKind::University, true) => 60.0,
                (InstitutionKind::General, _) => 3.0,
                (InstitutionKind::Clinic, false) => 1.5,
                (InstitutionKind::Clinic, true) => 0.1,
            }))
        };
        let (common_weights, rare_weights) = (weight(false), weight(true));
        pref_worlds.push(PrefWorld {
            municipalities: munis,
            muni_weights,
            institutions: own,
            common_weights,
            rare_weights,
        });
    }
    Ok(World {
        prefs,
        pref_weights: Cumulative::new(prefs.iter().map(|p| p.population_2020 as f64)),
        pref_worlds,
        institutions,
        names,
    })
}

/// Where a patient lives on one form.
#[derive(Debug, Clone)]
pub(crate) struct Residence {
    pub pref: usize,
    pub municipality: usize,
    pub postcode: String,
    pub address: String,
    pub phone: String,
}

impl World {
    pub(crate) fn residence(&self, rng: &mut PatientRng, pref: Option<usize>) -> Residence {
        let pref = pref.unwrap_or_else(|| self.pref_weights.sample(rng));
        let pw = &self.pref_worlds[pref];
        let municipality = pw.muni_weights.sample(rng);
        let m = &pw.municipalities[municipality];
        let postcode = format!("{:03}-{:04}", m.postcode3, between(rng, 0, 9999));
        let street = STREETS[index(rng, STREETS.len())];
        let mut address = format!(
            "{}{}{street}{}-{}-{}",
            self.prefs[pref].name_ja,
            m.name,
            between(rng, 1, 6),
            between(rng, 1, 30),
            between(rng, 1, 25)
        );
        if chance(rng, 0.25) {
            address.push_str(&format!("-{}", between(rng, 101, 1210)));
        }
        let phone = if chance(rng, 0.6) {
            const MOBILE: [&str; 3] = ["090", "080", "070"];
            format!(
                "{}-{:04}-{:04}",
                MOBILE[index(rng, 3)],
                between(rng, 1000, 9999),
                between(rng, 0, 9999)
            )
        } else {
            phone_in(rng, pref)
        };
        Residence {
            pref,
            municipality,
            postcode,
            address,
            phone,
        }
    }

    pub(crate) fn municipality_code(&self, r: &Residence) -> &str {
        &self.pref_worlds[r.pref].municipalities[r.municipality].code
    }

    /// An institution for a patient living in `pref`: mostly in the same prefecture, sometimes
    /// a neighbouring one (JIS codes run roughly along the archipelago).
    pub(crate) fn institution(&self, rng: &mut PatientRng, pref: usize, rare: bool) -> usize {
        let p = if chance(rng, 0.1) {
            let step = between(rng, 1, 2) as usize;
            if chance(rng, 0.5) && pref >= step {
                pref - step
            } else {
                (pref + step).min(self.pref_worlds.len() - 1)
            }
        } else {
            pref
        };
        let pw = &self.pref_worlds[p];
        let table = if rare {
            &pw.rare_weights
        } else {
            &pw.common_weights
        };
        pw.institutions[table.sample(rng).min(pw.institutions.len() - 1)]
    }
}
