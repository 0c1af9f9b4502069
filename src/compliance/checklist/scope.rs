//! Which obligations apply to an agent, and from when: the item's tiers and role against the
//! agent's record, the item's condition against the record's `ai_act` scoping, and the date the
//! item applies from (Art 113 as amended). Pure: `today` is an argument, so tests set the clock.

use time::Date;
use time::macros::date;

use super::{AppliesFrom, Condition, Item, ItemRole};
use crate::registry::ai_act::{Annex, DeployerKind};
use crate::registry::{AgentRecord, RiskTier};

/// High-risk rules for Annex III systems (Art 113 as amended by Regulation (EU) 2026/1744).
pub const ANNEX_III_FROM: Date = date!(2027 - 12 - 02);
/// High-risk rules for Annex I systems (idem).
pub const ANNEX_I_FROM: Date = date!(2028 - 08 - 02);

/// Whether and from when an item applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Applies {
        since: Date,
    },
    NotYet {
        from: Date,
    },
    NotApplicable(String),
    /// The agent record lacks the field named, so whether (or when) the item applies is unknown.
    Needs {
        field: &'static str,
        why: String,
    },
}

pub fn scope(item: &Item, record: &AgentRecord, today: Date) -> Scope {
    if !item.tiers.contains(&record.risk_tier) {
        let tiers: Vec<&str> = item.tiers.iter().map(|t| t.as_str()).collect();
        return Scope::NotApplicable(format!(
            "applies to the {} tier{}; the agent is {}",
            tiers.join(", "),
            if tiers.len() == 1 { "" } else { "s" },
            record.risk_tier.as_str()
        ));
    }
    let role = record.ai_act_role();
    match (item.role, role) {
        (ItemRole::Both, _) => {}
        (_, None) => {
            return Scope::Needs {
                field: "ai_act.role",
                why: format!("binds {}s only", item.role.as_str()),
            };
        }
        (ItemRole::Provider, Some(r)) if !r.is_provider() => {
            return Scope::NotApplicable(format!(
                "binds providers; the registrant is a {}",
                r.as_str()
            ));
        }
        (ItemRole::Deployer, Some(r)) if !r.is_deployer() => {
            return Scope::NotApplicable(format!(
                "binds deployers; the registrant is a {}",
                r.as_str()
            ));
        }
        _ => {}
    }
    if let Some(condition) = item.when
        && let Some(out) = condition_scope(condition, record)
    {
        return out;
    }
    let from = match item.applies_from {
        AppliesFrom::Date(day) => day.0,
        AppliesFrom::HighRisk => match record.ai_act.annex {
            Some(Annex::AnnexIii { .. }) => ANNEX_III_FROM,
            Some(Annex::AnnexI) => ANNEX_I_FROM,
            Some(Annex::None) if record.risk_tier == RiskTier::High => {
                return Scope::Needs {
                    field: "ai_act.annex",
                    why: "a high-risk system falls under Annex I or Annex III (Art 6); `none` \
                          contradicts the high tier"
                        .into(),
                };
            }
            Some(Annex::None) => ANNEX_III_FROM,
            None => {
                return Scope::Needs {
                    field: "ai_act.annex",
                    why: "the high-risk rules apply from 2 Dec 2027 to Annex III systems and from \
                          2 Aug 2028 to Annex I ones"
                        .into(),
                };
            }
        },
    };
    if today < from {
        Scope::NotYet { from }
    } else {
        Scope::Applies { since: from }
    }
}

/// `None` when the condition holds; otherwise why the item does not apply, or what is missing.
fn condition_scope(condition: Condition, record: &AgentRecord) -> Option<Scope> {
    let scoping = &record.ai_act;
    let needs_annex = || Scope::Needs {
        field: "ai_act.annex",
        why: format!("applies only {}", condition.describe()),
    };
    let not = |what: String| {
        Some(Scope::NotApplicable(format!(
            "applies only {}; {what}",
            condition.describe()
        )))
    };
    match condition {
        Condition::AnnexIii | Condition::AnnexIiiExceptPoint2 | Condition::ClaimedNotHighRisk => {
            let Some(annex) = scoping.annex else {
                return Some(needs_annex());
            };
            let holds = match condition {
                Condition::AnnexIiiExceptPoint2 => annex.is_annex_iii_except_point_2(),
                _ => matches!(annex, Annex::AnnexIii { .. }),
            };
            (!holds)
                .then(|| not(format!("the system is `{annex}`")))
                .flatten()
        }
        Condition::Fria => {
            let Some(annex) = scoping.annex else {
                return Some(needs_annex());
            };
            if !annex.is_annex_iii_except_point_2() {
                return not(format!("the system is `{annex}`"));
            }
            // Points 5(b) and (c) bind every deployer; other points only public ones.
            if let Annex::AnnexIii {
                point: 5,
                letter: Some('b' | 'c'),
            } = annex
            {
                return None;
            }
            match scoping.deployer_kind {
                None => Some(Scope::Needs {
                    field: "ai_act.deployer_kind",
                    why: format!("applies only {}", condition.describe()),
                }),
                Some(DeployerKind::PublicBody | DeployerKind::PublicService) => None,
                Some(DeployerKind::Private) => {
                    not(format!("the deployer is private and the system `{annex}`"))
                }
            }
        }
        Condition::PublicBodyAnnexIii => {
            let Some(annex) = scoping.annex else {
                return Some(needs_annex());
            };
            if !annex.is_annex_iii_except_point_2() {
                return not(format!("the system is `{annex}`"));
            }
            match scoping.deployer_kind {
                None => Some(Scope::Needs {
                    field: "ai_act.deployer_kind",
                    why: format!("applies only {}", condition.describe()),
                }),
                Some(DeployerKind::PublicBody) => None,
                Some(kind) => not(format!("the deployer is {}", kind.as_str())),
            }
        }
        Condition::GpaiModel => match scoping.gpai_model {
            None => Some(Scope::Needs {
                field: "ai_act.gpai_model",
                why: format!("applies only {}", condition.describe()),
            }),
            Some(true) => None,
            Some(false) => not("the registrant does not supply the model".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::checklist::Catalogue;

    fn record(tier: &str, ai_act: serde_json::Value) -> AgentRecord {
        serde_json::from_value(serde_json::json!({
            "name": "a", "owner": "o", "risk_tier": tier, "ai_act": ai_act,
        }))
        .unwrap()
    }

    fn item(id: &str) -> Item {
        Catalogue::builtin().unwrap().item(id).unwrap().clone()
    }

    #[test]
    fn article_27_follows_annex_and_deployer_kind() {
        let today = date!(2028 - 01 - 10);
        let fria = item("art27-fria");
        let public_5b = record(
            "high",
            serde_json::json!({"role": "deployer", "annex": "annex_iii:5(b)", "deployer_kind": "public_body"}),
        );
        assert_eq!(
            scope(&fria, &public_5b, today),
            Scope::Applies {
                since: ANNEX_III_FROM
            }
        );
        let private_5b = record(
            "high",
            serde_json::json!({"role": "deployer", "annex": "annex_iii:5(c)", "deployer_kind": "private"}),
        );
        assert!(matches!(
            scope(&fria, &private_5b, today),
            Scope::Applies { .. }
        ));
        let private_4 = record(
            "high",
            serde_json::json!({"role": "deployer", "annex": "annex_iii:4", "deployer_kind": "private"}),
        );
        assert!(matches!(
            scope(&fria, &private_4, today),
            Scope::NotApplicable(_)
        ));
        let unknown_kind = record(
            "high",
            serde_json::json!({"role": "deployer", "annex": "annex_iii:4"}),
        );
        assert!(matches!(
            scope(&fria, &unknown_kind, today),
            Scope::Needs {
                field: "ai_act.deployer_kind",
                ..
            }
        ));
        let point_2 = record(
            "high",
            serde_json::json!({"role": "deployer", "annex": "annex_iii:2", "deployer_kind": "public_body"}),
        );
        assert!(matches!(
            scope(&fria, &point_2, today),
            Scope::NotApplicable(_)
        ));
    }

    #[test]
    fn dates_follow_article_113_and_the_annex() {
        let annex_iii = record(
            "high",
            serde_json::json!({"role": "provider", "annex": "annex_iii:4"}),
        );
        let annex_i = record(
            "high",
            serde_json::json!({"role": "provider", "annex": "annex_i"}),
        );
        let art9 = item("art9-risk-management");
        assert_eq!(
            scope(&art9, &annex_iii, date!(2026 - 11 - 30)),
            Scope::NotYet {
                from: ANNEX_III_FROM
            }
        );
        assert_eq!(
            scope(&art9, &annex_iii, date!(2027 - 12 - 02)),
            Scope::Applies {
                since: ANNEX_III_FROM
            }
        );
        assert_eq!(
            scope(&art9, &annex_i, date!(2028 - 01 - 01)),
            Scope::NotYet { from: ANNEX_I_FROM }
        );
        let no_annex = record("high", serde_json::json!({"role": "provider"}));
        assert!(matches!(
            scope(&art9, &no_annex, date!(2030 - 01 - 01)),
            Scope::Needs {
                field: "ai_act.annex",
                ..
            }
        ));
        let art4 = item("art4-ai-literacy");
        let minimal = record("minimal", serde_json::json!({}));
        assert_eq!(
            scope(&art4, &minimal, date!(2025 - 02 - 01)),
            Scope::NotYet {
                from: date!(2025 - 02 - 02)
            }
        );
        assert!(matches!(
            scope(&art4, &minimal, date!(2026 - 11 - 30)),
            Scope::Applies { .. }
        ));
        // A role-specific item with no role stated asks for it instead of guessing.
        let art50 = item("art50-3-4-deployer-transparency");
        let limited = record("limited", serde_json::json!({}));
        assert!(matches!(
            scope(&art50, &limited, date!(2026 - 11 - 30)),
            Scope::Needs {
                field: "ai_act.role",
                ..
            }
        ));
        let provider = record("limited", serde_json::json!({"role": "provider"}));
        assert!(matches!(
            scope(&art50, &provider, date!(2026 - 11 - 30)),
            Scope::NotApplicable(_)
        ));
        // Art 49(2): an Annex III use registered below the high tier (Art 6(3)).
        let claimed = record(
            "limited",
            serde_json::json!({"role": "provider", "annex": "annex_iii:4"}),
        );
        assert!(matches!(
            scope(
                &item("art49-2-not-high-risk-registration"),
                &claimed,
                date!(2026 - 11 - 30)
            ),
            Scope::Applies { .. }
        ));
    }
}
