-- Objections to decisions (ledger entries `decision_contested`, `contest_resolved`), each row as it
-- stands after its latest step; `version` counts the steps.
CREATE TABLE contests (
    id            TEXT PRIMARY KEY NOT NULL,
    decision_id   TEXT NOT NULL,
    version       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    statement     TEXT NOT NULL,
    raised_by     TEXT,
    contested_by  TEXT NOT NULL,
    contested_at  TEXT NOT NULL,
    comment       TEXT,
    resolved_by   TEXT,
    resolved_at   TEXT
);
CREATE INDEX contests_by_decision ON contests (decision_id);

-- Serious incidents (ledger entries `incident_*`), each row as it stands after its latest step.
CREATE TABLE incidents (
    id            TEXT PRIMARY KEY NOT NULL,
    version       INTEGER NOT NULL,
    severity      TEXT NOT NULL,
    widespread    BOOLEAN NOT NULL,
    summary       TEXT NOT NULL,
    aware_at      TEXT NOT NULL,
    deadline      TEXT NOT NULL,
    status        TEXT NOT NULL,
    agents        TEXT NOT NULL,
    decisions     TEXT NOT NULL,
    killswitches  TEXT NOT NULL,
    opened_by     TEXT NOT NULL,
    opened_at     TEXT NOT NULL,
    reported_at   TEXT,
    authority     TEXT,
    reference     TEXT,
    closed_at     TEXT
);
