-- Webhooks (src/webhooks): each hook's cursor, the ledger index it sends from next.
CREATE TABLE webhook_cursors (
    hook        TEXT PRIMARY KEY,
    next_index  BIGINT NOT NULL
);
