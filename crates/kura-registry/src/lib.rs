//! Synthetic 難病 and 小慢 registry extracts in the layout of `docs/raw-extract.md`: a seeded,
//! deterministic generator of what a data steward receives, direct identifiers included, with
//! the skew, drift and spelling variants real extracts have. The model is described in
//! `docs/registry.md`.
//!
//! Output depends only on the seed and the patient count: every patient draws from its own RNG
//! stream (seed, patient index), blocks of patients are generated in parallel and written in
//! index order, and each file appears under its final name only once complete.

pub mod bench;
mod csvrow;
mod date;
mod disease;
mod names;
mod nanbyo;
mod patient;
mod reference;
mod rng;
mod shoman;
mod world;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tempfile::NamedTempFile;

pub use csvrow::{
    INSTITUTIONS_HEADER, NANBYO_FORMS_HEADER, NANBYO_TREATMENTS_HEADER, SHOMAN_FORMS_HEADER,
};
pub use date::Date;
pub use reference::{designated_diseases, prefectures, Disease, Prefecture, ReferenceDataError};

use csvrow::Rows;
use patient::{BlockOut, Ctx};
use rng::{chance, patient_rng, Cumulative};

pub const NANBYO_FORMS: &str = "nanbyo_forms.csv";
pub const NANBYO_TREATMENTS: &str = "nanbyo_treatments.csv";
pub const SHOMAN_FORMS: &str = "shoman_forms.csv";
pub const INSTITUTIONS: &str = "institutions.csv";

/// Share of patients who are 小慢 children (the rest are adult 難病 patients); transition-care
/// adults are counted once, as children.
pub const SHOMAN_SHARE: f64 = 0.15;

/// Patients per block: the unit of parallel work. Output does not depend on it.
const BLOCK: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub patients: u64,
    pub seed: u64,
    pub out: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub name: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSummary {
    pub files: Vec<FileSummary>,
    pub patients: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub patients_done: u64,
    pub patients_total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    // The io::Error is part of the message rather than a `source`, so that callers printing the
    // whole error chain do not repeat it.
    #[error("cannot create output directory {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    ReferenceData(#[from] ReferenceDataError),
}

/// One output file being written under a temporary name in the output directory.
struct Sink {
    name: &'static str,
    final_path: PathBuf,
    writer: BufWriter<NamedTempFile>,
    rows: u64,
}

impl Sink {
    fn create(dir: &Path, name: &'static str, header: &[&str]) -> Result<Self, RegistryError> {
        let final_path = dir.join(name);
        let err = |source| RegistryError::Write {
            path: final_path.clone(),
            error: source,
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(err)?;
        let mut writer = BufWriter::with_capacity(1 << 20, tmp);
        writer.write_all(&Rows::header(header)).map_err(err)?;
        Ok(Sink {
            name,
            final_path,
            writer,
            rows: 0,
        })
    }

    fn append(&mut self, rows: &Rows) -> Result<(), RegistryError> {
        self.rows += rows.rows;
        self.writer
            .write_all(&rows.buf)
            .map_err(|source| RegistryError::Write {
                path: self.final_path.clone(),
                error: source,
            })
    }

    /// Flushes, syncs and renames into place, so the final name only ever holds a whole file.
    fn finish(self) -> Result<FileSummary, RegistryError> {
        let path = self.final_path;
        let err = |source| RegistryError::Write {
            path: path.clone(),
            error: source,
        };
        let tmp = self.writer.into_inner().map_err(|e| err(e.into_error()))?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(&path).map_err(|e| err(e.error))?;
        Ok(FileSummary {
            name: self.name.to_string(),
            rows: self.rows,
        })
    }
}

fn block(ctx: &Ctx, b: u64, total: u64) -> BlockOut {
    let mut out = BlockOut::new(ctx.world.institutions.len());
    for i in b * BLOCK..((b + 1) * BLOCK).min(total) {
        let mut rng = patient_rng(ctx.seed, i);
        if chance(&mut rng, SHOMAN_SHARE) {
            shoman::patient(ctx, &mut rng, i, &mut out);
        } else {
            nanbyo::patient(ctx, &mut rng, i, &mut out, None);
        }
    }
    out
}

/// Writes the four files of a raw extract into `options.out` (created if missing) and returns
/// their row counts. `progress` is called after each batch of patients, from this thread.
pub fn generate(
    options: &GenerateOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<GenerateSummary, RegistryError> {
    let diseases = reference::diseases_checked()?;
    let world = world::world()?;
    fs::create_dir_all(&options.out).map_err(|source| RegistryError::CreateDir {
        path: options.out.clone(),
        error: source,
    })?;
    let ctx = Ctx {
        seed: options.seed,
        world,
        diseases: disease::DiseaseModel::new(diseases),
        shoman: shoman::ShomanModel::new(),
        // Forms per patient, 1..=6.
        forms_per_patient: Cumulative::new([20.0, 18.0, 18.0, 16.0, 14.0, 14.0]),
    };
    let dir = &options.out;
    let mut nanbyo = Sink::create(dir, NANBYO_FORMS, NANBYO_FORMS_HEADER)?;
    let mut treatments = Sink::create(dir, NANBYO_TREATMENTS, NANBYO_TREATMENTS_HEADER)?;
    let mut shoman = Sink::create(dir, SHOMAN_FORMS, SHOMAN_FORMS_HEADER)?;
    let mut institutions = Sink::create(dir, INSTITUTIONS, INSTITUTIONS_HEADER)?;

    let total = options.patients;
    let blocks = total.div_ceil(BLOCK);
    let batch = (rayon::current_num_threads() as u64 * 4).max(1);
    let mut used = vec![false; world.institutions.len()];
    let mut start = 0;
    while start < blocks {
        let end = (start + batch).min(blocks);
        let outs: Vec<BlockOut> = (start..end)
            .into_par_iter()
            .map(|b| block(&ctx, b, total))
            .collect();
        for out in &outs {
            nanbyo.append(&out.nanbyo)?;
            treatments.append(&out.treatments)?;
            shoman.append(&out.shoman)?;
            for (u, o) in used.iter_mut().zip(&out.institutions_used) {
                *u |= *o;
            }
        }
        start = end;
        progress(Progress {
            patients_done: (end * BLOCK).min(total),
            patients_total: total,
        });
    }

    let mut rows = Rows::new();
    for (inst, _) in world.institutions.iter().zip(&used).filter(|(_, u)| **u) {
        let muni = &world.pref_worlds[inst.pref].municipalities[inst.municipality];
        rows.text(&inst.code)
            .text(&inst.name)
            .text(world.prefs[inst.pref].code)
            .text(&muni.code)
            .text(inst.kind.code())
            .text(&inst.phone);
        rows.end();
    }
    institutions.append(&rows)?;

    let files = vec![
        nanbyo.finish()?,
        treatments.finish()?,
        shoman.finish()?,
        institutions.finish()?,
    ];
    Ok(GenerateSummary {
        files,
        patients: total,
    })
}
