//! One 難病 patient: a designated disease, a few yearly clinical survey forms with drifting
//! severity, scores and labs, and the treatment history each form reports.

use rand::Rng;

use crate::date::Date;
use crate::disease::{sample_age, AgeModel, Profile};
use crate::patient::{
    change_identity, day_between, day_in_year, family_history, form_number, form_years,
    form_years_ending, insured_number, recipient_number, severity_code, start_ventilation,
    write_person, write_tail, written_date, BlockOut, Ctx, Identity, Ventilation, LAST_YEAR,
    SALT_NANBYO,
};
use crate::rng::{between, chance, index, normal, PatientRng};

/// A 小慢 child who continues as an adult 難病 patient (transition care).
pub(crate) struct Transition {
    pub identity: Identity,
    pub disease_no: u16,
    pub first_year: i32,
    pub onset: Date,
}

const CARE_LEVELS: [&str; 7] = [
    "support_1",
    "support_2",
    "care_1",
    "care_2",
    "care_3",
    "care_4",
    "care_5",
];

pub(crate) fn patient(
    ctx: &Ctx,
    rng: &mut PatientRng,
    patient_index: u64,
    out: &mut BlockOut,
    transition: Option<Transition>,
) {
    let world = ctx.world;
    let profile: &Profile = match transition
        .as_ref()
        .and_then(|t| ctx.diseases.by_no(t.disease_no))
    {
        Some(p) => p,
        None => &ctx.diseases.profiles[ctx.diseases.sampler.sample(rng)],
    };
    let k = 1 + ctx.forms_per_patient.sample(rng);
    let (years, mut id, onset) = match transition {
        Some(t) => (form_years(rng, t.first_year, k), t.identity, t.onset),
        None => {
            let years = form_years_ending(rng, k);
            let first = years.first().copied().unwrap_or(LAST_YEAR);
            let age0 = sample_age(rng, profile.age);
            let female = chance(rng, profile.female);
            let birth = day_in_year(rng, first - age0);
            let residence = world.residence(rng, None);
            let recipient = recipient_number(world, residence.pref, patient_index, SALT_NANBYO);
            let id = Identity {
                name: world.names.person(rng, female, birth.year),
                female,
                birth,
                residence,
                insured: insured_number(rng),
                recipient,
            };
            let first_written = Date::new(first, 4, 1);
            let onset = match profile.age {
                AgeModel::Childhood => {
                    day_between(rng, birth, birth.add_days(365 * 12).min(first_written))
                }
                _ => {
                    // Years from onset to the first form: exponential, mean about 6 years.
                    let years = -6.0 * rng.random::<f64>().max(1e-9).ln();
                    let d = first_written.add_days(-(years * 365.0) as i64 - between(rng, 30, 300));
                    d.max(birth.add_days(365 * 5))
                }
            };
            (years, id, onset)
        }
    };
    let number = form_number(patient_index, SALT_NANBYO);
    let family = family_history(rng, profile.hereditary);
    let definite = chance(rng, 0.9);
    let genetic = if profile.hereditary {
        ["positive", "positive", "negative", "not_done", "not_done"][index(rng, 5)]
    } else if chance(rng, 0.08) {
        if chance(rng, 0.25) {
            "positive"
        } else {
            "negative"
        }
    } else {
        "not_done"
    };
    let consents = chance(rng, 0.9);
    let mut institution = world.institution(rng, id.residence.pref, profile.rare);
    let mut doctor = index(rng, 16);

    // Treatment history: a few distinct items from the disease's list, started between onset
    // and the last form; each form reports those already started.
    let last_written = Date::new(years.last().copied().unwrap_or(LAST_YEAR), 12, 31);
    let mut history: Vec<(&str, &str, Date)> = Vec::new();
    for _ in 0..between(rng, 1, 4) {
        let (kind, name) = profile.treatments[index(rng, profile.treatments.len())];
        if history.iter().any(|h| h.1 == name) || (kind == "surgery" && !chance(rng, 0.3)) {
            continue;
        }
        history.push((kind, name, day_between(rng, onset, last_written)));
    }
    history.sort_by_key(|h| h.2);

    let mut s: f64 =
        normal(rng, if profile.drift > 0.05 { 0.42 } else { 0.32 }, 0.18).clamp(0.0, 1.0);
    let mut vent: Option<Ventilation> = None;
    let mut prev_year = years.first().copied().unwrap_or(LAST_YEAR);
    let mut prev_age = 0;
    for (j, &fy) in years.iter().enumerate() {
        let written = written_date(rng, fy);
        let age = id.birth.age_on(written);
        if j > 0 {
            let gap = f64::from(fy - prev_year);
            s = if profile.relapsing {
                s + 0.3 * (0.35 - s) + normal(rng, 0.0, 0.13)
            } else {
                s + profile.drift * gap + normal(rng, 0.0, 0.07)
            }
            .clamp(0.0, 1.0);
            change_identity(rng, ctx, &mut id, age, |pref| {
                recipient_number(world, pref, patient_index, SALT_NANBYO)
            });
            // Turning 75 moves everyone to the late-elderly insurance scheme.
            if age >= 75 && prev_age < 75 {
                id.insured = insured_number(rng);
            }
            if chance(rng, 0.06) {
                institution = world.institution(rng, id.residence.pref, profile.rare);
                doctor = index(rng, 16);
            }
        }
        prev_year = fy;
        prev_age = age;
        if vent.is_none() && s >= 0.67 && chance(rng, profile.ventilation * 0.6) {
            vent = Some(start_ventilation(rng, written, onset));
        }

        let form_id = format!("N{number:08}-{fy}");
        let rows = &mut out.nanbyo;
        rows.text(&form_id)
            .text(&id.recipient)
            .val(profile.no)
            .val(fy)
            .text(&written.iso());
        write_person(rows, rng, world, &id, &family, onset);

        let needs_care = age >= 65 || s > 0.7;
        let care_p = s * s * if age >= 65 { 0.9 } else { 0.4 };
        if needs_care && chance(rng, care_p) {
            let level = ((s - 0.3) / 0.7 * 6.0 + normal(rng, 0.0, 1.0))
                .round()
                .clamp(0.0, 6.0) as usize;
            rows.text(CARE_LEVELS[level]);
        } else {
            rows.text("none");
        }
        for shift in [0.0, 0.05, 0.1, 0.2, 0.25] {
            let x = s + normal(rng, 0.0, 0.15) - shift;
            rows.val(if x > 0.75 {
                3
            } else if x > 0.4 {
                2
            } else {
                1
            });
        }
        rows.text(if definite { "definite" } else { "probable" })
            .text(severity_code(s))
            .text(profile.scale.code())
            .text(&profile.scale.score(s));
        write_labs(rng, rows, profile, &id, age, s);
        rows.text(genetic);
        let mild = s < 0.34;
        let certified = !chance(rng, if mild { 0.2 } else { 0.02 });
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

        for (kind, name, start) in history.iter().filter(|h| h.2 <= written).rev().take(5) {
            let t = &mut out.treatments;
            t.text(&form_id).text(kind).text(name).text(&start.ym());
            t.end();
        }
    }
}

fn write_labs(
    rng: &mut PatientRng,
    rows: &mut crate::csvrow::Rows,
    profile: &Profile,
    id: &Identity,
    age: i32,
    s: f64,
) {
    let inflam = if profile.inflammatory { 2.2 } else { 0.6 };
    let crp = (normal(rng, (0.08f64).ln() + inflam * s, 0.8))
        .exp()
        .min(30.0);
    let albumin = normal(rng, 4.3 - 0.9 * s, 0.3).clamp(1.5, 5.5);
    let hb_mean = if id.female { 12.9 } else { 14.3 };
    let hb = normal(rng, hb_mean - 1.6 * s, 1.0).clamp(5.0, 19.0);
    let renal = if profile.renal { 45.0 * s + 15.0 } else { 0.0 };
    let egfr = normal(
        rng,
        108.0 - 0.8 * f64::from(age - 20).max(0.0) - renal,
        12.0,
    )
    .clamp(4.0, 150.0);
    let present = |rng: &mut PatientRng| !chance(rng, 0.04);
    let v = present(rng).then(|| format!("{crp:.2}"));
    rows.opt(v);
    let v = present(rng).then(|| format!("{albumin:.1}"));
    rows.opt(v);
    let v = present(rng).then(|| format!("{hb:.1}"));
    rows.opt(v);
    let v = present(rng).then(|| format!("{egfr:.1}"));
    rows.opt(v);
}
