//! The writer's RFC 6962 / RFC 9162 Merkle tree: leaf and node hashes, the right-edge frontier
//! that gives the root after each append in O(log n), and inclusion / consistency proof
//! generation. The verifier (`verify/`) has its own, separately written, implementation.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Roots of the perfect subtrees along the right edge of the tree, largest first (a compact
/// range starting at 0). Appending is amortised O(1) hashes; the root costs O(log n).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf_hash: Hash) {
        self.nodes.push(leaf_hash);
        self.size += 1;
        let mut s = self.size;
        while s & 1 == 0 {
            let (Some(right), Some(left)) = (self.nodes.pop(), self.nodes.pop()) else {
                break;
            };
            self.nodes.push(node_hash(&left, &right));
            s >>= 1;
        }
    }

    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, n| node_hash(n, &acc)),
        }
    }
}

fn split(n: usize) -> usize {
    // Largest power of two strictly less than n (n >= 2).
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over leaf hashes (RFC 6962 section 2.1).
pub fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]) from RFC 6962 section 2.1.1, leaf's sibling first.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    let mut proof = Vec::new();
    path(index, leaves, &mut proof);
    proof
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(subtree_root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(subtree_root(&leaves[..k]));
    }
}

/// PROOF(m, D[n]) from RFC 6962 section 2.1.2, for old size `m` and the new tree `leaves`.
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let mut out = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut out);
    }
    out
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(subtree_root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, out);
        out.push(subtree_root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(subtree_root(&leaves[..k]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_root_matches_recursive_definition_for_every_size() {
        let hashes: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::default();
        assert_eq!(f.root(), empty_root());
        for (i, h) in hashes.iter().enumerate() {
            f.push(*h);
            assert_eq!(f.root(), subtree_root(&hashes[..=i]), "size {}", i + 1);
        }
    }
}
