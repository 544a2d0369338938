//! Local accounts: argon2id password hashes (OWASP parameters), constant-cost verification
//! (including for unknown user names), the password policy, and generated demo passwords.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::IdentityError;

/// Memory cost in KiB (OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1).
pub const ARGON2_M_COST_KIB: u32 = 19_456;
/// Iterations.
pub const ARGON2_T_COST: u32 = 2;
/// Parallelism.
pub const ARGON2_P_COST: u32 = 1;

/// Shortest password the policy accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password the policy accepts, in characters (bounds hashing work per request).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// From this length on, one kind of character is enough (passphrases).
pub const PASSPHRASE_CHARS: usize = 16;

/// Length of [`generate_password`]'s output.
pub const GENERATED_PASSWORD_CHARS: usize = 20;
/// Letters and digits without look-alikes (0/O/o, 1/l/I), for passwords read off a screen.
const UNAMBIGUOUS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// A hash of a random, forgotten password with the same parameters as [`hash_password`], so that
/// [`dummy_verify`] costs what a real verification costs. `tests/password.rs` checks the
/// parameters stay in step with the constants above.
pub const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$DAh4Rbi8/tjw+n5oNjghPQ$4oLDrjNSej37kzRoyj73n7FyLwWI6quy+kIm8g0PBtc";

fn hasher() -> Result<Argon2<'static>, IdentityError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|e| IdentityError::PasswordHash(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password as an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`)
/// with a fresh 16-byte random salt.
pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| IdentityError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| IdentityError::PasswordHash(format!("salt encoding: {e}")))?;
    let hash = hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| IdentityError::PasswordHash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks `candidate` against a stored PHC string. The comparison is constant-time (argon2 crate);
/// the parameters are those recorded in the string. A malformed stored hash never matches, and is
/// logged because it means the account store is damaged.
pub fn verify_password(phc: &str, candidate: &str) -> bool {
    let parsed = match PasswordHash::new(phc) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!(error = %e, "stored password hash is malformed; the account cannot sign in");
            return false;
        }
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        tracing::error!(algorithm = %parsed.algorithm, "stored password hash is not argon2id");
        return false;
    }
    match Argon2::default().verify_password(candidate.as_bytes(), &parsed) {
        Ok(()) => true,
        Err(argon2::password_hash::Error::Password) => false,
        Err(e) => {
            tracing::error!(error = %e, "stored password hash cannot be checked");
            false
        }
    }
}

/// Does the work of one [`verify_password`] and returns `false`: call it for unknown user names
/// so that the response time does not reveal which names exist.
pub fn dummy_verify(candidate: &str) -> bool {
    // The result is discarded; the hash's password is unknown, so this is always false anyway.
    let _ = verify_password(DUMMY_PHC, candidate);
    false
}

/// True if a stored hash was made with other parameters than today's, so the caller should
/// re-hash the password after a successful sign-in.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm != argon2::ARGON2ID_IDENT
        || parsed.version != Some(Version::V0x13.into())
        || params.m_cost() != ARGON2_M_COST_KIB
        || params.t_cost() != ARGON2_T_COST
        || params.p_cost() != ARGON2_P_COST
}

/// The policy for passwords people choose: 12 to 256 characters, no control characters, at least
/// five distinct characters, and (below 16 characters) at least two kinds of character: lower
/// case, upper case, digits, letters without case (kana, kanji), other (symbols, spaces).
/// Passphrases pass ("correct horse battery staple", "ねこがすきですよねこがすきですよ").
pub fn check_password_policy(password: &str) -> Result<(), IdentityError> {
    let reject = |why: &str| Err(IdentityError::PasswordPolicy(why.to_string()));
    let count = password.chars().count();
    if count < MIN_PASSWORD_CHARS {
        return reject(&format!(
            "it has {count} characters; use at least {MIN_PASSWORD_CHARS}"
        ));
    }
    if count > MAX_PASSWORD_CHARS {
        return reject(&format!(
            "it has {count} characters; use at most {MAX_PASSWORD_CHARS}"
        ));
    }
    if password.chars().any(char::is_control) {
        return reject("it contains control characters");
    }
    let uncased = |c: char| c.is_alphabetic() && !c.is_lowercase() && !c.is_uppercase();
    let classes = [
        password.chars().any(char::is_lowercase),
        password.chars().any(char::is_uppercase),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(uncased),
        password
            .chars()
            .any(|c| !c.is_alphabetic() && !c.is_ascii_digit()),
    ];
    if count < PASSPHRASE_CHARS && classes.iter().filter(|present| **present).count() < 2 {
        return reject(&format!(
            "it uses one kind of character only; mix in another (case, digits, symbols) or use at least {PASSPHRASE_CHARS} characters"
        ));
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return reject("it repeats too few distinct characters");
    }
    Ok(())
}

/// A random password of [`GENERATED_PASSWORD_CHARS`] characters from an unambiguous alphabet of
/// 56 symbols (about 116 bits), which always passes [`check_password_policy`].
pub fn generate_password() -> Result<String, IdentityError> {
    // 224 = 4 * 56: bytes at or above it are dropped so every symbol is equally likely.
    let limit = (256 / UNAMBIGUOUS.len() * UNAMBIGUOUS.len()) as u8;
    loop {
        let mut out = String::with_capacity(GENERATED_PASSWORD_CHARS);
        while out.len() < GENERATED_PASSWORD_CHARS {
            let mut buf = [0u8; 32];
            getrandom::fill(&mut buf).map_err(|e| IdentityError::Random(e.to_string()))?;
            for b in buf {
                if b < limit && out.len() < GENERATED_PASSWORD_CHARS {
                    out.push(char::from(UNAMBIGUOUS[usize::from(b) % UNAMBIGUOUS.len()]));
                }
            }
        }
        if check_password_policy(&out).is_ok() {
            return Ok(out);
        }
    }
}
