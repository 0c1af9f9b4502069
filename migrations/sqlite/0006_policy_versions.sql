-- Policy versions: every policy set a store ever had or was offered, immutable once written
-- (only `state` changes). Exactly one version per store is `active`; its text is what decides.
CREATE TABLE policy_versions (
    id             TEXT PRIMARY KEY NOT NULL,
    store          TEXT NOT NULL,
    digest         TEXT NOT NULL,
    schema_digest  TEXT NOT NULL,
    files          TEXT NOT NULL,
    author         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    state          TEXT NOT NULL,
    UNIQUE (store, digest)
);

CREATE INDEX policy_versions_by_store ON policy_versions (store, id);
