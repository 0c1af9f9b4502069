//! Model cards: one agent as deployed, in the Hugging Face model-card layout (YAML front matter,
//! then the Mitchell et al. 2019 sections that apply), plus what only Reins knows: the policies
//! that govern the agent, its declared tools and what the ledger recorded over a period.
//!
//! The Markdown comes from `compliance/model-card.md.j2` (minijinja), compiled into the binary.

use cedar_policy::{EntityUid, PrincipalConstraint};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ComplianceError, Figures, Period, Sources, figures};
use crate::ids::AgentId;
use crate::registry::{Agent, Documentation};

const TEMPLATE: &str = include_str!("../../compliance/model-card.md.j2");

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelCard {
    pub generated_at: crate::timestamp::Timestamp,
    #[schema(value_type = Object)]
    pub agent: Agent,
    /// Documentation fields left empty: shown as missing.
    pub missing: Vec<&'static str>,
    pub tools: Vec<CardTool>,
    pub policies: CardPolicies,
    pub figures: Figures,
    /// The ledger's size when the card was made: its figures cover entries below it.
    pub ledger_size: u64,
    /// The registrant's AI Act role (`ai_act.role`, or `documentation.ai_act_role`).
    pub ai_act_role: Option<String>,
    /// The checklist's items that bind this agent's registrant, and from when.
    pub obligations: Vec<CardObligation>,
}

/// One obligation of the checklist catalogue as it stands for the agent today.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CardObligation {
    pub id: String,
    /// e.g. `Art 14(4)(e)`.
    pub citation: String,
    pub title: String,
    /// `applies`, `not_yet_applicable` or `scoping_needed`.
    pub state: &'static str,
    /// When it applies (or applied) from, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `scoping_needed`: the agent-record field that would tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CardTool {
    pub id: String,
    /// Null when the declared tool is no longer registered.
    pub description: Option<String>,
    pub risk: Option<String>,
    pub category: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CardPolicies {
    /// SHA-256 of the active pack's policy texts: every decision names it.
    pub digest: String,
    pub files: Vec<String>,
    /// Policies whose principal scope can match this agent.
    pub governing: Vec<CardPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CardPolicy {
    pub id: String,
    pub effect: String,
    /// SHA-256 of the policy as Cedar prints it.
    pub text_sha256: String,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The model card of `agent` with figures over `period`.
pub async fn model_card(
    sources: &Sources,
    agent: &AgentId,
    period: &Period,
) -> Result<ModelCard, ComplianceError> {
    let entry = sources.agent(agent)?;
    let record = &entry.agent.record;
    let tools = record
        .tools
        .iter()
        .map(|id| {
            let tool = sources.snapshot.tool(id).map(|t| &t.tool.record);
            CardTool {
                id: id.to_string(),
                description: tool.map(|t| t.description.clone()),
                risk: tool.map(|t| t.risk.as_str().to_owned()),
                category: tool.map(|t| t.category.clone()),
            }
        })
        .collect();
    Ok(ModelCard {
        generated_at: crate::timestamp::Timestamp::now(),
        agent: entry.agent.clone(),
        missing: missing_fields(&entry.agent),
        tools,
        policies: governing_policies(sources, &entry.agent),
        figures: figures(sources, agent, period).await?,
        ledger_size: sources.ledger_size,
        ai_act_role: record.ai_act_role().map(|r| r.as_str().to_owned()),
        obligations: obligations(record)?,
    })
}

/// The catalogue's items that bind the registrant, with their dates (nothing evaluated: the
/// checklist says what the evidence shows).
fn obligations(
    record: &crate::registry::AgentRecord,
) -> Result<Vec<CardObligation>, ComplianceError> {
    use super::checklist::scope::{Scope, scope};
    use crate::registry::ai_act::Day;
    let today = crate::timestamp::Timestamp::now().datetime().date();
    let catalogue = super::checklist::Catalogue::builtin()?;
    Ok(catalogue
        .items
        .iter()
        .filter_map(|item| {
            let (state, from, needs) = match scope(item, record, today) {
                Scope::NotApplicable(_) => return None,
                Scope::Applies { since } => ("applies", Some(Day(since).to_string()), None),
                Scope::NotYet { from } => ("not_yet_applicable", Some(Day(from).to_string()), None),
                Scope::Needs { field, .. } => ("scoping_needed", None, Some(field)),
            };
            Some(CardObligation {
                id: item.id.clone(),
                citation: format!("Art {}{}", item.article, item.paragraph),
                title: item.title.clone(),
                state,
                from,
                needs,
            })
        })
        .collect())
}

/// The documentation fields an auditor would expect that nobody filled in.
fn missing_fields(agent: &Agent) -> Vec<&'static str> {
    let r = &agent.record;
    let Documentation {
        base_model,
        out_of_scope_uses,
        known_limitations,
        evaluation_results,
        data_sources,
        human_oversight,
        contact,
        ai_act_role: _,
    } = &r.documentation;
    [
        ("provider", r.provider.is_none()),
        ("model", r.model.is_none()),
        ("model_version", r.model_version.is_none()),
        ("intended_purpose", r.intended_purpose.is_none()),
        ("documentation.base_model", base_model.is_none()),
        (
            "documentation.out_of_scope_uses",
            out_of_scope_uses.is_empty(),
        ),
        (
            "documentation.known_limitations",
            known_limitations.is_empty(),
        ),
        (
            "documentation.evaluation_results",
            evaluation_results.is_empty(),
        ),
        ("documentation.data_sources", data_sources.is_empty()),
        ("documentation.human_oversight", human_oversight.is_empty()),
        ("documentation.contact", contact.is_none()),
        ("ai_act.role", r.ai_act_role().is_none()),
        ("ai_act.annex", r.ai_act.annex.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect()
}

/// Policies whose principal scope can match the agent: unscoped ones, ones naming it, its type,
/// or its owner group. Conditions are not evaluated: a `when` may still exclude the agent.
fn governing_policies(sources: &Sources, agent: &Agent) -> CardPolicies {
    let types = &sources.types;
    let me = types.uid(&types.agent, agent.id.as_str());
    let owner = types.uid(&types.owner, &agent.record.owner);
    let is_me_or_group = |uid: &EntityUid| *uid == me || *uid == owner;
    let governing = sources
        .pack
        .policy_set()
        .policies()
        .filter(|p| match p.principal_constraint() {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::Eq(uid) | PrincipalConstraint::In(uid) => is_me_or_group(&uid),
            PrincipalConstraint::Is(ty) => ty == types.agent,
            PrincipalConstraint::IsIn(ty, uid) => ty == types.agent && is_me_or_group(&uid),
        })
        .map(|p| CardPolicy {
            id: p.id().to_string(),
            effect: p.effect().to_string(),
            text_sha256: super::sha256(p.to_string().as_bytes()),
            annotations: p
                .annotations()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
        .collect();
    CardPolicies {
        digest: sources.pack.digest().to_string(),
        files: sources.pack.files(),
        governing,
    }
}

/// The card as Markdown with YAML front matter.
pub fn to_markdown(card: &ModelCard) -> Result<String, ComplianceError> {
    render("model card", TEMPLATE, card)
}

/// Renders a compiled-in template; `tojson` output doubles as YAML-safe scalars.
pub(crate) fn render(
    what: &'static str,
    template: &str,
    value: &impl Serialize,
) -> Result<String, ComplianceError> {
    let error = |e: minijinja::Error| ComplianceError::Render {
        what,
        message: e.to_string(),
    };
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(error)?,
    );
    let value = minijinja::Value::from(minijinja::value::Serde(value));
    env.add_template("t", template).map_err(error)?;
    env.get_template("t")
        .and_then(|t| t.render(minijinja::context! { card => value.clone(), list => value }))
        .map_err(error)
}
