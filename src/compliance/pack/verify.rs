//! Offline verification of an audit pack: everything it claims, checked with nothing but the pack
//! and (optionally) a pinned verifier key.

use super::*;

/// Checks a pack offline. `key` is the verifier key to trust; without it, the pack's own.
pub fn verify<R: Read + Seek>(reader: R, key: Option<&str>) -> Result<Verified, Vec<Problem>> {
    let files = read_archive(reader)?;
    let (verifier, manifest) = verify_manifest(&files, key)?;
    let mut problems = check_listed_files(&files, &manifest);
    let (head, first) = match verify_checkpoints(&files, &verifier, &manifest, &mut problems) {
        Some(heads) => heads,
        None => return Err(problems),
    };
    let (count, digests_in_entries) = verify_entries(&files, &manifest, &head, &mut problems);
    verify_consistency_proof(&files, &first, &head, &mut problems);
    verify_policy_texts(&files, &digests_in_entries, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Verified {
        entries: count,
        tree_size: head.size,
        start: manifest.start,
        end: manifest.end,
        agent: manifest.agent,
        files: files.len(),
        key_pinned: key.is_some(),
    })
}

/// The pack's files by path.
type Files = BTreeMap<String, Vec<u8>>;

fn problem(file: &str, message: String) -> Problem {
    Problem {
        file: file.into(),
        message,
    }
}

fn get<'a>(files: &'a Files, name: &str) -> Result<&'a Vec<u8>, Vec<Problem>> {
    files
        .get(name)
        .ok_or_else(|| vec![problem(name, "is missing from the pack".into())])
}

fn read_archive<R: Read + Seek>(reader: R) -> Result<Files, Vec<Problem>> {
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| vec![problem("(zip)", format!("not a readable zip: {e}"))])?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| vec![problem("(zip)", format!("entry {i}: {e}"))])?;
        let name = file.name().map(|n| n.into_owned()).map_err(|e| {
            vec![problem(
                "(zip)",
                format!("entry {i} has no readable name: {e}"),
            )]
        })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| vec![problem(&name, format!("cannot be read: {e}"))])?;
        files.insert(name, bytes);
    }
    Ok(files)
}

/// Step 1: The manifest, signed by the ledger's key (the pinned one, else the pack's own).
fn verify_manifest(
    files: &Files,
    key: Option<&str>,
) -> Result<(NoteVerifier, Manifest), Vec<Problem>> {
    let vkey = match key {
        Some(k) => k.trim().to_owned(),
        None => String::from_utf8_lossy(get(files, "verifier.key")?)
            .trim()
            .to_owned(),
    };
    let verifier = NoteVerifier::from_vkey(&vkey)
        .map_err(|e| vec![problem("verifier.key", format!("not a verifier key: {e}"))])?;
    let manifest_bytes = get(files, "manifest.json")?;
    let signature = String::from_utf8_lossy(get(files, "manifest.sig")?).into_owned();
    let signed = verifier.verify(&signature).map_err(|e| {
        vec![problem(
            "manifest.sig",
            format!("signature does not verify: {e}"),
        )]
    })?;
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| vec![problem("manifest.json", format!("unreadable: {e}"))])?;
    if signed != manifest_statement(&manifest.origin, manifest_bytes) {
        return Err(vec![problem(
            "manifest.json",
            "does not match the signed statement in manifest.sig (changed after signing)".into(),
        )]);
    }
    if manifest.format != FORMAT {
        return Err(vec![problem(
            "manifest.json",
            format!("format `{}` is not {FORMAT}", manifest.format),
        )]);
    }

    Ok((verifier, manifest))
}

/// Step 2: Every file as listed, nothing more.
fn check_listed_files(files: &Files, manifest: &Manifest) -> Vec<Problem> {
    let mut problems = Vec::new();
    let listed: HashMap<&str, &ManifestFile> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    for f in &manifest.files {
        match files.get(&f.path) {
            None => problems.push(problem(
                &f.path,
                "listed in the manifest but missing".into(),
            )),
            Some(bytes) if hex::encode(Sha256::digest(bytes)) != f.sha256 => {
                problems.push(problem(
                    &f.path,
                    "its SHA-256 does not match the manifest (modified)".into(),
                ))
            }
            Some(_) => {}
        }
    }
    for name in files.keys() {
        if !listed.contains_key(name.as_str()) && name != "manifest.json" && name != "manifest.sig"
        {
            problems.push(problem(name, "is not listed in the manifest".into()));
        }
    }

    problems
}

/// Step 3: The head checkpoint and the first one, signed, and the head matching the manifest.
fn verify_checkpoints(
    files: &Files,
    verifier: &NoteVerifier,
    manifest: &Manifest,
    problems: &mut Vec<Problem>,
) -> Option<(Checkpoint, Checkpoint)> {
    let checkpoint = |file: &str| -> Result<Checkpoint, Problem> {
        let note = String::from_utf8_lossy(
            files
                .get(file)
                .ok_or_else(|| problem(file, "is missing from the pack".into()))?,
        )
        .into_owned();
        parse_checkpoint(verifier, &note).map_err(|e| problem(file, e))
    };
    let (head, first) = match (
        checkpoint("checkpoint.txt"),
        checkpoint("checkpoints/first.txt"),
    ) {
        (Ok(h), Ok(f)) => (h, f),
        (h, f) => {
            problems.extend(h.err());
            problems.extend(f.err());
            return None;
        }
    };
    if head.size != manifest.tree_size || head.origin != manifest.origin {
        problems.push(problem(
            "checkpoint.txt",
            format!(
                "is for {} entries of `{}`, the manifest says {} of `{}`",
                head.size, head.origin, manifest.tree_size, manifest.origin
            ),
        ));
    }

    Some((head, first))
}

/// Step 4: entries in order, each with its inclusion proof against the head. Returns how many,
/// and the policy digest each `policy_loaded` entry recorded.
fn verify_entries(
    files: &Files,
    manifest: &Manifest,
    head: &Checkpoint,
    problems: &mut Vec<Problem>,
) -> (u64, HashMap<u64, String>) {
    let entries_text = files
        .get("entries.jsonl")
        .map(Vec::as_slice)
        .unwrap_or_default();
    let proofs_text = files
        .get("proofs/inclusion.jsonl")
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut proof_lines = proofs_text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let mut previous: Option<u64> = None;
    let mut count = 0u64;
    let mut digests_in_entries: HashMap<u64, String> = HashMap::new();
    for (n, line) in entries_text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let at = |m: String| problem("entries.jsonl", format!("line {}: {m}", n + 1));
        let parsed: EntryLine = match serde_json::from_slice(line) {
            Ok(p) => p,
            Err(e) => {
                problems.push(at(format!("unreadable: {e}")));
                break;
            }
        };
        let index = parsed.index;
        let expected = match (previous, &manifest.agent) {
            (None, _) if index < manifest.start => Some(manifest.start),
            (Some(p), None) if index != p + 1 => Some(p + 1),
            (Some(p), Some(_)) if index <= p => Some(p + 1),
            (None, None) if index != manifest.start => Some(manifest.start),
            _ => None,
        };
        if let Some(expected) = expected {
            problems.push(at(format!(
                "index {index} where {expected} was expected: entries are missing or out of order"
            )));
            break;
        }
        if index >= manifest.end {
            problems.push(at(format!("index {index} is outside the range")));
            break;
        }
        previous = Some(index);
        count += 1;
        let bytes = parsed.entry.get().as_bytes();
        if let Ok(Entry {
            event: Event::PolicyLoaded(p),
            ..
        }) = serde_json::from_slice::<Entry>(bytes)
        {
            digests_in_entries.insert(index, p.policy_digest);
        }
        let proof = proof_lines
            .next()
            .and_then(|l| serde_json::from_slice::<ProofLine>(l).ok());
        let Some(proof) = proof.filter(|p| p.index == index) else {
            problems.push(problem(
                "proofs/inclusion.jsonl",
                format!("no proof for index {index} at line {}", n + 1),
            ));
            break;
        };
        let ok = decode_hashes(&proof.hashes).is_some_and(|hs| {
            verify_inclusion(&leaf_hash(bytes), index, head.size, &hs, &head.root).is_ok()
        });
        if !ok {
            problems.push(at(format!(
                "entry {index} is not in the checkpointed ledger (its inclusion proof fails)"
            )));
        }
    }
    if count != manifest.entries {
        problems.push(problem(
            "entries.jsonl",
            format!(
                "holds {count} entries, the manifest says {}",
                manifest.entries
            ),
        ));
    }
    if proof_lines.next().is_some() {
        problems.push(problem(
            "proofs/inclusion.jsonl",
            "has more proofs than there are entries".into(),
        ));
    }

    (count, digests_in_entries)
}

/// Step 5: Consistency of the first checkpoint with the head.
fn verify_consistency_proof(
    files: &Files,
    first: &Checkpoint,
    head: &Checkpoint,
    problems: &mut Vec<Problem>,
) {
    let consistency: Option<ConsistencyFile> = files
        .get("proofs/consistency.json")
        .and_then(|b| serde_json::from_slice(b).ok());
    let consistent = consistency.is_some_and(|c| {
        c.from == first.size
            && c.to == head.size
            && decode_hashes(&c.hashes).is_some_and(|hs| {
                verify_consistency(first.size, head.size, &first.root, &head.root, &hs).is_ok()
            })
    });
    if !consistent {
        problems.push(problem(
            "proofs/consistency.json",
            "does not prove checkpoints/first.txt is a prefix of checkpoint.txt".into(),
        ));
    }
}

/// Step 6: Policy texts recompute to their digests, and to the digests their entries recorded.
fn verify_policy_texts(
    files: &Files,
    digests_in_entries: &HashMap<u64, String>,
    problems: &mut Vec<Problem>,
) {
    match files
        .get("policies/index.json")
        .map(|b| serde_json::from_slice::<Vec<PolicyIndex>>(b))
    {
        Some(Ok(index)) => {
            for p in index {
                if let Some(recorded) = digests_in_entries.get(&p.loaded_at_index)
                    && *recorded != p.digest
                {
                    problems.push(problem(
                        "policies/index.json",
                        format!(
                            "entry {} loaded {recorded}, the index says {}",
                            p.loaded_at_index, p.digest
                        ),
                    ));
                }
                let Some(folder) = &p.folder else { continue };
                let texts: Option<Vec<(String, String)>> = p
                    .files
                    .iter()
                    .map(|name| {
                        files
                            .get(&format!("policies/{folder}/{name}"))
                            .map(|t| (name.clone(), String::from_utf8_lossy(t).into_owned()))
                    })
                    .collect();
                let recomputed = texts.map(|t| PolicyDigest::of_files(&t).to_string());
                if recomputed.as_deref() != Some(p.digest.as_str()) {
                    problems.push(problem(
                        &format!("policies/{folder}"),
                        format!("the policy files do not hash to {}", p.digest),
                    ));
                }
            }
        }
        Some(Err(e)) => problems.push(problem("policies/index.json", format!("unreadable: {e}"))),
        None => problems.push(problem("policies/index.json", "is missing".into())),
    }
}
