//! Normalisation of the inputs of the research ID (kana name, date of birth) and the date
//! arithmetic of the build. Spelling variants of one person must normalise to one string, so the
//! keyed research ID is the same for them.

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Days since 1970-01-01 (DuckDB's and Arrow's DATE representation).
    pub fn epoch_days(self) -> i32 {
        // Howard Hinnant's days_from_civil.
        let y = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = self.month as i32;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + self.day as i32 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    pub fn from_epoch_days(days: i64) -> Date {
        let z = days + 719468;
        let era = if z >= 0 { z } else { z - 146096 } / 146097;
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    pub fn iso(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// Completed years of age on `at`.
    pub fn age_on(self, at: Date) -> i32 {
        let mut age = at.year - self.year;
        if (at.month, at.day) < (self.month, self.day) {
            age -= 1;
        }
        age
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD`, strictly.
pub fn parse_iso_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Date::new(
        digits(&s[0..4])? as i32,
        digits(&s[5..7])?,
        digits(&s[8..10])?,
    )
}

/// `YYYY-MM`, strictly.
pub fn parse_year_month(s: &str) -> Option<(i32, u32)> {
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' {
        return None;
    }
    let (y, m) = (digits(&s[0..4])? as i32, digits(&s[5..7])?);
    (1..=12).contains(&m).then_some((y, m))
}

/// Japanese eras: letter, first day (Gregorian). Meiji is taken from 1868-01-01 because the era
/// name was applied retroactively to the whole of 1868.
const ERAS: [(char, Date); 5] = [
    (
        'M',
        Date {
            year: 1868,
            month: 1,
            day: 1,
        },
    ),
    (
        'T',
        Date {
            year: 1912,
            month: 7,
            day: 30,
        },
    ),
    (
        'S',
        Date {
            year: 1926,
            month: 12,
            day: 25,
        },
    ),
    (
        'H',
        Date {
            year: 1989,
            month: 1,
            day: 8,
        },
    ),
    (
        'R',
        Date {
            year: 2019,
            month: 5,
            day: 1,
        },
    ),
];

/// A date of birth as forms write it: ISO `1958-04-12` or Japanese era `S33.04.12` (also `S33.4.12`,
/// `/` or `-` as separators, full-width characters). The era date must fall inside its era
/// (`S64.01.08` does not exist: Heisei began that day).
pub fn parse_birth_date(raw: &str) -> Option<Date> {
    let folded: String;
    let s = if raw.is_ascii() {
        raw.trim()
    } else {
        folded = raw.nfkc().collect();
        folded.trim()
    };
    if let Some(d) = parse_iso_date(s) {
        return Some(d);
    }
    let mut chars = s.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let idx = ERAS.iter().position(|(c, _)| *c == letter)?;
    let rest = chars.as_str();
    let mut parts = rest.split(['.', '/', '-']);
    let (ey, m, d) = (
        digits(parts.next()?)?,
        digits(parts.next()?)?,
        digits(parts.next()?)?,
    );
    if parts.next().is_some() || ey == 0 {
        return None;
    }
    let start = ERAS[idx].1;
    let date = Date::new(start.year + ey as i32 - 1, m, d)?;
    let before_next = ERAS.get(idx + 1).is_none_or(|(_, next)| date < *next);
    (date >= start && before_next).then_some(date)
}

/// The kana name as the research ID sees it: NFKC (half-width katakana -> full-width, full-width
/// ASCII -> ASCII, composed voiced marks), every whitespace character removed (including the
/// ideographic space U+3000), hiragana folded to katakana.
pub fn normalise_kana(raw: &str) -> String {
    // Most names are already full-width katakana: skip the (slow) normalisation when the quick
    // check proves it would change nothing.
    let folded: String;
    let s = if is_nfkc_quick(raw.chars()) == IsNormalized::Yes {
        raw
    } else {
        folded = raw.nfkc().collect();
        &folded
    };
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '\u{3041}'..='\u{3096}' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_days_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 11_016, 20_000, 2_932_896] {
            let d = Date::from_epoch_days(days);
            assert_eq!(i64::from(d.epoch_days()), days, "{d:?}");
        }
        assert_eq!(Date::new(1970, 1, 1).map(Date::epoch_days), Some(0));
        assert_eq!(Date::new(2000, 3, 1).map(Date::epoch_days), Some(11_017));
    }

    #[test]
    fn era_dates_map_to_iso() {
        let iso = |s| parse_birth_date(s).map(Date::iso);
        assert_eq!(iso("S33.04.12").as_deref(), Some("1958-04-12"));
        assert_eq!(iso("S33.4.12").as_deref(), Some("1958-04-12"));
        assert_eq!(iso("Ｓ３３．０４．１２").as_deref(), Some("1958-04-12"));
        assert_eq!(iso("H1.01.08").as_deref(), Some("1989-01-08"));
        assert_eq!(iso("S64.01.07").as_deref(), Some("1989-01-07"));
        assert_eq!(iso("R1.05.01").as_deref(), Some("2019-05-01"));
        assert_eq!(iso("H31.04.30").as_deref(), Some("2019-04-30"));
        assert_eq!(iso("T15.12.24").as_deref(), Some("1926-12-24"));
        assert_eq!(iso("M45.07.29").as_deref(), Some("1912-07-29"));
        assert_eq!(iso("1958-04-12").as_deref(), Some("1958-04-12"));
    }

    #[test]
    fn impossible_dates_are_rejected() {
        for bad in [
            "S64.01.08",
            "H1.01.07",
            "R1.04.30",
            "H31.05.01",
            "S0.01.01",
            "X33.04.12",
            "1958-02-29",
            "1958-13-01",
            "1958-4-12",
            "S33.04",
            "",
            "2023-02-30",
        ] {
            assert_eq!(parse_birth_date(bad), None, "{bad}");
        }
        assert!(parse_birth_date("2024-02-29").is_some());
    }

    #[test]
    fn kana_variants_normalise_to_one_string() {
        let want = normalise_kana("ヤマダ ハナコ");
        assert_eq!(want, "ヤマダハナコ");
        for v in [
            "ﾔﾏﾀﾞ ﾊﾅｺ",
            "ヤマダ\u{3000}ハナコ",
            "ヤマダハナコ",
            " ﾔﾏﾀﾞﾊﾅｺ ",
            "やまだ はなこ",
        ] {
            assert_eq!(normalise_kana(v), want, "{v}");
        }
        assert_ne!(normalise_kana("ヤマダ タロウ"), want);
    }

    #[test]
    fn age_counts_completed_years() {
        let dob = Date {
            year: 1958,
            month: 4,
            day: 12,
        };
        assert_eq!(
            dob.age_on(Date {
                year: 2021,
                month: 4,
                day: 11
            }),
            62
        );
        assert_eq!(
            dob.age_on(Date {
                year: 2021,
                month: 4,
                day: 12
            }),
            63
        );
    }
}
