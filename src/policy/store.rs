//! Policy stores: independent sets of schema, policies and entities, one per application or
//! tenant, selected by the path prefix `/stores/{store}/...`.
//!
//! The default store is the agent-governance pack, whose entities come from the registry. Any other
//! store is a folder: `schema.cedarschema`, `*.cedar` policies and an optional `entities.json`
//! (Cedar's entity JSON), loaded with `reins serve --store NAME=DIR`. Its entities are fixed at
//! load; a request adds only the resource (and subject) properties it carries.

use std::path::{Path, PathBuf};

use arc_swap::ArcSwap;
use cedar_policy::Entities;

use super::{Diagnostic, PolicyError, PolicyPack};
use crate::ids::StoreName;

/// A folder-backed store.
pub struct PolicyStore {
    pub name: StoreName,
    pub dir: PathBuf,
    /// The active version's pack, swapped on activation.
    pub pack: ArcSwap<PolicyPack>,
    /// A version evaluated beside the active one, without affecting answers.
    pub shadow: arc_swap::ArcSwapOption<crate::policy::shadow::Shadow>,
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
            // serde_json bounds the nesting (128 levels); Cedar's entity parser still recurses
            // per level, so it runs where policies are parsed.
            let schema = pack.schema();
            super::limits::on_parser_stack(|| {
                Entities::from_json_str(&text, Some(schema)).map_err(|e| e.to_string())
            })
            .map_err(|source| PolicyError::Io {
                path: entities_file.clone(),
                source,
            })?
            .map_err(|e| {
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
