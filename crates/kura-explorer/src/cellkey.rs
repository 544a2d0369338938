//! Consistent perturbation by the cell-key method (Australian Bureau of Statistics): the noise
//! added to a count depends only on *which patients* are in the cell, so asking again, or asking
//! a differently worded query for the same patients, gives the same number, and shifting a
//! filter by a few patients gives fresh, unpredictable noise rather than their exact count.
//!
//! - **Record value**: each patient gets `r = first 60 bits of SHA-256(research_id)` (or, with
//!   [`RecordHash::ResearchIdPrefix`], of the research_id itself, which is already a keyed HMAC
//!   output). `r / 2^60` is the ABS record key in `[0, 1)`.
//! - **Fingerprint**: the SQL returns `F = (sum of r over the cell's patients) mod 2^60`, so
//!   `F / 2^60 = (sum of record keys) mod 1`, the ABS cell key, computed exactly in integers
//!   (a floating-point sum would depend on DuckDB's parallel summation order and could flip
//!   the noise between two runs). It is a function of the contributor set only.
//! - **Cell key**: `HMAC-SHA-256(K, F)` with `K` derived from the server's secret explorer
//!   key, first 64 bits as a fraction of `2^64`. The secret enters here, in the server process,
//!   never in the SQL: the SQL text is written to the audit log and runs in the sandbox worker.
//!   Without `K` nobody (also not a researcher who can compute `F` from research_ids) can
//!   predict the noise.
//! - **Perturbation table** ([`PTABLE`]): `(cell key, count)` -> noise in `-2..=2`, zero-mean,
//!   never taking a non-empty cell to 0 or below; an empty cell stays 0.

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::ExplorerError;

/// Bits of a record value and of a fingerprint.
pub const FINGERPRINT_BITS: u32 = 60;
/// Fingerprints are sums modulo this (`2^60`, a BIGINT literal in the SQL).
pub const FINGERPRINT_MODULUS: u64 = 1 << FINGERPRINT_BITS;

/// How the SQL derives a patient's record value from `research_id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordHash {
    /// `sha256(research_id)`: the result never carries bits of a research_id. Costs about
    /// 0.7 s of worker CPU per million distinct patients in a query.
    #[default]
    Sha256,
    /// The research_id's own first 60 bits (it is already a keyed HMAC output, so uniform):
    /// almost free, but a one-patient cell's fingerprint is then 60 bits of that patient's
    /// research_id in the raw result (which only the server process sees).
    ResearchIdPrefix,
}

/// A patient's record value, exactly as the SQL computes it; `None` if `research_id` is not
/// hex where the prefix variant needs it (DuckDB would fail the query).
pub fn record_value(research_id: &str, hash: RecordHash) -> Option<u64> {
    match hash {
        RecordHash::Sha256 => {
            let digest = Sha256::digest(research_id.as_bytes());
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            Some(u64::from_be_bytes(first) >> (64 - FINGERPRINT_BITS))
        }
        RecordHash::ResearchIdPrefix => {
            let prefix = research_id.get(..15)?;
            if !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(prefix, 16).ok()
        }
    }
}

/// The fingerprint of a set of patients, as the SQL's `sum(record_value) % 2^60` over one row
/// per patient: order and repetition of ids do not matter.
pub fn fingerprint<'a>(
    research_ids: impl IntoIterator<Item = &'a str>,
    hash: RecordHash,
) -> Option<u64> {
    let patients: BTreeSet<&str> = research_ids.into_iter().collect();
    let values: Vec<u64> = patients
        .into_iter()
        .map(|id| record_value(id, hash))
        .collect::<Option<_>>()?;
    Some(combine(values))
}

/// Sum of the patients' record values modulo `2^60` (one value per patient).
pub fn combine(values: impl IntoIterator<Item = u64>) -> u64 {
    let sum: u128 = values.into_iter().map(u128::from).sum();
    (sum % u128::from(FINGERPRINT_MODULUS)) as u64
}

/// A cell key: a uniform fraction `.0 / 2^64` in `[0, 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellKey(pub u64);

impl CellKey {
    pub fn fraction(self) -> f64 {
        self.0 as f64 / 18_446_744_073_709_551_616.0
    }
}

/// The secret that turns fingerprints into cell keys. `Debug` does not print it.
#[derive(Clone)]
pub struct CellKeySecret {
    key: [u8; 32],
}

impl std::fmt::Debug for CellKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellKeySecret(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA-256 accepts every key length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl CellKeySecret {
    /// Shortest explorer key accepted.
    pub const MIN_KEY_LEN: usize = 32;

    /// Derives the cell-key secret from the server's explorer key (at least 32 bytes, e.g.
    /// `head -c 32 /dev/urandom`), as `HMAC-SHA-256(key, "kura-explorer/v1/cell-key")`.
    /// Changing the key changes every cell's noise: keep it for the life of the deployment, or
    /// old and new answers for the same cell can be averaged.
    pub fn new(explorer_key: &[u8]) -> Result<CellKeySecret, ExplorerError> {
        if explorer_key.len() < Self::MIN_KEY_LEN {
            return Err(ExplorerError::Key(format!(
                "{} bytes; at least {} random bytes are needed",
                explorer_key.len(),
                Self::MIN_KEY_LEN
            )));
        }
        Ok(CellKeySecret {
            key: hmac(explorer_key, &[b"kura-explorer/v1/cell-key"]),
        })
    }

    pub fn cell_key(&self, fingerprint: u64) -> CellKey {
        let mac = hmac(&self.key, &[&fingerprint.to_be_bytes()]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&mac[..8]);
        CellKey(u64::from_be_bytes(first))
    }
}

/// One row of the perturbation table: applies to counts from `from_count` up to the next row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PTableRow {
    pub from_count: u64,
    /// (noise, weight): the noise is chosen with probability weight / sum of weights.
    pub noise: &'static [(i64, u64)],
}

/// The perturbation table. Every row is symmetric (zero mean) and keeps a count of `n >= 1` at
/// `>= 1`; counts of 3 and more get noise in `-2..=2` with probabilities 1/8, 1/4, 1/4, 1/4,
/// 1/8 (variance 1.5; two independent cells get equal noise with probability 7/32).
pub const PTABLE: [PTableRow; 4] = [
    PTableRow {
        from_count: 0,
        noise: &[(0, 1)],
    },
    PTableRow {
        from_count: 1,
        noise: &[(0, 1)],
    },
    PTableRow {
        from_count: 2,
        noise: &[(-1, 1), (0, 2), (1, 1)],
    },
    PTableRow {
        from_count: 3,
        noise: &[(-2, 1), (-1, 2), (0, 2), (1, 2), (2, 1)],
    },
];

/// The noise for a cell of `count` patients with cell key `key`.
pub fn noise(key: CellKey, count: u64) -> i64 {
    let Some(row) = PTABLE.iter().rev().find(|r| count >= r.from_count) else {
        return 0;
    };
    let total: u64 = row.noise.iter().map(|(_, w)| w).sum();
    // Position of the key in [0, total), exact in integers.
    let at = ((u128::from(key.0) * u128::from(total)) >> 64) as u64;
    let mut upto = 0;
    for &(d, w) in row.noise {
        upto += w;
        if at < upto {
            return d;
        }
    }
    0
}

/// The published value of a cell before suppression.
pub fn perturb(key: CellKey, count: u64) -> u64 {
    count.saturating_add_signed(noise(key, count))
}
