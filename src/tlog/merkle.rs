//! RFC 6962 / RFC 9162 Merkle tree arithmetic, independent of storage.
//!
//! The tree is stored as its complete subtrees ([`NodeId`]: a level and an index at that level;
//! level 0 are the leaf hashes). Any range hash a proof needs is a right fold of O(log n) of them
//! ([`range_nodes`]), so an append, an inclusion proof and a consistency proof read O(log n) nodes
//! rather than the leaves. [`Frontier`] is the right edge of the tree, kept in memory by the
//! sequencer so that an append reads nothing.
//!
//! Written here rather than taken from a crate because the proof builders must work over our own
//! node store; the independent implementations (`tlog_tiles`, `ct-merkle`) check it in the tests.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 6962 leaf hash: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A complete subtree: leaves `[index << level, (index + 1) << level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    /// The node's place in the order [`Frontier::append`] creates nodes in (post-order: a parent
    /// right after its right child). Stored nodes are keyed by it, so that every append adds rows
    /// at one end of one b-tree instead of at the end of each level's run.
    ///
    /// The node completes when the tree reaches `n = (index + 1) << level` leaves, and a tree of
    /// `n` leaves has `2n - popcount(n)` nodes; the nodes completed with it are the `tz(n)` levels
    /// above the leaf, this one `tz(n) - level` below the last.
    pub fn position(self) -> u64 {
        let k = self.index + 1;
        (k << (self.level + 1)) - u64::from(k.count_ones()) - u64::from(k.trailing_zeros()) - 1
    }
}

/// The maximal complete subtrees covering `[lo, hi)`, left to right. Their right fold is RFC 6962's
/// MTH of the range whenever `lo` is aligned to the range's enclosing power of two, which holds for
/// every range a proof or a root needs.
pub fn range_nodes(mut lo: u64, hi: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    while lo < hi {
        let by_alignment = if lo == 0 { 63 } else { lo.trailing_zeros() };
        let by_length = 63 - (hi - lo).leading_zeros();
        let level = by_alignment.min(by_length);
        out.push(NodeId {
            level: level as u8,
            index: lo >> level,
        });
        lo += 1 << level;
    }
    out
}

/// Right fold of subtree hashes: H(a, H(b, H(c, d))).
pub fn fold(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// Largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("size {from} is larger than size {to}")]
    SizesReversed { from: u64, to: u64 },
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("proof does not lead to the expected root")]
    Mismatch,
}

/// The ranges whose hashes make up the inclusion proof of `index` in a tree of `size`, in proof
/// order (from the leaf up), per RFC 6962 section 2.1.1.
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
        if hi - lo <= 1 {
            return;
        }
        let k = split(hi - lo);
        if m < lo + k {
            path(m, lo, lo + k, out);
            out.push((lo + k, hi));
        } else {
            path(m, lo + k, hi, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    path(index, 0, size, &mut out);
    Ok(out)
}

/// The ranges whose hashes make up the consistency proof from `from` to `to`, per RFC 6962
/// section 2.1.2. Empty when `from` is 0 or equals `to`.
pub fn consistency_ranges(from: u64, to: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if from > to {
        return Err(ProofError::SizesReversed { from, to });
    }
    fn subproof(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push((lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, lo, lo + k, whole, out);
            out.push((lo + k, hi));
        } else {
            subproof(m - k, lo + k, hi, false, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    if from > 0 && from < to {
        subproof(from, 0, to, true, &mut out);
    }
    Ok(out)
}

/// RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// RFC 9162 section 2.1.4.2.
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if from > to {
        return Err(ProofError::SizesReversed { from, to });
    }
    if from == to {
        return match (proof.is_empty(), from_root == to_root) {
            (false, _) => Err(ProofError::WrongLength),
            (true, false) => Err(ProofError::Mismatch),
            (true, true) => Ok(()),
        };
    }
    if from == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *from_root || sr != *to_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// The right edge of a tree: the roots of the complete subtrees of [`range_nodes`]`(0, size)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// Rebuilds the frontier from the stored hashes of `range_nodes(0, size)`, in that order.
    pub fn from_nodes(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (range_nodes(0, size).len() == nodes.len()).then_some(Self { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; returns every complete subtree it completes (the leaf itself first), for
    /// storing.
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut created = vec![(
            NodeId {
                level: 0,
                index: self.size,
            },
            leaf,
        )];
        let (mut hash, mut level, mut index) = (leaf, 0u8, self.size);
        while index & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            created.push((NodeId { level, index }, hash));
        }
        self.nodes.push(hash);
        self.size += 1;
        created
    }

    pub fn root(&self) -> Hash {
        fold(&self.nodes).unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn positions_follow_the_order_nodes_are_created_in() {
        let mut frontier = super::Frontier::default();
        let mut next = 0;
        for i in 0..5000u64 {
            for (node, _) in frontier.append(super::leaf_hash(&i.to_be_bytes())) {
                assert_eq!(node.position(), next, "{node:?}");
                next += 1;
            }
        }
    }

    use super::*;
    use std::collections::HashMap;

    /// RFC 6962 test leaves and the roots for sizes 0..=8 (transparency-dev/merkle testonly).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_rfc6962_known_answers() {
        let mut frontier = Frontier::default();
        assert_eq!(hex::encode(frontier.root()), ROOTS[0]);
        for (i, leaf) in LEAVES.iter().enumerate() {
            frontier.append(leaf_hash(&hex::decode(leaf).unwrap()));
            assert_eq!(hex::encode(frontier.root()), ROOTS[i + 1], "size {}", i + 1);
        }
    }

    /// An in-memory node store built by appending, as the sequencer does.
    fn tree(n: u64) -> (HashMap<NodeId, Hash>, Vec<Hash>) {
        let mut nodes = HashMap::new();
        let mut frontier = Frontier::default();
        let mut roots = vec![frontier.root()];
        for i in 0..n {
            for (id, h) in frontier.append(leaf_hash(&i.to_be_bytes())) {
                nodes.insert(id, h);
            }
            roots.push(frontier.root());
        }
        (nodes, roots)
    }

    fn hashes(nodes: &HashMap<NodeId, Hash>, ranges: &[(u64, u64)]) -> Vec<Hash> {
        ranges
            .iter()
            .map(|(lo, hi)| {
                fold(
                    &range_nodes(*lo, *hi)
                        .iter()
                        .map(|id| nodes[id])
                        .collect::<Vec<_>>(),
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn stored_nodes_rebuild_every_root() {
        let (nodes, roots) = tree(70);
        for size in 0..=70u64 {
            let ids = range_nodes(0, size);
            let frontier =
                Frontier::from_nodes(size, ids.iter().map(|id| nodes[id]).collect()).unwrap();
            assert_eq!(frontier.root(), roots[size as usize], "size {size}");
        }
    }

    #[test]
    fn every_proof_verifies_and_altered_ones_do_not() {
        let (nodes, roots) = tree(40);
        for size in 1..=40u64 {
            for index in 0..size {
                let proof = hashes(&nodes, &inclusion_ranges(index, size).unwrap());
                let leaf = nodes[&NodeId { level: 0, index }];
                verify_inclusion(&leaf, index, size, &proof, &roots[size as usize]).unwrap();
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(
                        verify_inclusion(&leaf, index, size, &bad, &roots[size as usize]).is_err()
                    );
                }
                assert!(
                    verify_inclusion(
                        &leaf,
                        (index + 1) % size,
                        size,
                        &proof,
                        &roots[size as usize]
                    )
                    .is_err()
                        || size == 1
                );
            }
            for from in 0..=size {
                let proof = hashes(&nodes, &consistency_ranges(from, size).unwrap());
                verify_consistency(
                    from,
                    size,
                    &roots[from as usize],
                    &roots[size as usize],
                    &proof,
                )
                .unwrap();
                if from > 0 && from < size {
                    let wrong = roots[from as usize - 1];
                    assert!(
                        verify_consistency(from, size, &wrong, &roots[size as usize], &proof)
                            .is_err()
                    );
                }
            }
        }
    }
}
