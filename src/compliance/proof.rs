//! Proving cited ledger entries: each one's inclusion in the tree of the latest signed checkpoint,
//! checked here before it is handed out, so a document that cites an entry hands its reader what
//! verifies it (the entry's bytes, the proof, the checkpoint and the key that signed it).

use base64::Engine;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ComplianceError, Sources};
use crate::ledger::ProofBuilder;
use crate::tlog::merkle::{leaf_hash, verify_inclusion};
use crate::tlog::note::Checkpoint;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Cited entries with what proves them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Proofs {
    /// The signed checkpoint (C2SP signed note) the proofs lead to; absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The ledger's public key, as a C2SP note verifier key.
    pub verifier_key: String,
    pub tree_size: u64,
    pub entries: Vec<ProvenEntry>,
    /// Whether every proof in `entries` verified.
    pub all_verified: bool,
    /// Cited entries newer than the checkpoint (it is signed within a second): ask again.
    pub not_yet_checkpointed: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProvenEntry {
    pub index: u64,
    /// The exact bytes the leaf hash covers, standard base64.
    pub entry_bytes: String,
    pub leaf_hash: String,
    /// The inclusion proof (RFC 9162 2.1.3), standard base64 hashes.
    pub inclusion_proof: Vec<String>,
    /// Whether the proof verified here against the checkpoint's root.
    pub verified: bool,
}

/// Proves `indices` (duplicates ignored) against the latest signed checkpoint, which must verify
/// with the ledger's key and match the stored tree.
pub async fn prove(sources: &Sources, indices: &[u64]) -> Result<Proofs, ComplianceError> {
    let mut indices = indices.to_vec();
    indices.sort_unstable();
    indices.dedup();
    let verifier_key = sources.signer.verifier_key();
    let Some(row) = sources.store.latest_checkpoint().await? else {
        return Ok(Proofs {
            checkpoint: None,
            verifier_key,
            tree_size: 0,
            entries: Vec::new(),
            all_verified: true,
            not_yet_checkpointed: indices,
        });
    };
    let checkpoint = sources
        .signer
        .verifier()
        .verify(&row.note)
        .map_err(|e| e.to_string())
        .and_then(|text| Checkpoint::parse(text).map_err(|e| e.to_string()))
        .map_err(|e| ComplianceError::Damaged(format!("the latest checkpoint: {e}")))?;
    let (covered, pending): (Vec<u64>, Vec<u64>) =
        indices.into_iter().partition(|i| *i < checkpoint.size);
    let mut builder = ProofBuilder::new(sources.store.clone(), checkpoint.size);
    let proofs = builder.inclusion(&covered).await?;
    let mut entries = Vec::with_capacity(covered.len());
    for (index, proof) in covered.into_iter().zip(proofs) {
        let bytes = sources
            .store
            .entries(index, index + 1)
            .await?
            .into_iter()
            .next()
            .map(|r| r.entry)
            .ok_or_else(|| ComplianceError::Damaged(format!("entry {index} is missing")))?;
        let leaf = leaf_hash(&bytes);
        let verified =
            verify_inclusion(&leaf, index, checkpoint.size, &proof, &checkpoint.root).is_ok();
        entries.push(ProvenEntry {
            index,
            entry_bytes: B64.encode(&bytes),
            leaf_hash: B64.encode(leaf),
            inclusion_proof: proof.iter().map(|h| B64.encode(h)).collect(),
            verified,
        });
    }
    Ok(Proofs {
        checkpoint: Some(row.note),
        verifier_key,
        tree_size: checkpoint.size,
        all_verified: entries.iter().all(|e| e.verified),
        entries,
        not_yet_checkpointed: pending,
    })
}
