//! Audit packs: a zip an auditor verifies offline, with no server and no database.
//!
//! Contents (every file listed with its SHA-256 in `manifest.json`, whose own hash is signed in
//! `manifest.sig`, a C2SP signed note by the ledger's key):
//!
//! - `entries.jsonl`: `{"index": N, "entry": <the exact hashed bytes>}` per line, in index order;
//! - `checkpoint.txt`: the signed checkpoint the proofs are against;
//! - `proofs/inclusion.jsonl`: `{"index": N, "hashes": [...]}` for every entry, RFC 9162;
//! - `checkpoints/first.txt` and `proofs/consistency.json`: the first checkpoint signed in the range
//!   and its consistency proof to `checkpoint.txt`;
//! - `verifier.key`: the ledger's C2SP verifier key;
//! - `policies/`: the text of every policy pack in force during the range, by digest;
//! - with `--agent`: `model-card.md`/`.json` and `checklist.md`/`.json`;
//! - `README.md`: how to verify, with `reins` or by hand.
//!
//! [`verify`] re-derives everything from the bytes and names the file of every problem it finds.

mod verify;

pub use verify::verify;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, Write};

use crate::timestamp::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use super::{ComplianceError, Period, Sources, card, checklist, invalid};
use crate::events::{Entry, Event};
use crate::ids::AgentId;
use crate::ledger::ProofBuilder;
use crate::policy::PolicyDigest;
use crate::tlog::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use crate::tlog::note::{Checkpoint, NoteVerifier};

pub const FORMAT: &str = "reins-audit-pack/1";
const CHUNK: u64 = 10_000;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub agent: Option<AgentId>,
    pub period: Period,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub origin: String,
    pub created_at: crate::timestamp::Timestamp,
    /// Only entries concerning this agent (its decisions, approvals, registry changes,
    /// attestations, kill switches covering it, policy loads and self-checks); else all.
    pub agent: Option<String>,
    pub from: String,
    pub to: String,
    /// The entries are those with `start <= index < end` (filtered by `agent` when set).
    pub start: u64,
    pub end: u64,
    pub entries: u64,
    pub tree_size: u64,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PolicyIndex {
    digest: String,
    /// The `policy_loaded` entry that put it in force.
    loaded_at_index: u64,
    /// Folder under `policies/` holding its files; null when the text was not kept (loaded before
    /// Reins stored policy texts).
    folder: Option<String>,
    files: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ProofLine {
    index: u64,
    hashes: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ConsistencyFile {
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

#[derive(Deserialize)]
struct EntryLine<'a> {
    index: u64,
    #[serde(borrow)]
    entry: &'a RawValue,
}

/// The text the manifest signature covers.
fn manifest_statement(origin: &str, manifest: &[u8]) -> String {
    format!(
        "{FORMAT}\n{origin}\nmanifest {}\n",
        hex::encode(Sha256::digest(manifest))
    )
}

/// A zip being written, remembering each file's digest for the manifest.
struct PackWriter<W: Write + Seek> {
    zip: zip::ZipWriter<W>,
    files: Vec<ManifestFile>,
    open: Option<(String, Sha256, u64)>,
}

impl<W: Write + Seek> PackWriter<W> {
    fn new(w: W) -> Self {
        Self {
            zip: zip::ZipWriter::new(w),
            files: Vec::new(),
            open: None,
        }
    }

    fn start(&mut self, path: &str) -> Result<(), ComplianceError> {
        self.close();
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        self.zip.start_file(path, options).map_err(write_error)?;
        self.open = Some((path.to_owned(), Sha256::new(), 0));
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ComplianceError> {
        if let Some((_, hasher, n)) = &mut self.open {
            hasher.update(bytes);
            *n += bytes.len() as u64;
        }
        self.zip.write_all(bytes).map_err(write_error)
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ComplianceError> {
        self.start(path)?;
        self.write(bytes)
    }

    fn close(&mut self) {
        if let Some((path, hasher, bytes)) = self.open.take() {
            self.files.push(ManifestFile {
                path,
                sha256: hex::encode(hasher.finalize()),
                bytes,
            });
        }
    }
}

fn write_error(e: impl std::fmt::Display) -> ComplianceError {
    ComplianceError::Write(e.to_string())
}

/// Whether an entry belongs in a pack for `agent`.
fn concerns(entry: &Entry, agent: &str) -> bool {
    match &entry.event {
        Event::Decision(e) => e.agent_id == agent,
        Event::AgentRegistered(e) | Event::AgentChanged(e) => e.agent_id == agent,
        Event::ApprovalRequested(e)
        | Event::ApprovalGranted(e)
        | Event::ApprovalDenied(e)
        | Event::ApprovalExpired(e)
        | Event::ApprovalCancelled(e)
        | Event::ApprovalUsed(e) => e.agent_id == agent,
        Event::AttestationRecorded(e) => e.agent_id == agent,
        Event::KillswitchEngaged(e) | Event::KillswitchReleased(e) => e
            .scope
            .get("agent")
            .and_then(|a| a.as_str())
            .is_none_or(|a| a == agent),
        Event::ToolRegistered(_) | Event::ToolChanged(_) => false,
        Event::PolicyLoaded(_)
        | Event::SelfCheck(_)
        | Event::PolicyVersionCreated(_)
        | Event::PolicyTested(_)
        | Event::PolicyActivated(_)
        | Event::PolicyRetired(_)
        | Event::PolicyShadowed(_) => true,
        Event::AuditPackExported(e) => e.agent_id.as_deref().is_none_or(|a| a == agent),
        Event::DecisionOutcome(e) => e.agent_id == agent,
        Event::DecisionContested(e) | Event::ContestResolved(e) => e.agent_id == agent,
        Event::IncidentOpened(e)
        | Event::IncidentUpdated(e)
        | Event::IncidentReported(e)
        | Event::IncidentClosed(e) => e.agents.iter().any(|a| a == agent),
        Event::ConsoleSignedIn(_) | Event::ConsoleSignedOut(_) => false,
        Event::TripwireWouldTrip(e) => e
            .scope
            .get("agent")
            .and_then(|a| a.as_str())
            .is_none_or(|a| a == agent),
    }
}

/// The policy packs in force, with their texts and an index: the one loaded last before the
/// range (entries before `start`) and every one loaded in it (`loads`, by ledger index).
async fn write_policies<W: Write + Seek>(
    sources: &Sources,
    pack: &mut PackWriter<W>,
    start: u64,
    loads: Vec<(u64, String)>,
) -> Result<(), ComplianceError> {
    let before = sources
        .entries_of(&["policy_loaded"])
        .await?
        .into_iter()
        .filter(|(i, _)| *i < start)
        .filter_map(|(i, e)| match e.event {
            Event::PolicyLoaded(p) => Some((i, p.policy_digest)),
            _ => None,
        })
        .next_back();
    let mut index = Vec::new();
    for (at, digest) in before.into_iter().chain(loads) {
        if index.iter().any(|p: &PolicyIndex| p.digest == digest) {
            continue;
        }
        let folder = digest.trim_start_matches("sha256:").to_owned();
        match sources.store.policy_text(&digest).await? {
            Some(row) => {
                let files: Vec<(String, String)> = serde_json::from_str(&row.files)
                    .map_err(|e| ComplianceError::Damaged(format!("policy texts {digest}: {e}")))?;
                for (name, text) in &files {
                    pack.file(&format!("policies/{folder}/{name}"), text.as_bytes())?;
                }
                pack.file(
                    &format!("policies/{folder}/schema.cedarschema"),
                    row.schema_text.as_bytes(),
                )?;
                index.push(PolicyIndex {
                    digest,
                    loaded_at_index: at,
                    folder: Some(folder),
                    files: files.into_iter().map(|(n, _)| n).collect(),
                });
            }
            None => index.push(PolicyIndex {
                digest,
                loaded_at_index: at,
                folder: None,
                files: Vec::new(),
            }),
        }
    }
    pack.file(
        "policies/index.json",
        &serde_json::to_vec_pretty(&index).map_err(write_error)?,
    )?;

    Ok(())
}

/// How long an export waits for a checkpoint covering the ledger as it found it.
const CHECKPOINT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Writes an audit pack to `out`; `progress(done, total)` is called as entries are written and
/// proved. Returns the manifest.
pub async fn export<W: Write + Seek>(
    sources: &Sources,
    request: &ExportRequest,
    out: W,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(Manifest, W), ComplianceError> {
    if let Some(agent) = &request.agent {
        sources.agent(agent)?;
    }
    let verifier = sources.signer.verifier();
    // Checkpoints are signed within a second of a write: an export right after an attestation
    // would otherwise leave out the entry its own checklist cites.
    super::await_checkpoint(&sources.store, sources.ledger_size, CHECKPOINT_PATIENCE).await?;
    let latest = sources.store.latest_checkpoint().await?.ok_or_else(|| {
        invalid(
            "to",
            "the ledger has no signed checkpoint yet; try again in a second",
        )
    })?;
    let checkpoint = parse_checkpoint(&verifier, &latest.note)
        .map_err(|e| ComplianceError::Damaged(format!("the latest checkpoint: {e}")))?;
    let start = sources
        .index_at(request.period.from)
        .await?
        .min(checkpoint.size);
    let end = sources
        .index_at(request.period.to)
        .await?
        .min(checkpoint.size);
    let total = (end - start) * 2;
    let mut pack = PackWriter::new(out);

    // Entries, streamed in chunks; the indices are kept for the proofs.
    let agent = request.agent.as_ref().map(|a| a.to_string());
    let mut indices = Vec::new();
    let mut loads: Vec<(u64, String)> = Vec::new();
    pack.start("entries.jsonl")?;
    let mut lo = start;
    while lo < end {
        let hi = (lo + CHUNK).min(end);
        for row in sources.store.entries(lo, hi).await? {
            let (index, entry) = super::decode(row.clone())?;
            if let Event::PolicyLoaded(p) = &entry.event {
                loads.push((index, p.policy_digest.clone()));
            }
            if agent.as_deref().is_none_or(|a| concerns(&entry, a)) {
                let mut line = format!("{{\"index\":{index},\"entry\":").into_bytes();
                line.extend_from_slice(&row.entry);
                line.extend_from_slice(b"}\n");
                pack.write(&line)?;
                indices.push(index);
            }
        }
        progress(hi - start, total);
        lo = hi;
    }

    // Inclusion proofs for every entry against the checkpoint.
    let mut proofs = ProofBuilder::new(sources.store.clone(), checkpoint.size);
    pack.start("proofs/inclusion.jsonl")?;
    let mut done = 0u64;
    for chunk in indices.chunks(CHUNK as usize) {
        for (index, hashes) in chunk.iter().zip(proofs.inclusion(chunk).await?) {
            let line = ProofLine {
                index: *index,
                hashes: hashes.iter().map(|h| B64.encode(h)).collect(),
            };
            let mut bytes = serde_json::to_vec(&line).map_err(write_error)?;
            bytes.push(b'\n');
            pack.write(&bytes)?;
        }
        done += chunk.len() as u64;
        progress(
            (end - start) + done * (end - start) / (indices.len().max(1) as u64),
            total,
        );
    }
    progress(total, total);

    // Consistency from the first checkpoint that covers the range's first entry.
    let first = sources
        .store
        .first_checkpoint_above(start)
        .await?
        .unwrap_or(latest.clone());
    let first_cp = parse_checkpoint(&verifier, &first.note)
        .map_err(|e| ComplianceError::Damaged(format!("checkpoint {}: {e}", first.tree_size)))?;
    let consistency = proofs.consistency(first_cp.size).await?;
    pack.file("checkpoint.txt", latest.note.as_bytes())?;
    pack.file("checkpoints/first.txt", first.note.as_bytes())?;
    pack.file(
        "proofs/consistency.json",
        &serde_json::to_vec_pretty(&ConsistencyFile {
            from: first_cp.size,
            to: checkpoint.size,
            hashes: consistency.iter().map(|h| B64.encode(h)).collect(),
        })
        .map_err(write_error)?,
    )?;
    pack.file(
        "verifier.key",
        format!("{}\n", sources.signer.verifier_key()).as_bytes(),
    )?;

    write_policies(sources, &mut pack, start, loads).await?;

    if let Some(agent) = &request.agent {
        let model_card = card::model_card(sources, agent, &request.period).await?;
        pack.file("model-card.md", card::to_markdown(&model_card)?.as_bytes())?;
        pack.file(
            "model-card.json",
            &serde_json::to_vec_pretty(&model_card).map_err(write_error)?,
        )?;
        let list = checklist::checklist(sources, agent).await?;
        pack.file("checklist.md", checklist::to_markdown(&list)?.as_bytes())?;
        pack.file(
            "checklist.json",
            &serde_json::to_vec_pretty(&list).map_err(write_error)?,
        )?;
    }
    let recorded = match (indices.first(), indices.last()) {
        (Some(first), Some(last)) => Some((
            sources.entry_time(*first).await?,
            sources.entry_time(*last).await?,
        )),
        _ => None,
    };
    pack.file(
        "README.md",
        readme(
            request,
            start,
            end,
            checkpoint.size,
            indices.len(),
            recorded,
        )
        .as_bytes(),
    )?;
    pack.close();

    let mut files = std::mem::take(&mut pack.files);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT.into(),
        origin: checkpoint.origin.clone(),
        created_at: crate::timestamp::Timestamp::now(),
        agent,
        from: request.period.from.to_string(),
        to: request.period.to.to_string(),
        start,
        end,
        entries: indices.len() as u64,
        tree_size: checkpoint.size,
        files,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(write_error)?;
    let signature = sources
        .signer
        .sign(&manifest_statement(&checkpoint.origin, &manifest_bytes))
        .map_err(write_error)?;
    pack.file("manifest.json", &manifest_bytes)?;
    pack.file("manifest.sig", signature.as_bytes())?;
    pack.close();
    let out = pack.zip.finish().map_err(write_error)?;
    Ok((manifest, out))
}

fn parse_checkpoint(verifier: &NoteVerifier, note: &str) -> Result<Checkpoint, String> {
    let text = verifier.verify(note).map_err(|e| e.to_string())?;
    Checkpoint::parse(text).map_err(|e| e.to_string())
}

fn readme(
    request: &ExportRequest,
    start: u64,
    end: u64,
    size: u64,
    count: usize,
    recorded: Option<(Timestamp, Timestamp)>,
) -> String {
    let scope = match &request.agent {
        Some(a) => format!("the entries concerning agent `{a}`"),
        None => "every entry".into(),
    };
    let asked = if request.period.from == whole_history().from {
        format!("up to {}", request.period.to)
    } else {
        format!("from {} to {}", request.period.from, request.period.to)
    };
    let when = match recorded {
        Some((first, last)) => {
            format!(
                "{count} entries, recorded between {first} and {last} (the period asked: {asked})"
            )
        }
        None => format!("no entries (the period asked: {asked})"),
    };
    format!(
        "# Reins audit pack\n\n\
This pack holds {scope} with ledger indices {start} to {end} (exclusive): {when}. It proves each of them is in the ledger whose signed checkpoint of {size} \
entries is `checkpoint.txt`.\n\n\
## Verify it\n\n\
    reins audit-pack verify pack.zip --key \"$(cat trusted-verifier.key)\"\n\n\
Pass the ledger's verifier key obtained from its operator through another channel; without \
`--key` the pack's own `verifier.key` is used, which proves the pack is consistent, not who \
made it. The command needs no server and no database. It checks, naming the file of any problem:\n\n\
1. `manifest.sig` is a C2SP signed note by the key over the SHA-256 of `manifest.json`;\n\
2. every file's SHA-256 matches `manifest.json`, and no file is missing or extra;\n\
3. `checkpoint.txt` and `checkpoints/first.txt` are signed by the key;\n\
4. each line of `entries.jsonl` is in index order (with no gap when the pack is not filtered by \
agent), and the RFC 6962 leaf hash of its `entry` bytes (SHA-256 of 0x00 then the bytes) has a \
valid inclusion proof in `proofs/inclusion.jsonl` against the checkpoint's root (RFC 9162 2.1.3.2);\n\
5. `proofs/consistency.json` proves `checkpoints/first.txt` is a prefix of `checkpoint.txt` \
(RFC 9162 2.1.4.2);\n\
6. the SHA-256 digest of each policy pack under `policies/` recomputes to the digest the ledger \
recorded.\n\n\
## By hand\n\n\
Entries are RFC 8785 canonical JSON; the `entry` value of a line is those exact bytes. A policy \
digest is SHA-256 over, for each file in load order, the file name's length (8 bytes, big endian), \
the name, the text's length (8 bytes, big endian) and the text. `model-card.md` and \
`checklist.md` (present when the pack is for one agent) were generated from the same ledger; \
their `.json` twins carry the ledger indices their evidence cites.\n",
    )
}

/// One problem found by [`verify`], with the file it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub tree_size: u64,
    pub start: u64,
    pub end: u64,
    pub agent: Option<String>,
    pub files: usize,
    /// Whether the key came from the caller (else from the pack itself).
    pub key_pinned: bool,
}

/// Records that `actor` was handed the pack `manifest` describes: handing out the ledger is
/// itself an entry, as every action of the control plane is.
pub async fn record_export(
    ledger: &crate::ledger::Ledger,
    actor: &str,
    manifest: &Manifest,
) -> Result<(), ComplianceError> {
    let entry = Entry {
        time: Timestamp::now().to_string(),
        event: Event::AuditPackExported(crate::events::AuditExportEvent {
            actor: actor.to_owned(),
            agent_id: manifest.agent.clone(),
            from: manifest.from.clone(),
            to: manifest.to.clone(),
            start: manifest.start,
            end: manifest.end,
            tree_size: manifest.tree_size,
            entries: manifest.entries,
        }),
    };
    let append = entry
        .append(crate::store::SideEffect::None)
        .map_err(|e| invalid("agent", e.to_string()))?;
    ledger.append(vec![append]).await?;
    Ok(())
}

/// Proof hashes from their base64 form; None if any is not a 32-byte hash.
fn decode_hashes(hashes: &[String]) -> Option<Vec<Hash>> {
    hashes
        .iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
        })
        .collect()
}

/// The default period of an export when none is given: everything up to now.
pub fn whole_history() -> Period {
    Period {
        from: Timestamp::UNIX_EPOCH,
        to: Timestamp::now().plus(std::time::Duration::from_secs(1)),
    }
}
