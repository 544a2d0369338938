//! The master key and the keyed pseudonyms derived from it. Every pseudonym in a snapshot is an
//! HMAC-SHA-256 under a key derived from the master key for one purpose (research ID, one HMAC
//! domain, date shifts, the linkage key of one release), so an unkeyed hash never appears and the
//! purposes cannot be confused. The master key itself never leaves this module.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Result, SnapshotError};

/// Shortest master key accepted: 256 bits, the HMAC-SHA-256 block-size recommendation.
pub const MIN_KEY_BYTES: usize = 32;

/// The steward's secret, read from the key file. Deliberately not `Debug` or `Clone`.
pub struct MasterKey(Vec<u8>);

impl MasterKey {
    /// Reads the key file. Its bytes are the key, as they are (make one with
    /// `head -c 32 /dev/urandom > key`); shorter than [`MIN_KEY_BYTES`] is refused.
    pub fn from_file(path: &Path) -> Result<MasterKey> {
        let bytes = std::fs::read(path).map_err(|e| SnapshotError::KeyFile {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::from_bytes(bytes).map_err(|reason| SnapshotError::KeyFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn from_bytes(bytes: Vec<u8>) -> std::result::Result<MasterKey, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key is {} bytes; at least {MIN_KEY_BYTES} random bytes are required \
                 (e.g. `head -c 32 /dev/urandom > key`)",
                bytes.len()
            ));
        }
        Ok(MasterKey(bytes))
    }

    /// The key for one purpose: HMAC(master, "kura-snapshot/v1/" + label).
    pub fn derive(&self, label: &str) -> Keyed {
        let sub = Keyed::new(&self.0).tag(&[b"kura-snapshot/v1/", label.as_bytes()]);
        Keyed::new(&sub)
    }
}

/// A pre-keyed HMAC-SHA-256: cloning the keyed state saves re-hashing the key for every value.
#[derive(Clone)]
pub struct Keyed {
    mac: Hmac<Sha256>,
}

impl Keyed {
    fn new(key: &[u8]) -> Keyed {
        // HMAC takes keys of any length; new_from_slice cannot fail for it.
        let mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts every key length"),
        };
        Keyed { mac }
    }

    /// HMAC over the parts, each prefixed with its length so that ("ab","c") and ("a","bc") differ.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(&(p.len() as u32).to_le_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The pseudonym as stored: the first 128 bits of the tag in lower-case hex.
    pub fn pseudonym(&self, parts: &[&[u8]]) -> String {
        hex(&self.tag(parts)[..16])
    }

    /// [`Keyed::pseudonym`] without allocating: written into `buf`.
    pub fn pseudonym_into<'b>(&self, parts: &[&[u8]], buf: &'b mut [u8; 32]) -> &'b str {
        hex_into(&self.tag(parts), buf)
    }

    /// A value in `-max..=max` fixed by the parts (for per-person date shifts).
    pub fn offset(&self, parts: &[&[u8]], max: u32) -> i64 {
        let t = self.tag(parts);
        let n = u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]);
        let span = 2 * u64::from(max) + 1;
        (n % span) as i64 - i64::from(max)
    }
}

/// The first 16 bytes of `tag` as 32 lower-case hex digits in `buf`.
pub fn hex_into<'b>(tag: &[u8; 32], buf: &'b mut [u8; 32]) -> &'b str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in tag.iter().take(16).enumerate() {
        buf[2 * i] = HEX[usize::from(b >> 4)];
        buf[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    std::str::from_utf8(buf).unwrap_or_default()
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> MasterKey {
        MasterKey::from_bytes(vec![fill; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(MasterKey::from_bytes(vec![7; 31]).is_err());
        assert!(MasterKey::from_bytes(Vec::new()).is_err());
    }

    #[test]
    fn purposes_and_keys_give_different_pseudonyms() {
        let a = key(1);
        let v: &[&[u8]] = &[b"1312345678"];
        assert_eq!(a.derive("x").pseudonym(v), a.derive("x").pseudonym(v));
        assert_ne!(a.derive("x").pseudonym(v), a.derive("y").pseudonym(v));
        assert_ne!(a.derive("x").pseudonym(v), key(2).derive("x").pseudonym(v));
        assert_ne!(
            a.derive("x").pseudonym(&[b"ab", b"c"]),
            a.derive("x").pseudonym(&[b"a", b"bc"])
        );
    }

    #[test]
    fn offsets_stay_in_range() {
        let k = key(3).derive("shift");
        for i in 0..1000u32 {
            let o = k.offset(&[&i.to_le_bytes()], 7);
            assert!((-7..=7).contains(&o));
        }
    }
}
