//! Agents (AI systems) and tools: what Reins knows about who is asking and what they ask for.
//!
//! Records live in the store; an in-memory [`Snapshot`] of them, with each record already turned
//! into its Cedar entity, is swapped atomically on every change, so the decision path reads the
//! registry without I/O or locks. Writes are serialised so the snapshot and the database agree.

pub mod ai_act;
mod entities;

pub use entities::{EntityTypes, agent_entity, tool_entity};

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::events::{AgentEvent, Entry, Event, ToolEvent};
use crate::ids::{AgentId, ToolId};
use crate::ledger::{LedgerError, Sink};
use crate::store::{RegistryRow, RegistryTable, SideEffect, Store, StoreError};
use crate::timestamp::Timestamp;

/// EU AI Act risk category of an AI system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    /// Art 5 practices: may never run.
    Prohibited,
    /// Annex III systems, with the obligations of Art 9-15 and 26.
    High,
    /// Transparency obligations only (Art 50).
    Limited,
    Minimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolRisk {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    #[default]
    Active,
    Suspended,
}

impl RiskTier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prohibited => "prohibited",
            Self::High => "high",
            Self::Limited => "limited",
            Self::Minimal => "minimal",
        }
    }
}

impl ToolRisk {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// An agent as registered through `PUT /v1/agents/{id}` (a full replacement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRecord {
    pub name: String,
    /// Accountable team or person; becomes the agent's `Owner` parent entity in Cedar.
    pub owner: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub model_version: Option<String>,
    pub risk_tier: RiskTier,
    #[serde(default)]
    pub intended_purpose: Option<String>,
    /// Tools the agent was built and assessed for; each must be registered.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub tools: Vec<ToolId>,
    #[serde(default)]
    pub status: AgentStatus,
    /// What the model card and the EU AI Act checklist report. Every field is optional: a missing
    /// one is shown as missing, never filled in.
    #[serde(default, skip_serializing_if = "Documentation::is_empty")]
    pub documentation: Documentation,
    /// What the EU AI Act checklist scopes obligations by (see `registry::ai_act`).
    #[serde(default, skip_serializing_if = "ai_act::AiActScope::is_empty")]
    pub ai_act: ai_act::AiActScope,
    /// Other agents that may undo this agent's actions: a decision request of theirs may name one
    /// of this agent's allowed decisions in `compensates`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub operators: Vec<AgentId>,
}

impl AgentRecord {
    /// The registrant's role under the AI Act: `ai_act.role`, or the older
    /// `documentation.ai_act_role`.
    pub fn ai_act_role(&self) -> Option<AiActRole> {
        self.ai_act.role.or(self.documentation.ai_act_role)
    }
}

/// Documentation of an AI system (Mitchell et al. 2019 model-card sections, EU AI Act Art 11/13).
///
/// Empty values are not serialised, so registry records and their ledger entries written before
/// these fields existed keep their exact bytes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Documentation {
    /// The model the agent's model is derived from (Hugging Face `base_model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_scope_uses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_limitations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluation_results: Vec<EvaluationResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_sources: Vec<String>,
    /// How humans oversee the agent (Art 14): who reviews what, and how they can stop it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub human_oversight: Vec<String>,
    /// Whom to ask about the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// The registering organisation's role under the AI Act; unset means both roles' duties are
    /// listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_act_role: Option<AiActRole>,
}

impl Documentation {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One reported evaluation of the model (a model card's quantitative analysis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationResult {
    /// What was evaluated, e.g. a benchmark or test-set name.
    pub name: String,
    pub metric: String,
    pub value: f64,
    /// When it was measured (YYYY-MM-DD).
    pub date: String,
}

/// Provider (develops or places on the market) or deployer (uses under its authority), AI Act Art 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AiActRole {
    Provider,
    Deployer,
    #[serde(alias = "both")]
    ProviderAndDeployer,
}

impl AiActRole {
    pub fn is_provider(self) -> bool {
        matches!(self, Self::Provider | Self::ProviderAndDeployer)
    }

    pub fn is_deployer(self) -> bool {
        matches!(self, Self::Deployer | Self::ProviderAndDeployer)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Deployer => "deployer",
            Self::ProviderAndDeployer => "provider_and_deployer",
        }
    }
}

/// A tool as registered through `PUT /v1/tools/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolRecord {
    pub description: String,
    pub risk: ToolRisk,
    /// Becomes the tool's `ToolCategory` parent entity in Cedar.
    pub category: String,
    /// Whether what the tool does can be undone (by a compensating action). Default true;
    /// policies see `resource.reversible` (the default pack holds an irreversible tool's call
    /// for approval).
    #[serde(
        default = "reversible_by_default",
        skip_serializing_if = "is_reversible"
    )]
    pub reversible: bool,
    /// The arguments that are money: a call allowed adds its amount to the spend policies read
    /// in `context.usage.spend` (JSON pointers into `args`, e.g. `{"amount": "/amount",
    /// "currency": "/currency", "minor_units": 2}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metered: Option<crate::usage::Metered>,
}

// Unset and `true` are the same record, and a record written before the field existed keeps its
// bytes in the ledger.
fn reversible_by_default() -> bool {
    true
}

fn is_reversible(reversible: &bool) -> bool {
    *reversible
}

/// Bookkeeping shared by both kinds of registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Meta {
    /// Starts at 1 and grows by one on every change.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Agent {
    #[schema(value_type = String)]
    pub id: AgentId,
    #[serde(flatten)]
    pub record: AgentRecord,
    #[serde(flatten)]
    pub meta: Meta,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Tool {
    #[schema(value_type = String)]
    pub id: ToolId,
    #[serde(flatten)]
    pub record: ToolRecord,
    #[serde(flatten)]
    pub meta: Meta,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot build the Cedar entity of `{id}`: {message}")]
    Entity { id: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub struct AgentEntry {
    pub agent: Agent,
    pub entity: Entity,
}

pub struct ToolEntry {
    pub tool: Tool,
    pub entity: Entity,
}

/// An immutable view of the whole registry.
#[derive(Default, Clone)]
pub struct Snapshot {
    agents: HashMap<AgentId, Arc<AgentEntry>>,
    tools: HashMap<ToolId, Arc<ToolEntry>>,
}

impl Snapshot {
    /// Every record in the store, with its entity; also used by offline tools (audit packs).
    pub async fn load(store: &Store, types: &EntityTypes) -> Result<Self, RegistryError> {
        let mut snapshot = Snapshot::default();
        let tools = store.registry_rows(RegistryTable::Tools).await?;
        let agents = store.registry_rows(RegistryTable::Agents).await?;
        let (tools, agents) = set_aside_legacy_ids(tools, agents);
        for row in tools {
            let tool = tool_from_row(row)?;
            let entity = tool_entity(types, &tool)?;
            snapshot
                .tools
                .insert(tool.id.clone(), Arc::new(ToolEntry { tool, entity }));
        }
        for row in agents {
            let agent = agent_from_row(row)?;
            let entity = agent_entity(types, &agent)?;
            snapshot
                .agents
                .insert(agent.id.clone(), Arc::new(AgentEntry { agent, entity }));
        }
        Ok(snapshot)
    }

    pub fn agent(&self, id: &AgentId) -> Option<&Arc<AgentEntry>> {
        self.agents.get(id)
    }

    pub fn tool(&self, id: &ToolId) -> Option<&Arc<ToolEntry>> {
        self.tools.get(id)
    }

    /// The Cedar entity of every agent and tool, in no particular order.
    pub fn entities(&self) -> impl Iterator<Item = &Entity> {
        let agents = self.agents.values().map(|e| &e.entity);
        agents.chain(self.tools.values().map(|e| &e.entity))
    }
}

pub struct Registry {
    ledger: Arc<dyn Sink>,
    types: EntityTypes,
    snapshot: ArcSwap<Snapshot>,
    writes: tokio::sync::Mutex<()>,
    pairs: quick_cache::sync::Cache<(AgentId, ToolId), PairEntities>,
}

/// Agent-tool pairs whose Cedar entities are kept built (about 1 KiB each). A fleet with more pairs
/// in use still decides correctly: evicted pairs are built again.
const PAIR_CACHE: usize = 8_192;

/// The Cedar entities of one agent invoking one tool, with the registry entries they were built
/// from: valid while the snapshot still holds those very entries.
#[derive(Clone)]
struct PairEntities {
    agent: Arc<AgentEntry>,
    tool: Arc<ToolEntry>,
    entities: Arc<Entities>,
}

impl Registry {
    /// Loads every record from the store and builds the first snapshot.
    pub async fn load(store: &Store, ledger: Arc<dyn Sink>) -> Result<Self, RegistryError> {
        let types = EntityTypes::new()?;
        let snapshot = Snapshot::load(store, &types).await?;
        Ok(Self {
            ledger,
            types,
            snapshot: ArcSwap::from_pointee(snapshot),
            writes: Default::default(),
            pairs: quick_cache::sync::Cache::new(PAIR_CACHE),
        })
    }

    /// Reads every record again and swaps the snapshot: another replica changed the registry.
    pub async fn reload(&self, store: &Store) -> Result<(), RegistryError> {
        let _serialised = self.writes.lock().await;
        let snapshot = Snapshot::load(store, &self.types).await?;
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    /// The Cedar entities for `agent` invoking `tool`: the two entities, with Cedar's transitive
    /// closure computed. Building them cost as much as evaluating the policies, so a pair is built
    /// once and reused until either record changes. Entries are immutable and replaced on every
    /// change, so a cached pair holding the snapshot's very entries (the cache keeps them alive,
    /// so a pointer cannot be reused) holds exactly the entities a fresh build would.
    pub fn tool_entities(
        &self,
        agent: &Arc<AgentEntry>,
        tool: &Arc<ToolEntry>,
    ) -> Result<Arc<Entities>, RegistryError> {
        let key = (agent.agent.id.clone(), tool.tool.id.clone());
        if let Some(pair) = self.pairs.get(&key)
            && Arc::ptr_eq(&pair.agent, agent)
            && Arc::ptr_eq(&pair.tool, tool)
        {
            return Ok(pair.entities);
        }
        let entities = Entities::from_entities([agent.entity.clone(), tool.entity.clone()], None)
            .map_err(|e| RegistryError::Entity {
            id: format!("{} -> {}", agent.agent.id, tool.tool.id),
            message: e.to_string(),
        })?;
        let entities = Arc::new(entities);
        self.pairs.insert(
            key,
            PairEntities {
                agent: agent.clone(),
                tool: tool.clone(),
                entities: entities.clone(),
            },
        );
        Ok(entities)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn types(&self) -> &EntityTypes {
        &self.types
    }

    pub fn agents(&self) -> Vec<Agent> {
        let snapshot = self.snapshot.load();
        let mut agents: Vec<Agent> = snapshot.agents.values().map(|e| e.agent.clone()).collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        agents
    }

    pub fn tools(&self) -> Vec<Tool> {
        let snapshot = self.snapshot.load();
        let mut tools: Vec<Tool> = snapshot.tools.values().map(|e| e.tool.clone()).collect();
        tools.sort_by(|a, b| a.id.cmp(&b.id));
        tools
    }

    /// Registers or replaces an agent on behalf of `actor`. The record and its ledger entry are
    /// committed together. Returns the agent and whether it was new.
    pub async fn put_agent(
        &self,
        actor: &str,
        id: AgentId,
        record: AgentRecord,
        now: Timestamp,
    ) -> Result<(Agent, bool), RegistryError> {
        let _serialised = self.writes.lock().await;
        let current = self.snapshot.load_full();
        validate_agent(&record, &current)?;
        let existing = current.agent(&id).map(|e| &e.agent.meta);
        let meta = next_meta(existing, now);
        let event = AgentEvent {
            actor: actor.to_owned(),
            agent_id: id.to_string(),
            version: meta.version,
            record: record_document(&record)?,
        };
        let event = if existing.is_none() {
            Event::AgentRegistered(event)
        } else {
            Event::AgentChanged(event)
        };
        self.commit(RegistryTable::Agents, id.as_str(), &meta, &record, event)
            .await?;
        let agent = Agent {
            id: id.clone(),
            record,
            meta,
        };
        let entity = agent_entity(&self.types, &agent)?;
        let mut next = (*current).clone();
        let created = next
            .agents
            .insert(
                id,
                Arc::new(AgentEntry {
                    agent: agent.clone(),
                    entity,
                }),
            )
            .is_none();
        self.snapshot.store(Arc::new(next));
        Ok((agent, created))
    }

    /// Registers or replaces a tool on behalf of `actor`. Returns it and whether it was new.
    pub async fn put_tool(
        &self,
        actor: &str,
        id: ToolId,
        record: ToolRecord,
        now: Timestamp,
    ) -> Result<(Tool, bool), RegistryError> {
        let _serialised = self.writes.lock().await;
        let current = self.snapshot.load_full();
        if record.category.trim().is_empty() {
            return Err(invalid("category", "must not be empty"));
        }
        if let Some(problem) = record.metered.as_ref().and_then(|m| m.problem()) {
            return Err(invalid("metered", &problem));
        }
        let existing = current.tool(&id).map(|e| &e.tool.meta);
        let meta = next_meta(existing, now);
        let event = ToolEvent {
            actor: actor.to_owned(),
            tool_id: id.to_string(),
            version: meta.version,
            record: record_document(&record)?,
        };
        let event = if existing.is_none() {
            Event::ToolRegistered(event)
        } else {
            Event::ToolChanged(event)
        };
        self.commit(RegistryTable::Tools, id.as_str(), &meta, &record, event)
            .await?;
        let tool = Tool {
            id: id.clone(),
            record,
            meta,
        };
        let entity = tool_entity(&self.types, &tool)?;
        let mut next = (*current).clone();
        let created = next
            .tools
            .insert(
                id,
                Arc::new(ToolEntry {
                    tool: tool.clone(),
                    entity,
                }),
            )
            .is_none();
        self.snapshot.store(Arc::new(next));
        Ok((tool, created))
    }

    /// Writes a record and its ledger entry in one transaction.
    async fn commit<R: Serialize>(
        &self,
        table: RegistryTable,
        id: &str,
        meta: &Meta,
        record: &R,
        event: Event,
    ) -> Result<(), RegistryError> {
        let json = serde_json::to_string(record).map_err(|e| invalid("record", e.to_string()))?;
        let row = RegistryRow {
            id: id.to_owned(),
            version: meta.version,
            record: json,
            created_at: meta.created_at,
            updated_at: meta.updated_at,
        };
        let entry = Entry {
            time: meta.updated_at.to_string(),
            event,
        };
        let append = entry
            .append(SideEffect::Registry { table, row })
            .map_err(|e| invalid("record", e.to_string()))?;
        self.ledger.append(vec![append]).await?;
        Ok(())
    }
}

fn next_meta(existing: Option<&Meta>, now: Timestamp) -> Meta {
    Meta {
        version: existing.map_or(1, |m| m.version + 1),
        created_at: existing.map_or_else(|| now.to_owned(), |m| m.created_at),
        updated_at: now.to_owned(),
    }
}

fn validate_agent(record: &AgentRecord, snapshot: &Snapshot) -> Result<(), RegistryError> {
    if record.name.trim().is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if record.owner.trim().is_empty() {
        return Err(invalid("owner", "must not be empty"));
    }
    if record.risk_tier == RiskTier::Prohibited && record.status == AgentStatus::Active {
        return Err(invalid(
            "status",
            "a prohibited-tier agent (EU AI Act Art 5) cannot be active; register it as suspended",
        ));
    }
    let mut seen = HashSet::new();
    for (i, tool) in record.tools.iter().enumerate() {
        if !seen.insert(tool) {
            return Err(invalid(
                format!("tools[{i}]"),
                format!("tool `{tool}` is listed twice"),
            ));
        }
        if snapshot.tool(tool).is_none() {
            return Err(invalid(
                format!("tools[{i}]"),
                format!("tool `{tool}` is not registered; PUT /v1/tools/{tool} first"),
            ));
        }
    }
    if let (Some(a), Some(b)) = (record.ai_act.role, record.documentation.ai_act_role)
        && a != b
    {
        return Err(invalid(
            "ai_act.role",
            format!(
                "`{}` contradicts documentation.ai_act_role `{}`; give one",
                a.as_str(),
                b.as_str()
            ),
        ));
    }
    validate_documentation(&record.documentation)
}

fn validate_documentation(doc: &Documentation) -> Result<(), RegistryError> {
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    for (i, result) in doc.evaluation_results.iter().enumerate() {
        let field = |name: &str| format!("documentation.evaluation_results[{i}].{name}");
        if result.name.trim().is_empty() {
            return Err(invalid(field("name"), "must not be empty"));
        }
        if result.metric.trim().is_empty() {
            return Err(invalid(field("metric"), "must not be empty"));
        }
        if !result.value.is_finite() {
            return Err(invalid(field("value"), "must be a finite number"));
        }
        if time::Date::parse(&result.date, date_format).is_err() {
            return Err(invalid(field("date"), "must be a date as YYYY-MM-DD"));
        }
    }
    let lists = [
        ("out_of_scope_uses", &doc.out_of_scope_uses),
        ("known_limitations", &doc.known_limitations),
        ("data_sources", &doc.data_sources),
        ("human_oversight", &doc.human_oversight),
    ];
    for (name, list) in lists {
        if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
            return Err(invalid(
                format!("documentation.{name}[{i}]"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// A record as the JSON document its ledger entry holds.
fn record_document(record: &impl Serialize) -> Result<serde_json::Value, RegistryError> {
    serde_json::to_value(record).map_err(|e| invalid("record", e.to_string()))
}

fn meta_of(row: &RegistryRow) -> Meta {
    Meta {
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Sets aside the records whose ids (or, for an agent, whose declared tools' ids) do not follow
/// today's id grammar ([`crate::ids`]): records written when `/` and `+`, a leading dot or `..`
/// were allowed. They are not served, so a decision for such an agent is `unknown_agent` and one
/// for such a tool `unknown_tool` (fail closed), and start-up names every one of them once, so an
/// operator can re-register them under valid ids.
fn set_aside_legacy_ids(
    tools: Vec<RegistryRow>,
    agents: Vec<RegistryRow>,
) -> (Vec<RegistryRow>, Vec<RegistryRow>) {
    let (tools, bad_tools): (Vec<_>, Vec<_>) = tools
        .into_iter()
        .partition(|r| crate::ids::is_valid_id(&r.id));
    let declares_valid_tools = |row: &RegistryRow| {
        serde_json::from_str::<serde_json::Value>(&row.record)
            .ok()
            .and_then(|v| v.get("tools").cloned())
            .and_then(|t| t.as_array().cloned())
            .is_none_or(|list| {
                list.iter()
                    .all(|t| t.as_str().is_none_or(crate::ids::is_valid_id))
            })
    };
    let (agents, bad_agents): (Vec<_>, Vec<_>) = agents
        .into_iter()
        .partition(|r| crate::ids::is_valid_id(&r.id) && declares_valid_tools(r));
    if !bad_tools.is_empty() || !bad_agents.is_empty() {
        let ids = |rows: &[RegistryRow]| rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        tracing::error!(
            tools = ?ids(&bad_tools),
            agents = ?ids(&bad_agents),
            "registry records whose ids (or declared tools' ids) no longer follow the id grammar \
             (ASCII letters, digits, . - _ : @; no leading dot, no `..`) are not served; \
             register them again under valid ids"
        );
    }
    (tools, agents)
}

fn agent_from_row(row: RegistryRow) -> Result<Agent, RegistryError> {
    let corrupt =
        |m: String| RegistryError::Store(StoreError::Corrupt(format!("agent `{}`: {m}", row.id)));
    let id = row
        .id
        .parse()
        .map_err(|e: crate::ids::IdError| corrupt(e.to_string()))?;
    let record = serde_json::from_str(&row.record).map_err(|e| corrupt(e.to_string()))?;
    Ok(Agent {
        id,
        record,
        meta: meta_of(&row),
    })
}

fn tool_from_row(row: RegistryRow) -> Result<Tool, RegistryError> {
    let corrupt =
        |m: String| RegistryError::Store(StoreError::Corrupt(format!("tool `{}`: {m}", row.id)));
    let id = row
        .id
        .parse()
        .map_err(|e: crate::ids::IdError| corrupt(e.to_string()))?;
    let record = serde_json::from_str(&row.record).map_err(|e| corrupt(e.to_string()))?;
    Ok(Tool {
        id,
        record,
        meta: meta_of(&row),
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use cedar_policy::EntityTypeName;

    /// The shortcut for the registry's own types answers what Cedar's parser answers.
    #[test]
    fn named_types_are_what_cedar_parses() {
        let types = super::EntityTypes::new().unwrap();
        for name in [
            "Tool",
            "Agent",
            "User",
            "Owner",
            "ToolCategory",
            "Reins::Thing",
            "Document",
        ] {
            assert_eq!(
                types.named(name),
                Some(EntityTypeName::from_str(name).unwrap())
            );
        }
        for bad in ["", "tool kind", "1Tool", "Tool::"] {
            assert_eq!(types.named(bad), None, "{bad}");
        }
    }
}
