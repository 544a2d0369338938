//! OS confinement of the query worker: rlimits, closing inherited descriptors, Landlock,
//! seccomp and `PR_SET_NO_NEW_PRIVS`. The numbers, syscall lists and paths live in `sandbox/` at
//! the repository root and are compiled in, so the profile is reviewed as a file, not as code.
//!
//! The worker calls [`confine`] before DuckDB starts any thread and before it reads the
//! researcher's SQL: Landlock on this kernel (ABI 7) applies to the calling thread and its future
//! children only, so confining first means every DuckDB thread inherits the domain.

mod profile;
pub(crate) mod sys;

use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

pub use profile::{Profile, RlimitProfile};

/// A confinement mechanism an operator may explicitly allow to be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    Landlock,
    Seccomp,
    Rlimits,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::Landlock => "landlock",
            Mechanism::Seccomp => "seccomp",
            Mechanism::Rlimits => "rlimits",
        })
    }
}

/// What the worker must be confined to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfinementPlan {
    /// The snapshot file: the only file the worker may read.
    pub snapshot: PathBuf,
    /// The private temp directory: the only place the worker may write.
    pub temp_dir: PathBuf,
    pub memory_limit_mib: u64,
    pub cpu_seconds: u64,
    pub max_temp_mib: u64,
    /// Mechanisms the operator allowed to be missing (logged loudly when used).
    pub allow_missing: Vec<Mechanism>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the kernel cannot enforce {mechanism} ({detail}); refusing to run queries without it \
         (an operator may allow this explicitly with --allow-missing-sandbox {mechanism})"
    )]
    Unavailable {
        mechanism: Mechanism,
        detail: String,
    },
    #[error("setting up {mechanism} failed: {detail}")]
    Failed {
        mechanism: Mechanism,
        detail: String,
    },
    #[error("the sandbox profile compiled from sandbox/{file} is invalid: {detail}")]
    Profile { file: &'static str, detail: String },
}

/// What [`confine`] achieved; the worker reports it and the engine logs it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfinementReport {
    pub rlimits: bool,
    pub landlock: bool,
    pub seccomp: bool,
    pub no_new_privs: bool,
    /// Mechanisms that were missing and allowed by the operator.
    pub degraded: Vec<Mechanism>,
}

/// Confines the calling process. Must run while it is single-threaded.
pub fn confine(plan: &ConfinementPlan) -> Result<ConfinementReport, SandboxError> {
    let profile = Profile::load()?;
    let mut report = ConfinementReport::default();

    // Inherited descriptors first: nothing the parent's parent left open survives.
    sys::close_inherited_fds();

    match sys::set_rlimits(&profile.rlimits, plan).and_then(|()| sys::ignore_sigxfsz()) {
        Ok(()) => report.rlimits = true,
        Err(detail) => degrade(&mut report, plan, Mechanism::Rlimits, detail)?,
    }

    sys::set_no_new_privs().map_err(|detail| SandboxError::Failed {
        mechanism: Mechanism::Seccomp,
        detail: format!("PR_SET_NO_NEW_PRIVS: {detail}"),
    })?;
    report.no_new_privs = true;

    match apply_landlock(&profile, plan) {
        Ok(RulesetStatus::FullyEnforced) => report.landlock = true,
        Ok(status) => degrade(
            &mut report,
            plan,
            Mechanism::Landlock,
            format!("ruleset {status:?} (kernel older than Landlock ABI 7)"),
        )?,
        Err(detail) => degrade(&mut report, plan, Mechanism::Landlock, detail)?,
    }

    match apply_seccomp(&profile) {
        Ok(()) => report.seccomp = true,
        Err(detail) => degrade(&mut report, plan, Mechanism::Seccomp, detail)?,
    }
    Ok(report)
}

fn degrade(
    report: &mut ConfinementReport,
    plan: &ConfinementPlan,
    mechanism: Mechanism,
    detail: String,
) -> Result<(), SandboxError> {
    if plan.allow_missing.contains(&mechanism) {
        tracing::warn!(%mechanism, %detail, "query worker runs WITHOUT this confinement: allowed by the operator");
        report.degraded.push(mechanism);
        Ok(())
    } else {
        Err(SandboxError::Unavailable { mechanism, detail })
    }
}

fn apply_landlock(profile: &Profile, plan: &ConfinementPlan) -> Result<RulesetStatus, String> {
    let abi = ABI::V7;
    let read_paths: Vec<&Path> = std::iter::once(plan.snapshot.as_path())
        .chain(profile.landlock.extra_read.iter().map(PathBuf::as_path))
        .collect();
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(&read_paths, AccessFs::from_read(abi))))
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                [plan.temp_dir.as_path()],
                AccessFs::from_all(abi),
            ))
        })
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    Ok(status.ruleset)
}

fn apply_seccomp(profile: &Profile) -> Result<(), String> {
    for (name, program) in &profile.seccomp {
        // All threads: the worker is single-threaded here, TSYNC makes that an enforced fact.
        seccompiler::apply_filter_all_threads(program)
            .map_err(|e| format!("installing filter {name}: {e}"))?;
    }
    Ok(())
}
