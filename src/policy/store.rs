//! Policy stores: independent sets of schema, policies and entities, one per application or
//! tenant, selected by the path prefix `/stores/{store}/...`.
//!
//! The default store is the agent-governance pack, whose entities come from the registry. Any other
//! store is a folder: `schema.cedarschema`, `*.cedar` policies and an optional `entities.json`
//! (Cedar's entity JSON), loaded with `reins serve --store NAME=DIR`. Its entities are fixed at
//! load; a request adds only the resource (and subject) properties it carries.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use arc_swap::ArcSwap;
use cedar_policy::Entities;

use super::{Diagnostic, PolicyError, PolicyPack};

/// The store served without a prefix.
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

/// A folder-backed store.
pub struct PolicyStore {
    pub name: StoreName,
    pub dir: PathBuf,
    /// The active version's pack, swapped on activation.
    pub pack: ArcSwap<PolicyPack>,
    /// A version evaluated beside the active one, without affecting answers.
    pub shadow: arc_swap::ArcSwapOption<crate::decision::Shadow>,
    pub entities: Entities,
}

/// File names inside a store folder.
pub const STORE_SCHEMA: &str = "schema.cedarschema";
pub const STORE_ENTITIES: &str = "entities.json";

impl PolicyStore {
    /// Loads and validates `dir`: the policies against the schema, the entities against it too.
    pub fn load(name: StoreName, dir: &Path) -> Result<Self, PolicyError> {
        let pack = PolicyPack::load(dir, &dir.join(STORE_SCHEMA))?;
        let entities_file = dir.join(STORE_ENTITIES);
        let entities = if entities_file.exists() {
            let text =
                std::fs::read_to_string(&entities_file).map_err(|source| PolicyError::Io {
                    path: entities_file.clone(),
                    source,
                })?;
            Entities::from_json_str(&text, Some(pack.schema())).map_err(|e| {
                PolicyError::Invalid(vec![Diagnostic {
                    file: entities_file.display().to_string(),
                    line: 1,
                    column: 1,
                    message: e.to_string(),
                }])
            })?
        } else {
            Entities::empty()
        };
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            pack: ArcSwap::from_pointee(pack),
            shadow: Default::default(),
            entities,
        })
    }
}
