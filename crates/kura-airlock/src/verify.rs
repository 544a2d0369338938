//! Verification of a release directory by anyone holding the release verifier key (supervisors,
//! the researcher who downloaded it): the signature over `manifest.json`, the manifest's form,
//! and the released file's hash. Reads only the directory; needs no database.

use std::path::Path;

use crate::error::AirlockError;
use crate::release::{Manifest, MANIFEST_FILE, MANIFEST_FORMAT, SIGNATURE_FILE};
use crate::staged::sha256_hex;

/// Checks `dir` (a copy of `<state>/releases/<id>/`) against `verifier_key`
/// (`name+keyid+base64`, from [`crate::Airlock::release_verifier_key`]) and returns the verified
/// manifest. Fails when the signature does not verify, `manifest.json` is not exactly the signed
/// text, the released file is missing or its SHA-256 differs, or the directory holds any other
/// file.
pub fn verify_release(dir: &Path, verifier_key: &str) -> Result<Manifest, AirlockError> {
    let fail = |why: String| AirlockError::Verify {
        dir: dir.to_path_buf(),
        why,
    };
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| fail(format!("cannot read {name}: {e}")))
    };
    let manifest_bytes = read(MANIFEST_FILE)?;
    let note = String::from_utf8(read(SIGNATURE_FILE)?)
        .map_err(|_| fail(format!("{SIGNATURE_FILE} is not text")))?;
    let body = kura_audit::note::verify_note(&note, verifier_key)
        .map_err(|e| fail(format!("{SIGNATURE_FILE}: {e}")))?;
    if body.as_bytes() != manifest_bytes.as_slice() {
        return Err(fail(format!(
            "{MANIFEST_FILE} is not the signed manifest: it was changed after signing"
        )));
    }
    let manifest: Manifest = serde_json::from_str(&body)
        .map_err(|e| fail(format!("the signed manifest does not parse: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(fail(format!(
            "manifest format {:?} is not {MANIFEST_FORMAT:?}",
            manifest.format
        )));
    }
    if manifest.canonical_text()? != body {
        return Err(fail("the signed manifest is not in canonical form".into()));
    }
    let file = &manifest.file;
    if file.is_empty()
        || file.starts_with('.')
        || file.contains(['/', '\\'])
        || file == MANIFEST_FILE
        || file == SIGNATURE_FILE
    {
        return Err(fail(format!("the manifest names an unsafe file {file:?}")));
    }
    let data = read(file)?;
    let found = sha256_hex(&data);
    if found != manifest.file_sha256 {
        return Err(fail(format!(
            "{file} has SHA-256 {found}, the signed manifest says {}: the file was changed",
            manifest.file_sha256
        )));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| fail(format!("cannot list: {e}")))?;
    for entry in entries {
        let name = entry
            .map_err(|e| fail(format!("cannot list: {e}")))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name != MANIFEST_FILE && name != SIGNATURE_FILE && &name != file {
            return Err(fail(format!(
                "unexpected file {name:?}: a release holds only {file}, {MANIFEST_FILE} and \
                 {SIGNATURE_FILE}"
            )));
        }
    }
    Ok(manifest)
}
