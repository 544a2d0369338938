//! The writer's view of the end of the log: the Merkle frontier, the last leaf hash and timestamp,
//! and the latest checkpoint it has checked. Recovery builds it from every stored leaf; a writer
//! sharing a PostgreSQL log with other nodes brings it forward with the leaves they appended,
//! checking each one exactly as recovery does, and checks every checkpoint it passes against its
//! own root at that size. So a node only ever signs a tree that extends every checkpoint it saw.

use crate::leaf::Leaf;
use crate::merkle::{leaf_hash, Frontier, Hash};

#[derive(Debug, Clone)]
pub(crate) struct Tip {
    pub frontier: Frontier,
    pub last_hash: Hash,
    pub last_ts: i64,
    /// The latest signed checkpoint (size, root) known to extend to this tree.
    pub checkpoint: Option<(u64, Hash)>,
}

impl Default for Tip {
    fn default() -> Self {
        Tip {
            frontier: Frontier::default(),
            last_hash: [0; 32],
            last_ts: i64::MIN,
            checkpoint: None,
        }
    }
}

impl Tip {
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn signed_size(&self) -> u64 {
        self.checkpoint.map(|(s, _)| s).unwrap_or(0)
    }

    /// Adds a stored leaf filed under `index` after checking its position, index field, chain
    /// link and timestamp. On error the tip is unchanged and the text says what is wrong.
    pub fn absorb(&mut self, index: u64, leaf: &[u8]) -> Result<(), String> {
        let i = self.size();
        if index != i {
            return Err(format!(
                "entry {i} is missing (next stored index is {index})"
            ));
        }
        let l = Leaf::decode(leaf).map_err(|e| format!("leaf does not decode: {e}"))?;
        if l.index != i {
            return Err(format!("leaf says index {}", l.index));
        }
        if l.prev_hash != self.last_hash {
            return Err("previous-leaf hash does not match the chain".into());
        }
        if l.timestamp_micros < self.last_ts {
            return Err("timestamp earlier than the previous entry".into());
        }
        self.last_ts = l.timestamp_micros;
        self.last_hash = leaf_hash(leaf);
        self.frontier.push(self.last_hash);
        Ok(())
    }

    /// Checks a stored checkpoint of exactly the tip's size against the tip's root and, when
    /// it matches, records it as the latest known checkpoint.
    pub fn check_checkpoint(&mut self, size: u64, root: &Hash) -> Result<(), String> {
        debug_assert_eq!(size, self.size());
        if *root != self.frontier.root() {
            return Err(format!(
                "tree root at size {size} differs from the signed checkpoint"
            ));
        }
        if size >= self.signed_size() {
            self.checkpoint = Some((size, *root));
        }
        Ok(())
    }
}
