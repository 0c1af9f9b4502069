//! Verification of a whole ledger from its stored bytes, offline or through the read API.
//!
//! Recomputes every leaf from the entry bytes, rebuilds the tree, compares every stored node and
//! every signed checkpoint with the recomputation, checks the signatures and the consistency proof
//! between consecutive checkpoints, and, given a checkpoint saved earlier, detects a truncated or
//! rewritten tail. The first problem found is returned, with the first bad entry index when one
//! can be named.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::ServedEntry;
use crate::store::{Store, StoreError};
use crate::tlog::merkle;
use crate::tlog::merkle::{
    Frontier, Hash, NodeId, consistency_ranges, fold, leaf_hash, range_nodes, verify_consistency,
};
use crate::tlog::note::{Checkpoint, NoteVerifier};

const PAGE: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("entry {index}: {problem}")]
    Entry { index: u64, problem: String },
    #[error("checkpoint of size {size}: {problem}")]
    Checkpoint {
        size: u64,
        problem: String,
        first_bad: Option<u64>,
    },
    #[error("against the trusted checkpoint: {problem}")]
    Trusted {
        problem: String,
        first_bad: Option<u64>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the ledger over HTTP: {0}")]
    Remote(String),
}

impl VerifyError {
    /// The index of the first entry known to be bad, if one can be named.
    pub fn first_bad_index(&self) -> Option<u64> {
        match self {
            VerifyError::Entry { index, .. } => Some(*index),
            VerifyError::Checkpoint { first_bad, .. } | VerifyError::Trusted { first_bad, .. } => {
                *first_bad
            }
            _ => None,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: u64,
    pub checkpoints: usize,
    pub root: Hash,
    /// On a shared ledger: entries sequenced after the integrated tree, not yet in it (their
    /// bytes are checked against their stored leaf hash only).
    pub pending: u64,
}

/// A check of each entry's meaning, in index order, that the caller supplies (the ledger does
/// not know what entries mean): the index, kind and bytes; an error names the problem.
pub type EntryCheck<'a> = &'a mut (dyn FnMut(u64, &str, &[u8]) -> Result<(), String> + Send);

/// Checks a signed checkpoint note and returns its body.
fn open_checkpoint(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, String> {
    let text = verifier.verify(note).map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| e.to_string())?;
    if checkpoint.origin != verifier.name() {
        return Err(format!(
            "origin `{}` is not the key's `{}`",
            checkpoint.origin,
            verifier.name()
        ));
    }
    Ok(checkpoint)
}

/// Rebuilds the tree entry by entry, remembering the roots at the sizes asked for.
struct Rebuild {
    frontier: Frontier,
    want: BTreeMap<u64, Option<Hash>>,
}

impl Rebuild {
    fn new(sizes: impl IntoIterator<Item = u64>) -> Self {
        let mut want: BTreeMap<u64, Option<Hash>> = sizes.into_iter().map(|s| (s, None)).collect();
        if let Some(slot) = want.get_mut(&0) {
            *slot = Some(merkle::empty_root());
        }
        Self {
            frontier: Frontier::default(),
            want,
        }
    }

    fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let created = self.frontier.append(leaf);
        if let Some(slot) = self.want.get_mut(&self.frontier.size()) {
            *slot = Some(self.frontier.root());
        }
        created
    }

    fn root_at(&self, size: u64) -> Option<Hash> {
        self.want.get(&size).copied().flatten()
    }
}

fn check_entry_bytes(index: u64, bytes: &[u8]) -> Result<(), VerifyError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| VerifyError::Entry {
            index,
            problem: format!("not JSON: {e}"),
        })?;
    let canonical = crate::tlog::canonical::to_vec(&value).map_err(|e| VerifyError::Entry {
        index,
        problem: e.to_string(),
    })?;
    if canonical != bytes {
        return Err(VerifyError::Entry {
            index,
            problem: "not in canonical (RFC 8785) form".into(),
        });
    }
    Ok(())
}

/// Verifies the ledger in a database, offline.
pub async fn verify_store(
    store: &Store,
    verifier: &NoteVerifier,
    trusted: Option<&str>,
    mut check: Option<EntryCheck<'_>>,
) -> Result<Report, VerifyError> {
    // On a shared ledger the tree covers the integrated prefix; what follows is sequenced only.
    let (integrated, sequenced) = match store.postgres() {
        Some(pool) => {
            let state = crate::store::shared::state(pool).await?;
            (state.tree_size, state.next)
        }
        None => (u64::MAX >> 1, u64::MAX >> 1),
    };
    let mut checkpoints = Vec::new();
    for row in store.checkpoints().await? {
        let size = row.tree_size as u64;
        let cp =
            open_checkpoint(&row.note, verifier).map_err(|problem| VerifyError::Checkpoint {
                size,
                problem,
                first_bad: None,
            })?;
        if cp.size != size || cp.root[..] != row.root_hash[..] {
            return Err(VerifyError::Checkpoint {
                size,
                problem: "the signed note does not match its stored size and root".into(),
                first_bad: None,
            });
        }
        checkpoints.push(cp);
    }
    let trusted = trusted
        .map(|note| open_checkpoint(note, verifier))
        .transpose()
        .map_err(|problem| VerifyError::Trusted {
            problem,
            first_bad: None,
        })?;

    let mut rebuild = Rebuild::new(checkpoints.iter().chain(trusted.iter()).map(|c| c.size));
    let mut next = 0u64;
    loop {
        let rows = store.entries(next, (next + PAGE).min(integrated)).await?;
        let Some(last) = rows.last() else {
            if !store.entries(next, integrated).await?.is_empty() {
                return Err(VerifyError::Entry {
                    index: next,
                    problem: "is missing".into(),
                });
            }
            break;
        };
        let page_end = last.idx as u64 + 1;
        let mut stored: HashMap<NodeId, Vec<u8>> = HashMap::new();
        for level in 0..64u8 {
            let (lo, hi) = (next >> level, (page_end >> level) + 1);
            if level > 0 && hi - lo <= 1 && (page_end >> level) == 0 {
                break;
            }
            for (index, hash) in store.nodes_at_level(level, lo, hi).await? {
                stored.insert(NodeId { level, index }, hash);
            }
        }
        for row in rows {
            let index = row.idx as u64;
            if index != next {
                return Err(VerifyError::Entry {
                    index: next,
                    problem: format!("is missing (the next stored entry is {index})"),
                });
            }
            check_entry_bytes(index, &row.entry)?;
            if let Some(check) = check.as_mut() {
                check(index, &row.kind, &row.entry)
                    .map_err(|problem| VerifyError::Entry { index, problem })?;
            }
            let leaf = leaf_hash(&row.entry);
            for (node, hash) in rebuild.push(leaf) {
                if stored.get(&node).map(Vec::as_slice) != Some(&hash[..]) {
                    let first = node.index << node.level;
                    let problem = if node.level == 0 {
                        "its bytes do not match the stored leaf hash".to_string()
                    } else {
                        format!(
                            "the stored tree node over entries {first}..{} does not match them",
                            first + (1 << node.level)
                        )
                    };
                    return Err(VerifyError::Entry {
                        index: if node.level == 0 { index } else { first },
                        problem,
                    });
                }
            }
            next += 1;
        }
    }
    let size = next;
    // Sequenced, not yet integrated: each entry's bytes against its leaf, and its meaning.
    let mut pending = 0;
    if let Some(pool) = store.postgres() {
        for row in crate::store::shared::pending(pool, size, sequenced).await? {
            let index = row.idx as u64;
            if index != size + pending {
                return Err(VerifyError::Entry {
                    index: size + pending,
                    problem: "is missing (sequenced but not stored)".into(),
                });
            }
            check_entry_bytes(index, &row.entry)?;
            if leaf_hash(&row.entry)[..] != row.leaf[..] {
                return Err(VerifyError::Entry {
                    index,
                    problem: "its bytes do not match its stored leaf hash".into(),
                });
            }
            if let Some(check) = check.as_mut() {
                check(index, &row.kind, &row.entry)
                    .map_err(|problem| VerifyError::Entry { index, problem })?;
            }
            pending += 1;
        }
        if size + pending != sequenced {
            return Err(VerifyError::Entry {
                index: size + pending,
                problem: format!("is missing: the counter gave out {sequenced} indices"),
            });
        }
    }

    for cp in &checkpoints {
        if cp.size > size {
            return Err(VerifyError::Checkpoint {
                size: cp.size,
                problem: format!(
                    "covers {} entries but only {size} are stored: the tail was removed",
                    cp.size
                ),
                first_bad: Some(size),
            });
        }
        if rebuild.root_at(cp.size) != Some(cp.root) {
            return Err(VerifyError::Checkpoint {
                size: cp.size,
                problem: "its signed root does not match the entries".into(),
                first_bad: None,
            });
        }
    }
    for pair in checkpoints.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let mut proof = Vec::new();
        for (lo, hi) in
            consistency_ranges(a.size, b.size).map_err(|e| VerifyError::Remote(e.to_string()))?
        {
            proof.push(
                fold(&store.nodes(&range_nodes(lo, hi)).await?).unwrap_or_else(merkle::empty_root),
            );
        }
        verify_consistency(a.size, b.size, &a.root, &b.root, &proof).map_err(|e| {
            VerifyError::Checkpoint {
                size: b.size,
                problem: format!("not consistent with the checkpoint of size {}: {e}", a.size),
                first_bad: None,
            }
        })?;
    }
    if let Some(t) = &trusted {
        check_trusted(t, size, &rebuild)?;
    }
    Ok(Report {
        entries: size,
        checkpoints: checkpoints.len(),
        root: rebuild.frontier.root(),
        pending,
    })
}

fn check_trusted(trusted: &Checkpoint, size: u64, rebuild: &Rebuild) -> Result<(), VerifyError> {
    if trusted.size > size {
        return Err(VerifyError::Trusted {
            problem: format!(
                "the ledger has {size} entries, fewer than the {} the trusted checkpoint covers: its tail was truncated",
                trusted.size
            ),
            first_bad: Some(size),
        });
    }
    if rebuild.root_at(trusted.size) != Some(trusted.root) {
        return Err(VerifyError::Trusted {
            problem: format!(
                "the first {} entries are not the ones the trusted checkpoint signed: they were rewritten",
                trusted.size
            ),
            first_bad: None,
        });
    }
    Ok(())
}

/// Verifies a running server's ledger through its read API (role `auditor` or `admin`).
pub async fn verify_remote(
    base: &str,
    token: &str,
    verifier: &NoteVerifier,
    trusted: Option<&str>,
) -> Result<Report, VerifyError> {
    crate::crypto::install_crypto_provider();
    let client = reqwest::Client::new();
    let remote = |e: reqwest::Error| VerifyError::Remote(e.to_string());
    let get = |path: String| {
        let request = client
            .get(format!("{}{path}", base.trim_end_matches('/')))
            .bearer_auth(token);
        async move {
            let response = request.send().await.map_err(remote)?;
            if !response.status().is_success() {
                let status = response.status();
                return Err(VerifyError::Remote(format!(
                    "{path}: {status}: {}",
                    response.text().await.unwrap_or_default()
                )));
            }
            Ok(response)
        }
    };
    let note = get("/v1/ledger/checkpoint".into())
        .await?
        .text()
        .await
        .map_err(remote)?;
    let latest = open_checkpoint(&note, verifier).map_err(|problem| VerifyError::Checkpoint {
        size: 0,
        problem,
        first_bad: None,
    })?;
    let trusted = trusted
        .map(|note| open_checkpoint(note, verifier))
        .transpose()
        .map_err(|problem| VerifyError::Trusted {
            problem,
            first_bad: None,
        })?;

    let mut rebuild = Rebuild::new(
        [latest.size]
            .into_iter()
            .chain(trusted.iter().map(|t| t.size)),
    );
    let mut next = 0u64;
    while next < latest.size {
        let end = (next + 1000).min(latest.size);
        #[derive(serde::Deserialize)]
        struct Page {
            entries: Vec<ServedEntry>,
        }
        let page: Page = get(format!("/v1/ledger/entries?start={next}&end={end}"))
            .await?
            .json()
            .await
            .map_err(remote)?;
        if page.entries.is_empty() {
            return Err(VerifyError::Entry {
                index: next,
                problem: "is missing".into(),
            });
        }
        for served in page.entries {
            if served.index != next {
                return Err(VerifyError::Entry {
                    index: next,
                    problem: format!("is missing (the server sent {})", served.index),
                });
            }
            let bytes = B64
                .decode(&served.entry_bytes)
                .map_err(|e| VerifyError::Entry {
                    index: next,
                    problem: e.to_string(),
                })?;
            check_entry_bytes(next, &bytes)?;
            rebuild.push(leaf_hash(&bytes));
            next += 1;
        }
    }
    if rebuild.root_at(latest.size) != Some(latest.root) {
        return Err(VerifyError::Checkpoint {
            size: latest.size,
            problem: "its signed root does not match the served entries".into(),
            first_bad: None,
        });
    }
    if let Some(t) = &trusted {
        check_trusted(t, latest.size, &rebuild)?;
    }
    Ok(Report {
        entries: latest.size,
        checkpoints: 1,
        root: latest.root,
        pending: 0,
    })
}
