//! The automatic rules: each item of the catalogue whose evidence Reins holds is checked here,
//! against the ledger, the registry, the configuration and the live policy pack. Each answers
//! what its evidence shows and no more: Reins governs the agent's tool calls, not its model, its
//! data or the organisation around it, so most rules can only support an obligation.

use super::*;
use crate::model::DecisionRecord;

/// Most decisions the drill rule reads back, newest first: bounds a checklist on a busy agent.
const SCAN_LIMIT: usize = 50_000;
/// Most decisions read back for the latest arguments of each declared tool.
const ARGS_SCAN_LIMIT: usize = 5_000;

/// The agent's recorded decisions since `since` (all when `None`), newest first, at most `limit`.
async fn recent_records(
    sources: &Sources,
    agent: &AgentId,
    since: Option<Timestamp>,
    limit: usize,
) -> Result<Vec<DecisionRecord>, ComplianceError> {
    const PAGE: u32 = 1_000;
    let mut records = Vec::new();
    let mut before: Option<crate::ids::DecisionId> = None;
    loop {
        let rows = sources
            .store
            .decisions(Some(agent), before.as_ref(), PAGE)
            .await?;
        let last = rows.len() < PAGE as usize;
        for row in &rows {
            if since.is_some_and(|s| row.evaluated_at < s) || records.len() >= limit {
                return Ok(records);
            }
            records.push(record_of(row)?);
        }
        match rows.last().map(|r| r.id.parse()) {
            Some(Ok(id)) if !last => before = Some(id),
            _ => return Ok(records),
        }
    }
}

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
    // What came of the allowed actions is logged only where the agent (or its enforcement
    // point) reports it: the share says how much of the trail reaches past the decision.
    if counts.allow > 0 {
        let unreported: u64 = sources
            .store
            .outcome_counts(agent, ALL_TIME.0, ALL_TIME.1)
            .await?
            .iter()
            .filter(|c| c.status.is_none())
            .map(|c| c.count)
            .sum();
        let reported = counts.allow.saturating_sub(unreported);
        evidence.push(Evidence::text(format!(
            "{reported} of {} allowed actions ({:.1}%) have an outcome reported \
             by the agent or its enforcement point",
            counts.allow,
            reported as f64 * 100.0 / counts.allow as f64
        )));
    }
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
        SupportingEvidence,
        "every authorization decision about the agent's tool calls is in the ledger and the ledger \
         verifies; the AI system's own events (12(2)(a)-(c)) are logged by the system, not by Reins",
        evidence,
    ))
}

/// Art 13(3)(b)(i), (d), (f): the record says what the agent is for and how humans oversee it,
/// and Reins's logs can be exported and read. The instructions for use themselves are the
/// provider's document.
pub(super) fn instructions(entry: &AgentEntry) -> Finding {
    let r = &entry.agent.record;
    let mut missing = Vec::new();
    if r.intended_purpose
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        missing.push("intended_purpose (13(3)(b)(i))");
    }
    if r.documentation.human_oversight.is_empty() {
        missing.push("documentation.human_oversight (13(3)(d))");
    }
    let evidence = vec![
        Evidence::text(format!(
            "agent record version {} (registry, ledgered with every change)",
            entry.agent.meta.version
        )),
        Evidence::text(
            "13(3)(f): Reins's logs export as audit packs that verify offline \
             (`reins audit-pack export`, `reins audit-pack verify`)",
        ),
    ];
    if missing.is_empty() {
        Finding::new(
            Status::SupportingEvidence,
            "the record states the intended purpose and the oversight measures, shown on the model \
             card; the instructions for use are the provider's document",
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

/// Art 14(4)(d): no declared tool runs without a human. Each is probed against the active
/// policies with the arguments of its latest recorded call by the agent (empty when none), so a
/// gate on an amount is tested with a real amount.
pub(super) async fn approval_gates(
    sources: &Sources,
    entry: &AgentEntry,
) -> Result<Finding, ComplianceError> {
    let agent = &entry.agent.id;
    let mut latest_args = std::collections::HashMap::new();
    for record in recent_records(sources, agent, None, ARGS_SCAN_LIMIT).await? {
        let args = record
            .request
            .context
            .as_ref()
            .and_then(|c| c.get("args"))
            .cloned()
            .unwrap_or_default();
        latest_args
            .entry(record.request.resource.id)
            .or_insert(args);
    }
    let mut evidence = Vec::new();
    let mut open = Vec::new();
    for tool_id in &entry.agent.record.tools {
        let Some(tool) = sources.snapshot.tool(tool_id) else {
            continue;
        };
        let args = latest_args
            .get(tool_id.as_str())
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let with = if args.as_object().is_some_and(|a| !a.is_empty()) {
            "its latest recorded arguments"
        } else {
            "empty arguments"
        };
        let verdict = probe_tool(
            &sources.pack,
            &sources.snapshot,
            &sources.types,
            agent,
            tool_id,
            &args,
        );
        let risk = tool.tool.record.risk.as_str();
        match verdict.as_ref().map(gate_of) {
            Some(Gate::Approval(ids)) => evidence.push(Evidence::text(format!(
                "`{tool_id}` ({risk}), with {with}: needs an approval: {}",
                ids.join(", ")
            ))),
            Some(Gate::Forbidden(why)) => evidence.push(Evidence::text(format!(
                "`{tool_id}` ({risk}), with {with}: denied outright: {why}"
            ))),
            Some(Gate::Open) | None => open.push(format!("`{tool_id}` ({risk})")),
        }
    }
    if !open.is_empty() {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!(
                "an overseer cannot stop {} in a particular situation: the active policies allow it \
                 without any human",
                open.join(", ")
            ),
            evidence,
        ));
    }
    if evidence.is_empty() {
        return Ok(Finding::new(
            Status::SupportingEvidence,
            "the agent declares no tool, so none of its tool calls can run",
            evidence,
        ));
    }
    Ok(Finding::new(
        Status::Satisfied,
        format!(
            "checked against policy pack {}: every declared tool waits for a human (or is denied)",
            sources.pack.digest()
        ),
        evidence,
    ))
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

/// Art 14(4)(e): the stop button was used within the window, and it stopped something: the
/// ledger shows decisions for the agent refused by that switch while it was engaged.
pub(super) async fn kill_switch_drill(
    sources: &Sources,
    agent: &AgentId,
    now: Timestamp,
) -> Result<Finding, ComplianceError> {
    let window = sources.config.drill_window;
    let config = Evidence {
        config: Some(format!(
            "compliance.drill_window = {}",
            crate::compliance::human_duration(window)
        )),
        ..Evidence::text("drill window")
    };
    let since = Timestamp::from_datetime(now.datetime() - window);
    let uses = kill_switch_uses(sources, agent).await?;
    let Some(latest) = uses.last() else {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            "no kill switch covering this agent was ever engaged or drilled",
            vec![config],
        ));
    };
    let recent: Vec<_> = uses.iter().filter(|u| u.engaged_at >= since).collect();
    if recent.is_empty() {
        return Ok(Finding::new(
            Status::EvidenceStale,
            format!(
                "the last engagement or drill ({}) is older than the window",
                latest.engaged_at
            ),
            vec![use_evidence(latest), config],
        ));
    }
    let oldest = recent.iter().map(|u| u.engaged_at).min().unwrap_or(since);
    let records = recent_records(sources, agent, Some(oldest), SCAN_LIMIT).await?;
    for switch in recent.iter().rev() {
        let refused: Vec<&DecisionRecord> = records
            .iter()
            .filter(|r| {
                r.decision.reasons.iter().any(|reason| {
                    reason.code == ReasonCode::KillSwitch
                        && reason
                            .killswitch_id
                            .is_some_and(|id| id.to_string() == switch.switch_id)
                })
            })
            .collect();
        if let Some(first) = refused.last() {
            let mut evidence = vec![use_evidence(switch)];
            evidence.push(Evidence {
                ledger_index: first.decision.ledger.as_ref().map(|l| l.index),
                ..Evidence::text(format!(
                    "{} decision(s) for the agent refused by it while engaged; the first",
                    refused.len()
                ))
            });
            evidence.push(config);
            return Ok(Finding::new(
                Status::Satisfied,
                "within the window a kill switch covering the agent was engaged and refused its \
                 tool calls",
                evidence,
            ));
        }
    }
    let mut evidence: Vec<Evidence> = recent.iter().map(|u| use_evidence(u)).collect();
    evidence.push(config);
    Ok(Finding::new(
        Status::EvidenceMissing,
        "kill switches covering the agent were engaged within the window, but no decision for the \
         agent was refused by one: the ledger does not show that the stop worked",
        evidence,
    ))
}

pub(super) fn use_evidence(u: &crate::compliance::KillSwitchUse) -> Evidence {
    Evidence::at(
        format!(
            "{} `{}`{} at {}: {}",
            if u.drill { "drill" } else { "engagement" },
            u.switch_id,
            if u.global { " (global)" } else { "" },
            u.engaged_at,
            u.reason
        ),
        u.ledger_index,
    )
}

/// Art 15(4), in part: the start-up fail-closed self-check passed against the pack now active,
/// so the agent's tool calls fail safe when Reins cannot decide.
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
        Status::SupportingEvidence,
        "Reins's fail-closed self-check passed against the active policy pack (a fail-safe plan \
         for the agent's tool calls, 15(4)); the AI system's own accuracy, robustness and \
         cybersecurity are the provider's to show",
        evidence,
    ))
}

/// Art 19(1), 26(6), for the logs Reins keeps: retained at least six months, none missing.
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
            "{stored} ledger entries stored for a tree of {} (Reins deletes none)",
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
        Status::SupportingEvidence,
        format!(
            "Reins's decision logs are kept (retention of at least {MIN_RETENTION_DAYS} days, every \
             entry present); the AI system's own logs are kept elsewhere, and need an attestation"
        ),
        evidence,
    ))
}

/// Art 86, in support: the agent's tool-call decisions can be explained one by one. The
/// deployer's decision about a person is not among them.
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
                ..Evidence::text(format!(
                    "decision {}: its explanation names the deciding policies in their own words",
                    row.id
                ))
            });
        }
    }
    Ok(Finding::new(
        Status::SupportingEvidence,
        format!(
            "the {} newest tool-call decisions can be explained (what was asked, for whom, the \
             deciding policies quoted, the ledger proof); the explanation of the deployer's \
             decision about a person is the deployer's",
            rows.len()
        ),
        evidence,
    ))
}

/// Art 9, in support: the active policy version passed its store's policy tests before it became
/// active. Those test the policies that govern tool calls, not the AI system's risk management.
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
            Status::SupportingEvidence,
            format!(
                "the active policy version {digest} passed its policy tests before activation; the \
                 risk management system and its testing against the intended purpose (9(8)) need \
                 an attestation"
            ),
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

/// Art 14(4)(b), in support: how overseers decide approvals. Half or more of at least
/// [`RUBBER_STAMP_MIN`] decided approvals granted in under [`RUBBER_STAMP_SECONDS`] seconds is
/// evidence against review.
pub(super) async fn oversight_statistics(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Finding, ComplianceError> {
    use crate::approvals::Status as Approval;
    let (mut granted, mut denied, mut quick) = (0usize, 0usize, 0usize);
    let mut reviews = Vec::new();
    for row in sources.store.approvals_of(agent).await? {
        let (Some(decided), Some(_)) = (row.decided_at, &row.decided_by) else {
            continue;
        };
        let seconds = (decided.datetime() - row.requested_at.datetime()).as_seconds_f64();
        reviews.push(seconds);
        match Approval::parse(&row.status) {
            Some(Approval::Granted | Approval::Used) => {
                granted += 1;
                if seconds < RUBBER_STAMP_SECONDS {
                    quick += 1;
                }
            }
            Some(Approval::Denied) => denied += 1,
            _ => {}
        }
    }
    let decided = granted + denied;
    if decided == 0 {
        return Ok(Finding::new(
            Status::AttestationRequired,
            "no approval for the agent was decided yet, so the ledger shows nothing of how \
             overseers review; needs a statement of how automation bias is countered",
            Vec::new(),
        ));
    }
    let median = crate::compliance::median(&mut reviews).unwrap_or_default();
    let figures = Evidence::text(format!(
        "{decided} approvals decided: {granted} granted ({:.0}%), {denied} denied; median review \
         {median:.1} s; {quick} granted in under {RUBBER_STAMP_SECONDS} s",
        granted as f64 * 100.0 / decided as f64
    ));
    if decided >= RUBBER_STAMP_MIN && quick * 2 >= decided {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!(
                "{quick} of {decided} approvals were granted in under {RUBBER_STAMP_SECONDS} s: \
                 that is rubber-stamping, the automation bias 14(4)(b) names"
            ),
            vec![figures],
        ));
    }
    Ok(Finding::new(
        Status::SupportingEvidence,
        "approval statistics show overseers reviewing; how they are made aware of automation \
         bias needs an attestation",
        vec![figures],
    ))
}

/// Fewest decided approvals before their speed counts as evidence.
const RUBBER_STAMP_MIN: usize = 10;
/// A grant faster than this is not a review.
const RUBBER_STAMP_SECONDS: f64 = 5.0;

/// Art 25(1): a change of the agent's intended purpose in its ledgered history is flagged: it
/// may have made the deployer the system's provider.
pub(super) async fn purpose_history(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Finding, ComplianceError> {
    let mut previous: Option<(u64, Option<String>)> = None;
    let mut changes = Vec::new();
    for (index, entry) in sources
        .entries_of(&["agent_registered", "agent_changed"])
        .await?
    {
        let (Event::AgentRegistered(a) | Event::AgentChanged(a)) = entry.event else {
            continue;
        };
        if a.agent_id != agent.as_str() {
            continue;
        }
        let purpose = a.record["intended_purpose"].as_str().map(str::to_owned);
        if let Some((_, before)) = &previous
            && *before != purpose
        {
            changes.push(Evidence::at(
                format!(
                    "intended purpose changed from {:?} to {:?}",
                    before.as_deref().unwrap_or(""),
                    purpose.as_deref().unwrap_or("")
                ),
                index,
            ));
        }
        previous = Some((index, purpose));
    }
    let Some((registered, _)) = previous else {
        return Ok(Finding::new(
            Status::AttestationRequired,
            "no registration of the agent is in the ledger",
            Vec::new(),
        ));
    };
    if changes.is_empty() {
        return Ok(Finding::new(
            Status::SupportingEvidence,
            "the intended purpose has not changed in the agent's ledgered history; a substantial \
             modification (25(1)(b)) is not visible to Reins",
            vec![Evidence::at("the latest registry entry", registered)],
        ));
    }
    Ok(Finding::new(
        Status::AttestationRequired,
        format!(
            "possible provider role: the intended purpose changed {} time(s); if a change made \
             the system high-risk, Art 25(1)(c) makes the deployer its provider. Needs a statement \
             either way",
            changes.len()
        ),
        changes,
    ))
}
