//! The few raw system calls the sandbox needs that no safe crate wraps: `setrlimit`,
//! `close_range`, `prctl(PR_SET_NO_NEW_PRIVS)` and ignoring `SIGXFSZ`. Each call passes only integers or a pointer to
//! a local struct, which is why these `unsafe` blocks are sound.
#![allow(unsafe_code)]

use super::{ConfinementPlan, RlimitProfile};

const MIB: u64 = 1024 * 1024;

/// Closes every descriptor above stderr. The worker talks over stdin/stdout only; anything else
/// inherited (a socket, a database handle of the server) must not reach researcher code.
pub fn close_inherited_fds() {
    // SAFETY: close_range takes two integers and a flag; closing fds we do not own is the point,
    // and no Rust object in this process owns an fd >= 3 at this early stage of the worker.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        // Kernels before 5.9: close them one by one.
        for fd in 3..1024 {
            // SAFETY: as above; closing an unused number is harmless (EBADF).
            unsafe { libc::close(fd) };
        }
    }
}

pub fn set_rlimits(p: &RlimitProfile, plan: &ConfinementPlan) -> Result<(), String> {
    let limits = [
        (
            libc::RLIMIT_AS,
            "RLIMIT_AS",
            (plan.memory_limit_mib + p.address_space_headroom_mib) * MIB,
        ),
        (
            libc::RLIMIT_CPU,
            "RLIMIT_CPU",
            plan.cpu_seconds + p.cpu_seconds_headroom,
        ),
        (
            // DuckDB enforces max_temp_directory_size itself (a clean error); the rlimit is the
            // backstop a little above it, so DuckDB's check fires first.
            libc::RLIMIT_FSIZE,
            "RLIMIT_FSIZE",
            p.file_size_mib
                .min(plan.max_temp_mib + p.file_size_headroom_mib)
                * MIB,
        ),
        (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", p.nofile),
        (libc::RLIMIT_NPROC, "RLIMIT_NPROC", p.nproc),
        (libc::RLIMIT_CORE, "RLIMIT_CORE", p.core),
    ];
    for (resource, name, value) in limits {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `current` is a valid rlimit on our stack that the kernel fills in.
        if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
            return Err(format!(
                "getrlimit({name}): {}",
                std::io::Error::last_os_error()
            ));
        }
        // Never ask for more than the hard limit we already have (that would fail); lower only.
        let value = value.min(current.rlim_max);
        let lim = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: `lim` is a valid, initialised rlimit on our stack for the duration of the call.
        let rc = unsafe { libc::setrlimit(resource, &lim) };
        if rc != 0 {
            return Err(format!(
                "setrlimit({name}, {value}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// A write past `RLIMIT_FSIZE` then fails with `EFBIG`, which DuckDB reports as an I/O error,
/// instead of killing the worker with `SIGXFSZ`.
pub fn ignore_sigxfsz() -> Result<(), String> {
    // SAFETY: installs the predefined SIG_IGN disposition; no handler code runs.
    if unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// CPU time (user + system, all threads) this process has used so far, from `getrusage`.
pub fn cpu_used_ms() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        // Unknown: report "everything used" so the engine does not reuse this worker.
        return u64::MAX;
    }
    let ms = |t: libc::timeval| t.tv_sec.max(0) as u64 * 1000 + t.tv_usec.max(0) as u64 / 1000;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}
