//! Typed identifiers for the things Reins names: agents, tools, users, decisions, policy stores.
//!
//! Ids arrive from URLs, tokens and JSON bodies; parsing them once here means the rest of the code
//! never handles an unchecked string, and an id can always be used as a Cedar entity id, a SQL key,
//! a URL segment, a file name and a log key without escaping surprises.
//!
//! The grammar, one for every registered id: 1 to [`MAX_ID_LEN`] ASCII letters, digits and
//! `.` `-` `_` `:` `@`; no leading dot and no `..` anywhere, so no id is a relative path (`.`,
//! `..`, `../x`) or a hidden file name. `/` and `+` are refused: a `/` splits a URL path and a
//! file path, and `+` means a space in a query string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest id we accept. Long enough for URNs and e-mail addresses, short enough to index.
pub const MAX_ID_LEN: usize = 256;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_LEN} characters")]
    TooLong,
    #[error("may contain only ASCII letters, digits and . _ - : @ (found {0:?})")]
    BadChar(char),
    #[error("must not start with a dot")]
    LeadingDot,
    #[error("must not contain `..`")]
    DoubleDot,
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@')))
    {
        return Err(IdError::BadChar(c));
    }
    if s.starts_with('.') {
        return Err(IdError::LeadingDot);
    }
    if s.contains("..") {
        return Err(IdError::DoubleDot);
    }
    Ok(())
}

/// Checks `s` against the id grammar without building an id: for records stored before the
/// grammar was narrowed, which start-up reports instead of serving.
pub fn is_valid_id(s: &str) -> bool {
    check_id(s).is_ok()
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                check_id(s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_id(&s)?;
                Ok(Self(s))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// An AI system registered in Reins; the Cedar principal of its decisions.
    AgentId
);
string_id!(
    /// A tool an agent may invoke; the Cedar resource of `invoke` decisions.
    ToolId
);
string_id!(
    /// The human (or service) an agent acts for, from the token's RFC 8693 `act` delegation.
    UserId
);

/// The policy store served without a prefix.
pub const DEFAULT_STORE: &str = "default";

/// A store's name: lowercase letters, digits, `-` and `_`, so it is always a safe path segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a store name is 1 to 64 of a-z, 0-9, `-` and `_` (got `{0}`)")]
pub struct BadStoreName(String);

impl FromStr for StoreName {
    type Err = BadStoreName;
    fn from_str(s: &str) -> Result<Self, BadStoreName> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadStoreName(s.to_owned()))
        }
    }
}

impl StoreName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_STORE
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ids Reins mints itself: UUIDv7s, so they sort by creation time. Each kind is its own type, so
/// an approval id cannot be passed where a switch id is expected.
macro_rules! minted_id {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    )*};
}

minted_id! {
    /// A decision's id.
    DecisionId,
    /// An approval's id.
    ApprovalId,
    /// A kill switch's id.
    SwitchId,
    /// A policy version's id.
    VersionId,
    /// An attestation's id.
    AttestationId,
    /// A contest's id (an objection to a decision).
    ContestId,
    /// An incident's id.
    IncidentId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_what_would_need_escaping() {
        assert!("refund-bot".parse::<AgentId>().is_ok());
        assert!("urn:agent:alice@example.com".parse::<AgentId>().is_ok());
        assert_eq!("".parse::<AgentId>(), Err(IdError::Empty));
        assert_eq!("a b".parse::<ToolId>(), Err(IdError::BadChar(' ')));
        assert_eq!("a\"b".parse::<ToolId>(), Err(IdError::BadChar('"')));
        assert_eq!(
            "x".repeat(MAX_ID_LEN + 1).parse::<ToolId>(),
            Err(IdError::TooLong)
        );
        assert!("x".repeat(MAX_ID_LEN).parse::<ToolId>().is_ok());
    }

    #[test]
    fn ids_are_never_relative_paths() {
        assert_eq!("..".parse::<ToolId>(), Err(IdError::LeadingDot));
        assert_eq!(".".parse::<ToolId>(), Err(IdError::LeadingDot));
        assert_eq!(".hidden".parse::<ToolId>(), Err(IdError::LeadingDot));
        assert_eq!("../x".parse::<ToolId>(), Err(IdError::BadChar('/')));
        assert_eq!("a..b".parse::<AgentId>(), Err(IdError::DoubleDot));
        assert_eq!("a/b".parse::<AgentId>(), Err(IdError::BadChar('/')));
        assert_eq!("a+b".parse::<UserId>(), Err(IdError::BadChar('+')));
        assert_eq!("a%2fb".parse::<UserId>(), Err(IdError::BadChar('%')));
        for ok in ["payments.refund", "a.b.c", "x-1_2:3@y.z", "A9", "trailing."] {
            assert!(ok.parse::<ToolId>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn decision_ids_sort_by_creation() {
        let a = DecisionId::new();
        let b = DecisionId::new();
        assert!(a.to_string() < b.to_string());
    }
}
