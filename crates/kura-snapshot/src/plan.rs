//! Matching the policy of one table against the header of its raw file, fail closed: a raw column
//! the policy does not mention, or a policy column the header lacks, stops the build. The result
//! is the list of output columns with the operation and key each one needs.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};

use crate::error::{Result, SnapshotError};
use crate::keys::{Keyed, MasterKey};
use crate::policy::{Action, Policy, TablePolicy};
use crate::raw::{kind_of, Kind};

/// SQL type of an output column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    Text,
    Int,
    Double,
    Date,
}

impl DType {
    pub fn sql(self) -> &'static str {
        match self {
            DType::Text => "VARCHAR",
            DType::Int => "INTEGER",
            DType::Double => "DOUBLE",
            DType::Date => "DATE",
        }
    }
}

#[derive(Clone)]
pub enum Op {
    ResearchId,
    Keep,
    YearMonth,
    Year,
    AgeBand5y { reference: usize },
    Prefix(usize),
    ShiftDays,
    Pseudonym(Keyed),
}

#[derive(Clone)]
pub struct Output {
    pub name: String,
    pub src: usize,
    pub op: Op,
    pub dtype: DType,
    pub en: String,
    pub ja: String,
}

/// Everything the transform needs for one table.
#[derive(Clone)]
pub struct TablePlan {
    pub table: String,
    pub file: PathBuf,
    pub columns: Vec<(String, Kind)>,
    pub outputs: Vec<Output>,
    pub consent: Option<usize>,
    /// Raw column checked against the parent's kept keys.
    pub parent: Option<usize>,
    /// Raw column whose kept values children filter on.
    pub key_for_children: Option<usize>,
    /// Raw columns of kana name, sex, date of birth.
    pub research_id: Option<[usize; 3]>,
    pub rid_key: Keyed,
    pub shift_key: Keyed,
    pub shift_max: u32,
    pub set_hasher: SetHasher,
}

/// Keys of parent rows, kept in memory only: two independently, randomly keyed SipHashes (128
/// bits), cheaper than an HMAC per row and never written anywhere.
#[derive(Clone)]
pub struct SetHasher(std::sync::Arc<(RandomState, RandomState)>);

impl SetHasher {
    pub fn new() -> SetHasher {
        SetHasher(std::sync::Arc::new((
            RandomState::new(),
            RandomState::new(),
        )))
    }

    pub fn tag(&self, value: &[u8]) -> u128 {
        let (a, b) = &*self.0;
        (u128::from(a.hash_one(value)) << 64) | u128::from(b.hash_one(value))
    }
}

pub struct PlanContext<'a> {
    pub policy: &'a Policy,
    pub policy_path: &'a Path,
    pub key: &'a MasterKey,
    pub release_id: &'a str,
    /// Shared by every table of one build, so children find their parents' keys.
    pub set_hasher: SetHasher,
}

impl PlanContext<'_> {
    pub fn plan(&self, table: &str, file: &Path, header: &[String]) -> Result<TablePlan> {
        let Some(tp) = self.policy.tables.get(table) else {
            return Err(SnapshotError::Other(format!("no policy for table {table}")));
        };
        let mut index = HashMap::new();
        for (i, h) in header.iter().enumerate() {
            if index.insert(h.as_str(), i).is_some() {
                return Err(SnapshotError::Csv {
                    file: file.to_path_buf(),
                    line: 1,
                    message: format!("column `{h}` appears twice in the header"),
                });
            }
            if !tp.columns.contains_key(h) {
                return Err(SnapshotError::RawColumnNotInPolicy {
                    policy: self.policy_path.to_path_buf(),
                    file: file.to_path_buf(),
                    table: table.to_string(),
                    column: h.clone(),
                });
            }
        }
        let col = |name: &str| -> Result<usize> {
            index
                .get(name)
                .copied()
                .ok_or_else(|| SnapshotError::PolicyColumnNotInRaw {
                    policy: self.policy_path.to_path_buf(),
                    file: file.to_path_buf(),
                    table: table.to_string(),
                    column: name.to_string(),
                })
        };
        for name in tp.columns.keys() {
            col(name)?;
        }
        let columns: Vec<(String, Kind)> = header
            .iter()
            .map(|h| (h.clone(), kind_of(table, h)))
            .collect();
        let research_id = if tp.research_id {
            let r = &self.policy.research_id;
            Some([col(&r.kana_name)?, col(&r.sex)?, col(&r.birth_date)?])
        } else {
            None
        };
        let reference = tp.reference_date.as_deref().map(col).transpose()?;
        let bad = |column: &str, why: String| SnapshotError::Policy {
            path: self.policy_path.to_path_buf(),
            message: format!("table `{table}` column `{column}`: {why}"),
        };
        let mut outputs = Vec::new();
        if research_id.is_some() {
            let r = &self.policy.research_id;
            outputs.push(Output {
                name: "research_id".into(),
                src: 0,
                op: Op::ResearchId,
                dtype: DType::Text,
                en: r.en.clone(),
                ja: r.ja.clone(),
            });
        }
        // Header order, so the snapshot's columns follow the form.
        for (i, (name, kind)) in columns.iter().enumerate() {
            let Some(rules) = tp.columns.get(name) else {
                continue;
            };
            for rule in rules.rules() {
                let action = rule.action().map_err(|e| bad(name, e))?;
                let (op, dtype) = match &action {
                    Action::Drop => continue,
                    Action::Linkage if !self.policy.linkage.enabled => continue,
                    Action::Linkage => (
                        Op::Pseudonym(self.key.derive(&format!("linkage/{}", self.release_id))),
                        DType::Text,
                    ),
                    Action::Hmac { domain } => (
                        Op::Pseudonym(self.key.derive(&format!("hmac/{domain}"))),
                        DType::Text,
                    ),
                    Action::Keep => (Op::Keep, keep_type(*kind)),
                    Action::YearMonth if date_like(*kind) => (Op::YearMonth, DType::Text),
                    Action::Year if date_like(*kind) => (Op::Year, DType::Int),
                    Action::AgeBand5y if is_date(*kind) => {
                        let Some(reference) = reference else {
                            return Err(bad(
                                name,
                                "age_band_5y needs the table's reference_date".into(),
                            ));
                        };
                        (Op::AgeBand5y { reference }, DType::Text)
                    }
                    Action::ShiftDays if is_date(*kind) => {
                        if research_id.is_none() {
                            return Err(bad(name, "shift_days needs research_id = true".into()));
                        }
                        (Op::ShiftDays, DType::Date)
                    }
                    Action::Prefix { len } if text_like(*kind) => (Op::Prefix(*len), DType::Text),
                    other => {
                        return Err(bad(
                            name,
                            format!("{other:?} does not apply to a {kind:?} column"),
                        ))
                    }
                };
                outputs.push(Output {
                    name: rule.out.clone().unwrap_or_else(|| name.clone()),
                    src: i,
                    op,
                    dtype,
                    en: rule.en.clone().unwrap_or_default(),
                    ja: rule.ja.clone().unwrap_or_default(),
                });
            }
        }
        let consent = tp.consent_column.as_deref().map(col).transpose()?;
        let parent = tp.parent.as_ref().map(|p| col(&p.column)).transpose()?;
        let key_for_children = self.children_key(table).map(col).transpose()?;
        Ok(TablePlan {
            table: table.to_string(),
            file: file.to_path_buf(),
            columns,
            outputs,
            consent,
            parent,
            key_for_children,
            research_id,
            rid_key: self.key.derive("research_id"),
            shift_key: self.key.derive("date_shift"),
            shift_max: self.policy.date_shift.max_days,
            set_hasher: self.set_hasher.clone(),
        })
    }

    fn children_key(&self, table: &str) -> Option<&str> {
        self.policy
            .tables
            .values()
            .filter_map(|t: &TablePolicy| t.parent.as_ref())
            .find(|p| p.table == table)
            .map(|p| p.column.as_str())
    }
}

fn keep_type(kind: Kind) -> DType {
    match kind {
        Kind::Int { .. } | Kind::DiseaseNo => DType::Int,
        Kind::Decimal => DType::Double,
        Kind::Date | Kind::BirthDate => DType::Date,
        _ => DType::Text,
    }
}

fn is_date(kind: Kind) -> bool {
    matches!(kind, Kind::Date | Kind::BirthDate)
}

fn date_like(kind: Kind) -> bool {
    is_date(kind) || kind == Kind::YearMonth
}

fn text_like(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Text | Kind::Digits { .. } | Kind::ShomanCode | Kind::Enum(_)
    )
}
