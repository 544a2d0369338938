//! The log's Ed25519 key and C2SP `signed-note` / `tlog-checkpoint` output: key ids, verifier keys
//! (`name+keyid+base64key`), signing checkpoints, and `tlog-proof@v1` receipts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::AuditError;

/// Signature type byte for Ed25519 in signed-note keys.
const ALG_ED25519: u8 = 0x01;

/// The log's signing key and the name (checkpoint origin) it signs as.
pub struct LogKey {
    name: String,
    key: SigningKey,
}

/// key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key).
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A key name must be non-empty and free of whitespace and `+` (signed-note rule).
pub fn check_name(name: &str) -> Result<(), AuditError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(AuditError::Config(format!(
            "log origin {name:?} is not a valid signed-note key name (non-empty, no spaces, no '+')"
        )));
    }
    Ok(())
}

impl LogKey {
    /// Loads the existing key file `path`, which must sign as `name`.
    pub fn load(path: &Path, name: &str) -> Result<LogKey, AuditError> {
        check_name(name)?;
        let text = std::fs::read_to_string(path).map_err(|e| AuditError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        LogKey::from_text(path, &text, name)
    }

    fn from_text(path: &Path, text: &str, name: &str) -> Result<LogKey, AuditError> {
        let key = LogKey::parse(text).map_err(|why| AuditError::Key {
            path: path.to_path_buf(),
            why,
        })?;
        if key.name != name {
            return Err(AuditError::Key {
                path: path.to_path_buf(),
                why: format!(
                    "the key signs as {:?} but this log is configured as {name:?}",
                    key.name
                ),
            });
        }
        Ok(key)
    }

    /// Loads `path`, or creates it (mode 0600) with a fresh key when it does not exist.
    pub fn load_or_create(path: &Path, name: &str) -> Result<LogKey, AuditError> {
        check_name(name)?;
        match std::fs::read_to_string(path) {
            Ok(text) => LogKey::from_text(path, &text, name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| AuditError::Key {
                    path: path.to_path_buf(),
                    why: format!("no randomness for a new key: {e}"),
                })?;
                let key = LogKey {
                    name: name.to_string(),
                    key: SigningKey::from_bytes(&seed),
                };
                let io = |e: std::io::Error| AuditError::Io {
                    path: path.to_path_buf(),
                    source: e,
                };
                let written = write_new_private(path, key.private_text().as_bytes());
                match written {
                    Ok(()) => Ok(key),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path).map_err(io)?;
                        LogKey::from_text(path, &text, name)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(AuditError::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    /// `PRIVATE+KEY+name+keyid+base64(0x01||seed)`, the signed-note signer key encoding.
    fn private_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex(&key_id(&self.name, &self.public())),
            B64.encode(raw)
        )
    }

    pub fn parse(text: &str) -> Result<LogKey, String> {
        let text = text.trim_end();
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or("does not start with PRIVATE+KEY+")?;
        // Names never contain '+', but base64 does: split from the left.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected PRIVATE+KEY+name+keyid+key".into());
        };
        let raw = B64
            .decode(b64)
            .map_err(|e| format!("key is not base64: {e}"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err("key is not an Ed25519 seed (0x01 followed by 32 bytes)".into());
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw[1..]);
        let key = LogKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        };
        if hex(&key_id(name, &key.public())) != id {
            return Err(format!("key id {id} does not match the key"));
        }
        Ok(key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The verifier key: `name+keyid_hex+base64(0x01||public key)`.
    pub fn verifier_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.public());
        format!(
            "{}+{}+{}",
            self.name,
            hex(&key_id(&self.name, &self.public())),
            B64.encode(raw)
        )
    }

    /// A signed `tlog-checkpoint`: body `origin\nsize\nbase64(root)\n`, a blank line, and one
    /// signature line `— name base64(keyid || signature)`.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash) -> String {
        let body = checkpoint_body(&self.name, size, root);
        let sig = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.name, &self.public()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }

    /// A C2SP signed note over any text (e.g. a release manifest): `body` (a newline is
    /// appended if it lacks one), a blank line, and one signature line `— name
    /// base64(keyid || signature)`, exactly as [`LogKey::sign_checkpoint`] signs a checkpoint.
    /// [`verify_note`] checks it.
    pub fn sign_note(&self, body: &str) -> String {
        let mut body = body.to_string();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let sig = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.name, &self.public()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

pub fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// Checks a C2SP signed note (as written by [`LogKey::sign_note`]) against a verifier key
/// `name+keyid+base64(0x01||public key)` and returns its body. The check is the independent
/// verifier's ([`crate::verify::note::open_note`]), so readers of releases and of checkpoints
/// trust the same code.
pub fn verify_note(note: &str, verifier_key: &str) -> Result<String, String> {
    let key = crate::verify::note::VerifierKey::parse(verifier_key)?;
    crate::verify::note::open_note(note, &key).map(str::to_string)
}

/// A C2SP `tlog-proof@v1` receipt. The exact leaf bytes travel in the `extra` line so the
/// receipt alone lets anyone recompute the leaf hash.
pub fn receipt(leaf: &[u8], index: u64, proof: &[Hash], checkpoint: &str) -> String {
    let mut out = format!(
        "c2sp.org/tlog-proof@v1\nextra {}\nindex {index}\n",
        B64.encode(leaf)
    );
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(checkpoint);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `path` whole (never overwrites, never visible half-written), owner-only, synced: the
/// bytes go to a temporary file first, which is then hard-linked to `path`, so a process
/// starting at the same moment reads either no file or the complete one, and the first link
/// wins (`AlreadyExists` for the others). For key files: this log's signing key, the explorer
/// secret.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| std::io::Error::other(format!("random: {e}")))?;
    let tmp = path.with_extension(format!("tmp-{}", hex(&random)));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    written?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn processes_creating_the_key_at_once_agree_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-signing.key");
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        LogKey::load_or_create(&path, "kura.test/audit")
                            .unwrap()
                            .verifier_key()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("audit-signing.key")]);
        let again = LogKey::load_or_create(&path, "kura.test/audit").unwrap();
        assert_eq!(again.verifier_key(), keys[0]);
    }
}
