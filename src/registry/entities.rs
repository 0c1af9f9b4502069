//! The registry's records as Cedar entities: the entity type names Reins's schema uses, and
//! an agent's or a tool's entity (also rebuilt from ledgered records for replay).

use super::*;

/// The Cedar entity type names the registry produces, parsed once.
#[derive(Debug, Clone)]
pub struct EntityTypes {
    pub agent: EntityTypeName,
    pub tool: EntityTypeName,
    pub user: EntityTypeName,
    pub owner: EntityTypeName,
    pub tool_category: EntityTypeName,
}

impl EntityTypes {
    const AGENT: &str = "Agent";
    const TOOL: &str = "Tool";
    const USER: &str = "User";
    const OWNER: &str = "Owner";
    const TOOL_CATEGORY: &str = "ToolCategory";

    pub fn new() -> Result<Self, RegistryError> {
        let parse = |name: &str| {
            EntityTypeName::from_str(name).map_err(|e| RegistryError::Entity {
                id: name.into(),
                message: e.to_string(),
            })
        };
        Ok(Self {
            agent: parse(Self::AGENT)?,
            tool: parse(Self::TOOL)?,
            user: parse(Self::USER)?,
            owner: parse(Self::OWNER)?,
            tool_category: parse(Self::TOOL_CATEGORY)?,
        })
    }

    /// The type named `name`: one of these without parsing (Cedar's parser is a visible cost per
    /// request), or any other type name Cedar accepts.
    pub fn named(&self, name: &str) -> Option<EntityTypeName> {
        match name {
            Self::TOOL => Some(self.tool.clone()),
            Self::AGENT => Some(self.agent.clone()),
            Self::USER => Some(self.user.clone()),
            Self::OWNER => Some(self.owner.clone()),
            Self::TOOL_CATEGORY => Some(self.tool_category.clone()),
            _ => EntityTypeName::from_str(name).ok(),
        }
    }

    pub fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

pub(super) fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

/// An agent's Cedar entity (also used to rebuild past entities for replay).
pub fn agent_entity(types: &EntityTypes, agent: &Agent) -> Result<Entity, RegistryError> {
    let r = &agent.record;
    let opt = |s: &Option<String>| string(s.as_deref().unwrap_or(""));
    let attrs =
        HashMap::from([
            ("name".to_string(), string(&r.name)),
            ("owner".to_string(), string(&r.owner)),
            ("provider".to_string(), opt(&r.provider)),
            ("model".to_string(), opt(&r.model)),
            ("model_version".to_string(), opt(&r.model_version)),
            ("risk_tier".to_string(), string(r.risk_tier.as_str())),
            ("intended_purpose".to_string(), opt(&r.intended_purpose)),
            ("status".to_string(), string(r.status.as_str())),
            (
                "tools".to_string(),
                RestrictedExpression::new_set(r.tools.iter().map(|t| {
                    RestrictedExpression::new_entity_uid(types.uid(&types.tool, t.as_str()))
                })),
            ),
        ]);
    let parents = HashSet::from([types.uid(&types.owner, &r.owner)]);
    Entity::new(types.uid(&types.agent, agent.id.as_str()), attrs, parents).map_err(|e| {
        RegistryError::Entity {
            id: agent.id.to_string(),
            message: e.to_string(),
        }
    })
}

/// A tool's Cedar entity.
pub fn tool_entity(types: &EntityTypes, tool: &Tool) -> Result<Entity, RegistryError> {
    let r = &tool.record;
    let attrs = HashMap::from([
        ("description".to_string(), string(&r.description)),
        ("risk".to_string(), string(r.risk.as_str())),
        ("category".to_string(), string(&r.category)),
        (
            "reversible".to_string(),
            RestrictedExpression::new_bool(r.reversible),
        ),
    ]);
    let parents = HashSet::from([types.uid(&types.tool_category, &r.category)]);
    Entity::new(types.uid(&types.tool, tool.id.as_str()), attrs, parents).map_err(|e| {
        RegistryError::Entity {
            id: tool.id.to_string(),
            message: e.to_string(),
        }
    })
}
