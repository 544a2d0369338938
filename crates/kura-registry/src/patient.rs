//! What 難病 and 小慢 forms share: a patient's identity and how it changes between yearly forms,
//! form years and dates, identifiers, and the columns both layouts write the same way.

use crate::csvrow::Rows;
use crate::date::Date;
use crate::names::Name;
use crate::rng::{between, chance, index, Cumulative, PatientRng};
use crate::world::{Residence, World};
use crate::{disease::DiseaseModel, shoman::ShomanModel};

/// The last fiscal year forms are written for, and the first (the 2015 intractable-disease act).
pub(crate) const FIRST_YEAR: i32 = 2015;
pub(crate) const LAST_YEAR: i32 = 2025;

/// Salts that make the 難病 and 小慢 numbering of the same person unrelated.
pub(crate) const SALT_NANBYO: u64 = 3_170_021;
pub(crate) const SALT_SHOMAN: u64 = 5_550_343;

/// Everything a block of patients needs, shared read-only across threads.
pub(crate) struct Ctx {
    pub seed: u64,
    pub world: &'static World,
    pub diseases: DiseaseModel,
    pub shoman: ShomanModel,
    pub forms_per_patient: Cumulative,
}

/// Output of one block of patients, written to the files in block order.
pub(crate) struct BlockOut {
    pub nanbyo: Rows,
    pub treatments: Rows,
    pub shoman: Rows,
    pub institutions_used: Vec<bool>,
}

impl BlockOut {
    pub(crate) fn new(n_institutions: usize) -> Self {
        BlockOut {
            nanbyo: Rows::new(),
            treatments: Rows::new(),
            shoman: Rows::new(),
            institutions_used: vec![false; n_institutions],
        }
    }
}

/// Who the patient is on one form; fields change over time (marriage, insurer, moves).
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: Name,
    pub female: bool,
    pub birth: Date,
    pub residence: Residence,
    pub insured: u32,
    pub recipient: String,
}

/// A form number: an affine bijection of the patient index, so ids are unique but not
/// sequential, and the 難病 and 小慢 ids of one person are unrelated.
pub(crate) fn form_number(index: u64, salt: u64) -> u64 {
    (index.wrapping_mul(48_271).wrapping_add(salt)) % 100_000_000
}

/// 受給者番号: prefecture code and six digits, unique per registry for up to a million patients.
pub(crate) fn recipient_number(world: &World, pref: usize, index: u64, salt: u64) -> String {
    let local = (index % 1_000_000)
        .wrapping_mul(387_433)
        .wrapping_add(salt * 31)
        % 1_000_000;
    format!("{}{local:06}", world.prefs[pref].code)
}

pub(crate) fn insured_number(rng: &mut PatientRng) -> u32 {
    between(rng, 10_000_000, 99_999_999) as u32
}

/// Up to `k` fiscal years ending at a last year that is most often the latest one (current
/// certificate holders), walking back with an occasional missed year, none before
/// [`FIRST_YEAR`]; so every year has a similar number of forms.
pub(crate) fn form_years_ending(rng: &mut PatientRng, k: usize) -> Vec<i32> {
    let last = if chance(rng, 0.4) {
        LAST_YEAR
    } else {
        between(rng, i64::from(FIRST_YEAR), i64::from(LAST_YEAR) - 1) as i32
    };
    let mut years = Vec::with_capacity(k);
    let mut y = last;
    while years.len() < k && y >= FIRST_YEAR {
        years.push(y);
        y -= if chance(rng, 0.1) { 2 } else { 1 };
    }
    years.reverse();
    years
}

/// `k` fiscal years from `first`, consecutive with an occasional missed year, none after
/// [`LAST_YEAR`].
pub(crate) fn form_years(rng: &mut PatientRng, first: i32, k: usize) -> Vec<i32> {
    let mut years = Vec::with_capacity(k);
    let mut y = first;
    while years.len() < k && y <= LAST_YEAR {
        years.push(y);
        y += if chance(rng, 0.1) { 2 } else { 1 };
    }
    years
}

/// Renewal forms are written between April and December of their fiscal year.
pub(crate) fn written_date(rng: &mut PatientRng, fy: i32) -> Date {
    Date::new(fy, 4, 1).add_days(between(rng, 0, 270))
}

pub(crate) fn day_in_year(rng: &mut PatientRng, year: i32) -> Date {
    Date::new(year, 1, 1).add_days(between(rng, 0, 364))
}

/// A uniformly random day in `from..=to` (or `from` if the range is empty).
pub(crate) fn day_between(rng: &mut PatientRng, from: Date, to: Date) -> Date {
    Date::from_days(between(rng, from.days(), to.days()))
}

/// Date of birth as one form writes it: mostly ISO, sometimes in Japanese era form.
pub(crate) fn birth_as_written(rng: &mut PatientRng, birth: Date) -> String {
    if chance(rng, 0.06) {
        birth.era()
    } else {
        birth.iso()
    }
}

pub(crate) struct FamilyHistory {
    pub code: &'static str,
    pub relation: Option<&'static str>,
}

pub(crate) fn family_history(rng: &mut PatientRng, hereditary: bool) -> FamilyHistory {
    let yes = if hereditary { 0.35 } else { 0.06 };
    let x: f64 = rand::Rng::random(rng);
    if x < yes {
        const REL: [&str; 4] = ["parent", "sibling", "child", "other"];
        FamilyHistory {
            code: "yes",
            relation: Some(REL[index(rng, 4)]),
        }
    } else if x < yes + 0.12 {
        FamilyHistory {
            code: "unknown",
            relation: None,
        }
    } else {
        FamilyHistory {
            code: "none",
            relation: None,
        }
    }
}

pub(crate) fn severity_code(s: f64) -> &'static str {
    if s < 0.34 {
        "mild"
    } else if s < 0.67 {
        "moderate"
    } else {
        "severe"
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Ventilation {
    pub start: Date,
    pub kind: &'static str,
    pub pattern: &'static str,
}

pub(crate) fn start_ventilation(rng: &mut PatientRng, written: Date, onset: Date) -> Ventilation {
    let invasive = chance(rng, 0.4);
    let pattern = if invasive && chance(rng, 0.85) {
        "continuous"
    } else {
        ["continuous", "night_only", "intermittent"][index(rng, 3)]
    };
    let earliest = onset.max(written.add_days(-700));
    Ventilation {
        start: day_between(rng, earliest, written),
        kind: if invasive { "invasive" } else { "non_invasive" },
        pattern,
    }
}

/// Applies the between-forms changes a registry sees: a move (sometimes to another prefecture,
/// which also means a new recipient number), a new insurer, a married name.
pub(crate) fn change_identity(
    rng: &mut PatientRng,
    ctx: &Ctx,
    id: &mut Identity,
    age: i32,
    new_recipient: impl FnOnce(usize) -> String,
) {
    if chance(rng, 0.05) {
        let other_pref = chance(rng, 0.2);
        let pref = if other_pref {
            None
        } else {
            Some(id.residence.pref)
        };
        let old_pref = id.residence.pref;
        id.residence = ctx.world.residence(rng, pref);
        if id.residence.pref != old_pref {
            id.recipient = new_recipient(id.residence.pref);
        }
        if chance(rng, 0.3) {
            id.insured = insured_number(rng);
        }
    }
    if chance(rng, 0.04) {
        id.insured = insured_number(rng);
    }
    if id.female && (20..=45).contains(&age) && chance(rng, 0.04) {
        id.name.surname = ctx.world.names.surname(rng);
        id.insured = insured_number(rng);
    }
}

/// Columns `name_kanji` .. `onset_ym`, identical in both layouts.
pub(crate) fn write_person(
    rows: &mut Rows,
    rng: &mut PatientRng,
    world: &World,
    id: &Identity,
    family: &FamilyHistory,
    onset: Date,
) {
    rows.text(&id.name.kanji())
        .text(&id.name.kana_as_written(rng))
        .val(if id.female { 2 } else { 1 })
        .text(&birth_as_written(rng, id.birth))
        .text(&id.residence.postcode)
        .text(&id.residence.address)
        .text(world.prefs[id.residence.pref].code)
        .text(world.municipality_code(&id.residence))
        .text(&id.residence.phone)
        .val(id.insured)
        .text(family.code)
        .opt(family.relation)
        .text(&onset.ym());
}

/// Columns `ventilator` .. `consent`, identical in both layouts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_tail(
    rows: &mut Rows,
    world: &World,
    used: &mut [bool],
    vent: Option<&Ventilation>,
    institution: usize,
    doctor: usize,
    certified: bool,
    consent: bool,
) {
    match vent {
        Some(v) => rows
            .val(1)
            .text(&v.start.iso())
            .text(v.kind)
            .text(v.pattern),
        None => rows.val(0).empty().empty().empty(),
    };
    let inst = &world.institutions[institution];
    if let Some(u) = used.get_mut(institution) {
        *u = true;
    }
    let doc = &inst.doctors[doctor % inst.doctors.len()];
    rows.text(&inst.code)
        .text(&inst.name)
        .text(&inst.phone)
        .text(&doc.number)
        .text(&doc.name)
        .val(u8::from(certified))
        .val(u8::from(consent));
    rows.end();
}
