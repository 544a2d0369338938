//! Behaviour of `kura_registry::generate` against the contract in docs/raw-extract.md: headers,
//! value domains, skew, consent, transition care, spelling variants and determinism.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use kura_registry::{generate, GenerateOptions, GenerateSummary};
use unicode_normalization::UnicodeNormalization;

type Table = Vec<HashMap<String, String>>;

struct Extract {
    _dir: tempfile::TempDir,
    summary: GenerateSummary,
    headers: BTreeMap<String, Vec<String>>,
    nanbyo: Table,
    treatments: Table,
    shoman: Table,
    institutions: Table,
}

fn read(path: &Path) -> (Vec<String>, Table) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(rec.len(), header.len(), "{}: ragged row", path.display());
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}

/// One 20,000-patient extract shared by the tests in this file.
fn extract() -> &'static Extract {
    static E: OnceLock<Extract> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("raw");
        let mut calls = 0;
        let summary = generate(
            &GenerateOptions {
                patients: 20_000,
                seed: 7,
                out: out.clone(),
            },
            &mut |_| calls += 1,
        )
        .unwrap();
        assert!(calls > 0, "progress was never reported");
        let mut headers = BTreeMap::new();
        let mut load = |name: &str| {
            let (h, rows) = read(&out.join(name));
            headers.insert(name.to_string(), h);
            rows
        };
        let nanbyo = load("nanbyo_forms.csv");
        let treatments = load("nanbyo_treatments.csv");
        let shoman = load("shoman_forms.csv");
        let institutions = load("institutions.csv");
        Extract {
            _dir: dir,
            summary,
            headers,
            nanbyo,
            treatments,
            shoman,
            institutions,
        }
    })
}

fn patient_key(form_id: &str) -> &str {
    form_id.split('-').next().unwrap()
}

/// Converts a `YYYY-MM-DD` or era (`S33.04.12`) date to `(y, m, d)`, independently of the crate.
fn parse_date(s: &str) -> (i32, u32, u32) {
    let (y, m, d) = if let Some(rest) = s.strip_prefix(['M', 'T', 'S', 'H', 'R']) {
        let base = match s.as_bytes()[0] {
            b'M' => 1867,
            b'T' => 1911,
            b'S' => 1925,
            b'H' => 1988,
            _ => 2018,
        };
        let p: Vec<&str> = rest.split('.').collect();
        assert_eq!(p.len(), 3, "{s}");
        (
            base + p[0].parse::<i32>().unwrap(),
            p[1].parse().unwrap(),
            p[2].parse().unwrap(),
        )
    } else {
        let p: Vec<&str> = s.split('-').collect();
        assert_eq!(p.len(), 3, "{s}");
        assert_eq!(p[0].len(), 4, "{s}");
        (
            p[0].parse().unwrap(),
            p[1].parse().unwrap(),
            p[2].parse().unwrap(),
        )
    };
    assert!(
        (1..=12).contains(&m) && (1..=31).contains(&d),
        "bad date {s}"
    );
    (y, m, d)
}

fn normalised_kana(s: &str) -> String {
    s.nfkc().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn headers_follow_the_contract_in_order() {
    let e = extract();
    let expect: [(&str, &str); 4] = [
        ("nanbyo_forms.csv", "form_id,recipient_number,disease_no,form_year,written_date,name_kanji,name_kana,sex,birth_date,postcode,address,pref_code,municipality_code,phone,insured_number,family_history,family_history_relation,onset_ym,care_level,mobility,self_care,usual_activities,pain_discomfort,anxiety_depression,diagnosis_category,severity,severity_scale,severity_score,lab_crp,lab_albumin,lab_hb,lab_egfr,genetic_test,ventilator,ventilator_start,ventilator_type,ventilator_pattern,institution_code,institution_name,institution_phone,doctor_number,doctor_name,certified,consent"),
        ("nanbyo_treatments.csv", "form_id,kind,name,start_ym"),
        ("shoman_forms.csv", "form_id,recipient_number,disease_group,disease_code,form_year,written_date,name_kanji,name_kana,sex,birth_date,postcode,address,pref_code,municipality_code,phone,insured_number,family_history,family_history_relation,onset_ym,diagnosis_category,severity,birth_weight_g,gestational_weeks,height_sd,weight_sd,mother_birth_date,school_status,ventilator,ventilator_start,ventilator_type,ventilator_pattern,institution_code,institution_name,institution_phone,doctor_number,doctor_name,certified,consent"),
        ("institutions.csv", "institution_code,name,pref_code,municipality_code,kind,phone"),
    ];
    for (file, header) in expect {
        assert_eq!(e.headers[file].join(","), header, "{file}");
    }
    let counts: BTreeMap<&str, u64> = e
        .summary
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.rows))
        .collect();
    assert_eq!(counts["nanbyo_forms.csv"], e.nanbyo.len() as u64);
    assert_eq!(counts["nanbyo_treatments.csv"], e.treatments.len() as u64);
    assert_eq!(counts["shoman_forms.csv"], e.shoman.len() as u64);
    assert_eq!(counts["institutions.csv"], e.institutions.len() as u64);
}

fn check_shared(row: &HashMap<String, String>, institutions: &BTreeSet<&str>) {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let id = &row["form_id"];
    assert!(digits(&row["recipient_number"], 8), "{id}");
    let fy: i32 = row["form_year"].parse().unwrap();
    assert!((2015..=2025).contains(&fy), "{id}");
    assert!(id.ends_with(&format!("-{fy}")), "{id}");
    let written = parse_date(&row["written_date"]);
    assert!(!row["written_date"].starts_with(['M', 'T', 'S', 'H', 'R']));
    assert!((fy, 4, 1) <= written && written <= (fy + 1, 3, 31), "{id}");
    let birth = parse_date(&row["birth_date"]);
    assert!(birth < written, "{id}");
    assert!(matches!(row["sex"].as_str(), "1" | "2"), "{id}");
    let pc = &row["postcode"];
    assert!(pc.len() == 8 && &pc[3..4] == "-", "{id} {pc}");
    let pref: u32 = row["pref_code"].parse().unwrap();
    assert!(
        (1..=47).contains(&pref) && row["pref_code"].len() == 2,
        "{id}"
    );
    assert!(digits(&row["municipality_code"], 5), "{id}");
    assert!(
        row["municipality_code"].starts_with(&row["pref_code"]),
        "{id}"
    );
    assert!(digits(&row["insured_number"], 8), "{id}");
    let fh = row["family_history"].as_str();
    assert!(matches!(fh, "none" | "yes" | "unknown"), "{id}");
    let rel = row["family_history_relation"].as_str();
    assert_eq!(fh == "yes", !rel.is_empty(), "{id}");
    assert!(
        matches!(rel, "" | "parent" | "sibling" | "child" | "other"),
        "{id}"
    );
    let onset = &row["onset_ym"];
    assert!(
        onset.len() == 7 && onset.as_str() <= row["written_date"].as_str(),
        "{id}"
    );
    assert!(matches!(
        row["diagnosis_category"].as_str(),
        "definite" | "probable"
    ));
    assert!(matches!(
        row["severity"].as_str(),
        "mild" | "moderate" | "severe"
    ));
    match row["ventilator"].as_str() {
        "0" => assert!(row["ventilator_start"].is_empty() && row["ventilator_type"].is_empty()),
        "1" => {
            parse_date(&row["ventilator_start"]);
            assert!(matches!(
                row["ventilator_type"].as_str(),
                "invasive" | "non_invasive"
            ));
            let p = row["ventilator_pattern"].as_str();
            assert!(matches!(p, "continuous" | "night_only" | "intermittent"));
        }
        v => panic!("{id}: ventilator {v}"),
    }
    assert!(digits(&row["institution_code"], 10), "{id}");
    assert!(
        institutions.contains(row["institution_code"].as_str()),
        "{id}"
    );
    assert!(!row["institution_name"].is_empty() && !row["doctor_name"].is_empty());
    assert!(row["doctor_number"].starts_with('D'), "{id}");
    assert!(matches!(row["certified"].as_str(), "0" | "1"));
    assert!(matches!(row["consent"].as_str(), "0" | "1"));
}

#[test]
fn values_are_in_their_domains() {
    let e = extract();
    let institutions: BTreeSet<&str> = e
        .institutions
        .iter()
        .map(|r| r["institution_code"].as_str())
        .collect();
    assert_eq!(
        institutions.len(),
        e.institutions.len(),
        "institution codes are unique"
    );
    for r in &e.institutions {
        assert!(matches!(
            r["kind"].as_str(),
            "university" | "general" | "clinic"
        ));
        assert!(r["municipality_code"].starts_with(&r["pref_code"]));
    }
    let scales = [
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
    let mut form_ids = BTreeSet::new();
    for r in &e.nanbyo {
        check_shared(r, &institutions);
        assert!(
            form_ids.insert(r["form_id"].as_str()),
            "duplicate {}",
            r["form_id"]
        );
        assert!(r["form_id"].starts_with('N'));
        let no: u16 = r["disease_no"].parse().unwrap();
        assert!((1..=341).contains(&no));
        let care = r["care_level"].as_str();
        assert!(care == "none" || care.starts_with("support_") || care.starts_with("care_"));
        for c in [
            "mobility",
            "self_care",
            "usual_activities",
            "pain_discomfort",
            "anxiety_depression",
        ] {
            assert!(matches!(r[c].as_str(), "1" | "2" | "3"));
        }
        assert!(scales.contains(&r["severity_scale"].as_str()));
        assert_eq!(
            r["severity_score"].is_empty(),
            r["severity_scale"] == "general"
        );
        for lab in ["lab_crp", "lab_albumin", "lab_hb", "lab_egfr"] {
            if !r[lab].is_empty() {
                let v: f64 = r[lab].parse().unwrap();
                assert!((0.0..200.0).contains(&v), "{lab} {v}");
            }
        }
        assert!(matches!(
            r["genetic_test"].as_str(),
            "not_done" | "positive" | "negative"
        ));
    }
    for t in &e.treatments {
        assert!(form_ids.contains(t["form_id"].as_str()));
        assert!(matches!(t["kind"].as_str(), "drug" | "surgery" | "other"));
        assert_eq!(t["start_ym"].len(), 7);
    }
    for r in &e.shoman {
        check_shared(r, &institutions);
        assert!(r["form_id"].starts_with('C'));
        let group: u32 = r["disease_group"].parse().unwrap();
        assert!((1..=16).contains(&group));
        let code = &r["disease_code"];
        assert_eq!(code.len(), 6);
        assert_eq!(code[..2].parse::<u32>().unwrap(), group);
        assert!((1..=999).contains(&code[3..].parse::<u32>().unwrap()));
        let w: u32 = r["birth_weight_g"].parse().unwrap();
        assert!((300..=6000).contains(&w));
        let weeks: u32 = r["gestational_weeks"].parse().unwrap();
        assert!((22..=42).contains(&weeks));
        r["height_sd"].parse::<f64>().unwrap();
        r["weight_sd"].parse::<f64>().unwrap();
        let (by, ..) = parse_date(&r["birth_date"]);
        let (wy, ..) = parse_date(&r["written_date"]);
        assert!(
            wy - by <= 20,
            "小慢 patient older than 19: {}",
            r["form_id"]
        );
        assert!(parse_date(&r["mother_birth_date"]) < parse_date(&r["birth_date"]));
        let school = [
            "preschool",
            "elementary",
            "junior_high",
            "high_school",
            "special_support",
            "working",
            "none",
        ];
        assert!(school.contains(&r["school_status"].as_str()));
    }
}

#[test]
fn disease_prevalence_is_skewed() {
    let e = extract();
    let mut patients: BTreeMap<u16, BTreeSet<&str>> = BTreeMap::new();
    for r in &e.nanbyo {
        patients
            .entry(r["disease_no"].parse().unwrap())
            .or_default()
            .insert(patient_key(&r["form_id"]));
    }
    let mut by_size: Vec<(usize, u16)> = patients.iter().map(|(d, p)| (p.len(), *d)).collect();
    by_size.sort_unstable_by(|a, b| b.cmp(a));
    let top: Vec<u16> = by_size.iter().take(3).map(|x| x.1).collect();
    assert_eq!(
        top,
        vec![97, 6, 49],
        "largest diseases: {:?}",
        &by_size[..5]
    );
    let small = (1..=341u16)
        .filter(|d| patients.get(d).map_or(0, |p| p.len()) < 5)
        .count();
    assert!(
        small >= 50,
        "only {small} diseases with fewer than 5 patients"
    );
}

#[test]
fn demographics_are_plausible() {
    let e = extract();
    let mut first: BTreeMap<&str, &HashMap<String, String>> = BTreeMap::new();
    for r in &e.nanbyo {
        first.entry(patient_key(&r["form_id"])).or_insert(r);
    }
    let women = first.values().filter(|r| r["sex"] == "2").count() as f64 / first.len() as f64;
    assert!((0.55..=0.63).contains(&women), "women {women}");
    // Ten-year bands with 75+ pooled: 75+ and 60-69 are the two largest.
    let mut bands: BTreeMap<i32, usize> = BTreeMap::new();
    for r in first.values() {
        let (by, bm, bd) = parse_date(&r["birth_date"]);
        let (wy, wm, wd) = parse_date(&r["written_date"]);
        let age = wy - by - i32::from((wm, wd) < (bm, bd));
        let band = if age >= 75 {
            75
        } else if age >= 70 {
            70
        } else {
            age / 10 * 10
        };
        *bands.entry(band).or_default() += 1;
    }
    let mut sorted: Vec<(usize, i32)> = bands.iter().map(|(b, n)| (*n, *b)).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let top: BTreeSet<i32> = sorted.iter().take(2).map(|x| x.1).collect();
    assert_eq!(top, BTreeSet::from([60, 75]), "age bands {bands:?}");
}

#[test]
fn consent_refusals_exist_but_are_a_minority() {
    let e = extract();
    for (name, table) in [("nanbyo", &e.nanbyo), ("shoman", &e.shoman)] {
        let refused = table.iter().filter(|r| r["consent"] == "0").count() as f64;
        let share = refused / table.len() as f64;
        assert!(
            (0.04..=0.2).contains(&share),
            "{name}: consent=0 share {share}"
        );
    }
    let certified = e.nanbyo.iter().filter(|r| r["certified"] == "1").count() as f64;
    assert!(certified / e.nanbyo.len() as f64 > 0.8);
}

#[test]
fn transition_patients_match_on_normalised_kana_sex_and_birth() {
    let e = extract();
    let key = |r: &HashMap<String, String>| {
        (
            normalised_kana(&r["name_kana"]),
            r["sex"].clone(),
            parse_date(&r["birth_date"]),
        )
    };
    let children: BTreeSet<_> = e.shoman.iter().map(key).collect();
    let adults: BTreeSet<&str> = e
        .nanbyo
        .iter()
        .filter(|r| children.contains(&key(r)))
        .filter(|r| {
            let (by, ..) = parse_date(&r["birth_date"]);
            r["form_year"].parse::<i32>().unwrap() - by >= 20
        })
        .map(|r| patient_key(&r["form_id"]))
        .collect();
    // Name, sex and birth date alone can collide by chance; transition patients also keep
    // their kanji name, and there should be dozens of them at 20k patients.
    assert!(
        adults.len() >= 10,
        "only {} transition patients",
        adults.len()
    );
    let spelled_differently = e
        .nanbyo
        .iter()
        .filter(|r| children.contains(&key(r)))
        .any(|r| {
            r["name_kana"]
                .chars()
                .any(|c| ('\u{FF61}'..='\u{FF9F}').contains(&c))
                || !r["name_kana"].contains(' ')
                || r["birth_date"].starts_with(['S', 'H', 'R'])
        });
    assert!(
        spelled_differently,
        "no transition form is written in a variant spelling"
    );
}

#[test]
fn kana_is_written_in_variants_of_one_spelling() {
    let e = extract();
    let kana: Vec<&str> = e.nanbyo.iter().map(|r| r["name_kana"].as_str()).collect();
    let half = kana
        .iter()
        .filter(|k| k.chars().any(|c| ('\u{FF61}'..='\u{FF9F}').contains(&c)))
        .count();
    let ideographic = kana.iter().filter(|k| k.contains('\u{3000}')).count();
    let no_space = kana
        .iter()
        .filter(|k| !k.contains([' ', '\u{3000}']))
        .count();
    let canonical = kana.iter().filter(|k| k.contains(' ')).count();
    assert!(
        half > 0 && ideographic > 0 && no_space > 0,
        "{half} {ideographic} {no_space}"
    );
    assert!(canonical as f64 / kana.len() as f64 > 0.7);
    // A patient's forms all normalise to the same kana unless the surname changed.
    let mut per_patient: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in &e.nanbyo {
        per_patient
            .entry(patient_key(&r["form_id"]))
            .or_default()
            .insert(normalised_kana(&r["name_kana"]));
    }
    let changed = per_patient.values().filter(|s| s.len() > 1).count();
    assert!(changed > 0, "no name change (marriage) anywhere");
    assert!((changed as f64) < 0.05 * per_patient.len() as f64);
    let era = e
        .nanbyo
        .iter()
        .filter(|r| r["birth_date"].starts_with(['T', 'S', 'H']))
        .count();
    assert!(era > 0, "no era-form birth dates");
}

#[test]
fn same_seed_gives_identical_bytes_regardless_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: u64, threads: usize| {
        let out = dir.path().join(name);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            generate(
                &GenerateOptions {
                    patients: 2_500,
                    seed,
                    out: out.clone(),
                },
                &mut |_| {},
            )
        })
        .unwrap();
        [
            "nanbyo_forms.csv",
            "nanbyo_treatments.csv",
            "shoman_forms.csv",
            "institutions.csv",
        ]
        .map(|f| std::fs::read(out.join(f)).unwrap())
    };
    let a = run("a", 42, 1);
    let b = run("b", 42, 3);
    let c = run("c", 43, 2);
    assert!(a == b, "same seed, different bytes");
    assert!(a[0] != c[0], "different seeds gave the same extract");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn unwritable_output_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("raw");
    let err = generate(
        &GenerateOptions {
            patients: 10,
            seed: 1,
            out: out.clone(),
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(&out.display().to_string()),
        "{err}"
    );
}
