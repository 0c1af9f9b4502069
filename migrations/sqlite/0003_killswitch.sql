-- Kill switches, engaged and released. A row is never deleted: the history is the evidence of
-- Art 14(4)(e) oversight (and each change is a ledger entry too).
CREATE TABLE killswitches (
    id              TEXT PRIMARY KEY NOT NULL,
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
