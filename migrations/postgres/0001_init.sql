-- The whole schema for PostgreSQL, as the SQLite migrations leave it, plus what replicas need to
-- share one ledger: the sequence counter (ledger_seq), the integrated tree's state (ledger_tree),
-- the leaf hash beside each entry, and triggers that keep the ledger append-only.
-- Times are text in Timestamp's fixed width (text order is time order), as on SQLite.

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE tools (
    id          TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Entries are sequenced (idx from ledger_seq) before they are integrated into the tree: leaf is
-- the RFC 6962 leaf hash of entry, known before the index is.
CREATE TABLE ledger_entries (
    idx    BIGINT PRIMARY KEY,
    kind   TEXT NOT NULL,
    entry  BYTEA NOT NULL,
    leaf   BYTEA NOT NULL
);
CREATE INDEX ledger_entries_by_kind ON ledger_entries (kind, idx) WHERE kind <> 'decision';

-- The one counter row every sequencing transaction advances, last. next: the first index not yet
-- given out (committed indices are exactly [0, next)). control_version: how many entries that
-- change what decisions see (kill switches, registry, approvals decided, policy activations) are
-- sequenced; a batch of decisions is sequenced only under the version it was evaluated with.
CREATE TABLE ledger_seq (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    next             BIGINT NOT NULL,
    control_version  BIGINT NOT NULL
);
INSERT INTO ledger_seq (id, next, control_version) VALUES (1, 0, 0);

-- The tree integrated so far: its size and root. Only the integrator moves it, under a row lock
-- and only from the size it read.
CREATE TABLE ledger_tree (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    size  BIGINT NOT NULL,
    root  BYTEA NOT NULL
);
-- The empty tree's root: SHA-256 of the empty string.
INSERT INTO ledger_tree (id, size, root)
VALUES (1, 0, decode('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'hex'));

CREATE TABLE ledger_nodes (
    pos    BIGINT PRIMARY KEY,
    level  INTEGER NOT NULL,
    idx    BIGINT NOT NULL,
    hash   BYTEA NOT NULL
);

CREATE TABLE ledger_checkpoints (
    tree_size   BIGINT PRIMARY KEY,
    root_hash   BYTEA NOT NULL,
    note        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE ledger_salts (
    decision_id  TEXT NOT NULL,
    pointer      TEXT NOT NULL,
    salt         BYTEA NOT NULL,
    PRIMARY KEY (decision_id, pointer)
);

CREATE TABLE ledger_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);

CREATE TABLE decisions (
    id               TEXT PRIMARY KEY,
    agent_id         TEXT NOT NULL,
    on_behalf_of     TEXT,
    action           TEXT NOT NULL,
    resource_type    TEXT NOT NULL,
    resource_id      TEXT NOT NULL,
    decision         TEXT NOT NULL,
    policy_digest    TEXT,
    evaluated_at     TEXT NOT NULL,
    ledger_index     BIGINT,
    leaf_hash        BYTEA,
    extra            TEXT,
    request          TEXT,
    response         TEXT,
    idempotency_key  TEXT,
    request_digest   TEXT
);
CREATE INDEX decisions_by_agent ON decisions (agent_id, id);
CREATE INDEX decisions_by_idempotency_key ON decisions (agent_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE killswitches (
    id              TEXT PRIMARY KEY,
    scope_agent     TEXT,
    scope_tool      TEXT,
    scope_action    TEXT,
    reason          TEXT NOT NULL,
    drill           BOOLEAN NOT NULL,
    engaged_by      TEXT NOT NULL,
    engaged_at      TEXT NOT NULL,
    released_by     TEXT,
    released_at     TEXT,
    release_reason  TEXT
);

CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    status           TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    action           TEXT NOT NULL,
    resource_type    TEXT NOT NULL,
    resource_id      TEXT NOT NULL,
    context_digest   TEXT NOT NULL,
    approver_group   TEXT NOT NULL,
    policy_ids       TEXT NOT NULL,
    evaluation_id    TEXT NOT NULL,
    requested_at     TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    decided_by       TEXT,
    decided_at       TEXT,
    comment          TEXT,
    used_at          TEXT,
    used_decision_id TEXT,
    on_behalf_of     TEXT
);
CREATE INDEX approvals_by_status ON approvals (status, id);

CREATE TABLE policy_texts (
    digest      TEXT PRIMARY KEY,
    files       TEXT NOT NULL,
    schema_text TEXT NOT NULL,
    first_seen  TEXT NOT NULL
);

CREATE TABLE policy_versions (
    id             TEXT PRIMARY KEY,
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

-- Append-only: what the ledger holds is never changed or removed through SQL.
CREATE FUNCTION reins_ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reins: % is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END;
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION reins_ledger_is_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION reins_ledger_is_append_only();
CREATE TRIGGER ledger_nodes_append_only BEFORE UPDATE OR DELETE ON ledger_nodes
    FOR EACH ROW EXECUTE FUNCTION reins_ledger_is_append_only();
CREATE TRIGGER ledger_nodes_no_truncate BEFORE TRUNCATE ON ledger_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION reins_ledger_is_append_only();
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION reins_ledger_is_append_only();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION reins_ledger_is_append_only();
