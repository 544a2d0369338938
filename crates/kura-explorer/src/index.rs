//! The explorer's in-memory index of one snapshot: the columns the three views read, one entry
//! per form that has a research_id, dictionary-encoded and sorted by patient and then by the
//! views' "latest form" order. The server reads it once per snapshot through the sandbox with
//! [`export_sql`] and feeds the rows to an [`IndexBuilder`]; [`ExplorerIndex::raw_views`] then
//! computes exactly the rows that the views' SQL ([`crate::query::view_sql`]) returns, in
//! milliseconds instead of DuckDB's seconds per request (docs/explorer.md, "The index").
//!
//! The index holds no research_id and no institution key: a patient is a dense rank with its
//! record value ([`crate::cellkey::record_value`], computed by the export statement), an
//! institution is a dense rank. Like the raw rows of the SQL path, it never leaves the server.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use crate::catalog::{Catalog, SEXES};
use crate::cellkey::{RecordHash, FINGERPRINT_MODULUS};
use crate::error::ExplorerError;
use crate::query::{record_value_sql, View};
use crate::request::Filters;
use crate::rows::{RawRow, RawView};

/// Patients a treatment name needs before the catalog lists it (as [`Catalog::TREATMENTS_SQL`]).
pub const MIN_TREATMENT_PATIENTS: u64 = 10;

/// The columns of [`export_sql`], in order.
pub const EXPORT_COLUMNS: [&str; 12] = [
    "patient",
    "record_value",
    "disease_no",
    "form_year",
    "sex",
    "age_band",
    "pref_code",
    "diagnosis_category",
    "severity",
    "ventilator",
    "institution",
    "treatments",
];

/// The one statement that reads the index: every form with a research_id, its patient as the
/// dense rank of `research_id` with the patient's record value, its institution as a dense rank,
/// and its treatment names as a list; ordered by patient and then by the views' "latest form"
/// key (`coalesce(written_ym, '') || form_key`), so a patient's last form is their latest.
pub fn export_sql(hash: RecordHash) -> String {
    format!(
        "WITH forms AS (SELECT research_id, form_key, disease_no, form_year, written_ym, sex, \
         age_band, pref_code, diagnosis_category, severity, ventilator, institution_key \
         FROM nanbyo_forms WHERE research_id IS NOT NULL), \
         form_treatments AS (SELECT form_key, list(name) AS names FROM nanbyo_treatments \
         WHERE name IS NOT NULL GROUP BY form_key) \
         SELECT dense_rank() OVER (ORDER BY forms.research_id) AS patient, \
         {rv} AS record_value, \
         forms.disease_no AS disease_no, forms.form_year AS form_year, forms.sex AS sex, \
         forms.age_band AS age_band, forms.pref_code AS pref_code, \
         forms.diagnosis_category AS diagnosis_category, forms.severity AS severity, \
         forms.ventilator AS ventilator, \
         CASE WHEN forms.institution_key IS NULL THEN NULL \
         ELSE dense_rank() OVER (ORDER BY forms.institution_key) END AS institution, \
         form_treatments.names AS treatments \
         FROM forms LEFT JOIN form_treatments ON form_treatments.form_key = forms.form_key \
         ORDER BY forms.research_id, coalesce(forms.written_ym, '') || forms.form_key",
        rv = record_value_sql(hash),
    )
}

/// One row of [`export_sql`] (treatment names are handed in beside it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexRow<'a> {
    pub patient: u64,
    pub record_value: u64,
    pub disease_no: Option<i64>,
    pub form_year: Option<i64>,
    pub sex: Option<i64>,
    pub age_band: Option<&'a str>,
    pub pref_code: Option<&'a str>,
    pub diagnosis_category: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub ventilator: Option<i64>,
    pub institution: Option<i64>,
}

/// The distinct values of one column; code 0 is NULL.
#[derive(Debug, Clone)]
struct Dict<T> {
    values: Vec<Option<T>>,
    codes: HashMap<T, u32>,
}

impl<T: Eq + Hash + Clone> Dict<T> {
    fn new() -> Dict<T> {
        Dict {
            values: vec![None],
            codes: HashMap::new(),
        }
    }

    fn code<Q>(&mut self, v: Option<&Q>) -> u32
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = T> + ?Sized,
    {
        let Some(v) = v else { return 0 };
        if let Some(&c) = self.codes.get(v) {
            return c;
        }
        let c = self.values.len() as u32;
        self.values.push(Some(v.to_owned()));
        self.codes.insert(v.to_owned(), c);
        c
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    /// A table by code: true for the codes of `wanted` (never for NULL, as SQL's `IN`).
    fn allowed<'q, Q>(&self, wanted: impl IntoIterator<Item = &'q Q>) -> Vec<bool>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'q,
    {
        let mut table = vec![false; self.len()];
        for w in wanted {
            if let Some(&c) = self.codes.get(w) {
                table[c as usize] = true;
            }
        }
        table
    }
}

/// Narrows a dictionary code to a column's storage type.
fn narrow<N: TryFrom<u32>>(code: u32, column: &str) -> Result<N, ExplorerError> {
    N::try_from(code).map_err(|_| {
        ExplorerError::Index(format!(
            "column {column} has more distinct values than the index stores ({code}); the \
             explorer's closed lists are far smaller, so the snapshot is not what it expects"
        ))
    })
}

/// Builds an [`ExplorerIndex`] from the rows of [`export_sql`], in their order.
#[derive(Debug)]
pub struct IndexBuilder {
    index: ExplorerIndex,
    last_patient: Option<u64>,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        IndexBuilder::new()
    }
}

impl IndexBuilder {
    pub fn new() -> IndexBuilder {
        IndexBuilder {
            index: ExplorerIndex {
                patient: Vec::new(),
                disease: Vec::new(),
                year: Vec::new(),
                sex: Vec::new(),
                age: Vec::new(),
                pref: Vec::new(),
                diag: Vec::new(),
                sev: Vec::new(),
                vent: Vec::new(),
                inst: Vec::new(),
                treat_start: vec![0],
                treat_codes: Vec::new(),
                record_values: Vec::new(),
                by_disease: Vec::new(),
                d_disease: Dict::new(),
                d_year: Dict::new(),
                d_sex: Dict::new(),
                d_age: Dict::new(),
                d_pref: Dict::new(),
                d_diag: Dict::new(),
                d_sev: Dict::new(),
                d_vent: Dict::new(),
                d_inst: Dict::new(),
                d_treat: Dict::new(),
                pref_slots: Slots::default(),
                year_slots: Slots::default(),
                sev_slots: Slots::default(),
            },
            last_patient: None,
        }
    }

    /// Adds one form. Rows must come in the export's order: patients ascending, each patient's
    /// forms together, one record value per patient. A refused row leaves the index as it was.
    pub fn push<'t>(
        &mut self,
        row: &IndexRow<'_>,
        treatments: impl IntoIterator<Item = &'t str>,
    ) -> Result<(), ExplorerError> {
        let ix = &mut self.index;
        let form = ix.patient.len();
        let refuse = |why: String| Err(ExplorerError::Index(format!("row {}: {why}", form + 1)));
        if u32::try_from(form + 1).is_err() {
            return refuse("more than 4,294,967,295 forms: the index cannot hold them".into());
        }
        let new_patient = match self.last_patient {
            Some(last) if row.patient < last => {
                return refuse(format!(
                    "patient {} after patient {last}: the rows are not in the export's order",
                    row.patient
                ))
            }
            Some(last) if row.patient == last => {
                if ix.record_values.last() != Some(&row.record_value) {
                    return refuse(format!("patient {} has two record values", row.patient));
                }
                false
            }
            _ => {
                if row.record_value >= FINGERPRINT_MODULUS {
                    return refuse(format!(
                        "record value {} is not below 2^60",
                        row.record_value
                    ));
                }
                true
            }
        };
        let disease: u16 = narrow(ix.d_disease.code(row.disease_no.as_ref()), "disease_no")?;
        let year: u16 = narrow(ix.d_year.code(row.form_year.as_ref()), "form_year")?;
        let sex: u8 = narrow(ix.d_sex.code(row.sex.as_ref()), "sex")?;
        let age: u8 = narrow(ix.d_age.code(row.age_band), "age_band")?;
        let pref: u8 = narrow(ix.d_pref.code(row.pref_code), "pref_code")?;
        let diag: u8 = narrow(ix.d_diag.code(row.diagnosis_category), "diagnosis_category")?;
        let sev: u8 = narrow(ix.d_sev.code(row.severity), "severity")?;
        let vent: u8 = narrow(ix.d_vent.code(row.ventilator.as_ref()), "ventilator")?;
        let inst = ix.d_inst.code(row.institution.as_ref());
        let before = ix.treat_codes.len();
        for name in treatments {
            match narrow::<u16>(ix.d_treat.code(Some(name)), "treatments") {
                Ok(code) => ix.treat_codes.push(code),
                Err(e) => {
                    ix.treat_codes.truncate(before);
                    return Err(e);
                }
            }
        }
        if new_patient {
            ix.record_values.push(row.record_value);
            self.last_patient = Some(row.patient);
        }
        ix.patient.push((ix.record_values.len() - 1) as u32);
        ix.disease.push(disease);
        if ix.by_disease.len() <= usize::from(disease) {
            ix.by_disease
                .resize_with(usize::from(disease) + 1, Vec::new);
        }
        ix.by_disease[usize::from(disease)].push(form as u32);
        ix.year.push(year);
        ix.sex.push(sex);
        ix.age.push(age);
        ix.pref.push(pref);
        ix.diag.push(diag);
        ix.sev.push(sev);
        ix.vent.push(vent);
        ix.inst.push(inst);
        ix.treat_start.push(ix.treat_codes.len() as u32);
        Ok(())
    }

    pub fn finish(self) -> ExplorerIndex {
        let mut ix = self.index;
        ix.pref_slots = Slots::new(&ix.d_pref, |v| v.cloned().unwrap_or_default());
        ix.year_slots = Slots::new(&ix.d_year, |v| v.map(i64::to_string).unwrap_or_default());
        ix.sev_slots = Slots::new(&ix.d_sev, |v| {
            v.cloned().unwrap_or_else(|| "unknown".to_string())
        });
        ix
    }
}

/// The forms of one snapshot, column by column (see the module comment).
#[derive(Debug, Clone)]
pub struct ExplorerIndex {
    /// Per form (sorted by patient, then latest-form order): dictionary codes.
    patient: Vec<u32>,
    disease: Vec<u16>,
    year: Vec<u16>,
    sex: Vec<u8>,
    age: Vec<u8>,
    pref: Vec<u8>,
    diag: Vec<u8>,
    sev: Vec<u8>,
    vent: Vec<u8>,
    inst: Vec<u32>,
    /// Form `i`'s treatment codes are `treat_codes[treat_start[i]..treat_start[i + 1]]`.
    treat_start: Vec<u32>,
    treat_codes: Vec<u16>,
    /// Per patient.
    record_values: Vec<u64>,
    /// Per disease code: its forms, ascending.
    by_disease: Vec<Vec<u32>>,
    d_disease: Dict<i64>,
    d_year: Dict<i64>,
    d_sex: Dict<i64>,
    d_age: Dict<String>,
    d_pref: Dict<String>,
    d_diag: Dict<String>,
    d_sev: Dict<String>,
    d_vent: Dict<i64>,
    d_inst: Dict<i64>,
    d_treat: Dict<String>,
    /// The cells of the dimension columns' codes (fixed once the index is built).
    pref_slots: Slots,
    year_slots: Slots,
    sev_slots: Slots,
}

/// A request compiled to tables by dictionary code (`None`: no filter).
struct Compiled {
    disease: Option<Vec<bool>>,
    year: Option<Vec<bool>>,
    sex: Option<Vec<bool>>,
    age: Option<Vec<bool>>,
    pref: Option<Vec<bool>>,
    diag: Option<Vec<bool>>,
    sev: Option<Vec<bool>>,
    vent: Option<Vec<bool>>,
    treat: Option<Vec<bool>>,
}

fn pass<C: Into<usize>>(table: &Option<Vec<bool>>, code: C) -> bool {
    table.as_ref().is_none_or(|t| t[code.into()])
}

/// One cell being counted: patients, fingerprint, and the institutions as a bit set.
#[derive(Debug, Clone, Default)]
struct Acc {
    patients: u64,
    fingerprint: u64,
    institutions: Vec<u64>,
}

impl Acc {
    fn add(&mut self, record_value: u64, institutions: &[u32], words: usize) {
        self.patients += 1;
        self.fingerprint = (self.fingerprint + record_value) & (FINGERPRINT_MODULUS - 1);
        if self.institutions.is_empty() {
            self.institutions = vec![0; words];
        }
        for &i in institutions {
            self.institutions[(i / 64) as usize] |= 1 << (i % 64);
        }
    }

    fn row(&self, dims: Vec<String>) -> RawRow {
        RawRow {
            dims,
            patients: self.patients,
            institutions: self
                .institutions
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum(),
            fingerprint: (self.patients > 0).then_some(self.fingerprint),
        }
    }
}

/// Output labels of a dimension's codes, with codes that print the same merged into one slot
/// (as the SQL groups on the printed value: NULL severity and `unknown` are one cell).
#[derive(Debug, Clone, Default)]
struct Slots {
    of_code: Vec<usize>,
    labels: Vec<String>,
}

impl Slots {
    fn new<T>(dict: &Dict<T>, label: impl Fn(Option<&T>) -> String) -> Slots {
        let mut labels: Vec<String> = Vec::new();
        let of_code = dict
            .values
            .iter()
            .map(|v| {
                let l = label(v.as_ref());
                match labels.iter().position(|x| *x == l) {
                    Some(p) => p,
                    None => {
                        labels.push(l);
                        labels.len() - 1
                    }
                }
            })
            .collect();
        Slots { of_code, labels }
    }
}

/// The bucket of a patient's number of distinct institutions (`1` also for none).
fn bucket(n: usize) -> usize {
    match n {
        0 | 1 => 0,
        2 => 1,
        3 | 4 => 2,
        _ => 3,
    }
}

const BUCKETS: [&str; 4] = ["1", "2", "3-4", "5+"];

/// The three views being counted.
struct Views {
    words: usize,
    /// Per prefecture slot, then the total.
    by_pref: Vec<Acc>,
    /// Per year slot: per severity slot, then the year's total.
    by_sev: Vec<Vec<Acc>>,
    /// Per bucket, then the total.
    by_inst: Vec<Acc>,
}

impl Views {
    fn new(ix: &ExplorerIndex) -> Views {
        Views {
            words: ix.d_inst.len().div_ceil(64),
            by_pref: vec![Acc::default(); ix.pref_slots.labels.len() + 1],
            by_sev: vec![
                vec![Acc::default(); ix.sev_slots.labels.len() + 1];
                ix.year_slots.labels.len()
            ],
            by_inst: vec![Acc::default(); BUCKETS.len() + 1],
        }
    }

    /// Counts one patient from their matching forms (in latest-form order).
    fn patient(&mut self, ix: &ExplorerIndex, forms: &[u32], scratch: &mut Scratch) {
        let Some(&last) = forms.last() else { return };
        let rv = ix.record_values[ix.patient[last as usize] as usize];
        let w = self.words;
        scratch.institutions.clear();
        scratch.years.clear();
        for &f in forms {
            let f = f as usize;
            if ix.inst[f] != 0 {
                scratch.institutions.push(ix.inst[f]);
            }
            let year = ix.year_slots.of_code[usize::from(ix.year[f])];
            let sev = ix.sev_slots.of_code[usize::from(ix.sev[f])];
            // Later forms overwrite: the year's latest form decides its severity.
            match scratch.years.iter_mut().find(|(y, _)| *y == year) {
                Some(entry) => entry.1 = sev,
                None => scratch.years.push((year, sev)),
            }
        }
        scratch.institutions.sort_unstable();
        scratch.institutions.dedup();
        let inst = &scratch.institutions;
        let pref = ix.pref_slots.of_code[usize::from(ix.pref[last as usize])];
        let total = self.by_pref.len() - 1;
        self.by_pref[pref].add(rv, inst, w);
        self.by_pref[total].add(rv, inst, w);
        for &(year, sev) in &scratch.years {
            let line = &mut self.by_sev[year];
            let total = line.len() - 1;
            line[sev].add(rv, inst, w);
            line[total].add(rv, inst, w);
        }
        let total = self.by_inst.len() - 1;
        self.by_inst[bucket(inst.len())].add(rv, inst, w);
        self.by_inst[total].add(rv, inst, w);
    }

    fn finish(self, ix: &ExplorerIndex) -> Vec<RawView> {
        let total = || kura_sdc::TOTAL.to_string();
        let line = |accs: &[Acc], labels: &[String], prefix: &[String]| -> Vec<RawRow> {
            accs.iter()
                .enumerate()
                .filter(|(_, a)| a.patients > 0)
                .map(|(i, a)| {
                    let mut dims = prefix.to_vec();
                    dims.push(labels.get(i).cloned().unwrap_or_else(total));
                    a.row(dims)
                })
                .collect()
        };
        let mut pref = line(&self.by_pref, &ix.pref_slots.labels, &[]);
        let mut sev: Vec<RawRow> = self
            .by_sev
            .iter()
            .enumerate()
            .flat_map(|(y, accs)| {
                line(
                    accs,
                    &ix.sev_slots.labels,
                    &[ix.year_slots.labels[y].clone()],
                )
            })
            .collect();
        let labels: Vec<String> = BUCKETS.iter().map(|b| b.to_string()).collect();
        let mut inst = line(&self.by_inst, &labels, &[]);
        // The grand total of an empty population is still a row (SQL's grouping set `()`).
        for rows in [&mut pref, &mut inst] {
            if rows.is_empty() {
                rows.push(RawRow {
                    dims: vec![total()],
                    patients: 0,
                    institutions: 0,
                    fingerprint: None,
                });
            }
        }
        for rows in [&mut pref, &mut sev, &mut inst] {
            rows.sort_by(|a, b| a.dims.cmp(&b.dims));
        }
        vec![
            RawView::new(View::ByPrefecture, pref),
            RawView::new(View::BySeverity, sev),
            RawView::new(View::ByInstitutions, inst),
        ]
    }
}

/// Reused buffers for one patient.
#[derive(Default)]
struct Scratch {
    institutions: Vec<u32>,
    years: Vec<(usize, usize)>,
}

impl ExplorerIndex {
    /// Forms in the index.
    pub fn forms(&self) -> usize {
        self.patient.len()
    }

    /// Distinct patients in the index.
    pub fn patients(&self) -> usize {
        self.record_values.len()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        let n = self.forms();
        n * (4 + 2 + 2 + 6 + 4 + 4 + 4)
            + self.treat_codes.len() * 2
            + self.record_values.len() * 8
            + self
                .d_treat
                .values
                .iter()
                .flatten()
                .map(String::len)
                .sum::<usize>()
    }

    /// The closed lists of this snapshot: treatment names given to at least
    /// [`MIN_TREATMENT_PATIENTS`] patients, and the fiscal years of the forms.
    pub fn catalog(&self) -> Result<Catalog, ExplorerError> {
        let mut patients = vec![0u64; self.d_treat.len()];
        let mut last_seen = vec![u32::MAX; self.d_treat.len()];
        for form in 0..self.forms() {
            let p = self.patient[form];
            for &t in self.treatments_of(form) {
                let t = usize::from(t);
                if last_seen[t] != p {
                    last_seen[t] = p;
                    patients[t] += 1;
                }
            }
        }
        let names = self
            .d_treat
            .values
            .iter()
            .zip(&patients)
            .filter(|(_, &n)| n >= MIN_TREATMENT_PATIENTS)
            .filter_map(|(name, _)| name.clone());
        let mut years = Vec::new();
        for y in self.d_year.values.iter().flatten() {
            let year = u16::try_from(*y).map_err(|_| {
                ExplorerError::Catalog(format!("fiscal year {y} is outside 1900..=2200"))
            })?;
            years.push(year);
        }
        Catalog::new(names, years)
    }

    fn treatments_of(&self, form: usize) -> &[u16] {
        let (a, b) = (self.treat_start[form], self.treat_start[form + 1]);
        &self.treat_codes[a as usize..b as usize]
    }

    fn compile(&self, f: &Filters) -> Compiled {
        let ints = |v: &[u16]| v.iter().map(|&n| i64::from(n)).collect::<Vec<i64>>();
        let some = |on: bool, table: Vec<bool>| on.then_some(table);
        let sexes: Vec<i64> = f
            .sex
            .iter()
            .filter_map(|s| SEXES.iter().find(|(k, _)| k == s))
            .map(|(_, code)| *code)
            .collect();
        let vent: Vec<i64> = f.ventilator.map(i64::from).into_iter().collect();
        Compiled {
            disease: some(
                !f.diseases.is_empty(),
                self.d_disease.allowed(&ints(&f.diseases)),
            ),
            year: some(
                !f.fiscal_years.is_empty(),
                self.d_year.allowed(&ints(&f.fiscal_years)),
            ),
            sex: some(!f.sex.is_empty(), self.d_sex.allowed(&sexes)),
            age: some(
                !f.age_bands.is_empty(),
                self.d_age.allowed(f.age_bands.iter().copied()),
            ),
            pref: some(
                !f.prefectures.is_empty(),
                self.d_pref.allowed(f.prefectures.iter().copied()),
            ),
            diag: some(
                !f.diagnosis_category.is_empty(),
                self.d_diag.allowed(f.diagnosis_category.iter().copied()),
            ),
            sev: some(
                !f.severity.is_empty(),
                self.d_sev.allowed(f.severity.iter().copied()),
            ),
            vent: some(f.ventilator.is_some(), self.d_vent.allowed(&vent)),
            treat: some(
                !f.treatments.is_empty(),
                self.d_treat
                    .allowed(f.treatments.iter().map(String::as_str)),
            ),
        }
    }

    fn matches(&self, c: &Compiled, form: usize) -> bool {
        pass(&c.disease, self.disease[form])
            && pass(&c.year, self.year[form])
            && pass(&c.sex, self.sex[form])
            && pass(&c.age, self.age[form])
            && pass(&c.pref, self.pref[form])
            && pass(&c.diag, self.diag[form])
            && pass(&c.sev, self.sev[form])
            && pass(&c.vent, self.vent[form])
            && c.treat.as_ref().is_none_or(|t| {
                self.treatments_of(form)
                    .iter()
                    .any(|&code| t[usize::from(code)])
            })
    }

    /// The rows of the three views for `filters`, in [`View::ALL`] order: the same rows (sorted
    /// by their dimensions) as the views' SQL returns on the snapshot the index was read from.
    pub fn raw_views(&self, filters: &Filters) -> Vec<RawView> {
        let c = self.compile(filters);
        let mut views = Views::new(self);
        let mut scratch = Scratch::default();
        let mut run: Vec<u32> = Vec::new();
        let mut each = |form: u32| {
            if !self.matches(&c, form as usize) {
                return;
            }
            if run
                .last()
                .is_some_and(|&l| self.patient[l as usize] != self.patient[form as usize])
            {
                views.patient(self, &run, &mut scratch);
                run.clear();
            }
            run.push(form);
        };
        match &c.disease {
            // Only the requested diseases' forms, merged back into patient order.
            Some(table) => {
                let mut forms: Vec<u32> = table
                    .iter()
                    .enumerate()
                    .filter(|(_, &on)| on)
                    .filter_map(|(code, _)| self.by_disease.get(code))
                    .flatten()
                    .copied()
                    .collect();
                forms.sort_unstable();
                forms.into_iter().for_each(&mut each);
            }
            None => (0..self.forms() as u32).for_each(&mut each),
        }
        views.patient(self, &run, &mut scratch);
        views.finish(self)
    }
}
