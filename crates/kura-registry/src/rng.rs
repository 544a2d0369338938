//! Random helpers on top of a seeded PCG: per-patient streams, normal draws and cumulative
//! weight tables. Kept here so every distribution in the generator comes from one place and the
//! output depends only on the seed and the patient index, never on thread scheduling.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

pub(crate) type PatientRng = Pcg64Mcg;

/// SplitMix64 finaliser: spreads (seed, stream) pairs so neighbouring patients get unrelated
/// streams.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG for one patient: a function of the user's seed and the patient's index only.
pub(crate) fn patient_rng(seed: u64, index: u64) -> PatientRng {
    PatientRng::seed_from_u64(mix(mix(seed) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93)))
}

/// Standard normal draw (Box-Muller; one value per call keeps the stream simple).
pub(crate) fn std_normal(rng: &mut PatientRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub(crate) fn normal(rng: &mut PatientRng, mean: f64, sd: f64) -> f64 {
    mean + sd * std_normal(rng)
}

pub(crate) fn chance(rng: &mut PatientRng, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Uniform integer in `lo..=hi` (returns `lo` when the range is empty).
pub(crate) fn between(rng: &mut PatientRng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// Uniform index below `n` (0 when `n` is 0, so callers never index an empty slice by accident:
/// every table passed here is non-empty by construction).
pub(crate) fn index(rng: &mut PatientRng, n: usize) -> usize {
    if n <= 1 {
        0
    } else {
        rng.random_range(0..n)
    }
}

/// A categorical distribution as a cumulative weight table, sampled by binary search.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cumulative {
    cum: Vec<f64>,
}

impl Cumulative {
    pub(crate) fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let cum = weights
            .into_iter()
            .map(|w| {
                total += w.max(0.0);
                total
            })
            .collect();
        Cumulative { cum }
    }

    pub(crate) fn sample(&self, rng: &mut PatientRng) -> usize {
        let total = self.cum.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        let i = self.cum.partition_point(|&c| c <= x);
        i.min(self.cum.len().saturating_sub(1))
    }
}
