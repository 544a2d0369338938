//! The verifier's own RFC 9162 Merkle code, written apart from the writer's `merkle.rs` so that a
//! bug in one shows up as a disagreement with the other: a streaming root builder and the
//! inclusion / consistency proof checks of RFC 9162 sections 2.1.3.2 and 2.1.4.2.

use sha2::{Digest, Sha256};

fn h_leaf(data: &[u8]) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(b"\x00");
    d.update(data);
    d.finalize().into()
}

fn h_node(l: &[u8], r: &[u8]) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(b"\x01");
    d.update(l);
    d.update(r);
    d.finalize().into()
}

/// The hash a leaf contributes to the tree.
pub fn hash_leaf(data: &[u8]) -> [u8; 32] {
    h_leaf(data)
}

/// Builds the tree one leaf at a time; `root()` is the tree head of the leaves so far.
#[derive(Default)]
pub struct TreeBuilder {
    /// (number of leaves under the node, node hash), strictly decreasing leaf counts.
    stack: Vec<(u64, [u8; 32])>,
    size: u64,
}

impl TreeBuilder {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn add_leaf_hash(&mut self, h: [u8; 32]) {
        self.size += 1;
        self.stack.push((1, h));
        while self.stack.len() >= 2 {
            let n = self.stack.len();
            if self.stack[n - 1].0 != self.stack[n - 2].0 {
                break;
            }
            let (count, right) = self.stack[n - 1];
            let left = self.stack[n - 2].1;
            self.stack.truncate(n - 2);
            self.stack.push((count * 2, h_node(&left, &right)));
        }
    }

    pub fn root(&self) -> [u8; 32] {
        let mut acc: Option<[u8; 32]> = None;
        for (_, h) in self.stack.iter().rev() {
            acc = Some(match acc {
                None => *h,
                Some(r) => h_node(h, &r),
            });
        }
        acc.unwrap_or_else(|| Sha256::digest(b"").into())
    }
}

fn as_hash(bytes: &[u8], what: &str) -> Result<[u8; 32], String> {
    <[u8; 32]>::try_from(bytes).map_err(|_| format!("{what} is {} bytes, not 32", bytes.len()))
}

/// RFC 9162 section 2.1.3.2: is `leaf_hash` at `index` in the tree of `size` with `root`?
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[Vec<u8>],
    root: &[u8],
) -> Result<(), String> {
    let leaf = as_hash(leaf_hash, "leaf hash")?;
    let root = as_hash(root, "root")?;
    if index >= size {
        return Err(format!("index {index} is outside a tree of size {size}"));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for (i, p) in proof.iter().enumerate() {
        let p = as_hash(p, &format!("proof element {i}"))?;
        if s == 0 {
            return Err("inclusion proof is too long".into());
        }
        if f & 1 == 1 || f == s {
            r = h_node(&p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = h_node(&r, &p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err("inclusion proof is too short".into());
    }
    if r != root {
        return Err("inclusion proof does not lead to the root".into());
    }
    Ok(())
}

/// RFC 9162 section 2.1.4.2: is the tree (`size2`, `root2`) an append-only extension of
/// (`size1`, `root1`)?
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &[u8],
    root2: &[u8],
    proof: &[Vec<u8>],
) -> Result<(), String> {
    let root1 = as_hash(root1, "first root")?;
    let root2 = as_hash(root2, "second root")?;
    if size1 > size2 {
        return Err(format!("size {size1} is larger than {size2}"));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err("proof between equal sizes must be empty".into());
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err("equal sizes with different roots".into())
        };
    }
    if size1 == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err("proof from the empty tree must be empty".into())
        };
    }
    let mut path: Vec<[u8; 32]> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(root1);
    }
    for (i, p) in proof.iter().enumerate() {
        path.push(as_hash(p, &format!("proof element {i}"))?);
    }
    let Some((first, rest)) = path.split_first() else {
        return Err("empty consistency proof".into());
    };
    let (mut f, mut s) = (size1 - 1, size2 - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err("consistency proof is too long".into());
        }
        if f & 1 == 1 || f == s {
            fr = h_node(c, &fr);
            sr = h_node(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = h_node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err("consistency proof is too short".into());
    }
    if fr != root1 || sr != root2 {
        return Err("consistency proof does not match the roots".into());
    }
    Ok(())
}
