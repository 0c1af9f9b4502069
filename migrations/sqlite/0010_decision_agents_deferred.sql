-- The per-agent index of decisions, maintained in the background instead of in the commit every
-- answer waits for. As an index on `decisions` it put each decision in its own random leaf page:
-- half of the pages every commit wrote to the WAL. `decision_agents` holds the decisions up to
-- `decision_agents_upto.upto` (a rowid of `decisions`); the ledger's writer adds the newer ones a
-- few times a second, and readers scan those few newer rows directly.
CREATE TABLE decision_agents (
    agent_id  TEXT NOT NULL,
    id        TEXT NOT NULL,
    PRIMARY KEY (agent_id, id)
) WITHOUT ROWID;

CREATE TABLE decision_agents_upto (
    upto  INTEGER NOT NULL
);

INSERT INTO decision_agents (agent_id, id) SELECT agent_id, id FROM decisions;

INSERT INTO decision_agents_upto (upto) SELECT COALESCE(MAX(rowid), 0) FROM decisions;

DROP INDEX decisions_by_agent;
