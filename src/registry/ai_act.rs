//! What the EU AI Act checklist needs to know about an agent to say which obligations apply to it
//! and from when: the registrant's role, the Annex the system falls under, what kind of deployer
//! uses it, whether the registrant supplies a general-purpose model, and when it was placed on
//! the market. Every field is optional; the checklist names the one it lacks instead of guessing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_with::{DeserializeFromStr, SerializeDisplay};
use utoipa::ToSchema;

use super::AiActRole;

/// `ai_act` in an agent record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AiActScope {
    /// `provider`, `deployer` or `both` (Art 3(3), 3(4)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AiActRole>,
    /// `annex_i` (a safety component of a product under Annex I, Art 6(1)), `annex_iii:<point>`
    /// (a use listed in Annex III, e.g. `annex_iii:4` or `annex_iii:5(b)`, Art 6(2)), or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "annex_iii:5(b)")]
    pub annex: Option<Annex>,
    /// `public_body` (a body governed by public law or public authority), `public_service` (a
    /// private entity providing public services) or `private` (Art 27(1), 49(3)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployer_kind: Option<DeployerKind>,
    /// Whether the registrant supplies the general-purpose AI model itself (Arts 53-55).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpai_model: Option<bool>,
    /// When the system was placed on the market or put into service, `YYYY-MM-DD` (Art 111).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub placed_on_market: Option<Day>,
}

impl AiActScope {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Where a system sits among the Act's annexes; written as text (`annex_iii:5(b)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, SerializeDisplay, DeserializeFromStr)]
pub enum Annex {
    AnnexI,
    /// A point of Annex III (1 to 8), and its letter where the point has them.
    AnnexIii {
        point: u8,
        letter: Option<char>,
    },
    None,
}

impl Annex {
    /// An Annex III use other than point 2 (critical infrastructure), which Arts 27, 49 and 86
    /// leave out.
    pub fn is_annex_iii_except_point_2(self) -> bool {
        matches!(self, Annex::AnnexIii { point, .. } if point != 2)
    }
}

impl fmt::Display for Annex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Annex::AnnexI => f.write_str("annex_i"),
            Annex::AnnexIii {
                point,
                letter: None,
            } => write!(f, "annex_iii:{point}"),
            Annex::AnnexIii {
                point,
                letter: Some(l),
            } => write!(f, "annex_iii:{point}({l})"),
            Annex::None => f.write_str("none"),
        }
    }
}

impl FromStr for Annex {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}`: use `annex_i`, `annex_iii:<point>` (1 to 8, e.g. `annex_iii:4` or \
                 `annex_iii:5(b)`) or `none`"
            )
        };
        match s {
            "annex_i" => return Ok(Annex::AnnexI),
            "none" => return Ok(Annex::None),
            _ => {}
        }
        let point = s.strip_prefix("annex_iii:").ok_or_else(bad)?;
        let (number, letter) = match point.split_once('(') {
            None => (point, None),
            Some((number, rest)) => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next(), chars.next()) {
                    (Some(l @ 'a'..='h'), Some(')'), None) => (number, Some(l)),
                    _ => return Err(bad()),
                }
            }
        };
        match number.parse::<u8>() {
            Ok(point @ 1..=8) if number.len() == 1 => Ok(Annex::AnnexIii { point, letter }),
            _ => Err(bad()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployerKind {
    PublicBody,
    PublicService,
    Private,
}

impl DeployerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PublicBody => "public_body",
            Self::PublicService => "public_service",
            Self::Private => "private",
        }
    }
}

/// A calendar day, `YYYY-MM-DD`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, SerializeDisplay, DeserializeFromStr,
)]
pub struct Day(pub time::Date);

const DAY: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(DAY).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl FromStr for Day {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        time::Date::parse(s, DAY)
            .map(Day)
            .map_err(|_| format!("`{s}` is not a date as YYYY-MM-DD"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexes_parse_and_print_back() {
        for text in ["annex_i", "annex_iii:4", "annex_iii:5(b)", "none"] {
            assert_eq!(text.parse::<Annex>().unwrap().to_string(), text);
        }
        for bad in [
            "annex_iii:9",
            "annex_iii:",
            "annex_iii:5b",
            "annex_iii:10",
            "annex_ii",
            "annex_iii:5(b",
        ] {
            assert!(bad.parse::<Annex>().is_err(), "{bad}");
        }
        assert!(
            "annex_iii:4"
                .parse::<Annex>()
                .unwrap()
                .is_annex_iii_except_point_2()
        );
        assert!(
            !"annex_iii:2(a)"
                .parse::<Annex>()
                .unwrap()
                .is_annex_iii_except_point_2()
        );
        let scope: AiActScope = serde_json::from_value(serde_json::json!({
            "role": "both", "annex": "annex_iii:5(b)", "deployer_kind": "public_body",
            "placed_on_market": "2026-09-01"}))
        .unwrap();
        assert_eq!(scope.role, Some(AiActRole::ProviderAndDeployer));
        assert!(
            serde_json::from_value::<AiActScope>(serde_json::json!({"annex": "annex_iv"})).is_err()
        );
    }
}
