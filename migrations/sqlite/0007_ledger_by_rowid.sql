-- Every append wrote a page into each b-tree of ledger_entries. `idx BIGINT PRIMARY KEY` is not
-- SQLite's rowid alias (only `INTEGER PRIMARY KEY` is), so the table kept a second b-tree, an
-- automatic index on idx; and the kind index took one entry per decision though it exists for the
-- rare kinds. Rebuilt keyed by rowid, with the kind index limited to what it is read for.
CREATE TABLE ledger_entries_by_rowid (
    idx    INTEGER PRIMARY KEY NOT NULL,
    kind   TEXT NOT NULL,
    entry  BLOB NOT NULL
);

INSERT INTO ledger_entries_by_rowid (idx, kind, entry)
    SELECT idx, kind, entry FROM ledger_entries ORDER BY idx;

DROP TABLE ledger_entries;

ALTER TABLE ledger_entries_by_rowid RENAME TO ledger_entries;

CREATE INDEX ledger_entries_by_kind ON ledger_entries (kind, idx) WHERE kind <> 'decision';
