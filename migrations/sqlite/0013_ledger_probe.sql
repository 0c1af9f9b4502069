-- One row the ledger's writer rewrites to learn whether the disk takes writes again after a
-- commit failed (disk full, read-only, I/O error), when no decision is waiting to try.
CREATE TABLE ledger_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
