//! The control plane governs itself: who may upload, activate, retire or shadow policies, engage
//! or release the kill switch, decide approvals, attest or export audit packs, and write the
//! registry is decided by a Cedar policy set of its own (`policies/control/`), over the roles in the
//! caller's token, instead of hard-coded role checks. Each permitted action is a ledger entry (by
//! the module that performs it).
//!
//! Without a `control` folder next to the policy pack, the set compiled into this build (the
//! repository's `policies/control/`) is used.

use std::path::Path;

use cedar_policy::{Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request};

use super::{PolicyDigest, PolicyError, PolicyPack};
use crate::identity::Caller;

const BUILTIN_SCHEMA: &str = include_str!("../../policies/control/schema.cedarschema");
const BUILTIN_POLICIES: &str = include_str!("../../policies/control/control.cedar");

/// An action on the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAction {
    PolicyUpload,
    PolicyActivate,
    PolicyRetire,
    PolicyShadow,
    KillswitchEngage,
    KillswitchRelease,
    ApprovalDecide,
    AttestationRecord,
    AuditExport,
    RegistryWrite,
    DecisionExplain,
    DecisionContest,
    ContestResolve,
    IncidentRead,
    IncidentRecord,
}

impl ControlAction {
    pub fn id(self) -> &'static str {
        match self {
            Self::PolicyUpload => "policy.upload",
            Self::PolicyActivate => "policy.activate",
            Self::PolicyRetire => "policy.retire",
            Self::PolicyShadow => "policy.shadow",
            Self::KillswitchEngage => "killswitch.engage",
            Self::KillswitchRelease => "killswitch.release",
            Self::ApprovalDecide => "approval.decide",
            Self::AttestationRecord => "attestation.record",
            Self::AuditExport => "audit.export",
            Self::RegistryWrite => "registry.write",
            Self::DecisionExplain => "decision.explain",
            Self::DecisionContest => "decision.contest",
            Self::ContestResolve => "contest.resolve",
            Self::IncidentRead => "incident.read",
            Self::IncidentRecord => "incident.record",
        }
    }
}

/// The control policy refused (403).
#[derive(Debug, thiserror::Error)]
#[error("the control policy does not permit `{action}` for `{caller}` (roles: {roles})")]
pub struct ControlDenied {
    pub action: &'static str,
    pub caller: String,
    pub roles: String,
}

pub struct ControlPolicy {
    pack: PolicyPack,
    types: [EntityTypeName; 4],
}

impl ControlPolicy {
    /// Loads `dir` (a `schema.cedarschema` and `*.cedar` files) if it exists, else the built-in set.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let pack = if dir.is_dir() {
            PolicyPack::load(dir, &dir.join("schema.cedarschema"))?
        } else {
            PolicyPack::from_sources(
                "policies/control/schema.cedarschema",
                BUILTIN_SCHEMA,
                vec![("control.cedar".into(), BUILTIN_POLICIES.into())],
            )?
        };
        let parse = |name: &str| {
            name.parse::<EntityTypeName>().map_err(|e| {
                PolicyError::Invalid(vec![super::Diagnostic {
                    file: dir.display().to_string(),
                    line: 1,
                    column: 1,
                    message: e.to_string(),
                }])
            })
        };
        Ok(Self {
            types: [
                parse("Caller")?,
                parse("Role")?,
                parse("ControlPlane")?,
                parse("Action")?,
            ],
            pack,
        })
    }

    pub fn pack(&self) -> &PolicyPack {
        &self.pack
    }

    pub fn digest(&self) -> &PolicyDigest {
        self.pack.digest()
    }

    /// Whether the control policy permits `caller` to perform `action`. Anything but a clean
    /// permit (an error, no matching permit) is a refusal.
    pub fn authorize(&self, caller: &Caller, action: ControlAction) -> Result<(), ControlDenied> {
        let [caller_type, role_type, plane_type, action_type] = &self.types;
        let uid = |ty: &EntityTypeName, id: &str| {
            EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
        };
        let principal = uid(caller_type, caller.agent.as_str());
        let roles = caller.roles.iter().map(|r| uid(role_type, r)).collect();
        let denied = || ControlDenied {
            action: action.id(),
            caller: caller.agent.to_string(),
            roles: if caller.roles.is_empty() {
                "none".into()
            } else {
                caller.roles.iter().cloned().collect::<Vec<_>>().join(", ")
            },
        };
        let entity = Entity::new_no_attrs(principal.clone(), roles);
        let entities = Entities::from_entities([entity], None).map_err(|_| denied())?;
        let request = Request::new(
            principal,
            uid(action_type, action.id()),
            uid(plane_type, "reins"),
            Context::empty(),
            None,
        )
        .map_err(|_| denied())?;
        let response = self.pack.is_authorized(&request, &entities);
        let clean = response.diagnostics().errors().next().is_none();
        if clean && response.decision() == cedar_policy::Decision::Allow {
            Ok(())
        } else {
            Err(denied())
        }
    }
}
