//! The automatic rules: each item of the catalogue whose evidence Reins holds is checked here,
//! against the ledger, the registry, the configuration and the live policy pack.

use super::*;

pub(super) const ALL_TIME: (Timestamp, Timestamp) = (Timestamp::MIN, Timestamp::MAX);

/// Art 12: every decision recorded, and the record verifiable.
pub(super) async fn decision_logging(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Finding, ComplianceError> {
    use Status::*;
    let counts = sources
        .store
        .decision_counts(agent, ALL_TIME.0, ALL_TIME.1)
        .await?;
    let total = counts.allow + counts.deny;
    if total == 0 {
        return Ok(Finding::new(
            EvidenceMissing,
            "no decision about this agent is recorded yet",
            Vec::new(),
        ));
    }
    if counts.unrecorded > 0 {
        return Ok(Finding::new(
            EvidenceMissing,
            format!(
                "{} of {total} decisions have no ledger entry",
                counts.unrecorded
            ),
            Vec::new(),
        ));
    }
    let mut evidence = vec![Evidence::text(format!(
        "{total} decisions, each with a ledger entry (indices {} to {})",
        counts.first_index.unwrap_or_default(),
        counts.last_index.unwrap_or_default()
    ))];
    let Some(row) = sources.store.latest_checkpoint().await? else {
        return Ok(Finding::new(
            EvidenceMissing,
            "no signed checkpoint yet",
            evidence,
        ));
    };
    let verified = sources
        .signer
        .verifier()
        .verify(&row.note)
        .map_err(|e| e.to_string())
        .and_then(|text| Checkpoint::parse(text).map_err(|e| e.to_string()));
    let checkpoint = match verified {
        Ok(c) => c,
        Err(e) => {
            return Ok(Finding::new(
                EvidenceMissing,
                format!("the latest checkpoint does not verify: {e}"),
                evidence,
            ));
        }
    };
    if crate::compliance::stored_root(&sources.store, checkpoint.size).await? != checkpoint.root {
        return Ok(Finding::new(
            EvidenceMissing,
            format!(
                "the stored tree of size {} does not match its signed checkpoint",
                checkpoint.size
            ),
            evidence,
        ));
    }
    evidence.push(Evidence {
        checkpoint: Some(row.note.clone()),
        ..Evidence::text(format!(
            "signed checkpoint of size {} verifies with the ledger key and matches the stored tree",
            checkpoint.size
        ))
    });
    let newest = sources
        .store
        .decision_indices(agent, 0, checkpoint.size)
        .await?
        .last()
        .copied();
    if let Some(index) = newest {
        let bytes = sources
            .store
            .entries(index, index + 1)
            .await?
            .into_iter()
            .next()
            .map(|r| r.entry)
            .ok_or_else(|| ComplianceError::Damaged(format!("entry {index} is missing")))?;
        let proof = ProofBuilder::new(sources.store.clone(), checkpoint.size)
            .inclusion(&[index])
            .await?
            .remove(0);
        if verify_inclusion(
            &leaf_hash(&bytes),
            index,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .is_err()
        {
            return Ok(Finding::new(
                EvidenceMissing,
                format!("the inclusion proof of decision entry {index} does not verify"),
                evidence,
            ));
        }
        evidence.push(Evidence::at(
            "the newest checkpointed decision's entry hashes to a leaf whose inclusion proof verifies",
            index,
        ));
    }
    Ok(Finding::new(
        Satisfied,
        "every decision is in the ledger and the ledger verifies",
        evidence,
    ))
}

/// Art 13(3)(d),(f): the record says what the agent is for and how humans oversee it.
pub(super) fn instructions(entry: &AgentEntry) -> Finding {
    let r = &entry.agent.record;
    let mut missing = Vec::new();
    if r.intended_purpose
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        missing.push("intended_purpose");
    }
    if r.documentation.human_oversight.is_empty() {
        missing.push("documentation.human_oversight");
    }
    let evidence = vec![Evidence::text(format!(
        "agent record version {} (registry, ledgered with every change)",
        entry.agent.meta.version
    ))];
    if missing.is_empty() {
        Finding::new(
            Status::Satisfied,
            "intended purpose and oversight measures are documented; the model card shows them",
            evidence,
        )
    } else {
        Finding::new(
            Status::EvidenceMissing,
            format!("the agent record lacks {}", missing.join(" and ")),
            evidence,
        )
    }
}

/// Art 14(4)(d): no high- or critical-risk declared tool is usable without a human.
pub(super) fn approval_gates(sources: &Sources, entry: &AgentEntry) -> Finding {
    let agent = &entry.agent.id;
    let mut evidence = Vec::new();
    let mut open = Vec::new();
    for tool_id in &entry.agent.record.tools {
        let Some(tool) = sources.snapshot.tool(tool_id) else {
            continue;
        };
        if !matches!(tool.tool.record.risk, ToolRisk::High | ToolRisk::Critical) {
            continue;
        }
        let verdict = probe_tool(
            &sources.pack,
            &sources.snapshot,
            &sources.types,
            agent,
            tool_id,
        );
        match verdict.as_ref().map(gate_of) {
            Some(Gate::Approval(ids)) => evidence.push(Evidence::text(format!(
                "`{tool_id}` ({}) needs an approval: {}",
                tool.tool.record.risk.as_str(),
                ids.join(", ")
            ))),
            Some(Gate::Forbidden(why)) => evidence.push(Evidence::text(format!(
                "`{tool_id}` ({}) is denied outright without approval: {why}",
                tool.tool.record.risk.as_str()
            ))),
            Some(Gate::Open) | None => open.push(tool_id.to_string()),
        }
    }
    if !open.is_empty() {
        return Finding::new(
            Status::EvidenceMissing,
            format!(
                "the active policies allow {} without any human approval",
                open.join(", ")
            ),
            evidence,
        );
    }
    if evidence.is_empty() {
        evidence.push(Evidence::text(
            "the agent declares no high- or critical-risk tool",
        ));
    }
    Finding::new(
        Status::Satisfied,
        format!(
            "checked against policy pack {}: no high- or critical-risk tool runs without a human",
            sources.pack.digest()
        ),
        evidence,
    )
}

pub(super) enum Gate {
    Open,
    Approval(Vec<String>),
    Forbidden(String),
}

pub(super) fn gate_of(decision: &Decision) -> Gate {
    if decision.decision == Outcome::Allow {
        return Gate::Open;
    }
    let ids = || {
        decision
            .reasons
            .iter()
            .filter_map(|r| r.policy_id.clone())
            .collect::<Vec<_>>()
    };
    if decision
        .reasons
        .iter()
        .any(|r| r.code == ReasonCode::ApprovalRequired)
    {
        return Gate::Approval(ids());
    }
    let ids = ids();
    Gate::Forbidden(if ids.is_empty() {
        "no permit matches".into()
    } else {
        format!("forbidden by {}", ids.join(", "))
    })
}

/// Art 14(4)(e): the stop button was used or drilled recently.
pub(super) async fn kill_switch_drill(
    sources: &Sources,
    agent: &AgentId,
    now: Timestamp,
) -> Result<Finding, ComplianceError> {
    let window = sources.config.drill_window;
    let config = Some(format!(
        "compliance.drill_window = {}",
        humantime::format_duration(window)
    ));
    let Some(latest) = kill_switch_uses(sources, agent).await?.pop() else {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            "no kill switch covering this agent was ever engaged or drilled",
            vec![Evidence {
                config,
                ..Evidence::text("drill window")
            }],
        ));
    };
    let age = now.datetime() - latest.engaged_at.datetime();
    let evidence = vec![
        Evidence::at(
            format!(
                "{} `{}`{} at {}: {}",
                if latest.drill { "drill" } else { "engagement" },
                latest.switch_id,
                if latest.global { " (global)" } else { "" },
                latest.engaged_at,
                latest.reason
            ),
            latest.ledger_index,
        ),
        Evidence {
            config,
            ..Evidence::text("drill window")
        },
    ];
    if age > window {
        Ok(Finding::new(
            Status::EvidenceStale,
            format!(
                "the last engagement or drill is {} days old, older than the window",
                age.whole_days()
            ),
            evidence,
        ))
    } else {
        Ok(Finding::new(
            Status::Satisfied,
            "a kill switch covering the agent was engaged or drilled within the window",
            evidence,
        ))
    }
}

/// Art 15: the start-up fail-closed self-check passed against the pack now active.
pub(super) async fn fail_closed(sources: &Sources) -> Result<Finding, ComplianceError> {
    let latest = sources.entries_of(&["self_check"]).await?.pop();
    let Some((
        index,
        Entry {
            event: Event::SelfCheck(check),
            time,
        },
    )) = latest
    else {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            "no fail-closed self-check is recorded",
            Vec::new(),
        ));
    };
    let failed: Vec<&str> = check
        .probes
        .iter()
        .filter(|p| !p.passed)
        .map(|p| p.name.as_str())
        .collect();
    let evidence = vec![Evidence::at(
        format!(
            "self-check at {time}: {} probes ({}), policy pack {}",
            check.probes.len(),
            check
                .probes
                .iter()
                .map(|p| format!("{} -> {}", p.name, p.got))
                .collect::<Vec<_>>()
                .join("; "),
            check.policy_digest
        ),
        index,
    )];
    if !check.passed {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!("the latest self-check failed: {}", failed.join(", ")),
            evidence,
        ));
    }
    if check.policy_digest != sources.pack.digest().as_str() {
        return Ok(Finding::new(
            Status::EvidenceStale,
            "the latest self-check ran against another policy pack",
            evidence,
        ));
    }
    Ok(Finding::new(
        Status::Satisfied,
        "the fail-closed self-check passed against the active policy pack",
        evidence,
    ))
}

/// Art 19(1), 26(6): logs kept at least six months, and none missing.
pub(super) async fn log_retention(sources: &Sources) -> Result<Finding, ComplianceError> {
    let days = sources.config.log_retention_days;
    let config = Some(format!(
        "compliance.log_retention_days = {}",
        days.map_or("unset (indefinite)".into(), |d| d.to_string())
    ));
    let stored = sources.store.entry_count().await?;
    let mut evidence = vec![
        Evidence {
            config,
            ..Evidence::text("declared retention")
        },
        Evidence::text(format!(
            "{stored} entries stored for a tree of {} (Reins deletes none)",
            sources.ledger_size
        )),
    ];
    if let Some(first) = sources.store.entries(0, 1).await?.into_iter().next() {
        let (_, entry) = crate::compliance::decode(first)?;
        evidence.push(Evidence::at(
            format!("the first entry, of {}, is still stored", entry.time),
            0,
        ));
    }
    if days.is_some_and(|d| d < MIN_RETENTION_DAYS) {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!("retention is configured below {MIN_RETENTION_DAYS} days"),
            evidence,
        ));
    }
    if stored < sources.ledger_size {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!(
                "{} ledger entries are missing",
                sources.ledger_size - stored
            ),
            evidence,
        ));
    }
    Ok(Finding::new(
        Status::Satisfied,
        "retention of at least six months is configured and every entry is kept",
        evidence,
    ))
}

/// Art 86: the agent's decisions can be explained one by one.
pub(super) async fn decision_explanation(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Finding, ComplianceError> {
    const SAMPLE: u32 = 20;
    let rows = sources.store.decisions(Some(agent), None, SAMPLE).await?;
    if rows.is_empty() {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            "no decision about this agent is recorded yet",
            Vec::new(),
        ));
    }
    let mut evidence = Vec::new();
    for row in &rows {
        let record = record_of(row);
        let explained = record
            .is_ok_and(|r| !r.decision.reasons.is_empty() && r.decision.policy_digest.is_some())
            && row.ledger_index.is_some();
        if !explained {
            return Ok(Finding::new(
                Status::EvidenceMissing,
                format!(
                    "decision {} cannot be explained: its reasons, policy digest or ledger entry are missing",
                    row.id
                ),
                evidence,
            ));
        }
        if evidence.len() < 3 {
            evidence.push(Evidence {
                ledger_index: row.ledger_index.map(|i| i as u64),
                ..Evidence::text(format!("GET /v1/decisions/{}", row.id))
            });
        }
    }
    Ok(Finding::new(
        Status::Satisfied,
        format!(
            "the {} newest decisions are retrievable with their reasons and policy digest",
            rows.len()
        ),
        evidence,
    ))
}

/// Art 9: the active policy version passed its store's policy tests before it became active.
pub(super) async fn policy_tests(sources: &Sources) -> Result<Finding, ComplianceError> {
    let digest = sources.pack.digest().to_string();
    let entries = sources
        .entries_of(&["policy_tested", "policy_activated"])
        .await?;
    // The last activation of the default store's active digest, and the test run just before it.
    // (ledger index, passed, checks) of a test run.
    type Run = (u64, bool, usize);
    let mut tested: Option<Run> = None;
    let mut found: Option<(u64, Option<Run>)> = None;
    for (index, entry) in entries {
        match entry.event {
            Event::PolicyTested(t) if t.store == crate::ids::DEFAULT_STORE => {
                tested = (t.policy_digest == digest).then_some((index, t.passed, t.checks));
            }
            Event::PolicyActivated(a)
                if a.store == crate::ids::DEFAULT_STORE && a.policy_digest == digest =>
            {
                found = Some((index, tested));
            }
            _ => {}
        }
    }
    match found {
        Some((activated, Some((run, true, checks)))) => Ok(Finding::new(
            Status::Satisfied,
            format!("the active policy version {digest} passed its policy tests before activation"),
            vec![
                Evidence::at(format!("policy tests passed ({checks} checks)"), run),
                Evidence::at("activation", activated),
            ],
        )),
        Some((activated, _)) => Ok(Finding::new(
            Status::EvidenceMissing,
            "the active policy version was activated without a passing test run",
            vec![Evidence::at("activation", activated)],
        )),
        None => Ok(Finding::new(
            Status::EvidenceMissing,
            "no activation of the active policy version is recorded",
            Vec::new(),
        )),
    }
}
