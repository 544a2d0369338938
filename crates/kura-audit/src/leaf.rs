//! The leaf record: the exact bytes that are hashed into the Merkle tree (layout in `docs/audit.md`)
//! and the salted payload commitment that lets a payload be erased without breaking the tree.

use sha2::{Digest, Sha256};

use crate::AuditError;

/// Current leaf format version (first byte of every leaf).
pub const LEAF_VERSION: u8 = 1;
/// Longest string field accepted in a leaf; events are identifiers, not documents.
pub const MAX_FIELD_LEN: usize = 4096;
/// Most object ids one leaf may name.
pub const MAX_OBJECTS: usize = 64;

/// A decoded leaf. `encode` and `decode` are exact inverses; `decode` rejects anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub index: u64,
    pub prev_hash: [u8; 32],
    /// Microseconds since the Unix epoch, UTC.
    pub timestamp_micros: i64,
    pub kind: String,
    pub actor: String,
    pub session: Option<String>,
    pub project: Option<String>,
    pub objects: Vec<String>,
    pub commitment: [u8; 32],
}

impl Leaf {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.kind.len() + self.actor.len());
        out.push(LEAF_VERSION);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.timestamp_micros.to_be_bytes());
        put_str(&mut out, &self.kind);
        put_str(&mut out, &self.actor);
        put_opt(&mut out, self.session.as_deref());
        put_opt(&mut out, self.project.as_deref());
        out.extend_from_slice(&(self.objects.len() as u16).to_be_bytes());
        for o in &self.objects {
            put_str(&mut out, o);
        }
        out.extend_from_slice(&self.commitment);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Leaf, String> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != LEAF_VERSION {
            return Err(format!(
                "unknown leaf version {version} (expected {LEAF_VERSION})"
            ));
        }
        let index = u64::from_be_bytes(r.array()?);
        let prev_hash = r.array()?;
        let timestamp_micros = i64::from_be_bytes(r.array()?);
        let kind = r.string("event type")?;
        let actor = r.string("actor")?;
        let session = r.opt("session")?;
        let project = r.opt("project")?;
        let count = u16::from_be_bytes(r.array()?) as usize;
        if count > MAX_OBJECTS {
            return Err(format!("{count} object ids (at most {MAX_OBJECTS})"));
        }
        let mut objects = Vec::with_capacity(count);
        for _ in 0..count {
            objects.push(r.string("object id")?);
        }
        let commitment = r.array()?;
        if r.pos != bytes.len() {
            return Err(format!(
                "{} trailing bytes after the commitment",
                bytes.len() - r.pos
            ));
        }
        Ok(Leaf {
            index,
            prev_hash,
            timestamp_micros,
            kind,
            actor,
            session,
            project,
            objects,
            commitment,
        })
    }
}

/// Checks the limits `encode` relies on, so an oversized field is refused at append time.
pub fn check_field(name: &str, value: &str) -> Result<(), AuditError> {
    if value.len() > MAX_FIELD_LEN {
        return Err(AuditError::InvalidEvent(format!(
            "{name} is {} bytes long (at most {MAX_FIELD_LEN})",
            value.len()
        )));
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "leaf ends at byte {} but {n} more bytes are needed at offset {}",
                self.bytes.len(),
                self.pos
            )),
        }
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        if len > MAX_FIELD_LEN {
            return Err(format!("{what} is {len} bytes (at most {MAX_FIELD_LEN})"));
        }
        let at = self.pos;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} at offset {at} is not UTF-8"))
    }

    fn opt(&mut self, what: &str) -> Result<Option<String>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string(what).map(Some),
            t => Err(format!("{what} presence byte is {t} (expected 0 or 1)")),
        }
    }
}

/// The canonical payload text: JSON with object keys sorted by their UTF-8 bytes and no
/// whitespace. Written out here rather than relying on `serde_json`'s map order, which another
/// crate in the build could change by enabling `preserve_order`.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256(salt || canonical payload).
pub fn commitment(salt: &[u8], canonical_payload: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(canonical_payload.as_bytes());
    h.finalize().into()
}

/// RFC 3339 text as microseconds since the Unix epoch.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

pub use crate::reader::format_micros;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Leaf {
        Leaf {
            index: 7,
            prev_hash: [3; 32],
            timestamp_micros: 1_700_000_000_000_000,
            kind: "query.submitted".into(),
            actor: "alice".into(),
            session: Some("s1".into()),
            project: None,
            objects: vec!["q-1".into(), "snap-2".into()],
            commitment: [9; 32],
        }
    }

    #[test]
    fn round_trips_and_rejects_every_truncation_and_extension() {
        let leaf = sample();
        let bytes = leaf.encode();
        assert_eq!(Leaf::decode(&bytes), Ok(leaf));
        for n in 0..bytes.len() {
            assert!(
                Leaf::decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Leaf::decode(&longer).is_err());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": "é"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"é","z":[1,{"x":3,"y":2}]},"b":1}"#
        );
    }
}
