//! An incident's report (`reins incident report ID`): the incident as it stands, its deadline
//! under Art 73 and whether it was met, and its timeline read from the ledger (each step of the
//! incident, the decisions it links and its kill switches' engagements and releases), with every
//! cited entry's inclusion proof against the latest signed checkpoint.

use serde::Serialize;
use utoipa::ToSchema;

use super::proof::{Proofs, prove};
use super::{ComplianceError, Sources};
use crate::events::Event;
use crate::ids::IncidentId;
use crate::incidents::{Incident, IncidentStatus};
use crate::timestamp::Timestamp;

const TEMPLATE: &str = include_str!("../../compliance/incident-report.md.j2");

const INCIDENT_KINDS: [&str; 4] = [
    "incident_opened",
    "incident_updated",
    "incident_reported",
    "incident_closed",
];

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IncidentReport {
    #[schema(value_type = String)]
    pub generated_at: Timestamp,
    pub incident: Incident,
    /// `reported_on_time`, `reported_late`, `open_within_deadline`, `overdue` or
    /// `closed_without_report`.
    pub deadline_status: &'static str,
    pub timeline: Vec<Step>,
    pub proofs: Proofs,
}

/// One ledger entry of the incident's timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Step {
    pub index: u64,
    pub time: String,
    /// The entry's type, e.g. `incident_opened`, `decision`, `killswitch_engaged`.
    pub kind: String,
    /// What the entry says, in a line.
    pub what: String,
}

/// Whether the incident met its deadline, as of `now`.
pub fn deadline_status(incident: &Incident, now: Timestamp) -> &'static str {
    match (incident.status, incident.reported_at) {
        (_, Some(at)) if at <= incident.deadline => "reported_on_time",
        (_, Some(_)) => "reported_late",
        (IncidentStatus::Closed, None) => "closed_without_report",
        (_, None) if now > incident.deadline => "overdue",
        (_, None) => "open_within_deadline",
    }
}

/// The report of incident `id`; `None` when there is none.
pub async fn report(
    sources: &Sources,
    id: &IncidentId,
) -> Result<Option<IncidentReport>, ComplianceError> {
    let incident = crate::incidents::load(&sources.store, id)
        .await
        .map_err(|e| ComplianceError::Damaged(e.to_string()))?;
    let Some(incident) = incident else {
        return Ok(None);
    };
    let id_text = id.to_string();
    let mut timeline = Vec::new();
    let mut kinds: Vec<&str> = INCIDENT_KINDS.to_vec();
    if !incident.killswitches.is_empty() {
        kinds.extend(["killswitch_engaged", "killswitch_released"]);
    }
    for (index, entry) in sources.entries_of(&kinds).await? {
        let what = match &entry.event {
            Event::IncidentOpened(e)
            | Event::IncidentUpdated(e)
            | Event::IncidentReported(e)
            | Event::IncidentClosed(e)
                if e.incident_id == id_text =>
            {
                let mut line = format!(
                    "by {}: {}, severity {}, deadline {}",
                    e.actor, e.status, e.severity, e.deadline
                );
                if let (Some(authority), Some(reference)) = (&e.authority, &e.reference) {
                    line.push_str(&format!("; reported to {authority} as {reference}"));
                }
                if let Some(note) = &e.note {
                    line.push_str(&format!("; {note}"));
                }
                line
            }
            Event::KillswitchEngaged(e) | Event::KillswitchReleased(e)
                if incident.killswitches.contains(&e.switch_id) =>
            {
                format!("switch {} by {}: {}", e.switch_id, e.actor, e.reason)
            }
            _ => continue,
        };
        timeline.push(Step {
            index,
            time: entry.time.clone(),
            kind: entry.event.kind().to_owned(),
            what,
        });
    }
    for decision in &incident.decisions {
        let Ok(decision_id) = decision.parse() else {
            continue;
        };
        let Some(row) = sources.store.decision(&decision_id).await? else {
            continue;
        };
        let record = crate::decision::record_of(&row)?;
        if let Some(ledger) = record.decision.ledger {
            timeline.push(Step {
                index: ledger.index,
                time: record.decision.evaluated_at.to_string(),
                kind: "decision".into(),
                what: format!(
                    "decision {decision}: agent {} {} {} -> {:?}",
                    record.agent_id,
                    record.request.action,
                    record.request.resource.id,
                    record.decision.decision
                )
                .to_lowercase(),
            });
        }
    }
    timeline.sort_by_key(|s| s.index);
    let indices: Vec<u64> = timeline.iter().map(|s| s.index).collect();
    let proofs = prove(sources, &indices).await?;
    let now = Timestamp::now();
    Ok(Some(IncidentReport {
        generated_at: now,
        deadline_status: deadline_status(&incident, now),
        incident,
        timeline,
        proofs,
    }))
}

pub fn markdown(report: &IncidentReport) -> Result<String, ComplianceError> {
    super::card::render("incident report", TEMPLATE, report)
}
