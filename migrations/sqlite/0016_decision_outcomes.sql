-- What came of an allowed action, one row per decision (its ledger entry is `decision_outcome`).
CREATE TABLE decision_outcomes (
    decision_id    TEXT PRIMARY KEY NOT NULL,
    agent_id       TEXT NOT NULL,
    status         TEXT NOT NULL,
    summary        TEXT,
    result_sha256  TEXT,
    completed_at   TEXT,
    reported_by    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL
);
-- Allowed decisions by time, for the list of those with no outcome.
CREATE INDEX decisions_allowed_by_time ON decisions (evaluated_at) WHERE decision = 'allow';
