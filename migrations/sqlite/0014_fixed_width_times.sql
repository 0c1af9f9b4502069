-- Every stored time in one form, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds), so that times
-- compare and sort as text (the decision counts compared them through julianday()).
-- `strftime('%Y-%m-%dT%H:%M:%fZ', ...)` is that form; a value SQLite cannot read is kept as it
-- was (COALESCE) rather than lost. Ledger entries are not touched: their bytes are hashed.
UPDATE agents SET created_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', created_at), created_at),
                  updated_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', updated_at), updated_at);
UPDATE tools SET created_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', created_at), created_at),
                 updated_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', updated_at), updated_at);
UPDATE decisions SET evaluated_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', evaluated_at), evaluated_at);
UPDATE ledger_checkpoints SET created_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', created_at), created_at);
UPDATE killswitches SET engaged_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', engaged_at), engaged_at),
                        released_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', released_at), released_at);
UPDATE approvals SET requested_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', requested_at), requested_at),
                     expires_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', expires_at), expires_at),
                     decided_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', decided_at), decided_at),
                     used_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', used_at), used_at);
UPDATE policy_versions SET created_at = COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', created_at), created_at);
