-- Human approvals: bound to one exact request, single use, expiring. Never deleted.
CREATE TABLE approvals (
    id               TEXT PRIMARY KEY NOT NULL,
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
    used_decision_id TEXT
);

CREATE INDEX approvals_by_status ON approvals (status, id);
