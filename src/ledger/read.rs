//! Reading the ledger: entries as served, inclusion and consistency proofs (from a running
//! ledger, or from a store with [`ProofBuilder`]), and C2SP tlog-tiles.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

/// An entry as served: its index, leaf hash, the exact hashed bytes and their JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServedEntry {
    pub index: u64,
    pub leaf_hash: String,
    /// The exact bytes the leaf hash covers, standard base64.
    pub entry_bytes: String,
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

impl Ledger {
    /// The size of the tree to serve from, for a request that needs `wanted` entries. On a
    /// shared ledger another replica may have integrated (and signed) more than this replica's
    /// last read shows, so a request beyond it reads the tree's state again.
    async fn size_for(&self, wanted: u64) -> Result<u64, LedgerError> {
        let cached = self.head().size;
        if wanted <= cached {
            return Ok(cached);
        }
        Ok(self.refresh_head().await?.size)
    }

    async fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        let current = self.size_for(size).await?;
        if size > current {
            return Err(LedgerError::OutOfRange(format!(
                "tree size {size} is larger than the ledger ({current} entries)"
            )));
        }
        Ok(())
    }

    /// The hash of each range, from one read of all the nodes they need.
    async fn range_hashes(&self, ranges: &[(u64, u64)]) -> Result<Vec<String>, LedgerError> {
        let per_range: Vec<Vec<merkle::NodeId>> = ranges
            .iter()
            .map(|(lo, hi)| range_nodes(*lo, *hi))
            .collect();
        let all: Vec<merkle::NodeId> = per_range.iter().flatten().copied().collect();
        let mut hashes = self.store.nodes(&all).await?.into_iter();
        per_range
            .iter()
            .map(|ids| {
                let range: Vec<Hash> = hashes.by_ref().take(ids.len()).collect();
                fold(&range)
                    .map(|h| B64.encode(h))
                    .ok_or_else(|| LedgerError::Damaged("an empty proof range".into()))
            })
            .collect()
    }

    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, LedgerError> {
        self.check_size(tree_size).await?;
        let ranges = inclusion_ranges(index, tree_size)?;
        let leaf = self
            .store
            .nodes(&[merkle::NodeId { level: 0, index }])
            .await?;
        Ok(InclusionProof {
            index,
            tree_size,
            leaf_hash: B64.encode(leaf[0]),
            hashes: self.range_hashes(&ranges).await?,
        })
    }

    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        self.check_size(to).await?;
        let ranges = consistency_ranges(from, to)?;
        Ok(ConsistencyProof {
            from,
            to,
            hashes: self.range_hashes(&ranges).await?,
        })
    }

    /// Entries `[start, end)`, at most `limit` of them.
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<ServedEntry>, LedgerError> {
        let end = end.min(self.readable(end).await?);
        let rows = self.store.entries(start, end).await?;
        rows.into_iter()
            .map(|row| {
                let entry = serde_json::from_slice(&row.entry)
                    .map_err(|e| LedgerError::Damaged(format!("entry {}: {e}", row.idx)))?;
                Ok(ServedEntry {
                    index: row.idx as u64,
                    leaf_hash: B64.encode(leaf_hash(&row.entry)),
                    entry_bytes: B64.encode(&row.entry),
                    entry,
                })
            })
            .collect()
    }
}

/// Builds many proofs against one tree size straight from a store (no running ledger needed),
/// remembering every range hash it computes: proofs for neighbouring entries share most of theirs,
/// so an audit pack of N contiguous entries reads about 2N nodes, not N log N.
pub struct ProofBuilder {
    store: Store,
    size: u64,
    cache: std::collections::HashMap<(u64, u64), Hash>,
}

/// Node ids per query: one bound value each, well under SQLite's 32,766.
const NODES_PER_QUERY: usize = 8_000;

impl ProofBuilder {
    pub fn new(store: Store, size: u64) -> Self {
        Self {
            store,
            size,
            cache: Default::default(),
        }
    }

    /// Inclusion proofs for `indices` (RFC 9162 order), against the builder's tree size.
    pub async fn inclusion(&mut self, indices: &[u64]) -> Result<Vec<Vec<Hash>>, LedgerError> {
        let ranges = indices
            .iter()
            .map(|&i| inclusion_ranges(i, self.size))
            .collect::<Result<Vec<_>, _>>()?;
        self.fill(ranges.iter().flatten()).await?;
        Ok(ranges.iter().map(|r| self.hashes(r)).collect())
    }

    /// The consistency proof from `from` to the builder's tree size.
    pub async fn consistency(&mut self, from: u64) -> Result<Vec<Hash>, LedgerError> {
        let ranges = consistency_ranges(from, self.size)?;
        self.fill(ranges.iter()).await?;
        Ok(self.hashes(&ranges))
    }

    fn hashes(&self, ranges: &[(u64, u64)]) -> Vec<Hash> {
        ranges
            .iter()
            .filter_map(|r| self.cache.get(r).copied())
            .collect()
    }

    async fn fill(&mut self, ranges: impl Iterator<Item = &(u64, u64)>) -> Result<(), LedgerError> {
        let mut missing: Vec<(u64, u64)> = ranges
            .filter(|r| !self.cache.contains_key(r))
            .copied()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let mut batch: Vec<((u64, u64), usize)> = Vec::new();
        let mut ids = Vec::new();
        for range in missing {
            let nodes = range_nodes(range.0, range.1);
            if ids.len() + nodes.len() > NODES_PER_QUERY && !ids.is_empty() {
                self.fetch(&mut batch, &mut ids).await?;
            }
            batch.push((range, nodes.len()));
            ids.extend(nodes);
        }
        self.fetch(&mut batch, &mut ids).await
    }

    async fn fetch(
        &mut self,
        batch: &mut Vec<((u64, u64), usize)>,
        ids: &mut Vec<merkle::NodeId>,
    ) -> Result<(), LedgerError> {
        let mut hashes = self.store.nodes(ids).await?.into_iter();
        for (range, n) in batch.drain(..) {
            let part: Vec<Hash> = hashes.by_ref().take(n).collect();
            let hash =
                fold(&part).ok_or_else(|| LedgerError::Damaged("an empty proof range".into()))?;
            self.cache.insert(range, hash);
        }
        ids.clear();
        Ok(())
    }
}

/// C2SP tlog-tiles: tiles are 2^8 hashes wide.
pub const TILE_WIDTH: u64 = 256;

impl Ledger {
    /// The hash tile at tile level `level`, index `index`, with its first `width` hashes: the stored
    /// subtrees of height `8 * level`. None if the tree does not have them yet.
    pub async fn tile(
        &self,
        level: u8,
        index: u64,
        width: u64,
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        let height = u32::from(level) * 8;
        if height >= 64 {
            return Ok(None);
        }
        let (lo, hi) = (
            index.saturating_mul(TILE_WIDTH),
            index.saturating_mul(TILE_WIDTH).saturating_add(width),
        );
        let available = self.size_for(hi.saturating_mul(1 << height)).await? >> height;
        if hi > available {
            return Ok(None);
        }
        let nodes = self.store.nodes_at_level(height as u8, lo, hi).await?;
        if nodes.len() as u64 != width {
            return Err(LedgerError::Damaged(format!(
                "tile {level}/{index} is missing stored hashes"
            )));
        }
        Ok(Some(nodes.into_iter().flat_map(|(_, h)| h).collect()))
    }

    /// The entry bundle `index` with its first `width` entries, each prefixed by its length as a
    /// big-endian u16. None if the ledger does not have them yet.
    pub async fn entry_bundle(
        &self,
        index: u64,
        width: u64,
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        let (lo, hi) = (
            index.saturating_mul(TILE_WIDTH),
            index.saturating_mul(TILE_WIDTH).saturating_add(width),
        );
        if hi > self.size_for(hi).await? {
            return Ok(None);
        }
        let mut bundle = Vec::new();
        for row in self.store.entries(lo, hi).await? {
            let len = u16::try_from(row.entry.len()).map_err(|_| {
                LedgerError::Damaged(format!("entry {} is too long for a bundle", row.idx))
            })?;
            bundle.extend_from_slice(&len.to_be_bytes());
            bundle.extend_from_slice(&row.entry);
        }
        Ok(Some(bundle))
    }
}

/// A parsed C2SP tlog-tiles path below `tile/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    Hashes { level: u8, index: u64, width: u64 },
    Entries { index: u64, width: u64 },
}

impl TilePath {
    /// Parses `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, N in 3-digit groups (`x001/x234/067`).
    pub fn parse(path: &str) -> Option<Self> {
        let (kind, rest) = path.split_once('/')?;
        let (body, width) = match rest.split_once(".p/") {
            Some((body, w)) => (
                body,
                w.parse::<u64>()
                    .ok()
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .filter(|_| !w.starts_with('0'))?,
            ),
            None => (rest, TILE_WIDTH),
        };
        let groups: Vec<&str> = body.split('/').collect();
        let mut index: u64 = 0;
        for (i, group) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                group.strip_prefix('x')?
            } else {
                group
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
        }
        match kind {
            "entries" => Some(Self::Entries { index, width }),
            level => {
                let level: u8 = level.parse().ok().filter(|l: &u8| *l < 8)?;
                (level.to_string() == kind).then_some(Self::Hashes {
                    level,
                    index,
                    width,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TilePath;

    #[test]
    fn tile_paths_follow_c2sp() {
        assert_eq!(
            TilePath::parse("0/000"),
            Some(TilePath::Hashes {
                level: 0,
                index: 0,
                width: 256
            })
        );
        assert_eq!(
            TilePath::parse("1/x001/x234/067.p/8"),
            Some(TilePath::Hashes {
                level: 1,
                index: 1_234_067,
                width: 8
            })
        );
        assert_eq!(
            TilePath::parse("entries/x001/002"),
            Some(TilePath::Entries {
                index: 1002,
                width: 256
            })
        );
        for bad in [
            "0/1",
            "0/0001",
            "0/001.p/256",
            "0/001.p/0",
            "0/001.p/08",
            "01/000",
            "x/000",
            "0/001/002",
            "entries/x1/002",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad}");
        }
    }
}
