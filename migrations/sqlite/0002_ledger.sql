-- The ledger: canonical entry bytes by index, the tree's complete subtrees (level 0 = leaf hashes),
-- and every signed checkpoint.
CREATE TABLE ledger_entries (
    idx    BIGINT PRIMARY KEY NOT NULL,
    kind   TEXT NOT NULL,
    entry  BLOB NOT NULL
);

CREATE TABLE ledger_nodes (
    level  INTEGER NOT NULL,
    idx    BIGINT NOT NULL,
    hash   BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

CREATE TABLE ledger_checkpoints (
    tree_size   BIGINT PRIMARY KEY NOT NULL,
    root_hash   BLOB NOT NULL,
    note        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Salts of masked context values. Outside the hashed entries, so that deleting a salt makes the
-- commitment in the ledger unlinkable to the value without breaking the tree.
CREATE TABLE ledger_salts (
    decision_id  TEXT NOT NULL,
    pointer      TEXT NOT NULL,
    salt         BLOB NOT NULL,
    PRIMARY KEY (decision_id, pointer)
);

ALTER TABLE decisions ADD COLUMN ledger_index BIGINT;
ALTER TABLE decisions ADD COLUMN leaf_hash BLOB;
