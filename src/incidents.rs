//! Serious incidents (AI Act Art 3(49)) and their reporting deadlines (Art 73(2)-(4)), each step
//! of an incident's timeline a ledger entry.
//!
//! An incident is opened with a severity, the time someone became aware of it, and links to the
//! agents, decisions and kill switches involved. Reins computes the reporting deadline from the
//! severity and `aware_at`, recomputes it when an update changes either, and records each step
//! (opened, updated, reported to the authority with its reference, closed). An incident not
//! reported or closed by its deadline is overdue; the checklist and a metric say so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events::{Entry, EntryError, Event, IncidentEvent};
use crate::identity::Caller;
use crate::ids::{AgentId, DecisionId, IncidentId, SwitchId};
use crate::ledger::{LedgerError, LedgerRef, Sink};
use crate::registry::Registry;
use crate::store::{IncidentRow, SideEffect, Store, StoreError};
use crate::timestamp::Timestamp;

/// Longest `summary`, `note`, `authority` or `reference` accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Most links of each kind one incident holds.
pub const MAX_LINKS: usize = 1000;
/// How far in the future `aware_at` may be (clock skew between the reporter and Reins).
const AWARE_AT_SKEW: Duration = Duration::from_secs(300);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// What happened, in the terms of Art 3(49) ("serious incident").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Art 3(49)(a): the death of a person.
    Death,
    /// Art 3(49)(a): serious harm to a person's health.
    SeriousHarm,
    /// Art 3(49)(b): a serious and irreversible disruption of critical infrastructure.
    CriticalInfrastructure,
    /// Art 3(49)(c): an infringement of obligations protecting fundamental rights.
    FundamentalRights,
    /// Art 3(49)(d): serious harm to property or the environment.
    PropertyOrEnvironment,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Self::Death,
        Self::SeriousHarm,
        Self::CriticalInfrastructure,
        Self::FundamentalRights,
        Self::PropertyOrEnvironment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Death => "death",
            Self::SeriousHarm => "serious_harm",
            Self::CriticalInfrastructure => "critical_infrastructure",
            Self::FundamentalRights => "fundamental_rights",
            Self::PropertyOrEnvironment => "property_or_environment",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The reporting deadline's rule: the days after awareness, and the paragraph of Art 73 it comes
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeadlineRule {
    pub days: u32,
    pub paragraph: &'static str,
    /// The Act's words.
    pub quote: &'static str,
}

/// Art 73(2)-(4): 2 days for a widespread infringement or a critical-infrastructure disruption,
/// 10 after a death, 15 otherwise, each counted from when the provider (or deployer) became aware.
pub fn deadline_rule(severity: Severity, widespread: bool) -> DeadlineRule {
    if widespread || severity == Severity::CriticalInfrastructure {
        return DeadlineRule {
            days: 2,
            paragraph: "73(3)",
            quote: "In the event of a widespread infringement or a serious incident as defined in \
                    Article 3, point (49)(b), the report referred to in paragraph 1 of this Article \
                    shall be provided immediately, and not later than two days after the provider \
                    or, where applicable, the deployer becomes aware of that incident.",
        };
    }
    if severity == Severity::Death {
        return DeadlineRule {
            days: 10,
            paragraph: "73(4)",
            quote: "In the event of the death of a person, the report shall be provided \
                    immediately after the provider or the deployer has established, or as soon as \
                    it suspects, a causal relationship between the high-risk AI system and the \
                    serious incident, but not later than 10 days after the date on which the \
                    provider or, where applicable, the deployer becomes aware of the serious \
                    incident.",
        };
    }
    DeadlineRule {
        days: 15,
        paragraph: "73(2)",
        quote: "The report referred to in paragraph 1 shall be made immediately after the provider \
                has established a causal link between the AI system and the serious incident or \
                the reasonable likelihood of such a link, and, in any event, not later than 15 \
                days after the provider or, where applicable, the deployer, becomes aware of the \
                serious incident.",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    /// Reported to the authority (`reported_at`, `authority`, `reference`).
    Reported,
    Closed,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Reported => "reported",
            Self::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Reported, Self::Closed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// `POST /v1/incidents`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenIncident {
    pub severity: Severity,
    /// Art 73(3): a widespread infringement (2-day deadline whatever the severity).
    #[serde(default)]
    pub widespread: bool,
    pub summary: String,
    /// The agents involved (registered ids; may be empty when none is known yet).
    #[schema(value_type = Vec<String>)]
    pub agents: Vec<AgentId>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub decisions: Vec<DecisionId>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub killswitches: Vec<SwitchId>,
    /// When the provider or deployer became aware of the incident (RFC 3339): the deadline runs
    /// from here.
    #[schema(value_type = String)]
    pub aware_at: Timestamp,
}

/// `POST /v1/incidents/{id}/updates`: what the timeline adds. Links are added to those held.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIncident {
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub widespread: Option<bool>,
    #[serde(default)]
    pub summary: Option<String>,
    /// A correction of when awareness began.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub aware_at: Option<Timestamp>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub agents: Vec<AgentId>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub decisions: Vec<DecisionId>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub killswitches: Vec<SwitchId>,
    /// What this step adds, in words.
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /v1/incidents/{id}/report`: the report made to the market surveillance authority.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportIncident {
    /// Which authority was told.
    pub authority: String,
    /// The authority's reference for the report.
    pub reference: String,
    /// When it was reported (default: now).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub reported_at: Option<Timestamp>,
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /v1/incidents/{id}/close`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseIncident {
    /// Why it is closed (required): the corrective action taken, or why it was not a serious
    /// incident after all.
    pub note: String,
}

/// An incident as it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Incident {
    pub id: IncidentId,
    /// Steps taken so far (the stored row's version).
    #[serde(skip)]
    pub version: i64,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub widespread: bool,
    pub summary: String,
    #[schema(value_type = String)]
    pub aware_at: Timestamp,
    /// When the report to the authority is due.
    #[schema(value_type = String)]
    pub deadline: Timestamp,
    pub deadline_rule: DeadlineRule,
    /// Not reported (nor closed) and past its deadline, or reported after it.
    pub overdue: bool,
    pub agents: Vec<String>,
    pub decisions: Vec<String>,
    pub killswitches: Vec<String>,
    pub opened_by: String,
    #[schema(value_type = String)]
    pub opened_at: Timestamp,
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    /// The ledger entry of the step just taken (in the answer to that step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerRef>,
}

impl Incident {
    /// Whether the report was (or, still open, would now be) later than the deadline.
    pub fn late_at(&self, now: Timestamp) -> bool {
        match (self.status, self.reported_at) {
            (_, Some(reported)) => reported > self.deadline,
            (IncidentStatus::Closed, None) => false,
            (_, None) => now > self.deadline,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("no incident {0}")]
    NotFound(IncidentId),
    #[error("incident {id} is {status}: {what}")]
    Conflict {
        id: IncidentId,
        status: &'static str,
        what: &'static str,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Entry(#[from] EntryError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> IncidentError {
    IncidentError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub struct Incidents {
    store: Store,
    ledger: Arc<dyn Sink>,
    registry: Arc<Registry>,
    writes: tokio::sync::Mutex<()>,
    /// Overdue incidents at the last count (`count_overdue`), for the metric.
    overdue: Arc<AtomicU64>,
}

impl Incidents {
    pub fn new(store: Store, ledger: Arc<dyn Sink>, registry: Arc<Registry>) -> Self {
        Self {
            store,
            ledger,
            registry,
            writes: Default::default(),
            overdue: Default::default(),
        }
    }

    /// The overdue count the metric reads, refreshed by [`Incidents::count_overdue`].
    pub fn overdue_gauge(&self) -> Arc<AtomicU64> {
        self.overdue.clone()
    }

    /// Counts the open incidents past their deadline every `every`, for the metric (read from
    /// the database, so every replica agrees).
    pub fn spawn_overdue_counter(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let overdue = self.overdue.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match count_overdue(&store).await {
                    Ok(n) => overdue.store(n, Ordering::Relaxed),
                    Err(error) => tracing::warn!(%error, "cannot count overdue incidents"),
                }
            }
        })
    }

    /// Opens an incident for `caller` (already authorized).
    pub async fn open(
        &self,
        caller: &str,
        request: OpenIncident,
    ) -> Result<Incident, IncidentError> {
        let summary = text("summary", request.summary)?;
        if request.aware_at > Timestamp::now().plus(AWARE_AT_SKEW) {
            return Err(invalid("aware_at", "is in the future"));
        }
        let mut links = Links::default();
        self.add_links(
            &mut links,
            &request.agents,
            &request.decisions,
            &request.killswitches,
        )
        .await?;
        let now = Timestamp::now();
        let rule = deadline_rule(request.severity, request.widespread);
        let row = IncidentRow {
            id: IncidentId::new().to_string(),
            version: 1,
            severity: request.severity.as_str().into(),
            widespread: request.widespread,
            summary,
            aware_at: request.aware_at,
            deadline: request.aware_at.plus(DAY * rule.days),
            status: IncidentStatus::Open.as_str().into(),
            agents: json_list(&links.agents),
            decisions: json_list(&links.decisions),
            killswitches: json_list(&links.killswitches),
            opened_by: caller.to_owned(),
            opened_at: now,
            reported_at: None,
            authority: None,
            reference: None,
            closed_at: None,
        };
        let _serialised = self.writes.lock().await;
        self.record(row, caller, None, now, Event::IncidentOpened)
            .await
    }

    /// Adds to an open or reported incident's timeline: links, a corrected severity or
    /// awareness time (the deadline follows), a note.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &IncidentId,
        request: UpdateIncident,
    ) -> Result<Incident, IncidentError> {
        let note = request.note.map(|n| text("note", n)).transpose()?;
        let summary = request.summary.map(|s| text("summary", s)).transpose()?;
        if let Some(aware_at) = request.aware_at
            && aware_at > Timestamp::now().plus(AWARE_AT_SKEW)
        {
            return Err(invalid("aware_at", "is in the future"));
        }
        let _serialised = self.writes.lock().await;
        let current = self.current(id).await?;
        if current.status == IncidentStatus::Closed {
            return Err(IncidentError::Conflict {
                id: *id,
                status: "closed",
                what: "a closed incident takes no more steps",
            });
        }
        let mut links = Links {
            agents: current.agents.clone(),
            decisions: current.decisions.clone(),
            killswitches: current.killswitches.clone(),
        };
        self.add_links(
            &mut links,
            &request.agents,
            &request.decisions,
            &request.killswitches,
        )
        .await?;
        let severity = request.severity.unwrap_or(current.severity);
        let widespread = request.widespread.unwrap_or(current.widespread);
        let aware_at = request.aware_at.unwrap_or(current.aware_at);
        let rule = deadline_rule(severity, widespread);
        let row = IncidentRow {
            severity: severity.as_str().into(),
            widespread,
            summary: summary.unwrap_or(current.summary.clone()),
            aware_at,
            deadline: aware_at.plus(DAY * rule.days),
            agents: json_list(&links.agents),
            decisions: json_list(&links.decisions),
            killswitches: json_list(&links.killswitches),
            ..row_of(&current)
        };
        self.record(
            row,
            caller.agent.as_str(),
            note,
            Timestamp::now(),
            Event::IncidentUpdated,
        )
        .await
    }

    /// Records the report to the authority. Once: a later report is an update's note.
    pub async fn report(
        &self,
        caller: &Caller,
        id: &IncidentId,
        request: ReportIncident,
    ) -> Result<Incident, IncidentError> {
        let authority = text("authority", request.authority)?;
        let reference = text("reference", request.reference)?;
        let note = request.note.map(|n| text("note", n)).transpose()?;
        let now = Timestamp::now();
        let reported_at = request.reported_at.unwrap_or(now);
        if reported_at > now.plus(AWARE_AT_SKEW) {
            return Err(invalid("reported_at", "is in the future"));
        }
        let _serialised = self.writes.lock().await;
        let current = self.current(id).await?;
        if current.status != IncidentStatus::Open {
            return Err(IncidentError::Conflict {
                id: *id,
                status: current.status.as_str(),
                what: "only an open incident is reported",
            });
        }
        if reported_at < current.aware_at {
            return Err(invalid("reported_at", "is before aware_at"));
        }
        let row = IncidentRow {
            status: IncidentStatus::Reported.as_str().into(),
            reported_at: Some(reported_at),
            authority: Some(authority),
            reference: Some(reference),
            ..row_of(&current)
        };
        self.record(
            row,
            caller.agent.as_str(),
            note,
            now,
            Event::IncidentReported,
        )
        .await
    }

    /// Closes an incident, saying why.
    pub async fn close(
        &self,
        caller: &Caller,
        id: &IncidentId,
        request: CloseIncident,
    ) -> Result<Incident, IncidentError> {
        let note = text("note", request.note)?;
        let _serialised = self.writes.lock().await;
        let current = self.current(id).await?;
        if current.status == IncidentStatus::Closed {
            return Err(IncidentError::Conflict {
                id: *id,
                status: "closed",
                what: "it is closed already",
            });
        }
        let now = Timestamp::now();
        let row = IncidentRow {
            status: IncidentStatus::Closed.as_str().into(),
            closed_at: Some(now),
            ..row_of(&current)
        };
        self.record(
            row,
            caller.agent.as_str(),
            Some(note),
            now,
            Event::IncidentClosed,
        )
        .await
    }

    pub async fn get(&self, id: &IncidentId) -> Result<Option<Incident>, IncidentError> {
        load(&self.store, id).await
    }

    /// Every incident, newest first.
    pub async fn list(&self) -> Result<Vec<Incident>, IncidentError> {
        load_all(&self.store).await
    }

    async fn current(&self, id: &IncidentId) -> Result<Incident, IncidentError> {
        self.get(id).await?.ok_or(IncidentError::NotFound(*id))
    }

    async fn add_links(
        &self,
        links: &mut Links,
        agents: &[AgentId],
        decisions: &[DecisionId],
        killswitches: &[SwitchId],
    ) -> Result<(), IncidentError> {
        let snapshot = self.registry.snapshot();
        for (i, agent) in agents.iter().enumerate() {
            if snapshot.agent(agent).is_none() {
                return Err(invalid(
                    format!("agents[{i}]"),
                    format!("agent `{agent}` is not registered"),
                ));
            }
            push_new(&mut links.agents, agent.to_string());
        }
        for (i, decision) in decisions.iter().enumerate() {
            if self.store.decision(decision).await?.is_none() {
                return Err(invalid(
                    format!("decisions[{i}]"),
                    format!("no decision {decision}"),
                ));
            }
            push_new(&mut links.decisions, decision.to_string());
        }
        for (i, switch) in killswitches.iter().enumerate() {
            if self.store.killswitch(&switch.to_string()).await?.is_none() {
                return Err(invalid(
                    format!("killswitches[{i}]"),
                    format!("no kill switch {switch}"),
                ));
            }
            push_new(&mut links.killswitches, switch.to_string());
        }
        for (field, held) in [
            ("agents", &links.agents),
            ("decisions", &links.decisions),
            ("killswitches", &links.killswitches),
        ] {
            if held.len() > MAX_LINKS {
                return Err(invalid(field, format!("at most {MAX_LINKS} per incident")));
            }
        }
        Ok(())
    }

    async fn record(
        &self,
        row: IncidentRow,
        actor: &str,
        note: Option<String>,
        at: Timestamp,
        kind: fn(IncidentEvent) -> Event,
    ) -> Result<Incident, IncidentError> {
        let event = IncidentEvent {
            incident_id: row.id.clone(),
            actor: actor.to_owned(),
            severity: row.severity.clone(),
            widespread: row.widespread,
            summary: row.summary.clone(),
            aware_at: row.aware_at.to_string(),
            deadline: row.deadline.to_string(),
            status: row.status.clone(),
            agents: list_of(&row.agents)?,
            decisions: list_of(&row.decisions)?,
            killswitches: list_of(&row.killswitches)?,
            reported_at: row.reported_at.map(|t| t.to_string()),
            authority: row.authority.clone(),
            reference: row.reference.clone(),
            note,
        };
        let entry = Entry {
            time: at.to_string(),
            event: kind(event),
        };
        let append = entry.append(SideEffect::Incident(row.clone()))?;
        let ledger = match self.ledger.append(vec![append]).await {
            Ok(mut refs) => refs.pop(),
            Err(LedgerError::Conflict(_)) => {
                return Err(IncidentError::Conflict {
                    id: row.id.parse().map_err(|e| corrupt(&row.id, e))?,
                    status: "changing",
                    what: "another replica recorded a step first; read it and try again",
                });
            }
            Err(e) => return Err(IncidentError::Ledger(e)),
        };
        Ok(Incident {
            ledger,
            ..incident_of(row)?
        })
    }
}

/// An incident as stored (also for readers without the running services, such as the CLI).
pub async fn load(store: &Store, id: &IncidentId) -> Result<Option<Incident>, IncidentError> {
    store
        .incident(&id.to_string())
        .await?
        .map(incident_of)
        .transpose()
}

/// Every incident as stored, newest first.
pub async fn load_all(store: &Store) -> Result<Vec<Incident>, IncidentError> {
    store
        .incidents()
        .await?
        .into_iter()
        .map(incident_of)
        .collect()
}

async fn count_overdue(store: &Store) -> Result<u64, IncidentError> {
    let now = Timestamp::now();
    Ok(load_all(store)
        .await?
        .iter()
        .filter(|i| i.status == IncidentStatus::Open && i.late_at(now))
        .count() as u64)
}

#[derive(Default)]
struct Links {
    agents: Vec<String>,
    decisions: Vec<String>,
    killswitches: Vec<String>,
}

fn push_new(list: &mut Vec<String>, id: String) {
    if !list.contains(&id) {
        list.push(id);
    }
}

fn json_list(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

fn list_of(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("incident links: {e}")))
}

fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("incident {id}: {e}"))
}

fn text(field: &str, value: String) -> Result<String, IncidentError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid(field, format!("at most {MAX_TEXT_BYTES} bytes")));
    }
    Ok(value)
}

/// The row of an incident as it stands, for the next step to change, one version on.
fn row_of(i: &Incident) -> IncidentRow {
    IncidentRow {
        id: i.id.to_string(),
        version: i.version + 1,
        severity: i.severity.as_str().into(),
        widespread: i.widespread,
        summary: i.summary.clone(),
        aware_at: i.aware_at,
        deadline: i.deadline,
        status: i.status.as_str().into(),
        agents: json_list(&i.agents),
        decisions: json_list(&i.decisions),
        killswitches: json_list(&i.killswitches),
        opened_by: i.opened_by.clone(),
        opened_at: i.opened_at,
        reported_at: i.reported_at,
        authority: i.authority.clone(),
        reference: i.reference.clone(),
        closed_at: i.closed_at,
    }
}

fn incident_of(row: IncidentRow) -> Result<Incident, IncidentError> {
    let severity = Severity::parse(&row.severity)
        .ok_or_else(|| corrupt(&row.id, format!("severity `{}`", row.severity)))?;
    let status = IncidentStatus::parse(&row.status)
        .ok_or_else(|| corrupt(&row.id, format!("status `{}`", row.status)))?;
    let mut incident = Incident {
        id: row.id.parse().map_err(|e| corrupt(&row.id, e))?,
        version: row.version,
        status,
        severity,
        widespread: row.widespread,
        summary: row.summary,
        aware_at: row.aware_at,
        deadline: row.deadline,
        deadline_rule: deadline_rule(severity, row.widespread),
        overdue: false,
        agents: list_of(&row.agents)?,
        decisions: list_of(&row.decisions)?,
        killswitches: list_of(&row.killswitches)?,
        opened_by: row.opened_by,
        opened_at: row.opened_at,
        reported_at: row.reported_at,
        authority: row.authority,
        reference: row.reference,
        closed_at: row.closed_at,
        ledger: None,
    };
    incident.overdue = incident.late_at(Timestamp::now());
    Ok(incident)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_severity_has_the_deadline_of_its_paragraph() {
        let days = |s, w| deadline_rule(s, w).days;
        assert_eq!(days(Severity::Death, false), 10);
        assert_eq!(days(Severity::SeriousHarm, false), 15);
        assert_eq!(days(Severity::CriticalInfrastructure, false), 2);
        assert_eq!(days(Severity::FundamentalRights, false), 15);
        assert_eq!(days(Severity::PropertyOrEnvironment, false), 15);
        let names: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, crate::config::INCIDENT_SEVERITIES);
        // A widespread infringement is 2 days whatever the harm, a death included.
        for s in Severity::ALL {
            assert_eq!(deadline_rule(s, true).paragraph, "73(3)");
        }
    }
}
