//! Loading the compiled-in confinement profile (`sandbox/profile.toml`, `sandbox/seccomp.json`).

use std::path::PathBuf;

use serde::Deserialize;

use super::SandboxError;

const PROFILE_TOML: &str = include_str!("../../../../sandbox/profile.toml");
const SECCOMP_JSON: &str = include_str!("../../../../sandbox/seccomp.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlimitProfile {
    pub address_space_headroom_mib: u64,
    pub cpu_seconds_headroom: u64,
    pub file_size_mib: u64,
    pub file_size_headroom_mib: u64,
    pub nofile: u64,
    pub nproc: u64,
    pub core: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockProfile {
    #[serde(default)]
    pub extra_read: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    rlimits: RlimitProfile,
    landlock: LandlockProfile,
}

/// The parsed profile, seccomp filters compiled to BPF for this architecture.
pub struct Profile {
    pub rlimits: RlimitProfile,
    pub landlock: LandlockProfile,
    /// Filters in install order (sorted by name for determinism).
    pub seccomp: Vec<(String, seccompiler::BpfProgram)>,
}

impl Profile {
    pub fn load() -> Result<Profile, SandboxError> {
        let file: ProfileFile =
            toml::from_str(PROFILE_TOML).map_err(|e| SandboxError::Profile {
                file: "profile.toml",
                detail: e.to_string(),
            })?;
        let arch = std::env::consts::ARCH
            .try_into()
            .map_err(|e: seccompiler::BackendError| SandboxError::Profile {
                file: "seccomp.json",
                detail: format!("architecture {}: {e}", std::env::consts::ARCH),
            })?;
        let map = seccompiler::compile_from_json(SECCOMP_JSON.as_bytes(), arch).map_err(|e| {
            SandboxError::Profile {
                file: "seccomp.json",
                detail: e.to_string(),
            }
        })?;
        let mut seccomp: Vec<_> = map.into_iter().collect();
        seccomp.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Profile {
            rlimits: file.rlimits,
            landlock: file.landlock,
            seccomp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_profile_parses_and_has_both_seccomp_filters() {
        let p = Profile::load().unwrap();
        let names: Vec<_> = p.seccomp.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["deny", "no_clone3"]);
        assert_eq!(p.rlimits.core, 0);
    }
}
