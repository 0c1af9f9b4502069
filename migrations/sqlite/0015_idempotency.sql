-- A decision asked for with an `Idempotency-Key` keeps the key and the digest of the request it
-- answered, so that a retry with the same key gets the recorded answer instead of a second entry.
-- The index is partial: decisions without a key, the common case, cost nothing more to write.
ALTER TABLE decisions ADD COLUMN idempotency_key TEXT;
ALTER TABLE decisions ADD COLUMN request_digest TEXT;
CREATE INDEX decisions_by_idempotency_key ON decisions (agent_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
