//! The closed lists every request value is checked against: prefectures (JIS codes, names in
//! Japanese and English) and the eight standard regions, severities, 5-year age bands as the
//! snapshot stores them, sexes, diagnostic categories, and the per-snapshot lists (treatment
//! names, fiscal years) that the server reads from the snapshot once and hands in as a
//! [`Catalog`].

use std::collections::BTreeSet;

use crate::error::ExplorerError;

/// Highest designated disease number (指定難病 1..=341).
pub const MAX_DISEASE: u16 = 341;

/// A prefecture: JIS code, names, and its standard region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefecture {
    pub code: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
    pub region: Region,
}

/// The eight standard regions (八地方区分); Okinawa belongs to Kyushu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Region {
    Hokkaido,
    Tohoku,
    Kanto,
    Chubu,
    Kinki,
    Chugoku,
    Shikoku,
    Kyushu,
}

impl Region {
    pub const ALL: [Region; 8] = [
        Region::Hokkaido,
        Region::Tohoku,
        Region::Kanto,
        Region::Chubu,
        Region::Kinki,
        Region::Chugoku,
        Region::Shikoku,
        Region::Kyushu,
    ];

    /// The request spelling.
    pub fn key(self) -> &'static str {
        match self {
            Region::Hokkaido => "hokkaido",
            Region::Tohoku => "tohoku",
            Region::Kanto => "kanto",
            Region::Chubu => "chubu",
            Region::Kinki => "kinki",
            Region::Chugoku => "chugoku",
            Region::Shikoku => "shikoku",
            Region::Kyushu => "kyushu",
        }
    }

    pub fn ja(self) -> &'static str {
        match self {
            Region::Hokkaido => "北海道",
            Region::Tohoku => "東北",
            Region::Kanto => "関東",
            Region::Chubu => "中部",
            Region::Kinki => "近畿",
            Region::Chugoku => "中国",
            Region::Shikoku => "四国",
            Region::Kyushu => "九州・沖縄",
        }
    }

    pub fn en(self) -> &'static str {
        match self {
            Region::Hokkaido => "Hokkaido",
            Region::Tohoku => "Tohoku",
            Region::Kanto => "Kanto",
            Region::Chubu => "Chubu",
            Region::Kinki => "Kinki",
            Region::Chugoku => "Chugoku",
            Region::Shikoku => "Shikoku",
            Region::Kyushu => "Kyushu-Okinawa",
        }
    }

    pub fn parse(s: &str) -> Option<Region> {
        Region::ALL.into_iter().find(|r| r.key() == s)
    }

    pub fn prefectures(self) -> impl Iterator<Item = &'static Prefecture> {
        PREFECTURES.iter().filter(move |p| p.region == self)
    }
}

macro_rules! prefectures {
    ($(($code:literal, $ja:literal, $en:literal, $region:ident)),* $(,)?) => {
        /// The 47 prefectures in JIS order (`prefectures` table of the snapshot, `pref_code`).
        pub const PREFECTURES: [Prefecture; 47] = [
            $(Prefecture { code: $code, ja: $ja, en: $en, region: Region::$region }),*
        ];
    };
}

prefectures![
    ("01", "北海道", "Hokkaido", Hokkaido),
    ("02", "青森県", "Aomori", Tohoku),
    ("03", "岩手県", "Iwate", Tohoku),
    ("04", "宮城県", "Miyagi", Tohoku),
    ("05", "秋田県", "Akita", Tohoku),
    ("06", "山形県", "Yamagata", Tohoku),
    ("07", "福島県", "Fukushima", Tohoku),
    ("08", "茨城県", "Ibaraki", Kanto),
    ("09", "栃木県", "Tochigi", Kanto),
    ("10", "群馬県", "Gunma", Kanto),
    ("11", "埼玉県", "Saitama", Kanto),
    ("12", "千葉県", "Chiba", Kanto),
    ("13", "東京都", "Tokyo", Kanto),
    ("14", "神奈川県", "Kanagawa", Kanto),
    ("15", "新潟県", "Niigata", Chubu),
    ("16", "富山県", "Toyama", Chubu),
    ("17", "石川県", "Ishikawa", Chubu),
    ("18", "福井県", "Fukui", Chubu),
    ("19", "山梨県", "Yamanashi", Chubu),
    ("20", "長野県", "Nagano", Chubu),
    ("21", "岐阜県", "Gifu", Chubu),
    ("22", "静岡県", "Shizuoka", Chubu),
    ("23", "愛知県", "Aichi", Chubu),
    ("24", "三重県", "Mie", Kinki),
    ("25", "滋賀県", "Shiga", Kinki),
    ("26", "京都府", "Kyoto", Kinki),
    ("27", "大阪府", "Osaka", Kinki),
    ("28", "兵庫県", "Hyogo", Kinki),
    ("29", "奈良県", "Nara", Kinki),
    ("30", "和歌山県", "Wakayama", Kinki),
    ("31", "鳥取県", "Tottori", Chugoku),
    ("32", "島根県", "Shimane", Chugoku),
    ("33", "岡山県", "Okayama", Chugoku),
    ("34", "広島県", "Hiroshima", Chugoku),
    ("35", "山口県", "Yamaguchi", Chugoku),
    ("36", "徳島県", "Tokushima", Shikoku),
    ("37", "香川県", "Kagawa", Shikoku),
    ("38", "愛媛県", "Ehime", Shikoku),
    ("39", "高知県", "Kochi", Shikoku),
    ("40", "福岡県", "Fukuoka", Kyushu),
    ("41", "佐賀県", "Saga", Kyushu),
    ("42", "長崎県", "Nagasaki", Kyushu),
    ("43", "熊本県", "Kumamoto", Kyushu),
    ("44", "大分県", "Oita", Kyushu),
    ("45", "宮崎県", "Miyazaki", Kyushu),
    ("46", "鹿児島県", "Kagoshima", Kyushu),
    ("47", "沖縄県", "Okinawa", Kyushu),
];

pub fn prefecture(code: &str) -> Option<&'static Prefecture> {
    PREFECTURES.iter().find(|p| p.code == code)
}

/// `severity` values of `nanbyo_forms` (SQL spelling, ja, en).
pub const SEVERITIES: [(&str, &str, &str); 3] = [
    ("mild", "軽症", "Mild"),
    ("moderate", "中等症", "Moderate"),
    ("severe", "重症", "Severe"),
];

/// Shown for forms without a severity, so that a year's severities still add up to its total.
pub const SEVERITY_UNKNOWN: (&str, &str, &str) = ("unknown", "不明", "Unknown");

/// `age_band` values of `nanbyo_forms` (docs/snapshot.md, `age_band_5y`).
pub const AGE_BANDS: [&str; 21] = [
    "00-04", "05-09", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49",
    "50-54", "55-59", "60-64", "65-69", "70-74", "75-79", "80-84", "85-89", "90-94", "95-99",
    "100+",
];

/// Request spelling and the snapshot's `sex` code.
pub const SEXES: [(&str, i64); 2] = [("male", 1), ("female", 2)];

/// `diagnosis_category` values of `nanbyo_forms`.
pub const DIAGNOSIS_CATEGORIES: [&str; 2] = ["definite", "probable"];

/// Buckets of the number of distinct institutions that wrote a patient's forms
/// (value, ja, en); `lo..=hi`.
pub const INSTITUTION_BUCKETS: [(&str, &str, &str, u64, u64); 4] = [
    ("1", "1施設", "1 institution", 1, 1),
    ("2", "2施設", "2 institutions", 2, 2),
    ("3-4", "3-4施設", "3-4 institutions", 3, 4),
    ("5+", "5施設以上", "5+ institutions", 5, u64::MAX),
];

/// Longest treatment name the catalog accepts.
const MAX_TREATMENT_LEN: usize = 200;

/// Per-snapshot closed lists, read by the server from the snapshot (through the sandbox) with
/// [`Catalog::TREATMENTS_SQL`] and [`Catalog::FISCAL_YEARS_SQL`], then handed in here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    treatments: BTreeSet<String>,
    fiscal_years: BTreeSet<u16>,
}

impl Catalog {
    /// Treatment names given to at least 10 patients (a name on fewer would itself reveal a
    /// small group). One column, `name`.
    pub const TREATMENTS_SQL: &'static str = "SELECT t.name AS name \
         FROM nanbyo_treatments AS t JOIN nanbyo_forms AS f ON f.form_key = t.form_key \
         WHERE t.name IS NOT NULL GROUP BY t.name \
         HAVING count(DISTINCT f.research_id) >= 10 ORDER BY t.name";

    /// Fiscal years present in the snapshot. One column, `form_year`.
    pub const FISCAL_YEARS_SQL: &'static str = "SELECT DISTINCT form_year AS form_year \
         FROM nanbyo_forms WHERE form_year IS NOT NULL ORDER BY form_year";

    /// Checks each name: non-empty, at most 200 characters, no control characters (names are
    /// SQL literals later, escaped, but a list with odd bytes is a wiring error).
    pub fn new(
        treatments: impl IntoIterator<Item = String>,
        fiscal_years: impl IntoIterator<Item = u16>,
    ) -> Result<Catalog, ExplorerError> {
        let mut names = BTreeSet::new();
        for t in treatments {
            if t.trim().is_empty()
                || t.chars().count() > MAX_TREATMENT_LEN
                || t.chars().any(char::is_control)
            {
                return Err(ExplorerError::Catalog(format!(
                    "treatment name {t:?} is empty, longer than {MAX_TREATMENT_LEN} characters or \
                     has control characters"
                )));
            }
            names.insert(t);
        }
        let years: BTreeSet<u16> = fiscal_years.into_iter().collect();
        if let Some(y) = years.iter().find(|y| !(1900..=2200).contains(*y)) {
            return Err(ExplorerError::Catalog(format!(
                "fiscal year {y} is outside 1900..=2200"
            )));
        }
        Ok(Catalog {
            treatments: names,
            fiscal_years: years,
        })
    }

    pub fn treatments(&self) -> &BTreeSet<String> {
        &self.treatments
    }

    pub fn fiscal_years(&self) -> &BTreeSet<u16> {
        &self.fiscal_years
    }
}
