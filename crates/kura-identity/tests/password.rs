//! Local-account passwords: argon2id with OWASP parameters, salts, malformed hashes, the dummy
//! verification for unknown users, the policy and generated passwords.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kura_identity::password::{
    check_password_policy, dummy_verify, generate_password, hash_password, needs_rehash,
    verify_password, DUMMY_PHC, GENERATED_PASSWORD_CHARS,
};

const GOOD: &str = "Kura-registry-2026";

/// Splits `$argon2id$v=19$m=..,t=..,p=..$salt$hash` into its fields.
fn fields(phc: &str) -> Vec<&str> {
    phc.split('$').skip(1).collect()
}

#[test]
fn round_trip_and_wrong_password() {
    let phc = hash_password(GOOD).unwrap();
    assert!(verify_password(&phc, GOOD));
    assert!(!verify_password(&phc, "Kura-registry-2027"));
    assert!(!verify_password(&phc, ""));
    assert!(!verify_password(&phc, &GOOD.to_lowercase()));
}

#[test]
fn phc_string_names_argon2id_and_owasp_parameters() {
    let phc = hash_password(GOOD).unwrap();
    let f = fields(&phc);
    assert_eq!(f.len(), 5, "{phc}");
    assert_eq!(f[0], "argon2id");
    assert_eq!(f[1], "v=19");
    assert_eq!(f[2], "m=19456,t=2,p=1");
    assert!(f[3].len() >= 22, "salt of at least 16 bytes: {phc}");
    assert!(!needs_rehash(&phc));
}

#[test]
fn two_hashes_of_one_password_differ() {
    let a = hash_password(GOOD).unwrap();
    let b = hash_password(GOOD).unwrap();
    assert_ne!(a, b);
    assert_ne!(fields(&a)[3], fields(&b)[3], "salts must differ");
    assert!(verify_password(&a, GOOD) && verify_password(&b, GOOD));
}

#[test]
fn malformed_or_foreign_hashes_never_match() {
    let phc = hash_password(GOOD).unwrap();
    let truncated = &phc[..phc.len() - 5];
    let mut flipped = phc.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        "",
        "not a hash",
        GOOD,
        "$argon2id$v=19$m=19456,t=2,p=1$",
        truncated,
        flipped.as_str(),
        // Same hash relabelled as argon2i: must not verify as argon2id.
        &phc.replacen("argon2id", "argon2i", 1),
    ] {
        assert!(!verify_password(bad, GOOD), "accepted {bad:?}");
    }
    assert!(needs_rehash("not a hash"));
}

#[test]
fn weaker_parameters_ask_for_rehash() {
    let phc = hash_password(GOOD).unwrap();
    let weaker = phc.replacen("m=19456,t=2,p=1", "m=8192,t=1,p=1", 1);
    assert!(needs_rehash(&weaker));
}

#[test]
fn dummy_hash_uses_current_parameters_and_costs_like_a_real_verify() {
    let f = fields(DUMMY_PHC);
    assert_eq!(&f[..3], &["argon2id", "v=19", "m=19456,t=2,p=1"]);
    assert!(!needs_rehash(DUMMY_PHC));
    assert!(!dummy_verify(GOOD));
    assert!(!dummy_verify(""));

    let phc = hash_password(GOOD).unwrap();
    let time = |f: &dyn Fn()| {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed());
        }
        best
    };
    let real = time(&|| assert!(!verify_password(&phc, "wrong-password-1")));
    let dummy = time(&|| assert!(!dummy_verify("wrong-password-1")));
    // Not a performance claim: it catches a dummy that skips the hashing (~1000x faster).
    // The bound is loose because the other tests load both cores at the same time.
    let ratio = dummy.as_secs_f64() / real.as_secs_f64();
    assert!(ratio > 0.05, "dummy {dummy:?} vs real {real:?}");
}

#[test]
fn policy_rejects_short_uniform_and_control_passwords() {
    for bad in [
        "Short-1",
        "aaaaaaaaaaaaaaaa",
        "123456789012345",
        "abcdefghijkl",
        "ABABABABABABABAB",
        "Aa1Aa1Aa1Aa1",
        "Kura-registry\u{7}2026",
    ] {
        let err = check_password_policy(bad).unwrap_err().to_string();
        assert!(err.starts_with("password rejected: "), "{bad:?}: {err}");
    }
    assert!(
        check_password_policy(&"Ab3".repeat(100)).is_err(),
        "too long"
    );
    for good in [
        GOOD,
        "correct horse battery staple",
        "ねこがすきですよねこがすきですよ",
        "ねこ が すき です よね",
        "abcdefghijklmnop",
    ] {
        check_password_policy(good).unwrap();
    }
}

#[test]
fn generated_passwords_are_unambiguous_distinct_and_pass_the_policy() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let p = generate_password().unwrap();
        assert_eq!(p.chars().count(), GENERATED_PASSWORD_CHARS);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()), "{p}");
        assert!(!p.contains(['0', 'O', 'o', '1', 'l', 'I']), "{p}");
        check_password_policy(&p).unwrap();
        assert!(seen.insert(p));
    }
}
