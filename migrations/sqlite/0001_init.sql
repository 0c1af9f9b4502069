-- Registry: agents (AI systems) and tools. The record is the API's JSON document; id and version
-- are columns so that lookups and optimistic checks need no JSON parsing.
CREATE TABLE agents (
    id          TEXT PRIMARY KEY NOT NULL,
    version     BIGINT NOT NULL,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE tools (
    id          TEXT PRIMARY KEY NOT NULL,
    version     BIGINT NOT NULL,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Every decision answered, with the full request: the basis of "explain this decision" (Art 86).
-- Ids are UUIDv7, so ordering by id is ordering by time.
CREATE TABLE decisions (
    id             TEXT PRIMARY KEY NOT NULL,
    agent_id       TEXT NOT NULL,
    on_behalf_of   TEXT,
    action         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    decision       TEXT NOT NULL,
    policy_digest  TEXT,
    evaluated_at   TEXT NOT NULL,
    request        TEXT NOT NULL,
    response       TEXT NOT NULL
);

CREATE INDEX decisions_by_agent ON decisions (agent_id, id);
