//! A minimal RFC 4180 row writer into an in-memory buffer (fields are quoted only when they
//! contain a comma, quote or line break), and the header of every file in docs/raw-extract.md.

use std::fmt::Display;
use std::io::Write as _;

pub const NANBYO_FORMS_HEADER: &[&str] = &[
    "form_id",
    "recipient_number",
    "disease_no",
    "form_year",
    "written_date",
    "name_kanji",
    "name_kana",
    "sex",
    "birth_date",
    "postcode",
    "address",
    "pref_code",
    "municipality_code",
    "phone",
    "insured_number",
    "family_history",
    "family_history_relation",
    "onset_ym",
    "care_level",
    "mobility",
    "self_care",
    "usual_activities",
    "pain_discomfort",
    "anxiety_depression",
    "diagnosis_category",
    "severity",
    "severity_scale",
    "severity_score",
    "lab_crp",
    "lab_albumin",
    "lab_hb",
    "lab_egfr",
    "genetic_test",
    "ventilator",
    "ventilator_start",
    "ventilator_type",
    "ventilator_pattern",
    "institution_code",
    "institution_name",
    "institution_phone",
    "doctor_number",
    "doctor_name",
    "certified",
    "consent",
];

pub const NANBYO_TREATMENTS_HEADER: &[&str] = &["form_id", "kind", "name", "start_ym"];

pub const SHOMAN_FORMS_HEADER: &[&str] = &[
    "form_id",
    "recipient_number",
    "disease_group",
    "disease_code",
    "form_year",
    "written_date",
    "name_kanji",
    "name_kana",
    "sex",
    "birth_date",
    "postcode",
    "address",
    "pref_code",
    "municipality_code",
    "phone",
    "insured_number",
    "family_history",
    "family_history_relation",
    "onset_ym",
    "diagnosis_category",
    "severity",
    "birth_weight_g",
    "gestational_weeks",
    "height_sd",
    "weight_sd",
    "mother_birth_date",
    "school_status",
    "ventilator",
    "ventilator_start",
    "ventilator_type",
    "ventilator_pattern",
    "institution_code",
    "institution_name",
    "institution_phone",
    "doctor_number",
    "doctor_name",
    "certified",
    "consent",
];

pub const INSTITUTIONS_HEADER: &[&str] = &[
    "institution_code",
    "name",
    "pref_code",
    "municipality_code",
    "kind",
    "phone",
];

/// Appends rows to a byte buffer; `rows` counts completed rows.
#[derive(Default)]
pub(crate) struct Rows {
    pub buf: Vec<u8>,
    pub rows: u64,
    at_start: bool,
}

impl Rows {
    pub(crate) fn new() -> Self {
        Rows {
            buf: Vec::new(),
            rows: 0,
            at_start: true,
        }
    }

    fn sep(&mut self) {
        if !self.at_start {
            self.buf.push(b',');
        }
        self.at_start = false;
    }

    /// A text field, quoted only when RFC 4180 requires it.
    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.sep();
        if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
            self.buf.push(b'"');
            for b in s.bytes() {
                if b == b'"' {
                    self.buf.push(b'"');
                }
                self.buf.push(b);
            }
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(s.as_bytes());
        }
        self
    }

    /// A value whose Display form never needs quoting (numbers, codes).
    pub(crate) fn val(&mut self, v: impl Display) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{v}");
        self
    }

    pub(crate) fn opt(&mut self, v: Option<impl Display>) -> &mut Self {
        match v {
            Some(v) => self.val(v),
            None => self.empty(),
        }
    }

    pub(crate) fn empty(&mut self) -> &mut Self {
        self.sep();
        self
    }

    pub(crate) fn end(&mut self) {
        self.buf.push(b'\n');
        self.rows += 1;
        self.at_start = true;
    }

    pub(crate) fn header(names: &[&str]) -> Vec<u8> {
        let mut r = Rows::new();
        for n in names {
            r.text(n);
        }
        r.end();
        r.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let mut r = Rows::new();
        r.text("plain")
            .text("a,b")
            .text("say \"hi\"")
            .text("two\nlines")
            .empty()
            .val(3);
        r.end();
        assert_eq!(
            String::from_utf8(r.buf).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",,3\n"
        );
        assert_eq!(r.rows, 1);
    }
}
