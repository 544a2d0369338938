//! One 小慢 child: a disease in one of the 16 groups (synthetic codes `GG-NNN`), yearly medical
//! opinion forms from age 0 to 19 with perinatal and growth data, and, for some children born
//! early enough, a continuation as an adult 難病 patient (transition care).

use crate::date::Date;
use crate::nanbyo::{self, Transition};
use crate::patient::{
    change_identity, day_between, day_in_year, family_history, form_number, form_years,
    insured_number, recipient_number, severity_code, start_ventilation, write_person, write_tail,
    written_date, BlockOut, Ctx, Identity, Ventilation, FIRST_YEAR, LAST_YEAR, SALT_SHOMAN,
};
use crate::rng::{between, chance, index, normal, Cumulative, PatientRng};

/// (diseases in the group, share of children, related designated diseases for transition).
/// Group sizes sum to 788; shares follow the published 小慢 recipient mix roughly.
const GROUPS: [(u16, f64, &[u16]); 16] = [
    (91, 12.0, &[]),                           // 1 悪性新生物 (no designated counterpart)
    (47, 7.0, &[66, 222, 218, 67]),            // 2 慢性腎疾患
    (14, 3.0, &[228, 229, 340, 330]),          // 3 慢性呼吸器疾患
    (97, 17.0, &[215, 210, 209, 57, 58]),      // 4 慢性心疾患
    (92, 24.0, &[78, 81, 235, 72]),            // 5 内分泌疾患
    (24, 3.0, &[107, 49, 50, 56]),             // 6 膠原病
    (7, 7.0, &[]),                             // 7 糖尿病
    (100, 3.0, &[19, 21, 240, 251, 257, 171]), // 8 先天性代謝異常
    (50, 3.0, &[60, 63, 65, 284, 285]),        // 9 血液疾患
    (56, 0.6, &[65, 106, 325]),                // 10 免疫疾患
    (89, 9.0, &[113, 140, 144, 145, 3, 156, 22]), // 11 神経・筋疾患
    (46, 6.0, &[97, 96, 296, 291, 297]),       // 12 慢性消化器疾患
    (37, 3.0, &[193, 201, 203, 195, 187]),     // 13 染色体又は遺伝子に変化を伴う症候群
    (13, 0.5, &[36, 160, 159]),                // 14 皮膚疾患
    (16, 0.5, &[274, 276, 167]),               // 15 骨系統疾患
    (9, 0.3, &[277, 278, 280, 227]),           // 16 脈管系疾患
];

/// Share of children born early enough to be adults by the last form year who continue in 難病.
const TRANSITION_RATE: f64 = 0.08;

pub(crate) struct ShomanModel {
    groups: Cumulative,
    codes: Vec<Cumulative>,
}

impl ShomanModel {
    pub(crate) fn new() -> Self {
        ShomanModel {
            groups: Cumulative::new(GROUPS.iter().map(|g| g.1)),
            codes: GROUPS
                .iter()
                .map(|g| Cumulative::new((1..=g.0).map(|r| 1.0 / f64::from(r))))
                .collect(),
        }
    }
}

fn school_status(rng: &mut PatientRng, age: i32, group: usize) -> &'static str {
    let special = if matches!(group, 11 | 13) { 0.25 } else { 0.03 };
    match age {
        ..=5 => "preschool",
        6..=17 if chance(rng, special) => "special_support",
        6..=11 => "elementary",
        12..=14 => "junior_high",
        15..=17 => "high_school",
        _ => ["working", "none", "high_school"][index(rng, 3)],
    }
}

pub(crate) fn patient(ctx: &Ctx, rng: &mut PatientRng, patient_index: u64, out: &mut BlockOut) {
    let world = ctx.world;
    let g = ctx.shoman.groups.sample(rng);
    let group = g + 1;
    let code = 1 + ctx.shoman.codes[g].sample(rng);
    let k = 1 + ctx.forms_per_patient.sample(rng);
    let first = between(rng, i64::from(FIRST_YEAR), i64::from(LAST_YEAR)) as i32;
    let age0 = if chance(rng, 0.05) {
        0
    } else {
        between(rng, 0, 17) as i32
    };
    let female = chance(rng, 0.48);
    let birth = day_in_year(rng, first - age0 - 1);
    let residence = world.residence(rng, None);
    let recipient = recipient_number(world, residence.pref, patient_index, SALT_SHOMAN);
    let mut id = Identity {
        name: world.names.person(rng, female, birth.year),
        female,
        birth,
        residence,
        insured: insured_number(rng),
        recipient,
    };
    let congenital = matches!(group, 4 | 8 | 13 | 15);
    let first_written = Date::new(first, 4, 1);
    let onset = if congenital && chance(rng, 0.7) {
        birth
    } else {
        day_between(rng, birth, first_written.max(birth))
    };
    let preterm = chance(rng, 0.1);
    let weeks = if preterm {
        between(rng, 23, 36)
    } else {
        between(rng, 37, 41)
    };
    let weight_g = (normal(rng, 3050.0 - 190.0 * (40.0 - weeks as f64).max(0.0), 380.0))
        .clamp(400.0, 5200.0) as u32;
    let mother_age_days = (normal(rng, 31.5, 4.8).clamp(16.0, 47.0) * 365.25) as i64;
    let mother_birth = birth.add_days(-mother_age_days);
    let height_base = normal(rng, -0.6, 1.1);
    let weight_base = normal(rng, -0.5, 1.2);
    let family = family_history(rng, matches!(group, 8 | 13 | 15));
    let definite = chance(rng, 0.92);
    let consents = chance(rng, 0.9);
    let mut institution = world.institution(rng, id.residence.pref, true);
    let mut doctor = index(rng, 16);
    let vent_p = match group {
        11 => 0.12,
        3 | 13 => 0.08,
        _ => 0.005,
    };
    let number = form_number(patient_index, SALT_SHOMAN);
    let mut s: f64 = normal(rng, 0.35, 0.2).clamp(0.0, 1.0);
    let mut vent: Option<Ventilation> = None;
    let mut last_year = first;
    for (j, fy) in form_years(rng, first, k).into_iter().enumerate() {
        let written = written_date(rng, fy);
        let age = birth.age_on(written);
        if age > 19 {
            break;
        }
        if j > 0 {
            s = (s + normal(rng, -0.01, 0.08)).clamp(0.0, 1.0);
            change_identity(rng, ctx, &mut id, 0, |pref| {
                recipient_number(world, pref, patient_index, SALT_SHOMAN)
            });
            if chance(rng, 0.04) {
                institution = world.institution(rng, id.residence.pref, true);
                doctor = index(rng, 16);
            }
        }
        last_year = fy;
        if vent.is_none() && chance(rng, vent_p * (0.3 + s)) {
            vent = Some(start_ventilation(rng, written, onset));
        }
        let form_id = format!("C{number:08}-{fy}");
        let rows = &mut out.shoman;
        rows.text(&form_id)
            .text(&id.recipient)
            .val(group)
            .text(&format!("{group:02}-{code:03}"))
            .val(fy)
            .text(&written.iso());
        write_person(rows, rng, world, &id, &family, onset);
        let age_april = birth.age_on(Date::new(fy, 4, 1));
        rows.text(if definite { "definite" } else { "probable" })
            .text(severity_code(s))
            .val(weight_g)
            .val(weeks)
            .val(format!("{:.1}", height_base + normal(rng, 0.0, 0.2)))
            .val(format!("{:.1}", weight_base + normal(rng, 0.0, 0.25)))
            .text(&mother_birth.iso())
            .text(school_status(rng, age_april, group));
        let mild = s < 0.34;
        let certified = !chance(rng, if mild { 0.1 } else { 0.02 });
        let consent = consents != chance(rng, 0.02);
        write_tail(
            rows,
            world,
            &mut out.institutions_used,
            vent.as_ref(),
            institution,
            doctor,
            certified,
            consent,
        );
    }

    // Transition care: the same person (kana, sex, date of birth) on adult 難病 forms for a
    // related designated disease, from the fiscal year they are surely 20.
    let related = GROUPS[g].2;
    let adult_from = (last_year + 1).max(birth.year + 21);
    if !related.is_empty() && adult_from <= LAST_YEAR && chance(rng, TRANSITION_RATE) {
        if chance(rng, 0.3) {
            let keep = Some(id.residence.pref).filter(|_| chance(rng, 0.6));
            id.residence = world.residence(rng, keep);
        }
        id.recipient = recipient_number(
            world,
            id.residence.pref,
            patient_index,
            crate::patient::SALT_NANBYO,
        );
        id.insured = if chance(rng, 0.7) {
            insured_number(rng)
        } else {
            id.insured
        };
        let disease_no = related[index(rng, related.len())];
        let t = Transition {
            identity: id,
            disease_no,
            first_year: adult_from,
            onset,
        };
        nanbyo::patient(ctx, rng, patient_index, out, Some(t));
    }
}
