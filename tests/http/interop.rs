//! Our proofs and checkpoints, checked by independent implementations: `tlog_tiles` and
//! `signed_note` (ports of Go's sumdb code) and `ct-merkle`.

use std::collections::HashMap;

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use reins::tlog::merkle::{
    Frontier, Hash, NodeId, consistency_ranges, fold, inclusion_ranges, leaf_hash, range_nodes,
};
use reins::tlog::note::{Checkpoint, NoteSigner};
use sha2::Sha256;

pub struct Tree {
    pub entries: Vec<Vec<u8>>,
    pub nodes: HashMap<NodeId, Hash>,
    pub roots: Vec<Hash>,
}

pub fn tree(n: usize) -> Tree {
    let mut frontier = Frontier::default();
    let mut t = Tree {
        entries: Vec::new(),
        nodes: HashMap::new(),
        roots: vec![frontier.root()],
    };
    for i in 0..n {
        let entry = format!("{{\"entry\":{i}}}").into_bytes();
        t.nodes.extend(frontier.append(leaf_hash(&entry)));
        t.entries.push(entry);
        t.roots.push(frontier.root());
    }
    t
}

impl Tree {
    fn proof(&self, ranges: &[(u64, u64)]) -> Vec<Hash> {
        ranges
            .iter()
            .map(|(lo, hi)| {
                fold(
                    &range_nodes(*lo, *hi)
                        .iter()
                        .map(|id| self.nodes[id])
                        .collect::<Vec<_>>(),
                )
                .unwrap()
            })
            .collect()
    }
}

fn tlog(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(*h)
}

#[test]
fn tlog_tiles_and_ct_merkle_accept_our_inclusion_proofs_and_reject_altered_ones() {
    let t = tree(300);
    let sizes = (1..=70u64).chain([127, 128, 129, 255, 256, 257, 299, 300]);
    for size in sizes {
        let root = t.roots[size as usize];
        let ct_root = RootHash::<Sha256>::new(root.into(), size);
        for index in (0..size)
            .step_by(((size / 17) as usize).max(1))
            .chain([size - 1])
        {
            let proof = t.proof(&inclusion_ranges(index, size).unwrap());
            let leaf = leaf_hash(&t.entries[index as usize]);
            let tl: Vec<_> = proof.iter().map(tlog).collect();
            tlog_tiles::check_record(&tl, size, tlog(&root), index, tlog(&leaf))
                .unwrap_or_else(|e| panic!("tlog_tiles: size {size} index {index}: {e:?}"));
            let digests: Vec<_> = proof.iter().map(|h| (*h).into()).collect();
            ct_root
                .verify_inclusion(
                    &t.entries[index as usize],
                    index,
                    &InclusionProof::<Sha256>::from_digests(digests.iter()),
                )
                .unwrap_or_else(|e| panic!("ct-merkle: size {size} index {index}: {e:?}"));

            if let Some(first) = tl.first() {
                let mut altered = tl.clone();
                altered[0] = tlog_tiles::Hash([first.0[0] ^ 1; 32]);
                assert!(
                    tlog_tiles::check_record(&altered, size, tlog(&root), index, tlog(&leaf))
                        .is_err()
                );
            }
            let other = leaf_hash(b"not this entry");
            assert!(tlog_tiles::check_record(&tl, size, tlog(&root), index, tlog(&other)).is_err());
        }
    }
}

#[test]
fn tlog_tiles_and_ct_merkle_accept_our_consistency_proofs_and_reject_altered_ones() {
    let t = tree(260);
    let pairs = (1..=40u64)
        .flat_map(|to| (1..=to).map(move |from| (from, to)))
        .chain([
            (1, 260),
            (64, 256),
            (128, 257),
            (200, 259),
            (255, 256),
            (256, 260),
        ]);
    for (from, to) in pairs {
        let proof = t.proof(&consistency_ranges(from, to).unwrap());
        let (old, new) = (t.roots[from as usize], t.roots[to as usize]);
        let tl: Vec<_> = proof.iter().map(tlog).collect();
        tlog_tiles::check_tree(&tl, to, tlog(&new), from, tlog(&old))
            .unwrap_or_else(|e| panic!("tlog_tiles: {from}->{to}: {e:?}"));
        if from < to {
            let digests: Vec<_> = proof.iter().map(|h| (*h).into()).collect();
            RootHash::<Sha256>::new(new.into(), to)
                .verify_consistency(
                    &RootHash::<Sha256>::new(old.into(), from),
                    &ConsistencyProof::<Sha256>::from_digests(digests.iter()),
                )
                .unwrap_or_else(|e| panic!("ct-merkle: {from}->{to}: {e:?}"));
            let wrong_old = t.roots[from as usize - 1];
            assert!(
                tlog_tiles::check_tree(&tl, to, tlog(&new), from, tlog(&wrong_old)).is_err(),
                "{from}->{to}"
            );
            let mut altered = tl.clone();
            altered[0] = tlog_tiles::Hash([7; 32]);
            assert!(
                tlog_tiles::check_tree(&altered, to, tlog(&new), from, tlog(&old)).is_err(),
                "{from}->{to}"
            );
        }
    }
}

#[test]
fn signed_note_and_tlog_tiles_accept_our_checkpoints() {
    let signer = NoteSigner::new(
        "reins.test/ledger",
        ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
    )
    .unwrap();
    let t = tree(20);
    let verifier = signed_note::StandardVerifier::new(&signer.verifier_key())
        .expect("signed_note parses our vkey");
    let known = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    for size in [0u64, 1, 7, 20] {
        let text = Checkpoint {
            origin: "reins.test/ledger".into(),
            size,
            root: t.roots[size as usize],
        }
        .to_text();
        let note = signer.sign(&text).unwrap();
        let parsed =
            signed_note::Note::from_bytes(note.as_bytes()).expect("signed_note parses our note");
        let (verified, _) = parsed
            .verify(&known)
            .expect("signed_note verifies our signature");
        assert_eq!(verified.len(), 1);
        let checkpoint = tlog_tiles::Checkpoint::from_bytes(parsed.text())
            .expect("tlog_tiles parses our checkpoint");
        assert_eq!(
            (checkpoint.origin(), checkpoint.size(), checkpoint.hash().0),
            ("reins.test/ledger", size, t.roots[size as usize])
        );

        let forged = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
        let forged = signed_note::Note::from_bytes(forged.as_bytes()).unwrap();
        assert!(forged.verify(&known).is_err());
    }
}
