//! The verifier's reading of C2SP signed notes, checkpoints, verifier keys and `tlog-proof@v1`
//! receipts. Parses strictly: anything but the documented form is rejected.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::{hash_leaf, verify_inclusion};

/// A parsed `name+keyid+base64(0x01||key)` verifier key.
#[derive(Debug, Clone)]
pub struct VerifierKey {
    pub name: String,
    pub id: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn parse(text: &str) -> Result<VerifierKey, String> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("verifier key must be name+keyid+key".into());
        };
        let raw = B64
            .decode(b64)
            .map_err(|e| format!("verifier key is not base64: {e}"))?;
        if raw.len() != 33 || raw[0] != 1 {
            return Err("verifier key is not Ed25519 (0x01 followed by 32 bytes)".into());
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[1..]);
        let mut d = Sha256::new();
        d.update(name.as_bytes());
        d.update(b"\n");
        d.update(&raw);
        let digest = d.finalize();
        let id = [digest[0], digest[1], digest[2], digest[3]];
        let expected: String = id.iter().map(|b| format!("{b:02x}")).collect();
        if expected != id_hex {
            return Err(format!(
                "key id {id_hex} does not match the key (expected {expected})"
            ));
        }
        let key = VerifyingKey::from_bytes(&pk).map_err(|e| format!("bad Ed25519 key: {e}"))?;
        Ok(VerifierKey {
            name: name.to_string(),
            id,
            key,
        })
    }
}

/// A checkpoint whose signature was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    pub text: String,
}

/// Checks a C2SP signed note's signature by `key` and returns its body (the text before the
/// blank line, final newline included). Signature lines of other keys are ignored; a line of
/// this key that does not verify, or no line of this key at all, is an error.
pub fn open_note<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, String> {
    // Signature lines never contain a blank line, so the last one separates body and signatures.
    let split = note
        .rfind("\n\n")
        .ok_or("note has no blank line before its signatures")?;
    let body = &note[..split + 1];
    let sigs = &note[split + 2..];
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err("note has no signature lines".into());
    }
    let mut verified = false;
    for line in sigs.lines() {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| format!("signature line {line:?} does not start with an em dash"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| format!("signature line {line:?} has no signature"))?;
        let blob = B64
            .decode(b64)
            .map_err(|e| format!("signature is not base64: {e}"))?;
        if name != key.name || blob.len() != 68 || blob[..4] != key.id {
            continue;
        }
        let sig = Signature::from_slice(&blob[4..]).map_err(|e| e.to_string())?;
        key.key.verify_strict(body.as_bytes(), &sig).map_err(|_| {
            format!(
                "the signature by {} does not verify: the note was changed",
                key.name
            )
        })?;
        verified = true;
    }
    if !verified {
        return Err(format!("no signature by {} on the note", key.name));
    }
    Ok(body)
}

/// Checks the note's signature by `key` and parses its checkpoint body.
pub fn open_checkpoint(note: &str, key: &VerifierKey) -> Result<Checkpoint, String> {
    let body = open_note(note, key)?;
    let lines: Vec<&str> = body.trim_end_matches('\n').split('\n').collect();
    if lines.len() < 3 {
        return Err("checkpoint body needs origin, size and root lines".into());
    }
    let size_text = lines[1];
    let size: u64 = size_text
        .parse()
        .map_err(|_| format!("checkpoint size {size_text:?} is not a number"))?;
    if size.to_string() != size_text {
        return Err(format!(
            "checkpoint size {size_text:?} is not canonical decimal"
        ));
    }
    let root_raw = B64
        .decode(lines[2])
        .map_err(|e| format!("checkpoint root is not base64: {e}"))?;
    let root = <[u8; 32]>::try_from(root_raw.as_slice())
        .map_err(|_| "checkpoint root is not 32 bytes".to_string())?;
    if lines[0] != key.name {
        return Err(format!(
            "checkpoint origin {:?} is not the log {:?}",
            lines[0], key.name
        ));
    }
    Ok(Checkpoint {
        origin: lines[0].to_string(),
        size,
        root,
        text: note.to_string(),
    })
}

/// What a verified receipt proves.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub checkpoint: Checkpoint,
}

/// Verifies a `tlog-proof@v1` receipt whose `extra` line carries the leaf bytes.
pub fn verify_receipt(text: &str, key: &VerifierKey) -> Result<VerifiedReceipt, String> {
    let rest = text
        .strip_prefix("c2sp.org/tlog-proof@v1\n")
        .ok_or("not a c2sp.org/tlog-proof@v1 receipt")?;
    let (extra, rest) = match rest.strip_prefix("extra ") {
        Some(r) => {
            let (e, r) = r.split_once('\n').ok_or("truncated extra line")?;
            (Some(e), r)
        }
        None => (None, rest),
    };
    let leaf = B64
        .decode(extra.ok_or("receipt carries no leaf bytes in its extra line")?)
        .map_err(|e| format!("extra is not base64: {e}"))?;
    let rest = rest.strip_prefix("index ").ok_or("missing index line")?;
    let (idx, mut rest) = rest.split_once('\n').ok_or("truncated index line")?;
    let index: u64 = idx.parse().map_err(|_| format!("bad index {idx:?}"))?;
    let mut proof = Vec::new();
    loop {
        let (line, r) = rest
            .split_once('\n')
            .ok_or("receipt ends inside the proof")?;
        rest = r;
        if line.is_empty() {
            break;
        }
        proof.push(
            B64.decode(line)
                .map_err(|e| format!("proof line is not base64: {e}"))?,
        );
    }
    let checkpoint = open_checkpoint(rest, key)?;
    verify_inclusion(
        index,
        checkpoint.size,
        &hash_leaf(&leaf),
        &proof,
        &checkpoint.root,
    )?;
    Ok(VerifiedReceipt {
        index,
        leaf,
        checkpoint,
    })
}
