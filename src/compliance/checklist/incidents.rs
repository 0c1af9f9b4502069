//! The rules of the items about suspensions and serious incidents (Art 20, 26(5), 73): the kill
//! switch engagements that covered the agent, the incidents recorded for it (with the ledger
//! entries of their steps and the switches that suspended it), and whether each was reported
//! within its Art 73 deadline. Reins knows only the incidents recorded in it: without any, these
//! items still ask for a statement of the procedure.

use super::rules::use_evidence;
use super::*;

/// Art 26(5), in support: the suspensions of the agent (kill switch engagements covering it).
pub(super) async fn suspension_records(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Finding, ComplianceError> {
    let uses = kill_switch_uses(sources, agent).await?;
    if uses.is_empty() {
        return Ok(Finding::new(
            Status::AttestationRequired,
            "no suspension of the agent is recorded; needs a statement of how its operation is \
             monitored and who suspends it",
            Vec::new(),
        ));
    }
    Ok(Finding::new(
        Status::SupportingEvidence,
        format!(
            "{} suspension(s) of the agent are in the ledger; monitoring and informing the \
             provider and the authority need an attestation",
            uses.len()
        ),
        uses.iter().rev().take(5).map(use_evidence).collect(),
    ))
}

/// An incident that names the agent, with where its steps are in the ledger and the kill
/// switches linked to it that suspended the agent (not drills; its own scope or global).
pub(super) struct TrackedIncident {
    pub incident: crate::incidents::Incident,
    /// The entry of its latest step.
    pub last_index: Option<u64>,
    /// The entry that recorded its report to the authority.
    pub reported_index: Option<u64>,
    pub suspensions: Vec<String>,
}

/// The incidents that name `agent`, oldest first.
pub(super) async fn incidents_of(
    sources: &Sources,
    agent: &AgentId,
) -> Result<Vec<TrackedIncident>, ComplianceError> {
    let mut steps: std::collections::HashMap<String, (u64, Option<u64>)> = Default::default();
    for (index, entry) in sources
        .entries_of(&[
            "incident_opened",
            "incident_updated",
            "incident_reported",
            "incident_closed",
        ])
        .await?
    {
        if let Event::IncidentOpened(e)
        | Event::IncidentUpdated(e)
        | Event::IncidentReported(e)
        | Event::IncidentClosed(e) = &entry.event
        {
            let step = steps.entry(e.incident_id.clone()).or_insert((index, None));
            step.0 = index;
            if matches!(entry.event, Event::IncidentReported(_)) {
                step.1 = Some(index);
            }
        }
    }
    let mut tracked = Vec::new();
    let all = crate::incidents::load_all(&sources.store)
        .await
        .map_err(|e| ComplianceError::Damaged(e.to_string()))?;
    for incident in all.into_iter().rev() {
        if !incident.agents.iter().any(|a| a == agent.as_str()) {
            continue;
        }
        let mut suspensions = Vec::new();
        for id in &incident.killswitches {
            if let Some(row) = sources.store.killswitch(id).await?
                && !row.drill
                && row.scope_tool.is_none()
                && row.scope_action.is_none()
                && row
                    .scope_agent
                    .as_deref()
                    .is_none_or(|a| a == agent.as_str())
            {
                suspensions.push(id.clone());
            }
        }
        let (last_index, reported_index) = steps
            .get(&incident.id.to_string())
            .map_or((None, None), |(last, reported)| (Some(*last), *reported));
        tracked.push(TrackedIncident {
            incident,
            last_index,
            reported_index,
            suspensions,
        });
    }
    Ok(tracked)
}

fn incident_line(t: &TrackedIncident, now: Timestamp) -> Evidence {
    let i = &t.incident;
    let status = crate::compliance::incident::deadline_status(i, now).replace('_', " ");
    let mut line = format!(
        "incident {} ({}, aware {}, due {}): {status}",
        i.id,
        i.severity.as_str(),
        i.aware_at,
        i.deadline
    );
    if let (Some(at), Some(reference)) = (&i.reported_at, &i.reference) {
        line.push_str(&format!(" at {at}, reference {reference}"));
    }
    if !t.suspensions.is_empty() {
        line.push_str(&format!("; suspended by {}", t.suspensions.join(", ")));
    }
    Evidence {
        ledger_index: t.reported_index.or(t.last_index),
        ..Evidence::text(line)
    }
}

/// The incidents whose report is missing past their deadline, or came after it.
fn late(tracked: &[TrackedIncident], now: Timestamp) -> Vec<String> {
    tracked
        .iter()
        .filter(|t| {
            matches!(
                crate::compliance::incident::deadline_status(&t.incident, now),
                "overdue" | "reported_late"
            )
        })
        .map(|t| t.incident.id.to_string())
        .collect()
}

/// Art 73(2)-(4): every serious incident recorded for the agent reported within its deadline.
/// Reins knows only the incidents recorded in it: without any, the procedure needs a statement.
pub(super) async fn incident_reporting(
    sources: &Sources,
    agent: &AgentId,
    now: Timestamp,
) -> Result<Finding, ComplianceError> {
    let tracked = incidents_of(sources, agent).await?;
    if tracked.is_empty() {
        return Ok(Finding::new(
            Status::AttestationRequired,
            "no serious incident is recorded for the agent; needs a statement of the reporting \
             procedure",
            Vec::new(),
        ));
    }
    let evidence: Vec<Evidence> = tracked.iter().map(|t| incident_line(t, now)).collect();
    let late_ones = late(&tracked, now);
    if !late_ones.is_empty() {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!(
                "{} of {} incident(s) not reported within the Art 73 deadline: {}",
                late_ones.len(),
                tracked.len(),
                late_ones.join(", ")
            ),
            evidence,
        ));
    }
    let pending = tracked
        .iter()
        .filter(|t| t.incident.status == crate::incidents::IncidentStatus::Open)
        .count();
    if pending > 0 {
        return Ok(Finding::new(
            Status::SupportingEvidence,
            format!(
                "{pending} incident(s) open and not yet due; the others were reported within \
                 their deadline or closed"
            ),
            evidence,
        ));
    }
    Ok(Finding::new(
        Status::Satisfied,
        format!(
            "each of the {} serious incident(s) recorded for the agent was reported within its \
             Art 73 deadline, or closed with a reason",
            tracked.len()
        ),
        evidence,
    ))
}

/// Art 20(1) (provider) and 26(5) (deployer): the agent suspended on risk. Satisfied when
/// incidents are recorded, each met by a kill switch that suspended the agent and none reported
/// late; without incidents, the suspensions alone (`suspension_records`) support it.
pub(super) async fn corrective_action(
    sources: &Sources,
    agent: &AgentId,
    now: Timestamp,
    without_incidents: Finding,
) -> Result<Finding, ComplianceError> {
    let tracked = incidents_of(sources, agent).await?;
    if tracked.is_empty() {
        return Ok(without_incidents);
    }
    let evidence: Vec<Evidence> = tracked.iter().map(|t| incident_line(t, now)).collect();
    let late_ones = late(&tracked, now);
    if !late_ones.is_empty() {
        return Ok(Finding::new(
            Status::EvidenceMissing,
            format!(
                "incident(s) not reported within their deadline: {}",
                late_ones.join(", ")
            ),
            evidence,
        ));
    }
    let unmet: Vec<String> = tracked
        .iter()
        .filter(|t| t.suspensions.is_empty())
        .map(|t| t.incident.id.to_string())
        .collect();
    if !unmet.is_empty() {
        return Ok(Finding::new(
            Status::AttestationRequired,
            format!(
                "no kill switch that suspended the agent is linked to incident(s) {}; a \
                 corrective action other than suspension needs a statement",
                unmet.join(", ")
            ),
            evidence,
        ));
    }
    Ok(Finding::new(
        Status::Satisfied,
        format!(
            "each of the {} serious incident(s) recorded for the agent was met by a kill switch \
             that suspended it, and none is overdue",
            tracked.len()
        ),
        evidence,
    ))
}
