//! The verifier's own reader of the leaf format (version 1, `docs/audit.md`), kept apart from the
//! writer's `leaf.rs` so that the two are checked against each other. It validates the whole
//! layout but only returns the fields the verifier compares.

/// The fixed-position fields of a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafHead {
    pub index: u64,
    pub prev: [u8; 32],
    pub micros: i64,
    pub commitment: [u8; 32],
}

const HEAD: usize = 1 + 8 + 32 + 8;

fn field_u16(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 2)
        .map(|n| u16::from_be_bytes([n[0], n[1]]) as usize)
}

/// Skips one `u16 length + UTF-8` field at `*p`. Errors are built only on failure: this runs
/// for every string of every leaf.
fn skip_text(b: &[u8], p: &mut usize, what: &str) -> Result<(), String> {
    let n = field_u16(b, *p).ok_or_else(|| format!("{what} length missing"))?;
    let s = b
        .get(*p + 2..*p + 2 + n)
        .ok_or_else(|| format!("{what} runs past the end"))?;
    std::str::from_utf8(s).map_err(|_| format!("{what} is not UTF-8"))?;
    *p += 2 + n;
    Ok(())
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

pub fn parse_leaf(b: &[u8]) -> Result<LeafHead, String> {
    if b.len() < HEAD + 2 + 2 + 1 + 1 + 2 + 32 {
        return Err(format!("leaf is only {} bytes", b.len()));
    }
    if b[0] != 1 {
        return Err(format!("leaf version {} is not 1", b[0]));
    }
    let mut p = HEAD;
    skip_text(b, &mut p, "event type")?;
    skip_text(b, &mut p, "actor")?;
    for what in ["session", "project"] {
        match b.get(p) {
            Some(0) => p += 1,
            Some(1) => {
                p += 1;
                skip_text(b, &mut p, what)?;
            }
            _ => return Err(format!("{what} presence byte is not 0 or 1")),
        }
    }
    let count = field_u16(b, p).ok_or("object count missing")?;
    p += 2;
    for _ in 0..count {
        skip_text(b, &mut p, "object id")?;
    }
    if b.len() != p + 32 {
        return Err(format!(
            "leaf is {} bytes but its fields end at {}",
            b.len(),
            p + 32
        ));
    }
    Ok(LeafHead {
        index: u64::from_be_bytes(arr(b, 1)),
        prev: arr(b, 9),
        micros: i64::from_be_bytes(arr(b, 41)),
        commitment: arr(b, p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaf built by hand from the documented layout, not by the writer's encoder.
    fn leaf(objects: &[&str]) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&[0xAA; 32]);
        b.extend_from_slice(&42i64.to_be_bytes());
        for s in ["query.submitted", "alice"] {
            b.extend_from_slice(&(s.len() as u16).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&[1, 0, 3]);
        b.extend_from_slice(b"p-1");
        b.extend_from_slice(&(objects.len() as u16).to_be_bytes());
        for o in objects {
            b.extend_from_slice(&(o.len() as u16).to_be_bytes());
            b.extend_from_slice(o.as_bytes());
        }
        b.extend_from_slice(&[0xCC; 32]);
        b
    }

    #[test]
    fn reads_the_documented_layout() {
        let h = parse_leaf(&leaf(&["a", "bc"])).unwrap();
        assert_eq!(
            h,
            LeafHead {
                index: 7,
                prev: [0xAA; 32],
                micros: 42,
                commitment: [0xCC; 32]
            }
        );
    }

    #[test]
    fn rejects_every_truncation_and_trailing_bytes() {
        let good = leaf(&["x"]);
        for n in 0..good.len() {
            assert!(parse_leaf(&good[..n]).is_err(), "accepted {n} bytes");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(parse_leaf(&long).is_err());
    }

    #[test]
    fn rejects_bad_utf8_and_presence_bytes() {
        let mut b = leaf(&[]);
        b[HEAD + 2] = 0xFF; // first byte of the event type
        assert!(parse_leaf(&b)
            .unwrap_err()
            .contains("event type is not UTF-8"));
        let mut b = leaf(&[]);
        let session_at = HEAD + 2 + 15 + 2 + 5;
        b[session_at] = 2;
        assert!(parse_leaf(&b)
            .unwrap_err()
            .contains("session presence byte"));
    }
}
