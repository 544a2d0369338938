//! What each raw column may contain (`docs/raw-extract.md`) and the parsing of one field. Every
//! field of every row is checked, also in columns the policy drops: a malformed extract is refused
//! as a whole rather than half-loaded.

use crate::normalise::{parse_birth_date, parse_iso_date, parse_year_month, Date};

/// The value rules of one raw column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Free UTF-8 text (names, addresses, phones, drug names).
    Text,
    /// An integer in a range.
    Int { min: i64, max: i64 },
    /// A decimal number (lab values, SD scores).
    Decimal,
    /// `YYYY-MM-DD`.
    Date,
    /// ISO or Japanese-era date of birth.
    BirthDate,
    /// `YYYY-MM`.
    YearMonth,
    /// One of a fixed set of ASCII codes.
    Enum(&'static [&'static str]),
    /// Exactly `len` ASCII digits (JIS and institution codes, recipient numbers).
    Digits { len: usize },
    /// A designated disease number (1..341, checked against the code list).
    DiseaseNo,
    /// A 小慢 disease code `GG-NNN`.
    ShomanCode,
}

/// A parsed, valid field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    Float(f64),
    Date(Date),
    YearMonth(i32, u32),
}

const CARE: &[&str] = &[
    "none",
    "support_1",
    "support_2",
    "care_1",
    "care_2",
    "care_3",
    "care_4",
    "care_5",
];
const FAMILY: &[&str] = &["none", "yes", "unknown"];
const RELATION: &[&str] = &["parent", "sibling", "child", "other"];
const DIAG: &[&str] = &["definite", "probable"];
const SEVERITY: &[&str] = &["mild", "moderate", "severe"];
const SCALES: &[&str] = &[
    "mRS",
    "Barthel",
    "EDSS",
    "MGFA",
    "Hoehn-Yahr",
    "Mayo",
    "SLEDAI",
    "NYHA",
    "GAF",
    "general",
];
const GENETIC: &[&str] = &["not_done", "positive", "negative"];
const VENT_TYPE: &[&str] = &["invasive", "non_invasive"];
const VENT_PATTERN: &[&str] = &["continuous", "night_only", "intermittent"];
const TREATMENT: &[&str] = &["drug", "surgery", "other"];
const INSTITUTION: &[&str] = &["university", "general", "clinic"];
const SCHOOL: &[&str] = &[
    "preschool",
    "elementary",
    "junior_high",
    "high_school",
    "special_support",
    "working",
    "none",
];

const FLAG: Kind = Kind::Int { min: 0, max: 1 };
const LIVING: Kind = Kind::Int { min: 1, max: 3 };

/// The rules of a column of a raw table; columns not listed are free text.
pub fn kind_of(table: &str, column: &str) -> Kind {
    use Kind::*;
    match (table, column) {
        ("nanbyo_treatments", "kind") => Enum(TREATMENT),
        ("nanbyo_treatments", "start_ym") => YearMonth,
        ("institutions", "kind") => Enum(INSTITUTION),
        (_, "recipient_number") => Digits { len: 8 },
        (_, "disease_no") => DiseaseNo,
        (_, "disease_group") => Int { min: 1, max: 16 },
        (_, "disease_code") => ShomanCode,
        (_, "form_year") => Int {
            min: 1900,
            max: 2200,
        },
        (_, "written_date" | "ventilator_start" | "mother_birth_date") => Date,
        (_, "birth_date") => BirthDate,
        (_, "sex") => Int { min: 1, max: 2 },
        (_, "pref_code") => Digits { len: 2 },
        (_, "municipality_code") => Digits { len: 5 },
        (_, "institution_code") => Digits { len: 10 },
        (_, "family_history") => Enum(FAMILY),
        (_, "family_history_relation") => Enum(RELATION),
        (_, "onset_ym") => YearMonth,
        (_, "care_level") => Enum(CARE),
        (
            _,
            "mobility" | "self_care" | "usual_activities" | "pain_discomfort"
            | "anxiety_depression",
        ) => LIVING,
        (_, "diagnosis_category") => Enum(DIAG),
        (_, "severity") => Enum(SEVERITY),
        (_, "severity_scale") => Enum(SCALES),
        (_, "lab_crp" | "lab_albumin" | "lab_hb" | "lab_egfr" | "height_sd" | "weight_sd") => {
            Decimal
        }
        (_, "genetic_test") => Enum(GENETIC),
        (_, "ventilator" | "certified" | "consent") => FLAG,
        (_, "ventilator_type") => Enum(VENT_TYPE),
        (_, "ventilator_pattern") => Enum(VENT_PATTERN),
        (_, "birth_weight_g") => Int {
            min: 100,
            max: 7000,
        },
        (_, "gestational_weeks") => Int { min: 20, max: 45 },
        (_, "school_status") => Enum(SCHOOL),
        _ => Text,
    }
}

/// Parses one non-empty field; `Err` is the reason it is invalid.
pub fn parse<'a>(
    kind: Kind,
    s: &'a str,
    diseases: &[bool],
) -> std::result::Result<Value<'a>, &'static str> {
    if s.is_empty() {
        return Ok(Value::Null);
    }
    match kind {
        Kind::Text => Ok(Value::Str(s)),
        Kind::Int { min, max } => match s.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Value::Int(n)),
            Ok(_) => Err("integer out of range"),
            Err(_) => Err("not an integer"),
        },
        Kind::Decimal => match s.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Value::Float(x)),
            _ => Err("not a decimal number"),
        },
        Kind::Date => parse_iso_date(s)
            .map(Value::Date)
            .ok_or("not a valid date (YYYY-MM-DD)"),
        Kind::BirthDate => parse_birth_date(s)
            .map(Value::Date)
            .ok_or("not a valid date of birth (YYYY-MM-DD or era like S33.04.12)"),
        Kind::YearMonth => parse_year_month(s)
            .map(|(y, m)| Value::YearMonth(y, m))
            .ok_or("not a valid year-month (YYYY-MM)"),
        Kind::Enum(allowed) => {
            if allowed.contains(&s) {
                Ok(Value::Str(s))
            } else {
                Err("not one of the allowed codes")
            }
        }
        Kind::Digits { len } => {
            if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Value::Str(s))
            } else {
                Err("wrong code format (expected a fixed number of digits)")
            }
        }
        Kind::DiseaseNo => match s.parse::<usize>() {
            Ok(n) if diseases.get(n).copied().unwrap_or(false) => Ok(Value::Int(n as i64)),
            Ok(_) => Err("unknown designated disease number"),
            Err(_) => Err("disease number is not an integer"),
        },
        Kind::ShomanCode => {
            let b = s.as_bytes();
            let ok = b.len() == 6
                && b[2] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 2 || c.is_ascii_digit())
                && matches!(s[..2].parse::<u8>(), Ok(1..=16))
                && s[3..] != *"000";
            if ok {
                Ok(Value::Str(s))
            } else {
                Err("not a 小慢 disease code GG-NNN (group 01..16)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diseases() -> Vec<bool> {
        (0..=341).map(|n| n >= 1).collect()
    }

    #[test]
    fn fields_are_checked_by_kind() {
        let d = diseases();
        let k = |t, c| kind_of(t, c);
        assert_eq!(
            parse(k("nanbyo_forms", "disease_no"), "97", &d),
            Ok(Value::Int(97))
        );
        assert!(parse(k("nanbyo_forms", "disease_no"), "342", &d).is_err());
        assert!(parse(k("nanbyo_forms", "disease_no"), "0", &d).is_err());
        assert!(parse(k("nanbyo_forms", "severity"), "extreme", &d).is_err());
        assert!(parse(k("nanbyo_forms", "written_date"), "2021-02-30", &d).is_err());
        assert!(parse(k("nanbyo_forms", "sex"), "3", &d).is_err());
        assert!(parse(k("shoman_forms", "disease_code"), "11-042", &d).is_ok());
        assert!(parse(k("shoman_forms", "disease_code"), "17-042", &d).is_err());
        assert!(parse(k("nanbyo_forms", "municipality_code"), "1310", &d).is_err());
        assert_eq!(parse(k("nanbyo_forms", "lab_crp"), "", &d), Ok(Value::Null));
        assert!(parse(k("nanbyo_forms", "lab_crp"), "NaN", &d).is_err());
    }
}
