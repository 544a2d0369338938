//! The verifier's Merkle code against the transparency-dev/merkle test vectors (tests/data), and
//! the writer's proof generation cross-checked by the verifier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kura_audit::merkle;
use kura_audit::verify::merkle::{verify_consistency, verify_inclusion, TreeBuilder};

fn files(kind: &str) -> Vec<(String, serde_json::Value)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(kind);
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            out.push((p.display().to_string(), v));
        }
    }
    assert!(out.len() >= 8, "vectors missing under {}", root.display());
    out
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap()).unwrap()
}

fn list(v: &serde_json::Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map(|a| a.iter().map(b64).collect())
        .unwrap_or_default()
}

#[test]
fn inclusion_vectors() {
    for (name, v) in files("inclusion") {
        let r = verify_inclusion(
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
            &b64(&v["leafHash"]),
            &list(&v["proof"]),
            &b64(&v["root"]),
        );
        assert_eq!(r.is_err(), v["wantErr"].as_bool().unwrap(), "{name}: {r:?}");
    }
}

#[test]
fn consistency_vectors() {
    for (name, v) in files("consistency") {
        let r = verify_consistency(
            v["size1"].as_u64().unwrap(),
            v["size2"].as_u64().unwrap(),
            &b64(&v["root1"]),
            &b64(&v["root2"]),
            &list(&v["proof"]),
        );
        assert_eq!(r.is_err(), v["wantErr"].as_bool().unwrap(), "{name}: {r:?}");
    }
}

/// The RFC 6962 reference leaves behind the vectors.
fn reference_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    })
    .collect()
}

#[test]
fn both_implementations_give_the_published_root_of_the_reference_tree() {
    let want = B64
        .decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")
        .unwrap();
    let mut v = TreeBuilder::default();
    let mut w = merkle::Frontier::default();
    for l in reference_leaves() {
        v.add_leaf_hash(kura_audit::verify::merkle::hash_leaf(&l));
        w.push(merkle::leaf_hash(&l));
    }
    assert_eq!(v.root().to_vec(), want);
    assert_eq!(w.root().to_vec(), want);
}

#[test]
fn writer_proofs_pass_the_verifier_for_every_index_and_size() {
    let hashes: Vec<merkle::Hash> = (0u32..40)
        .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
        .collect();
    for n in 1..=hashes.len() {
        let root = merkle::subtree_root(&hashes[..n]);
        for i in 0..n {
            let p: Vec<Vec<u8>> = merkle::inclusion_proof(i, &hashes[..n])
                .iter()
                .map(|h| h.to_vec())
                .collect();
            verify_inclusion(i as u64, n as u64, &hashes[i], &p, &root).unwrap();
            assert!(
                verify_inclusion(i as u64, n as u64, &hashes[(i + 1) % 40], &p, &root).is_err()
            );
        }
        for m in 1..=n {
            let old = merkle::subtree_root(&hashes[..m]);
            let p: Vec<Vec<u8>> = merkle::consistency_proof(m, &hashes[..n])
                .iter()
                .map(|h| h.to_vec())
                .collect();
            verify_consistency(m as u64, n as u64, &old, &root, &p).unwrap();
            if m < n {
                assert!(verify_consistency(m as u64, n as u64, &root, &old, &p).is_err());
            }
        }
    }
}
