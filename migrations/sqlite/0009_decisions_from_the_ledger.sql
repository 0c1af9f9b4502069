-- A decision's request and answer are in its ledger entry, and the decision row kept a second
-- copy of both: two JSON encodings and about 700 bytes per decision, in the transaction every
-- answer waits for. The row now keeps what lists and counts filter on, and in `extra` the few
-- fields of the answer that are not in the entry (trace_id, evaluation_id, access_request).
-- Rows without a ledger index (none are written any more) keep their copies.
CREATE TABLE decisions_slim (
    id             TEXT PRIMARY KEY NOT NULL,
    agent_id       TEXT NOT NULL,
    on_behalf_of   TEXT,
    action         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    decision       TEXT NOT NULL,
    policy_digest  TEXT,
    evaluated_at   TEXT NOT NULL,
    ledger_index   BIGINT,
    leaf_hash      BLOB,
    extra          TEXT,
    request        TEXT,
    response       TEXT
);

INSERT INTO decisions_slim (id, agent_id, on_behalf_of, action, resource_type, resource_id, decision,
                            policy_digest, evaluated_at, ledger_index, leaf_hash, extra, request, response)
    SELECT id, agent_id, on_behalf_of, action, resource_type, resource_id, decision,
           policy_digest, evaluated_at, ledger_index, leaf_hash,
           CASE WHEN ledger_index IS NOT NULL
                 AND (json_extract(response, '$.trace_id') IS NOT NULL
                      OR json_extract(response, '$.evaluation_id') IS NOT NULL
                      OR json_extract(response, '$.access_request') IS NOT NULL)
                THEN json_object('trace_id', json_extract(response, '$.trace_id'),
                                 'evaluation_id', json_extract(response, '$.evaluation_id'),
                                 'access_request', json(json_extract(response, '$.access_request')))
           END,
           CASE WHEN ledger_index IS NULL THEN request END,
           CASE WHEN ledger_index IS NULL THEN response END
    FROM decisions ORDER BY id;

DROP TABLE decisions;

ALTER TABLE decisions_slim RENAME TO decisions;

CREATE INDEX decisions_by_agent ON decisions (agent_id, id);
